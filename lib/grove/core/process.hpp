// grove/core/process.hpp — processes: spawn, messages, links, monitors, timers.
//
//   grove::pid echo = grove::spawn(node, [](grove::process& self) -> grove::awaitable<void> {
//     for (;;) {
//       grove::message m = co_await self.receive();
//       if (auto* p = m.get_if<ping>()) grove::send(p->reply_to, pong{});
//     }
//   });
//
// A process lives on one worker of its node for its whole life and handles
// one message at a time, so its state needs no lock. Its body is a coroutine
// taking `process&`; the body object (and anything a lambda body captures)
// lives exactly as long as the process. The body returns (normal exit), or
// returns an exit_reason, or throws (exit with an error reason carrying the
// exception's text). It never takes the node down.
//
// Messages from one sender arrive in the order they were sent. Sends to a
// process that is gone are dropped without error.
#pragma once

#include <grove/core/exit_reason.hpp>
#include <grove/core/message.hpp>
#include <grove/core/pid.hpp>

#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <concepts>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <optional>
#include <type_traits>
#include <utility>
#include <variant>

namespace grove {

template <class T>
using awaitable = boost::asio::awaitable<T>;
using duration = std::chrono::steady_clock::duration;

class node;
class process;
namespace detail {
class process_state;
class node_state;
struct timer_state;
} // namespace detail

/// What a bounded mailbox does with one message too many.
enum class overflow_policy : std::uint8_t {
  reject,      ///< drop the new message (a call fails with errc::mailbox_full)
  drop_oldest, ///< drop the oldest queued message (a call there fails with mailbox_full)
};

struct mailbox_options {
  std::size_t capacity = 0;                        ///< most queued messages; 0 = unbounded (default)
  overflow_policy overflow = overflow_policy::reject; ///< what a full mailbox does (default reject)
  friend bool operator==(const mailbox_options&, const mailbox_options&) = default;
};

/// Where a process started without spawn_options::worker runs, as the
/// process that starts it says (process::set_child_placement).
enum class placement : std::uint8_t {
  /// On the starter's worker: a caller and the server it starts exchange
  /// messages without waking another thread (CAF and Erlang place a spawned
  /// process the same way; grove does not migrate processes afterwards).
  with_starter,
  /// Round-robin over the node's workers: what supervisors, dynamic
  /// supervisors and the tenant manager use, since they lay out long-lived
  /// processes that should share the CPUs.
  round_robin,
};

struct spawn_options {
  /// Worker index to run on. Default: as the starting process's
  /// child_placement says (its own worker unless it asked for round-robin);
  /// round-robin when not started from a process of this node (main(),
  /// node::block_on outside a process, another node's process).
  std::optional<std::size_t> worker{};
  bool link = false;                 ///< link to the calling process (default no)
  bool trap_exit = false;            ///< exit signals become exit_message messages (default no)
  mailbox_options mailbox{};         ///< mailbox bound (default unbounded)
};

/// Names one monitor; compare it with down_message::ref.
struct monitor_ref {
  pid target{};
  std::uint64_t id = 0;
  friend bool operator==(const monitor_ref&, const monitor_ref&) = default;
};

/// Delivered once to the watcher when a monitored process ends (reason
/// noproc if it was already gone when the monitor was set).
struct down_message {
  monitor_ref ref{};
  pid process{};
  exit_reason reason{};
};

/// What a trapping process receives instead of dying from an exit signal.
struct exit_message {
  pid from{}; ///< the linked process that ended, the sender of exit(), or null for the node
  exit_reason reason{};
};

/// Handle of a send_after timer. Copyable; cancel with cancel_timer().
class timer_ref {
public:
  timer_ref() = default;
  explicit operator bool() const noexcept { return state_ != nullptr; }
  // Library-internal.
  explicit timer_ref(std::shared_ptr<detail::timer_state> s) : state_(std::move(s)) {}
  const std::shared_ptr<detail::timer_state>& state() const noexcept { return state_; }

private:
  std::shared_ptr<detail::timer_state> state_;
};

/// A snapshot of one process, as node::processes() gives it.
struct process_info {
  pid id{};
  pid parent{};               ///< the process that spawned it (null: spawned from outside any process)
  std::string label{};        ///< what process::set_label gave (default empty)
  std::string_view kind{};    ///< "process", "gen_server", "supervisor" or "dynamic_supervisor"
  std::size_t mailbox_size = 0;
  std::size_t links = 0;      ///< processes linked to it
  std::size_t monitors = 0;   ///< monitors it holds on others
  bool trap_exit = false;
};

/// The running process, as its own body sees it. Use it only from inside
/// that process (its body and what the body awaits).
class process {
public:
  explicit process(detail::process_state& state) noexcept : state_(&state) {}

  pid self() const noexcept;
  grove::node& node() const noexcept;

  /// The next message, in arrival order. Calls and casts addressed to a
  /// gen_server are not for plain processes: they are answered with
  /// errc::wrong_server and skipped.
  awaitable<message> receive();
  /// Like receive(), or std::nullopt once `timeout` passed with no message.
  awaitable<std::optional<message>> receive_for(duration timeout);

  /// Trap exits: exit signals (other than kill) arrive as exit_message.
  void trap_exit(bool on) noexcept;
  bool traps_exit() const noexcept;

