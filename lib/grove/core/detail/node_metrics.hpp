// Internal (not installed): a node's built-in metrics (README, "Built-in
// metrics"), made when node_options::metrics names a registry.
#pragma once

#include <grove/core/exit_reason.hpp>
#include <grove/telemetry/metrics.hpp>

#include <array>
#include <cstdint>
#include <vector>

namespace grove::detail {

class node_state;

/// The core's families, one set per registry (shared by its nodes).
struct core_families {
  explicit core_families(telemetry::metric_registry& r);
  telemetry::counter_family spawned;
  telemetry::counter_family exits;
};

struct node_metrics {
  node_metrics(node_state& n, telemetry::metric_registry& r);
  node_metrics(const node_metrics&) = delete;
  node_metrics& operator=(const node_metrics&) = delete;

  /// Takes the node's collectors out of the registry (they read the node's
  /// workers); the counters stay usable until the node is gone.
  void stop_collecting();

  void exited(const exit_reason& reason) const noexcept { exits[static_cast<std::size_t>(reason.what())].inc(); }

  telemetry::counter spawned;
  std::array<telemetry::counter, 6> exits; // by exit_reason::kind
  std::vector<telemetry::scoped_collector> collectors;
};

/// An exit reason's kind as a label value: "normal", "shutdown", "kill",
/// "killed", "error", "noproc".
const char* kind_name(exit_reason::kind k) noexcept;

} // namespace grove::detail
