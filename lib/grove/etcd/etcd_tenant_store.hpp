// grove/etcd/etcd_tenant_store.hpp — tenant records and their outbox in
// etcd: the tenant store seam (tenant/store.hpp) for managers whose
// tenants must be readable from any node of a cluster.
//
//   grove::etcd::client etcd({.endpoints = {"http://127.0.0.1:2379"}});
//   grove::etcd_tenant_store store(node, etcd, {.prefix = "groved/tenants/"});
//   grove::tenant_manager tenants(node, store, ...);
//
// Keys under the prefix: `schema` (what this is, refused if it says
// otherwise), `records/ID` (a record), `outbox/SEQUENCE` (an event not yet
// acknowledged, the sequence zero-padded so keys sort), `sequence` (the
// last sequence given). A commit is one etcd transaction, so it is atomic,
// and etcd answers once it is durable (raft, fsync): when commit()
// returns, the change survives the loss of this node and of a minority of
// etcd's members.
//
// One writer at a time: every commit and acknowledgement is conditional on
// the `sequence` key's revision being the one this store last wrote (or
// read at load). A second store that loaded the same prefix and wrote
// fences the first: the first's next write fails with store_failed
// saying another writer took over, and applies nothing. That is what lets
// a node take a tenant set over from one that died, with no write of the
// dead one landing after.
//
// Calls block the calling thread for an etcd round trip (may_block(): the
// manager makes them on a thread of its own, never on a node worker).
// Ids and error texts are kept as bytes (hex in the stored JSON), so any
// id comes back exactly; a config that is not valid JSON text (not UTF-8)
// fails its commit with store_failed and applies nothing.
#pragma once

#include <grove/core/node.hpp>
#include <grove/etcd/client.hpp>
#include <grove/tenant/store.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace grove {

struct etcd_tenant_store_options {
  std::string prefix = "grove/tenants/"; ///< every key of the store starts with it (default "grove/tenants/")
};

class etcd_tenant_store final : public tenant_store {
public:
  /// Checks the prefix (its schema key; an empty prefix gets one). Throws
  /// grove::error: store_refused (the prefix holds something else, or
  /// etcd cannot be reached, named), invalid_argument (an empty prefix).
  /// Calls run on `n` (block_on) from the caller's thread.
  etcd_tenant_store(grove::node& n, etcd::client etcd, etcd_tenant_store_options options = {});

  tenant_store_contents load() override;
  std::vector<std::uint64_t> commit(tenant_change change) override;
  void acknowledge(const std::vector<std::uint64_t>& sequences) override;
  std::string describe() const override;
  bool may_block() const noexcept override { return true; }

  /// The key a record of the store at `prefix` lives at.
  static std::string record_key(const std::string& prefix, std::string_view id);
  /// A record as the store keeps it (the value at record_key), for a reader
  /// that does not open the store: a node taking over the tenants of one
  /// that died reads their records so, and moves each out in a transaction
  /// of its own. Throws grove::error (store_failed) saying what is wrong.
  static tenant_record parse_record(std::string_view id, const std::string& value);

private:
  template <class T>
  T run(awaitable<T> work, const char* what);
  /// A transaction guarded by the fence; returns its revision, or throws.
  std::int64_t fenced(etcd::txn_request request, const char* what, const std::string& expect_sequence);

  grove::node& node_;
  etcd::client etcd_;
  etcd_tenant_store_options options_;
  std::int64_t fence_ = 0;         ///< the sequence key's mod_revision as this store last wrote or read it
  std::uint64_t last_sequence_ = 0;
};

} // namespace grove
