#include <grove/supervisor/supervisor.hpp>

#include "probe.hpp"

#include <grove/core/error.hpp>
#include <grove/core/node.hpp>
#include <grove/core/testing.hpp>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <doctest/doctest.h>

#include <atomic>
#include <condition_variable>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using grove::awaitable;
using probe::error_of;
using probe::event_log;
using probe::quiet;
using probe::log_ptr;
using events = std::vector<std::string>;

namespace {

grove::child_spec w(const std::string& name, const log_ptr& log, probe::behaviour b = {}) {
  return grove::server_child<probe::worker>(name, name, log, b);
}

grove::supervisor start_sup(grove::node& n, std::vector<grove::child_spec> children, grove::supervisor_options o) {
  return n.block_on(grove::supervisor::start(n, std::move(children), std::move(o)));
}

std::map<std::string, grove::pid> pids(grove::node& n, const grove::supervisor& s) {
  std::map<std::string, grove::pid> m;
  for (const auto& c : n.block_on(s.which_children())) m[c.id] = c.process;
  return m;
}

/// Asks the supervisor until `pred` holds of its children (each answer is
/// the state after a whole handler ran), for at most 20 s.
template <class Pred>
std::vector<grove::child_info> children_when(grove::node& n, const grove::supervisor& s, Pred pred) {
  const auto give_up = std::chrono::steady_clock::now() + 20s;
  for (;;) {
    auto kids = n.block_on(s.which_children());
    if (pred(kids) || std::chrono::steady_clock::now() > give_up) return kids;
  }
}

const grove::child_info* child(const std::vector<grove::child_info>& kids, const std::string& id) {
  for (const auto& c : kids) {
    if (c.id == id) return &c;
  }
  return nullptr;
}

/// A child whose starts after the first wait for a "go" message, then fail:
/// it holds its supervisor inside a restart for as long as a test needs.
struct go {};
struct gate {
  std::mutex mutex;
  std::condition_variable cv;
  grove::pid waiting;
};
class gated : public grove::gen_server {
public:
  gated(std::shared_ptr<gate> g, std::shared_ptr<std::atomic<int>> starts) : gate_(std::move(g)), starts_(std::move(starts)) {}
  awaitable<grove::action> init() {
    if (starts_->fetch_add(1) != 1) co_return grove::action{}; // only the second start is held, then fails
    {
      std::lock_guard lock(gate_->mutex);
      gate_->waiting = self();
      gate_->cv.notify_all();
    }
    for (;;) {
      grove::message m = co_await this_process().receive();
      if (m.is<go>()) co_return grove::stop(grove::exit_reason::error("gate closed"));
    }
  }

private:
  std::shared_ptr<gate> gate_;
  std::shared_ptr<std::atomic<int>> starts_;
};

/// Runs `work` in a process of its own and logs "NAME:ERRC" when it ends.
template <class F>
void call_in_background(grove::node& n, const log_ptr& log, std::string name, F work) {
  grove::spawn(n, [log, name, work](grove::process&) -> awaitable<void> {
    int code = 0;
    try {
      co_await work();
    } catch (const grove::error& e) {
      code = e.code().value();
    }
    log->add(name + ":" + std::to_string(code));
  });
}

} // namespace

TEST_CASE("a_supervisors_children_are_spread_over_the_workers_not_piled_on_its_own") {
  // A process starts its helpers on its own worker by default; a
  // supervisor lays out long-lived children, so it spreads them.
  auto log = std::make_shared<event_log>();
  grove::node node{quiet()};
  auto sup = start_sup(node, {w("a", log), w("b", log), w("c", log), w("d", log)}, {.report = nullptr});
  std::set<std::size_t> workers;
  for (const auto& kid : node.block_on(sup.which_children())) workers.insert(kid.process.worker());
  CHECK(workers == std::set<std::size_t>{0, 1});
}

