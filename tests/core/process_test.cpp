#include <grove/core/process.hpp>

#include <grove/core/error.hpp>
#include <grove/core/node.hpp>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using grove::awaitable;

namespace {

struct ping {
  grove::pid reply_to;
  int n;
};
struct pong {
  int n;
};

/// Waits for messages until told to stop (or exits with the reason it is sent).
awaitable<grove::exit_reason> waiter(grove::process& self) {
  for (;;) {
    grove::message m = co_await self.receive();
    if (auto* r = m.get_if<grove::exit_reason>()) co_return *r;
    if (auto* p = m.get_if<ping>()) grove::send(p->reply_to, pong{p->n});
  }
}

awaitable<void> sleeps_forever(grove::process&) {
  boost::asio::steady_timer t(co_await boost::asio::this_coro::executor, 24h);
  co_await t.async_wait(boost::asio::use_awaitable);
}

/// Receives the next message, failing the test if none comes within 5 s.
awaitable<grove::message> next(grove::process& self) {
  auto m = co_await self.receive_for(5s);
  REQUIRE(m.has_value());
  co_return std::move(*m);
}

} // namespace

TEST_CASE("messages_from_one_sender_arrive_in_order_across_workers") {
  grove::node node{{.threads = 2}};
  node.block_on([](grove::process& self) -> awaitable<void> {
    grove::spawn_options other;
    other.worker = (self.self().worker() + 1) % 2;
    grove::pid echo = grove::spawn(self.node(), waiter, other);
    CHECK(echo.worker() != self.self().worker());
    for (int i = 0; i < 1000; ++i) grove::send(echo, ping{self.self(), i});
    for (int i = 0; i < 1000; ++i) {
      grove::message m = co_await next(self);
      REQUIRE(m.is<pong>());
      REQUIRE(m.get<pong>().n == i);
    }
    grove::send(echo, grove::exit_reason::normal());
  });
}

TEST_CASE("monitor_delivers_one_down_message_with_the_reason") {
  grove::node node{{.threads = 2}};
  node.block_on([](grove::process& self) -> awaitable<void> {
    grove::pid a = grove::spawn(self.node(), waiter);
    grove::pid b = grove::spawn(self.node(), waiter);
    grove::pid c = grove::spawn(self.node(), [](grove::process& me) -> awaitable<void> {
      co_await me.receive();
      throw std::runtime_error("bad state");
    });
    auto ma = self.monitor(a);
    auto mb = self.monitor(b);
    auto mc = self.monitor(c);
    grove::send(a, grove::exit_reason::normal());
    grove::send(b, grove::exit_reason::shutdown("done"));
    grove::send(c, 0);
    std::vector<grove::down_message> downs;
    for (int i = 0; i < 3; ++i) downs.push_back(std::move((co_await next(self)).get<grove::down_message>()));
    auto find = [&](const grove::monitor_ref& r) {
      for (auto& d : downs)
        if (d.ref == r) return d.reason;
      return grove::exit_reason::noproc();
    };
    CHECK(find(ma) == grove::exit_reason::normal());
    CHECK(find(mb) == grove::exit_reason::shutdown("done"));
    CHECK(find(mc) == grove::exit_reason::error("bad state"));
    // Exactly one each: nothing more arrives.
    CHECK_FALSE((co_await self.receive_for(30ms)).has_value());
  });
}

TEST_CASE("monitor_of_a_dead_process_reports_noproc_and_demonitor_stops_the_down") {
  grove::node node{{.threads = 2}};
  node.block_on([](grove::process& self) -> awaitable<void> {
    grove::pid gone = grove::spawn(self.node(), waiter);
    auto m0 = self.monitor(gone);
    grove::send(gone, grove::exit_reason::normal());
    CHECK((co_await next(self)).get<grove::down_message>().ref == m0);

    auto m1 = self.monitor(gone);
    grove::message m = co_await next(self);
    CHECK(m.get<grove::down_message>().ref == m1);
    CHECK(m.get<grove::down_message>().reason == grove::exit_reason::noproc());

    // demonitor before the exit: no down message ever.
    grove::pid p = grove::spawn(self.node(), waiter);
    auto m2 = self.monitor(p);
    CHECK(self.demonitor(m2));
    auto m3 = self.monitor(p); // a second monitor proves the exit happened
    grove::send(p, grove::exit_reason::normal());
    grove::message d = co_await next(self);
    CHECK(d.get<grove::down_message>().ref == m3);
    CHECK_FALSE((co_await self.receive_for(30ms)).has_value());
  });
}

