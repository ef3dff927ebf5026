#include <grove/tenant/manager.hpp>

#include <grove/core/node.hpp>
#include <grove/core/testing.hpp>
#include <grove/supervisor/supervisor.hpp>

#include "../registry/next_message.hpp"
#include "tenant_support.hpp"

#include <doctest/doctest.h>

#include <memory>
#include <set>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using grove::awaitable;
using test_support::json;
using test_support::shop;

namespace {

/// A node, a gate, a log, a sink and a manager of shops over `store`.
struct fixture {
  explicit fixture(std::shared_ptr<grove::tenant_store> s = std::make_shared<grove::memory_tenant_store>())
      : store(std::move(s)) {
    gate = node.block_on(grove::start<test_support::gate>(node));
  }

  grove::tenant_manager<shop> manager(grove::tenant_manager_options o) {
    return grove::tenant_manager<shop>(std::move(o), log, gate);
  }
  grove::tenant_manager<shop> manager() { return manager(test_support::fast_options(store, sink.sink())); }

  void open_gate() { gate.cast(test_support::open_gate{}); }

  grove::node node{{.threads = 2, .events = nullptr}};
  std::shared_ptr<grove::tenant_store> store;
  std::shared_ptr<test_support::event_log> log = std::make_shared<test_support::event_log>();
  test_support::recording_sink sink;
  grove::server_ref<test_support::gate> gate;
};

json config(std::string key, std::string how) { return json{{std::move(key), std::move(how)}}; }

awaitable<grove::tenant_op> install(const grove::tenant_manager<shop>& m, std::string id, json cfg = json::object()) {
  json caps = json::array({"read"});
  co_return co_await m.install(std::move(id), std::move(cfg), std::move(caps));
}

/// Waits for the down of `p` (monitored by the caller) and returns its reason.
awaitable<grove::exit_reason> down_of(grove::process& self, grove::pid p) {
  const grove::monitor_ref ref = self.monitor(p);
  for (;;) {
    grove::down_message d = co_await test_support::next_message<grove::down_message>(self);
    if (d.ref == ref) co_return d.reason;
  }
}

} // namespace

TEST_CASE("a_sync_install_runs_the_tenant_and_its_record_is_running") {
  fixture f;
  auto m = f.manager();
  f.node.block_on([&](grove::process& self) -> awaitable<void> {
    co_await m.start(self.node());
    json gold{{"plan", "gold"}};
    grove::tenant_op op = co_await install(m, "acme", gold);
    CHECK(op.status() == grove::tenant_op_status::ok);
    grove::tenant_outcome done = co_await op.done();
    CHECK(done.ok);
    std::optional<grove::tenant_record> r = m.fetch("acme");
    REQUIRE(r);
    CHECK(r->state == grove::tenant_state::running);
    CHECK(r->config == json{{"plan", "gold"}});
    CHECK(r->capabilities == json::array({"read"}));
    CHECK(r->generation == done.generation);
    CHECK(m.count() == 1);
    auto ref = m.whereis("acme");
    REQUIRE(ref);
    json state = co_await ref.call(test_support::get_state{});
    CHECK(co_await f.sink.log->wait_count(self, "install acme ok", 1));
    CHECK(state == json{{"n", 0}});
    co_await m.stop();
  });
  CHECK(f.log->events() == std::vector<std::string>{"construct", "install acme", "run acme {\"n\":0}",
                                                     "terminate acme shutdown"});
}

TEST_CASE("a_failing_install_ends_the_process_and_removes_the_record") {
  fixture f;
  auto m = f.manager();
  f.node.block_on([&](grove::process& self) -> awaitable<void> {
    co_await m.start(self.node());
    grove::tenant_op op = co_await install(m, "acme", config("install", "error"));
    CHECK(op.status() == grove::tenant_op_status::error);
    CHECK(op.error() == "acme refused");
    // The answer comes once the process's down was handled: the record is gone.
    CHECK_FALSE(m.fetch("acme"));
    CHECK_FALSE(m.whereis("acme"));
    CHECK(m.count() == 0);
    grove::tenant_outcome done = co_await op.done();
    CHECK_FALSE(done.ok);
    CHECK(done.generation == 0);
    CHECK(co_await f.sink.log->wait_count(self, "install acme error", 1));
    co_await m.stop();
  });
  CHECK(f.log->count("run acme {\"n\":0}") == 0);
}

