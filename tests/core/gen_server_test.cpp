#include <grove/core/gen_server.hpp>
#include <grove/core/testing.hpp>

#include <grove/core/node.hpp>

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using namespace boost::asio::experimental::awaitable_operators;
using grove::awaitable;

namespace {

struct get {
  using reply_type = int;
};
struct add {
  int n;
};
struct add_and_get {
  using reply_type = int;
  int n;
};
struct boom {
  using reply_type = int;
};
struct cast_boom {};
struct stop_with_reply {
  using reply_type = std::string;
};
struct stop_without_reply {
  using reply_type = int;
};
struct park {
  using reply_type = int;
};
struct forget { // answered noreply, and its from dropped
  using reply_type = int;
};
struct hand_to_doomed { // its from given to a process that ends without answering
  using reply_type = int;
};
struct release {
  int value;
};
struct release_from_thread {
  int value;
};
struct refuse_parked {};
struct slow {
  using reply_type = int;
  grove::duration delay;
};
struct whoami {
  using reply_type = grove::pid;
};
struct call_self {
  using reply_type = int;
};
struct not_handled {
  using reply_type = int;
};
struct keep { // answered at once, its from kept afterwards
  using reply_type = int;
};
struct late { // answers the kept from again: 100 if that reached anyone, else 200
  using reply_type = int;
};

/// Records what happened to it, for tests to assert on after it ended.
struct journal {
  std::atomic<int> terminated{0};
  std::string terminate_reason;
  std::atomic<int> continued{0};
  std::atomic<int> timeouts{0};
};

class counter : public grove::gen_server {
public:
  explicit counter(journal* j = nullptr, int start = 0) : journal_(j), n_(start) {}

  int handle_call(get) { return n_; }
  int handle_call(add_and_get a) { return n_ += a.n; }
  int handle_call(boom) { throw std::runtime_error("boom in handle_call"); }
  grove::call_result<std::string> handle_call(stop_with_reply) {
    return {std::string("bye"), grove::stop(grove::exit_reason::shutdown("asked"))};
  }
  grove::call_result<int> handle_call(stop_without_reply) { return grove::stop(grove::exit_reason::shutdown("silent")); }
  grove::call_result<int> handle_call(park, grove::from<int> from) {
    parked_.push_back(from);
    return grove::noreply;
  }
  grove::call_result<int> handle_call(forget, grove::from<int>) { return grove::noreply; }
  grove::call_result<int> handle_call(hand_to_doomed, grove::from<int> from) {
    grove::spawn(this_process().node(), [from](grove::process&) -> awaitable<void> {
      (void)from; // held, never answered
      throw std::runtime_error("the helper fails before it answers");
      co_return;
    });
    return grove::noreply;
  }
  awaitable<int> handle_call(slow s) {
    boost::asio::steady_timer t(co_await boost::asio::this_coro::executor, s.delay);
    co_await t.async_wait(boost::asio::use_awaitable);
    co_return n_;
  }
  grove::pid handle_call(whoami) { return self(); }
  grove::call_result<int> handle_call(keep, grove::from<int> from) {
    kept_ = from;
    kept_.reply(1);
    return grove::noreply;
  }
  int handle_call(late) { return kept_.reply(2) ? 100 : 200; }
  awaitable<int> handle_call(call_self) {
    co_return co_await grove::server_ref<counter>(self()).call(get{});
  }

  void handle_cast(add a) { n_ += a.n; }
  void handle_cast(cast_boom) { throw std::runtime_error("boom in handle_cast"); }
  void handle_cast(release r) {
    for (auto& f : parked_) f.reply(r.value);
    parked_.clear();
  }
  void handle_cast(refuse_parked) {
    for (auto& f : parked_) f.fail(grove::errc::invalid_argument);
    parked_.clear();
  }
  void handle_cast(release_from_thread r) {
    // A deferred reply from another thread entirely.
    std::thread([parked = parked_, v = r.value] {
      for (auto& f : parked) f.reply(v);
    }).detach();
    parked_.clear();
  }

