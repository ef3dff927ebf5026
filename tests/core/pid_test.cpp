#include <grove/core/pid.hpp>

#include <grove/core/node.hpp>

#include <doctest/doctest.h>

#include <sstream>
#include <unordered_set>

namespace {
grove::awaitable<void> idle(grove::process& self) {
  co_await self.receive();
}
} // namespace

TEST_CASE("null_pid_is_false_and_prints_as_null") {
  grove::pid p;
  CHECK_FALSE(p);
  CHECK(p.to_string() == "<null>");
  CHECK(p == grove::pid{});
  CHECK_FALSE(grove::alive(p));
  grove::send(p, 1); // dropped, no error
}

TEST_CASE("pids_are_printable_comparable_and_hashable_values") {
  grove::node node{{.threads = 2}};
  grove::spawn_options on1;
  on1.worker = 1;
  grove::pid a = grove::spawn(node, idle);
  grove::pid b = grove::spawn(node, idle, on1);
  grove::pid a2 = a;
  CHECK(a == a2);
  CHECK(a != b);
  CHECK((a < b || b < a));
  std::ostringstream os;
  os << b;
  std::ostringstream expected;
  expected << '<' << node.id() << ".1." << b.serial() << '>';
  CHECK(os.str() == expected.str());
  std::unordered_set<grove::pid> set{a, b, a2};
  CHECK(set.size() == 2);
  grove::send(a, 0);
  grove::send(b, 0);
}