TEST_CASE("demonitor_removes_a_down_message_already_queued") {
  // One worker: monitoring a process that is gone queues the noproc down at
  // once, in the same step, so the test sees it queued but not yet taken.
  grove::node node{{.threads = 1}};
  node.block_on([](grove::process& self) -> awaitable<void> {
    grove::pid p = grove::spawn(self.node(), waiter);
    auto first = self.monitor(p);
    grove::send(p, grove::exit_reason::normal());
    CHECK((co_await next(self)).get<grove::down_message>().ref == first);
    auto late = self.monitor(p);
    CHECK(self.mailbox_size() == 1);
    CHECK(self.demonitor(late));
    CHECK(self.mailbox_size() == 0);
    CHECK_FALSE((co_await self.receive_for(30ms)).has_value());
  });
}

TEST_CASE("abnormal_exit_propagates_over_links_and_normal_exit_does_not") {
  grove::node node{{.threads = 2}};
  node.block_on([](grove::process& self) -> awaitable<void> {
    // normal: the linked partner survives.
    grove::pid a = grove::spawn(self.node(), waiter);
    grove::pid partner_a = grove::spawn(self.node(), [a](grove::process& me) -> awaitable<grove::exit_reason> {
      me.link(a);
      return waiter(me);
    });
    // abnormal: the linked partner dies with the same reason.
    grove::pid b = grove::spawn(self.node(), waiter);
    grove::pid partner_b = grove::spawn(self.node(), [b](grove::process& me) -> awaitable<grove::exit_reason> {
      me.link(b);
      return waiter(me);
    });
    // Links are set up by the partners' first step; ping proves they ran.
    grove::send(partner_a, ping{self.self(), 1});
    grove::send(partner_b, ping{self.self(), 2});
    co_await next(self);
    co_await next(self);

    auto mon_a = self.monitor(partner_a);
    auto mon_b = self.monitor(partner_b);
    grove::send(a, grove::exit_reason::normal());
    grove::send(b, grove::exit_reason::error("crash"));
    grove::message m = co_await next(self);
    REQUIRE(m.is<grove::down_message>());
    CHECK(m.get<grove::down_message>().ref == mon_b);
    CHECK(m.get<grove::down_message>().reason == grove::exit_reason::error("crash"));
    CHECK(grove::alive(partner_a));
    grove::send(partner_a, grove::exit_reason::normal());
    CHECK((co_await next(self)).get<grove::down_message>().ref == mon_a);
  });
}

TEST_CASE("links_work_both_ways_and_unlink_stops_propagation") {
  grove::node node{{.threads = 2}};
  node.block_on([](grove::process& self) -> awaitable<void> {
    self.trap_exit(true);
    grove::pid child = grove::spawn(self.node(), waiter);
    self.link(child);
    // The child dies abnormally: we (trapping) get an exit_message.
    grove::send(child, grove::exit_reason::error("child failed"));
    grove::message m = co_await next(self);
    REQUIRE(m.is<grove::exit_message>());
    CHECK(m.get<grove::exit_message>().from == child);
    CHECK(m.get<grove::exit_message>().reason == grove::exit_reason::error("child failed"));

    // Other direction: the child links to us with spawn_options::link and we
    // send it a kill via our own death... instead: unlink stops propagation.
    grove::pid c2 = grove::spawn(self.node(), waiter);
    self.link(c2);
    self.unlink(c2);
    auto mon = self.monitor(c2);
    grove::send(c2, grove::exit_reason::error("ignored"));
    grove::message d = co_await next(self);
    CHECK(d.is<grove::down_message>());
    CHECK(d.get<grove::down_message>().ref == mon);
    CHECK_FALSE((co_await self.receive_for(30ms)).has_value());
  });
}

TEST_CASE("a_parent_dying_takes_its_linked_children_with_it") {
  grove::node node{{.threads = 2}};
  node.block_on([](grove::process& self) -> awaitable<void> {
    struct child_is {
      grove::pid pid;
    };
    grove::pid watcher = self.self();
    grove::pid parent = grove::spawn(self.node(), [watcher](grove::process& me) -> awaitable<void> {
      grove::spawn_options linked;
      linked.link = true;
      grove::pid child = grove::spawn(me.node(), waiter, linked);
      grove::send(watcher, child_is{child});
      co_await me.receive();
      throw std::runtime_error("parent crashed");
    });
    grove::pid child = (co_await next(self)).get<child_is>().pid;
    auto mon = self.monitor(child);
    grove::send(parent, 0);
    grove::message m = co_await next(self);
    CHECK(m.get<grove::down_message>().ref == mon);
    CHECK(m.get<grove::down_message>().reason == grove::exit_reason::error("parent crashed"));
  });
}