  void terminate(const grove::exit_reason& reason) {
    if (journal_) {
      journal_->terminate_reason = reason.to_string();
      journal_->terminated++;
    }
  }

private:
  journal* journal_;
  int n_;
  std::vector<grove::from<int>> parked_;
  grove::from<int> kept_;
};

// Asio awaitables start when awaited; these let `a && b` send in order.
template <class Req>
awaitable<void> cast_now(grove::server_ref<counter> ref, Req request) {
  ref.cast(std::move(request));
  co_return;
}

awaitable<void> exit_now(grove::pid p, grove::exit_reason reason) {
  grove::exit(p, std::move(reason));
  co_return;
}

} // namespace

TEST_CASE("call_returns_the_typed_reply_and_cast_updates_state") {
  grove::node node{{.threads = 2}};
  int n = node.block_on([](grove::node& nd) -> awaitable<int> {
    auto ref = co_await grove::start<counter>(nd, nullptr, 40);
    ref.cast(add{1});
    int after_call = co_await ref.call(add_and_get{1});
    CHECK(after_call == 42);
    co_return co_await ref.call(get{});
  }(node));
  CHECK(n == 42);
  static_assert(std::is_same_v<decltype(std::declval<grove::server_ref<counter>&>().call(get{})), awaitable<int>>);
}

template <class Ref, class Req>
concept can_call = requires(Ref r, Req q) { r.call(q); };
template <class Ref, class Req>
concept can_cast = requires(Ref r, Req q) { r.cast(q); };

TEST_CASE("a_request_the_server_does_not_handle_does_not_compile") {
  static_assert(grove::handles_call<counter, get>);
  static_assert(!grove::handles_call<counter, not_handled>);
  static_assert(!grove::handles_cast<counter, get>);
  static_assert(!can_call<grove::server_ref<counter>, not_handled>);
  static_assert(can_call<grove::server_ref<counter>, get>);
  static_assert(!can_cast<grove::server_ref<counter>, get>);
  static_assert(can_cast<grove::server_ref<counter>, add>);
}

TEST_CASE("a_call_from_a_process_times_out_and_not_before_its_timeout") {
  // From a process, on a worker: its calls wait in the worker's deadline
  // list (the other tests here call from block_on's own executor, which
  // takes an io timer per call instead).
  grove::node node{{.threads = 1}};
  node.block_on([](grove::process& self) -> awaitable<void> {
    auto ref = co_await grove::start<counter>(self.node(), nullptr, 7);
    for (int i = 0; i < 5; ++i) {
      const auto started = std::chrono::steady_clock::now();
      bool timed_out = false;
      try {
        co_await ref.call(park{}, 3ms);
      } catch (const grove::error& e) {
        timed_out = e.code() == grove::errc::timeout;
      }
      const auto waited = std::chrono::steady_clock::now() - started;
      CHECK(timed_out);
      CHECK(waited >= 3ms);
      ref.cast(release{0});
      const int value = co_await ref.call(get{});
      CHECK(value == 7);
    }
  });
}

TEST_CASE("call_times_out_and_the_late_reply_never_reaches_a_later_call") {
  grove::node node{{.threads = 2}};
  node.block_on([](grove::node& nd) -> awaitable<void> {
    auto ref = co_await grove::start<counter>(nd, nullptr, 7);
    bool timed_out = false;
    try {
      co_await ref.call(park{}, 50ms);
    } catch (const grove::error& e) {
      timed_out = e.code() == grove::errc::timeout;
    }
    CHECK(timed_out);
    // The parked call is answered now, after its caller gave up: dropped.
    ref.cast(release{999});
    // The next call gets its own reply, never the stale 999.
    CHECK(co_await ref.call(get{}) == 7);
    CHECK(co_await ref.call(add_and_get{1}) == 8);
  }(node));
}

TEST_CASE("a_from_kept_after_its_call_was_answered_reaches_no_later_call") {
  // A caller reuses its last call's reply slot when nothing else holds it;
  // the kept from holds that one.
  grove::node node{{.threads = 1}};
  node.block_on([](grove::node& nd) -> awaitable<void> {
    auto ref = co_await grove::start<counter>(nd, nullptr, 5);
    int got = co_await ref.call(get{});
    CHECK(got == 5);
    int kept = co_await ref.call(keep{});
    CHECK(kept == 1);
    for (int i = 0; i < 3; ++i) {
      int again = co_await ref.call(late{});
      CHECK(again == 200);
      int value = co_await ref.call(get{});
      CHECK(value == 5);
    }
  }(node));
}

