#include <grove/tenant/manager.hpp>

#include <grove/core/node.hpp>
#include <grove/core/testing.hpp>
#include <grove/supervisor/supervisor.hpp>
#include <grove/tenant/sqlite_store.hpp>

#include "../registry/next_message.hpp"
#include "../temp_dir.hpp"
#include "sigkill_child.hpp"
#include "tenant_support.hpp"

#include <doctest/doctest.h>

#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <set>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using grove::awaitable;
using test_support::json;
using test_support::shop;

namespace {

struct fixture {
  fixture() { gate = node.block_on(grove::start<test_support::gate>(node)); }

  grove::tenant_manager<shop> manager(grove::tenant_manager_options o) {
    return grove::tenant_manager<shop>(std::move(o), log, gate);
  }

  grove::node node{{.threads = 2, .events = nullptr}};
  std::shared_ptr<test_support::event_log> log = std::make_shared<test_support::event_log>();
  test_support::recording_sink sink;
  grove::server_ref<test_support::gate> gate;
};

grove::tenant_record stored(std::string id, grove::tenant_state state) {
  grove::tenant_record r;
  r.id = std::move(id);
  r.state = state;
  r.generation = 3;
  r.snapshot = json{{"n", 5}};
  return r;
}

/// Fast options, on a SQLite store file.
grove::tenant_manager_options on_file(const std::string& file) {
  grove::tenant_manager_options o = test_support::fast_options();
  o.store_file = file;
  return o;
}

awaitable<grove::tenant_op> install(const grove::tenant_manager<shop>& m, std::string id) {
  json cfg = json::object();
  json caps = json::array();
  co_return co_await m.install(std::move(id), std::move(cfg), std::move(caps));
}

} // namespace

TEST_CASE("warm_up_brings_back_each_state_as_documented") {
  fixture f;
  auto store = std::make_shared<grove::memory_tenant_store>();
  for (auto [id, state] : std::vector<std::pair<std::string, grove::tenant_state>>{
           {"r", grove::tenant_state::running},
           {"e", grove::tenant_state::error_occurred},
           {"i", grove::tenant_state::installing},
           {"u", grove::tenant_state::updating},
           {"x", grove::tenant_state::uninstalling}}) {
    grove::tenant_change c;
    c.put = stored(id, state);
    store->commit(std::move(c));
  }
  auto m = f.manager(test_support::fast_options(store, f.sink.sink()));
  f.node.block_on([&](grove::process& self) -> awaitable<void> {
    co_await m.start(self.node());
    // The install in progress is dropped, with its event.
    CHECK_FALSE(m.fetch("i"));
    CHECK(co_await f.sink.log->wait_count(self, "dropped i error"));
    // Running ones run again, from their snapshot.
    CHECK(m.fetch("r")->state == grove::tenant_state::running);
    CHECK(co_await f.log->wait_count(self, "run r {\"n\":5}"));
    // An update or uninstall in progress is not resumed: running as before, and its event says so.
    for (const char* id : {"u", "x"}) {
      CHECK(m.fetch(id)->state == grove::tenant_state::running);
      CHECK(m.fetch(id)->generation == 4);
      CHECK(m.whereis(id));
    }
    CHECK(co_await f.log->wait_count(self, "run u {\"n\":5}"));
    CHECK(co_await f.log->wait_count(self, "run x {\"n\":5}"));
    CHECK(co_await f.sink.log->wait_count(self, "update u error"));
    CHECK(co_await f.sink.log->wait_count(self, "uninstall x error"));
    // error_occurred: its process runs, without handle_run, with its state back.
    CHECK(m.fetch("e")->state == grove::tenant_state::error_occurred);
    auto e = m.whereis("e");
    REQUIRE(e);
    json state = co_await e.call(test_support::get_state{});
    CHECK(state == json{{"n", 5}});
    CHECK(f.log->count("run e {\"n\":5}") == 0);
    CHECK(m.count() == 4);
    CHECK(m.count(grove::tenant_state::running) == 3);
    CHECK(m.list(grove::tenant_state::error_occurred).size() == 1);
    co_await m.stop();
  });
  CHECK(store->load().records.size() == 4);
}

TEST_CASE("a_sink_that_fails_three_times_gets_every_event_once_in_order") {
  fixture f;
  f.sink.failures->store(3);
  auto m = f.manager(test_support::fast_options(std::make_shared<grove::memory_tenant_store>(), f.sink.sink()));
  f.node.block_on([&](grove::process& self) -> awaitable<void> {
    co_await m.start(self.node());
    (void)co_await install(m, "a");
    json cfg{{"plan", "b"}};
    (void)co_await m.update("a", cfg);
    (void)co_await m.uninstall("a");
    CHECK(co_await f.sink.log->wait_count(self, "uninstall a ok"));
    co_await m.stop();
  });
  CHECK(f.sink.log->events() == std::vector<std::string>{"install a ok", "update a ok", "uninstall a ok"});
  CHECK(f.sink.calls->load() == 3 + 3);
}

