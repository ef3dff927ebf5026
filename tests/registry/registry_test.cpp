#include <grove/registry/registry.hpp>
#include <grove/core/testing.hpp>

#include <grove/core/node.hpp>
#include <grove/registry/local_registry.hpp>
#include <grove/supervisor/supervisor.hpp>

#include <boost/asio/steady_timer.hpp>
#include "next_message.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using grove::awaitable;

namespace {

struct get {
  using reply_type = int;
};
struct add {
  int n;
};

/// Counts its constructions, so a test can tell one process from two; its
/// init takes a moment, so concurrent starts of one name really overlap.
class counter : public grove::gen_server {
public:
  counter(std::shared_ptr<std::atomic<int>> built, int start) : n_(start) { built->fetch_add(1); }
  awaitable<void> init() {
    boost::asio::steady_timer t(co_await boost::asio::this_coro::executor, 5ms);
    co_await t.async_wait(boost::asio::use_awaitable);
  }
  int handle_call(get) { return n_; }
  void handle_cast(add a) { n_ += a.n; }

private:
  int n_;
};

using built_count = std::shared_ptr<std::atomic<int>>;

awaitable<grove::registry_event> next_event(grove::process& self) {
  return test_support::next_message<grove::registry_event>(self);
}

/// Starts "shared" with start_link from a process pinned to `worker` and
/// sends the pid it got to `report`.
struct racer {
  grove::registry* names;
  built_count built;
  grove::pid report;
  awaitable<void> operator()(grove::process& self) {
    auto ref = co_await grove::start_link<counter>(*names, "shared", built, 1);
    grove::send(report, ref.id());
    co_await self.receive(); // stays, so the linked server stays
  }
};

struct sup_racer {
  grove::registry* names;
  grove::dynamic_supervisor sup;
  built_count built;
  grove::pid report;
  awaitable<void> operator()(grove::process&) {
    auto ref = co_await grove::start_child<counter>(*names, "session", sup, built, 1);
    grove::send(report, ref.id());
  }
};

awaitable<grove::pid> next_pid(grove::process& self) { return test_support::next_message<grove::pid>(self); }

} // namespace

// Commanded.Registration's shared cases.

TEST_CASE("whereis_of_a_name_nobody_registered_is_null") {
  grove::node node{{.threads = 1}};
  grove::local_registry names(node);
  CHECK_FALSE(names.whereis("nobody"));
}

TEST_CASE("start_link_twice_gives_the_same_process_and_whereis_finds_it") {
  grove::node node{{.threads = 2}};
  grove::local_registry names(node);
  auto built = std::make_shared<std::atomic<int>>(0);
  node.block_on([&names, built](grove::process&) -> awaitable<void> {
    auto first = co_await grove::start_link<counter>(names, "counter", built, 5);
    auto second = co_await grove::start_link<counter>(names, "counter", built, 99);
    CHECK(first == second);
    CHECK(names.whereis("counter") == first.id());
    CHECK(co_await second.call(get{}) == 5); // the first one's state
  });
  CHECK(built->load() == 1);
}

TEST_CASE("start_child_under_a_dynamic_supervisor_twice_gives_the_same_process") {
  grove::node node{{.threads = 2}};
  grove::local_registry names(node);
  auto built = std::make_shared<std::atomic<int>>(0);
  node.block_on([&names, built](grove::process& self) -> awaitable<void> {
    grove::dynamic_supervisor_options o;
    o.report = nullptr;
    auto sup = co_await grove::dynamic_supervisor::start_link(self.node(), o);
    auto first = co_await grove::start_child<counter>(names, "session/1", sup, built, 3);
    auto second = co_await grove::start_child<counter>(names, "session/1", sup, built, 4);
    CHECK(first == second);
    CHECK(names.whereis("session/1") == first.id());
    CHECK((co_await sup.count_children()).workers == 1);
  });
  CHECK(built->load() == 1);
}

