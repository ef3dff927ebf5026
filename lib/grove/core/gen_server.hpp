// grove/core/gen_server.hpp — OTP's gen_server: a process that serves typed
// calls and casts.
//
//   struct get { using reply_type = int; };
//   struct add { int n; };
//
//   class counter : public grove::gen_server {
//   public:
//     int handle_call(get) { return n_; }
//     void handle_cast(add a) { n_ += a.n; }
//   private:
//     int n_ = 0;
//   };
//
//   auto ref = co_await grove::start<counter>(node);
//   ref.cast(add{2});
//   int n = co_await ref.call(get{});   // n == 2; the type comes from get::reply_type
//
// Exclusivity: a server handles one message at a time. A handler may
// co_await (a call to another server, a timer, I/O); while it does, this
// server takes no other message — its state is never seen half-updated and
// needs no lock. (So two servers that call each other synchronously will
// deadlock, as in OTP; use a cast or a deferred reply to break the cycle.)
//
// Handlers (all optional but those the server's requests need). Each may be a
// plain function or a coroutine returning awaitable<...> of the same thing.
//   init()                         -> void | action       (stop(reason): start fails with it; ignore(): start gives a null ref)
//   handle_call(Req[, from<R>])    -> R | call_result<R>  (R = Req::reply_type)
//   handle_cast(Req)               -> void | action
//   handle_info(message)           -> void | action       (plain sends, exit_message, down_message, timeout_message)
//   handle_continue(message)       -> void | action       (after continue_with(value))
//   terminate(const exit_reason&)  -> void                (runs when the server stops or a handler throws)
//
// g++ 12: do not write a braced aggregate temporary with a non-trivial
// member inside a co_await (`co_await ref.call(get{"key"})` frees the string
// twice, a compiler bug); name the request first, or give it a constructor.
//
// A call to a request type the server has no handle_call for does not
// compile. A handler that throws ends the server with an error reason
// (the exception's text) after terminate ran; callers waiting on it get
// errc::exited with that reason, the node's crash_report hook names it, and
// nothing else on the node is disturbed.
#pragma once

#include <grove/core/detail/envelope.hpp>
#include <grove/core/detail/reply_slot.hpp>
#include <grove/core/error.hpp>
#include <grove/core/message.hpp>
#include <grove/core/node.hpp>
#include <grove/core/process.hpp>

#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <concepts>
#include <memory>
#include <optional>
#include <tuple>
#include <type_traits>
#include <utility>

namespace grove {

/// The timeout of a call unless the caller gives one (OTP's 5 s).
inline constexpr duration default_call_timeout = std::chrono::seconds(5);
/// Wait without a deadline.
inline constexpr duration infinity = duration::max();

/// handle_info receives this when an idle timeout passed with no message.
struct timeout_message {};

class action;
namespace detail {
/// An action carrying a directive for the server's extension (the
/// connection layer's connect / backoff / disconnect).
action directive_action(message directive);
} // namespace detail

/// What a server does once a handler returns: go on (the default), stop,
/// run handle_continue first, and/or wait at most an idle timeout.
class action {
public:
  action() = default;

  bool stops() const noexcept { return stop_.has_value(); }
  const exit_reason& reason() const noexcept { return *stop_; }
  /// Whether one of continue_with, a directive or ignore is pending.
  bool has_step() const noexcept { return step_ != step::none; }
  bool continues() const noexcept { return step_ == step::continue_with; }
  bool ignores() const noexcept { return step_ == step::ignore; }
  bool has_directive() const noexcept { return step_ == step::directive; }
  const std::optional<duration>& idle_timeout() const noexcept { return timeout_; }

  /// If no message arrives within `d` after this step, handle_info gets a
  /// timeout_message (OTP's {noreply, State, Timeout}).
  action&& with_idle_timeout(duration d) && {
    timeout_ = d;
    return std::move(*this);
  }

  /// Back to "go on" (in place: assigning a fresh action makes g++ 12 at
  /// -O1 warn, falsely, of an uninitialised exit_reason).
  void clear() noexcept {
    stop_.reset();
    value_.reset();
    timeout_.reset();
    step_ = step::none;
  }

  message take_continue() noexcept { return take_step(); }
  message take_directive() noexcept { return take_step(); }

