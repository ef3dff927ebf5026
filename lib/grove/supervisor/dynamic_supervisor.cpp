#include <grove/supervisor/dynamic_supervisor.hpp>

#include <grove/supervisor/detail/supervision.hpp>

#include <algorithm>
#include <unordered_map>

namespace grove::detail {
namespace {

struct dynamic_child {
  child_spec spec;
  std::uint64_t order = 0; // start order, for which_children
  bool restarting = false; // a restart failed; a try_again is on its way
  std::uint64_t restarts = 0;
};

struct start_dynamic_child_request {
  using reply_type = outcome<pid>;
  child_spec spec;
};
struct terminate_dynamic_child_request {
  using reply_type = outcome<nothing>;
  pid child;
};
struct which_dynamic_children_request {
  using reply_type = outcome<std::vector<child_info>>;
};
struct count_dynamic_children_request {
  using reply_type = outcome<child_counts>;
};
struct describe_dynamic_request {
  using reply_type = outcome<supervision_info>;
};
struct try_again_dynamic_restart {
  pid child; // the key it is kept under while restarting: its last pid
};

/// Children are kept by pid. A child being restarted stays under its last
/// pid until the restart succeeds, so it keeps counting towards
/// max_children (restarts never check max_children: a restart replaces a
/// child, it does not add one).
class dynamic_supervisor_server final : public gen_server {
public:
  dynamic_supervisor_server(dynamic_supervisor_options options, extra_arguments extra)
      : options_(std::move(options)), extra_(std::move(extra)),
        intensity_(options_.max_restarts, options_.max_seconds) {}

  // A node shutdown gives it as long as its children's policies take.
  void init() {
    this_process().set_shutdown_timeout(duration::max());
    set_kind(this_process(), "dynamic_supervisor");
    this_process().set_child_placement(placement::round_robin);
    metrics_.emplace(this_process());
  }

  awaitable<outcome<pid>> handle_call(start_dynamic_child_request r) {
    if (auto bad = validate(r.spec)) co_return outcome<pid>::failure(errc::invalid_argument, *bad);
    if (options_.max_children && children_.size() >= *options_.max_children) {
      co_return outcome<pid>::failure(supervisor_errc::max_children, "the dynamic supervisor " + self().to_string() + " has " +
                                                              std::to_string(children_.size()) +
                                                              " children, its max_children");
    }
    start_outcome o = co_await start_one(this_process(), r.spec.start, extra_);
    if (o.failure) {
      report_child("start_error", r.spec.id, {}, *o.failure);
      co_return outcome<pid>::failure(errc::start_failed, child_name(r.spec.id, {}) + " failed to start", *o.failure);
    }
    // A temporary child is never restarted, so (as OTP's supervisor) its
    // start is not kept: whatever the start function captured (a
    // connection's stream, its arguments) is not held for the child's life.
    if (r.spec.restart == restart_type::temporary) r.spec.start = {};
    if (o.process) children_.emplace(o.process, dynamic_child{std::move(r.spec), next_order_++});
    co_return outcome<pid>{o.process};
  }

  awaitable<outcome<nothing>> handle_call(terminate_dynamic_child_request r) {
    auto it = children_.find(r.child);
    if (it == children_.end()) {
      co_return outcome<nothing>::failure(supervisor_errc::not_found, r.child.to_string() + " is not a child of this supervisor");
    }
    if (!it->second.restarting) {
      const shutdown_policy policy = it->second.spec.effective_shutdown();
      stop_outcome o = co_await shutdown_child(r.child, policy);
      if (!stopped_cleanly(o, policy)) report_child("shutdown_error", children_.at(r.child).spec.id, r.child, o.reason);
    }
    children_.erase(r.child);
    co_return outcome<nothing>{nothing{}};
  }

  outcome<std::vector<child_info>> handle_call(which_dynamic_children_request) {
    return outcome<std::vector<child_info>>{children()};
  }

  outcome<supervision_info> handle_call(describe_dynamic_request) {
    supervision_info info;
    info.strategy = "one_for_one";
    info.max_restarts = options_.max_restarts;
    info.max_seconds = options_.max_seconds;
    info.max_children = options_.max_children;
    info.restarts = restarts_;
    info.children = children();
    return outcome<supervision_info>{std::move(info)};
  }

