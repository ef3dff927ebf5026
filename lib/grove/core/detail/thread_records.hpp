// Internal: a list of per-thread records that later threads reuse (the
// bookkeeping behind the epoch records and the telemetry shards). Records
// are pushed, never removed or freed, so a reader may walk the list at any
// time without a lock. A record type has `std::atomic<bool> owned` and
// `Record* next`.
#pragma once

#include <atomic>

namespace grove::detail {

template <class Record>
class thread_records {
public:
  /// A record no thread owns, or a new one; the caller owns it.
  Record* claim() {
    for (Record* r = head(); r; r = r->next) {
      bool expected = false;
      if (!r->owned.load(std::memory_order_relaxed) &&
          r->owned.compare_exchange_strong(expected, true, std::memory_order_acquire)) {
        return r;
      }
    }
    auto* r = new Record;
    r->owned.store(true, std::memory_order_relaxed);
    Record* first = all_.load(std::memory_order_relaxed);
    do {
      r->next = first;
    } while (!all_.compare_exchange_weak(first, r, std::memory_order_release, std::memory_order_relaxed));
    return r;
  }
  /// Gives `r` back (its thread ends); what it holds stays for the next owner.
  static void release(Record* r) noexcept { r->owned.store(false, std::memory_order_release); }
  /// The first record; walk on with `next`.
  Record* head() const noexcept { return all_.load(std::memory_order_acquire); }

private:
  std::atomic<Record*> all_{nullptr};
};

} // namespace grove::detail
