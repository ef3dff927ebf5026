// groved's own metrics (the store), served by its admin endpoint beside
// grove's built-in ones (the node, supervisors, each erps listener as
// daemon="tcp" / "tls"): read when Prometheus scrapes (collectors), so the
// request path records nothing extra.
#pragma once

#include "service.hpp"

#include <grove/telemetry/metrics.hpp>

#include <memory>

namespace groved {

void add_metrics(grove::telemetry::metric_registry& metrics, std::shared_ptr<service_state> state);

} // namespace groved
