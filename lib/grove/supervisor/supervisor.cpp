#include <grove/supervisor/supervisor.hpp>

#include <grove/supervisor/detail/supervision.hpp>

#include <algorithm>
#include <unordered_set>

namespace grove {
namespace detail {
namespace {

struct supervised_child {
  child_spec spec;
  pid process{};           // null unless running
  bool restarting = false; // a restart failed; a try_again is on its way
  std::uint64_t restarts = 0;
};

struct start_child_request {
  using reply_type = outcome<pid>;
  child_spec spec;
};
struct terminate_child_request {
  using reply_type = outcome<nothing>;
  std::string id;
};
struct restart_child_request {
  using reply_type = outcome<pid>;
  std::string id;
};
struct delete_child_request {
  using reply_type = outcome<nothing>;
  std::string id;
};
struct which_children_request {
  using reply_type = outcome<std::vector<child_info>>;
};
struct count_children_request {
  using reply_type = outcome<child_counts>;
};
struct describe_request {
  using reply_type = outcome<supervision_info>;
};
/// Sent to itself after a restart failed to start (OTP's try_again_restart).
struct try_again_restart {
  std::string id;
};

const char* strategy_name(restart_strategy s) {
  switch (s) {
  case restart_strategy::one_for_one:
    return "one_for_one";
  case restart_strategy::one_for_all:
    return "one_for_all";
  case restart_strategy::rest_for_one:
    return "rest_for_one";
  }
  return "unknown";
}

std::string failed_to_start(const std::string& id, const exit_reason& why) {
  return "{failed_to_start_child, " + id + ", " + why.to_string() + "}";
}

/// The supervisor's process: a gen_server that traps exits. Each handler
/// runs to completion before the next message, so a restart (stopping and
/// starting several children) is never interleaved with a call.
class supervisor_server final : public gen_server {
public:
  supervisor_server(std::vector<child_spec> specs, supervisor_options options)
      : initial_(std::move(specs)), options_(std::move(options)),
        intensity_(options_.max_restarts, options_.max_seconds) {}

  awaitable<action> init() {
    // A node shutdown gives it as long as its children's policies take.
    this_process().set_shutdown_timeout(duration::max());
    set_kind(this_process(), "supervisor");
    this_process().set_child_placement(placement::round_robin);
    metrics_.emplace(this_process());
    std::vector<child_spec> specs = std::move(initial_);
    for (child_spec& spec : specs) {
      start_outcome o = co_await start_one(this_process(), spec.start, no_extra_);
      if (o.failure) {
        report_child("start_error", spec.id, {}, *o.failure);
        co_await stop_children(0);
        co_return stop(exit_reason::shutdown(failed_to_start(spec.id, *o.failure)));
      }
      if (!o.process && spec.restart == restart_type::temporary) continue; // ignored and never restarted
      children_.push_back({std::move(spec), o.process});
    }
    co_return action{};
  }

  awaitable<outcome<pid>> handle_call(start_child_request r) {
    if (auto bad = validate(r.spec)) co_return outcome<pid>::failure(errc::invalid_argument, *bad);
    if (const supervised_child* c = find(r.spec.id)) {
      if (c->process) {
        co_return outcome<pid>::failure(supervisor_errc::already_started, child_name(r.spec.id, {}) + " is already running as " +
                                                                   c->process.to_string());
      }
      co_return outcome<pid>::failure(supervisor_errc::already_present, child_name(r.spec.id, {}) + " is already present");
    }
    start_outcome o = co_await start_one(this_process(), r.spec.start, no_extra_);
    if (o.failure) {
      report_child("start_error", r.spec.id, {}, *o.failure);
      co_return outcome<pid>::failure(errc::start_failed, child_name(r.spec.id, {}) + " failed to start", *o.failure);
    }
    if (o.process || r.spec.restart != restart_type::temporary) children_.push_back({std::move(r.spec), o.process});
    co_return outcome<pid>{o.process};
  }

