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

class etcd_server {
public:
  /// With tls: https with the test certificates, client certificates required.
  explicit etcd_server(bool tls = false) : tls_(tls), client_port_(free_port()), peer_port_(free_port()) { start(); }

  /// Starts it (again) and returns once it serves clients.
  void start() {
    const std::string client = url();
    const std::string peer = "http://127.0.0.1:" + std::to_string(peer_port_);
    std::string command = "etcd --name grove-test --data-dir " + dir_.file("data") + " --listen-client-urls " + client +
                          " --advertise-client-urls " + client + " --listen-peer-urls " + peer +
                          " --initial-advertise-peer-urls " + peer + " --initial-cluster grove-test=" + peer;
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
    process_->wait_for("ready");
  }

  /// SIGKILL, as a crash.
  void kill() { process_.reset(); }

  std::string url() const { return std::string(tls_ ? "https" : "http") + "://127.0.0.1:" + std::to_string(client_port_); }

private:
  bool tls_;
  temp_dir dir_{"grove-etcd"};
  std::uint16_t client_port_;
  std::uint16_t peer_port_;
  std::unique_ptr<child_process> process_;
};

} // namespace test_support
