// grove/connection/connection.hpp — Elixir's Connection behaviour: a
// gen_server with two more callbacks, connect and disconnect, and a backoff
// timer between them.
//
//   class db_client : public grove::connection {
//   public:
//     grove::action init() { return grove::connect(); }          // connect before any message
//     grove::awaitable<grove::action> connect(grove::message) {  // may co_await real I/O
//       if (co_await try_open()) co_return grove::action{};       // connected
//       co_return grove::backoff();                               // the policy's next delay
//     }
//     grove::action disconnect(grove::message) {
//       close();
//       return grove::connect();                                  // reconnect now
//     }
//     grove::awaitable<grove::call_result<row>> handle_call(query q);
//   };
//
// Results, as Connection's:
//   init()            connect(info) | backoff([d]) | {} (start idle) | stop(r) | ignore()
//   connect(info)     {} (connected) | backoff([d]) | stop(r)
//   disconnect(info)  connect(info) | backoff([d]) | noconnect() / {} (stay down) | stop(r)
//   handle_call/cast/info/continue: what a gen_server's may, plus connect(info)
//                     or disconnect(info) (a call's with or without its reply)
// Any of them may add .with_idle_timeout(d). A connect that runs longer than
// connection_options::connect_timeout is cancelled and counts as failed
// (backoff by the policy). An exception in connect or disconnect ends the
// process like one in any handler, after terminate. A shutdown (or, for a
// connection that traps exits, the kill at the end of its shutdown timeout)
// cancels a running connect: its pending I/O completes with operation_aborted.
//
// One backoff timer at most: every connect, disconnect or backoff cancels
// the one before, and a timer that fired before it was cancelled never
// starts a connect. When it runs out, connect gets backoff_elapsed{} as info.
//
// While not connected, calls fail at once with connection_errc::disconnected or wait
// for the connection up to their timeout: per connection
// (connection_options::calls_while_disconnected) or per call
// (call_options::if_not_ready). A request type that must be answered either
// way declares `static constexpr bool needs_ready = false;`.
//
// The state (disconnected, connecting, connected, backing off until T) is
// state() inside, on_event for every change, and connection_status for
// lock-free reads from any thread.
#pragma once

#include <grove/connection/error.hpp>
#include <grove/core/backoff.hpp>
#include <grove/core/gen_server.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace grove {

enum class connection_state : std::uint8_t {
  disconnected, ///< not connected and no attempt scheduled
  connecting,   ///< connect() is running
  connected,    ///< the last connect() succeeded
  backing_off,  ///< waiting for the backoff timer before the next connect()
};

std::string_view to_string(connection_state s) noexcept;
std::ostream& operator<<(std::ostream& out, connection_state s);

/// The info connect() gets when a backoff timer ran out.
struct backoff_elapsed {};

/// One state change, for logs and metrics. Delivered in the connection's
/// own process, in order.
struct connection_event {
  pid connection{};                                 ///< the connection process
  connection_state state{};                         ///< the state entered
  connection_state previous{};                      ///< the state left
  std::chrono::system_clock::time_point at{};       ///< when (wall clock)
  duration backoff{};                               ///< backing_off: the delay before the next connect
  std::uint32_t failures = 0;                       ///< connects that failed since the last success
  std::string reason{};                             ///< why, as text (a disconnect's info, "connect timed out after 20 s"); may be empty
};

/// The default on_event: the change as a "connection" event named by the
/// state entered (connected at info; disconnected, backing_off at warning
/// when there is a reason; connecting at debug), fields connection,
/// previous, failures, backoff_ms, reason.
void report_connection_event(const connection_event& e);

/// A connection's state for other threads: reads are lock-free and never
/// see a half-written update. Share one through connection_options::status.
class connection_status {
public:
  struct snapshot {
    connection_state state = connection_state::disconnected;
    std::chrono::steady_clock::time_point since{};    ///< when this state was entered
    std::chrono::steady_clock::time_point retry_at{}; ///< backing_off: when the next connect starts
    std::uint32_t failures = 0;                       ///< connects that failed since the last success
  };

  snapshot load() const noexcept;
  connection_state state() const noexcept { return state_.load(std::memory_order_acquire); }

private:
  friend class connection;
  void store(const snapshot& s) noexcept; // by the one connection it is given to
  using rep = std::chrono::steady_clock::rep;
  std::atomic<std::uint64_t> sequence_{0};
  std::atomic<connection_state> state_{connection_state::disconnected};
  std::atomic<rep> since_{0};
  std::atomic<rep> retry_at_{0};
  std::atomic<std::uint32_t> failures_{0};
};

struct connection_options {
  backoff_policy backoff = backoff_policy::exponential();     ///< delays for backoff() without a duration (default: gRPC's, 1 s x1.6 +-20 % up to 120 s)
  std::optional<std::uint64_t> seed{};                       ///< seeds the policy's jitter, for repeatable delays (default: std::random_device)
  duration connect_timeout = std::chrono::seconds(20);       ///< a connect() running longer is cancelled and counts as failed (default 20 s; grove::infinity: none)
  when_not_ready calls_while_disconnected = when_not_ready::fail; ///< fail with connection_errc::disconnected (default) or wait up to the call's timeout
  std::function<void(const connection_event&)> on_event = report_connection_event; ///< called on every state change, in the connection's process; must not block (default: to the node's event sink; nullptr: none)
  std::shared_ptr<connection_status> status{};               ///< kept up to date for lock-free reads from anywhere (default none)
};

