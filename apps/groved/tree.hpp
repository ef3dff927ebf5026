// groved's supervision tree: its parts, in start order, under one
// rest_for_one supervisor (a part that restarts restarts the ones after it).
// It is apart from main() so that a test or a fuzz target can run the same
// parts as the daemon.
//
//   groved                  supervisor, rest_for_one
//   ├── access              the access policy: a remote term's refresher (with access.policy)
//   ├── cluster             with cluster.etcd: this node's lease, name and the placements cache
//                           (cluster.hpp); restarted, it restarts the tenants and listeners,
//                           which claim their tenants again
//   ├── tenants             the tenant manager (tenants.hpp): a process per tenant,
//   │                       each with its store's shards; and the snapshot timer
//   ├── tcp, tls            erps daemons: listener + dynamic supervisor, a session per client
//   └── admin               the admin endpoint (with admin.enabled)
//
// Each part is a function from the configuration (its own section) to a
// part (part.hpp), in a file of its own; a new one is written so, and named
// in tree().
#pragma once

#include "config.hpp"
#include "part.hpp"
#include "service.hpp"

#include <grove/erps/daemon.hpp>
#include <grove/supervisor/child_spec.hpp>

#include <cstddef>
#include <memory>
#include <vector>

namespace grove::telemetry {
class metric_registry;
} // namespace grove::telemetry

namespace groved {

/// The daemon slots of service_state::daemons().
inline constexpr std::size_t tcp_slot = 0;
inline constexpr std::size_t tls_slot = 1;

/// access.*: the access policy, read before anything after it starts (a
/// policy that cannot be read fails the start, naming access.policy), then
/// every access.refresh_ms and on reload; each new one goes to the sessions.
part access_part(const config& c, const std::shared_ptr<service_state>& state);
/// tenants.*, data_path, durability*, snapshot_interval_ms and the limits:
/// the tenants and their stores (tenants.hpp).
part tenants_part(const config& c, const std::shared_ptr<service_state>& state);
/// tcp.* or tls.*: an erps daemon serving sessions (listeners.cpp).
part listener_part(const config& c, const std::shared_ptr<service_state>& state, bool tls);
/// admin.*: the admin endpoint, serving `metrics` (the node's) and groved's
/// own figures (metrics.hpp).
part admin_part(const config& c, const std::shared_ptr<service_state>& state, grove::telemetry::metric_registry& metrics);

/// groved's parts, in start order, as the configuration enables them.
/// `metrics` is the node's registry (needed with admin.enabled).
std::vector<part> tree(const config& c, const std::shared_ptr<service_state>& state,
                       grove::telemetry::metric_registry* metrics);

/// The parts' child specs, for the root supervisor.
std::vector<grove::child_spec> child_specs(const std::vector<part>& parts);

/// The erps options of one listener, from the configuration.
grove::erps::daemon_options daemon_options_for(const config& c, bool tls, const logger& log);

} // namespace groved
