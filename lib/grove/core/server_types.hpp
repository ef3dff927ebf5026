// grove/core/server_types.hpp — the values a gen_server's handlers return
// (action, stop, continue_with, call_result, noreply, from) and its callers
// and starters pass (call_options, start_options). Included by
// gen_server.hpp; see there for the contract.
#pragma once

#include <grove/core/detail/reply_slot.hpp>
#include <grove/core/error.hpp>
#include <grove/core/exit_reason.hpp>
#include <grove/core/message.hpp>
#include <grove/core/process.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
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

template <class R>
class from;
namespace detail {
/// The gen_server loop's own handle of a call it dispatched, let go once
/// the handler returned: failing the caller if it was the last one and the
/// call is unanswered (`fail_if_last`), or quietly when the server is
/// ending (its exit reason answers the call).
template <class R>
void release_from(from<R>& f, bool fail_if_last) noexcept;
} // namespace detail

/// Where a call came from; answer it with reply(), now or later, from any
/// thread or process. Copyable; the first reply wins and later ones (or one
/// after the caller gave up) are dropped. When the last copy goes away with
/// the call unanswered (a handler returned noreply and kept none, or the
/// process holding it ended), the caller fails at once with errc::exited
/// and a reason that says so, instead of waiting out its timeout.
template <class R>
class from {
public:
  from() = default;
  explicit from(std::shared_ptr<detail::reply_slot<R>> slot) noexcept : slot_(std::move(slot)) {
    if (slot_) slot_->retain_answerer();
  }
  from(const from& other) noexcept : slot_(other.slot_) {
    if (slot_) slot_->retain_answerer();
  }
  from(from&& other) noexcept : slot_(std::move(other.slot_)) {}
  from& operator=(const from& other) noexcept {
    if (this != &other) {
      if (other.slot_) other.slot_->retain_answerer();
      drop();
      slot_ = other.slot_;
    }
    return *this;
  }
  from& operator=(from&& other) noexcept {
    if (this != &other) {
      drop();
      slot_ = std::move(other.slot_);
    }
    return *this;
  }
  ~from() { drop(); }

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
  template <class X>
  friend void detail::release_from(from<X>& f, bool fail_if_last) noexcept;

  void drop() noexcept {
    if (slot_) {
      slot_->release_answerer();
      slot_.reset();
    }
  }

  std::shared_ptr<detail::reply_slot<R>> slot_;
};

template <class R>
void detail::release_from(from<R>& f, bool fail_if_last) noexcept {
  if (!f.slot_) return;
  if (fail_if_last) {
    f.slot_->release_answerer();
  } else {
    f.slot_->release_answerer_quietly();
  }
  f.slot_.reset();
}

/// What a call does when the server's call gate does not let it through
/// now (a connection while its link is down). Servers without a gate serve
/// every call and ignore it.
enum class when_not_ready : std::uint8_t {
  server_default, ///< as the server chose (a connection: connection_options::calls_while_disconnected)
  fail,           ///< fail at once with the gate's error (a connection's: connection_errc::disconnected)
  wait,           ///< wait until the gate lets it through, up to the call's timeout
};

/// How one call behaves.
struct call_options {
  duration timeout = default_call_timeout;                   ///< give up after this long (default 5 s)
  when_not_ready if_not_ready = when_not_ready::server_default; ///< if the server's gate holds calls now (default: the server's choice)
};

struct start_options {
  std::optional<std::size_t> worker{}; ///< worker to run on; default: round-robin
  bool link = false;                 ///< link to the calling process (start_link); default no
  bool trap_exit = false;            ///< exits become messages; a shutdown from the parent or node runs terminate (default no)
  std::optional<duration> idle_timeout{}; ///< handle_info(timeout_message) after this long without a message (default none)
  duration init_timeout = std::chrono::seconds(5); ///< start fails with errc::timeout if init takes longer (default 5 s)
  mailbox_options mailbox{};                    ///< mailbox bound (default unbounded)
  friend bool operator==(const start_options&, const start_options&) = default;
};

} // namespace grove