  /// Links both ways. Linking to a process that is gone delivers an exit
  /// signal with reason noproc at once.
  void link(const pid& other);
  void unlink(const pid& other);
  /// One down_message when `target` ends. demonitor() guarantees none arrives
  /// afterwards, even one already queued; false if the monitor was not active.
  monitor_ref monitor(const pid& target);
  bool demonitor(const monitor_ref& ref);

  std::size_t mailbox_size() const noexcept;

  /// A short text saying what this process is for ("erps session from
  /// 127.0.0.1:51234"), shown by node::processes() and the admin endpoint's
  /// /tree, as OTP's proc_lib:set_label. Default: none.
  void set_label(std::string label);

  /// How long a node shutdown gives this process, when it is a root (not
  /// linked to a live parent), between its shutdown exit and a kill: its
  /// own shutdown policy. Default: node_options::shutdown_grace. A
  /// supervisor sets duration::max() (as long as its children's policies
  /// take, as OTP's supervisors are `infinity`).
  void set_shutdown_timeout(duration limit) noexcept;

  /// Where the processes this one starts run when their spawn or start
  /// options name no worker. Default: node_options::child_placement
  /// (with_starter unless the node says otherwise).
  void set_child_placement(placement p) noexcept;
  placement child_placement() const noexcept;

  detail::process_state& state() const noexcept { return *state_; }

private:
  detail::process_state* state_;
};

namespace detail {
/// What process_info::kind says of `p` (a static string), for the layers
/// that run a kind of process: "supervisor", ...
void set_kind(process& p, const char* kind) noexcept;

class server_loop;
struct server_loop_deleter {
  void operator()(server_loop* loop) const noexcept;
};
/// A gen_server's loop (gen_server.cpp), run by the process's bottom
/// coroutine frame itself: one coroutine frame less per server.
using server_run = std::unique_ptr<server_loop, server_loop_deleter>;

/// Type-erased process body; owned by the process for its whole life.
class body_base {
public:
  using coroutine = std::variant<awaitable<void>, awaitable<exit_reason>, server_run>;
  virtual ~body_base() = default;
  virtual coroutine run(process& self) = 0;
};

template <class F>
class body_impl final : public body_base {
public:
  explicit body_impl(F f) : f_(std::move(f)) {}
  coroutine run(process& self) override { return f_(self); }

private:
  F f_;
};

/// With `monitor`, the calling process also monitors the new one from
/// before it runs, and *monitor is that monitor.
pid spawn(node& n, std::unique_ptr<body_base> body, const spawn_options& options, monitor_ref* monitor = nullptr);

/// spawn() for the library's own bodies, which may return any
/// body_base::coroutine (a gen_server's returns its server_run).
template <class F>
pid spawn_body(node& n, F body, const spawn_options& options, monitor_ref* monitor = nullptr) {
  return spawn(n, std::make_unique<body_impl<F>>(std::move(body)), options, monitor);
}
} // namespace detail

template <class F>
concept process_function = std::invocable<F&, process&> &&
                           (std::same_as<std::invoke_result_t<F&, process&>, awaitable<void>> ||
                            std::same_as<std::invoke_result_t<F&, process&>, awaitable<exit_reason>>);

/// Starts a process running `body`. Any thread. Throws grove::error
/// (node_stopped) once the node is shutting down, and (not_in_process) when
/// options.link is set outside a process.
template <process_function F>
pid spawn(node& n, F body, const spawn_options& options = {}) {
  return detail::spawn(n, std::make_unique<detail::body_impl<F>>(std::move(body)), options);
}

/// spawn(), and a monitor on the new process set before it runs (Erlang's
/// spawn_monitor): one down_message with its real reason however soon it
/// ends. From a process only (grove::error not_in_process otherwise).
template <process_function F>
std::pair<pid, monitor_ref> spawn_monitor(node& n, F body, const spawn_options& options = {}) {
  monitor_ref ref;
  pid p = detail::spawn(n, std::make_unique<detail::body_impl<F>>(std::move(body)), options, &ref);
  return {p, ref};
}

/// The calling process's demonitor (process::demonitor), for code that has
/// no process& at hand; false outside a process.
bool demonitor(const monitor_ref& ref);

/// Sends `m` to `to`. Any thread. Dropped if `to` is gone (or its bounded
/// mailbox is full).
void send(const pid& to, message m);

/// Sends an exit signal. `kill` always ends the target (reason killed);
/// other reasons end a non-trapping target unless normal, and reach a
/// trapping target as an exit_message. Any thread.
void exit(const pid& target, exit_reason reason);

/// Whether `p` is alive. Any thread; lock-free.
bool alive(const pid& p) noexcept;

/// Queued messages of `p` (0 if it is gone). Any thread; a snapshot.
std::size_t mailbox_size(const pid& p) noexcept;

/// The calling process, or the null pid outside any process.
pid self() noexcept;

/// Sends `m` to `to` after `delay`. Any thread.
timer_ref send_after(const pid& to, duration delay, message m);

/// Cancels a timer. Returns true if the message will never be handled: the
/// timer had not fired, or (when called from the target process) its message
/// was still queued and is now removed. false if it was already handled,
/// already cancelled, or fired into another process's mailbox.
bool cancel_timer(const timer_ref& timer);

} // namespace grove

template <>
struct std::hash<grove::monitor_ref> {
  std::size_t operator()(const grove::monitor_ref& r) const noexcept { return std::hash<std::uint64_t>{}(r.id); }
};