TEST_CASE("children_start_in_order_and_are_listed_and_counted") {
  auto log = std::make_shared<event_log>();
  grove::node node{quiet()};
  auto sup = start_sup(node, {w("a", log), w("b", log), w("c", log)}, {.report = nullptr});
  CHECK(log->events() == events{"start:a", "start:b", "start:c"});
  auto kids = node.block_on(sup.which_children());
  REQUIRE(kids.size() == 3);
  for (std::size_t i = 0; i < 3; ++i) {
    CHECK(kids[i].id == std::string(1, static_cast<char>('a' + i)));
    CHECK(kids[i].status == grove::child_status::running);
    CHECK(grove::alive(kids[i].process));
    CHECK(kids[i].type == grove::child_type::worker);
  }
  auto n = node.block_on(sup.count_children());
  CHECK(n == grove::child_counts{.specs = 3, .active = 3, .supervisors = 0, .workers = 3});
  auto name = node.block_on(grove::server_ref<probe::worker>(kids[1].process).call(probe::name_request{}));
  CHECK(name == "b");
}

TEST_CASE("one_for_one_restarts_only_the_child_that_ended") {
  auto log = std::make_shared<event_log>();
  grove::node node{quiet()};
  auto sup = start_sup(node, {w("a", log), w("b", log), w("c", log)}, {.report = nullptr});
  auto before = pids(node, sup);
  grove::exit(before["b"], grove::exit_reason::kill());
  REQUIRE(log->wait_count("start:b", 2));
  auto after = pids(node, sup);
  CHECK(after["a"] == before["a"]);
  CHECK(after["c"] == before["c"]);
  CHECK(after["b"] != before["b"]);
  CHECK(grove::alive(after["b"]));
  CHECK(log->events() == events{"start:a", "start:b", "start:c", "start:b"});
}

TEST_CASE("one_for_all_stops_the_others_in_reverse_order_and_starts_all_in_order") {
  auto log = std::make_shared<event_log>();
  grove::node node{quiet()};
  auto sup = start_sup(node, {w("a", log), w("b", log), w("c", log)},
                       {.strategy = grove::restart_strategy::one_for_all, .report = nullptr});
  auto before = pids(node, sup);
  grove::exit(before["b"], grove::exit_reason::kill());
  REQUIRE(log->wait_count("start:c", 2));
  CHECK(log->events() == events{"start:a", "start:b", "start:c", "stop:c:shutdown", "stop:a:shutdown", "start:a",
                                "start:b", "start:c"});
  auto after = pids(node, sup);
  for (const char* id : {"a", "b", "c"}) {
    CHECK(after[id] != before[id]);
    CHECK(grove::alive(after[id]));
    CHECK_FALSE(grove::alive(before[id]));
  }
}

TEST_CASE("one_for_all_drops_temporary_children_it_stops") {
  auto log = std::make_shared<event_log>();
  grove::node node{quiet()};
  auto t = w("t", log);
  t.restart = grove::restart_type::temporary;
  auto sup = start_sup(node, {w("a", log), t, w("b", log)},
                       {.strategy = grove::restart_strategy::one_for_all, .report = nullptr});
  grove::exit(pids(node, sup)["b"], grove::exit_reason::kill());
  REQUIRE(log->wait_count("start:b", 2));
  auto kids = node.block_on(sup.which_children());
  REQUIRE(kids.size() == 2);
  CHECK(kids[0].id == "a");
  CHECK(kids[1].id == "b");
  CHECK(log->count("start:t") == 1);
  CHECK(log->count("stop:t:shutdown") == 1);
}

TEST_CASE("rest_for_one_restarts_the_child_and_those_started_after_it") {
  auto log = std::make_shared<event_log>();
  grove::node node{quiet()};
  auto sup = start_sup(node, {w("a", log), w("b", log), w("c", log), w("d", log)},
                       {.strategy = grove::restart_strategy::rest_for_one, .report = nullptr});
  auto before = pids(node, sup);
  grove::exit(before["b"], grove::exit_reason::kill());
  REQUIRE(log->wait_count("start:d", 2));
  CHECK(log->events() == events{"start:a", "start:b", "start:c", "start:d", "stop:d:shutdown", "stop:c:shutdown",
                                "start:b", "start:c", "start:d"});
  auto after = pids(node, sup);
  CHECK(after["a"] == before["a"]);
  for (const char* id : {"b", "c", "d"}) CHECK(after[id] != before[id]);
}