  std::vector<child_info> children() const {
    std::vector<std::pair<std::uint64_t, child_info>> ordered;
    ordered.reserve(children_.size());
    for (const auto& [p, c] : children_) {
      ordered.emplace_back(c.order, child_info{.id = c.spec.id,
                                               .process = c.restarting ? pid{} : p,
                                               .type = c.spec.type,
                                               .restart = c.spec.restart,
                                               .status = c.restarting ? child_status::restarting : child_status::running,
                                               .restarts = c.restarts});
    }
    std::sort(ordered.begin(), ordered.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    std::vector<child_info> out;
    out.reserve(ordered.size());
    for (auto& [order, info] : ordered) out.push_back(std::move(info));
    return out;
  }

  outcome<child_counts> handle_call(count_dynamic_children_request) {
    child_counts n;
    n.specs = children_.size();
    for (const auto& [p, c] : children_) {
      if (!c.restarting && grove::alive(p)) ++n.active;
      ++(c.spec.type == child_type::supervisor ? n.supervisors : n.workers);
    }
    return outcome<child_counts>{n};
  }

  awaitable<action> handle_info(message m) {
    if (auto* e = m.get_if<exit_message>()) co_return co_await child_exited(e->from, e->reason);
    if (auto* t = m.get_if<try_again_dynamic_restart>()) {
      auto it = children_.find(t->child);
      if (it != children_.end() && it->second.restarting) co_return co_await restart(t->child);
    }
    co_return action{};
  }

  /// Stops every child at once and waits for each up to its own shutdown.
  awaitable<void> terminate(exit_reason) {
    const auto asked_at = std::chrono::steady_clock::now();
    std::vector<std::pair<pid, child_spec>> running;
    running.reserve(children_.size());
    for (auto& [p, c] : children_) {
      if (c.restarting) continue;
      ask_to_stop(p, c.spec.effective_shutdown());
      running.emplace_back(p, c.spec);
    }
    for (const auto& [p, spec] : running) {
      const shutdown_policy policy = spec.effective_shutdown();
      stop_outcome o = co_await finish_shutdown(p, policy, asked_at);
      if (!stopped_cleanly(o, policy)) report_child("shutdown_error", spec.id, p, o.reason);
    }
    children_.clear();
  }

private:
  awaitable<action> child_exited(pid from, exit_reason reason) {
    auto it = children_.find(from);
    if (it == children_.end() || it->second.restarting) co_return action{}; // stopped by us, or not ours
    const restart_type restart_as = it->second.spec.restart;
    if (!reason.is_clean() || restart_as == restart_type::permanent) {
      report_child("child_terminated", it->second.spec.id, from, reason);
    }
    const bool again = restart_as == restart_type::permanent ||
                       (restart_as == restart_type::transient && !reason.is_clean());
    if (!again) {
      children_.erase(it);
      co_return action{};
    }
    co_return co_await restart(from);
  }

  awaitable<action> restart(pid old) {
    if (!intensity_.add()) {
      report_child("reached_max_restart_intensity", children_.at(old).spec.id, old, exit_reason::shutdown());
      metrics_->gave_up();
      co_return stop(exit_reason::shutdown());
    }
    ++restarts_;
    metrics_->restarted(children_.at(old).spec.id);
    start_outcome o = co_await start_one(this_process(), children_.at(old).spec.start, extra_);
    auto node = children_.extract(old);
    dynamic_child& c = node.mapped();
    ++c.restarts;
    if (o.failure) {
      report_child("start_error", c.spec.id, {}, *o.failure);
      c.restarting = true;
      children_.insert(std::move(node));
      grove::send(self(), try_again_dynamic_restart{old});
      co_return action{};
    }
    if (!o.process) co_return action{}; // its start said "ignore" this time: forgotten
    c.restarting = false;
    node.key() = o.process;
    children_.insert(std::move(node));
    co_return action{};
  }

  void report_child(const char* context, const std::string& id, pid child, exit_reason reason) {
    report(options_.report, supervisor_report{self(), context, id, child, std::move(reason)});
  }

  dynamic_supervisor_options options_;
  extra_arguments extra_;
  restart_intensity intensity_;
  std::unordered_map<pid, dynamic_child> children_;
  std::uint64_t next_order_ = 0;
  std::optional<supervisor_metrics> metrics_;
  std::uint64_t restarts_ = 0;
};

using dynamic_ref = server_ref<dynamic_supervisor_server>;

awaitable<pid> start_dynamic(node& n, dynamic_supervisor_options options, extra_arguments extra, bool link) {
  if (auto bad = validate_intensity("dynamic_supervisor_options", options.max_restarts, options.max_seconds)) {
    throw grove::error(errc::invalid_argument, *bad);
  }
  start_options so;
  so.worker = options.worker;
  so.link = link;
  so.trap_exit = true;
  dynamic_ref ref = co_await grove::start<dynamic_supervisor_server>(n, so, std::move(options), std::move(extra));
  co_return ref.id();
}

} // namespace

awaitable<pid> dynamic_supervisor_base::start_untyped(node& n, dynamic_supervisor_options options,
                                                      extra_arguments extra, bool link) {
  return start_dynamic(n, std::move(options), std::move(extra), link);
}

awaitable<pid> dynamic_supervisor_base::start_child(child_spec spec, duration timeout) const {
  return ask<dynamic_supervisor_server, pid>(pid_, start_dynamic_child_request{std::move(spec)}, timeout);
}

awaitable<exit_reason> dynamic_supervisor_base::stop(exit_reason reason, duration timeout) const {
  return grove::stop(pid_, std::move(reason), timeout);
}

awaitable<void> dynamic_supervisor_base::terminate_child(pid child, duration timeout) const {
  return ask_void<dynamic_supervisor_server>(pid_, terminate_dynamic_child_request{child}, timeout);
}

awaitable<std::vector<child_info>> dynamic_supervisor_base::which_children(duration timeout) const {
  return ask<dynamic_supervisor_server, std::vector<child_info>>(pid_, which_dynamic_children_request{}, timeout);
}

awaitable<supervision_info> dynamic_supervisor_base::describe(duration timeout) const {
  return ask<dynamic_supervisor_server, supervision_info>(pid_, describe_dynamic_request{}, timeout);
}

awaitable<child_counts> dynamic_supervisor_base::count_children(duration timeout) const {
  return ask<dynamic_supervisor_server, child_counts>(pid_, count_dynamic_children_request{}, timeout);
}

} // namespace grove::detail
