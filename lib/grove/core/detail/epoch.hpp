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
#include <cstddef>
#include <cstdint>

namespace grove::detail {

/// One thread's announcement: the epoch it pinned at, 0 when not pinned.
/// Two slots, and the collector honours the older of them:
/// - `pinned`, for pins that nest (epoch_guard, pin()): the first stores
///   the epoch, later ones only count (`extra`), and the last released
///   stores 0 again, in whatever order they are released.
/// - `held`, one pin that does not nest (try_pin_held()): a snapshot a
///   caller holds for a while. It is taken only when free, so releasing
///   it is one store, with nothing to count; a second one while it is
///   taken goes to the nesting slot.
/// An unnested read stores twice, both on the thread's own cache line
/// (liburcu's read lock does the same).
struct alignas(64) epoch_record {
  /// A thread's record before its first pin, and after its thread ended:
  /// not in the collector's list yet (or any more). Never an epoch (those
  /// stay far below it).
  static constexpr std::uint64_t unlisted = ~std::uint64_t{0};

  std::atomic<std::uint64_t> pinned{unlisted};
  std::atomic<std::uint64_t> held{unlisted};
  std::uint32_t extra = 0;      // pins beyond the first in `pinned` (touched by the owning thread only)
  epoch_record* next = nullptr; // the collector's list (under its lock)
};

/// This thread's record, in the thread's own static TLS block: a pin
/// reaches it at a fixed offset from the thread pointer, with no pointer
/// to load first. Constant-initialised with a trivial destructor, so no
/// TLS wrapper call either. It joins the collector's list on its thread's
/// first pin and leaves it when the thread ends (after every thread_local
/// destructor of that thread has run, so those may pin too).
inline thread_local constinit epoch_record this_thread_epoch;

/// The global epoch, moved on by 2 at every retirement. Its low bit says
/// whether readers must fence after pinning (1: yes; see fence_after_pin):
/// one load gives a pin both, and the bit is cleared once (by adding 1, so
/// the epoch never goes back) when membarrier(2) is available.
extern std::atomic<std::uint64_t> global_epoch;

/// True once the process registered for membarrier(2)'s private expedited
/// command (at load time; false where the kernel lacks it). Then a
/// reader's pin needs only a compiler barrier, and collect() makes the
/// full fence on every reader's behalf: the cost moves from every read to
/// the rare collection. Never goes back to false. Readers learn it from
/// the global epoch's low bit, cleared after this is set.
extern std::atomic<bool> asymmetric_fences;

/// What follows a reader's pin at `epoch`: the pinned epoch must be
/// visible to a collector before the reader loads anything it could free.
inline void fence_after_pin(std::uint64_t epoch) noexcept {
  if ((epoch & 1) == 0) [[likely]] {
    std::atomic_signal_fence(std::memory_order_seq_cst);
  } else {
    std::atomic_thread_fence(std::memory_order_seq_cst);
  }
}

/// The first pin of a thread whose record is not in the collector's list:
/// lists it, with both slots free (out of line: once per thread).
void pin_unlisted() noexcept;

/// How many threads' records the collector walks (tests: a thread that
/// ended is no longer among them).
std::size_t listed_epoch_records();

/// pin()'s and try_pin_held()'s paths other than the common one (out of
/// line): the thread's first pin, a pin that must fence, a nested pin.
void pin_slow(std::uint64_t now) noexcept;
bool try_pin_held_slow(std::uint64_t now) noexcept;

/// Pins the calling thread. Release it with unpin() on the same thread
/// (a grove process always resumes on its own worker; a pin is never held
/// across a suspension that could move it).
inline void pin() noexcept {
  epoch_record& r = this_thread_epoch;
  const std::uint64_t now = r.pinned.load(std::memory_order_relaxed);
  const std::uint64_t epoch = global_epoch.load(std::memory_order_acquire);
  // One test for the common case (not pinned yet, listed, no fence
  // needed): each branch on a read path costs it throughput.
  if ((now | (epoch & 1)) == 0) [[likely]] {
    r.pinned.store(epoch, std::memory_order_relaxed);
    std::atomic_signal_fence(std::memory_order_seq_cst); // see fence_after_pin
  } else {
    pin_slow(now);
  }
}
/// Releases one pin the calling thread took with pin().
inline void unpin() noexcept {
  epoch_record& r = this_thread_epoch;
  if (r.extra == 0) [[likely]] {
    r.pinned.store(0, std::memory_order_release);
  } else {
    --r.extra;
  }
}

/// Pins the calling thread in its non-nesting slot if that is free, and
/// says whether it did; when it is taken (the thread already holds one),
/// does nothing and returns false: use pin() instead. Release a true
/// answer with unpin_held() on the same thread, in any order with other
/// pins. The read path of a snapshot: no count to keep, so its release
/// is one store and no load.
inline bool try_pin_held() noexcept {
  epoch_record& r = this_thread_epoch;
  const std::uint64_t now = r.held.load(std::memory_order_relaxed);
  const std::uint64_t epoch = global_epoch.load(std::memory_order_acquire);
  if ((now | (epoch & 1)) == 0) [[likely]] { // as pin()
    r.held.store(epoch, std::memory_order_relaxed);
    std::atomic_signal_fence(std::memory_order_seq_cst);
    return true;
  }
  return try_pin_held_slow(now);
}
/// Releases the pin try_pin_held() took.
inline void unpin_held() noexcept { this_thread_epoch.held.store(0, std::memory_order_release); }

/// Pins the calling thread for a read. Nestable; cheap (one store on the
/// thread's own cache line to pin and one to unpin, and a fence unless
/// asymmetric fences). Scoped: released on the thread that took it.
class epoch_guard {
public:
  epoch_guard() noexcept { pin(); }
  ~epoch_guard() { unpin(); }
  epoch_guard(const epoch_guard&) = delete;
  epoch_guard& operator=(const epoch_guard&) = delete;
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
