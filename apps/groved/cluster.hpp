// groved across nodes: several groveds share one etcd (cluster.etcd), each
// tenant is served by one of them, and the others take it over, data and
// all, when its node dies.
//
// Keys, under cluster.prefix (P, default "groved/"):
//   P cluster/nodes/NODE        {"tcp":"HOST:PORT","tls":"HOST:PORT"}: where NODE's clients connect
//   P cluster/placement/TENANT  NODE: the one node that serves TENANT
//   P tenants/NODE/             NODE's tenant records (an etcd_tenant_store)
//   P data/TENANT/              TENANT's write-ahead log and snapshots (tenant_data)
// The first two are attached to the node's lease (cluster.lease_ttl_s,
// renewed every third of it): a node that dies loses its name and its
// placements when its lease ends; one that stops gracefully revokes it, so
// they go at once.
//
// Placement. A tenant is placed on the node that installs it: its
// placement key is written only if absent (an etcd transaction), before
// its record, and a tenant's process claims it again before it opens its
// store. A tenant placed on another node is not served here: its clients
// get the error `moved` naming the node and its addresses, and are closed
// (grovectl connects there and sends the request again).
//
// Fencing. Every write of a tenant's data holds only while its placement
// names this node under the lease held now (tenant_data). A node whose
// lease is lost stops serving: the cluster part fails, and groved's root
// supervisor restarts it with the tenants and listeners after it, which
// claim their tenants again under the new lease.
//
// Failover. A lease that ends erases the node's name and placements in one
// revision; every other node's watch sees them go and claims each tenant
// (one claim lands), moves its record out of the dead node's store while
// that node is still gone, installs it and serves it from its data in etcd.
//
//   cluster               the cluster part: a gen_server (cluster_node)
//   ├── lease keeper      grove::etcd::lease_keeper, linked
//   └── watcher           keeps the nodes and placements cache (a watch); starts takeovers
#pragma once

#include "config.hpp"
#include "part.hpp"
#include "wal.hpp"

#include <grove/etcd/client.hpp>

#include <nlohmann/json.hpp>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace groved {

struct service_state;

/// What every part of a clustered groved knows of the cluster: the etcd
/// client, this node's name and lease, and a watch-fed cache of the nodes'
/// addresses and the tenants' placements (lookups never go to etcd).
class cluster_view {
public:
  explicit cluster_view(const config& c);

  const std::string& node() const noexcept { return node_; }
  const grove::etcd::client& etcd() const noexcept { return etcd_; }
  /// P cluster/ (the watched range).
  std::string watched_prefix() const { return prefix_ + "cluster/"; }
  std::string node_key(std::string_view node) const { return prefix_ + "cluster/nodes/" + std::string(node); }
  std::string placement_key(std::string_view tenant) const {
    return prefix_ + "cluster/placement/" + std::string(tenant);
  }
  /// Where this node's tenant records live (P tenants/NODE/).
  std::string tenants_prefix() const { return tenants_prefix(node_); }
  std::string tenants_prefix(std::string_view node) const { return prefix_ + "tenants/" + std::string(node) + "/"; }
  /// Every node's tenant records (P tenants/).
  std::string all_tenants_prefix() const { return prefix_ + "tenants/"; }
  /// Where a tenant's data lives (P data/TENANT/).
  std::string data_prefix(std::string_view tenant) const { return prefix_ + "data/" + std::string(tenant) + "/"; }
  std::int64_t lease_ttl_seconds() const noexcept { return ttl_; }

  /// This node's lease now (0 before the cluster part has one).
  std::int64_t lease() const noexcept { return lease_.load(std::memory_order_acquire); }
  void set_lease(std::int64_t id) noexcept { lease_.store(id, std::memory_order_release); }

  /// The node tenant `tenant` is placed on, from the cache.
  std::optional<std::string> placed_on(std::string_view tenant) const;
  /// Node `node`'s addresses ({"tcp":…,"tls":…}), from the cache.
  std::optional<nlohmann::json> addresses(std::string_view node) const;
  /// Every placement (tenant → node), from the cache.
  std::map<std::string, std::string> placements() const;

