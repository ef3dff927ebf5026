// grove/supervisor/dynamic_supervisor.hpp — Elixir's DynamicSupervisor:
// starts no children itself; children are added at run time, each
// restarted on its own (one_for_one), up to max_children.
//
//   grove::dynamic_supervisor_options options{.max_children = 10'000};
//   auto sessions = co_await grove::dynamic_supervisor::start_link(node, options);
//   grove::server_ref<session> s = co_await sessions.start_child<session>(peer_address);
//   co_await sessions.terminate_child(s.id());
//
// Extra arguments (Elixir's extra_arguments) are given when the supervisor
// starts and prepended to every start_child<S>(args...): S is constructed
// from (extra..., args...).
//
//   auto sup = co_await grove::dynamic_supervisor_of<store_ref>::start_link(node, options, store);
//   co_await sup.start_child<session>(peer_address);   // session(store, peer_address)
//
// Restart intensity and the shutdown of each child are as in supervisor.hpp.
// When the supervisor stops, all its children get their shutdown at once and
// it waits for each up to its own shutdown timeout.
#pragma once

#include <grove/core/gen_server.hpp>
#include <grove/supervisor/child_spec.hpp>

#include <chrono>
#include <concepts>
#include <functional>
#include <optional>
#include <vector>

namespace grove {

struct dynamic_supervisor_options {
  std::optional<std::size_t> max_children{}; ///< most children at once, restarting ones included (default unlimited)
  int max_restarts = 3;                      ///< restart intensity: at most this many restarts... (default 3)
  std::chrono::seconds max_seconds{5};       ///< ...within this period (default 5 s); more and the supervisor gives up
  std::optional<std::size_t> worker{};       ///< worker the supervisor runs on (default: round-robin)
  std::function<void(const supervisor_report&)> report = report_to_events; ///< reports (default: to the node's event sink; nullptr: silent)
};

namespace detail {

/// What every dynamic supervisor handle does, whatever its extra arguments.
class dynamic_supervisor_base {
public:
  const pid& id() const noexcept { return pid_; }
  explicit operator bool() const noexcept { return static_cast<bool>(pid_); }

  /// Starts a child from its spec (the spec's id is informational); returns
  /// its pid, or null if its start said "ignore" (then nothing is kept).
  /// Throws max_children, start_failed, invalid_argument.
  awaitable<pid> start_child(child_spec spec, duration timeout = infinity) const;
  /// Stops a child and forgets it. Throws not_found.
  awaitable<void> terminate_child(pid child, duration timeout = infinity) const;
  awaitable<std::vector<child_info>> which_children(duration timeout = infinity) const;
  awaitable<child_counts> count_children(duration timeout = infinity) const;
  /// Its intensity, max_children, restarts and children (with their restart counts).
  awaitable<supervision_info> describe(duration timeout = infinity) const;
  /// Stops the supervisor and its children (each by its shutdown policy) and
  /// waits until it has ended; as supervisor::stop.
  awaitable<exit_reason> stop(exit_reason reason = exit_reason::shutdown(), duration timeout = infinity) const;

protected:
  dynamic_supervisor_base() = default;
  explicit dynamic_supervisor_base(pid p) noexcept : pid_(p) {}

  static awaitable<pid> start_untyped(node& n, dynamic_supervisor_options options, extra_arguments extra, bool link);

  pid pid_;
};

template <class R>
awaitable<R> as_handle(awaitable<pid> started) {
  co_return R(co_await std::move(started));
}

template <class H>
awaitable<pid> handle_pid(awaitable<H> started) {
  H handle = co_await std::move(started);
  co_return handle.id();
}

} // namespace detail

/// A handle to a running dynamic supervisor whose children get `Extra...`
/// prepended to their constructor arguments. A value: copy it freely.
template <class... Extra>
class dynamic_supervisor_of : public detail::dynamic_supervisor_base {
public:
  dynamic_supervisor_of() = default;
  /// Trusts that `p` is a dynamic supervisor holding Extra... (if it holds
  /// others, start_child<S> fails with invalid_argument).
  explicit dynamic_supervisor_of(pid p) noexcept : dynamic_supervisor_base(p) {}

  /// Starts a dynamic supervisor (no children yet). Throws invalid_argument
  /// for bad options.
  static awaitable<dynamic_supervisor_of> start(node& n, dynamic_supervisor_options options, Extra... extra) {
    return detail::as_handle<dynamic_supervisor_of>(
        start_untyped(n, std::move(options), detail::extra_arguments::of(std::move(extra)...), false));
  }
  /// start() linked to the calling process.
  static awaitable<dynamic_supervisor_of> start_link(node& n, dynamic_supervisor_options options, Extra... extra) {
    return detail::as_handle<dynamic_supervisor_of>(
        start_untyped(n, std::move(options), detail::extra_arguments::of(std::move(extra)...), true));
  }

  using dynamic_supervisor_base::start_child;

  /// Starts gen_server S(extra..., args...) as a permanent child.
  template <class S, class... Args>
    requires std::derived_from<S, gen_server> && std::constructible_from<S, Extra..., Args...> &&
             (std::copy_constructible<Args> && ...)
  awaitable<server_ref<S>> start_child(Args... args) const {
    return start_server<S>(child_spec{}, start_options{}, std::move(args)...);
  }

  /// Starts gen_server S(extra..., args...) with the restart type, shutdown
  /// and type of `spec` (its start is ignored) and the start options given.
  template <class S, class... Args>
    requires std::derived_from<S, gen_server> && std::constructible_from<S, Extra..., Args...> &&
             (std::copy_constructible<Args> && ...)
  awaitable<server_ref<S>> start_server(child_spec spec, start_options options, Args... args) const {
    spec.start = child_start(
        std::make_shared<const detail::server_start<S, std::tuple<Extra...>, Args...>>(options, std::move(args)...));
    return detail::as_handle<server_ref<S>>(start_child(std::move(spec)));
  }

  friend bool operator==(const dynamic_supervisor_of& a, const dynamic_supervisor_of& b) noexcept {
    return a.id() == b.id();
  }
};

/// A dynamic supervisor without extra arguments.
using dynamic_supervisor = dynamic_supervisor_of<>;

/// A spec for a dynamic supervisor as a child of a supervisor (type
/// supervisor, shutdown infinity, permanent).
template <class... Extra>
child_spec dynamic_supervisor_child(std::string id, dynamic_supervisor_options options = {}, Extra... extra) {
  struct start_fn {
    dynamic_supervisor_options options;
    std::tuple<Extra...> extra;
    awaitable<pid> operator()(node& n) const {
      return std::apply(
          [&](const Extra&... e) { return detail::handle_pid(dynamic_supervisor_of<Extra...>::start_link(n, options, e...)); },
          extra);
    }
  };
  return child_spec{.id = std::move(id),
                    .start = child_start(start_fn{std::move(options), std::tuple<Extra...>(std::move(extra)...)}),
                    .type = child_type::supervisor};
}

} // namespace grove
