// relation_map (core/detail/relation_map.hpp): a process's links and
// monitors, kept in a small vector and moved to a hash table past `spill`.
#include <grove/core/detail/relation_map.hpp>

#include <doctest/doctest.h>

#include <cstdint>
#include <set>
#include <string>

namespace {

using grove::detail::relation_map;
constexpr std::size_t spill = relation_map<int>::spill;

std::set<int> keys_of(const relation_map<int>& s) {
  std::set<int> out;
  s.for_each([&](int k) { CHECK(out.insert(k).second); });
  return out;
}

std::set<std::pair<std::uint64_t, std::string>> entries_of(const relation_map<std::uint64_t, std::string>& m) {
  std::set<std::pair<std::uint64_t, std::string>> out;
  m.for_each([&](std::uint64_t k, const std::string& v) { CHECK(out.emplace(k, v).second); });
  return out;
}

} // namespace

TEST_CASE("a relation set refuses duplicates and forgets what it erased, below and past the spill") {
  for (const std::size_t count : {std::size_t{3}, spill, spill + 1, 4 * spill}) {
    CAPTURE(count);
    relation_map<int> s;
    for (std::size_t i = 0; i < count; ++i) CHECK(s.insert(static_cast<int>(i)));
    for (std::size_t i = 0; i < count; ++i) CHECK_FALSE(s.insert(static_cast<int>(i)));
    CHECK(s.size() == count);
    // Erase every other key, including the first and the last.
    std::set<int> expected;
    for (std::size_t i = 0; i < count; ++i) {
      if (i % 2 == 0) {
        CHECK(s.erase(static_cast<int>(i)));
        CHECK_FALSE(s.erase(static_cast<int>(i)));
      } else {
        expected.insert(static_cast<int>(i));
      }
    }
    CHECK(s.size() == expected.size());
    CHECK(keys_of(s) == expected);
    for (std::size_t i = 0; i < count; ++i) CHECK(s.contains(static_cast<int>(i)) == (i % 2 == 1));
    CHECK_FALSE(s.contains(-1));
    CHECK_FALSE(s.erase(-1));
  }
}

TEST_CASE("a relation map keeps each key's value across the move to a hash table") {
  relation_map<std::uint64_t, std::string> m;
  std::set<std::pair<std::uint64_t, std::string>> expected;
  for (std::uint64_t k = 1; k <= 3 * spill; ++k) {
    CHECK(m.insert(k, "v" + std::to_string(k)));
    CHECK_FALSE(m.insert(k, std::string("other"))); // the first value stays
    expected.emplace(k, "v" + std::to_string(k));
    CHECK(entries_of(m) == expected);
  }
  CHECK(m.erase(spill));
  expected.erase({spill, "v" + std::to_string(spill)});
  CHECK(entries_of(m) == expected);
  CHECK(m.size() == 3 * spill - 1);
}

TEST_CASE("an empty relation map has nothing to visit") {
  relation_map<std::uint64_t, int> m;
  CHECK(m.empty());
  int visited = 0;
  m.for_each([&](std::uint64_t, int) { ++visited; });
  CHECK(visited == 0);
  CHECK(m.insert(7, 1));
  CHECK(m.erase(7));
  CHECK(m.empty());
}