  /// The cache from a full read of the watched range / from a watch's events.
  void reset(const std::vector<grove::etcd::key_value>& kvs);
  void apply(const std::vector<grove::etcd::event>& events);

  /// Places `tenant` on this node under its lease: "" when it is (or now
  /// is) this node's, else the node that holds it. Throws grove::error when
  /// etcd cannot be asked.
  grove::awaitable<std::string> claim(std::string tenant) const;
  /// Drops this node's placement of `tenant` (no-op if another node's).
  grove::awaitable<void> release(std::string tenant) const;
  /// Records where this node's `listener` ("tcp" or "tls") is reached
  /// (listener_address: the address it is bound to; cluster.advertise
  /// replaces its host), and writes the node's key under the lease.
  grove::awaitable<void> announce(std::string listener, std::string listener_address, std::uint16_t port);
  /// Writes the node's key ({} until a listener announces) only if absent:
  /// false when another live groved holds the name.
  grove::awaitable<bool> claim_name() const;

private:
  std::string own_addresses_text() const;
  void apply_put(const grove::etcd::key_value& kv);
  void apply_erase(std::string_view key);

  std::string node_;
  std::string prefix_;
  std::string advertise_;
  std::int64_t ttl_;
  grove::etcd::client etcd_;
  std::atomic<std::int64_t> lease_{0};

  mutable std::mutex mutex_;
  std::map<std::string, std::string, std::less<>> placements_;
  std::map<std::string, nlohmann::json, std::less<>> nodes_;
  nlohmann::json own_ = nlohmann::json::object();
};

/// A tenant's data in etcd, where a clustered groved keeps its log and
/// snapshots so that the node that takes the tenant over finds every
/// acknowledged write (P data/TENANT/):
///   log/G/S     one round of the log's records (or a part of a large one):
///               generation G, sequence S, both 16 hex digits so keys sort
///   snap/G/P    part P (8 hex digits) of the snapshot holding generations before G
///   snap/G/parts  how many parts: written last, so a snapshot without it is not whole
/// Every write is a transaction that holds only while the tenant's
/// placement is this node's under the lease it has now: once another node
/// has the tenant, nothing this one writes lands.
class tenant_data final : public wal_remote {
public:
  tenant_data(grove::node& n, std::shared_ptr<const cluster_view> cluster, std::string tenant);

  /// The log's thread: stores a round (waits for etcd).
  std::string store(std::string_view records, std::uint64_t generation, bool& broken) override;
  /// The tenant's keys: its newest whole snapshot, then the log from that
  /// generation on; `keep` filters keys. Throws snapshot_error, wal_error
  /// or grove::error (etcd).
  grove::awaitable<recovered_store> recover(std::uint32_t max_depth, std::function<bool(std::string_view)> keep) const;
  /// Writes the snapshot holding the generations before `generation`, then
  /// drops those generations and older snapshots. Throws.
  grove::awaitable<void> write_snapshot(const nlohmann::json& data, std::uint64_t generation) const;
  /// Drops everything (an uninstall). Throws.
  grove::awaitable<void> erase_all() const;
  /// P data/TENANT/
  const std::string& prefix() const noexcept { return prefix_; }

private:
  /// The transaction's guard: the placement is this node's, under its lease.
  grove::etcd::txn_request fenced() const;
  grove::awaitable<void> put_fenced(std::string key, std::string value) const;

  grove::node& node_;
  std::shared_ptr<const cluster_view> cluster_;
  std::string tenant_;
  std::string prefix_;
  std::uint64_t generation_ = 0; // the log's thread's: the generation its sequence counts in
  std::uint64_t sequence_ = 0;
};

/// Takes over, in the background, the tenants of nodes that are gone which
/// nobody serves (their node died while no other node watched, or a
/// takeover did not finish). The tenants part calls it once it is up.
void adopt_orphans(const std::shared_ptr<service_state>& state);

/// The cluster part (before the tenants): holds the lease, the node's name
/// and the cache. Its start fails, naming the key, when the name is held
/// by another groved past one lease TTL, or etcd cannot be reached.
part cluster_part(const config& c, const std::shared_ptr<service_state>& state);

} // namespace groved
