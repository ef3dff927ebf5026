#include <grove/core/detail/epoch.hpp>
#include <grove/core/detail/thread_records.hpp>

#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <limits>

namespace grove::detail {

std::atomic<bool> asymmetric_fences{false};
std::atomic<std::uint64_t> global_epoch{1};

namespace {

int membarrier(int command) { return static_cast<int>(::syscall(__NR_membarrier, command, 0, 0)); }

/// Registers for private expedited membarrier at load time, before any
/// grove thread exists; readers that pin before this use full fences.
[[maybe_unused]] const bool registered = [] {
  const int supported = membarrier(MEMBARRIER_CMD_QUERY);
  if (supported < 0 || (supported & MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0) return false;
  if (membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) != 0) return false;
  asymmetric_fences.store(true, std::memory_order_seq_cst);
  return true;
}();

thread_records<epoch_record> all_records; // records are reused, never freed

/// Gives the record back when its thread ends.
struct record_holder {
  epoch_record* record = all_records.claim();
  ~record_holder() {
    this_thread_record = nullptr;
    record->pinned.store(0, std::memory_order_release);
    record->extra = 0;
    thread_records<epoch_record>::release(record);
  }
};

/// The smallest epoch a reader is pinned at (max when none is).
std::uint64_t oldest_pinned() {
  std::uint64_t oldest = std::numeric_limits<std::uint64_t>::max();
  for (epoch_record* r = all_records.head(); r; r = r->next) {
    const std::uint64_t e = r->pinned.load(std::memory_order_seq_cst);
    if (e != 0 && e < oldest) oldest = e;
  }
  return oldest;
}

} // namespace

epoch_record& claim_this_thread_epoch_record() {
  thread_local record_holder holder;
  this_thread_record = holder.record;
  return *holder.record;
}

retired_list::~retired_list() {
  while (head_) {
    item* i = head_;
    head_ = i->next;
    i->deleter(i->node);
    delete i;
  }
}

void retired_list::retire(void* node, void (*deleter)(void*)) {
  // Each retirement moves the epoch on. A reader that pins at a later epoch
  // read the global epoch at or after this increment, which (being a
  // read-modify-write, in the release sequence of every later one)
  // synchronises it with the unlink that came before: that reader cannot
  // reach the node. This holds across structures and writers.
  const std::uint64_t epoch = global_epoch.fetch_add(1, std::memory_order_acq_rel);
  head_ = new item{node, deleter, epoch, head_};
  ++size_;
}

std::size_t retired_list::collect() {
  // Unlinks happened before this fence: a reader the scan below finds
  // unpinned pins later and then sees them (its pin is followed by a fence
  // of its own, or by membarrier's on its behalf). A reader pinned at an epoch after a node's retirement
  // cannot reach it either (see retire). Only readers pinned at or before
  // a node's epoch keep it alive.
  // With asymmetric fences, membarrier(2) runs a full barrier on every CPU
  // running a thread of this process: the fence each reader left out.
  if (asymmetric_fences.load(std::memory_order_relaxed)) {
    if (membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) != 0) return size_; // cannot prove anything free: keep all
  } else {
    std::atomic_thread_fence(std::memory_order_seq_cst);
  }
  const std::uint64_t oldest = oldest_pinned();
  item** link = &head_;
  while (*link) {
    item* i = *link;
    if (i->epoch < oldest) {
      *link = i->next;
      i->deleter(i->node);
      delete i;
      --size_;
    } else {
      link = &i->next;
    }
  }
  return size_;
}

} // namespace grove::detail
