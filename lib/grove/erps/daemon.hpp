// grove/erps/daemon.hpp — the erps daemon: listens, and gives every accepted
// client its own server process under a dynamic supervisor.
//
//   grove::erps::daemon_options options;          // 127.0.0.1, ephemeral port, plain TCP
//   auto d = co_await grove::erps::daemon::start<kv>(node, options, initial_data);
//   std::uint16_t port = d.port();
//   ...
//   co_await d.shutdown(std::chrono::seconds(5)); // stop accepting, finish calls, close
//
// Each connection's server is S(args...) (the daemon's initial data and
// whatever else the daemon was started with), a temporary child of the
// daemon's own dynamic supervisor or of the one given in the options. The
// daemon is a process (the listener); `daemon` is a handle to it — a value,
// copy it freely. Frames a client sends are checked here (identifier,
// version requirement, HMAC) before its server sees them; a bad frame gets
// an error frame and, when the stream cannot be trusted any more, a clean
// close of that one connection. A payload nested deeper than max_depth is
// refused while it is decoded (a call by its id), so no server ever gets a
// value deeper than that. Each refusal is one log record.
#pragma once

#include <grove/erps/error.hpp>
#include <grove/erps/codec.hpp>
#include <grove/erps/frame.hpp>
#include <grove/erps/link_options.hpp>
#include <grove/erps/log.hpp>
#include <grove/erps/server.hpp>
#include <grove/erps/tls.hpp>
#include <grove/supervisor/dynamic_supervisor.hpp>

#include <chrono>
#include <concepts>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace grove::erps {

struct daemon_options {
  std::string bind_address = "127.0.0.1";             ///< address to listen on, IPv4 or IPv6 (default 127.0.0.1)
  std::uint16_t port = 0;                             ///< port; 0 picks a free one, read it back with port() (default 0)
  int backlog = 1024;                                 ///< listen backlog (default 1024)
  std::optional<tls_server_options> tls{};            ///< TLS (mutual unless said otherwise); plain TCP when empty (default)
  link_options link{};                                ///< wire options shared with the client side: identifier, version, signing, max_payload, max_depth, keepalives, frame deadline, send queue, codec, log
  std::string version_requirement{};                  ///< what a client's version must satisfy, e.g. ">= 1.2.0, < 2.0.0" (default any)
  std::size_t max_connections = 10'000;               ///< more are refused with an error frame (default 10 000; 0: no limit)
  std::optional<duration> idle_timeout{};             ///< close a connection without a call or cast for this long (default never)
  std::size_t max_calls_in_flight = 256;              ///< per connection; at this many unanswered calls the daemon stops reading from that client (default 256; 0: no limit)
  std::optional<dynamic_supervisor> supervisor{};     ///< supervise connections here (default: the daemon starts its own, linked to it)
  std::optional<std::size_t> worker{};                ///< the listener's worker (default round-robin); connections spread over all workers
  std::string name{};                                 ///< the `daemon` label of its metrics, when the node has a registry (default "<address>:<port>")

  /// Throws grove::error (errc::invalid_argument) naming the option
  /// (`daemon_options.backlog: ...`) and the expected form.
  void validate() const;
};

/// A snapshot of a daemon's counters (lock-free reads).
struct daemon_stats {
  std::int64_t connections = 0;      ///< open client connections
  std::int64_t queued_bytes = 0;     ///< bytes queued to clients and not yet sent, over all connections
  std::int64_t parked = 0;           ///< idle plain TCP connections parked now (no coroutine held; see the README)
  std::uint64_t accepted = 0;        ///< connections accepted since start
  std::uint64_t refused = 0;         ///< connections refused for max_connections
  std::uint64_t frames_in = 0;       ///< frames received (keepalives included)
  std::uint64_t keepalives_in = 0;   ///< keepalives received
  std::uint64_t rejected_frames = 0; ///< frames refused (identifier, version, signature)
  std::uint64_t tls_handshakes = 0;  ///< TLS handshakes completed
  std::uint64_t tls_resumed = 0;     ///< of those, sessions resumed (by ticket) rather than negotiated in full
};

class daemon;

namespace detail {
class daemon_state;
class transport;
struct pending_session;

/// Serves `stream` (whose executor is worker `worker`'s) as a connection the
/// daemon accepted, with the daemon's options and server type: for driving
/// the request path without sockets (detail/memory_transport.hpp). It does
/// not count against max_connections.
void adopt_connection(const daemon& d, std::unique_ptr<transport> stream, std::size_t worker);

/// Makes the start of one session: (connection, worker) -> a child start.
using session_factory = std::function<child_start(std::shared_ptr<pending_session>, std::size_t worker)>;

awaitable<pid> start_daemon(node& n, daemon_options options, session_factory factory,
                            std::shared_ptr<daemon_state> state, bool link);
std::shared_ptr<daemon_state> make_daemon_state(const daemon_options& options);
} // namespace detail

class daemon {
public:
  daemon() = default;

  /// Validates the options, loads TLS files, listens, and starts accepting.
  /// Every client gets an S(args...). Throws std::invalid_argument (a bad
  /// option or TLS file, naming it) or grove::error start_failed (e.g. the
  /// port is taken: reason() says so).
  template <class S, class... Args>
    requires std::derived_from<S, server_base> && std::constructible_from<S, Args...> && (std::copy_constructible<Args> && ...)
  static awaitable<daemon> start(node& n, daemon_options options, Args... args) {
    detail::check_codec_for<typename S::value_type>(options.link, "daemon_options");
    return start_impl(n, std::move(options), factory<S>(std::move(args)...), false);
  }
  /// start(), linked to the calling process.
  template <class S, class... Args>
    requires std::derived_from<S, server_base> && std::constructible_from<S, Args...> && (std::copy_constructible<Args> && ...)
  static awaitable<daemon> start_link(node& n, daemon_options options, Args... args) {
    detail::check_codec_for<typename S::value_type>(options.link, "daemon_options");
    return start_impl(n, std::move(options), factory<S>(std::move(args)...), true);
  }

  explicit operator bool() const noexcept { return static_cast<bool>(listener_); }
  /// The listener process.
  const pid& id() const noexcept { return listener_; }
  /// The port it listens on (the one picked, when the options said 0).
  std::uint16_t port() const noexcept;
  /// The address it listens on.
  const std::string& address() const noexcept;
  /// The dynamic supervisor of its connections.
  dynamic_supervisor supervisor() const noexcept;
  daemon_stats stats() const noexcept;

  /// Loads the TLS certificate, key and CA files again; new connections use
  /// them, open ones keep theirs. Throws std::invalid_argument (the old
  /// files stay in use) or errc::invalid_argument for a daemon without TLS.
  awaitable<void> reload_tls() const;
  /// Stops accepting, lets every connection finish the calls it has in
  /// flight, then closes them; connections still busy at `deadline` are
  /// killed. Returns when the daemon has ended (always; at the latest a
  /// little after the deadline).
  awaitable<void> shutdown(duration deadline = std::chrono::seconds(5)) const;

private:
  template <class S, class... Args>
  static detail::session_factory factory(Args... args) {
    return [args = std::tuple<Args...>(std::move(args)...)](std::shared_ptr<detail::pending_session> pending,
                                                              std::size_t worker) {
      return child_start(detail::session_start<S, Args...>{std::move(pending), worker, args});
    };
  }
  static awaitable<daemon> start_impl(node& n, daemon_options options, detail::session_factory factory, bool link);

  pid listener_;
  std::shared_ptr<detail::daemon_state> state_;
};

} // namespace grove::erps