  friend action stop(exit_reason reason);
  friend action ignore();
  template <class T>
  friend action continue_with(T value);
  friend action detail::directive_action(message directive);

private:
  // continue_with, a directive and ignore exclude each other, so one
  // message holds the value of whichever it is (an action is moved a few
  // times per message handled: it stays small).
  enum class step : std::uint8_t { none, continue_with, directive, ignore };

  message take_step() noexcept {
    message m = std::move(value_);
    step_ = step::none;
    return m;
  }

  std::optional<exit_reason> stop_;
  message value_;
  std::optional<duration> timeout_;
  step step_ = step::none;
};

/// Stop the server with `reason` (terminate runs first).
inline action stop(exit_reason reason = exit_reason::normal()) {
  action a;
  a.stop_ = std::move(reason);
  return a;
}

/// From init only: do not start, without an error (OTP's `ignore`). start()
/// returns a null server_ref, the process ends with reason normal, and a
/// supervisor counts the child as ignored.
inline action ignore() {
  action a;
  a.step_ = action::step::ignore;
  return a;
}

inline action detail::directive_action(message directive) {
  action a;
  a.value_ = std::move(directive);
  a.step_ = action::step::directive;
  return a;
}

/// Run handle_continue(value) before the next message (OTP's {continue, V}).
template <class T>
action continue_with(T value) {
  action a;
  a.value_ = message(std::move(value));
  a.step_ = action::step::continue_with;
  return a;
}

/// Keep going but answer the caller later, through its from<R> handle.
struct noreply_t {
  explicit noreply_t() = default;
};
inline constexpr noreply_t noreply{};

/// What handle_call returns when a plain R will not do:
///   return value;                          reply
///   return {value, grove::stop(reason)};   reply, then stop
///   return grove::noreply;                 reply later through from<R>
///   return grove::stop(reason);            stop without a reply (the caller gets errc::exited)
///   return {value, grove::continue_with(x)};
template <class R>
class call_result {
public:
  call_result(R value) : reply_(std::move(value)) {} // NOLINT: `return value;`
  call_result(R value, action then) : reply_(std::move(value)), then_(std::move(then)) {}
  call_result(noreply_t) {} // NOLINT
  call_result(noreply_t, action then) : then_(std::move(then)) {}
  call_result(action then) : then_(std::move(then)) {} // NOLINT: `return grove::stop(r);`

  std::optional<R>& reply() noexcept { return reply_; }
  action& then() noexcept { return then_; }

private:
  std::optional<R> reply_;
  action then_;
};

/// Where a call came from; answer it with reply(), now or later, from any
/// thread or process. Copyable; the first reply wins and later ones (or one
/// after the caller gave up) are dropped.
template <class R>
class from {
public:
  from() = default;
  explicit from(std::shared_ptr<detail::reply_slot<R>> slot) noexcept : slot_(std::move(slot)) {}

  /// true if this reply reached the caller's slot (false: already answered,
  /// timed out, or the caller is gone).
  bool reply(R value) const { return slot_ && slot_->set(std::move(value)); }
  /// Answers with an error instead: the caller's call throws grove::error
  /// with `code`, of any layer's category (a connection fails calls in
  /// flight with connection_errc::disconnected when its link drops). Same
  /// first-answer-wins rule as reply().
  bool fail(std::error_code code) const { return slot_ && slot_->fail(code); }
  /// fail() with a text the caller's grove::error carries in what() (an
  /// erps client fails a call the remote side refused with erps_errc::remote
  /// and the remote error's text).
  bool fail(std::error_code code, std::string detail) const {
    return slot_ && slot_->fail(code, exit_reason::error(std::move(detail)));
  }
  /// Whether the call still waits for an answer (false once answered,
  /// failed, timed out, or its caller is gone).
  bool pending() const noexcept { return slot_ && !slot_->completed(); }
  /// The calling process (null for a caller outside any process).
  pid caller() const noexcept { return slot_ ? slot_->caller() : pid{}; }
  explicit operator bool() const noexcept { return slot_ != nullptr; }

private:
  std::shared_ptr<detail::reply_slot<R>> slot_;
};

/// What a call does when it reaches a server that is not ready (a
/// connection while it is down; see gen_server::set_ready).
enum class when_not_ready : std::uint8_t {
  server_default, ///< as the server chose
  fail,           ///< fail at once with the server's not-ready error (a connection's: connection_errc::disconnected)
  wait,           ///< wait until the server is ready again, up to the call's timeout
};

/// How one call behaves.
struct call_options {
  duration timeout = default_call_timeout;                   ///< give up after this long (default 5 s)
  when_not_ready if_not_ready = when_not_ready::server_default; ///< while the server is not ready (default: the server's choice)
};

class gen_server;

namespace detail {

class server_access;
void bind(gen_server& server, process& self);

template <class T>
struct is_awaitable : std::false_type {};
template <class T>
struct is_awaitable<boost::asio::awaitable<T>> : std::true_type {};
template <class T>
struct awaited {
  using type = T;
};
template <class T>
struct awaited<boost::asio::awaitable<T>> {
  using type = T;
};

/// A handler's result: ready now (no coroutine frame) or to be awaited.
class handler_outcome {
public:
  handler_outcome(action a) : ready_(std::move(a)) {} // NOLINT
  handler_outcome(awaitable<action> a) : pending_(std::move(a)) {} // NOLINT