TEST_CASE("call_to_a_dead_process_fails_with_noproc") {
  grove::node node{{.threads = 2}};
  node.block_on([](grove::process& self) -> awaitable<void> {
    auto ref = co_await grove::start<counter>(self.node());
    auto mon = self.monitor(ref.id());
    grove::exit(ref.id(), grove::exit_reason::kill());
    grove::message m = co_await self.receive();
    REQUIRE(m.is<grove::down_message>());
    CHECK(m.get<grove::down_message>().ref == mon);
    bool noproc = false;
    try {
      co_await ref.call(get{}, 5s);
    } catch (const grove::error& e) {
      noproc = e.code() == grove::errc::noproc;
    }
    CHECK(noproc);
  });
}

TEST_CASE("target_dying_during_a_call_fails_the_call_with_its_exit_reason") {
  grove::node node{{.threads = 2}};
  node.block_on([](grove::node& nd) -> awaitable<void> {
    auto ref = co_await grove::start<counter>(nd);
    grove::server_ref<counter> target = ref;
    // Park a call (infinite timeout), then end the server with a reason.
    bool exited = false;
    try {
      co_await (target.call(park{}, grove::infinity) &&
                exit_now(target.id(), grove::exit_reason::shutdown("maintenance")));
    } catch (const grove::error& e) {
      exited = e.code() == grove::errc::exited && e.reason() &&
               *e.reason() == grove::exit_reason::shutdown("maintenance");
    }
    CHECK(exited);
  }(node));
}

TEST_CASE("call_to_oneself_is_an_error_not_a_deadlock") {
  grove::node node{{.threads = 1}};
  node.block_on([](grove::node& nd) -> awaitable<void> {
    journal j;
    auto ref = co_await grove::start<counter>(nd, &j);
    bool exited = false;
    try {
      co_await ref.call(call_self{}, 2s);
    } catch (const grove::error& e) {
      // The server's handler threw calling_self, so it ended with that error.
      exited = e.code() == grove::errc::exited && e.reason() &&
               e.reason()->detail().find("called itself") != std::string::npos;
    }
    CHECK(exited);
    CHECK(j.terminated == 1);
  }(node));
}

TEST_CASE("handle_call_exception_ends_the_server_after_terminate_and_the_node_keeps_running") {
  grove::node node{{.threads = 2}};
  journal j;
  node.block_on([](grove::node& nd, journal* jp) -> awaitable<void> {
    auto bad = co_await grove::start<counter>(nd, jp);
    auto good = co_await grove::start<counter>(nd, nullptr, 5);
    bool exited = false;
    try {
      co_await bad.call(boom{});
    } catch (const grove::error& e) {
      exited = e.code() == grove::errc::exited && e.reason() &&
               *e.reason() == grove::exit_reason::error("boom in handle_call");
    }
    CHECK(exited);
    CHECK(jp->terminated == 1);
    CHECK(jp->terminate_reason == "{error, boom in handle_call}");
    CHECK(!grove::alive(bad.id()));
    CHECK(co_await good.call(get{}) == 5);
  }(node, &j));
}

TEST_CASE("handle_cast_exception_ends_the_server_with_an_error_reason") {
  grove::node node{{.threads = 2}};
  node.block_on([](grove::process& self) -> awaitable<void> {
    journal j;
    auto ref = co_await grove::start<counter>(self.node(), &j);
    auto mon = self.monitor(ref.id());
    ref.cast(cast_boom{});
    grove::message m = co_await self.receive();
    REQUIRE(m.is<grove::down_message>());
    CHECK(m.get<grove::down_message>().ref == mon);
    CHECK(m.get<grove::down_message>().reason == grove::exit_reason::error("boom in handle_cast"));
    CHECK(j.terminated == 1);
  });
}

TEST_CASE("stop_with_a_reply_replies_then_terminates") {
  grove::node node{{.threads = 2}};
  node.block_on([](grove::process& self) -> awaitable<void> {
    journal j;
    auto ref = co_await grove::start<counter>(self.node(), &j);
    auto mon = self.monitor(ref.id());
    CHECK(co_await ref.call(stop_with_reply{}) == "bye");
    grove::message m = co_await self.receive();
    REQUIRE(m.is<grove::down_message>());
    CHECK(m.get<grove::down_message>().ref == mon);
    CHECK(m.get<grove::down_message>().reason == grove::exit_reason::shutdown("asked"));
    CHECK(j.terminate_reason == "{shutdown, asked}");
  });
}