TEST_CASE("transient_children_are_restarted_only_after_an_abnormal_exit") {
  auto log = std::make_shared<event_log>();
  grove::node node{quiet()};
  auto t = w("t", log);
  t.restart = grove::restart_type::transient;
  auto u = w("u", log);
  u.restart = grove::restart_type::transient;
  auto sup = start_sup(node, {t, u}, {.report = nullptr});
  auto before = pids(node, sup);

  // A crash: restarted.
  grove::server_ref<probe::worker>(before["t"]).cast(probe::stop_with{grove::exit_reason::error("boom")});
  REQUIRE(log->wait_count("start:t", 2));

  // Normal and {shutdown, value}: not restarted, the spec stays, stopped.
  auto t2 = pids(node, sup)["t"];
  grove::server_ref<probe::worker>(t2).cast(probe::stop_with{grove::exit_reason::normal()});
  grove::server_ref<probe::worker>(before["u"]).cast(probe::stop_with{grove::exit_reason::shutdown("done")});
  auto kids = children_when(node, sup, [](const auto& k) {
    return k.size() == 2 && k[0].status != grove::child_status::running && k[1].status != grove::child_status::running;
  });
  REQUIRE(kids.size() == 2);
  CHECK(kids[0].status == grove::child_status::stopped);
  CHECK(kids[1].status == grove::child_status::stopped);
  CHECK_FALSE(kids[0].process);
  CHECK(log->count("start:t") == 2);
  CHECK(log->count("start:u") == 1);
  CHECK(node.block_on(sup.count_children()) == grove::child_counts{.specs = 2, .active = 0, .supervisors = 0, .workers = 2});
}

TEST_CASE("temporary_children_are_never_restarted_and_are_forgotten") {
  auto log = std::make_shared<event_log>();
  grove::node node{quiet()};
  auto t = w("t", log);
  t.restart = grove::restart_type::temporary;
  auto sup = start_sup(node, {w("a", log), t}, {.report = nullptr});
  grove::exit(pids(node, sup)["t"], grove::exit_reason::kill());
  auto kids = children_when(node, sup, [](const auto& k) { return k.size() == 1; });
  REQUIRE(kids.size() == 1);
  CHECK(kids[0].id == "a");
  CHECK(log->count("start:t") == 1);
}

TEST_CASE("permanent_children_are_restarted_even_after_a_normal_exit") {
  auto log = std::make_shared<event_log>();
  grove::node node{quiet()};
  auto sup = start_sup(node, {w("p", log)}, {.report = nullptr});
  grove::server_ref<probe::worker>(pids(node, sup)["p"]).cast(probe::stop_with{grove::exit_reason::normal()});
  REQUIRE(log->wait_count("start:p", 2));
}

TEST_CASE("too_many_restarts_stop_the_children_and_the_supervisor_with_shutdown") {
  auto log = std::make_shared<event_log>();
  grove::node node{quiet()};
  auto sup = start_sup(node, {w("a", log), w("b", log)},
                       {.max_restarts = 2, .max_seconds = std::chrono::seconds(3600), .report = probe::record_reports(log)});
  REQUIRE(probe::watch(node, sup.id(), log, "sup"));
  for (std::size_t i = 1; i <= 2; ++i) {
    grove::exit(pids(node, sup)["b"], grove::exit_reason::kill());
    REQUIRE(log->wait_count("start:b", i + 1));
  }
  const auto last = pids(node, sup);
  grove::exit(last.at("b"), grove::exit_reason::kill()); // the third within the period: one too many
  REQUIRE(log->wait_count("down:sup:shutdown", 1));
  CHECK(log->count("report:reached_max_restart_intensity:b:shutdown") == 1);
  CHECK(log->count("start:b") == 3);
  CHECK(log->count("stop:a:shutdown") == 1); // the survivor was stopped before the supervisor ended
  CHECK_FALSE(grove::alive(last.at("a")));
}

