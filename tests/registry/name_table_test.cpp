#include <grove/registry/detail/name_table.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

using grove::detail::name_table;

TEST_CASE("name_table_inserts_finds_replaces_and_erases") {
  name_table<int> t;
  CHECK(t.insert("a", 1));
  CHECK_FALSE(t.insert("a", 2)); // present: left alone
  CHECK(t.find("a") == 1);
  CHECK_FALSE(t.find("b"));
  t.insert_or_assign("a", 3);
  t.insert_or_assign("b", 4);
  CHECK(t.find("a") == 3);
  CHECK(t.find("b") == 4);
  CHECK(t.size() == 2);
  CHECK_FALSE(t.erase_if("a", [](int v) { return v == 99; })); // not the holder: kept
  CHECK(t.erase_if("a", [](int v) { return v == 3; }));
  CHECK_FALSE(t.find("a"));
  CHECK(t.update("b", [](int v) { return std::optional<int>(v + 1); }));
  CHECK(t.find("b") == 5);
  CHECK(t.update("b", [](int) { return std::optional<int>(); })); // removes
  CHECK(t.size() == 0);
  CHECK_FALSE(t.erase("b"));
}

TEST_CASE("name_table_keeps_every_key_through_growth_and_erasures_inside_long_chains") {
  name_table<int> t(8); // starts small: chains are long and it grows many times
  for (int i = 0; i < 5000; ++i) REQUIRE(t.insert("key-" + std::to_string(i), i));
  CHECK(t.size() == 5000);
  for (int i = 0; i < 5000; i += 3) REQUIRE(t.erase("key-" + std::to_string(i)));
  for (int i = 0; i < 5000; ++i) {
    auto v = t.find("key-" + std::to_string(i));
    if (i % 3 == 0) {
      CHECK_FALSE(v);
    } else {
      REQUIRE(v);
      CHECK(*v == i);
    }
  }
  int seen = 0;
  t.for_each([&](const std::string&, int) { ++seen; });
  CHECK(seen == static_cast<int>(t.size()));
}

TEST_CASE("name_table_readers_on_other_threads_see_whole_values_while_a_writer_churns") {
  // Run under ASan and TSan by scripts/test: a reader that reached a freed
  // node, or raced a write, fails there.
  name_table<std::string> t(8);
  constexpr int keys = 64;
  for (int i = 0; i < keys; i += 2) t.insert(std::to_string(i), "value-" + std::to_string(i));
  std::atomic<bool> done{false};
  std::atomic<long> lookups{0}, torn{0};
  std::vector<std::thread> readers;
  for (int r = 0; r < 3; ++r) {
    readers.emplace_back([&] {
      while (!done.load(std::memory_order_acquire)) {
        for (int i = 0; i < keys; ++i) {
          const std::string key = std::to_string(i);
          t.visit(key, [&](const std::string& v) {
            // Read it slowly: a node freed under a reader would be caught here.
            for (int pass = 0; pass < 4; ++pass) {
              if (v != "value-" + key && v != "other-" + key) torn.fetch_add(1);
            }
          });
        }
        lookups.fetch_add(keys, std::memory_order_relaxed);
      }
    });
  }
  // At least 50,000 writes, and on until the readers have made 100 passes
  // among them while the writes go on (on a loaded machine the readers may
  // start late); bounded either way.
  for (long round = 0; round < 50000 || (lookups.load(std::memory_order_relaxed) < 100 * keys && round < 50'000'000);
       ++round) {
    const std::string key = std::to_string(round % keys);
    if (!t.insert(key, "value-" + key)) {
      if (round % 2) {
        t.erase(key);
      } else {
        t.insert_or_assign(key, "other-" + key);
      }
    }
  }
  done.store(true, std::memory_order_release);
  for (auto& r : readers) r.join();
  CHECK(torn.load() == 0);
  CHECK(lookups.load() >= 100 * keys);
  // With no reader pinned any more, everything retired is freed.
  CHECK(t.retired() > 0);
  t.reclaim();
  CHECK(t.retired() == 0);
}

TEST_CASE("name_table_clear_removes_every_key_and_the_table_is_usable_after") {
  name_table<int> t(8);
  for (int i = 0; i < 300; ++i) REQUIRE(t.insert("key-" + std::to_string(i), i));
  t.clear();
  CHECK(t.size() == 0);
  int seen = 0;
  t.for_each([&](const std::string&, int) { ++seen; });
  CHECK(seen == 0);
  CHECK_FALSE(t.find("key-7"));
  CHECK(t.insert("key-7", 70));
  CHECK(t.find("key-7") == 70);
  CHECK(t.size() == 1);
  t.reclaim();
  CHECK(t.retired() == 0); // nothing pinned: the cleared nodes are freed
}
