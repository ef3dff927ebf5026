#include "tree.hpp"

#include "cluster.hpp"

#include <stdexcept>

namespace groved {

std::vector<part> tree(const config& c, const std::shared_ptr<service_state>& state,
                       grove::telemetry::metric_registry* metrics) {
  std::vector<part> parts;
  if (!c.access_policy.empty()) parts.push_back(access_part(c, state));
  if (state->cluster) parts.push_back(cluster_part(c, state));
  parts.push_back(tenants_part(c, state));
  if (c.tcp.enabled) parts.push_back(listener_part(c, state, false));
  if (c.tls.enabled) parts.push_back(listener_part(c, state, true));
  if (c.admin.enabled) {
    if (!metrics) throw std::invalid_argument("admin.enabled: the admin part needs the node's metric registry");
    parts.push_back(admin_part(c, state, *metrics));
  }
  return parts;
}

std::vector<grove::child_spec> child_specs(const std::vector<part>& parts) {
  std::vector<grove::child_spec> specs;
  specs.reserve(parts.size());
  for (const part& p : parts) specs.push_back(p.child);
  return specs;
}

} // namespace groved