TEST_CASE("stop_without_a_reply_fails_the_caller_with_the_exit_reason") {
  grove::node node{{.threads = 2}};
  node.block_on([](grove::node& nd) -> awaitable<void> {
    journal j;
    auto ref = co_await grove::start<counter>(nd, &j);
    bool exited = false;
    try {
      co_await ref.call(stop_without_reply{});
    } catch (const grove::error& e) {
      exited = e.code() == grove::errc::exited && *e.reason() == grove::exit_reason::shutdown("silent");
    }
    CHECK(exited);
    CHECK(j.terminated == 1);
  }(node));
}

TEST_CASE("a_call_whose_from_is_dropped_unanswered_fails_at_once_not_at_its_timeout") {
  grove::node node{{.threads = 2, .events = nullptr}};
  node.block_on([](grove::node& nd) -> awaitable<void> {
    auto ref = co_await grove::start<counter>(nd);
    // A timeout far longer than the test's bound: only the drop can end these calls.
    for (bool helper : {false, true}) {
      CAPTURE(helper);
      std::string why;
      try {
        if (helper) {
          (void)co_await ref.call(hand_to_doomed{}, std::chrono::hours(1));
        } else {
          (void)co_await ref.call(forget{}, std::chrono::hours(1));
        }
      } catch (const grove::error& e) {
        CHECK(e.code() == grove::errc::exited);
        why = e.what();
      }
      CHECK(why.find("no reply") != std::string::npos);
    }
    CHECK(co_await ref.call(get{}) == 0); // the server carries on
  }(node));
}

TEST_CASE("a_parked_call_of_a_server_that_is_stopped_fails_with_the_servers_exit_reason") {
  grove::node node{{.threads = 2, .events = nullptr}};
  node.block_on([](grove::node& nd) -> awaitable<void> {
    auto ref = co_await grove::start<counter>(nd);
    auto parked_then_stopped = [](grove::server_ref<counter> r) -> awaitable<std::string> {
      try {
        (void)co_await (r.call(park{}, std::chrono::hours(1)) && exit_now(r.id(), grove::exit_reason::shutdown("asked")));
      } catch (const grove::error& e) {
        co_return e.reason() ? e.reason()->to_string() : std::string("no reason");
      }
      co_return "answered";
    };
    CHECK(co_await parked_then_stopped(ref) == grove::exit_reason::shutdown("asked").to_string());
  }(node));
}

TEST_CASE("deferred_reply_from_another_process_and_from_another_thread") {
  grove::node node{{.threads = 2}};
  node.block_on([](grove::node& nd) -> awaitable<void> {
    auto ref = co_await grove::start<counter>(nd);
    // The server is free while the call is parked: a cast releases it.
    CHECK(co_await (ref.call(park{}) && cast_now(ref, release{11})) == 11);
    CHECK(co_await (ref.call(park{}) && cast_now(ref, release_from_thread{12})) == 12);
  }(node));
}

TEST_CASE("a_deferred_answer_can_be_an_error_the_caller_sees_as_grove_error") {
  grove::node node{{.threads = 1}};
  node.block_on([](grove::node& nd) -> awaitable<void> {
    auto ref = co_await grove::start<counter>(nd);
    auto refused = [](grove::server_ref<counter> r) -> awaitable<std::error_code> {
      co_return co_await grove::testing::error_of(r.call(park{}) && cast_now(r, refuse_parked{}));
    };
    CHECK(co_await refused(ref) == grove::errc::invalid_argument);
    CHECK(co_await ref.call(get{}) == 0); // the server carries on
  }(node));
}

TEST_CASE("calls_across_executors_and_a_handler_that_awaits_takes_no_other_message") {
  grove::node node{{.threads = 2}};
  node.block_on([](grove::node& nd) -> awaitable<void> {
    grove::start_options on0;
    on0.worker = 0;
    grove::start_options on1;
    on1.worker = 1;
    auto a = co_await grove::start<counter>(nd, on0, nullptr, 1);
    auto b = co_await grove::start<counter>(nd, on1, nullptr, 2);
    CHECK(a.id().worker() == 0);
    CHECK(b.id().worker() == 1);
    CHECK(co_await a.call(whoami{}) == a.id());
    CHECK(co_await b.call(get{}) == 2);
    // While slow{} awaits a timer inside the server, the cast waits behind it:
    // the slow reply still sees the old value.
    // The cast is sent after the call; exclusivity means slow sees n == 2.
    CHECK(co_await (b.call(slow{30ms}) && cast_now(b, add{100})) == 2);
    CHECK(co_await b.call(get{}) == 102);
  }(node));
}