TEST_CASE("zero_max_restarts_gives_up_at_the_first_exit") {
  auto log = std::make_shared<event_log>();
  grove::node node{quiet()};
  auto sup = start_sup(node, {w("a", log)}, {.max_restarts = 0, .report = nullptr});
  REQUIRE(probe::watch(node, sup.id(), log, "sup"));
  grove::exit(pids(node, sup)["a"], grove::exit_reason::kill());
  REQUIRE(log->wait_count("down:sup:shutdown", 1));
  CHECK(log->count("start:a") == 1);
}

TEST_CASE("a_supervisor_that_gives_up_is_restarted_by_its_own_supervisor") {
  auto log = std::make_shared<event_log>();
  grove::node node{quiet()};
  auto inner = grove::supervisor_child("inner", {w("x", log)}, {.max_restarts = 1, .report = nullptr});
  auto top = start_sup(node, {w("before", log), inner, w("after", log)}, {.report = nullptr});
  const auto top_before = pids(node, top);
  auto inner_ref = grove::supervisor(top_before.at("inner"));
  grove::exit(pids(node, inner_ref)["x"], grove::exit_reason::kill());
  REQUIRE(log->wait_count("start:x", 2));
  grove::exit(pids(node, inner_ref)["x"], grove::exit_reason::kill()); // inner gives up
  REQUIRE(log->wait_count("start:x", 3));                              // top restarted inner, which started x
  auto top_after = pids(node, top);
  CHECK(top_after["inner"] != top_before.at("inner"));
  CHECK(grove::alive(top_after["inner"]));
  CHECK(top_after["before"] == top_before.at("before"));
  CHECK(top_after["after"] == top_before.at("after"));
  auto kids = node.block_on(top.which_children());
  CHECK(child(kids, "inner")->type == grove::child_type::supervisor);
  CHECK(node.block_on(top.count_children()) == grove::child_counts{.specs = 3, .active = 3, .supervisors = 1, .workers = 2});
}

TEST_CASE("nested_trees_restart_bottom_up_the_inner_supervisor_handles_its_own_child") {
  auto log = std::make_shared<event_log>();
  grove::node node{quiet()};
  auto top = start_sup(node, {grove::supervisor_child("inner", {w("x", log), w("y", log)}, {.report = nullptr})},
                       {.strategy = grove::restart_strategy::one_for_all, .report = nullptr});
  const grove::pid inner_pid = pids(node, top)["inner"];
  grove::supervisor inner(inner_pid);
  const auto y = pids(node, inner)["y"];
  grove::exit(pids(node, inner)["x"], grove::exit_reason::kill());
  REQUIRE(log->wait_count("start:x", 2));
  CHECK(pids(node, top)["inner"] == inner_pid); // the top never saw a failure
  CHECK(pids(node, inner)["y"] == y);
}

TEST_CASE("a_child_that_ignores_shutdown_is_killed_after_its_timeout") {
  auto log = std::make_shared<event_log>();
  grove::node node{quiet()};
  grove::child_spec s{.id = "s", .start = probe::stubborn_start(log, "s"), .shutdown = grove::shutdown_policy::timeout(100ms)};
  auto sup = start_sup(node, {s}, {.report = probe::record_reports(log)});
  const grove::pid p = pids(node, sup)["s"];
  node.block_on(sup.terminate_child("s"));
  CHECK_FALSE(grove::alive(p));
  CHECK(log->count("ignored:s:shutdown") == 1);
  CHECK(log->count("report:shutdown_error:s:killed") == 1);
  CHECK(node.block_on(sup.which_children())[0].status == grove::child_status::stopped);
}