TEST_CASE("a_second_install_of_an_id_fails_and_starts_no_second_process") {
  fixture f;
  auto m = f.manager();
  f.node.block_on([&](grove::process& self) -> awaitable<void> {
    co_await m.start(self.node());
    (void)co_await install(m, "acme");
    auto again = co_await grove::testing::capture(install(m, "acme"));
    CHECK(again.error() == grove::tenant_errc::already_exists);
    co_await m.stop();
  });
  CHECK(f.log->count("construct") == 1);
}

TEST_CASE("update_gives_new_config_and_capabilities_and_a_failing_update_changes_nothing") {
  fixture f;
  auto m = f.manager();
  f.node.block_on([&](grove::process& self) -> awaitable<void> {
    co_await m.start(self.node());
    json gold{{"plan", "gold"}};
    (void)co_await install(m, "acme", gold);
    const std::uint64_t before = m.fetch("acme")->generation;

    json cfg{{"plan", "platinum"}};
    json caps = json::array({"read", "write"});
    grove::tenant_op op = co_await m.update("acme", cfg, caps);
    CHECK(op.ok());
    auto r = m.fetch("acme");
    CHECK(r->config == cfg);
    CHECK(r->capabilities == caps);
    CHECK(r->state == grove::tenant_state::running);
    CHECK(r->generation > before);
    json state = co_await m.whereis("acme").call(test_support::get_state{});
    CHECK(state["updated"] == true);

    json bad{{"update", "error"}};
    grove::tenant_op failed = co_await m.update("acme", bad);
    CHECK(failed.status() == grove::tenant_op_status::error);
    auto unchanged = m.fetch("acme");
    CHECK(unchanged->config == cfg);
    CHECK(unchanged->capabilities == caps);
    CHECK(unchanged->state == grove::tenant_state::running);

    auto missing = co_await grove::testing::capture(m.update("nobody", cfg));
    CHECK(missing.error() == grove::tenant_errc::tenant_not_found);
    CHECK(co_await f.sink.log->wait_count(self, "update acme ok", 1));
    CHECK(co_await f.sink.log->wait_count(self, "update acme error", 1));
    co_await m.stop();
  });
}

TEST_CASE("uninstall_runs_terminate_ends_the_process_normally_and_a_failing_one_keeps_the_tenant") {
  fixture f;
  auto m = f.manager();
  f.node.block_on([&](grove::process& self) -> awaitable<void> {
    co_await m.start(self.node());
    (void)co_await install(m, "stays", config("uninstall", "error"));
    grove::tenant_op refused = co_await m.uninstall("stays");
    CHECK(refused.status() == grove::tenant_op_status::error);
    CHECK(m.fetch("stays")->state == grove::tenant_state::running);
    CHECK(m.whereis("stays"));

    (void)co_await install(m, "goes");
    const grove::pid p = m.whereis("goes").id();
    const grove::monitor_ref watch = self.monitor(p);
    grove::tenant_op op = co_await m.uninstall("goes");
    CHECK(op.ok());
    CHECK_FALSE(m.fetch("goes"));
    grove::down_message d = co_await test_support::next_message<grove::down_message>(self);
    CHECK(d.ref == watch);
    CHECK(d.reason == grove::exit_reason::normal());

    auto missing = co_await grove::testing::capture(m.uninstall("goes"));
    CHECK(missing.error() == grove::tenant_errc::tenant_not_found);
    CHECK(co_await f.sink.log->wait_count(self, "uninstall stays error", 1));
    CHECK(co_await f.sink.log->wait_count(self, "uninstall goes ok", 1));
    co_await m.stop();
  });
  CHECK(f.log->count("terminate goes normal") == 1);
}