namespace {

struct init_stops : grove::gen_server {
  grove::action init() { return grove::stop(grove::exit_reason::shutdown("no config")); }
};
struct init_throws : grove::gen_server {
  awaitable<grove::action> init() {
    throw std::runtime_error("cannot open file");
    co_return grove::action{};
  }
};
struct ctor_throws : grove::gen_server {
  ctor_throws() { throw std::runtime_error("bad argument"); }
};
struct init_hangs : grove::gen_server {
  awaitable<void> init() {
    boost::asio::steady_timer t(co_await boost::asio::this_coro::executor, 1h);
    co_await t.async_wait(boost::asio::use_awaitable);
  }
};

struct seen_steps {
  using reply_type = std::string;
};

struct continuing : grove::gen_server {
  grove::action init() { return grove::continue_with(std::string("warm-up")); }
  grove::action handle_continue(grove::message m) {
    steps_ += m.get<std::string>() + ";";
    if (m.get<std::string>() == "warm-up") return grove::continue_with(std::string("second"));
    return {};
  }
  std::string handle_call(seen_steps) { return steps_; }
  std::string steps_;
};

struct idle : grove::gen_server {
  explicit idle(journal* j) : j_(j) {}
  grove::action init() { return grove::action{}.with_idle_timeout(20ms); }
  grove::action handle_info(grove::message m) {
    if (m.is<grove::timeout_message>()) {
      // Two idle timeouts, then stop: shows it fires, and fires again.
      if (++j_->timeouts == 2) return grove::stop(grove::exit_reason::shutdown("idle"));
      return grove::action{}.with_idle_timeout(20ms);
    }
    return {};
  }
  journal* j_;
};

struct traps_and_terminates : grove::gen_server {
  explicit traps_and_terminates(journal* j) : j_(j) {}
  void terminate(const grove::exit_reason& r) {
    j_->terminate_reason = r.to_string();
    j_->terminated++;
  }
  journal* j_;
};

} // namespace

TEST_CASE("init_that_stops_or_throws_makes_start_fail_with_the_reason") {
  grove::node node{{.threads = 2}};
  node.block_on([](grove::node& nd) -> awaitable<void> {
    auto start_error = [](grove::node& n, int which) -> awaitable<std::string> {
      try {
        if (which == 0) co_await grove::start<init_stops>(n);
        if (which == 1) co_await grove::start<init_throws>(n);
        if (which == 2) co_await grove::start<ctor_throws>(n);
      } catch (const grove::error& e) {
        if (e.code() == grove::errc::start_failed && e.reason()) co_return e.reason()->to_string();
        co_return std::string("wrong error: ") + e.what();
      }
      co_return "started";
    };
    CHECK(co_await start_error(nd, 0) == "{shutdown, no config}");
    CHECK(co_await start_error(nd, 1) == "{error, cannot open file}");
    CHECK(co_await start_error(nd, 2) == "{error, bad argument}");
    CHECK(nd.process_count() == 0); // a failed start leaves nothing alive
  }(node));
}

TEST_CASE("init_slower_than_init_timeout_fails_start_and_kills_the_process") {
  grove::node node{{.threads = 2}};
  node.block_on([](grove::node& nd) -> awaitable<void> {
    grove::start_options o;
    o.init_timeout = 30ms;
    bool timed_out = false;
    try {
      co_await grove::start<init_hangs>(nd, o);
    } catch (const grove::error& e) {
      timed_out = e.code() == grove::errc::timeout;
    }
    CHECK(timed_out);
  }(node));
  // The killed process is gone once the node shut down cleanly.
  node.shutdown();
  CHECK(node.process_count() == 0);
}

TEST_CASE("continue_runs_before_the_first_message_and_can_chain") {
  grove::node node{{.threads = 1}};
  auto steps = node.block_on([](grove::node& nd) -> awaitable<std::string> {
    auto ref = co_await grove::start<continuing>(nd);
    co_return co_await ref.call(seen_steps{});
  }(node));
  CHECK(steps == "warm-up;second;");
}