TEST_CASE("brutal_kill_ends_a_child_without_running_its_terminate") {
  auto log = std::make_shared<event_log>();
  grove::node node{quiet()};
  auto k = w("k", log);
  k.shutdown = grove::shutdown_policy::brutal_kill();
  auto sup = start_sup(node, {k, w("g", log)}, {.report = probe::record_reports(log)});
  const auto p = pids(node, sup);
  node.block_on(sup.terminate_child("k"));
  node.block_on(sup.terminate_child("g"));
  CHECK_FALSE(grove::alive(p.at("k")));
  CHECK(log->count("stop:k:killed") == 0);
  CHECK(log->count("stop:g:shutdown") == 1); // a timeout shutdown lets a trapping child clean up
  CHECK(probe::only(log->events(), "report:").empty());
}

TEST_CASE("a_failed_start_stops_the_started_children_in_reverse_order_and_names_the_child") {
  auto log = std::make_shared<event_log>();
  grove::node node{quiet()};
  probe::behaviour refuse;
  refuse.failing_starts = std::make_shared<std::atomic<int>>(1);
  try {
    start_sup(node, {w("a", log), w("b", log), w("c", log, refuse), w("d", log)}, {.report = nullptr});
    FAIL("the start should have failed");
  } catch (const grove::error& e) {
    CHECK(e.code() == grove::errc::start_failed);
    REQUIRE(e.reason().has_value());
    CHECK(e.reason()->what() == grove::exit_reason::kind::shutdown);
    CHECK(e.reason()->detail() == "{failed_to_start_child, c, {error, refused to start}}");
    CHECK(std::string(e.what()).find("failed_to_start_child, c") != std::string::npos);
  }
  CHECK(log->events() == events{"start:a", "start:b", "refused:c", "stop:b:shutdown", "stop:a:shutdown"});
  CHECK(node.process_count() == 0);
}

TEST_CASE("bad_specs_and_options_are_rejected_before_anything_starts") {
  auto log = std::make_shared<event_log>();
  grove::node node{quiet()};
  CHECK(error_of([&] { start_sup(node, {w("a", log), w("a", log)}, {}); }) == grove::errc::invalid_argument);
  CHECK(error_of([&] { start_sup(node, {grove::child_spec{.id = "x"}}, {}); }) == grove::errc::invalid_argument);
  CHECK(error_of([&] { start_sup(node, {}, {.max_restarts = -1}); }) == grove::errc::invalid_argument);
  CHECK(error_of([&] { start_sup(node, {}, {.max_seconds = std::chrono::seconds(0)}); }) == grove::errc::invalid_argument);
  try {
    start_sup(node, {w("a", log), w("a", log)}, {});
  } catch (const grove::error& e) {
    CHECK(std::string(e.what()).find("\"a\"") != std::string::npos);
  }
  CHECK(log->events().empty());
  CHECK(node.process_count() == 0);
}

TEST_CASE("children_are_added_stopped_restarted_and_deleted_at_run_time") {
  auto log = std::make_shared<event_log>();
  grove::node node{quiet()};
  auto sup = start_sup(node, {w("a", log)}, {.report = nullptr});

  const grove::pid d1 = node.block_on(sup.start_child(w("d", log)));
  CHECK(grove::alive(d1));
  auto kids = node.block_on(sup.which_children());
  REQUIRE(kids.size() == 2);
  CHECK(kids[1].id == "d");
  CHECK(error_of([&] { node.block_on(sup.start_child(w("d", log))); }) == grove::supervisor_errc::already_started);
  CHECK(error_of([&] { node.block_on(sup.delete_child("d")); }) == grove::supervisor_errc::running);
  CHECK(error_of([&] { node.block_on(sup.restart_child("d")); }) == grove::supervisor_errc::running);

  node.block_on(sup.terminate_child("d"));
  CHECK_FALSE(grove::alive(d1));
  CHECK(log->count("stop:d:shutdown") == 1);
  CHECK(child(node.block_on(sup.which_children()), "d")->status == grove::child_status::stopped);
  CHECK(error_of([&] { node.block_on(sup.start_child(w("d", log))); }) == grove::supervisor_errc::already_present);

  const grove::pid d2 = node.block_on(sup.restart_child("d"));
  CHECK(grove::alive(d2));
  CHECK(d2 != d1);
  CHECK(log->count("start:d") == 2);

  node.block_on(sup.terminate_child("d"));
  node.block_on(sup.delete_child("d"));
  CHECK(node.block_on(sup.which_children()).size() == 1);
  CHECK(error_of([&] { node.block_on(sup.delete_child("d")); }) == grove::supervisor_errc::not_found);
  CHECK(error_of([&] { node.block_on(sup.terminate_child("d")); }) == grove::supervisor_errc::not_found);
  CHECK(error_of([&] { node.block_on(sup.restart_child("d")); }) == grove::supervisor_errc::not_found);
  CHECK(error_of([&] { node.block_on(sup.start_child(grove::child_spec{.id = "e"})); }) == grove::errc::invalid_argument);
}

