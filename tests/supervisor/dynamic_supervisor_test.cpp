#include <grove/supervisor/dynamic_supervisor.hpp>

#include "probe.hpp"

#include <grove/core/error.hpp>
#include <grove/core/node.hpp>
#include <grove/supervisor/supervisor.hpp>

#include <doctest/doctest.h>

#include <future>
#include <memory>
#include <set>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using grove::awaitable;
using probe::error_of;
using probe::event_log;
using probe::quiet;
using probe::log_ptr;

namespace {

/// A server constructed with the supervisor's extra arguments first.
struct greeter : grove::gen_server {
  struct greet {
    using reply_type = std::string;
  };
  greeter(std::string greeting, int times, std::string who) : text(greeting + " " + who + " x" + std::to_string(times)) {}
  std::string handle_call(greet) { return text; }
  std::string text;
};

grove::dynamic_supervisor start_dyn(grove::node& n, grove::dynamic_supervisor_options o) {
  return n.block_on(grove::dynamic_supervisor::start(n, std::move(o)));
}

grove::child_spec w(const std::string& name, const log_ptr& log, probe::behaviour b = {}) {
  return grove::server_child<probe::worker>(name, name, log, b);
}

/// Asks until `pred` holds of the counts (each answer follows a whole
/// handler), for at most 20 s.
template <class D, class Pred>
grove::child_counts counts_when(grove::node& n, const D& sup, Pred pred) {
  const auto give_up = std::chrono::steady_clock::now() + 20s;
  for (;;) {
    auto c = n.block_on(sup.count_children());
    if (pred(c) || std::chrono::steady_clock::now() > give_up) return c;
  }
}

template <class D, class Pred>
std::vector<grove::child_info> children_when(grove::node& n, const D& sup, Pred pred) {
  const auto give_up = std::chrono::steady_clock::now() + 20s;
  for (;;) {
    auto kids = n.block_on(sup.which_children());
    if (pred(kids) || std::chrono::steady_clock::now() > give_up) return kids;
  }
}

} // namespace

TEST_CASE("a_dynamic_supervisors_children_are_spread_over_the_workers") {
  auto log = std::make_shared<event_log>();
  grove::node node{quiet()};
  auto sup = start_dyn(node, {.report = nullptr});
  std::set<std::size_t> workers;
  for (const char* id : {"a", "b", "c", "d"}) workers.insert(node.block_on(sup.start_child(w(id, log))).worker());
  CHECK(workers == std::set<std::size_t>{0, 1});
}

TEST_CASE("dynamic_children_start_at_run_time_and_are_listed_counted_and_terminated") {
  auto log = std::make_shared<event_log>();
  grove::node node{quiet()};
  auto sup = start_dyn(node, {.report = nullptr});
  CHECK(node.block_on(sup.which_children()).empty());
  const grove::pid a = node.block_on(sup.start_child(w("a", log)));
  const grove::pid b = node.block_on(sup.start_child(w("b", log)));
  auto kids = node.block_on(sup.which_children());
  REQUIRE(kids.size() == 2);
  CHECK(kids[0].process == a); // start order
  CHECK(kids[1].process == b);
  CHECK(kids[0].status == grove::child_status::running);
  CHECK(node.block_on(sup.count_children()) == grove::child_counts{.specs = 2, .active = 2, .supervisors = 0, .workers = 2});

  node.block_on(sup.terminate_child(a));
  CHECK_FALSE(grove::alive(a));
  CHECK(log->count("stop:a:shutdown") == 1);
  CHECK(node.block_on(sup.which_children()).size() == 1);
  CHECK(error_of([&] { node.block_on(sup.terminate_child(a)); }) == grove::supervisor_errc::not_found);
  CHECK(error_of([&] { node.block_on(sup.start_child(grove::child_spec{})); }) == grove::errc::invalid_argument);
}

TEST_CASE("extra_arguments_are_prepended_to_every_child_start") {
  grove::node node{quiet()};
  auto sup = node.block_on(grove::dynamic_supervisor_of<std::string, int>::start(node, {.report = nullptr}, "hello", 3));
  grove::server_ref<greeter> g = node.block_on(sup.start_child<greeter>(std::string("world")));
  CHECK(node.block_on(g.call(greeter::greet{})) == "hello world x3");

  // A restart gets them again.
  grove::exit(g.id(), grove::exit_reason::kill());
  auto kids = children_when(node, sup, [&](const std::vector<grove::child_info>& now) {
    return now.size() == 1 && now[0].process && now[0].process != g.id();
  });
  REQUIRE(kids.size() == 1);
  grove::server_ref<greeter> again(kids[0].process);
  CHECK(node.block_on(again.call(greeter::greet{})) == "hello world x3");

  // A handle that claims other extra arguments is refused with a clear error.
  grove::dynamic_supervisor_of<std::string> wrong(sup.id());
  try {
    node.block_on(wrong.start_child<greeter>(1, std::string("y")));
    FAIL("a mismatched handle should be refused");
  } catch (const grove::error& e) {
    CHECK(e.code() == grove::errc::start_failed);
    CHECK(std::string(e.what()).find("extra arguments") != std::string::npos);
  }
}

