// Internal: epoch-based reclamation, so readers of a shared structure never
// lock and never touch a reference count, and writers free what they
// unlinked only once no reader can still hold it.
//
// A reader pins for the length of one lookup (an epoch_guard). A writer
// unlinks a node, retires it, and now and then collects. A retired node is
// freed once every reader that was pinned when it was retired has unpinned;
// readers that pin later cannot reach it (epoch.cpp says why).
//
// One domain for the whole program: the reclamation bookkeeping is per
// thread, not per structure, so two registries in one binary share it as
// they share the allocator. It holds no user-visible state.
#pragma once

#include <atomic>
#include <cstdint>

namespace grove::detail {

/// One thread's announcement: the epoch it pinned at, 0 when not pinned.
/// A thread's pins nest: the first stores the epoch, later ones only count
/// (`extra`), and the last released stores 0 again, in whatever order they
/// are released. The common unnested read stores twice, both on the
/// thread's own cache line (liburcu's read lock does the same).
struct alignas(64) epoch_record {
  std::atomic<std::uint64_t> pinned{0};
  std::atomic<bool> owned{false};
  std::uint32_t extra = 0; // pins beyond the first (touched by the owning thread only)
  epoch_record* next = nullptr;
};

/// Claims a record for the calling thread (first use) and arranges its
/// release at thread exit.
epoch_record& claim_this_thread_epoch_record();
/// This thread's record, once claimed (constant-initialised: no TLS
/// wrapper call on the read path).
inline thread_local epoch_record* this_thread_record = nullptr;
/// This thread's record (claimed on first use, released at thread exit).
inline epoch_record& this_thread_epoch_record() {
  epoch_record* r = this_thread_record;
  if (r) [[likely]]
    return *r;
  return claim_this_thread_epoch_record();
}
/// The global epoch: moved on by every retirement.
extern std::atomic<std::uint64_t> global_epoch;
/// The current global epoch (inline: a reader's pin makes no call).
inline std::uint64_t current_epoch() noexcept { return global_epoch.load(std::memory_order_acquire); }

/// True once the process registered for membarrier(2)'s private expedited
/// command (at load time; false where the kernel lacks it). Then a
/// reader's pin needs only a compiler barrier, and collect() makes the
/// full fence on every reader's behalf: the cost moves from every read to
/// the rare collection. Never goes back to false.
extern std::atomic<bool> asymmetric_fences;

/// What follows a reader's pin: the pinned epoch must be visible to a
/// collector before the reader loads anything it could free.
inline void fence_after_pin() noexcept {
  if (asymmetric_fences.load(std::memory_order_relaxed)) [[likely]] {
    std::atomic_signal_fence(std::memory_order_seq_cst);
  } else {
    std::atomic_thread_fence(std::memory_order_seq_cst);
  }
}

/// Pins the calling thread's record; returns it for unpin().
inline epoch_record* pin() {
  epoch_record* r = &this_thread_epoch_record();
  if (r->pinned.load(std::memory_order_relaxed) == 0) [[likely]] {
    r->pinned.store(current_epoch(), std::memory_order_relaxed);
    fence_after_pin();
  } else {
    ++r->extra; // nested: the first pin's (older) epoch already covers this one
  }
  return r;
}
/// Releases one pin taken by pin() on this thread.
inline void unpin(epoch_record* r) noexcept {
  if (r->extra == 0) [[likely]] {
    r->pinned.store(0, std::memory_order_release);
  } else {
    --r->extra;
  }
}

/// Pins the calling thread for a read. Nestable; cheap (one store on the
/// thread's own cache line to pin and one to unpin, and a fence unless
/// asymmetric_fences).
class epoch_guard {
public:
  epoch_guard() : record_(pin()) {}
  ~epoch_guard() { unpin(record_); }
  epoch_guard(const epoch_guard&) = delete;
  epoch_guard& operator=(const epoch_guard&) = delete;

private:
  epoch_record* record_;
};

/// Nodes a writer unlinked and will free once no reader can hold them.
/// Not thread-safe: owned by one structure, used under its writer lock.
class retired_list {
public:
  retired_list() = default;
  retired_list(const retired_list&) = delete;
  retired_list& operator=(const retired_list&) = delete;
  /// Frees everything (the owner guarantees no reader is left).
  ~retired_list();

  void retire(void* node, void (*deleter)(void*));
  /// Frees what no pinned reader can hold; returns how many are left.
  std::size_t collect();
  std::size_t size() const noexcept { return size_; }

private:
  struct item {
    void* node;
    void (*deleter)(void*);
    std::uint64_t epoch;
    item* next;
  };
  item* head_ = nullptr;
  std::size_t size_ = 0;
};

} // namespace grove::detail