TEST_CASE("a_child_that_fails_to_start_at_run_time_is_not_kept") {
  auto log = std::make_shared<event_log>();
  grove::node node{quiet()};
  auto sup = start_sup(node, {}, {.report = probe::record_reports(log)});
  probe::behaviour refuse;
  refuse.failing_starts = std::make_shared<std::atomic<int>>(1);
  try {
    node.block_on(sup.start_child(w("r", log, refuse)));
    FAIL("the start should have failed");
  } catch (const grove::error& e) {
    CHECK(e.code() == grove::errc::start_failed);
    CHECK(*e.reason() == grove::exit_reason::error("refused to start"));
    CHECK(std::string(e.what()).find("child \"r\"") != std::string::npos);
  }
  CHECK(node.block_on(sup.which_children()).empty());
  CHECK(log->count("report:start_error:r:{error, refused to start}") == 1);
}

TEST_CASE("a_temporary_child_terminated_at_run_time_is_forgotten_and_an_ignored_start_is_kept_stopped") {
  auto log = std::make_shared<event_log>();
  grove::node node{quiet()};
  auto sup = start_sup(node, {}, {.report = nullptr});
  auto t = w("t", log);
  t.restart = grove::restart_type::temporary;
  node.block_on(sup.start_child(t));
  node.block_on(sup.terminate_child("t"));
  CHECK(node.block_on(sup.which_children()).empty());

  grove::child_spec ignored{.id = "i", .start = [](grove::node&) { return grove::pid{}; }};
  CHECK_FALSE(node.block_on(sup.start_child(ignored)));
  auto kids = node.block_on(sup.which_children());
  REQUIRE(kids.size() == 1);
  CHECK(kids[0].status == grove::child_status::stopped);
}

TEST_CASE("a_failing_restart_is_retried_and_each_retry_counts_as_a_restart") {
  auto log = std::make_shared<event_log>();
  grove::node node{quiet()};
  probe::behaviour flaky;
  flaky.failing_starts = std::make_shared<std::atomic<int>>(0);
  auto sup = start_sup(node, {w("f", log, flaky)}, {.max_restarts = 5, .report = probe::record_reports(log)});
  flaky.failing_starts->store(2);
  grove::exit(pids(node, sup)["f"], grove::exit_reason::kill());
  REQUIRE(log->wait_count("start:f", 2));
  CHECK(log->count("refused:f") == 2);
  CHECK(probe::only(log->events(), "report:start_error:f").size() == 2);

  // One that never comes back: the retries use up the intensity.
  REQUIRE(probe::watch(node, sup.id(), log, "sup"));
  flaky.failing_starts->store(1'000'000);
  grove::exit(pids(node, sup)["f"], grove::exit_reason::kill());
  REQUIRE(log->wait_count("down:sup:shutdown", 1));
  CHECK(log->count("report:reached_max_restart_intensity:f:shutdown") == 1);
}

