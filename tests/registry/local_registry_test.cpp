#include <grove/registry/local_registry.hpp>
#include <grove/core/testing.hpp>

#include <grove/core/node.hpp>

#include "next_message.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using grove::awaitable;

namespace {

/// A process that waits for any message, then ends (its body returns).
awaitable<void> wait_then_end(grove::process& self) { co_await self.receive(); }

awaitable<grove::registry_event> next_event(grove::process& self) {
  return test_support::next_message<grove::registry_event>(self);
}

std::string describe(const grove::registry_event& e) {
  static const char* kinds[] = {"registered", "unregistered", "joined", "left"};
  return std::string(kinds[static_cast<int>(e.what)]) + ":" + e.key;
}

std::error_code error_of(grove::node& node, grove::awaitable<void> work) {
  return node.block_on(grove::testing::error_of(std::move(work)));
}

} // namespace

TEST_CASE("register_whereis_and_unregister_a_unique_name") {
  grove::node node{{.threads = 2}};
  grove::local_registry names(node);
  grove::pid a = grove::spawn(node, wait_then_end);
  grove::pid b = grove::spawn(node, wait_then_end);

  CHECK_FALSE(names.whereis("cache"));
  node.block_on(names.register_name("cache", a));
  CHECK(names.whereis("cache") == a);
  node.block_on(names.register_name("cache", a)); // the holder again: no-op
  CHECK(error_of(node, names.register_name("cache", b)) == grove::registry_errc::already_registered);
  CHECK(error_of(node, names.register_name("", b)) == grove::errc::invalid_argument);
  CHECK(error_of(node, names.register_name("nobody", grove::pid{})) == grove::errc::noproc);
  CHECK_FALSE(node.block_on(names.unregister_name("cache", b))); // not the holder
  CHECK(names.whereis("cache") == a);
  CHECK(node.block_on(names.unregister_name("cache", a)));
  CHECK_FALSE(names.whereis("cache"));
  node.block_on(names.register_name("cache", b)); // free again
  CHECK(names.whereis("cache") == b);
}

TEST_CASE("names_go_when_their_process_ends_and_watchers_are_told") {
  grove::node node{{.threads = 2}};
  grove::local_registry names(node);
  auto seen = node.block_on([&names](grove::process& self) -> awaitable<std::vector<std::string>> {
    co_await names.watch("job");
    grove::pid worker = grove::spawn(self.node(), wait_then_end);
    co_await names.register_name("job", worker);
    co_await names.register_name("job/also", worker);
    std::vector<std::string> events;
    events.push_back(describe(co_await next_event(self)));
    grove::send(worker, 0); // it ends
    events.push_back(describe(co_await next_event(self)));
    CHECK_FALSE(names.whereis("job"));
    // Its other name went too (the same exit), so the name is free.
    CHECK_FALSE(names.whereis("job/also"));
    // The watcher hears of "job" while the registry is still dropping the
    // worker's other names; a call to it is answered only once it is done.
    CHECK_FALSE(co_await names.unregister_name("job/also", worker));
    co_return events;
  });
  CHECK(seen == std::vector<std::string>{"registered:job", "unregistered:job"});
  CHECK(names.count() == 0);
}

TEST_CASE("a_holder_that_ended_is_never_returned_even_before_the_registry_handled_its_exit") {
  grove::node node{{.threads = 2}};
  grove::local_registry names(node);
  node.block_on([&names](grove::process& self) -> awaitable<void> {
    grove::pid worker = grove::spawn(self.node(), wait_then_end);
    co_await names.register_name("w", worker);
    auto mon = self.monitor(worker);
    grove::send(worker, 0);
    grove::message m = co_await self.receive();
    CHECK(m.get<grove::down_message>().ref == mon);
    CHECK_FALSE(names.whereis("w")); // dead: not returned, cleaned up or not
    CHECK(names.names().empty());
  });
}

