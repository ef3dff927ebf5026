// groved across nodes: several groveds share one etcd (cluster.etcd), and
// each tenant is served by one of them.
//
// Keys, under cluster.prefix (P, default "groved/"):
//   P cluster/nodes/NODE        {"tcp":"HOST:PORT","tls":"HOST:PORT"}: where NODE's clients connect
//   P cluster/placement/TENANT  NODE: the one node that serves TENANT
//   P tenants/NODE/             NODE's tenant records (an etcd_tenant_store)
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
// (grovectl connects there and sends the request again). Two nodes never
// serve one tenant: the placement key is the fence, and a node whose lease
// is lost stops serving (the cluster part fails, and groved's root
// supervisor restarts it with the tenants and listeners after it, which
// claim their tenants again under the new lease).
//
//   cluster               the cluster part: a gen_server (cluster_node)
//   ├── lease keeper      grove::etcd::lease_keeper, linked
//   └── watcher           keeps the nodes and placements cache (a watch)
#pragma once

#include "config.hpp"
#include "part.hpp"

#include <grove/etcd/client.hpp>

#include <nlohmann/json.hpp>

#include <atomic>
#include <cstdint>
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
  std::string tenants_prefix() const { return prefix_ + "tenants/" + node_ + "/"; }
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

/// The cluster part (before the tenants): holds the lease, the node's name
/// and the cache. Its start fails, naming the key, when the name is held
/// by another groved past one lease TTL, or etcd cannot be reached.
part cluster_part(const config& c, const std::shared_ptr<service_state>& state);

} // namespace groved
