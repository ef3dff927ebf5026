// groved's supervision tree, apart from main() so that a test or a fuzz
// target can run the same tenants, stores and sessions (service.hpp) as the
// daemon:
//   tenants          the tenant manager's subtree (tenants.hpp): one process
//   │                per tenant, each with its store's shards under it
//   tcp, tls         erps daemons (each: listener + a dynamic supervisor with
//                    one session process per client), rest_for_one after the
//                    tenants, written into the service_state's daemon slots
#pragma once

#include "config.hpp"
#include "logger.hpp"
#include "service.hpp"

#include <grove/erps/daemon.hpp>
#include <grove/registry/supervised.hpp>
#include <grove/supervisor/child_spec.hpp>

#include <cstddef>
#include <memory>
#include <vector>

namespace groved {

/// The daemon slots of service_state::daemons().
inline constexpr std::size_t tcp_slot = 0;
inline constexpr std::size_t tls_slot = 1;

/// The erps options of one listener, from the configuration.
grove::erps::daemon_options daemon_options_for(const config& c, bool tls, const logger& log);

/// The children of groved's top supervisor (rest_for_one).
std::vector<grove::child_spec> tree(const config& c, grove::registry& names, const std::shared_ptr<service_state>& state,
                                    std::size_t workers, const logger& log);

} // namespace groved