  bool ready() const noexcept { return ready_.has_value(); }
  action take_ready() noexcept { return std::move(*ready_); }
  awaitable<action> take_pending() noexcept { return std::move(*pending_); }

private:
  std::optional<action> ready_;
  std::optional<awaitable<action>> pending_;
};

template <class S>
inline constexpr char server_tag = 0;

inline action to_action() { return {}; }
inline action to_action(action a) { return a; }

inline awaitable<action> await_void(awaitable<void> work) {
  co_await std::move(work);
  co_return action{};
}

/// Normalises void / action / awaitable<void> / awaitable<action>.
template <class F>
handler_outcome run_action_handler(F&& f) {
  using result = std::invoke_result_t<F&&>;
  if constexpr (std::is_same_v<result, void>) {
    std::forward<F>(f)();
    return action{};
  } else if constexpr (std::is_same_v<result, action>) {
    return std::forward<F>(f)();
  } else if constexpr (std::is_same_v<result, awaitable<void>>) {
    return await_void(std::forward<F>(f)());
  } else {
    static_assert(std::is_same_v<result, awaitable<action>>,
                  "a gen_server handler returns void, grove::action, or awaitable of either");
    return std::forward<F>(f)();
  }
}

template <class Req>
using reply_of = typename Req::reply_type;

template <class S, class Req>
concept call_with_from = requires(S& s, Req r, from<reply_of<Req>> f) { s.handle_call(std::move(r), f); };
template <class S, class Req>
concept call_without_from = requires(S& s, Req r) { s.handle_call(std::move(r)); };

template <class S, class Req>
decltype(auto) invoke_call(S& s, Req&& req, from<reply_of<Req>>& f) {
  if constexpr (call_with_from<S, Req>) {
    return s.handle_call(std::move(req), f);
  } else {
    return s.handle_call(std::move(req));
  }
}

template <class R>
action settle_call(call_result<R> result, const from<R>& f) {
  if (result.reply()) f.reply(std::move(*result.reply()));
  return std::move(result.then());
}

template <class R, class X>
awaitable<action> settle_call_later(awaitable<X> work, from<R> f) {
  call_result<R> result = co_await std::move(work);
  co_return settle_call(std::move(result), f);
}

template <class S, class Req>
handler_outcome dispatch_call(gen_server& base, envelope& env) {
  using R = reply_of<Req>;
  S& server = static_cast<S&>(base);
  from<R> f(std::static_pointer_cast<reply_slot<R>>(env.reply));
  Req& request = *env.body.get_if<Req>();
  using result = decltype(invoke_call(server, std::move(request), f));
  using value = typename awaited<std::decay_t<result>>::type;
  static_assert(std::is_convertible_v<value, call_result<R>>,
                "handle_call(Req) must return Req::reply_type or call_result<Req::reply_type> (or awaitable of either)");
  if constexpr (is_awaitable<std::decay_t<result>>::value) {
    return settle_call_later<R, value>(invoke_call(server, std::move(request), f), f);
  } else {
    return settle_call<R>(call_result<R>(invoke_call(server, std::move(request), f)), f);
  }
}

template <class S, class Req>
handler_outcome dispatch_cast(gen_server& base, envelope& env) {
  S& server = static_cast<S&>(base);
  Req& request = *env.body.get_if<Req>();
  return run_action_handler([&]() -> decltype(auto) { return server.handle_cast(std::move(request)); });
}

/// The per-server-type entry points the (non-template) server loop uses.
struct server_hooks {
  const void* tag;
  handler_outcome (*info)(gen_server&, message&&);
  handler_outcome (*continue_)(gen_server&, message&&); // nullptr: the server has none
  handler_outcome (*terminate)(gen_server&, const exit_reason&);
  handler_outcome (*directive)(gen_server&, action&&);  // nullptr: the server has no extension
};

/// The seam through which a layer builds a behaviour on gen_server (the
/// connection layer's connect / disconnect). A layer specialises it for its
/// servers, with `enabled = true` and two functions:
///   static handler_outcome info(gen_server&, message&&);  sees every plain message first
///   static handler_outcome directive(gen_server&, action&&); runs an action made
///                                     with directive_action(), before the next message
template <class S>
struct server_extension {
  static constexpr bool enabled = false;
};

template <class S>
handler_outcome hook_info(gen_server& base, message&& m) {
  if constexpr (requires(S& s, message mm) { s.handle_info(std::move(mm)); }) {
    S& server = static_cast<S&>(base);
    return run_action_handler([&]() -> decltype(auto) { return server.handle_info(std::move(m)); });
  } else {
    return action{}; // unhandled plain messages are dropped, as OTP logs and drops them
  }
}

template <class S>
handler_outcome hook_continue(gen_server& base, message&& m) {
  S& server = static_cast<S&>(base);
  return run_action_handler([&]() -> decltype(auto) { return server.handle_continue(std::move(m)); });
}

template <class S>
handler_outcome hook_terminate(gen_server& base, const exit_reason& reason) {
  if constexpr (requires(S& s) { s.terminate(reason); }) {
    S& server = static_cast<S&>(base);
    return run_action_handler([&]() -> decltype(auto) { return server.terminate(reason); });
  } else {
    return action{};
  }
}

template <class S>
constexpr auto continue_hook() -> handler_outcome (*)(gen_server&, message&&) {
  if constexpr (requires(S& s, message m) { s.handle_continue(std::move(m)); }) {
    return &hook_continue<S>;
  } else {
    return nullptr;
  }
}

template <class S>
constexpr server_hooks make_hooks() {
  if constexpr (server_extension<S>::enabled) {
    return {&server_tag<S>, &server_extension<S>::info, continue_hook<S>(), &hook_terminate<S>,
            &server_extension<S>::directive};
  } else {
    return {&server_tag<S>, &hook_info<S>, continue_hook<S>(), &hook_terminate<S>, nullptr};
  }
}

template <class S>
inline constexpr server_hooks hooks_for = make_hooks<S>();

/// Envelope readiness value of a request type that is served whether or not
/// the server is ready.
inline constexpr std::uint8_t served_when_not_ready = 3;

template <class Req>
constexpr bool needs_ready() {
  if constexpr (requires { Req::needs_ready; }) {
    return Req::needs_ready;
  } else {
    return true;
  }
}

/// Sends a call and waits for its slot to complete (reply, timeout, target
/// exit, or the caller being killed). Implemented in gen_server.cpp.
awaitable<void> await_call(pid target, envelope env, duration timeout);

/// Waits until `target` has ended and returns its exit reason (noproc if it
/// was already gone), or std::nullopt once `timeout` passed. With `signal`,
/// first sends it as exit(target, *signal) from the calling process, after
/// the wait is in place, so the reason the target ends with is the one
/// seen. Throws grove::error (cancelled) if the waiting process is killed.
awaitable<std::optional<exit_reason>> await_exit(pid target, duration timeout,
                                                 std::optional<exit_reason> signal = std::nullopt);

awaitable<exit_reason> stop_process(pid target, exit_reason reason, duration timeout);

template <class R, class Req>
awaitable<R> call_typed(pid target, envelope env, std::shared_ptr<reply_slot<R>> slot, duration timeout) {
  co_await await_call(target, std::move(env), timeout);
  co_return slot->take();
}

} // namespace detail

/// True when server S has a handle_call for Req (with or without from<R>).
template <class S, class Req>
concept handles_call = requires { typename Req::reply_type; } &&
                       (detail::call_with_from<S, Req> || detail::call_without_from<S, Req>);

template <class S, class Req>
concept handles_cast = requires(S& s, Req r) { s.handle_cast(std::move(r)); };

/// Base of every server: gives handlers their own pid and process.
class gen_server {
public:
  gen_server() = default;
  gen_server(const gen_server&) = delete;
  gen_server& operator=(const gen_server&) = delete;
  virtual ~gen_server() = default;