  awaitable<outcome<nothing>> handle_call(terminate_child_request r) {
    supervised_child* c = find(r.id);
    if (!c) co_return outcome<nothing>::failure(supervisor_errc::not_found, child_name(r.id, {}) + " is not a child here");
    if (c->process) co_await stop_child(index_of(*c));
    c = find(r.id); // stop_child may not change the list, but look again rather than trust it
    c->process = {};
    c->restarting = false;
    if (c->spec.restart == restart_type::temporary) children_.erase(children_.begin() + index_of(*c));
    co_return outcome<nothing>{nothing{}};
  }

  awaitable<outcome<pid>> handle_call(restart_child_request r) {
    supervised_child* c = find(r.id);
    if (!c) co_return outcome<pid>::failure(supervisor_errc::not_found, child_name(r.id, {}) + " is not a child here");
    if (c->restarting) co_return outcome<pid>::failure(supervisor_errc::restarting, child_name(r.id, {}) + " is being restarted");
    if (c->process) co_return outcome<pid>::failure(supervisor_errc::running, child_name(r.id, {}) + " is running");
    start_outcome o = co_await start_one(this_process(), c->spec.start, no_extra_);
    c = find(r.id);
    if (o.failure) {
      report_child("start_error", r.id, {}, *o.failure);
      co_return outcome<pid>::failure(errc::start_failed, child_name(r.id, {}) + " failed to start", *o.failure);
    }
    c->process = o.process;
    co_return outcome<pid>{o.process};
  }

  outcome<nothing> handle_call(delete_child_request r) {
    supervised_child* c = find(r.id);
    if (!c) return outcome<nothing>::failure(supervisor_errc::not_found, child_name(r.id, {}) + " is not a child here");
    if (c->restarting) return outcome<nothing>::failure(supervisor_errc::restarting, child_name(r.id, {}) + " is being restarted");
    if (c->process) return outcome<nothing>::failure(supervisor_errc::running, child_name(r.id, {}) + " is running");
    children_.erase(children_.begin() + index_of(*c));
    return outcome<nothing>{nothing{}};
  }

  outcome<std::vector<child_info>> handle_call(which_children_request) { return outcome<std::vector<child_info>>{children()}; }

  outcome<supervision_info> handle_call(describe_request) {
    supervision_info info;
    info.strategy = strategy_name(options_.strategy);
    info.max_restarts = options_.max_restarts;
    info.max_seconds = options_.max_seconds;
    info.restarts = restarts_;
    info.children = children();
    return outcome<supervision_info>{std::move(info)};
  }

  std::vector<child_info> children() const {
    std::vector<child_info> out;
    out.reserve(children_.size());
    for (const supervised_child& c : children_) {
      out.push_back({.id = c.spec.id,
                     .process = c.process,
                     .type = c.spec.type,
                     .restart = c.spec.restart,
                     .status = c.process      ? child_status::running
                               : c.restarting ? child_status::restarting
                                              : child_status::stopped,
                     .restarts = c.restarts});
    }
    return out;
  }

  outcome<child_counts> handle_call(count_children_request) {
    child_counts n;
    n.specs = children_.size();
    for (const supervised_child& c : children_) {
      if (c.process && grove::alive(c.process)) ++n.active;
      ++(c.spec.type == child_type::supervisor ? n.supervisors : n.workers);
    }
    return outcome<child_counts>{n};
  }

  awaitable<action> handle_info(message m) {
    if (auto* e = m.get_if<exit_message>()) co_return co_await child_exited(e->from, e->reason);
    if (auto* t = m.get_if<try_again_restart>()) {
      supervised_child* c = find(t->id);
      if (c && c->restarting) co_return co_await restart(index_of(*c));
    }
    co_return action{};
  }

