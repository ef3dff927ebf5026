// grove/etcd/etcd_registry.hpp — the registry interface on etcd: names,
// groups, watchers and claims shared by every node that opens a registry
// on the same etcd cluster and prefix.
//
//   grove::etcd::client etcd({.endpoints = {"http://127.0.0.1:2379"}});
//   auto names = co_await grove::etcd_registry::open(node, etcd);     // joins the cluster
//   co_await names->register_name("billing");                        // cluster-wide, held by this process
//   grove::pid holder = names->whereis("billing");                   // any thread, from the local cache
//
// What lives in etcd, under the prefix (default "grove/"):
//   nodes/ID          this node while its registry runs (its lease), with
//                     its creation and endpoint: a second registry for one
//                     node id is refused
//   names/NAME        the holder's pid (node id, creation, worker, slot,
//                     serial) and its node's endpoint, on the node's lease;
//                     or a claim being settled
//   groups/KEY/PID    a member and its value, on the node's lease
//   meta/KEY          registry metadata (no lease: it outlives the nodes)
//
// One lease per registry, held by an etcd::lease_keeper the registry's
// process starts: when a node dies, its names and memberships go when the
// lease's TTL runs out; when a registry stops cleanly, the lease is revoked
// and they go at once. A lease that ends under a running registry (it
// expired while etcd was away, or was revoked) is replaced: the registry
// takes a new one and writes its live names, memberships and claims again
// (a name another node took meanwhile stays that node's). A registration
// is written in a transaction only if the key is absent, so of two nodes
// registering one name, one wins.
//
// Lookups (whereis, names, members, meta) read a local cache, lock-free, and
// never touch the network: the registry loads the prefix when it opens and
// keeps the cache current from a watch (resumed from the last revision it
// applied, so no change is missed or applied twice). A change this registry
// makes is in its own cache when the call returns (the call waits for its
// revision to come back through the watch); another node's shows up one
// watch round trip after it was made. If the watch falls behind a
// compaction, the registry reloads the prefix and tells watchers what changed.
//
// Owners. A name or membership is owned by a process of this registry's
// node (a pid of another node is refused: its node's registry owns what
// it holds). The registry monitors owners and deletes their keys when they
// end. whereis() checks a local holder is alive; a holder on another node
// is returned while its node's lease lives.
//
// Claims (register-or-start, start_link through a name): a claim is a
// key written only if absent, so claims are linearisable across nodes;
// claimants that lose wait, on any node, until the claim settles.
//
// Group values travel through etcd: a member's value must be empty, a
// std::string or an nlohmann::json (others are refused with
// invalid_argument), and members() gives back the same type.
//
// Node ids: every node that opens a registry on one prefix needs its own
// node_options::id; open() fails with registry_errc::already_registered
// naming the id when a live registry holds it.
#pragma once

#include <grove/core/node.hpp>
#include <grove/etcd/client.hpp>
#include <grove/registry/registry.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace grove {

struct etcd_registry_options {
  std::string prefix = "grove/";          ///< every key the registry reads or writes starts with it (default "grove/")
  std::int64_t lease_ttl_seconds = 10;    ///< this node's lease: how long its names outlive it (default 10)
  std::string endpoint{};                 ///< this node's address for other nodes, stored with its names (default none)
  std::optional<std::size_t> worker{};    ///< worker the registry's process runs on (default: round-robin)
  duration open_timeout = std::chrono::seconds(30); ///< open(): the lease, the node key and the first load (default 30 s)
};

class etcd_registry final : public registry {
public:
  /// Joins the cluster: grants the lease, writes this node's key, loads
  /// the prefix and starts the watch. Throws grove::error: etcd's errors,
  /// registry_errc::already_registered (a live registry holds this node
  /// id), errc::invalid_argument (a bad option, named), errc::timeout.
  static awaitable<std::unique_ptr<etcd_registry>> open(grove::node& n, etcd::client etcd,
                                                        etcd_registry_options options = {});
  /// Stops the registry's process, which revokes the lease: this node's
  /// names and memberships go from the cluster at once.
  ~etcd_registry() override;

  pid whereis(std::string_view name) const override;
  std::vector<std::string> names() const override;
  std::size_t count() const override;

  std::vector<group_member> members(std::string_view key) const override;
  void for_each_member(std::string_view key, const std::function<void(const group_member&)>& f) const override;

  awaitable<void> put_meta(std::string key, std::string value) override;
  std::optional<std::string> meta(std::string_view key) const override;

  awaitable<name_claim> claim(std::string name) override;
  awaitable<void> settle_claim(std::string name, pid started) override;

  /// The registry's own process (it applies every change).
  pid process() const noexcept { return server_; }
  /// The endpoint a name's holder's node advertised (empty: none, or not held).
  std::string endpoint_of(std::string_view name) const;
  /// The endpoint node `node_id` advertised while its registry runs (empty:
  /// none, or no such node in the cluster). Any thread, from the cache: a
  /// grove::dist resolver (dist::options::resolve).
  std::string node_endpoint(std::uint32_t node_id) const;
  /// The etcd revision the cache reflects.
  std::int64_t revision() const noexcept;

  struct tables; ///< (internal) the cache, shared with the registry's process

protected:
  awaitable<void> do_register_name(std::string name, pid owner) override;
  awaitable<bool> do_unregister_name(std::string name, pid owner) override;
  awaitable<void> do_join(std::string key, std::any value, pid member) override;
  awaitable<bool> do_leave(std::string key, pid member) override;
  awaitable<void> do_watch(std::string key, pid watcher) override;
  awaitable<void> do_unwatch(std::string key, pid watcher) override;

private:
  etcd_registry(grove::node& n, std::shared_ptr<tables> t, pid server);

  std::shared_ptr<tables> tables_;
  pid server_;
};

} // namespace grove