TEST_CASE("async_install_update_and_uninstall_answer_at_once_and_done_gives_the_result") {
  fixture f;
  auto m = f.manager();
  f.node.block_on([&](grove::process& self) -> awaitable<void> {
    co_await m.start(self.node());
    json cfg{{"install", "async"}, {"uninstall", "async"}};
    grove::tenant_op op = co_await install(m, "acme", cfg);
    CHECK(op.async());
    grove::tenant_outcome done = co_await op.done();
    CHECK(done.ok);
    CHECK(m.fetch("acme")->state == grove::tenant_state::running);

    json up{{"update", "async_error"}};
    grove::tenant_op failed = co_await m.update("acme", up);
    CHECK(failed.async());
    grove::tenant_outcome failure = co_await failed.done();
    CHECK_FALSE(failure.ok);
    CHECK(failure.error == "the job failed");
    CHECK(m.fetch("acme")->config == cfg);

    json up2{{"update", "async"}, {"uninstall", "async"}};
    grove::tenant_op updated = co_await m.update("acme", up2);
    CHECK((co_await updated.done()).ok);
    CHECK(m.fetch("acme")->config == up2);

    grove::tenant_op gone = co_await m.uninstall("acme");
    CHECK(gone.async());
    CHECK((co_await gone.done()).ok);
    CHECK_FALSE(m.fetch("acme"));
    CHECK(co_await f.sink.log->wait_count(self, "install acme ok", 1));
    CHECK(co_await f.sink.log->wait_count(self, "update acme error", 1));
    CHECK(co_await f.sink.log->wait_count(self, "update acme ok", 1));
    CHECK(co_await f.sink.log->wait_count(self, "uninstall acme ok", 1));
    co_await m.stop();
  });
}

TEST_CASE("calls_are_answered_while_an_async_install_runs_and_other_operations_are_busy") {
  fixture f;
  auto m = f.manager();
  f.node.block_on([&](grove::process& self) -> awaitable<void> {
    co_await m.start(self.node());
    grove::tenant_op op = co_await install(m, "acme", config("install", "gated"));
    CHECK(op.async());
    CHECK(co_await f.log->wait_count(self, "job waits acme", 1));
    auto r = m.fetch("acme");
    CHECK(r->state == grove::tenant_state::installing);
    // The tenant answers with its current (not yet installed) state.
    json state = co_await m.whereis("acme").call(test_support::get_state{});
    CHECK(state.is_null());
    auto busy_update = co_await grove::testing::capture(m.update("acme", json::object()));
    CHECK(busy_update.error() == grove::tenant_errc::busy);
    auto busy_uninstall = co_await grove::testing::capture(m.uninstall("acme"));
    CHECK(busy_uninstall.error() == grove::tenant_errc::busy);
    auto busy_install = co_await grove::testing::capture(install(m, "acme"));
    CHECK(busy_install.error() == grove::tenant_errc::already_exists);
    f.open_gate();
    CHECK((co_await op.done()).ok);
    CHECK(m.fetch("acme")->state == grove::tenant_state::running);
    json after = co_await m.whereis("acme").call(test_support::get_state{});
    CHECK(after == json{{"n", 0}});
    co_await m.stop();
  });
}

TEST_CASE("a_job_that_throws_or_times_out_is_an_error_result") {
  fixture f;
  auto o = test_support::fast_options(f.store, f.sink.sink());
  o.job_timeout = 50ms;
  auto m = f.manager(o);
  f.node.block_on([&](grove::process& self) -> awaitable<void> {
    co_await m.start(self.node());
    grove::tenant_op thrown = co_await install(m, "a", config("install", "throw"));
    grove::tenant_outcome t = co_await thrown.done();
    CHECK_FALSE(t.ok);
    CHECK(t.error == "the job threw: the job exploded");
    CHECK_FALSE(m.fetch("a"));

    (void)co_await install(m, "b");
    json up{{"update", "gated"}};
    grove::tenant_op slow = co_await m.update("b", up); // the gate never opens
    grove::tenant_outcome s = co_await slow.done();
    CHECK_FALSE(s.ok);
    CHECK(s.error == "the job timed out");
    CHECK(m.fetch("b")->state == grove::tenant_state::running);
    co_await m.stop();
  });
}

