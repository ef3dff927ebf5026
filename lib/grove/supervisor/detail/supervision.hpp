// Internal (not installed): what supervisor and dynamic_supervisor share —
// restart intensity, starting and stopping one child, replies that carry an
// error to the caller.
#pragma once

#include <grove/supervisor/error.hpp>
#include <grove/core/error.hpp>
#include <grove/core/gen_server.hpp>
#include <grove/supervisor/child_spec.hpp>

#include <chrono>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace grove::detail {

/// OTP's intensity: a restart is allowed while at most max_restarts happened
/// within the last `period`.
class restart_intensity {
public:
  restart_intensity(int max_restarts, duration period) : max_(max_restarts), period_(period) {}

  /// Records a restart now; false when it is one too many.
  bool add();

private:
  int max_;
  duration period_;
  std::deque<std::chrono::steady_clock::time_point> restarts_;
};

/// A supervisor call's answer: a value, or the error the caller throws.
template <class T>
struct outcome {
  std::optional<T> value{};
  std::error_code code{};
  std::string detail{};
  std::optional<exit_reason> reason{};

  static outcome failure(std::error_code c, std::string d, std::optional<exit_reason> r = std::nullopt) {
    return outcome{std::nullopt, c, std::move(d), std::move(r)};
  }
  T get() && {
    if (value) return std::move(*value);
    if (reason) throw grove::error(code, detail, *reason);
    throw grove::error(code, detail);
  }
};

using nothing = std::monostate;

/// Calls supervisor server S and returns the outcome's value or throws its
/// error (the body of every supervisor handle method).
template <class S, class T, class Req>
awaitable<T> ask(pid to, Req request, duration timeout) {
  outcome<T> o = co_await server_ref<S>(to).call(std::move(request), timeout);
  co_return std::move(o).get();
}

template <class S, class Req>
awaitable<void> ask_void(pid to, Req request, duration timeout) {
  co_await ask<S, nothing>(to, std::move(request), timeout);
}

/// The restart intensity knobs of `options_name`, or why they are wrong.
std::optional<std::string> validate_intensity(const char* options_name, int max_restarts,
                                              std::chrono::seconds max_seconds);

/// How a start went: a pid (null: ignored), or the reason it failed.
struct start_outcome {
  pid process{};
  std::optional<exit_reason> failure{};
};

/// Runs a child's start inside the supervisor and links the child to it
/// (a start function that forgot to link still gets supervised).
awaitable<start_outcome> start_one(process& supervisor, child_start start, extra_arguments extra);

/// Stops `child` by `policy` and returns how it ended; a child that had to
/// be killed after its timeout, or ended with a reason other than the one
/// asked for, is reported as a shutdown_error.
struct stop_outcome {
  exit_reason reason{};
  bool killed_after_timeout = false;
};
awaitable<stop_outcome> shutdown_child(pid child, shutdown_policy policy);

/// Asks `child` to stop by `policy` without waiting; pair with finish_shutdown.
/// Used to stop many children at once (a dynamic supervisor's shutdown).
awaitable<stop_outcome> finish_shutdown(pid child, shutdown_policy policy,
                                        std::chrono::steady_clock::time_point asked_at);
void ask_to_stop(pid child, shutdown_policy policy);

/// Whether a stop ended as it should (shutdown, or killed when asked to).
bool stopped_cleanly(const stop_outcome& o, shutdown_policy policy);

void report(const std::function<void(const supervisor_report&)>& hook, supervisor_report r) noexcept;

/// A supervisor's built-in metrics (restarts per child, intensity
/// exceeded), on the registry of its node, if it has one.
class supervisor_metrics {
public:
  explicit supervisor_metrics(process& self);
  void restarted(const std::string& child_id) const;
  void gave_up() const;

private:
  struct families;
  families* families_ = nullptr;
  std::string node_;
};

/// "child \"db\"" or, for an unnamed child, "child <1.0.5>".
std::string child_name(const std::string& id, const pid& p);

std::optional<std::string> validate(const child_spec& spec);

} // namespace grove::detail