  /// Stops every child, last started first (the supervisor's own stop,
  /// or giving up after too many restarts).
  awaitable<void> terminate(exit_reason) { co_await stop_children(0); }

private:
  awaitable<action> child_exited(pid from, exit_reason reason) {
    auto it = std::find_if(children_.begin(), children_.end(),
                           [&](const supervised_child& c) { return c.process && c.process == from; });
    if (it == children_.end()) co_return action{}; // a child we stopped ourselves, or not ours
    it->process = {};
    const restart_type restart_as = it->spec.restart;
    if (!reason.is_clean() || restart_as == restart_type::permanent) {
      report_child("child_terminated", it->spec.id, from, reason);
    }
    const bool again = restart_as == restart_type::permanent ||
                       (restart_as == restart_type::transient && !reason.is_clean());
    if (!again) {
      if (restart_as == restart_type::temporary) children_.erase(it);
      co_return action{};
    }
    co_return co_await restart(static_cast<std::size_t>(it - children_.begin()));
  }

  /// OTP's restart/2: counts the restart, then applies the strategy.
  awaitable<action> restart(std::size_t index) {
    if (!intensity_.add()) {
      report_child("reached_max_restart_intensity", children_[index].spec.id, {}, exit_reason::shutdown());
      metrics_->gave_up();
      co_return stop(exit_reason::shutdown());
    }
    ++restarts_;
    children_[index].restarting = false;
    switch (options_.strategy) {
    case restart_strategy::one_for_one: co_await start_from(index, index + 1); break;
    case restart_strategy::one_for_all: co_await stop_and_start_from(0); break;
    case restart_strategy::rest_for_one: co_await stop_and_start_from(index); break;
    }
    co_return action{};
  }

  /// Stops children [first, end) in reverse order (temporary ones are
  /// dropped), then starts them again in order.
  awaitable<void> stop_and_start_from(std::size_t first) {
    co_await stop_children(first);
    for (std::size_t i = children_.size(); i-- > first;) {
      children_[i].restarting = false;
      if (children_[i].spec.restart == restart_type::temporary) children_.erase(children_.begin() + i);
    }
    co_await start_from(first, children_.size());
  }

  /// Starts children [first, last) in order. A failure marks that child
  /// restarting and schedules a retry; the ones after it wait for the retry.
  awaitable<void> start_from(std::size_t first, std::size_t last) {
    for (std::size_t i = first; i < last; ++i) {
      ++children_[i].restarts;
      metrics_->restarted(children_[i].spec.id);
      start_outcome o = co_await start_one(this_process(), children_[i].spec.start, no_extra_);
      supervised_child& c = children_[i];
      if (o.failure) {
        report_child("start_error", c.spec.id, {}, *o.failure);
        c.restarting = true;
        grove::send(self(), try_again_restart{c.spec.id});
        co_return;
      }
      c.process = o.process;
    }
  }

  /// Stops the running children from the last down to `first`.
  awaitable<void> stop_children(std::size_t first) {
    for (std::size_t i = children_.size(); i-- > first;) {
      if (children_[i].process) co_await stop_child(i);
      children_[i].process = {};
    }
  }

  awaitable<void> stop_child(std::size_t i) {
    const pid p = children_[i].process;
    const shutdown_policy policy = children_[i].spec.effective_shutdown();
    stop_outcome o = co_await shutdown_child(p, policy);
    if (!stopped_cleanly(o, policy)) report_child("shutdown_error", children_[i].spec.id, p, o.reason);
  }

  void report_child(const char* context, const std::string& id, pid child, exit_reason reason) {
    report(options_.report, supervisor_report{self(), context, id, child, std::move(reason)});
  }

  supervised_child* find(const std::string& id) {
    auto it = std::find_if(children_.begin(), children_.end(), [&](const supervised_child& c) { return c.spec.id == id; });
    return it == children_.end() ? nullptr : &*it;
  }
  std::size_t index_of(const supervised_child& c) const { return static_cast<std::size_t>(&c - children_.data()); }

