// Test support for the erps layer: a test server with one operation per
// behaviour under test, a raw POSIX client that speaks bytes (for bad
// input), and a log capture. Every wait is bounded.
#pragma once

#include <grove/core/node.hpp>
#include <grove/erps/client.hpp>
#include <grove/erps/daemon.hpp>
#include <grove/erps/frame.hpp>
#include <grove/erps/server.hpp>

#include "../event_log.hpp"

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace erps_test {

using namespace std::chrono_literals;
using grove::erps::json;
using test_support::event_log;

/// Log records as "event: text" lines, waitable.
inline grove::erps::log_function capture(std::shared_ptr<event_log> log) {
  return [log](const grove::erps::log_record& r) { log->add(std::string(r.event) + ": " + std::string(r.text)); };
}

/// True once a captured line starts with `prefix` (bounded wait). When it
/// never does, the lines that were logged are shown.
inline bool logged(const event_log& log, const std::string& prefix, std::chrono::milliseconds limit = 10s) {
  const bool found = log.wait_for(
      [&](const std::vector<std::string>& lines) {
        for (const auto& l : lines) {
          if (l.rfind(prefix, 0) == 0) return true;
        }
        return false;
      },
      limit);
  if (!found) {
    for (const auto& l : log.events()) MESSAGE("logged: " << l);
  }
  return found;
}

/// A server with one operation per behaviour the tests need (defined in
/// erps_support.cpp, compiled once for all the erps tests).
class test_server : public grove::erps::server {
public:
  test_server(json initial, std::shared_ptr<event_log> events);
  ~test_server() override;

  grove::call_result<json> handle_call(grove::erps::call c, grove::from<json> from);
  void handle_cast(grove::erps::cast c);
  void handle_info(grove::message m);
  void handle_continue(grove::message m);
  void terminate(const grove::exit_reason& reason);

private:
  struct slow_done {
    std::size_t index;
  };
  json data_;
  std::shared_ptr<event_log> events_;
  std::vector<std::pair<grove::from<json>, json>> held_;
  std::vector<std::pair<grove::from<json>, json>> slow_;
  grove::from<json> kept_; // "keep": a from kept after its call was answered
  std::vector<std::thread> threads_;
};

/// daemon::start<test_server>(n, options, initial, events), instantiated
/// once (in erps_support.cpp) instead of in every test file.
grove::awaitable<grove::erps::daemon> start_test_daemon(grove::node& n, grove::erps::daemon_options options,
                                                        json initial, std::shared_ptr<event_log> events);

/// A client that speaks raw bytes over a blocking POSIX socket, for input
/// no well-behaved client would send. Reads are bounded by poll().
class raw_client {
public:
  explicit raw_client(std::uint16_t port, const std::string& host = "127.0.0.1") {
    const bool v6 = host.find(':') != std::string::npos;
    fd_ = ::socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
    if (fd_ < 0) throw std::runtime_error("socket failed");
    int rc = -1;
    if (v6) {
      sockaddr_in6 a{};
      a.sin6_family = AF_INET6;
      a.sin6_port = htons(port);
      ::inet_pton(AF_INET6, host.c_str(), &a.sin6_addr);
      rc = ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    } else {
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_port = htons(port);
      ::inet_pton(AF_INET, host.c_str(), &a.sin_addr);
      rc = ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    }
    if (rc != 0) {
      ::close(fd_);
      throw std::runtime_error("connect to " + host + ":" + std::to_string(port) + " failed");
    }
  }
  ~raw_client() { ::close(fd_); }
  raw_client(const raw_client&) = delete;
  raw_client& operator=(const raw_client&) = delete;

  int fd() const noexcept { return fd_; }

  void send(std::string_view bytes) {
    while (!bytes.empty()) {
      auto n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n <= 0) throw std::runtime_error("send failed");
      bytes.remove_prefix(static_cast<std::size_t>(n));
    }
  }

  /// Sends what fits without blocking; returns how much went.
  std::size_t send_some(std::string_view bytes) {
    auto n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    return n > 0 ? static_cast<std::size_t>(n) : 0;
  }

  struct frame {
    grove::erps::frame_type type;
    std::string payload;
  };

  /// The next frame (keepalives included) within `limit`; nullopt on
  /// timeout or when the server closed.
  std::optional<frame> read_frame(std::chrono::milliseconds limit = 10s) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    for (;;) {
      if (auto f = decoder_.next()) return frame{f.header.type, std::string(f.payload)};
      if (closed_ || decoder_.failed()) return std::nullopt;
      if (!fill(deadline)) return std::nullopt;
    }
  }

  /// The next frame that is not a keepalive.
  std::optional<frame> read_non_keepalive(std::chrono::milliseconds limit = 10s) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left <= 0ms) return std::nullopt;
      auto f = read_frame(left);
      if (!f || f->type != grove::erps::frame_type::keepalive) return f;
    }
  }

  /// Up to `n` raw bytes, as the server sent them, within `limit` (fewer
  /// on timeout or close). Not to be mixed with read_frame.
  std::string read_bytes(std::size_t n, std::chrono::milliseconds limit = 10s) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    std::string out;
    while (out.size() < n && !closed_) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left <= 0ms) break;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
      char chunk[64 * 1024];
      auto got = ::recv(fd_, chunk, std::min(sizeof chunk, n - out.size()), 0);
      if (got <= 0) {
        closed_ = true;
        break;
      }
      out.append(chunk, static_cast<std::size_t>(got));
    }
    return out;
  }

  /// Whether the server closes the connection within `limit` (frames
  /// before the close are read and dropped).
  bool closed_within(std::chrono::milliseconds limit = 10s) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!closed_) {
      while (decoder_.next()) {
      }
      if (!fill(deadline)) return closed_;
    }
    return true;
  }