  pid self() const noexcept { return self_; }
  /// This server's process (links, monitors, trap_exit). Only from its handlers.
  grove::process& this_process() noexcept { return *process_; }

  /// Whether calls are served now (see set_ready).
  bool ready() const noexcept { return ready_; }

protected:
  /// Readiness, for servers that cannot serve calls all the time (a
  /// connection while it is down). A server is ready unless it says
  /// otherwise. While it is not, an arriving call fails at once with the
  /// not-ready error, or is held and served in arrival order once the server
  /// is ready again (the caller's timeout still runs) — as the call's
  /// call_options ask, or else as set_not_ready_policy says. A request type
  /// with `static constexpr bool needs_ready = false;` is always served.
  /// Casts and plain messages are always handled.
  void set_ready(bool ready) noexcept { ready_ = ready; }
  /// What a call that does not choose does while the server is not ready
  /// (default: fail), and the error it fails with (default errc::not_ready;
  /// a connection's is connection_errc::disconnected).
  void set_not_ready_policy(when_not_ready policy, std::error_code error = errc::not_ready) noexcept {
    not_ready_policy_ = policy == when_not_ready::server_default ? when_not_ready::fail : policy;
    not_ready_error_ = error;
  }

private:
  friend void detail::bind(gen_server& server, process& self);
  friend class detail::server_access;
  pid self_;
  grove::process* process_ = nullptr;
  bool ready_ = true;
  when_not_ready not_ready_policy_ = when_not_ready::fail;
  std::error_code not_ready_error_ = errc::not_ready;
};

/// A typed handle to a running server of type S. A value: copy it freely.
template <class S>
class server_ref {
public:
  server_ref() = default;
  /// Trusts that `p` runs an S; if it does not, calls fail with errc::wrong_server.
  explicit server_ref(pid p) noexcept : pid_(p) {}

