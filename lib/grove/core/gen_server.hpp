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
// errc::exited with that reason, the node's event sink hears of it
// (core/process_crashed), and
// nothing else on the node is disturbed.
//
// This header is the user's contract; what handlers return and callers pass
// is in server_types.hpp, and the dispatch machinery in
// detail/gen_server_impl.hpp.
#pragma once

#include <grove/core/detail/gen_server_impl.hpp>
#include <grove/core/error.hpp>
#include <grove/core/message.hpp>
#include <grove/core/node.hpp>
#include <grove/core/process.hpp>
#include <grove/core/server_types.hpp>

#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <concepts>
#include <memory>
#include <optional>
#include <tuple>
#include <type_traits>
#include <utility>

namespace grove {

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

private:
  friend void detail::bind(gen_server& server, process& self);
  pid self_;
  grove::process* process_ = nullptr;
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

  /// call() with per-call options: timeout, and what to do if the server's
  /// call gate does not let the call through now (a connection that is down:
  /// fail with connection_errc::disconnected, or wait for it up to the
  /// timeout).
  template <class Req>
    requires handles_call<S, Req>
  awaitable<detail::reply_of<Req>> call(Req request, call_options options) const {
    using R = detail::reply_of<Req>;
    auto slot = detail::take_reply_slot<R>();
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

template <class S>
void server_ref<S>::send_cast(detail::envelope env) const {
  detail::deliver_envelope(pid_, std::move(env));
}



/// Starts a server of type S, constructed from `args` inside its new
/// process, and waits until its init finished. Throws grove::error:
/// start_failed (the constructor threw or init stopped; reason() says why;
/// the process has already ended and, if linked, sent no exit signal),
/// timeout (init took longer than init_timeout; the process is killed),
/// node_stopped, not_in_process (link requested outside a process).

template <class S, class... Args>
  requires std::derived_from<S, gen_server> && std::constructible_from<S, Args...>
awaitable<server_ref<S>> start(node& n, start_options options, Args... args) {
  auto started = std::make_shared<detail::reply_slot<pid>>();
  pid p = detail::spawn_body(n,
                             detail::server_body<S, Args...>{started, std::tuple<Args...>(std::move(args)...),
                                                             options.idle_timeout, nullptr},
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

/// start(), and a monitor on the new server set before it runs (OTP's
/// gen_server:start_monitor): a server that dies at once still gives the
/// caller its down message with the real reason. From a process only
/// (not_in_process otherwise). If the start fails the monitor is removed
/// (no down message arrives) and the error is thrown as by start().
template <class S, class... Args>
  requires std::derived_from<S, gen_server> && std::constructible_from<S, Args...>
awaitable<std::pair<server_ref<S>, monitor_ref>> start_monitor(node& n, start_options options, Args... args) {
  auto started = std::make_shared<detail::reply_slot<pid>>();
  std::pair<pid, monitor_ref> p;
  p.first = detail::spawn_body(n,
                               detail::server_body<S, Args...>{started, std::tuple<Args...>(std::move(args)...),
                                                               options.idle_timeout, nullptr},
                               detail::to_spawn_options(options), &p.second);
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