private:
  // Reads once (bounded); false on timeout or close.
  bool fill(std::chrono::steady_clock::time_point deadline) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left <= 0ms) return false;
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
    auto space = decoder_.prepare(64 * 1024);
    auto n = ::recv(fd_, space.data(), space.size(), 0);
    if (n <= 0) {
      closed_ = true;
      return false;
    }
    decoder_.commit(static_cast<std::size_t>(n));
    return true;
  }

  int fd_ = -1;
  bool closed_ = false;
  grove::erps::frame_decoder decoder_{64u << 20};
};

/// A connection_options::on_event that records each state entered
/// ("connected", "backing_off", ...), with ": reason" when there is one.
inline std::function<void(const grove::connection_event&)> record_states(std::shared_ptr<event_log> log) {
  return [log](const grove::connection_event& e) {
    log->add(std::string(grove::to_string(e.state)) + (e.reason.empty() ? "" : ": " + e.reason));
  };
}

/// Call options that wait for a disconnected client, up to `timeout`.
inline grove::call_options waiting(grove::duration timeout = 10s) {
  grove::call_options o;
  o.timeout = timeout;
  o.if_not_ready = grove::when_not_ready::wait;
  return o;
}

/// A node and a daemon serving test_server (initial data null) whose log
/// records go to `logs`; clients of it log there too.
struct daemon_rig {
  std::shared_ptr<event_log> logs = std::make_shared<event_log>();
  grove::node node{{.threads = 2}};
  grove::erps::daemon server;

  explicit daemon_rig(grove::erps::daemon_options options) {
    options.link.log = capture(logs);
    server = node.block_on(start_test_daemon(node, options, json(), std::shared_ptr<event_log>()));
  }

  grove::erps::client_ref connect(grove::erps::client_options o = {}) {
    o.port = server.port();
    o.link.log = capture(logs);
    return node.block_on(grove::erps::client::start(node, std::move(o)));
  }

  json echo(const grove::erps::client_ref& c, json value) {
    return node.block_on(c.call(json{{"op", "echo"}, {"value", std::move(value)}}, 10s));
  }
};

/// A frame as a client would send it.
inline std::string call_frame(const json& id, const json& request, const std::string& identifier = "",
                              grove::erps::protocol_version version = {0, 4, 0}) {
  grove::erps::frame_writer w{version, identifier, std::nullopt};
  return w.frame(grove::erps::frame_type::call, json::array({id, request}).dump());
}

/// A cast frame as a client would send it.
inline std::string cast_frame(const json& value) {
  grove::erps::frame_writer w{{0, 4, 0}, std::string(), std::nullopt};
  return w.frame(grove::erps::frame_type::cast, value.dump());
}

} // namespace erps_test
