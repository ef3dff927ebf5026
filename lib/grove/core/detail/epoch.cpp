#include <grove/core/detail/epoch.hpp>

#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <pthread.h>

#include <limits>
#include <mutex>

namespace grove::detail {

std::atomic<bool> asymmetric_fences{false};
// Odd: readers fence after pinning, until membarrier is known to work.
std::atomic<std::uint64_t> global_epoch{3};

namespace {

int membarrier(int command) { return static_cast<int>(::syscall(__NR_membarrier, command, 0, 0)); }

/// Registers for private expedited membarrier at load time, before any
/// grove thread exists; readers that pin before this use full fences.
[[maybe_unused]] const bool registered = [] {
  const int supported = membarrier(MEMBARRIER_CMD_QUERY);
  if (supported < 0 || (supported & MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0) return false;
  if (membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) != 0) return false;
  asymmetric_fences.store(true, std::memory_order_seq_cst);
  // Odd to even by adding one: the epoch only ever grows, which the
  // collector's comparison relies on.
  global_epoch.fetch_add(1, std::memory_order_seq_cst);
  return true;
}();

/// The records of the threads that have pinned and not ended. A thread's
/// record lives in its TLS block, so it is unlisted (under the lock) before
/// that block goes away, and the collector walks the list under the lock.
/// Listing and unlisting happen once per thread, collection now and then:
/// the lock is never on a read path.
struct record_list {
  std::mutex lock;
  epoch_record* head = nullptr;
  pthread_key_t at_exit{};
  bool have_key = false;
};

void unlist_at_thread_exit(void* record) noexcept;

record_list& records() {
  static record_list* list = [] {
    auto* l = new record_list; // never destroyed: threads may end during static destruction
    l->have_key = ::pthread_key_create(&l->at_exit, &unlist_at_thread_exit) == 0;
    return l;
  }();
  return *list;
}

/// Runs when a thread that pinned ends, after its thread_local destructors
/// (glibc runs key destructors after them), so their pins were covered.
void unlist_at_thread_exit(void* record) noexcept {
  auto* r = static_cast<epoch_record*>(record);
  record_list& list = records();
  std::lock_guard<std::mutex> hold(list.lock);
  for (epoch_record** link = &list.head; *link; link = &(*link)->next) {
    if (*link == r) {
      *link = r->next;
      break;
    }
  }
  r->next = nullptr;
  r->extra = 0;
  r->pinned.store(epoch_record::unlisted, std::memory_order_relaxed);
  r->held.store(epoch_record::unlisted, std::memory_order_relaxed);
}

/// The smallest epoch a reader is pinned at (max when none is).
std::uint64_t oldest_pinned() {
  std::uint64_t oldest = std::numeric_limits<std::uint64_t>::max();
  record_list& list = records();
  std::lock_guard<std::mutex> hold(list.lock);
  for (epoch_record* r = list.head; r; r = r->next) {
    for (const std::atomic<std::uint64_t>* slot : {&r->pinned, &r->held}) {
      const std::uint64_t e = slot->load(std::memory_order_seq_cst);
      if (e != 0 && e < oldest) oldest = e;
    }
  }
  return oldest;
}

} // namespace

std::size_t listed_epoch_records() {
  record_list& list = records();
  std::lock_guard<std::mutex> hold(list.lock);
  std::size_t n = 0;
  for (epoch_record* r = list.head; r; r = r->next) ++n;
  return n;
}

void pin_unlisted() noexcept {
  epoch_record& r = this_thread_epoch;
  record_list& list = records();
  {
    std::lock_guard<std::mutex> hold(list.lock);
    r.next = list.head;
    list.head = &r;
    r.extra = 0;
    r.pinned.store(0, std::memory_order_relaxed);
    r.held.store(0, std::memory_order_relaxed);
  }
  // The key's value is what makes its destructor run at thread exit (and
  // run again if a later key destructor pins once more). Should the key
  // be missing (pthread_key_create ran out of keys) or setting it fail, a
  // thread_local's destructor unlists the record instead: earlier than
  // the key would, so a pin in a thread_local destructor that runs after
  // it lists the record again, and nothing then unlists it (the key is
  // what covers that case).
  if (!list.have_key || ::pthread_setspecific(list.at_exit, &r) != 0) {
    struct unlist_on_exit {
      ~unlist_on_exit() { unlist_at_thread_exit(&this_thread_epoch); }
    };
    thread_local unlist_on_exit fallback;
    (void)fallback;
  }
}

void pin_slow(std::uint64_t now) noexcept {
  epoch_record& r = this_thread_epoch;
  if (now == epoch_record::unlisted) {
    pin_unlisted();
  } else if (now != 0) {
    ++r.extra; // nested: the first pin's (older) epoch already covers this one
    return;
  }
  const std::uint64_t epoch = global_epoch.load(std::memory_order_acquire);
  r.pinned.store(epoch, std::memory_order_relaxed);
  fence_after_pin(epoch);
}

bool try_pin_held_slow(std::uint64_t now) noexcept {
  epoch_record& r = this_thread_epoch;
  if (now == epoch_record::unlisted) {
    pin_unlisted();
  } else if (now != 0) {
    return false; // taken
  }
  const std::uint64_t epoch = global_epoch.load(std::memory_order_acquire);
  r.held.store(epoch, std::memory_order_relaxed);
  fence_after_pin(epoch);
  return true;
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
  // By 2: the low bit (whether readers fence) stays as it is.
  const std::uint64_t epoch = global_epoch.fetch_add(2, std::memory_order_acq_rel);
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
