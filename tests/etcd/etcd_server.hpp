// Test support: a real etcd (Debian's etcd-server) on loopback ports in a
// temporary data directory, started and stopped by the test. It can be
// killed (SIGKILL) and started again on the same ports and data.
#pragma once

#include "../child_process.hpp"
#include "../temp_dir.hpp"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace test_support {

/// A TCP port on 127.0.0.1 that nothing listens on right now.
inline std::uint16_t free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    if (fd >= 0) ::close(fd);
    throw std::runtime_error("free_port: cannot bind 127.0.0.1:0");
  }
  ::close(fd);
  return ntohs(a.sin_port);
}

/// One etcd member: alone (the default), or one of an etcd_cluster's.
class etcd_server {
public:
  /// With tls: https with the test certificates, client certificates required.
  explicit etcd_server(bool tls = false) : tls_(tls), client_port_(free_port()), peer_port_(free_port()) { start(); }
  /// A member of a cluster (etcd_cluster makes them): not started yet.
  etcd_server(std::string name, std::uint16_t client_port, std::uint16_t peer_port, std::string initial_cluster)
      : tls_(false), name_(std::move(name)), client_port_(client_port), peer_port_(peer_port),
        initial_cluster_(std::move(initial_cluster)) {}

  /// Starts it (again) and returns once it serves clients.
  void start() {
    launch();
    wait_ready();
  }
  /// Starts it without waiting (a cluster's members wait for each other).
  void launch() {
    const std::string client = url();
    const std::string peer = peer_url();
    const std::string cluster = initial_cluster_.empty() ? name_ + "=" + peer : initial_cluster_;
    std::string command = "etcd --name " + name_ + " --data-dir " + dir_.file("data") + " --listen-client-urls " +
                          client + " --advertise-client-urls " + client + " --listen-peer-urls " + peer +
                          " --initial-advertise-peer-urls " + peer + " --initial-cluster " + cluster;
    if (tls_) {
      std::string certs = GROVE_SOURCE_ROOT; // (appended: g++ 12 warns falsely on a + chain here)
      certs += "/certs/";
      command += " --cert-file " + certs + "etcd.pem --key-file " + certs + "etcd.key --trusted-ca-file " + certs +
                 "ca.pem --client-cert-auth";
    }
    // Its log goes to a file (kept drained, so etcd never blocks on a full
    // pipe); the test's pipe gets one line once etcd serves clients. Should
    // the test die without stopping it (a crash), the shell kills its
    // process group once the test is gone.
    command = "(" + command + " 2>&1 | tee -a " + dir_.file("etcd.log") +
              " | (grep -m1 -q 'ready to serve client requests' && echo ready; cat >/dev/null)) & "
              "while kill -0 " + std::to_string(::getpid()) + " 2>/dev/null; do sleep 1; done; kill -9 0";
    process_ = std::make_unique<child_process>(std::vector<std::string>{"sh", "-c", command});
  }
  /// Returns once the member serves clients (in a cluster: once it has a quorum).
  void wait_ready() { process_->wait_for("ready"); }
  /// SIGKILL, as a crash.
  void kill() { process_.reset(); }
  std::string url() const { return std::string(tls_ ? "https" : "http") + "://127.0.0.1:" + std::to_string(client_port_); }
  std::string peer_url() const { return "http://127.0.0.1:" + std::to_string(peer_port_); }

private:
  bool tls_;
  std::string name_ = "grove-test";
  temp_dir dir_{"grove-etcd"};
  std::uint16_t client_port_;
  std::uint16_t peer_port_;
  std::string initial_cluster_;
  std::unique_ptr<child_process> process_;
};

/// A cluster of `size` etcd members on loopback, each with its own data
/// directory, started together; returns once every member serves clients.
class etcd_cluster {
public:
  explicit etcd_cluster(std::size_t size) {
    std::vector<std::pair<std::uint16_t, std::uint16_t>> ports;
    std::string initial;
    for (std::size_t i = 0; i < size; ++i) {
      ports.emplace_back(free_port(), free_port());
      if (!initial.empty()) initial += ",";
      initial += "m" + std::to_string(i) + "=http://127.0.0.1:" + std::to_string(ports.back().second);
    }
    for (std::size_t i = 0; i < size; ++i) {
      members_.push_back(std::make_unique<etcd_server>("m" + std::to_string(i), ports[i].first, ports[i].second, initial));
      members_.back()->launch();
    }
    for (auto& m : members_) m->wait_ready();
  }
  etcd_server& member(std::size_t i) { return *members_.at(i); }
  std::vector<std::string> urls() const {
    std::vector<std::string> out;
    for (const auto& m : members_) out.push_back(m->url());
    return out;
  }

private:
  std::vector<std::unique_ptr<etcd_server>> members_;
};

} // namespace test_support