namespace detail {
struct connect_directive {
  message info;
};
struct backoff_directive {
  std::optional<duration> delay;
};
struct disconnect_directive {
  message info;
};
struct noconnect_directive {};
} // namespace detail

/// Run connect(info) now (from init, a handler, or disconnect).
inline action connect(message info = {}) { return detail::directive_action(detail::connect_directive{std::move(info)}); }
/// Wait the backoff policy's next delay, then connect(backoff_elapsed{})
/// (from init, connect or disconnect).
inline action backoff() { return detail::directive_action(detail::backoff_directive{}); }
/// Wait `delay`, then connect(backoff_elapsed{}).
inline action backoff(duration delay) { return detail::directive_action(detail::backoff_directive{delay}); }
/// Run disconnect(info) now (from a handler).
inline action disconnect(message info = {}) {
  return detail::directive_action(detail::disconnect_directive{std::move(info)});
}
/// From disconnect: stay disconnected, with no attempt scheduled, until a
/// handler asks for connect().
inline action noconnect() { return detail::directive_action(detail::noconnect_directive{}); }

class connection;

namespace detail {

/// The user's connect and disconnect, for one server type.
struct connection_callbacks {
  handler_outcome (*connect)(connection&, message&&);
  handler_outcome (*disconnect)(connection&, message&&); // nullptr: none (a disconnect backs off)
};

class connection_access;

} // namespace detail

/// Base of every connection process. Derive from it as from gen_server and
/// add connect() (and usually disconnect()); start it with grove::start.
class connection : public gen_server {
public:
  explicit connection(connection_options options = {});

  /// Where this connection stands. From its own handlers.
  connection_state state() const noexcept { return state_; }
  /// Connects that failed since the last success.
  std::uint32_t failures() const noexcept { return failures_; }
  /// When the pending backoff runs out (backing_off only).
  std::chrono::steady_clock::time_point retry_at() const noexcept { return retry_at_; }

private:
  friend class detail::connection_access;
  enum class origin : std::uint8_t { request, connect_result, disconnect_result };

  detail::handler_outcome run(action a, const detail::connection_callbacks& callbacks);
  detail::handler_outcome on_timer(std::uint64_t generation, const detail::connection_callbacks& callbacks);
  awaitable<action> drive(action a, origin from, const detail::connection_callbacks* callbacks);
  awaitable<std::optional<action>> attempt(message info, const detail::connection_callbacks* callbacks);
  action connected(action result);
  action schedule(std::optional<duration> delay, std::optional<duration> idle_timeout, std::string reason);
  void cancel_timer() noexcept;
  void enter(connection_state next, std::string reason,
             std::chrono::steady_clock::time_point now = std::chrono::steady_clock::now());

  connection_options options_;
  backoff_random random_;
  connection_state state_ = connection_state::disconnected;
  std::uint32_t failures_ = 0;
  std::chrono::steady_clock::time_point since_{};
  std::chrono::steady_clock::time_point retry_at_{};
  duration last_delay_{};
  std::uint64_t generation_ = 0; // of the backoff timer; a message from an older one is stale
  timer_ref timer_;
};

namespace detail {

/// The backoff timer's message to its connection.
struct backoff_timer {
  std::uint64_t generation;
};

class connection_access {
public:
  static handler_outcome run(connection& c, action a, const connection_callbacks& cb) {
    return c.run(std::move(a), cb);
  }
  static handler_outcome on_timer(connection& c, std::uint64_t generation, const connection_callbacks& cb) {
    return c.on_timer(generation, cb);
  }
};

template <class S>
handler_outcome call_connect(connection& base, message&& info) {
  S& server = static_cast<S&>(base);
  if constexpr (requires(S& s, message m) { s.connect(std::move(m)); }) {
    return run_action_handler([&]() -> decltype(auto) { return server.connect(std::move(info)); });
  } else {
    static_assert(requires(S& s) { s.connect(); }, "a grove::connection needs connect(grove::message) or connect()");
    return run_action_handler([&]() -> decltype(auto) { return server.connect(); });
  }
}

template <class S>
handler_outcome call_disconnect(connection& base, message&& info) {
  S& server = static_cast<S&>(base);
  if constexpr (requires(S& s, message m) { s.disconnect(std::move(m)); }) {
    return run_action_handler([&]() -> decltype(auto) { return server.disconnect(std::move(info)); });
  } else {
    return run_action_handler([&]() -> decltype(auto) { return server.disconnect(); });
  }
}

template <class S>
constexpr connection_callbacks make_connection_callbacks() {
  if constexpr (requires(S& s, message m) { s.disconnect(std::move(m)); } || requires(S& s) { s.disconnect(); }) {
    return {&call_connect<S>, &call_disconnect<S>};
  } else {
    return {&call_connect<S>, nullptr};
  }
}

template <class S>
inline constexpr connection_callbacks connection_callbacks_for = make_connection_callbacks<S>();

/// Plugs connections into the gen_server loop: the backoff timer's
/// messages are theirs, and connect / backoff / disconnect run here.
template <class S>
  requires std::derived_from<S, connection>
struct server_extension<S> {
  static constexpr bool enabled = true;

  static handler_outcome info(gen_server& base, message&& m) {
    if (auto* t = m.get_if<backoff_timer>()) {
      return connection_access::on_timer(static_cast<S&>(base), t->generation, connection_callbacks_for<S>);
    }
    return hook_info<S>(base, std::move(m));
  }

  static handler_outcome directive(gen_server& base, action&& a) {
    return connection_access::run(static_cast<S&>(base), std::move(a), connection_callbacks_for<S>);
  }
};

} // namespace detail

} // namespace grove