TEST_CASE("idle_timeout_delivers_timeout_message_to_handle_info") {
  grove::node node{{.threads = 1}};
  journal j;
  node.block_on([jp = &j](grove::process& self) -> awaitable<void> {
    auto ref = co_await grove::start<idle>(self.node(), jp);
    auto mon = self.monitor(ref.id());
    grove::message m = co_await self.receive();
    REQUIRE(m.is<grove::down_message>());
    CHECK(m.get<grove::down_message>().ref == mon);
    CHECK(m.get<grove::down_message>().reason == grove::exit_reason::shutdown("idle"));
    CHECK(jp->timeouts == 2);
  });
}

TEST_CASE("trapping_server_runs_terminate_on_shutdown_from_its_parent") {
  grove::node node{{.threads = 2}};
  journal j;
  node.block_on([jp = &j](grove::process& self) -> awaitable<void> {
    grove::start_options o;
    o.link = true;
    o.trap_exit = true;
    auto ref = co_await grove::start<traps_and_terminates>(self.node(), o, jp);
    self.trap_exit(true); // so the child's exit reaches us as a message
    grove::exit(ref.id(), grove::exit_reason::shutdown());
    // exit() from us, its parent: it terminates with reason shutdown.
    grove::message m = co_await self.receive();
    REQUIRE(m.is<grove::exit_message>());
    CHECK(m.get<grove::exit_message>().from == ref.id());
    CHECK(m.get<grove::exit_message>().reason == grove::exit_reason::shutdown());
    CHECK(jp->terminated == 1);
    CHECK(jp->terminate_reason == "shutdown");
  });
}

TEST_CASE("node_shutdown_runs_terminate_of_trapping_servers") {
  journal j;
  {
    grove::node node{{.threads = 2}};
    node.block_on([](grove::node& nd, journal* jp) -> awaitable<void> {
      grove::start_options o;
      o.trap_exit = true;
      co_await grove::start<traps_and_terminates>(nd, o, jp);
    }(node, &j));
  }
  CHECK(j.terminated == 1);
  CHECK(j.terminate_reason == "shutdown");
}

TEST_CASE("calls_by_pid_to_a_server_of_another_type_fail_with_wrong_server") {
  grove::node node{{.threads = 1}};
  node.block_on([](grove::node& nd) -> awaitable<void> {
    auto real = co_await grove::start<continuing>(nd);
    grove::server_ref<counter> wrong(real.id());
    bool wrong_server = false;
    try {
      co_await wrong.call(get{});
    } catch (const grove::error& e) {
      wrong_server = e.code() == grove::errc::wrong_server;
    }
    CHECK(wrong_server);
    CHECK(co_await real.call(seen_steps{}) == "warm-up;second;");
  }(node));
}

TEST_CASE("bounded_mailbox_rejects_a_call_with_mailbox_full") {
  grove::node node{{.threads = 1}};
  node.block_on([](grove::process& self) -> awaitable<void> {
    grove::spawn_options o;
    o.mailbox.capacity = 1;
    // A process that never reads its mailbox; it ends when we exit it.
    grove::pid sink = grove::spawn(
        self.node(),
        [](grove::process& me) -> awaitable<void> {
          boost::asio::steady_timer t(co_await boost::asio::this_coro::executor, 1h);
          co_await t.async_wait(boost::asio::use_awaitable);
          (void)me;
        },
        o);
    grove::send(sink, 1);
    CHECK(grove::mailbox_size(sink) == 1);
    bool full = false;
    try {
      co_await grove::server_ref<counter>(sink).call(get{});
    } catch (const grove::error& e) {
      full = e.code() == grove::errc::mailbox_full;
    }
    CHECK(full);
    CHECK(grove::mailbox_size(sink) == 1);
    grove::exit(sink, grove::exit_reason::kill());
  });
}

namespace {

/// Replies once the observer has seen `count` messages.
struct seen_at_least {
  using reply_type = std::vector<std::string>;
  std::size_t count;
};
struct watch {
  grove::pid target;
};
struct link_to {
  grove::pid target;
};

/// Records every message handle_info receives, by kind.
class observer : public grove::gen_server {
public:
  void handle_cast(watch w) { this_process().monitor(w.target); }
  void handle_cast(link_to l) { this_process().link(l.target); }