TEST_CASE("groups_hold_many_members_with_values_and_multi_send_reaches_each") {
  grove::node node{{.threads = 2}};
  grove::local_registry names(node);
  node.block_on([&names](grove::process& self) -> awaitable<void> {
    co_await names.watch("topic");
    std::vector<grove::pid> members;
    for (int i = 0; i < 3; ++i) {
      grove::pid p = grove::spawn(self.node(), wait_then_end);
      co_await names.join("topic", std::any(i), p);
      members.push_back(p);
      CHECK(describe(co_await next_event(self)) == "joined:topic");
    }
    auto now = names.members("topic");
    REQUIRE(now.size() == 3);
    for (int i = 0; i < 3; ++i) {
      CHECK(now[static_cast<std::size_t>(i)].process == members[static_cast<std::size_t>(i)]);
      CHECK(std::any_cast<int>(now[static_cast<std::size_t>(i)].value) == i);
    }
    co_await names.join("topic", std::any(42), members[0]); // joining again replaces the value
    CHECK(describe(co_await next_event(self)) == "joined:topic");
    CHECK(std::any_cast<int>(names.members("topic")[0].value) == 42);

    int total = 0;
    grove::dispatch(names, "topic", [&](const grove::group_member& m) { total += std::any_cast<int>(m.value); });
    CHECK(total == 42 + 1 + 2);

    // multi_send: each member gets it (and ends, which leaves the group).
    CHECK(grove::multi_send(names, "topic", 7) == 3);
    for (int i = 0; i < 3; ++i) CHECK(describe(co_await next_event(self)) == "left:topic");
    CHECK(names.members("topic").empty());
    CHECK(grove::multi_send(names, "topic", 7) == 0);

    grove::pid leaver = grove::spawn(self.node(), wait_then_end);
    co_await names.join("other", std::any{}, leaver);
    CHECK(co_await names.leave("other", leaver));
    CHECK_FALSE(co_await names.leave("other", leaver));
    CHECK(names.members("other").empty());
    grove::send(leaver, 0);
  });
}

TEST_CASE("unwatch_stops_the_events") {
  grove::node node{{.threads = 1}};
  grove::local_registry names(node);
  node.block_on([&names](grove::process& self) -> awaitable<void> {
    co_await names.watch("a");
    co_await names.watch("b");
    co_await names.unwatch("a");
    grove::pid p = grove::spawn(self.node(), wait_then_end);
    co_await names.register_name("a", p);
    co_await names.register_name("b", p);
    // Events come in the order applied: had "a" still been watched, its
    // event would be first.
    CHECK(describe(co_await next_event(self)) == "registered:b");
    grove::send(p, 0);
  });
}

TEST_CASE("two_registries_live_side_by_side") {
  grove::node node{{.threads = 2}};
  grove::local_registry first(node);
  grove::local_registry second(node);
  grove::pid a = grove::spawn(node, wait_then_end);
  grove::pid b = grove::spawn(node, wait_then_end);
  node.block_on(first.register_name("svc", a));
  node.block_on(second.register_name("svc", b));
  CHECK(first.whereis("svc") == a);
  CHECK(second.whereis("svc") == b);
  CHECK(first.process() != second.process());
}

TEST_CASE("names_count_and_metadata") {
  grove::node node{{.threads = 1}};
  grove::local_registry names(node);
  grove::pid a = grove::spawn(node, wait_then_end);
  for (const char* n : {"x", "y", "z"}) node.block_on(names.register_name(n, a));
  auto all = names.names();
  std::sort(all.begin(), all.end());
  CHECK(all == std::vector<std::string>{"x", "y", "z"});
  CHECK(names.count() == 3);
  CHECK_FALSE(names.meta("owner"));
  node.block_on(names.put_meta("owner", "billing"));
  CHECK(names.meta("owner") == "billing");
}

TEST_CASE("a_registry_may_outlive_its_node") {
  auto n = std::make_unique<grove::node>(grove::node_options{.threads = 1});
  auto names = std::make_unique<grove::local_registry>(*n);
  const grove::pid holder = grove::spawn(*n, wait_then_end);
  n->block_on([&]() -> awaitable<void> { co_await names->register_name("echo", holder); }());
  CHECK(names->whereis("echo") == holder);
  n.reset();
  CHECK(names->whereis("echo") == grove::pid{});
  CHECK(names->names().empty());
  names.reset(); // stops a process of a node that is gone: a no-op
}