  const pid& id() const noexcept { return pid_; }
  explicit operator bool() const noexcept { return static_cast<bool>(pid_); }

  /// Calls the server and returns its reply. Throws grove::error: timeout,
  /// noproc (not alive), exited (it ended before replying; reason() says
  /// why), calling_self, mailbox_full, cancelled (the caller is being killed).
  template <class Req>
    requires handles_call<S, Req>
  awaitable<detail::reply_of<Req>> call(Req request, duration timeout = default_call_timeout) const {
    call_options options;
    options.timeout = timeout;
    return call(std::move(request), options);
  }

  /// call() with per-call options: timeout, and what to do while the server
  /// is not ready (a connection that is down: fail with connection_errc::disconnected,
  /// or wait for it up to the timeout).
  template <class Req>
    requires handles_call<S, Req>
  awaitable<detail::reply_of<Req>> call(Req request, call_options options) const {
    using R = detail::reply_of<Req>;
    auto slot = std::make_shared<detail::reply_slot<R>>();
    detail::envelope env{.body = std::move(request),
                         .reply = slot,
                         .dispatch = &detail::dispatch_call<S, Req>,
                         .server_tag = &detail::server_tag<S>,
                         .kind = detail::envelope_kind::call,
                         .readiness = detail::needs_ready<Req>() ? static_cast<std::uint8_t>(options.if_not_ready)
                                                                 : detail::served_when_not_ready};
    return detail::call_typed<R, Req>(pid_, std::move(env), std::move(slot), options.timeout);
  }

