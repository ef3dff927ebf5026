// grove/tenant/store.hpp — where tenant records live: the store seam, and
// memory_tenant_store (sqlite_store.hpp has the durable one).
//
//   grove::memory_tenant_store store;
//   grove::tenant_change c;
//   c.put = grove::tenant_record{.id = "acme", .state = grove::tenant_state::running, .generation = 1};
//   c.events.push_back({.tenant = "acme", .kind = grove::tenant_event_kind::install, .generation = 1});
//   std::vector<std::uint64_t> sequences = store.commit(std::move(c)); // the record and its event, at once
//   store.acknowledge(sequences);                                       // delivered: out of the outbox
//
// The tenant manager keeps every record in memory for lock-free reads and
// writes each change through its store before the operation that made it
// returns. The store also keeps the outbox: events committed with the
// change that produced them and removed once the event sink took them, so
// an event is never lost between a change and its delivery.
//
// What a store must guarantee (etcd_tenant_store in grove/etcd included;
// tests/tenant/store_contract.hpp checks it on each):
//  - commit() is atomic and durable: when it returns, the record put or
//    erased and every event appended are stored together and survive a
//    crash of the program; when it throws, none of it was applied.
//  - Event sequences increase strictly over the store's whole life, across
//    restarts, and are never reused, not even after acknowledge() removed
//    them. commit() returns them in the order of change.events.
//  - load() returns every record, and the outbox in sequence order.
//  - Records and events come back exactly as committed (ids byte for byte,
//    JSON values equal, timestamps to the microsecond).
//  - A store that cannot be read as a tenant store (damaged, another
//    program's file, a newer schema) is refused when it is opened, with
//    tenant_errc::store_refused naming it, and left untouched. A failure
//    later throws tenant_errc::store_failed naming the store and the reason.
//  - Calls come from one thread at a time (the manager's), and may block for
//    as long as the storage takes (a disk sync, a network round trip); they
//    never block forever.
#pragma once

#include <grove/tenant/record.hpp>

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace grove {

/// One atomic change: a record written or erased, and the events it
/// produced.
struct tenant_change {
  std::optional<tenant_record> put{};   ///< insert, or replace the record with this id
  std::optional<std::string> erase{};   ///< remove the record with this id (no error if there is none)
  std::vector<tenant_event> events{};   ///< appended to the outbox (their sequence fields are ignored)
};

/// Everything a store holds, for the manager's warm-up.
struct tenant_store_contents {
  std::vector<tenant_record> records{}; ///< in id order
  std::vector<tenant_event> outbox{};   ///< events not yet acknowledged, in sequence order
};

class tenant_store {
public:
  tenant_store() = default;
  tenant_store(const tenant_store&) = delete;
  tenant_store& operator=(const tenant_store&) = delete;
  virtual ~tenant_store() = default;

  /// Every record and the outbox.
  virtual tenant_store_contents load() = 0;
  /// Applies `change` atomically and durably; returns the sequences given
  /// to its events, in order. Throws grove::error: bad_tenant_id (a put's
  /// id), store_failed.
  virtual std::vector<std::uint64_t> commit(tenant_change change) = 0;
  /// Removes delivered events from the outbox (unknown sequences are
  /// ignored). Throws grove::error: store_failed.
  virtual void acknowledge(const std::vector<std::uint64_t>& sequences) = 0;
  /// What this store is, for errors and logs ("memory", "sqlite /var/lib/x.db").
  virtual std::string describe() const = 0;
  /// Whether a call may wait for a disk or a network (default true): the
  /// manager then makes it on a thread of its own, off the node's workers.
  virtual bool may_block() const noexcept { return true; }
};

/// Records in memory: for tests and for services whose tenants need not
/// outlive the program. Outlives a manager that is stopped and started again
/// on it (the user owns it), which is how tests restart a manager without a
/// disk.
class memory_tenant_store final : public tenant_store {
public:
  tenant_store_contents load() override;
  std::vector<std::uint64_t> commit(tenant_change change) override;
  void acknowledge(const std::vector<std::uint64_t>& sequences) override;
  std::string describe() const override { return "memory"; }
  bool may_block() const noexcept override { return false; }

private:
  std::mutex mutex_; // the contract says one thread at a time; tests read it from theirs
  std::map<std::string, tenant_record> records_;
  std::map<std::uint64_t, tenant_event> outbox_;
  std::uint64_t last_sequence_ = 0;
};

} // namespace grove