TEST_CASE("handle_run_error_puts_the_tenant_in_error_occurred_and_it_keeps_serving") {
  fixture f;
  auto m = f.manager();
  f.node.block_on([&](grove::process& self) -> awaitable<void> {
    co_await m.start(self.node());
    grove::tenant_op op = co_await install(m, "acme", config("run", "error"));
    CHECK(op.ok()); // the install itself succeeded
    CHECK(co_await f.sink.log->wait_count(self, "error_occurred acme error", 1));
    auto r = m.fetch("acme");
    CHECK(r->state == grove::tenant_state::error_occurred);
    CHECK(r->last_error == "handle_run: run refused");
    json state = co_await m.whereis("acme").call(test_support::get_state{});
    CHECK(state == json{{"n", 0}});
    // An update recovers it.
    grove::tenant_op up = co_await m.update("acme", json::object());
    CHECK(up.ok());
    CHECK(m.fetch("acme")->state == grove::tenant_state::running);
    co_await m.stop();
  });
}

TEST_CASE("a_crashed_tenant_restarts_with_handle_run_and_its_persisted_state") {
  fixture f;
  auto m = f.manager();
  f.node.block_on([&](grove::process& self) -> awaitable<void> {
    co_await m.start(self.node());
    (void)co_await install(m, "acme");
    auto ref = m.whereis("acme");
    ref.cast(test_support::set_n{7});
    CHECK(co_await ref.call(test_support::save{}));
    CHECK(m.fetch("acme")->snapshot == json{{"n", 7}});
    ref.cast(test_support::set_n{8}); // not persisted
    ref.cast(test_support::crash{});
    co_await down_of(self, ref.id());
    CHECK(co_await f.sink.log->wait_count(self, "restarted acme ok", 1));
    CHECK(co_await f.log->wait_count(self, "run acme {\"n\":7}", 1));
    auto again = m.whereis("acme");
    REQUIRE(again);
    CHECK(again != ref);
    json state = co_await again.call(test_support::get_state{});
    CHECK(state == json{{"n", 7}});
    // A normal stop of its own is a restart too: only uninstall removes a tenant.
    (void)co_await again.call(test_support::stop_normally{});
    CHECK(co_await f.sink.log->wait_count(self, "restarted acme ok", 2));
    CHECK(m.fetch("acme")->state == grove::tenant_state::running);
    co_await m.stop();
  });
}

TEST_CASE("a_crash_loop_stops_at_the_intensity_with_gave_up") {
  fixture f;
  auto o = test_support::fast_options(f.store, f.sink.sink());
  o.max_restarts = 2;
  auto m = f.manager(o);
  f.node.block_on([&](grove::process& self) -> awaitable<void> {
    co_await m.start(self.node());
    (void)co_await install(m, "acme");
    for (std::size_t i = 0; i < 3; ++i) {
      // The restarted event is committed after the new process is published.
      if (i > 0) CHECK(co_await f.sink.log->wait_count(self, "restarted acme ok", i));
      const grove::pid p = m.whereis_pid("acme");
      REQUIRE(p);
      grove::server_ref<shop>(p).cast(test_support::crash{});
      co_await down_of(self, p);
    }
    CHECK(co_await f.sink.log->wait_count(self, "gave_up acme error", 1));
    auto r = m.fetch("acme");
    CHECK(r->state == grove::tenant_state::error_occurred);
    CHECK(r->last_error.find("gave up after 2 restarts") == 0);
    CHECK_FALSE(m.whereis("acme"));
    CHECK(f.sink.log->count("restarted acme ok") == 2);
    // The process stays down until an update brings it back.
    grove::tenant_op up = co_await m.update("acme", json::object());
    CHECK(up.ok());
    CHECK(m.whereis("acme"));
    CHECK(m.fetch("acme")->state == grove::tenant_state::running);
    co_await m.stop();
  });
}