TEST_CASE("events_not_delivered_before_a_restart_are_delivered_after_it") {
  fixture f;
  auto store = std::make_shared<grove::memory_tenant_store>();
  test_support::recording_sink down;
  down.failures->store(1'000'000); // the control plane is down for the first manager's whole life
  {
    auto first = f.manager(test_support::fast_options(store, down.sink()));
    f.node.block_on([&](grove::process& self) -> awaitable<void> {
      co_await first.start(self.node());
      (void)co_await install(first, "a");
      (void)co_await install(first, "b");
      co_await first.stop();
    });
  }
  CHECK(down.log->events().empty());
  CHECK(store->load().outbox.size() == 2);
  auto second = f.manager(test_support::fast_options(store, f.sink.sink()));
  f.node.block_on([&](grove::process& self) -> awaitable<void> {
    co_await second.start(self.node());
    CHECK(co_await f.sink.log->wait_count(self, "install b ok"));
    co_await second.stop();
  });
  // (Not "the outbox is empty now": the last acknowledgement may not have
  // reached the store before the stop; such an event comes again after the
  // next start, which at-least-once allows.)
  CHECK(f.sink.log->events() == std::vector<std::string>{"install a ok", "install b ok"});
}

TEST_CASE("a_manager_restarted_on_the_same_sqlite_file_sees_every_committed_record") {
  test_support::temp_dir dir("grove-tenant-manager");
  const std::string file = dir.file("tenants.db");
  std::vector<grove::tenant_record> before;
  {
    fixture f;
    auto m = f.manager(on_file(file));
    f.node.block_on([&](grove::node& n) -> awaitable<void> {
      co_await m.start(n);
      (void)co_await install(m, "a");
      (void)co_await install(m, "b");
      (void)co_await install(m, "c");
      json cfg{{"plan", "gold"}};
      (void)co_await m.update("b", cfg);
      (void)co_await m.uninstall("c");
      auto ref = m.whereis("a");
      ref.cast(test_support::set_n{42});
      CHECK(co_await ref.call(test_support::save{}));
      before = m.list();
      co_await m.stop();
    });
  }
  fixture f;
  auto m = f.manager(on_file(file));
  f.node.block_on([&](grove::node& n) -> awaitable<void> {
    co_await m.start(n);
    CHECK(m.count() == 2);
    for (const grove::tenant_record& r : before) {
      auto again = m.fetch(r.id);
      REQUIRE(again);
      CHECK(again->config == r.config);
      CHECK(again->generation == r.generation);
      CHECK(again->snapshot == r.snapshot);
    }
    CHECK_FALSE(m.fetch("c"));
    json state = co_await m.whereis("a").call(test_support::get_state{});
    CHECK(state == json{{"n", 42}}); // persisted state is back after the restart
    co_await m.stop();
  });
}

TEST_CASE("every_install_that_returned_survives_a_sigkill_of_the_whole_program") {
  test_support::temp_dir dir("grove-tenant-manager");
  const std::string file = dir.file("tenants.db");
  // A whole program: a node, a manager on the file, installs one at a time,
  // each confirmed only once install() returned; killed mid-way.
  const test_support::killed_child program = test_support::run_and_sigkill(
      [&](const std::function<bool(std::uint32_t)>& confirm) {
        fixture f;
        auto m = f.manager(on_file(file));
        f.node.block_on([&](grove::node& n) -> awaitable<void> {
          co_await m.start(n);
          for (std::uint32_t i = 1; i <= 5000; ++i) {
            grove::tenant_op op = co_await install(m, "t" + std::to_string(i));
            if (!op.ok() || !confirm(i)) break;
          }
        });
      },
      30);
  const std::set<std::uint32_t>& confirmed = program.confirmed;
  REQUIRE(confirmed.size() >= 30);
  CHECK(program.signalled);

  fixture f;
  auto m = f.manager(on_file(file));
  f.node.block_on([&](grove::node& n) -> awaitable<void> {
    co_await m.start(n);
    for (std::uint32_t i : confirmed) {
      auto r = m.fetch("t" + std::to_string(i));
      REQUIRE(r);
      CHECK(r->state == grove::tenant_state::running);
      CHECK(m.whereis("t" + std::to_string(i)));
    }
    co_await m.stop();
  });
}

TEST_CASE("a_damaged_store_file_stops_the_start_and_is_left_as_it_was") {
  test_support::temp_dir dir("grove-tenant-manager");
  const std::string file = dir.file("tenants.db");
  const std::string garbage = "this is not a database, and must stay exactly this\n";
  {
    std::ofstream out(file, std::ios::binary);
    out << garbage;
  }
  fixture f;
  auto m = f.manager(on_file(file));
  f.node.block_on([&](grove::node& n) -> awaitable<void> {
    auto started = co_await grove::testing::capture(m.start(n));
    CHECK(started.error() == grove::tenant_errc::store_refused);
    CHECK(started.what().find(file) != std::string::npos);
    auto op = co_await grove::testing::capture(install(m, "a"));
    CHECK(op.error() == grove::errc::noproc);
  });
  std::ifstream in(file, std::ios::binary);
  CHECK(std::string(std::istreambuf_iterator<char>(in), {}) == garbage);
}