  grove::call_result<std::vector<std::string>> handle_call(seen_at_least q, grove::from<std::vector<std::string>> f) {
    waiting_ = {q.count, f};
    answer_if_ready();
    return grove::noreply;
  }

  void handle_info(grove::message m) {
    if (auto* d = m.get_if<grove::down_message>()) {
      seen_.push_back("down " + d->reason.to_string());
    } else if (auto* e = m.get_if<grove::exit_message>()) {
      seen_.push_back("exit " + e->reason.to_string());
    } else if (auto* s = m.get_if<std::string>()) {
      seen_.push_back("plain " + *s);
    } else {
      seen_.push_back(std::string("other ") + m.type_name());
    }
    answer_if_ready();
  }

private:
  bool answer_if_ready() {
    if (!waiting_.second || seen_.size() < waiting_.first) return false;
    waiting_.second.reply(seen_);
    waiting_ = {};
    return true;
  }

  std::vector<std::string> seen_;
  std::pair<std::size_t, grove::from<std::vector<std::string>>> waiting_;
};

awaitable<void> crash_on_message(grove::process& self) {
  co_await self.receive();
  throw std::runtime_error("worker crashed");
}

} // namespace

TEST_CASE("handle_info_receives_plain_messages_downs_and_trapped_exits") {
  grove::node node{{.threads = 2}};
  auto seen = node.block_on([](grove::node& nd) -> awaitable<std::vector<std::string>> {
    grove::start_options o;
    o.trap_exit = true;
    auto obs = co_await grove::start<observer>(nd, o);
    grove::send(obs.id(), std::string("hello"));
    co_await obs.call(seen_at_least{1});

    // The call after each cast returns once the server handled the cast, so
    // its monitor (link) signal is queued at the target before our crash
    // message: the order is fixed.
    grove::pid monitored = grove::spawn(nd, crash_on_message);
    obs.cast(watch{monitored});
    co_await obs.call(seen_at_least{1});
    grove::send(monitored, 0);
    co_await obs.call(seen_at_least{2});

    // Linked, and not its parent: the trapping server gets an exit_message
    // and keeps running.
    grove::pid linked = grove::spawn(nd, crash_on_message);
    obs.cast(link_to{linked});
    co_await obs.call(seen_at_least{2});
    grove::send(linked, 0);
    co_return co_await obs.call(seen_at_least{3});
  }(node));
  REQUIRE(seen.size() == 3);
  CHECK(seen[0] == "plain hello");
  CHECK(seen[1] == "down {error, worker crashed}");
  CHECK(seen[2] == "exit {error, worker crashed}");
}

TEST_CASE("a_call_timeout_beyond_the_clock_range_waits_like_infinity") {
  grove::node node{{.threads = 1}};
  node.block_on([](grove::node& nd) -> awaitable<void> {
    auto ref = co_await grove::start<counter>(nd, nullptr, 3);
    // Finite, but now + timeout would overflow the clock.
    CHECK(co_await ref.call(get{}, grove::duration::max() - std::chrono::nanoseconds(1)) == 3);
  }(node));
}

namespace {

struct echo_req {
  using reply_type = int;
  int n;
};
struct echo_later {
  using reply_type = int;
  int n;
};
struct flush_later {};

/// Answers echo at once and echo_later from a parked from<> on the next
/// flush: two ways a reply can race a timeout or a kill.
class racer : public grove::gen_server {
public:
  int handle_call(echo_req r) { return r.n; }
  grove::call_result<int> handle_call(echo_later r, grove::from<int> f) {
    parked_.emplace_back(f, r.n);
    return grove::noreply;
  }
  void handle_cast(flush_later) {
    for (auto& [f, n] : parked_) f.reply(n);
    parked_.clear();
  }

private:
  std::vector<std::pair<grove::from<int>, int>> parked_;
};

struct tally {
  std::atomic<int> ok{0}, timeout{0}, exited{0}, noproc{0}, wrong{0}, other{0};
};

awaitable<void> caller(grove::process& self, std::vector<grove::server_ref<racer>>* servers, tally* t, int calls,
                       grove::pid report_to) {
  for (int i = 0; i < calls; ++i) {
    auto ref = (*servers)[static_cast<std::size_t>(i) % servers->size()];
    try {
      int got = (i % 3 == 0) ? co_await ref.call(echo_later{i}, std::chrono::milliseconds(2))
                             : co_await ref.call(echo_req{i}, std::chrono::milliseconds(200));
      if (got == i) {
        t->ok++;
      } else {
        t->wrong++; // a reply meant for another call: must never happen
      }
    } catch (const grove::error& e) {
      if (e.code() == grove::errc::timeout) t->timeout++;
      else if (e.code() == grove::errc::exited) t->exited++;
      else if (e.code() == grove::errc::noproc) t->noproc++;
      else t->other++;
    }
    if (i % 3 == 1) ref.cast(flush_later{});
  }
  grove::send(report_to, self.self());
}

} // namespace