  std::vector<child_spec> initial_;
  supervisor_options options_;
  restart_intensity intensity_;
  std::vector<supervised_child> children_; // start order
  extra_arguments no_extra_;
  std::optional<supervisor_metrics> metrics_;
  std::uint64_t restarts_ = 0;
};

using supervisor_ref = server_ref<supervisor_server>;

std::optional<std::string> validate_supervisor(const std::vector<child_spec>& children,
                                               const supervisor_options& options) {
  if (auto bad = validate_intensity("supervisor_options", options.max_restarts, options.max_seconds)) return bad;
  std::unordered_set<std::string> ids;
  for (const child_spec& spec : children) {
    if (auto bad = validate(spec)) return bad;
    if (!ids.insert(spec.id).second) return "two children have the id \"" + spec.id + "\" (ids must be unique)";
  }
  return std::nullopt;
}

awaitable<supervisor> start_supervisor(node& n, std::vector<child_spec> children, supervisor_options options,
                                       bool link) {
  if (auto bad = validate_supervisor(children, options)) throw grove::error(errc::invalid_argument, *bad);
  start_options so;
  so.worker = options.worker;
  so.link = link;
  so.trap_exit = true;
  so.init_timeout = infinity; // starting the children takes what it takes
  supervisor_ref ref = co_await grove::start<supervisor_server>(n, so, std::move(children), std::move(options));
  co_return supervisor(ref.id());
}

struct supervisor_start_fn {
  std::vector<child_spec> children;
  supervisor_options options;
  awaitable<pid> operator()(node& n) const { return to_pid_of_supervisor(start_supervisor(n, children, options, true)); }

  static awaitable<pid> to_pid_of_supervisor(awaitable<supervisor> started) {
    supervisor s = co_await std::move(started);
    co_return s.id();
  }
};

} // namespace
} // namespace detail

awaitable<supervisor> supervisor::start(node& n, std::vector<child_spec> children, supervisor_options options) {
  return detail::start_supervisor(n, std::move(children), std::move(options), false);
}

awaitable<supervisor> supervisor::start_link(node& n, std::vector<child_spec> children, supervisor_options options) {
  return detail::start_supervisor(n, std::move(children), std::move(options), true);
}

awaitable<pid> supervisor::start_child(child_spec spec, duration timeout) const {
  return detail::ask<detail::supervisor_server, pid>(pid_, detail::start_child_request{std::move(spec)}, timeout);
}

awaitable<void> supervisor::terminate_child(std::string id, duration timeout) const {
  return detail::ask_void<detail::supervisor_server>(pid_, detail::terminate_child_request{std::move(id)}, timeout);
}

awaitable<pid> supervisor::restart_child(std::string id, duration timeout) const {
  return detail::ask<detail::supervisor_server, pid>(pid_, detail::restart_child_request{std::move(id)}, timeout);
}

awaitable<void> supervisor::delete_child(std::string id, duration timeout) const {
  return detail::ask_void<detail::supervisor_server>(pid_, detail::delete_child_request{std::move(id)}, timeout);
}

awaitable<std::vector<child_info>> supervisor::which_children(duration timeout) const {
  return detail::ask<detail::supervisor_server, std::vector<child_info>>(pid_, detail::which_children_request{}, timeout);
}

awaitable<pid> supervisor::child_pid(std::string id, duration timeout) const {
  for (const child_info& c : co_await which_children(timeout)) {
    if (c.id == id) co_return c.process;
  }
  throw grove::error(supervisor_errc::not_found, "no child \"" + id + "\" under the supervisor " + pid_.to_string());
}

awaitable<exit_reason> supervisor::stop(exit_reason reason, duration timeout) const {
  return grove::stop(pid_, std::move(reason), timeout);
}

awaitable<supervision_info> supervisor::describe(duration timeout) const {
  return detail::ask<detail::supervisor_server, supervision_info>(pid_, detail::describe_request{}, timeout);
}

awaitable<child_counts> supervisor::count_children(duration timeout) const {
  return detail::ask<detail::supervisor_server, child_counts>(pid_, detail::count_children_request{}, timeout);
}

child_spec supervisor_child(std::string id, std::vector<child_spec> children, supervisor_options options) {
  return child_spec{.id = std::move(id),
                    .start = child_start(detail::supervisor_start_fn{std::move(children), std::move(options)}),
                    .type = child_type::supervisor};
}

} // namespace grove
