// Internal: the gen_server machinery behind gen_server.hpp — how a call or
// cast reaches the right handler (dispatch, typed per server and request),
// how a handler's result becomes the loop's next step, and how a server is
// started in its process. Users read gen_server.hpp; this is included by it.
#pragma once

#include <grove/core/detail/envelope.hpp>
#include <grove/core/detail/reply_slot.hpp>
#include <grove/core/server_types.hpp>

#include <boost/asio/awaitable.hpp>

#include <exception>
#include <memory>
#include <optional>
#include <tuple>
#include <type_traits>
#include <utility>

namespace grove {

class node;
template <class S>
class server_ref;

class gen_server;

namespace detail {

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

// The loop holds its own from<R> of each call while the handler runs, and
// lets go of it here: a call left unanswered with no other handle fails at
// once ("no reply"), unless the server is ending (a stop, or the handler
// threw), whose exit reason then answers it.
template <class R>
action settle_call(call_result<R> result, from<R>& f) {
  if (result.reply()) f.reply(std::move(*result.reply()));
  action next = std::move(result.then());
  release_from(f, !(next.stops() || next.ignores()));
  return next;
}

template <class R, class X>
awaitable<action> settle_call_later(awaitable<X> work, from<R> f) {
  std::optional<call_result<R>> result;
  try {
    X value = co_await std::move(work);
    result.emplace(std::move(value));
  } catch (...) {
    release_from(f, false);
    throw;
  }
  co_return settle_call(std::move(*result), f);
}

template <class S, class Req>
handler_outcome dispatch_call(gen_server& base, envelope& env) {
  using R = reply_of<Req>;
  S& server = static_cast<S&>(base);
  Req& request = *env.body.get_if<Req>();
  if constexpr (!call_with_from<S, Req>) {
    if constexpr (!is_awaitable<std::decay_t<decltype(server.handle_call(std::move(request)))>>::value) {
      // A call whose caller is this process itself: a remote one, its
      // session holding the slot (a process never calls itself). A handler
      // that takes no from<R> and answers with its value then answers
      // without one, and without an atomic operation.
      auto& slot = static_cast<reply_slot<R>&>(*env.reply);
      if (slot.caller() == server.gen_server::self()) {
        call_result<R> result(server.handle_call(std::move(request)));
        if (result.reply()) {
          slot.set_unshared(std::move(*result.reply()));
          return std::move(result.then());
        }
        from<R> f(std::static_pointer_cast<reply_slot<R>>(env.reply));
        return settle_call<R>(std::move(result), f);
      }
    }
  }
  from<R> f(std::static_pointer_cast<reply_slot<R>>(env.reply));
  using result = decltype(invoke_call(server, std::move(request), f));
  using value = typename awaited<std::decay_t<result>>::type;
  static_assert(std::is_convertible_v<value, call_result<R>>,
                "handle_call(Req) must return Req::reply_type or call_result<Req::reply_type> (or awaitable of either)");
  if constexpr (is_awaitable<std::decay_t<result>>::value) {
    return settle_call_later<R, value>(invoke_call(server, std::move(request), f), f);
  } else {
    try {
      return settle_call<R>(call_result<R>(invoke_call(server, std::move(request), f)), f);
    } catch (...) {
      release_from(f, false);
      throw;
    }
  }
}

template <class S, class Req>
handler_outcome dispatch_cast(gen_server& base, envelope& env) {
  S& server = static_cast<S&>(base);
  Req& request = *env.body.get_if<Req>();
  return run_action_handler([&]() -> decltype(auto) { return server.handle_cast(std::move(request)); });
}

/// A gate in front of a server's calls: the one hook through which a layer
/// decides, before dispatch, whether a call is served now (the connection
/// layer fails or holds calls while its link is down). Both run in the
/// server's process, between handlers.
///   admit(server, env)   sees each call addressed to the server, before
///                        dispatch; true: dispatch it now. false: the gate
///                        took it, and either answered it (env.reply) or
///                        keeps it to hand back through release.
///   release(server, out) a kept call to serve now, ahead of the mailbox
///                        (moved into `out`); false when there is none.
/// The loop tracks every call it gave the gate, so a server that ends with
/// calls still kept fails them with its exit reason; a kept call whose
/// caller gave up in the meantime is not dispatched when released.
struct call_gate {
  bool (*admit)(gen_server&, envelope&);
  bool (*release)(gen_server&, envelope&);
};

/// The per-server-type entry points the (non-template) server loop uses.
struct server_hooks {
  const void* tag;
  handler_outcome (*info)(gen_server&, message&&);
  handler_outcome (*continue_)(gen_server&, message&&); // nullptr: the server has none
  handler_outcome (*terminate)(gen_server&, const exit_reason&);
  handler_outcome (*directive)(gen_server&, action&&);  // nullptr: the server has no extension
  const call_gate* gate;                                // nullptr: every call is dispatched as it comes
};

/// The seam through which a layer builds a behaviour on gen_server (the
/// connection layer's connect / disconnect). A layer specialises it for its
/// servers, with `enabled = true` and:
///   static handler_outcome info(gen_server&, message&&);  sees every plain message first
///   static handler_outcome directive(gen_server&, action&&); runs an action made
///                                     with directive_action(), before the next message
///   static constexpr const call_gate* gate;  optional: its call gate
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
constexpr const call_gate* gate_of() {
  if constexpr (requires { server_extension<S>::gate; }) {
    return server_extension<S>::gate;
  } else {
    return nullptr;
  }
}

template <class S>
constexpr server_hooks make_hooks() {
  if constexpr (server_extension<S>::enabled) {
    return {&server_tag<S>, &server_extension<S>::info, continue_hook<S>(), &hook_terminate<S>,
            &server_extension<S>::directive, gate_of<S>()};
  } else {
    return {&server_tag<S>, &hook_info<S>, continue_hook<S>(), &hook_terminate<S>, nullptr, nullptr};
  }
}

template <class S>
inline constexpr server_hooks hooks_for = make_hooks<S>();

/// Envelope readiness value of a request type that a call gate always lets
/// through (`static constexpr bool needs_ready = false;`).
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

/// Waits until `slot` completes (a reply, or an error set by whoever holds
/// it), or fails it with errc::timeout after `timeout`; the caller then
/// reads the slot. For a layer's own one-shot results (the tenant layer's
/// operation handles). One waiter per slot.
awaitable<void> await_reply(std::shared_ptr<reply_slot_base> slot, duration timeout);

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
  R value = slot->take(); // (an error throws: that slot is not reused)
  give_back_reply_slot(std::move(slot));
  co_return value;
}

} // namespace detail