  /// Sends a request without waiting. Dropped if the server is gone.
  template <class Req>
    requires handles_cast<S, Req>
  void cast(Req request) const {
    send_cast(detail::envelope{.body = std::move(request),
                               .dispatch = &detail::dispatch_cast<S, Req>,
                               .server_tag = &detail::server_tag<S>,
                               .kind = detail::envelope_kind::cast});
  }

  friend bool operator==(const server_ref&, const server_ref&) = default;

private:
  void send_cast(detail::envelope env) const;

  pid pid_;
};

namespace detail {
void deliver_envelope(const pid& to, envelope env);
}

template <class S>
void server_ref<S>::send_cast(detail::envelope env) const {
  detail::deliver_envelope(pid_, std::move(env));
}

struct start_options {
  std::optional<std::size_t> worker{}; ///< worker to run on; default: round-robin
  bool link = false;                 ///< link to the calling process (start_link); default no
  bool trap_exit = false;            ///< exits become messages; a shutdown from the parent or node runs terminate (default no)
  std::optional<duration> idle_timeout{}; ///< handle_info(timeout_message) after this long without a message (default none)
  duration init_timeout = std::chrono::seconds(5); ///< start fails with errc::timeout if init takes longer (default 5 s)
  mailbox_options mailbox{};                    ///< mailbox bound (default unbounded)
  friend bool operator==(const start_options&, const start_options&) = default;
};

namespace detail {

template <class S>
handler_outcome run_init(S& server) {
  if constexpr (requires(S& s) { s.init(); }) {
    return run_action_handler([&]() -> decltype(auto) { return server.init(); });
  } else {
    return action{};
  }
}

/// The constructor or init of a server threw: ends the process, then fails
/// its start with `reason`.
awaitable<exit_reason> start_failed(process& self, std::shared_ptr<reply_slot<pid>> started, exit_reason reason);

/// Starts an S; completes `started` when init finished (or failed).
awaitable<exit_reason> server_main_untyped(process& self, gen_server* server, const server_hooks& hooks,
                                           std::shared_ptr<reply_slot<pid>> started, handler_outcome init,
                                           std::optional<duration> idle_timeout);

template <class S, class... Args>
struct server_body {
  std::shared_ptr<reply_slot<pid>> started;
  std::tuple<Args...> args;
  std::optional<duration> idle_timeout;
  std::unique_ptr<S> server;