TEST_CASE("linking_to_a_dead_process_delivers_noproc") {
  grove::node node{{.threads = 2}};
  node.block_on([](grove::process& self) -> awaitable<void> {
    self.trap_exit(true);
    grove::pid gone = grove::spawn(self.node(), waiter);
    auto mon = self.monitor(gone);
    grove::send(gone, grove::exit_reason::normal());
    CHECK((co_await next(self)).get<grove::down_message>().ref == mon);
    self.link(gone);
    grove::message m = co_await next(self);
    REQUIRE(m.is<grove::exit_message>());
    CHECK(m.get<grove::exit_message>().reason == grove::exit_reason::noproc());
  });
}

TEST_CASE("trap_exit_turns_exit_signals_into_messages_but_kill_is_untrappable") {
  grove::node node{{.threads = 2}};
  node.block_on([](grove::process& self) -> awaitable<void> {
    grove::pid watcher = self.self();
    grove::spawn_options trapping;
    trapping.trap_exit = true;
    grove::pid t = grove::spawn(
        self.node(),
        [watcher](grove::process& me) -> awaitable<void> {
          for (;;) {
            grove::message m = co_await me.receive();
            if (auto* e = m.get_if<grove::exit_message>()) grove::send(watcher, *e);
          }
        },
        trapping);
    auto mon = self.monitor(t);
    grove::exit(t, grove::exit_reason::shutdown());
    grove::exit(t, grove::exit_reason::error("x"));
    grove::message m1 = co_await next(self);
    CHECK(m1.get<grove::exit_message>().reason == grove::exit_reason::shutdown());
    CHECK(m1.get<grove::exit_message>().from == self.self());
    CHECK((co_await next(self)).get<grove::exit_message>().reason == grove::exit_reason::error("x"));
    CHECK(grove::alive(t));
    grove::exit(t, grove::exit_reason::kill());
    grove::message d = co_await next(self);
    CHECK(d.get<grove::down_message>().ref == mon);
    CHECK(d.get<grove::down_message>().reason == grove::exit_reason::killed());
    CHECK_FALSE(grove::alive(t));
  });
}

TEST_CASE("exit_ends_a_non_trapping_process_blocked_in_io_and_normal_is_ignored") {
  grove::node node{{.threads = 2}};
  node.block_on([](grove::process& self) -> awaitable<void> {
    grove::pid sleeper = grove::spawn(self.node(), sleeps_forever);
    auto mon = self.monitor(sleeper);
    grove::exit(sleeper, grove::exit_reason::normal());
    grove::exit(sleeper, grove::exit_reason::shutdown("stop"));
    grove::message d = co_await next(self);
    CHECK(d.get<grove::down_message>().ref == mon);
    CHECK(d.get<grove::down_message>().reason == grove::exit_reason::shutdown("stop"));
  });
}

TEST_CASE("a_stale_pid_never_reaches_a_newer_process") {
  grove::node node{{.threads = 1}};
  node.block_on([](grove::process& self) -> awaitable<void> {
    grove::pid old = grove::spawn(self.node(), waiter);
    auto mon = self.monitor(old);
    grove::send(old, grove::exit_reason::normal());
    co_await next(self);
    (void)mon;
    // The freed table slot is reused by the next process; the old pid must
    // still be dead and its messages must not arrive at the new one.
    grove::pid fresh = grove::spawn(self.node(), waiter);
    CHECK(fresh.slot() == old.slot());
    CHECK(fresh != old);
    CHECK_FALSE(grove::alive(old));
    CHECK(grove::alive(fresh));
    grove::send(old, ping{self.self(), 1});
    grove::send(fresh, ping{self.self(), 2});
    grove::message m = co_await next(self);
    CHECK(m.get<pong>().n == 2);
    CHECK_FALSE((co_await self.receive_for(30ms)).has_value());
    grove::send(fresh, grove::exit_reason::normal());
  });
}