TEST_CASE("operations_from_two_processes_on_two_workers_get_busy_or_already_exists_and_one_wins") {
  fixture f;
  auto m = f.manager();
  f.node.block_on([&](grove::process& self) -> awaitable<void> {
    co_await m.start(self.node());
    json cfg{{"update", "gated"}};
    (void)co_await install(m, "acme");
    grove::tenant_op slow = co_await m.update("acme", cfg);
    CHECK(slow.async());
    // Two processes, one per worker, race an update and an uninstall, and
    // each an install of one new id.
    struct result {
      std::error_code update, uninstall, install;
    };
    const grove::pid me = self.self();
    for (std::size_t w = 0; w < 2; ++w) {
      grove::spawn(
          self.node(),
          [&m, me](grove::process&) -> awaitable<void> {
            result r;
            json empty = json::object();
            r.update = co_await grove::testing::error_of(m.update("acme", empty));
            r.uninstall = co_await grove::testing::error_of(m.uninstall("acme"));
            auto op = co_await grove::testing::capture(install(m, "race"));
            r.install = op.error();
            grove::send(me, r);
          },
          grove::spawn_options{.worker = w});
    }
    int installed = 0;
    for (int i = 0; i < 2; ++i) {
      result r = co_await test_support::next_message<result>(self);
      CHECK(r.update == grove::tenant_errc::busy);
      CHECK(r.uninstall == grove::tenant_errc::busy);
      if (!r.install) {
        ++installed;
      } else {
        CHECK(r.install == grove::tenant_errc::already_exists);
      }
    }
    CHECK(installed == 1);
    f.open_gate();
    CHECK((co_await slow.done()).ok);
    co_await m.stop();
  });
  CHECK(f.log->count("construct") == 2); // acme and one race: the loser started no process
}

TEST_CASE("two_managers_live_side_by_side_and_one_runs_under_the_users_supervisor") {
  fixture f;
  auto first = f.manager();
  auto second = f.manager(test_support::fast_options());
  f.node.block_on([&](grove::process& self) -> awaitable<void> {
    std::vector<grove::child_spec> children{second.child_spec("tenants")};
    grove::supervisor sup = co_await grove::supervisor::start(self.node(), std::move(children));
    co_await first.start(self.node());
    (void)co_await install(first, "same-id");
    (void)co_await install(second, "same-id");
    CHECK(first.whereis("same-id") != second.whereis("same-id"));
    CHECK(first.count() == 1);
    CHECK(second.count() == 1);
    auto kids = co_await sup.which_children();
    REQUIRE(kids.size() == 1);
    CHECK(kids[0].type == grove::child_type::supervisor);
    co_await first.stop();
    CHECK(second.whereis("same-id"));
    co_await sup.stop();
  });
  CHECK(f.log->count("terminate same-id shutdown") == 2);
}

TEST_CASE("ten_thousand_tenants_are_installed_listed_and_uninstalled") {
  fixture f;
  auto m = f.manager(test_support::fast_options(std::make_shared<grove::memory_tenant_store>()));
  constexpr int n = 10'000;
  f.node.block_on([&](grove::process& self) -> awaitable<void> {
    co_await m.start(self.node());
    for (int i = 0; i < n; ++i) {
      grove::tenant_op op = co_await install(m, "tenant-" + std::to_string(i));
      REQUIRE(op.ok());
    }
    CHECK(m.count() == n);
    std::vector<grove::tenant_record> all = m.list();
    CHECK(all.size() == n);
    std::set<std::string> ids;
    for (const auto& r : all) ids.insert(r.id);
    CHECK(ids.size() == n);
    CHECK(m.list(grove::tenant_state::running).size() == n);
    for (int i = 0; i < n; ++i) {
      grove::tenant_op op = co_await m.uninstall("tenant-" + std::to_string(i));
      REQUIRE(op.ok());
    }
    CHECK(m.count() == 0);
    CHECK(m.list().empty());
    co_await m.stop();
  });
  CHECK(f.log->count("construct") == n);
}