namespace detail {
void deliver_envelope(const pid& to, envelope env);
}

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
server_run server_main_untyped(process& self, gen_server* server, const server_hooks& hooks,
                               std::shared_ptr<reply_slot<pid>> started, handler_outcome init,
                               std::optional<duration> idle_timeout);

template <class S, class... Args>
struct server_body {
  std::shared_ptr<reply_slot<pid>> started;
  std::tuple<Args...> args;
  std::optional<duration> idle_timeout;
  std::unique_ptr<S> server;

  body_base::coroutine operator()(process& self) {
    handler_outcome init = action{};
    try {
      server = std::apply([](Args&... a) { return std::make_unique<S>(std::move(a)...); }, args);
      grove::detail::bind(*server, self);
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

namespace detail {
/// start() as an untyped pid: no coroutine templated on S (a library
/// template that starts servers, such as a supervisor's child start, uses
/// this; g++ warns about coroutine frames of header templates over types
/// in an anonymous namespace).
template <class S, class... Args>
awaitable<pid> start_untyped(node& n, const start_options& options, Args... args) {
  auto started = std::make_shared<reply_slot<pid>>();
  pid p = spawn_body(n,
                     server_body<S, Args...>{started, std::tuple<Args...>(std::move(args)...), options.idle_timeout,
                                             nullptr},
                     to_spawn_options(options));
  return await_start(std::move(started), p, options.init_timeout);
}
} // namespace detail

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

} // namespace grove