TEST_CASE("send_after_delivers_and_a_cancelled_timer_never_fires") {
  grove::node node{{.threads = 2}};
  node.block_on([](grove::process& self) -> awaitable<void> {
    auto cancelled = grove::send_after(self.self(), 20ms, std::string("cancelled"));
    auto kept = grove::send_after(self.self(), 40ms, std::string("kept"));
    CHECK(grove::cancel_timer(cancelled));
    CHECK_FALSE(grove::cancel_timer(cancelled)); // once only
    grove::message m = co_await next(self);
    CHECK(m.get<std::string>() == "kept");
    CHECK_FALSE(grove::cancel_timer(kept)); // already handled
    CHECK_FALSE((co_await self.receive_for(60ms)).has_value());
  });
}

TEST_CASE("cancelling_a_fired_timer_from_its_target_worker_removes_the_queued_message") {
  grove::node node{{.threads = 1}};
  node.block_on([](grove::process& self) -> awaitable<void> {
    // A target that never reads its mailbox, on our worker.
    grove::pid sink = grove::spawn(self.node(), sleeps_forever);
    auto late = grove::send_after(sink, 1ms, std::string("late"));
    // Timers of one worker fire in deadline order: when "proof" reaches us,
    // "late" already sits in the sink's mailbox.
    grove::send_after(self.self(), 20ms, std::string("proof"));
    CHECK((co_await next(self)).get<std::string>() == "proof");
    CHECK(grove::mailbox_size(sink) == 1);
    CHECK(grove::cancel_timer(late));
    CHECK(grove::mailbox_size(sink) == 0);
    grove::exit(sink, grove::exit_reason::kill());
  });
}

TEST_CASE("ten_thousand_processes_start_and_stop_with_nothing_left") {
  grove::node node{{.threads = 2}};
  node.block_on([](grove::process& self) -> awaitable<void> {
    constexpr int count = 10000;
    std::vector<grove::pid> pids;
    pids.reserve(count);
    for (int i = 0; i < count; ++i) pids.push_back(grove::spawn(self.node(), waiter));
    CHECK(self.node().process_count() == count + 1);
    for (auto& p : pids) self.monitor(p);
    for (auto& p : pids) grove::send(p, grove::exit_reason::normal());
    for (int i = 0; i < count; ++i) REQUIRE((co_await next(self)).is<grove::down_message>());
    for (auto& p : pids) REQUIRE_FALSE(grove::alive(p));
    CHECK(self.node().process_count() == 1);
  });
  node.shutdown();
  CHECK(node.process_count() == 0);
}

TEST_CASE("spawn_on_a_given_worker_and_bad_worker_index_is_a_clear_error") {
  grove::node node{{.threads = 2}};
  grove::spawn_options on1;
  on1.worker = 1;
  grove::pid p = grove::spawn(node, waiter, on1);
  CHECK(p.worker() == 1);
  grove::spawn_options bad;
  bad.worker = 7;
  try {
    grove::spawn(node, waiter, bad);
    FAIL("spawn on worker 7 of 2 must throw");
  } catch (const grove::error& e) {
    CHECK(e.code() == grove::errc::invalid_argument);
    CHECK(std::string(e.what()).find("spawn_options::worker is 7") != std::string::npos);
  }
  grove::spawn_options link_outside;
  link_outside.link = true;
  CHECK_THROWS_AS(grove::spawn(node, waiter, link_outside), grove::error);
}

TEST_CASE("self_is_the_running_process_and_null_outside") {
  grove::node node{{.threads = 1}};
  CHECK_FALSE(grove::self());
  node.block_on([](grove::process& me) -> awaitable<void> {
    CHECK(grove::self() == me.self());
    // Still true after a suspension.
    boost::asio::steady_timer t(co_await boost::asio::this_coro::executor, 1ms);
    co_await t.async_wait(boost::asio::use_awaitable);
    CHECK(grove::self() == me.self());
  });
}

TEST_CASE("drop_oldest_mailbox_keeps_the_newest_messages") {
  // One worker: all four sends land before the receiver runs again.
  grove::node node{{.threads = 1}};
  node.block_on([](grove::process& self) -> awaitable<void> {
    grove::spawn_options o;
    o.mailbox = {.capacity = 3, .overflow = grove::overflow_policy::drop_oldest};
    grove::pid me = self.self();
    grove::pid p = grove::spawn(
        self.node(),
        [me](grove::process& proc) -> awaitable<void> {
          std::vector<int> seen;
          for (;;) {
            seen.push_back((co_await proc.receive()).get<int>());
            if (seen.back() == 4) break;
          }
          grove::send(me, seen);
        },
        o);
    for (int i = 1; i <= 4; ++i) grove::send(p, i);
    auto seen = (co_await next(self)).get<std::vector<int>>();
    CHECK(seen == std::vector<int>{2, 3, 4});
  });
}

