// groved's metrics, served by its admin endpoint: the node, each erps
// listener and the store, read when Prometheus scrapes (collectors), so the
// request path records nothing extra.
#pragma once

#include "service.hpp"

#include <grove/core/node.hpp>
#include <grove/telemetry/metrics.hpp>

#include <memory>

namespace groved {

void add_metrics(grove::telemetry::metric_registry& metrics, grove::node& n, std::shared_ptr<service_state> state);

} // namespace groved