TEST_CASE("an_async_install_that_fails_leaves_no_record_and_a_failing_async_uninstall_keeps_the_tenant") {
  fixture f;
  auto m = f.manager();
  f.node.block_on([&](grove::process& self) -> awaitable<void> {
    co_await m.start(self.node());
    grove::tenant_op op = co_await install(m, "a", config("install", "async_error"));
    CHECK(op.async());
    grove::tenant_outcome done = co_await op.done();
    CHECK_FALSE(done.ok);
    CHECK(done.error == "the job failed");
    CHECK_FALSE(m.fetch("a"));
    CHECK(co_await f.sink.log->wait_count(self, "install a error"));

    (void)co_await install(m, "b", config("uninstall", "async_error"));
    grove::tenant_op out = co_await m.uninstall("b");
    CHECK(out.async());
    grove::tenant_outcome kept = co_await out.done();
    CHECK_FALSE(kept.ok);
    CHECK(m.fetch("b")->state == grove::tenant_state::running);
    CHECK(m.whereis("b"));
    CHECK(co_await f.sink.log->wait_count(self, "uninstall b error"));
    co_await m.stop();
  });
  CHECK(f.log->count("terminate a normal") == 1); // the failed install's process ended
}

TEST_CASE("an_error_occurred_tenant_that_crashes_restarts_without_handle_run") {
  fixture f;
  auto m = f.manager();
  f.node.block_on([&](grove::process& self) -> awaitable<void> {
    co_await m.start(self.node());
    (void)co_await install(m, "acme", config("run", "error"));
    CHECK(co_await f.sink.log->wait_count(self, "error_occurred acme error"));
    const grove::pid first = m.whereis_pid("acme");
    grove::server_ref<shop>(first).cast(test_support::crash{});
    co_await down_of(self, first);
    CHECK(co_await f.sink.log->wait_count(self, "restarted acme ok"));
    CHECK(m.whereis_pid("acme") != first);
    CHECK(m.fetch("acme")->state == grove::tenant_state::error_occurred);
    json state = co_await m.whereis("acme").call(test_support::get_state{});
    CHECK(state.is_null()); // no snapshot was persisted: a fresh state, and no handle_run
    CHECK(f.log->count("run acme {\"n\":0}") == 1); // only the one after the install
    co_await m.stop();
  });
}

TEST_CASE("bad_arguments_and_options_name_what_is_wrong") {
  fixture f;
  grove::tenant_manager_options bad = test_support::fast_options();
  bad.max_restarts = -1;
  CHECK_THROWS_WITH_AS(f.manager(bad), doctest::Contains("tenant_manager_options.max_restarts: -1"), grove::error);
  grove::tenant_manager_options both = test_support::fast_options(std::make_shared<grove::memory_tenant_store>());
  both.store_file = "/tmp/x.db";
  CHECK_THROWS_WITH_AS(f.manager(both), doctest::Contains("tenant_manager_options.store_file"), grove::error);
  auto m = f.manager();
  f.node.block_on([&](grove::process& self) -> awaitable<void> {
    auto early = co_await grove::testing::capture(install(m, "a"));
    CHECK(early.error() == grove::errc::noproc); // not started
    co_await m.start(self.node());
    auto again = co_await grove::testing::capture(m.start(self.node()));
    CHECK(again.error() == grove::errc::invalid_argument);
    auto empty = co_await grove::testing::capture(install(m, ""));
    CHECK(empty.error() == grove::tenant_errc::bad_tenant_id);
    json not_object = json::array();
    auto cfg = co_await grove::testing::capture(m.install("a", not_object));
    CHECK(cfg.error() == grove::errc::invalid_argument);
    CHECK(cfg.what().find("tenant config: array (expected a JSON object)") != std::string::npos);
    CHECK(m.count() == 0);
    co_await m.stop();
  });
}
