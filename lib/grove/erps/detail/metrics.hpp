// Internal (not installed): an erps daemon's built-in metrics (README,
// "Built-in metrics"), shared by the daemon's links and sessions.
#pragma once

#include <grove/telemetry/metrics.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace grove::erps::detail {

struct link_counters;

/// The series of one daemon (labels node, daemon). Recording is inline.
struct daemon_series {
  daemon_series(telemetry::metric_registry& r, std::string node, std::string daemon);

  /// A warning or error the daemon's links or sessions logged (a bad frame,
  /// a refused frame, a failed handshake, a timeout, ...), by its event name.
  void error(std::string_view event) const;

  telemetry::counter calls, casts, pushes, bytes_in, bytes_out, tls_handshake_failures;
  telemetry::histogram call_seconds; // recorded in nanoseconds

private:
  telemetry::counter_family errors_;
  std::string node_, daemon_;
};

/// The collectors that show a daemon's link counters (connections, accepted,
/// refused, frames, TLS handshakes); removed when destroyed.
class daemon_collectors {
public:
  daemon_collectors(telemetry::metric_registry& r, const std::string& node, const std::string& daemon,
                    std::shared_ptr<const link_counters> counters);

private:
  std::vector<telemetry::scoped_collector> collectors_;
};

} // namespace grove::erps::detail