TEST_CASE("max_children_refuses_one_more_and_the_count_stays_right_across_restarts") {
  auto log = std::make_shared<event_log>();
  grove::node node{quiet()};
  auto sup = start_dyn(node, {.max_children = 3, .max_restarts = 1000, .report = nullptr});
  std::vector<grove::pid> kids;
  for (const char* name : {"a", "b", "c"}) kids.push_back(node.block_on(sup.start_child(w(name, log))));
  try {
    node.block_on(sup.start_child(w("d", log)));
    FAIL("a fourth child should be refused");
  } catch (const grove::error& e) {
    CHECK(e.code() == grove::supervisor_errc::max_children);
    CHECK(std::string(e.what()).find("max_children") != std::string::npos);
  }
  CHECK(log->count("start:d") == 0);

  // Restarts replace children: they never count as new ones, and the
  // supervisor never forgets one.
  for (int round = 1; round <= 5; ++round) {
    for (const auto& info : node.block_on(sup.which_children())) grove::exit(info.process, grove::exit_reason::kill());
    for (const char* name : {"a", "b", "c"}) REQUIRE(log->wait_count(std::string("start:") + name, round + 1));
    auto n = counts_when(node, sup, [](const grove::child_counts& c) { return c.active == 3; });
    CHECK(n == grove::child_counts{.specs = 3, .active = 3, .supervisors = 0, .workers = 3});
  }
  CHECK(error_of([&] { node.block_on(sup.start_child(w("d", log))); }) == grove::supervisor_errc::max_children);

  // Room again once one is gone.
  node.block_on(sup.terminate_child(node.block_on(sup.which_children())[0].process));
  CHECK(grove::alive(node.block_on(sup.start_child(w("d", log)))));
}

TEST_CASE("temporary_and_transient_dynamic_children_leave_when_they_end_cleanly") {
  auto log = std::make_shared<event_log>();
  grove::node node{quiet()};
  auto sup = start_dyn(node, {.max_children = 2, .report = nullptr});
  auto t = w("t", log);
  t.restart = grove::restart_type::temporary;
  auto u = w("u", log);
  u.restart = grove::restart_type::transient;
  const grove::pid tp = node.block_on(sup.start_child(t));
  const grove::pid up = node.block_on(sup.start_child(u));
  grove::exit(tp, grove::exit_reason::kill());                                           // temporary: never restarted
  grove::server_ref<probe::worker>(up).cast(probe::stop_with{grove::exit_reason::normal()}); // transient, clean
  auto n = counts_when(node, sup, [](const grove::child_counts& c) { return c.specs == 0; });
  CHECK(n.specs == 0);
  CHECK(log->count("start:t") == 1);
  CHECK(log->count("start:u") == 1);
  // Both slots are free again.
  node.block_on(sup.start_child(w("x", log)));
  node.block_on(sup.start_child(w("y", log)));
}

TEST_CASE("a_temporary_dynamic_childs_start_is_not_kept_and_a_permanent_ones_is") {
  // A temporary child is never restarted: what its start captured (an
  // erps connection's stream, say) must not live as long as the child.
  grove::node node{quiet()};
  auto sup = start_dyn(node, {.report = nullptr});
  auto spec = [](std::shared_ptr<int> token, grove::restart_type restart) {
    grove::child_spec s;
    s.start = [token](grove::node& n) {
      return grove::spawn(
          n, [](grove::process& self) -> awaitable<void> { (void)co_await self.receive(); }, {.link = true});
    };
    s.restart = restart;
    return s;
  };
  auto temporary_token = std::make_shared<int>(1);
  auto permanent_token = std::make_shared<int>(2);
  const std::weak_ptr<int> temporary_seen = temporary_token;
  const std::weak_ptr<int> permanent_seen = permanent_token;
  const grove::pid t = node.block_on(sup.start_child(spec(std::move(temporary_token), grove::restart_type::temporary)));
  const grove::pid p = node.block_on(sup.start_child(spec(std::move(permanent_token), grove::restart_type::permanent)));
  // Each call's request is gone once the supervisor answers the next one.
  const grove::child_counts n = node.block_on(sup.count_children());
  CHECK(n.active == 2);
  CHECK(grove::alive(t));
  CHECK(grove::alive(p));
  CHECK(temporary_seen.expired());
  CHECK_FALSE(permanent_seen.expired());
}

