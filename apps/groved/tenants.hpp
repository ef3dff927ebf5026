// groved's tenants: each keyspace is a tenant of a grove::tenant_manager,
// with durable records (SQLite, DATA_PATH.tenants.db; in memory without a
// data_path). A tenant's process owns its store: when it runs it reads its
// snapshot and log, opens its write-ahead log and starts its shards under a
// supervisor linked to it; an update changes its limits; an uninstall
// stops its shards and deletes its files.
//
//   tenants               the manager's subtree (tenant_manager.hpp)
//   └── tenant ID         one process per tenant
//       └── shards        supervisor, one_for_one, linked to the tenant
//           └── shard-0..N  registered as groved.shard.ID/I
//
// Where each tenant keeps its data: service_state::store_path. The default
// tenant (tenants.default) is installed at start when missing and cannot
// be uninstalled: clients without an access policy, and policy entries
// naming no tenant, work in it.
#pragma once

#include "service.hpp"

#include <grove/supervisor/child_spec.hpp>
#include <grove/supervisor/supervisor.hpp>
#include <grove/tenant/manager.hpp>

#include <memory>
#include <string>

namespace groved {

/// A tenant's limits: `config` (max_keys, max_key_bytes, max_subscriptions,
/// shards) over `defaults`. Throws bad_request naming the field and the
/// expected form.
tenant_limits limits_from(const json& config, const tenant_limits& defaults);

/// Waits until the tenant's process has run (its store is open or failed to
/// open): "" when open, else why not.
struct store_status {
  using reply_type = std::string;
};

/// Writes the tenant's snapshot now (rotating its log); false if it failed
/// (logged). A tenant without a data_path answers true.
struct snapshot_request {
  using reply_type = bool;
};

class store_tenant : public grove::tenant<json> {
public:
  explicit store_tenant(std::shared_ptr<service_state> state);

  grove::tenant_result<json> handle_install(const grove::tenant_info& t);
  grove::awaitable<grove::tenant_reply<json>> handle_run(const grove::tenant_info& t, json& state);
  grove::awaitable<grove::tenant_result<json>> handle_update(const grove::tenant_update& u, const grove::tenant_info& t,
                                                             json& state);
  grove::awaitable<grove::tenant_result<json>> handle_uninstall(const grove::tenant_info& t, json& state);
  grove::awaitable<std::string> handle_call(store_status);
  grove::awaitable<bool> handle_call(snapshot_request);
  grove::action handle_info(grove::message m);
  grove::awaitable<void> terminate(const grove::exit_reason& reason);

private:
  grove::awaitable<std::string> open(const grove::tenant_info& t);
  grove::awaitable<void> close();

  std::shared_ptr<service_state> state_;
  std::shared_ptr<store> store_;
  grove::supervisor shards_;
  std::string failure_; // why the store did not open (empty: it is open, or not tried)
};

using tenant_manager_t = grove::tenant_manager<store_tenant>;

/// The manager of groved's tenants, set in `state` (state->tenants). The
/// tenants part (tree.hpp) runs it, and installs the default tenant if it is
/// missing once it is up (a default store that cannot be read fails the
/// start, naming the file).
std::shared_ptr<tenant_manager_t> make_tenant_manager(const std::shared_ptr<service_state>& state);

/// Writes every running tenant's snapshot; false if one failed (logged).
grove::awaitable<bool> snapshot_tenants(std::shared_ptr<service_state> state);

/// A record as the tenant.* ops show it.
json record_json(const grove::tenant_record& r, const service_state& state);

} // namespace groved