TEST_CASE("stopping_a_supervisor_stops_its_children_in_reverse_order") {
  auto log = std::make_shared<event_log>();
  grove::node node{quiet()};
  auto sup = start_sup(node, {w("a", log), w("b", log), w("c", log)}, {.report = nullptr});
  const auto kids = pids(node, sup);
  REQUIRE(probe::watch(node, sup.id(), log, "sup"));
  grove::exit(sup.id(), grove::exit_reason::shutdown());
  REQUIRE(log->wait_count("down:sup:shutdown", 1));
  CHECK(log->events() == events{"start:a", "start:b", "start:c", "stop:c:shutdown", "stop:b:shutdown",
                                "stop:a:shutdown", "down:sup:shutdown"});
  for (const auto& [id, p] : kids) CHECK_FALSE(grove::alive(p));
}

TEST_CASE("node_shutdown_stops_a_supervision_tree_top_down_children_in_reverse_order") {
  auto log = std::make_shared<event_log>();
  {
    grove::node node{quiet()};
    start_sup(node,
              {w("a", log), grove::supervisor_child("inner", {w("x", log), w("y", log)}, {.report = nullptr}), w("c", log)},
              {.report = nullptr});
    node.shutdown();
    CHECK(node.process_count() == 0);
  }
  CHECK(probe::only(log->events(), "stop:") ==
        events{"stop:c:shutdown", "stop:y:shutdown", "stop:x:shutdown", "stop:a:shutdown"});
}

TEST_CASE("a_supervisor_linked_to_a_process_stops_its_tree_when_that_process_crashes") {
  auto log = std::make_shared<event_log>();
  grove::node node{quiet()};
  std::promise<grove::pid> started;
  grove::spawn(node, [log, &started](grove::process& self) -> awaitable<grove::exit_reason> {
    // (Built first: g++ 12 rejects a braced list inside a co_await expression.)
    std::vector<grove::child_spec> children{w("a", log), w("b", log)};
    grove::supervisor_options options;
    options.report = nullptr;
    auto sup = co_await grove::supervisor::start_link(self.node(), children, options);
    started.set_value(sup.id());
    co_return grove::exit_reason::error("owner crashed");
  });
  auto f = started.get_future();
  REQUIRE(f.wait_for(20s) == std::future_status::ready);
  REQUIRE(probe::watch(node, f.get(), log, "sup"));
  REQUIRE(log->wait_for([](const events& e) { return !probe::only(e, "down:sup:").empty(); }));
  CHECK(probe::only(log->events(), "stop:") == events{"stop:b:shutdown", "stop:a:shutdown"});
}

TEST_CASE("a_child_being_restarted_can_be_neither_restarted_nor_deleted_by_hand") {
  auto log = std::make_shared<event_log>();
  grove::node node{quiet()};
  auto g = std::make_shared<gate>();
  auto starts = std::make_shared<std::atomic<int>>(0);
  auto sup = start_sup(node, {grove::server_child<gated>("g", g, starts)}, {.report = nullptr});
  grove::exit(pids(node, sup)["g"], grove::exit_reason::kill());
  grove::pid held;
  {
    std::unique_lock lock(g->mutex);
    REQUIRE(g->cv.wait_for(lock, 20s, [&] { return static_cast<bool>(g->waiting); }));
    held = g->waiting;
  }
  // The supervisor is inside the restart: these two calls queue behind it.
  call_in_background(node, log, "restart_child", [sup] { return sup.restart_child("g"); });
  call_in_background(node, log, "delete_child", [sup] { return sup.delete_child("g"); });
  const auto give_up = std::chrono::steady_clock::now() + 20s;
  while (grove::mailbox_size(sup.id()) < 2 && std::chrono::steady_clock::now() < give_up) std::this_thread::yield();
  REQUIRE(grove::mailbox_size(sup.id()) >= 2);
  grove::send(held, go{}); // this restart fails; the retry is queued after the two calls
  REQUIRE(log->wait_for([](const events& e) { return e.size() == 2; }));
  const std::string restarting = std::to_string(static_cast<int>(grove::supervisor_errc::restarting));
  CHECK(log->count("restart_child:" + restarting) == 1);
  CHECK(log->count("delete_child:" + restarting) == 1);
  // Then the retry succeeds (the third start is not held).
  auto kids = children_when(node, sup, [](const auto& k) { return k[0].status == grove::child_status::running; });
  CHECK(kids[0].status == grove::child_status::running);
  CHECK(starts->load() == 3);
}