TEST_CASE("a_process_that_kills_itself_ends_with_killed_at_its_next_suspension") {
  grove::node node{{.threads = 1}};
  node.block_on([](grove::process& self) -> awaitable<void> {
    grove::pid p = grove::spawn(self.node(), [](grove::process& me) -> awaitable<void> {
      co_await me.receive();
      grove::exit(me.self(), grove::exit_reason::kill());
      CHECK_FALSE(grove::alive(me.self())); // gone at once for everyone else
      // Its next wait is cancelled: this timer never completes normally.
      boost::asio::steady_timer t(co_await boost::asio::this_coro::executor, 24h);
      co_await t.async_wait(boost::asio::use_awaitable);
      FAIL("a killed process must not run past its next suspension");
    });
    auto mon = self.monitor(p);
    grove::send(p, 0);
    grove::message d = co_await next(self);
    CHECK(d.get<grove::down_message>().ref == mon);
    CHECK(d.get<grove::down_message>().reason == grove::exit_reason::killed());
  });
  node.shutdown();
  CHECK(node.process_count() == 0);
}

TEST_CASE("a_chain_of_a_million_processes_each_spawning_its_successor_does_not_recurse") {
  grove::node node{{.threads = 1}};
  node.block_on([](grove::process& self) -> awaitable<void> {
    struct chain {
      static awaitable<void> link(grove::process& me, grove::pid report_to, int left) {
        if (left == 0) {
          grove::send(report_to, std::string("end of chain"));
        } else {
          grove::spawn(me.node(), [report_to, left](grove::process& next) { return link(next, report_to, left - 1); });
        }
        co_return;
      }
    };
    grove::pid me = self.self();
    grove::spawn(self.node(), [me](grove::process& first) { return chain::link(first, me, 1000000); });
    // (A bound, not a timing check: under a sanitizer, beside the other suites, it can take over a minute.)
    std::optional<grove::message> end = co_await self.receive_for(300s);
    CHECK(end.has_value());
    if (end) CHECK(end->get<std::string>() == "end of chain");
  });
}

TEST_CASE("an_exit_cascading_down_a_long_chain_of_links_does_not_recurse") {
  grove::node node{{.threads = 1}};
  node.block_on([](grove::process& self) -> awaitable<void> {
    struct chain {
      // Each member spawns the next linked to it; the last reports its pid.
      static awaitable<void> member(grove::process& me, grove::pid report_to, int left) {
        if (left == 0) {
          grove::send(report_to, me.self());
        } else {
          grove::spawn(
              me.node(), [report_to, left](grove::process& next) { return member(next, report_to, left - 1); },
              {.link = true});
        }
        co_await me.receive();
      }
    };
    grove::pid me = self.self();
    grove::pid head = grove::spawn(self.node(), [me](grove::process& p) { return chain::member(p, me, 50000); });
    grove::pid tail = (co_await self.receive_for(60s))->get<grove::pid>();
    auto mon = self.monitor(tail);
    grove::exit(head, grove::exit_reason::error("cut"));
    grove::message d = (co_await self.receive_for(60s)).value();
    CHECK(d.get<grove::down_message>().ref == mon);
    CHECK(d.get<grove::down_message>().reason == grove::exit_reason::error("cut"));
    CHECK(self.node().process_count() == 1);
  });
}

// -- placement: where a process started by another runs ---------------------

namespace {
/// Starts `count` processes from inside a process on worker 0 and returns
/// their workers; the started ones wait for a message, then end.
std::vector<std::size_t> workers_of_children(grove::node& node, std::optional<grove::placement> placement, int count,
                                             std::optional<std::size_t> requested = std::nullopt) {
  grove::spawn_options on0;
  on0.worker = 0;
  struct result {
    std::size_t starter = 99;
    std::vector<std::size_t> children;
  };
  auto out = std::make_shared<result>();
  grove::pid starter = grove::spawn(
      node,
      [placement, count, requested, out](grove::process& self) -> awaitable<void> {
        out->starter = self.self().worker();
        if (placement) self.set_child_placement(*placement);
        std::vector<grove::pid> kids;
        grove::spawn_options o;
        o.worker = requested;
        for (int i = 0; i < count; ++i) kids.push_back(grove::spawn(self.node(), waiter, o));
        for (const grove::pid& k : kids) {
          out->children.push_back(k.worker());
          self.monitor(k);
          grove::send(k, grove::exit_reason::normal());
        }
        for (std::size_t i = 0; i < kids.size(); ++i) co_await self.receive(); // their downs: all gone
      },
      on0);
  // Waits for the starter to end.
  node.block_on([starter](grove::process& self) -> awaitable<void> {
    self.monitor(starter);
    co_await self.receive();
  });
  if (out->starter != 0) return {};
  return out->children;
}
} // namespace