TEST_CASE("a_dynamic_supervisor_that_restarts_too_often_exits_with_shutdown") {
  auto log = std::make_shared<event_log>();
  grove::node node{quiet()};
  auto sup = start_dyn(node, {.max_restarts = 1, .report = probe::record_reports(log)});
  node.block_on(sup.start_child(w("a", log)));
  const grove::pid b = node.block_on(sup.start_child(w("b", log)));
  REQUIRE(probe::watch(node, sup.id(), log, "sup"));
  grove::exit(b, grove::exit_reason::kill());
  REQUIRE(log->wait_count("start:b", 2));
  grove::pid b2;
  for (const auto& c : node.block_on(sup.which_children())) {
    if (c.id == "b") b2 = c.process;
  }
  grove::exit(b2, grove::exit_reason::kill());
  REQUIRE(log->wait_count("down:sup:shutdown", 1));
  CHECK(log->count("stop:a:shutdown") == 1);
  CHECK(log->count("report:reached_max_restart_intensity:b:shutdown") == 1);
}

TEST_CASE("a_dynamic_supervisor_stops_all_its_children_and_kills_those_that_ignore_it") {
  auto log = std::make_shared<event_log>();
  grove::node node{quiet()};
  auto sup = start_dyn(node, {.report = probe::record_reports(log)});
  std::vector<grove::pid> kids;
  for (const char* name : {"a", "b", "c"}) kids.push_back(node.block_on(sup.start_child(w(name, log))));
  grove::child_spec s{.id = "s", .start = probe::stubborn_start(log, "s"), .shutdown = grove::shutdown_policy::timeout(100ms)};
  kids.push_back(node.block_on(sup.start_child(s)));
  REQUIRE(probe::watch(node, sup.id(), log, "sup"));
  grove::exit(sup.id(), grove::exit_reason::shutdown());
  REQUIRE(log->wait_count("down:sup:shutdown", 1));
  for (const char* name : {"a", "b", "c"}) CHECK(log->count(std::string("stop:") + name + ":shutdown") == 1);
  CHECK(log->count("ignored:s:shutdown") == 1);
  CHECK(log->count("report:shutdown_error:s:killed") == 1);
  for (const grove::pid& p : kids) CHECK_FALSE(grove::alive(p));
}

TEST_CASE("a_dynamic_supervisor_nests_under_a_supervisor") {
  auto log = std::make_shared<event_log>();
  grove::node node{quiet()};
  auto top = node.block_on(grove::supervisor::start(
      node, {grove::dynamic_supervisor_child("sessions", {.max_children = 5, .report = nullptr}, std::string("hi"), 1)},
      {.report = nullptr}));
  auto kids = node.block_on(top.which_children());
  REQUIRE(kids.size() == 1);
  CHECK(kids[0].type == grove::child_type::supervisor);
  grove::dynamic_supervisor_of<std::string, int> sessions(kids[0].process);
  auto g = node.block_on(sessions.start_child<greeter>(std::string("there")));
  CHECK(node.block_on(g.call(greeter::greet{})) == "hi there x1");
}

TEST_CASE("ten_thousand_dynamic_children_start_and_stop_with_nothing_left_behind") {
  auto log = std::make_shared<event_log>();
  grove::node node{quiet()};
  const std::size_t before = node.process_count();
  auto sup = start_dyn(node, {.max_children = 10'000, .report = nullptr});
  constexpr std::size_t n = 10'000;
  std::vector<grove::pid> kids = node.block_on([](grove::dynamic_supervisor s, log_ptr l) -> awaitable<std::vector<grove::pid>> {
    std::vector<grove::pid> out;
    out.reserve(n);
    probe::behaviour plain;
    plain.trap_exit = false;
    for (std::size_t i = 0; i < n; ++i) {
      out.push_back(co_await s.start_child(grove::server_child<probe::worker>("", "w", l, plain)));
    }
    co_return out;
  }(sup, log));
  CHECK(kids.size() == n);
  CHECK(node.block_on(sup.count_children()).active == n);
  CHECK(node.process_count() == before + n + 1);
  CHECK(error_of([&] { node.block_on(sup.start_child(w("one-too-many", log))); }) == grove::supervisor_errc::max_children);

  // Half terminated one by one, the rest with the supervisor.
  node.block_on([](grove::dynamic_supervisor s, std::vector<grove::pid> ps) -> awaitable<void> {
    for (std::size_t i = 0; i < ps.size(); i += 2) co_await s.terminate_child(ps[i]);
  }(sup, kids));
  CHECK(node.block_on(sup.count_children()).specs == n / 2);
  REQUIRE(probe::watch(node, sup.id(), log, "sup"));
  grove::exit(sup.id(), grove::exit_reason::shutdown());
  REQUIRE(log->wait_count("down:sup:shutdown", 1));
  std::size_t alive = 0;
  for (const grove::pid& p : kids) alive += grove::alive(p) ? 1 : 0;
  CHECK(alive == 0);
}

TEST_CASE("dynamic_supervisor_defaults_match_elixir") {
  const grove::dynamic_supervisor_options o;
  CHECK(o.max_restarts == 3);
  CHECK(o.max_seconds == std::chrono::seconds(5));
  CHECK_FALSE(o.max_children.has_value());
}
