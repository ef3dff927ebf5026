// Epoch reclamation (core/detail/epoch.hpp): what a pin keeps alive, with
// nested pins released in either order.
#include <grove/core/detail/epoch.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <thread>

namespace {

using grove::detail::epoch_guard;
using grove::detail::pin;
using grove::detail::retired_list;
using grove::detail::unpin;

/// A retired node that records its deletion.
struct tracked {
  bool* freed;
  static void destroy(void* p) {
    auto* t = static_cast<tracked*>(p);
    *t->freed = true;
    delete t;
  }
};

void retire_tracked(retired_list& list, bool& freed) { list.retire(new tracked{&freed}, &tracked::destroy); }

} // namespace

TEST_CASE("a pin keeps what was retired after it, and one taken later does not") {
  retired_list list;
  bool freed = false;
  {
    epoch_guard reader;
    retire_tracked(list, freed);
    CHECK(list.collect() == 1);
    CHECK_FALSE(freed);
  }
  CHECK(list.collect() == 0);
  CHECK(freed);

  bool freed_later = false;
  retire_tracked(list, freed_later);
  {
    epoch_guard late_reader; // pinned after the retirement: cannot reach the node
    CHECK(list.collect() == 0);
    CHECK(freed_later);
  }
}

TEST_CASE("nested pins released outer first keep the node until the last is released") {
  retired_list list;
  bool freed = false;
  auto* outer = pin();
  auto* inner = pin();
  CHECK(outer == inner); // one record per thread
  retire_tracked(list, freed);
  unpin(outer); // not the last: the thread stays pinned at the outer pin's epoch
  CHECK(list.collect() == 1);
  CHECK_FALSE(freed);
  unpin(inner);
  CHECK(list.collect() == 0);
  CHECK(freed);
}

TEST_CASE("a nested pin does not move the thread's epoch past what the outer pin can reach") {
  retired_list list;
  bool freed = false;
  auto* outer = pin();
  retire_tracked(list, freed); // reachable by the outer pin's reader
  auto* inner = pin();         // taken after the retirement
  unpin(inner);
  CHECK(list.collect() == 1);
  CHECK_FALSE(freed);
  unpin(outer);
  CHECK(list.collect() == 0);
  CHECK(freed);
}

TEST_CASE("another thread's pin keeps the node; its release frees it") {
  retired_list list;
  bool freed = false;
  std::atomic<int> stage{0};
  std::thread reader([&] {
    epoch_guard g;
    stage.store(1);
    stage.notify_one();
    stage.wait(1); // until the main thread has retired and collected
  });
  stage.wait(0);
  retire_tracked(list, freed);
  CHECK(list.collect() == 1);
  CHECK_FALSE(freed);
  stage.store(2);
  stage.notify_one();
  reader.join();
  CHECK(list.collect() == 0);
  CHECK(freed);
}