TEST_CASE("a_process_started_by_another_runs_on_its_starters_worker_by_default") {
  grove::node node{{.threads = 2}};
  CHECK(workers_of_children(node, std::nullopt, 6) == std::vector<std::size_t>(6, 0));
  // Explicit with_starter is the same; a requested worker still wins.
  CHECK(workers_of_children(node, grove::placement::with_starter, 3) == std::vector<std::size_t>(3, 0));
  CHECK(workers_of_children(node, std::nullopt, 3, 1) == std::vector<std::size_t>(3, 1));
}

TEST_CASE("a_starter_that_asks_for_round_robin_spreads_its_children_over_the_workers") {
  grove::node node{{.threads = 2}};
  const auto workers = workers_of_children(node, grove::placement::round_robin, 6);
  REQUIRE(workers.size() == 6);
  CHECK(std::count(workers.begin(), workers.end(), 0) == 3);
  CHECK(std::count(workers.begin(), workers.end(), 1) == 3);
}

TEST_CASE("a_node_can_make_round_robin_every_starters_default") {
  grove::node node{{.child_placement = grove::placement::round_robin, .threads = 2}};
  const auto workers = workers_of_children(node, std::nullopt, 4);
  REQUIRE(workers.size() == 4);
  CHECK(std::count(workers.begin(), workers.end(), 1) == 2);
  // Still overridable per starter.
  CHECK(workers_of_children(node, grove::placement::with_starter, 2) == std::vector<std::size_t>(2, 0));
}

namespace {
struct watcher_report {
  int index;
  bool exit; // an exit_message (linked watchers), else a down message (the others)
};
} // namespace

TEST_CASE("a process with more links and monitors than the small list holds keeps exactly the ones still there") {
  // 40 watchers link to one process and half unlink again; the test
  // monitors it 40 times and removes half: past relation_map's spill (16)
  // on the target's side and the test's.
  constexpr int count = 40;
  grove::node node{{.threads = 1}};
  std::vector<watcher_report> reports;
  std::vector<grove::monitor_ref> kept, downs;
  std::size_t target_links = 0, test_monitors = 0;
  node.block_on([&](grove::process& self) -> awaitable<void> {
    grove::pid target = grove::spawn(self.node(), waiter);
    for (int i = 0; i < count; ++i) {
      grove::spawn(self.node(), [i, target, test = self.self()](grove::process& me) -> awaitable<void> {
        me.trap_exit(true);
        me.link(target);
        const bool linked = i % 2 == 1;
        if (!linked) me.unlink(target);
        me.monitor(target);
        grove::send(test, ping{me.self(), i});
        for (;;) {
          grove::message m = co_await me.receive();
          if (linked ? m.is<grove::exit_message>() : m.is<grove::down_message>()) {
            grove::send(test, watcher_report{i, linked});
            co_return;
          }
        }
      });
    }
    for (int i = 0; i < count; ++i) (void)co_await self.receive();
    std::vector<grove::monitor_ref> removed;
    for (int i = 0; i < count; ++i) (i % 2 == 0 ? removed : kept).push_back(self.monitor(target));
    for (const grove::monitor_ref& r : removed) self.demonitor(r);
    for (const grove::process_info& info : co_await self.node().processes()) {
      if (info.id == target) target_links = info.links;
      if (info.id == self.self()) test_monitors = info.monitors;
    }
    grove::send(target, grove::exit_reason::error("gone"));
    while (reports.size() < count || downs.size() < kept.size()) {
      grove::message m = co_await self.receive();
      if (auto* r = m.get_if<watcher_report>()) reports.push_back(*r);
      if (auto* d = m.get_if<grove::down_message>()) downs.push_back(d->ref);
    }
  });
  CHECK(target_links == count / 2);
  CHECK(test_monitors == count / 2);
  REQUIRE(reports.size() == count);
  for (const watcher_report& r : reports) {
    CAPTURE(r.index);
    CHECK(r.exit == (r.index % 2 == 1));
  }
  auto sorted = [](std::vector<grove::monitor_ref> v) {
    std::sort(v.begin(), v.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
    return v;
  };
  CHECK(sorted(downs) == sorted(kept)); // one down per monitor kept, none for the removed
}
