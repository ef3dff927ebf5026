#include <grove/core/detail/node_metrics.hpp>
#include <grove/core/detail/runtime.hpp>

#include <string>

namespace grove::detail {

using telemetry::metric_type;
using telemetry::sample;
using labels = std::vector<std::string>;

const char* kind_name(exit_reason::kind k) noexcept {
  switch (k) {
  case exit_reason::kind::normal:
    return "normal";
  case exit_reason::kind::shutdown:
    return "shutdown";
  case exit_reason::kind::kill:
    return "kill";
  case exit_reason::kind::killed:
    return "killed";
  case exit_reason::kind::error:
    return "error";
  case exit_reason::kind::noproc:
    return "noproc";
  case exit_reason::kind::noconnection:
    return "noconnection";
  }
  return "unknown";
}

core_families::core_families(telemetry::metric_registry& r)
    : spawned(r.make_counter("grove_processes_spawned_total", "Processes spawned.", {"node"})),
      exits(r.make_counter("grove_process_exits_total", "Processes ended, by the kind of their exit reason.",
                           {"node", "reason"})) {}

node_metrics::node_metrics(node_state& n, telemetry::metric_registry& r) {
  const std::string node = std::to_string(n.id);
  auto& families = r.part<core_families>();
  spawned = families.spawned.with({node});
  for (std::size_t k = 0; k < exits.size(); ++k) {
    exits[k] = families.exits.with({node, kind_name(static_cast<exit_reason::kind>(k))});
  }
  node_state* state = &n;
  collectors.emplace_back(r, "grove_processes", "Processes alive.", metric_type::gauge, labels{"node"}, [state, node] {
      return std::vector<sample>{{{node}, static_cast<double>(state->live.load(std::memory_order_relaxed))}};
    });
  collectors.emplace_back(r,
        "grove_mailbox_depth_high_water", "The deepest any process's mailbox has been.", metric_type::gauge, labels{"node"},
        [state, node] {
          std::size_t deepest = 0;
          for (std::size_t i = 0; i < state->size(); ++i) {
            deepest = std::max(deepest, state->worker_at(static_cast<std::uint32_t>(i))
                                            .mailbox_high_water.load(std::memory_order_relaxed));
          }
          return std::vector<sample>{{{node}, static_cast<double>(deepest)}};
        });
  collectors.emplace_back(r,
        "grove_worker_busy_seconds_total", "CPU time each worker thread has used.", metric_type::counter,
        labels{"node", "worker"}, [state, node] {
          std::vector<sample> out;
          for (std::size_t i = 0; i < state->size(); ++i) {
            const worker& w = state->worker_at(static_cast<std::uint32_t>(i));
            out.push_back({{node, std::to_string(i)}, static_cast<double>(w.busy_nanoseconds()) * 1e-9});
          }
          return out;
        });
}

void node_metrics::stop_collecting() { collectors.clear(); }

} // namespace grove::detail