TEST_CASE("the_default_intensity_is_three_restarts_in_five_seconds") {
  CHECK(grove::supervisor_options{}.max_restarts == 3);
  CHECK(grove::supervisor_options{}.max_seconds == std::chrono::seconds(5));
  auto log = std::make_shared<event_log>();
  grove::node node{quiet()};
  auto sup = start_sup(node, {w("a", log)}, {.report = nullptr});
  REQUIRE(probe::watch(node, sup.id(), log, "sup"));
  for (std::size_t i = 1; i <= 3; ++i) {
    grove::exit(pids(node, sup)["a"], grove::exit_reason::kill());
    REQUIRE(log->wait_count("start:a", i + 1));
  }
  CHECK(grove::alive(sup.id()));
  grove::exit(pids(node, sup)["a"], grove::exit_reason::kill());
  REQUIRE(log->wait_count("down:sup:shutdown", 1));
}

TEST_CASE("stop_from_outside_stops_the_children_in_reverse_order_and_returns_the_reason") {
  auto log = std::make_shared<event_log>();
  grove::node node{quiet()};
  auto sup = start_sup(node, {w("a", log), w("b", log)}, {.report = nullptr});
  grove::exit_reason r = node.block_on(sup.stop(grove::exit_reason::shutdown(), 20s));
  CHECK(r == grove::exit_reason::shutdown());
  // stop() returned once the supervisor had ended, so its children had too.
  CHECK(log->events() == events{"start:a", "start:b", "stop:b:shutdown", "stop:a:shutdown"});
  CHECK_FALSE(grove::alive(sup.id()));
  CHECK(node.block_on(grove::testing::error_of(sup.stop())) == grove::errc::noproc);
}

TEST_CASE("child_pid_finds_a_child_by_its_id") {
  auto log = std::make_shared<event_log>();
  grove::node node{quiet()};
  auto sup = start_sup(node, {w("a", log), w("b", log)}, {.report = nullptr});
  const auto kids = pids(node, sup);
  CHECK(node.block_on(sup.child_pid("b")) == kids.at("b"));
  node.block_on(sup.terminate_child("b"));
  CHECK(node.block_on(sup.child_pid("b")) == grove::pid{});
  CHECK(node.block_on(grove::testing::error_of(sup.child_pid("nobody"))) == grove::supervisor_errc::not_found);
}

namespace {
/// Needs a while to stop: its terminate waits on a timer, then logs.
class slow_to_stop : public grove::gen_server {
public:
  slow_to_stop(log_ptr log, grove::duration takes) : log_(std::move(log)), takes_(takes) {}
  void init() { this_process().trap_exit(true); }
  awaitable<void> terminate(grove::exit_reason reason) {
    boost::asio::steady_timer t(co_await boost::asio::this_coro::executor, takes_);
    co_await t.async_wait(boost::asio::use_awaitable);
    log_->add("stopped:" + reason.to_string());
  }

private:
  log_ptr log_;
  grove::duration takes_;
};
} // namespace

TEST_CASE("a_node_shutdown_lets_a_root_supervisor_run_its_childrens_policies_past_the_grace") {
  auto log = std::make_shared<event_log>();
  {
    // The node's grace is 50 ms; the child takes 300 ms of its 20 s shutdown
    // timeout. The supervisor's own policy decides, so the child finishes.
    grove::node_options o = quiet();
    o.shutdown_grace = 50ms;
    grove::node node{o};
    auto spec = grove::server_child<slow_to_stop>("slow", log, grove::duration(300ms));
    spec.shutdown = grove::shutdown_policy::timeout(20s);
    start_sup(node, {std::move(spec)}, {.report = nullptr});
    node.shutdown();
    CHECK(node.process_count() == 0);
  }
  CHECK(log->events() == events{"stopped:shutdown"});
}
