// Stopping a server from outside (grove::stop), starting one watched
// (start_monitor / spawn_monitor), and block_on's accepted forms.
#include <grove/core/gen_server.hpp>
#include <grove/core/node.hpp>
#include <grove/core/testing.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <memory>
#include <string>

using grove::awaitable;

namespace {

struct note {
  std::string text;
};
struct get_count {
  using reply_type = int;
};

/// Reports what terminate saw to `log` (a plain process), after the casts.
struct recorder : grove::gen_server {
  recorder(grove::pid log, bool trap) : log_(log), trap_(trap) {}
  void init() { this_process().trap_exit(trap_); }
  void handle_cast(note n) { grove::send(log_, n.text); }
  int handle_call(get_count) { return 1; }
  void terminate(const grove::exit_reason& r) { grove::send(log_, "terminate:" + r.to_string()); }
  grove::pid log_;
  bool trap_;
};

/// Its terminate waits for a message (a shutdown that takes as long as the
/// test wants).
struct slow_stopper : grove::gen_server {
  awaitable<void> terminate(grove::exit_reason) { co_await this_process().receive(); }
};

/// Stops itself right after init.
struct short_lived : grove::gen_server {
  grove::action init() { return grove::continue_with(0); }
  grove::action handle_continue(grove::message) { return grove::stop(grove::exit_reason::error("done at once")); }
};

struct refuses_to_start : grove::gen_server {
  grove::action init() { return grove::stop(grove::exit_reason::error("no")); }
};

awaitable<std::string> next_text(grove::process& self) {
  auto m = co_await self.receive_for(std::chrono::seconds(20));
  if (!m) co_return "(nothing)";
  if (auto* s = m->get_if<std::string>()) co_return *s;
  co_return "(other)";
}

} // namespace

TEST_CASE("stop_runs_terminate_after_earlier_messages_trapping_or_not_and_waits_for_the_end") {
  grove::node node{{.threads = 2}};
  for (bool trap : {false, true}) {
    CAPTURE(trap);
    node.block_on([trap](grove::process& self) -> awaitable<void> {
      auto ref = co_await grove::start<recorder>(self.node(), self.self(), trap);
      ref.cast(note{"first"});
      grove::exit_reason r = co_await grove::stop(ref, grove::exit_reason::normal(), std::chrono::seconds(20));
      CHECK(r == grove::exit_reason::normal());
      CHECK_FALSE(grove::alive(ref.id()));
      CHECK(co_await next_text(self) == "first");
      CHECK(co_await next_text(self) == "terminate:normal");
    });
  }
}

TEST_CASE("stop_of_a_process_that_is_gone_is_noproc_and_a_slow_one_times_out_and_keeps_running") {
  grove::node node{{.threads = 2}};
  auto reason = node.block_on([](grove::process& self) -> awaitable<std::string> {
    auto gone = co_await grove::start<recorder>(self.node(), grove::pid{}, false);
    co_await grove::stop(gone);
    CHECK(co_await grove::testing::error_of(grove::stop(gone)) == grove::errc::noproc);

    auto slow = co_await grove::start<slow_stopper>(self.node());
    const grove::monitor_ref mon = self.monitor(slow.id());
    auto r = co_await grove::testing::capture(grove::stop(slow, grove::exit_reason::shutdown(), std::chrono::milliseconds(1)));
    CHECK(r.error() == grove::errc::timeout);
    CHECK(grove::alive(slow.id())); // still in terminate
    // The stop was delivered: once terminate finishes it ends with the reason.
    grove::send(slow.id(), 1);
    auto m = co_await self.receive_for(std::chrono::seconds(20));
    auto* down = m ? m->get_if<grove::down_message>() : nullptr;
    co_return down && down->ref == mon ? down->reason.to_string() : "no down message";
  });
  CHECK(reason == "shutdown");
}

TEST_CASE("stop_of_a_plain_process_is_an_exit_signal_with_the_reason") {
  grove::node node{{.threads = 1}};
  grove::pid plain = grove::spawn(node, [](grove::process& self) -> awaitable<void> {
    for (;;) co_await self.receive();
  });
  auto reason = node.block_on(grove::stop(plain, grove::exit_reason::error("enough"), std::chrono::seconds(20)));
  CHECK(reason == grove::exit_reason::error("enough"));
  CHECK_FALSE(grove::alive(plain));
}

TEST_CASE("start_monitor_sees_a_server_that_dies_right_after_its_start_with_the_real_reason") {
  grove::node node{{.threads = 2}};
  auto seen = node.block_on([](grove::process& self) -> awaitable<std::string> {
    auto [ref, mon] = co_await grove::start_monitor<short_lived>(self.node());
    CHECK(mon.target == ref.id());
    auto m = co_await self.receive_for(std::chrono::seconds(20));
    if (!m) co_return "no down message";
    auto* down = m->get_if<grove::down_message>();
    if (!down || down->ref != mon) co_return "another message";
    co_return down->reason.to_string();
  });
  CHECK(seen == "{error, done at once}");
}

TEST_CASE("start_monitor_of_a_failed_start_throws_and_leaves_no_down_message") {
  grove::node node{{.threads = 1}};
  auto left = node.block_on([](grove::process& self) -> awaitable<std::size_t> {
    auto r = co_await grove::testing::capture(grove::start_monitor<refuses_to_start>(self.node()));
    CHECK(r.error() == grove::errc::start_failed);
    // A marker sent now arrives after anything the failed start could have queued.
    grove::send(self.self(), 1);
    auto m = co_await self.receive_for(std::chrono::seconds(20));
    CHECK((m && m->get_if<int>()));
    co_return self.mailbox_size();
  });
  CHECK(left == 0);
  CHECK_THROWS_AS(node.block_on(grove::start_monitor<refuses_to_start>(node)), grove::error); // outside a process
}

TEST_CASE("spawn_monitor_delivers_the_reason_of_a_process_that_ends_before_it_ever_ran_further") {
  grove::node node{{.threads = 2}};
  auto seen = node.block_on([](grove::process& self) -> awaitable<std::string> {
    auto [p, mon] = grove::spawn_monitor(self.node(), [](grove::process&) -> awaitable<grove::exit_reason> {
      co_return grove::exit_reason::shutdown("at once");
    });
    auto m = co_await self.receive_for(std::chrono::seconds(20));
    auto* down = m ? m->get_if<grove::down_message>() : nullptr;
    co_return down && down->ref == mon && down->process == p ? down->reason.to_string() : "no down message";
  });
  CHECK(seen == "{shutdown, at once}");
}

TEST_CASE("block_on_accepts_an_awaitable_a_coroutine_taking_the_node_and_a_process_body") {
  grove::node node{{.threads = 1}};
  auto shared = std::make_shared<int>(41);
  CHECK(node.block_on([shared](grove::node& n) -> awaitable<int> {
    auto ref = co_await grove::start<recorder>(n, grove::pid{}, false);
    co_return *shared + co_await ref.call(get_count{});
  }) == 42);
  CHECK(node.block_on([](grove::process& self) -> awaitable<bool> { co_return static_cast<bool>(self.self()); }));
}