  awaitable<exit_reason> operator()(process& self) {
    handler_outcome init = action{};
    try {
      server = std::apply([](Args&... a) { return std::make_unique<S>(std::move(a)...); }, args);
      bind(*server, self);
      init = run_init(*server);
    } catch (const std::exception& e) {
      return start_failed(self, std::move(started), exit_reason::error(e.what()));
    }
    return server_main_untyped(self, server.get(), hooks_for<S>, std::move(started), std::move(init), idle_timeout);
  }
};

spawn_options to_spawn_options(const start_options& options);

/// Waits for `started`; on timeout kills `p` and throws errc::timeout.
awaitable<pid> await_start(std::shared_ptr<reply_slot<pid>> started, pid p, duration timeout);

template <class S>
awaitable<server_ref<S>> await_start_typed(std::shared_ptr<reply_slot<pid>> started, pid p, duration timeout) {
  co_return server_ref<S>(co_await await_start(std::move(started), p, timeout));
}

} // namespace detail

/// Starts a server of type S, constructed from `args` inside its new
/// process, and waits until its init finished. Throws grove::error:
/// start_failed (the constructor threw or init stopped; reason() says why;
/// the process has already ended and, if linked, sent no exit signal),
/// timeout (init took longer than init_timeout; the process is killed),
/// node_stopped, not_in_process (link requested outside a process).
namespace detail {
/// start() as an untyped pid: no coroutine templated on S (a library
/// template that starts servers, such as a supervisor's child start, uses
/// this; g++ warns about coroutine frames of header templates over types
/// in an anonymous namespace).
template <class S, class... Args>
awaitable<pid> start_untyped(node& n, const start_options& options, Args... args) {
  auto started = std::make_shared<reply_slot<pid>>();
  pid p = spawn(n, server_body<S, Args...>{started, std::tuple<Args...>(std::move(args)...), options.idle_timeout, nullptr},
                to_spawn_options(options));
  return await_start(std::move(started), p, options.init_timeout);
}
} // namespace detail

template <class S, class... Args>
  requires std::derived_from<S, gen_server> && std::constructible_from<S, Args...>
awaitable<server_ref<S>> start(node& n, start_options options, Args... args) {
  auto started = std::make_shared<detail::reply_slot<pid>>();
  pid p = spawn(n,
                detail::server_body<S, Args...>{started, std::tuple<Args...>(std::move(args)...), options.idle_timeout,
                                                nullptr},
                detail::to_spawn_options(options));
  return detail::await_start_typed<S>(std::move(started), p, options.init_timeout);
}

/// start() with default options.
template <class S, class... Args>
  requires std::derived_from<S, gen_server> && std::constructible_from<S, Args...>
awaitable<server_ref<S>> start(node& n, Args... args) {
  return start<S>(n, start_options{}, std::move(args)...);
}

/// start() linked to the calling process (OTP's start_link).
template <class S, class... Args>
  requires std::derived_from<S, gen_server> && std::constructible_from<S, Args...>
awaitable<server_ref<S>> start_link(node& n, Args... args) {
  start_options options;
  options.link = true;
  return start<S>(n, options, std::move(args)...);
}

/// Stops `target` from outside and waits until it has ended (OTP's
/// gen_server:stop(Ref, Reason, Timeout)); returns the reason it ended
/// with. A gen_server runs terminate(reason) first, whether it traps exits
/// or not, after the messages sent to it before; a plain process gets
/// exit(target, reason) (which `normal` does not end unless it traps).
/// Throws grove::error: noproc (not alive), timeout (still alive after
/// `timeout`; it is left running), calling_self, cancelled.
awaitable<exit_reason> stop(const pid& target, exit_reason reason = exit_reason::normal(), duration timeout = infinity);
template <class S>
awaitable<exit_reason> stop(const server_ref<S>& server, exit_reason reason = exit_reason::normal(),
                            duration timeout = infinity) {
  return stop(server.id(), std::move(reason), timeout);
}

namespace detail {
template <class S>
awaitable<std::pair<server_ref<S>, monitor_ref>> await_start_monitored(std::shared_ptr<reply_slot<pid>> started,
                                                                       std::pair<pid, monitor_ref> p, duration timeout) {
  std::exception_ptr failure;
  try {
    co_return std::pair{server_ref<S>(co_await await_start(std::move(started), p.first, timeout)), p.second};
  } catch (...) {
    failure = std::current_exception();
  }
  // A failed start ends the process; its down message is not for the caller.
  grove::demonitor(p.second);
  std::rethrow_exception(failure);
}
} // namespace detail

/// start(), and a monitor on the new server set before it runs (OTP's
/// gen_server:start_monitor): a server that dies at once still gives the
/// caller its down message with the real reason. From a process only
/// (not_in_process otherwise). If the start fails the monitor is removed
/// (no down message arrives) and the error is thrown as by start().
template <class S, class... Args>
  requires std::derived_from<S, gen_server> && std::constructible_from<S, Args...>
awaitable<std::pair<server_ref<S>, monitor_ref>> start_monitor(node& n, start_options options, Args... args) {
  auto started = std::make_shared<detail::reply_slot<pid>>();
  std::pair<pid, monitor_ref> p =
      spawn_monitor(n,
                    detail::server_body<S, Args...>{started, std::tuple<Args...>(std::move(args)...),
                                                    options.idle_timeout, nullptr},
                    detail::to_spawn_options(options));
  return detail::await_start_monitored<S>(std::move(started), p, options.init_timeout);
}

/// start_monitor() with default options.
template <class S, class... Args>
  requires std::derived_from<S, gen_server> && std::constructible_from<S, Args...>
awaitable<std::pair<server_ref<S>, monitor_ref>> start_monitor(node& n, Args... args) {
  return start_monitor<S>(n, start_options{}, std::move(args)...);
}

} // namespace grove

template <class S>
struct std::hash<grove::server_ref<S>> {
  std::size_t operator()(const grove::server_ref<S>& r) const noexcept { return std::hash<grove::pid>{}(r.id()); }
};