TEST_CASE("concurrent_calls_replies_timeouts_and_kills_across_workers_never_cross_or_hang") {
  grove::node node{{.threads = 2}};
  tally t;
  node.block_on([tp = &t](grove::process& self) -> awaitable<void> {
    std::vector<grove::server_ref<racer>> servers;
    for (int i = 0; i < 4; ++i) servers.push_back(co_await grove::start<racer>(self.node()));
    constexpr int callers = 8, calls = 300;
    for (int c = 0; c < callers; ++c) {
      grove::spawn(self.node(), [&servers, tp, me = self.self()](grove::process& p) {
        return caller(p, &servers, tp, calls, me);
      });
    }
    // Kill one server before they start (noproc) and one while they run,
    // with calls in flight and parked (exited): whichever way a call ends,
    // it ends once and with its own answer.
    grove::exit(servers[3].id(), grove::exit_reason::kill());
    grove::spawn(self.node(), [victim = servers[2].id()](grove::process& p) -> awaitable<void> {
      co_await p.receive_for(std::chrono::milliseconds(3));
      grove::exit(victim, grove::exit_reason::kill());
    });
    for (int c = 0; c < callers; ++c) REQUIRE((co_await self.receive_for(60s)).has_value());
  });
  const int total = t.ok + t.timeout + t.exited + t.noproc + t.wrong + t.other;
  CHECK(total == 8 * 300);
  CHECK(t.wrong == 0);
  CHECK(t.other == 0);
  CHECK(t.ok > 0);
  CHECK(t.noproc + t.exited > 0); // the killed server was called
  MESSAGE("ok " << t.ok.load() << ", timeout " << t.timeout.load() << ", exited " << t.exited.load() << ", noproc " << t.noproc.load());
}

namespace {

class ignoring : public grove::gen_server {
public:
  grove::action init() { return grove::ignore(); }
  int handle_call(get) { return 0; }
};

struct misuse_ignore {};

class ignore_later : public grove::gen_server {
public:
  explicit ignore_later(journal* j) : journal_(j) {}
  grove::action handle_cast(misuse_ignore) { return grove::ignore(); }
  void terminate(const grove::exit_reason& reason) {
    journal_->terminate_reason = reason.to_string();
    journal_->terminated++;
  }

private:
  journal* journal_;
};

} // namespace

TEST_CASE("init_returning_ignore_gives_a_null_ref_sends_no_exit_and_leaves_nothing_alive") {
  grove::node node{{.threads = 2}};
  node.block_on([](grove::process& self) -> awaitable<void> {
    self.trap_exit(true);
    auto ref = co_await grove::start<ignoring>(self.node());
    CHECK_FALSE(ref);
    auto linked = co_await grove::start_link<ignoring>(self.node());
    CHECK_FALSE(linked);
    CHECK(self.node().process_count() == 1); // only this process
    // Not even a trapping parent hears of an ignored start: the next
    // message is the one sent after it.
    grove::send(self.self(), std::string("after"));
    grove::message m = co_await self.receive();
    CHECK(m.is<std::string>());
  });
}

TEST_CASE("ignore_from_a_handler_other_than_init_ends_the_server_with_an_error") {
  grove::node node{{.threads = 1}};
  journal j;
  node.block_on([jp = &j](grove::process& self) -> awaitable<void> {
    auto ref = co_await grove::start<ignore_later>(self.node(), jp);
    auto mon = self.monitor(ref.id());
    grove::server_ref<ignore_later>(ref).cast(misuse_ignore{});
    grove::message m = co_await self.receive();
    REQUIRE(m.is<grove::down_message>());
    CHECK(m.get<grove::down_message>().ref == mon);
    CHECK(m.get<grove::down_message>().reason.to_string().find("only init") != std::string::npos);
    CHECK(jp->terminated == 1);
  });
}
