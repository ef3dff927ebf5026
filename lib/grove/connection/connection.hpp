// grove/connection/connection.hpp — Elixir's Connection behaviour: a
// gen_server with two more callbacks, connect and disconnect, and a backoff
// timer between them.
//
//   class db_client : public grove::connection {
//   public:
//     grove::action init() { return grove::connect(); }                  // connect before any message
//     grove::awaitable<grove::connect_result> connect(grove::message) {  // may co_await real I/O
//       if (co_await try_open()) co_return grove::connect_result{};       // connected
//       co_return grove::backoff();                                       // the policy's next delay
//     }
//     grove::disconnect_result disconnect(grove::message) {
//       close();
//       return grove::connect();                                          // reconnect now
//     }
//     grove::awaitable<grove::call_result<row>> handle_call(query q);
//   };
//
// Results, as Connection's. connect() and disconnect() return their own
// types, so returning what they may not is a compile error:
//   connect(info)     -> connect_result:    {} (connected) | backoff([d]) | stop(r)
//   disconnect(info)  -> disconnect_result: connect(info) | backoff([d]) | noconnect() / {} (stay down) | stop(r)
//   init()            -> action: connect(info) | backoff([d]) | {} (start idle) | stop(r) | ignore()
//   handle_call/cast/info/continue -> what a gen_server's may, plus connect(info)
//                     or disconnect(info) (a call's with or without its reply);
//                     while not connected also backoff([d]) or noconnect().
//                     These depend on the state, so they are checked when they
//                     run (errc::bad_directive: a backoff while connected).
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
// While not connected, calls fail at once with connection_errc::disconnected
// or wait for the connection up to their timeout, and are then served in
// arrival order before any newer message: per connection
// (connection_options::calls_while_disconnected) or per call
// (call_options::if_not_ready). A request type that must be answered either
// way declares `static constexpr bool needs_ready = false;`. Casts and plain
// messages are always handled. A connection that learns of a dropped link
// through a message (its reader's) may define `bool ready_for_calls() const`:
// while it returns false, calls are gated as if not connected, so a call
// that arrives between the drop and that message waits or fails by its
// policy instead of reaching handle_call with no link to send on.
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
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

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

// -- what the callbacks return ----------------------------------------------
//
// Each directive is its own type, and connect() and disconnect() each return
// a type that admits only what that callback may: a connect() that returns
// grove::connect() or a disconnect() that returns grove::disconnect() does
// not compile. A directive also converts to grove::action, for init and the
// gen_server handlers; there what it may do depends on the state (a backoff
// while connected is refused with errc::bad_directive at run time).

namespace detail {
/// What every directive has: an idle timeout to add, and the conversion to
/// grove::action for init and the handlers.
template <class Directive>
class directive_base {
public:
  /// If no message arrives within `d` after this step, handle_info gets a
  /// timeout_message.
  Directive&& with_idle_timeout(duration d) && {
    idle_timeout_ = d;
    return static_cast<Directive&&>(*this);
  }
  const std::optional<duration>& idle_timeout() const noexcept { return idle_timeout_; }
  operator action() &&; // NOLINT: `return grove::connect();` from a handler

private:
  std::optional<duration> idle_timeout_;
};
} // namespace detail

/// grove::connect(info): run connect(info) now.
struct connect_directive : detail::directive_base<connect_directive> {
  explicit connect_directive(message i) : info(std::move(i)) {}
  message info;
};
/// grove::backoff() / backoff(d): wait, then connect(backoff_elapsed{}).
struct backoff_directive : detail::directive_base<backoff_directive> {
  explicit backoff_directive(std::optional<duration> d) : delay(d) {}
  std::optional<duration> delay; ///< none: the policy's next delay
};
/// grove::disconnect(info): run disconnect(info) now.
struct disconnect_directive : detail::directive_base<disconnect_directive> {
  explicit disconnect_directive(message i) : info(std::move(i)) {}
  message info;
};
/// grove::noconnect(): stay disconnected until a handler asks for connect().
struct noconnect_directive : detail::directive_base<noconnect_directive> {};

/// Run connect(info) now (from init, a handler, or disconnect).
inline connect_directive connect(message info = {}) { return connect_directive(std::move(info)); }
/// Wait the backoff policy's next delay, then connect(backoff_elapsed{})
/// (from init, connect or disconnect; from a handler while not connected).
inline backoff_directive backoff() { return backoff_directive(std::nullopt); }
/// Wait `delay`, then connect(backoff_elapsed{}).
inline backoff_directive backoff(duration delay) { return backoff_directive(delay); }
/// Run disconnect(info) now (from a handler).
inline disconnect_directive disconnect(message info = {}) { return disconnect_directive(std::move(info)); }
/// From disconnect: stay disconnected, with no attempt scheduled, until a
/// handler asks for connect() (also from a handler while not connected).
inline noconnect_directive noconnect() { return {}; }

namespace detail {
/// Any directive, as a handler's action carries it.
using any_directive = std::variant<connect_directive, backoff_directive, disconnect_directive, noconnect_directive>;

template <class Directive>
directive_base<Directive>::operator action() && {
  std::optional<duration> idle = idle_timeout_;
  action a = directive_action(message(any_directive(static_cast<Directive&&>(*this))));
  if (idle) return std::move(a).with_idle_timeout(*idle);
  return a;
}
} // namespace detail

