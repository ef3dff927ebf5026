#include <grove/supervisor/detail/supervision.hpp>

#include <grove/core/event.hpp>
#include <grove/core/node.hpp>
#include <grove/telemetry/metrics.hpp>

#include <cstdio>
#include <exception>

namespace grove::detail {

using clock = std::chrono::steady_clock;

bool restart_intensity::add() {
  const auto now = clock::now();
  while (!restarts_.empty() && now - restarts_.front() >= period_) restarts_.pop_front();
  restarts_.push_back(now);
  return restarts_.size() <= static_cast<std::size_t>(max_);
}

awaitable<start_outcome> start_one(process& supervisor, child_start start, extra_arguments extra) {
  // `start` is a copy: the function it holds outlives this await even if the
  // spec it came from is replaced meanwhile.
  start_outcome result;
  try {
    result.process = co_await start(supervisor.node(), extra);
  } catch (const grove::error& e) {
    result.failure = e.reason() ? *e.reason() : exit_reason::error(e.what());
  } catch (const std::exception& e) {
    result.failure = exit_reason::error(e.what());
  }
  if (result.process) supervisor.link(result.process);
  co_return result;
}

namespace {
std::optional<exit_reason> first_signal(shutdown_policy policy) {
  return policy.what() == shutdown_policy::kind::brutal_kill ? exit_reason::kill() : exit_reason::shutdown();
}

awaitable<stop_outcome> kill_and_wait(pid child) {
  std::optional<exit_reason> r = co_await await_exit(child, infinity, exit_reason::kill());
  co_return stop_outcome{r.value_or(exit_reason::killed()), true};
}
} // namespace

awaitable<stop_outcome> shutdown_child(pid child, shutdown_policy policy) {
  const duration limit = policy.what() == shutdown_policy::kind::timeout ? policy.limit() : infinity;
  std::optional<exit_reason> r = co_await await_exit(child, limit, first_signal(policy));
  if (r) co_return stop_outcome{std::move(*r), false};
  co_return co_await kill_and_wait(child);
}

void ask_to_stop(pid child, shutdown_policy policy) { grove::exit(child, *first_signal(policy)); }

awaitable<stop_outcome> finish_shutdown(pid child, shutdown_policy policy, clock::time_point asked_at) {
  duration limit = infinity;
  if (policy.what() == shutdown_policy::kind::timeout) {
    const auto deadline = asked_at + policy.limit();
    const auto now = clock::now();
    limit = deadline > now ? deadline - now : duration::zero();
  }
  std::optional<exit_reason> r = co_await await_exit(child, limit);
  if (r) co_return stop_outcome{std::move(*r), false};
  co_return co_await kill_and_wait(child);
}

bool stopped_cleanly(const stop_outcome& o, shutdown_policy policy) {
  if (o.killed_after_timeout) return false;
  const auto k = o.reason.what();
  if (k == exit_reason::kind::noproc) return true; // it had ended already
  if (policy.what() == shutdown_policy::kind::brutal_kill) return k == exit_reason::kind::killed;
  return k == exit_reason::kind::shutdown;
}

namespace {
void hook_threw(const supervisor_report& r, const char* what) noexcept {
  try {
    grove::emit(event{.level = event_level::error,
                      .layer = "supervisor",
                      .name = "report_hook_threw",
                      .fields = {{"supervisor", r.supervisor.to_string()}, {"what", what}}});
  } catch (...) { // out of memory: nothing more to say
  }
}
} // namespace

void report(const std::function<void(const supervisor_report&)>& hook, supervisor_report r) noexcept {
  if (!hook) return;
  try {
    hook(r);
  } catch (const std::exception& e) {
    hook_threw(r, e.what());
  } catch (...) {
    hook_threw(r, "unknown exception");
  }
}

std::string child_name(const std::string& id, const pid& p) {
  return id.empty() ? "child " + p.to_string() : "child \"" + id + "\"";
}

std::optional<std::string> validate_intensity(const char* options_name, int max_restarts,
                                              std::chrono::seconds max_seconds) {
  if (max_restarts < 0) {
    return std::string(options_name) + "::max_restarts is " + std::to_string(max_restarts) + " (expected >= 0)";
  }
  if (max_seconds <= std::chrono::seconds::zero()) {
    return std::string(options_name) + "::max_seconds is " + std::to_string(max_seconds.count()) + "s (expected > 0)";
  }
  return std::nullopt;
}

std::optional<std::string> validate(const child_spec& spec) {
  if (!spec.start) return "child_spec \"" + spec.id + "\": start is empty (give it a start function)";
  if (spec.shutdown && spec.shutdown->what() == shutdown_policy::kind::timeout &&
      spec.shutdown->limit() < duration::zero()) {
    return "child_spec \"" + spec.id + "\": shutdown timeout is negative (expected >= 0, brutal_kill or infinity)";
  }
  return std::nullopt;
}

struct supervisor_metrics::families {
  explicit families(telemetry::metric_registry& r)
      : restarts(r.make_counter("grove_supervisor_restarts_total", "Children restarted, by child id.", {"node", "child"})),
        intensity_exceeded(r.make_counter("grove_supervisor_intensity_exceeded_total",
                                          "Supervisors that gave up: more restarts than their intensity allows.",
                                          {"node"})) {}
  telemetry::counter_family restarts;
  telemetry::counter_family intensity_exceeded;
};

supervisor_metrics::supervisor_metrics(process& self) {
  if (telemetry::metric_registry* r = self.node().metrics()) {
    families_ = &r->part<families>();
    node_ = std::to_string(self.node().id());
  }
}

// Restarts are rare: the series is looked up each time.
void supervisor_metrics::restarted(const std::string& child_id) const {
  if (families_) families_->restarts.with({node_, child_id}).inc();
}

void supervisor_metrics::gave_up() const {
  if (families_) families_->intensity_exceeded.with({node_}).inc();
}

} // namespace grove::detail