TEST_CASE("concurrent_starts_of_one_name_on_different_executors_give_one_process_and_one_answer") {
  grove::node node{{.threads = 2}};
  grove::local_registry names(node);
  auto built = std::make_shared<std::atomic<int>>(0);
  node.block_on([&names, built](grove::process& self) -> awaitable<void> {
    std::vector<grove::pid> racers;
    for (std::size_t w = 0; w < 2; ++w) {
      racers.push_back(grove::spawn(self.node(), racer{&names, built, self.self()}, {.worker = w}));
    }
    grove::pid a = co_await next_pid(self);
    grove::pid b = co_await next_pid(self);
    CHECK(a == b);
    CHECK(names.whereis("shared") == a);
    for (auto& r : racers) grove::send(r, 0);

    grove::dynamic_supervisor_options o;
    o.report = nullptr;
    auto sup = co_await grove::dynamic_supervisor::start_link(self.node(), o);
    for (std::size_t w = 0; w < 2; ++w) {
      grove::spawn(self.node(), sup_racer{&names, sup, built, self.self()}, {.worker = w});
    }
    grove::pid c = co_await next_pid(self);
    grove::pid d = co_await next_pid(self);
    CHECK(c == d);
    CHECK((co_await sup.count_children()).workers == 1);
  });
  CHECK(built->load() == 2); // one "shared", one "session"
}

TEST_CASE("via_addresses_a_server_by_name_and_a_name_nobody_holds_fails_with_noproc") {
  grove::node node{{.threads = 2}};
  grove::local_registry names(node);
  auto built = std::make_shared<std::atomic<int>>(0);
  node.block_on([&names, built](grove::process&) -> awaitable<void> {
    co_await grove::start_link<counter>(names, "c", built, 1);
    auto c = grove::via<counter>(names, "c");
    c.cast(add{2});
    CHECK(co_await c.call(get{}) == 3);
    CHECK(grove::send(names, "c", 0));
    CHECK_FALSE(grove::send(names, "nobody", 0));
    auto nobody = grove::via<counter>(names, "nobody");
    nobody.cast(add{1}); // dropped
    CHECK(co_await grove::testing::error_of(nobody.call(get{})) == grove::errc::noproc);
  });
}

TEST_CASE("a_supervised_named_child_that_crashes_is_found_under_its_name_again") {
  grove::node node{{.threads = 2, .events = nullptr}};
  grove::local_registry names(node);
  auto built = std::make_shared<std::atomic<int>>(0);
  node.block_on([&names, built](grove::process& self) -> awaitable<void> {
    co_await names.watch("worker");
    std::vector<grove::child_spec> children{
        grove::registered(names, "worker", grove::server_child<counter>("worker", built, 10))};
    grove::supervisor_options o;
    o.report = nullptr;
    auto sup = co_await grove::supervisor::start_link(self.node(), children, o);
    auto registered = co_await next_event(self);
    CHECK(registered.what == grove::registry_event::kind::registered);
    grove::pid first = names.whereis("worker");
    CHECK(first == registered.process);

    grove::exit(first, grove::exit_reason::kill());
    // The old pid goes and the restarted one comes, in either order of the
    // registry's and the supervisor's handling of the exit.
    grove::pid second;
    for (int i = 0; i < 2; ++i) {
      auto e = co_await next_event(self);
      if (e.what == grove::registry_event::kind::registered) second = e.process;
    }
    REQUIRE(second);
    CHECK(second != first);
    CHECK(names.whereis("worker") == second);
    CHECK(co_await grove::via<counter>(names, "worker").call(get{}) == 10);
    (void)sup;
  });
}

TEST_CASE("a_dynamically_supervised_named_child_is_reregistered_when_restarted") {
  grove::node node{{.threads = 2, .events = nullptr}};
  grove::local_registry names(node);
  auto built = std::make_shared<std::atomic<int>>(0);
  node.block_on([&names, built](grove::process& self) -> awaitable<void> {
    grove::dynamic_supervisor_options o;
    o.report = nullptr;
    auto sup = co_await grove::dynamic_supervisor::start_link(self.node(), o);
    co_await names.watch("s");
    auto first = co_await grove::start_child<counter>(names, "s", sup, built, 1);
    CHECK((co_await next_event(self)).what == grove::registry_event::kind::registered);
    grove::exit(first.id(), grove::exit_reason::kill());
    grove::pid second;
    for (int i = 0; i < 2; ++i) {
      auto e = co_await next_event(self);
      if (e.what == grove::registry_event::kind::registered) second = e.process;
    }
    REQUIRE(second);
    CHECK(second != first.id());
    CHECK(names.whereis("s") == second);
  });
}
