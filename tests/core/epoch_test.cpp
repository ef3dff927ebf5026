// Epoch reclamation (core/detail/epoch.hpp): what a pin keeps alive, with
// nested pins released in either order.
#include <grove/core/detail/epoch.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <thread>

namespace {

using grove::detail::epoch_guard;
using grove::detail::listed_epoch_records;
using grove::detail::pin;
using grove::detail::retired_list;
using grove::detail::try_pin_held;
using grove::detail::unpin;
using grove::detail::unpin_held;

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
  pin(); // outer
  pin(); // inner
  retire_tracked(list, freed);
  unpin(); // the outer's, not the last: the thread stays pinned at the outer pin's epoch
  CHECK(list.collect() == 1);
  CHECK_FALSE(freed);
  unpin(); // the inner's
  CHECK(list.collect() == 0);
  CHECK(freed);
}

TEST_CASE("a nested pin does not move the thread's epoch past what the outer pin can reach") {
  retired_list list;
  bool freed = false;
  pin();                       // outer
  retire_tracked(list, freed); // reachable by the outer pin's reader
  pin();                       // inner, taken after the retirement
  unpin();
  CHECK(list.collect() == 1);
  CHECK_FALSE(freed);
  unpin();
  CHECK(list.collect() == 0);
  CHECK(freed);
}

TEST_CASE("the held pin is taken once, and it and a nested pin each keep the node in either release order") {
  retired_list list;
  bool freed = false;
  REQUIRE(try_pin_held());
  CHECK_FALSE(try_pin_held()); // taken: the caller pins with pin() instead
  pin();
  retire_tracked(list, freed);
  unpin_held(); // released first: the nesting slot still holds the epoch
  CHECK(list.collect() == 1);
  CHECK_FALSE(freed);
  unpin();
  CHECK(list.collect() == 0);
  CHECK(freed);

  bool freed_second = false;
  pin();
  REQUIRE(try_pin_held()); // free again, and apart from the nesting slot
  retire_tracked(list, freed_second);
  unpin(); // the nesting slot first: the held one still holds
  CHECK(list.collect() == 1);
  CHECK_FALSE(freed_second);
  unpin_held();
  CHECK(list.collect() == 0);
  CHECK(freed_second);
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

TEST_CASE("retirements move the epoch on and leave readers' fence choice alone") {
  using grove::detail::asymmetric_fences;
  using grove::detail::global_epoch;
  retired_list list;
  bool freed = false;
  const std::uint64_t before = global_epoch.load();
  retire_tracked(list, freed);
  const std::uint64_t after = global_epoch.load();
  CHECK(after > before);
  CHECK((after & 1) == (before & 1));
  // With membarrier (this kernel's case: checked so that the test says
  // which it ran), a pin is a compiler barrier only: the bit is clear.
  if (asymmetric_fences.load()) CHECK((after & 1) == 0);
  list.collect();
}

TEST_CASE("a thread that ended leaves the collector's list, and a pin it leaked holds nothing") {
  retired_list list;
  bool freed = false;
  {
    epoch_guard here; // lists this thread, so the count below is steady
  }
  const std::size_t before = listed_epoch_records();
  std::atomic<int> stage{0};
  std::thread leaker([&] {
    pin(); // never released: the thread ends holding it
    stage.store(1);
    stage.notify_one();
    stage.wait(1);
  });
  stage.wait(0);
  CHECK(listed_epoch_records() == before + 1);
  retire_tracked(list, freed);
  CHECK(list.collect() == 1); // the pin is live while its thread runs
  stage.store(2);
  stage.notify_one();
  leaker.join();
  CHECK(listed_epoch_records() == before);
  CHECK(list.collect() == 0);
  CHECK(freed);

  for (int i = 0; i < 64; ++i) std::thread([] { epoch_guard g; }).join();
  CHECK(listed_epoch_records() == before);
}

namespace {

/// Pins in a thread_local destructor, at its thread's end, and holds the
/// pin until the test has collected.
struct pins_at_exit {
  std::atomic<int>* stage = nullptr;
  ~pins_at_exit() {
    if (!stage) return;
    epoch_guard g;
    stage->store(2);
    stage->notify_one();
    stage->wait(2);
  }
};
thread_local pins_at_exit exit_pinner;

} // namespace

TEST_CASE("a pin taken in a thread_local destructor at thread exit still keeps what it can reach") {
  retired_list list;
  bool freed = false;
  std::atomic<int> stage{0};
  std::thread ending([&] {
    { epoch_guard g; } // listed before the exit, as a worker would be
    exit_pinner.stage = &stage;
    stage.store(1);
    stage.notify_one();
  });
  stage.wait(0);
  stage.wait(1); // until the destructor holds its pin
  retire_tracked(list, freed);
  CHECK(list.collect() == 1);
  CHECK_FALSE(freed);
  stage.store(3);
  stage.notify_one();
  ending.join();
  CHECK(list.collect() == 0);
  CHECK(freed);
}