/// What connect(info) returns:
///   {} or an action           connected; then that action's step (continue_with,
///                             an idle timeout), as a handler's
///   grove::backoff([d])       not connected: try again after the delay
///   grove::stop(r)            give up: the connection ends with r
class connect_result {
public:
  using alternatives = std::variant<action, backoff_directive>;

  connect_result() = default;
  connect_result(action then) : value_(std::move(then)) {}         // NOLINT
  connect_result(backoff_directive b) : value_(std::move(b)) {}    // NOLINT
  connect_result(connect_directive) = delete;    // connect() never returns grove::connect(): {} when connected, grove::backoff() to retry
  connect_result(disconnect_directive) = delete; // connect() never returns grove::disconnect(): {}, grove::backoff() or grove::stop(r)
  connect_result(noconnect_directive) = delete;  // connect() never returns grove::noconnect(): grove::backoff(infinity) waits for a handler's connect()

  alternatives& value() noexcept { return value_; }

private:
  alternatives value_;
};

/// What disconnect(info) returns:
///   grove::connect(info)      reconnect at once
///   grove::backoff([d])       reconnect after the delay
///   grove::noconnect() or {}  stay down until a handler asks for connect()
///   grove::stop(r)            the connection ends with r
class disconnect_result {
public:
  using alternatives = std::variant<action, connect_directive, backoff_directive, noconnect_directive>;

  disconnect_result() = default;
  disconnect_result(action then) : value_(std::move(then)) {}              // NOLINT
  disconnect_result(connect_directive c) : value_(std::move(c)) {}         // NOLINT
  disconnect_result(backoff_directive b) : value_(std::move(b)) {}         // NOLINT
  disconnect_result(noconnect_directive n) : value_(std::move(n)) {}       // NOLINT
  disconnect_result(disconnect_directive) = delete; // disconnect() never returns grove::disconnect(): it is the disconnect

  alternatives& value() noexcept { return value_; }

private:
  alternatives value_;
};

class connection;

namespace detail {

/// A callback's result: ready now, or to be awaited.
template <class T>
using callback_outcome = std::variant<T, awaitable<T>>;

/// The user's connect and disconnect, for one server type.
struct connection_callbacks {
  callback_outcome<connect_result> (*connect)(connection&, message&&);
  callback_outcome<disconnect_result> (*disconnect)(connection&, message&&); // nullptr: none (a disconnect backs off)
};

class connection_access;
struct connection_step;
struct connection_series;

} // namespace detail

/// Base of every connection process. Derive from it as from gen_server and
/// add connect() (and usually disconnect()); start it with grove::start.
class connection : public gen_server {
public:
  explicit connection(connection_options options = {});
  ~connection() override;

  /// Where this connection stands. From its own handlers.
  connection_state state() const noexcept { return state_; }
  /// Connects that failed since the last success.
  std::uint32_t failures() const noexcept { return failures_; }
  /// When the pending backoff runs out (backing_off only).
  std::chrono::steady_clock::time_point retry_at() const noexcept { return retry_at_; }

private:
  friend class detail::connection_access;
  using step = detail::connection_step;

  detail::handler_outcome run(action a, const detail::connection_callbacks& callbacks);
  detail::handler_outcome on_timer(std::uint64_t generation, const detail::connection_callbacks& callbacks);
  detail::handler_outcome start(step first, const detail::connection_callbacks& callbacks);
  awaitable<action> drive(step next, const detail::connection_callbacks* callbacks);
  awaitable<std::optional<connect_result>> attempt(message info, const detail::connection_callbacks* callbacks);
  awaitable<disconnect_result> run_disconnect(message info, const detail::connection_callbacks* callbacks);
  step on_request(detail::any_directive directive, std::optional<duration> idle);
  step after_connect(connect_result result, std::optional<duration> idle);
  step after_disconnect(disconnect_result result, std::optional<duration> idle);
  step connect_timed_out(std::optional<duration> idle);
  action connected(action result);
  action schedule(std::optional<duration> delay, std::optional<duration> idle_timeout, std::string reason);
  void cancel_timer() noexcept;
  void enter(connection_state next, std::string reason,
             std::chrono::steady_clock::time_point now = std::chrono::steady_clock::now());

  // The call gate: while not connected, calls fail or wait here.
  bool admit(detail::envelope& call, bool ready);
  bool release(detail::envelope& out, bool ready);
  void hold(detail::envelope call);

  connection_options options_;
  backoff_random random_;
  connection_state state_ = connection_state::disconnected;
  std::uint32_t failures_ = 0;
  std::chrono::steady_clock::time_point since_{};
  std::chrono::steady_clock::time_point retry_at_{};
  duration last_delay_{};
  std::uint64_t generation_ = 0; // of the backoff timer; a message from an older one is stale
  timer_ref timer_;
  // Calls waiting for the link, in arrival order from held_head_ on. A
  // vector, not a deque: an empty deque allocates.
  std::vector<detail::envelope> held_;
  std::size_t held_head_ = 0;
  std::size_t held_compact_at_ = 16;
  // Built-in metrics, when the node has a registry: found at the first
  // state change; the state this connection is counted in.
  std::shared_ptr<const detail::connection_series> metrics_;
  bool metrics_looked_up_ = false;
};

} // namespace grove

#include <grove/connection/detail/connection_impl.hpp>
