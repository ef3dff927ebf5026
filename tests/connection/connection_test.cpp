#include <grove/connection/connection.hpp>
#include <grove/core/testing.hpp>

#include <grove/core/node.hpp>

#include "../event_log.hpp"

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <doctest/doctest.h>

#include <deque>
#include <memory>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

using namespace std::chrono_literals;
using namespace boost::asio::experimental::awaitable_operators;
using grove::awaitable;
using test_support::event_log;

namespace {

// -- a connection whose connect and disconnect follow a script ------------------

enum class connect_step {
  ok,             // connected
  ok_after_yield, // connected, after suspending once (an awaitable connect)
  fail,           // grove::backoff(): the policy's delay
  fail_briefly,   // grove::backoff(1 ms)
  stop,           // grove::stop(shutdown "gave up")
  raise,          // throws
  hang,           // awaits an hour; logs its cancellation
  hang_on_second, // ok the first time it is reached, then hang (see script)
};

enum class disconnect_step { reconnect, backoff_now, backoff_by_policy, noconnect, stop, raise, plain };

/// What the next connects and disconnects do; when empty: ok / backoff_now.
struct script {
  std::mutex mutex;
  std::deque<connect_step> connects;
  std::deque<disconnect_step> disconnects;

  connect_step next_connect() {
    std::lock_guard lock(mutex);
    if (connects.empty()) return connect_step::ok;
    auto s = connects.front();
    connects.pop_front();
    return s;
  }
  disconnect_step next_disconnect() {
    std::lock_guard lock(mutex);
    if (disconnects.empty()) return disconnect_step::backoff_now;
    auto s = disconnects.front();
    disconnects.pop_front();
    return s;
  }
};

enum class start_with { connect, backoff_then_connect, idle, stop, ignore, backoff_long_with_idle_timeout };

struct setup {
  start_with start = start_with::connect;
  std::shared_ptr<script> plan = std::make_shared<script>();
  std::shared_ptr<event_log> log = std::make_shared<event_log>();
  grove::connection_options options{};
};

std::string text_of(const grove::message& info) {
  if (auto* s = info.get_if<std::string>()) return *s;
  if (info.is<grove::backoff_elapsed>()) return "backoff_elapsed";
  if (!info.has_value()) return "none";
  return "other";
}

/// Logs every event of the connection as "event:STATE[:REASON]".
grove::connection_options logging(setup& s) {
  grove::connection_options o = s.options;
  auto log = s.log;
  auto user = o.on_event;
  o.on_event = [log, user](const grove::connection_event& e) {
    std::string line = "event:" + std::string(grove::to_string(e.state));
    if (!e.reason.empty()) line += ":" + e.reason;
    if (user) user(e); // first: a test that saw the log line may read what it recorded
    log->add(line);
  };
  return o;
}

// Requests.
struct state_query {
  using reply_type = std::string;
  static constexpr bool needs_ready = false; // answered connected or not
};
struct work {
  using reply_type = int;
};
struct drop {
  using reply_type = std::string;
}; // reply, then disconnect("dropped")
struct close_request {
  using reply_type = std::string;
  static constexpr bool needs_ready = false;
}; // no reply now: disconnect replies
struct close_info {
  grove::from<std::string> from;
};
struct connect_now {};
struct reconnect_call {
  using reply_type = std::string;
}; // reply, then connect("by call")
struct drop_cast {}; // disconnect("by cast")
struct backoff_in_handler {};
struct drop_and_race_timer {
  using reply_type = std::string;
}; // reply, disconnect, then hold until the backoff timer fired
struct hold_until_mail {};
struct connects_so_far {
  using reply_type = int;
  static constexpr bool needs_ready = false;
};
struct state_when_served { // as state_query, but it needs the connection
  using reply_type = std::string;
};

class scripted : public grove::connection {
public:
  scripted(start_with start, std::shared_ptr<script> plan, std::shared_ptr<event_log> log, grove::connection_options o)
      : grove::connection(std::move(o)), start_(start), plan_(std::move(plan)), log_(std::move(log)) {}

  grove::action init() {
    log_->add("init");
    switch (start_) {
    case start_with::connect: return grove::connect(std::string("init"));
    case start_with::backoff_then_connect: return grove::backoff(1ms);
    case start_with::idle: return {};
    case start_with::stop: return grove::stop(grove::exit_reason::shutdown("no config"));
    case start_with::ignore: return grove::ignore();
    case start_with::backoff_long_with_idle_timeout: return grove::backoff(1h).with_idle_timeout(1ms);
    }
    return {};
  }

  awaitable<grove::connect_result> connect(grove::message info) {
    ++connects_;
    log_->add("connect:" + text_of(info));
    switch (plan_->next_connect()) {
    case connect_step::ok: co_return grove::action{};
    case connect_step::ok_after_yield: {
      boost::asio::steady_timer t(co_await boost::asio::this_coro::executor, 0ms);
      co_await t.async_wait(boost::asio::use_awaitable);
      co_return grove::action{};
    }
    case connect_step::fail: co_return grove::backoff();
    case connect_step::fail_briefly: co_return grove::backoff(1ms);
    case connect_step::stop: co_return grove::stop(grove::exit_reason::shutdown("gave up"));
    case connect_step::raise: throw std::runtime_error("connect blew up");
    case connect_step::hang:
    case connect_step::hang_on_second: {
      boost::asio::steady_timer t(co_await boost::asio::this_coro::executor, 1h);
      try {
        co_await t.async_wait(boost::asio::use_awaitable);
      } catch (const boost::system::system_error&) {
        log_->add("connect-cancelled");
        throw;
      }
      co_return grove::action{};
    }
    }
    co_return grove::action{};
  }

  grove::disconnect_result disconnect(grove::message info) {
    if (auto* c = info.get_if<close_info>()) {
      log_->add("disconnect:close");
      c->from.reply("closed");
      return grove::noconnect();
    }
    log_->add("disconnect:" + text_of(info));
    switch (plan_->next_disconnect()) {
    case disconnect_step::reconnect: return grove::connect(std::string("again"));
    case disconnect_step::backoff_now: return grove::backoff(0ms);
    case disconnect_step::backoff_by_policy: return grove::backoff();
    case disconnect_step::noconnect: return grove::noconnect();
    case disconnect_step::stop: return grove::stop(grove::exit_reason::shutdown("closed for good"));
    case disconnect_step::raise: throw std::runtime_error("disconnect blew up");
    case disconnect_step::plain: return {};
    }
    return {};
  }

  std::string handle_call(state_query) { return std::string(grove::to_string(state())); }
  std::string handle_call(state_when_served) { return std::string(grove::to_string(state())); }
  int handle_call(work) { return ++work_done_; }
  int handle_call(connects_so_far) { return connects_; }
  grove::call_result<std::string> handle_call(drop) {
    return {std::string("dropping"), grove::disconnect(std::string("dropped"))};
  }
  grove::call_result<std::string> handle_call(close_request, grove::from<std::string> from) {
    return {grove::noreply, grove::disconnect(close_info{from})};
  }
  grove::call_result<std::string> handle_call(drop_and_race_timer) {
    // Queued before the backoff timer exists, so it runs while the timer
    // fires: the timer's message lands in the mailbox behind it.
    grove::send(self(), hold_until_mail{});
    return {std::string("dropping"), grove::disconnect(std::string("dropped"))};
  }

  grove::call_result<std::string> handle_call(reconnect_call) {
    return {std::string("reconnecting"), grove::connect(std::string("by call"))};
  }

  grove::action handle_cast(connect_now) { return grove::connect(std::string("asked")); }
  grove::action handle_cast(drop_cast) { return grove::disconnect(std::string("by cast")); }
  grove::action handle_cast(backoff_in_handler) { return grove::backoff(1ms); }

  awaitable<grove::action> handle_info(grove::message m) {
    if (m.is<grove::timeout_message>()) {
      log_->add("timeout:" + std::string(grove::to_string(state())));
      co_return grove::connect(std::string("after timeout"));
    }
    if (m.is<hold_until_mail>()) {
      // Busy until the backoff timer's message is queued (bounded), then
      // connect by hand: that timer is now stale.
      for (int i = 0; i < 5000 && this_process().mailbox_size() == 0; ++i) {
        boost::asio::steady_timer t(co_await boost::asio::this_coro::executor, 1ms);
        co_await t.async_wait(boost::asio::use_awaitable);
      }
      log_->add(this_process().mailbox_size() > 0 ? "timer-queued" : "timer-never-fired");
      co_return grove::connect(std::string("by hand"));
    }
    co_return grove::action{};
  }

  void terminate(const grove::exit_reason& reason) {
    std::ostringstream line;
    line << "terminate:" << reason.to_string() << ":" << state() << ":connects=" << connects_;
    log_->add(line.str());
  }

private:
  start_with start_;
  std::shared_ptr<script> plan_;
  std::shared_ptr<event_log> log_;
  int connects_ = 0;
  int work_done_ = 0;
};

grove::server_ref<scripted> start(grove::node& node, setup& s) {
  return node.block_on(grove::start<scripted>(node, s.start, s.plan, s.log, logging(s)));
}

/// The events of the log, in order, filtered to those starting with one of `prefixes`.
std::vector<std::string> only(const event_log& log, std::initializer_list<std::string> prefixes) {
  std::vector<std::string> out;
  for (const auto& e : log.events()) {
    for (const auto& p : prefixes) {
      if (e.rfind(p, 0) == 0) {
        out.push_back(e);
        break;
      }
    }
  }
  return out;
}

bool has(const event_log& log, const std::string& e) { return log.wait_count(e, 1); }

template <class Req>
awaitable<void> cast_now(grove::server_ref<scripted> ref, Req request) {
  ref.cast(std::move(request));
  co_return;
}

template <class Req>
std::error_code call_error(grove::node& node, grove::server_ref<scripted> ref, Req req, grove::call_options o = {}) {
  return node.block_on(grove::testing::error_of(ref.call(std::move(req), o)));
}

/// A process that logs "down:REASON" when `target` ends.
struct watcher {
  std::shared_ptr<event_log> log;
  grove::pid target;
  awaitable<void> operator()(grove::process& self) {
    self.monitor(target);
    log->add("watching");
    grove::message m = co_await self.receive();
    if (auto* d = m.get_if<grove::down_message>()) log->add("down:" + d->reason.to_string());
  }
};

/// Watches `p`; returns once the monitor is in place.
void watch(grove::node& node, const std::shared_ptr<event_log>& log, grove::pid p) {
  const std::size_t before = log->count("watching");
  grove::spawn(node, watcher{log, p});
  REQUIRE(log->wait_count("watching", before + 1));
}

} // namespace

// -- init ---------------------------------------------------------------------------

TEST_CASE("init_connect_runs_connect_before_any_message") {
  grove::node node{{.threads = 2}};
  setup s;
  s.plan->connects = {connect_step::ok_after_yield};
  auto ref = start(node, s);
  // Sent as soon as start returned; connect (which suspends) still runs first.
  CHECK(node.block_on(ref.call(state_query{})) == "connected");
  CHECK(only(*s.log, {"init", "connect", "event"}) ==
        std::vector<std::string>{"init", "event:connecting", "connect:init", "event:connected"});
}

TEST_CASE("init_backoff_waits_then_connects_with_backoff_elapsed") {
  grove::node node{{.threads = 2}};
  setup s;
  s.start = start_with::backoff_then_connect;
  auto ref = start(node, s);
  REQUIRE(has(*s.log, "event:connected"));
  CHECK(only(*s.log, {"init", "connect", "event"}) ==
        std::vector<std::string>{"init", "event:backing_off", "event:connecting", "connect:backoff_elapsed",
                                 "event:connected"});
  CHECK(node.block_on(ref.call(work{})) == 1);
}

TEST_CASE("init_idle_connects_only_when_a_handler_asks") {
  grove::node node{{.threads = 2}};
  setup s;
  s.start = start_with::idle;
  auto ref = start(node, s);
  CHECK(node.block_on(ref.call(state_query{})) == "disconnected");
  CHECK(call_error(node, ref, work{}) == grove::connection_errc::disconnected);
  ref.cast(connect_now{});
  CHECK(node.block_on(ref.call(state_query{})) == "connected");
  CHECK(only(*s.log, {"connect:"}) == std::vector<std::string>{"connect:asked"});
}

TEST_CASE("init_stop_fails_the_start_and_init_ignore_gives_a_null_ref") {
  grove::node node{{.threads = 2}};
  setup stopping;
  stopping.start = start_with::stop;
  bool start_failed = false;
  try {
    start(node, stopping);
  } catch (const grove::error& e) {
    start_failed = e.code() == grove::errc::start_failed && e.reason() &&
                   *e.reason() == grove::exit_reason::shutdown("no config");
  }
  CHECK(start_failed);
  setup ignoring;
  ignoring.start = start_with::ignore;
  CHECK_FALSE(start(node, ignoring));
  CHECK(node.process_count() == 0);
}

// -- connect ---------------------------------------------------------------------------

TEST_CASE("failed_connects_back_off_by_the_seeded_policy_and_a_success_resets_it") {
  std::vector<grove::duration> delays; // outlive the node, whose connection records into them
  std::mutex delays_mutex;
  grove::node node{{.threads = 2}};
  setup s;
  s.options.backoff = grove::backoff_policy::exponential({.initial = 1ms, .multiplier = 2.0, .jitter = 0.2, .max = 1s});
  s.options.seed = 42;
  s.plan->connects = {connect_step::fail, connect_step::fail, connect_step::fail, connect_step::ok};
  s.plan->disconnects = {disconnect_step::backoff_by_policy};
  s.options.on_event = [&](const grove::connection_event& e) {
    std::lock_guard lock(delays_mutex);
    if (e.state == grove::connection_state::backing_off) delays.push_back(e.backoff);
  };
  auto ref = start(node, s);
  REQUIRE(has(*s.log, "event:connected"));

  // The same policy and seed, drawn by hand.
  auto policy = s.options.backoff;
  grove::backoff_random random(42);
  std::vector<grove::duration> expected;
  for (int i = 0; i < 3; ++i) expected.push_back(policy.next(random));
  {
    std::lock_guard lock(delays_mutex);
    CHECK(delays == expected);
  }
  CHECK(only(*s.log, {"event:backing_off"}) ==
        std::vector<std::string>(3, "event:backing_off:connect failed"));

  // After the success the policy starts again from its first step (drawing
  // on from the same random source): the next delay is that, not a fourth step.
  CHECK(node.block_on(ref.call(drop{})) == "dropping");
  REQUIRE(s.log->wait_count("event:connected", 2));
  policy.reset();
  const grove::duration after_reset = policy.next(random);
  std::lock_guard lock(delays_mutex);
  REQUIRE(delays.size() == 4);
  CHECK(delays[3] == after_reset);
}

TEST_CASE("stop_from_connect_runs_terminate_which_sees_the_state") {
  grove::node node{{.threads = 2}};
  setup s;
  s.plan->connects = {connect_step::fail_briefly, connect_step::stop};
  start(node, s);
  // terminate is given the exit reason, and the user's state (here, the
  // count of connects) as the failing connect left it.
  CHECK(has(*s.log, "terminate:{shutdown, gave up}:connecting:connects=2"));
}

TEST_CASE("an_exception_in_connect_ends_the_process_after_terminate") {
  grove::node node{{.threads = 2, .events = nullptr}};
  setup s;
  s.plan->connects = {connect_step::raise};
  start(node, s);
  CHECK(has(*s.log, "terminate:{error, connect blew up}:connecting:connects=1"));
  CHECK(s.log->wait_for([&](const auto&) { return node.process_count() == 0; }));
}

TEST_CASE("a_connect_running_past_the_connect_timeout_is_cancelled_and_counts_as_failed") {
  grove::node node{{.threads = 2}};
  setup s;
  s.options.connect_timeout = 20ms;
  s.options.backoff = grove::backoff_policy::constant(1ms);
  s.plan->connects = {connect_step::hang, connect_step::ok};
  auto ref = start(node, s);
  REQUIRE(has(*s.log, "event:connected"));
  CHECK(only(*s.log, {"connect", "event"}) ==
        std::vector<std::string>{"event:connecting", "connect:init", "connect-cancelled",
                                 "event:backing_off:connect timed out after 0.02 s", "event:connecting",
                                 "connect:backoff_elapsed", "event:connected"});
  CHECK(node.block_on(ref.call(work{})) == 1);
}

TEST_CASE("shutdown_during_a_long_connect_cancels_it") {
  // Without a connect timeout the connect is awaited directly; with one it
  // races a timer. Both are cancelled by the shutdown.
  for (grove::duration timeout : {grove::infinity, grove::duration(1h)}) {
    setup s;
    s.options.connect_timeout = timeout;
    s.plan->connects = {connect_step::hang};
    {
      grove::node node{{.threads = 2}};
      start(node, s);
      REQUIRE(has(*s.log, "connect:init"));
      node.shutdown();
      CHECK(node.process_count() == 0);
    }
    CHECK(s.log->count("connect-cancelled") == 1);
  }
}

// -- disconnect ---------------------------------------------------------------------------

TEST_CASE("a_call_may_reply_then_disconnect_and_disconnect_may_reconnect_at_once") {
  grove::node node{{.threads = 2}};
  setup s;
  s.plan->disconnects = {disconnect_step::reconnect};
  auto ref = start(node, s);
  CHECK(node.block_on(ref.call(drop{})) == "dropping");
  REQUIRE(s.log->wait_count("event:connected", 2));
  CHECK(only(*s.log, {"connect", "disconnect", "event"}) ==
        std::vector<std::string>{"event:connecting", "connect:init", "event:connected", "event:disconnected:dropped",
                                 "disconnect:dropped", "event:connecting", "connect:again", "event:connected"});
}

TEST_CASE("disconnect_may_stay_down_with_noconnect_or_a_plain_result_until_asked") {
  for (auto step : {disconnect_step::noconnect, disconnect_step::plain}) {
    grove::node node{{.threads = 2}};
    setup s;
    s.plan->disconnects = {step};
    auto ref = start(node, s);
    CHECK(node.block_on(ref.call(drop{})) == "dropping");
    CHECK(node.block_on(ref.call(state_query{})) == "disconnected");
    CHECK(call_error(node, ref, work{}) == grove::connection_errc::disconnected);
    CHECK(node.block_on(ref.call(connects_so_far{})) == 1); // no retry was scheduled
    ref.cast(connect_now{});
    CHECK(node.block_on(ref.call(work{})) == 1);
  }
}

TEST_CASE("disconnect_may_stop_or_fail_and_terminate_runs") {
  grove::node node{{.threads = 2, .events = nullptr}};
  {
    setup s;
    s.plan->disconnects = {disconnect_step::stop};
    auto ref = start(node, s);
    watch(node, s.log, ref.id());
    CHECK(node.block_on(ref.call(drop{})) == "dropping");
    CHECK(has(*s.log, "down:{shutdown, closed for good}"));
    CHECK(has(*s.log, "terminate:{shutdown, closed for good}:disconnected:connects=1"));
  }
  {
    setup s;
    s.plan->disconnects = {disconnect_step::raise};
    auto ref = start(node, s);
    watch(node, s.log, ref.id());
    CHECK(node.block_on(ref.call(drop{})) == "dropping");
    CHECK(has(*s.log, "down:{error, disconnect blew up}"));
    CHECK(has(*s.log, "terminate:{error, disconnect blew up}:disconnected:connects=1"));
  }
}

TEST_CASE("a_call_may_reply_then_connect_and_a_cast_may_disconnect") {
  grove::node node{{.threads = 2}};
  setup s;
  s.plan->disconnects = {disconnect_step::noconnect};
  auto ref = start(node, s);
  CHECK(node.block_on(ref.call(reconnect_call{})) == "reconnecting");
  ref.cast(drop_cast{});
  CHECK(node.block_on(ref.call(state_query{})) == "disconnected");
  CHECK(only(*s.log, {"connect:", "disconnect:"}) ==
        std::vector<std::string>{"connect:init", "connect:by call", "disconnect:by cast"});
}

TEST_CASE("a_call_may_disconnect_without_replying_and_disconnect_replies_through_from") {
  grove::node node{{.threads = 2}};
  setup s;
  auto ref = start(node, s);
  CHECK(node.block_on(ref.call(close_request{})) == "closed");
  CHECK(node.block_on(ref.call(state_query{})) == "disconnected");
  CHECK(only(*s.log, {"disconnect"}) == std::vector<std::string>{"disconnect:close"});
}

// -- the backoff timer ---------------------------------------------------------------------------

TEST_CASE("an_idle_timeout_fires_before_a_long_backoff_connect") {
  grove::node node{{.threads = 2}};
  setup s;
  s.start = start_with::backoff_long_with_idle_timeout;
  auto ref = start(node, s);
  REQUIRE(has(*s.log, "event:connected"));
  CHECK(only(*s.log, {"connect", "timeout", "event"}) ==
        std::vector<std::string>{"event:backing_off", "timeout:backing_off", "event:connecting",
                                 "connect:after timeout", "event:connected"});
  // The hour-long timer was cancelled by that connect: it is not pending.
  CHECK(node.block_on(ref.call(connects_so_far{})) == 1);
}

TEST_CASE("a_backoff_timer_that_fired_before_a_connect_cancelled_it_never_reconnects") {
  grove::node node{{.threads = 1}};
  setup s;
  s.plan->disconnects = {disconnect_step::backoff_now};
  auto ref = start(node, s);
  CHECK(node.block_on(ref.call(drop_and_race_timer{})) == "dropping");
  REQUIRE(has(*s.log, "event:connected"));
  REQUIRE(s.log->wait_count("event:connected", 2));
  CHECK(s.log->count("timer-queued") == 1); // the race really happened
  // Anything queued before this call has been handled when it returns.
  CHECK(node.block_on(ref.call(connects_so_far{})) == 2);
  CHECK(only(*s.log, {"connect:"}) == std::vector<std::string>{"connect:init", "connect:by hand"});
}

TEST_CASE("backoff_from_a_handler_while_connected_is_a_clear_error") {
  grove::node node{{.threads = 2, .events = nullptr}};
  setup s;
  auto ref = start(node, s);
  watch(node, s.log, ref.id());
  ref.cast(backoff_in_handler{});
  REQUIRE(s.log->wait_for([](const std::vector<std::string>& v) {
    return std::any_of(v.begin(), v.end(), [](const std::string& e) { return e.rfind("down:", 0) == 0; });
  }));
  CHECK(only(*s.log, {"down:"}).at(0).find("while connected") != std::string::npos);
}

// -- calls while disconnected ---------------------------------------------------------------------------

TEST_CASE("calls_while_disconnected_fail_or_wait_per_connection_and_per_call") {
  grove::node node{{.threads = 2}};
  grove::call_options waiting;
  waiting.if_not_ready = grove::when_not_ready::wait;
  waiting.timeout = 20s;
  grove::call_options failing;
  failing.if_not_ready = grove::when_not_ready::fail;

  {
    setup s; // default: fail
    s.start = start_with::idle;
    auto ref = start(node, s);
    CHECK(call_error(node, ref, work{}) == grove::connection_errc::disconnected);
    // This call chooses to wait; a cast connects meanwhile.
    // (Awaitables start when awaited: `&&` sends the call, then the cast.)
    int served = node.block_on(ref.call(work{}, waiting) && cast_now(ref, connect_now{}));
    CHECK(served == 1);
  }
  {
    setup s; // per connection: wait
    s.start = start_with::idle;
    s.options.calls_while_disconnected = grove::when_not_ready::wait;
    auto ref = start(node, s);
    CHECK(call_error(node, ref, work{}, failing) == grove::connection_errc::disconnected); // this call chooses to fail
    grove::call_options brief;
    brief.timeout = 20ms;
    CHECK(call_error(node, ref, work{}, brief) == grove::errc::timeout); // waits up to its deadline
    ref.cast(connect_now{});
    CHECK(node.block_on(ref.call(work{})) == 1); // the call that timed out was never served
  }
}

/// A connection that starts idle and whose calls wait while it is down.
grove::server_ref<scripted> start_idle_waiting(grove::node& node, setup& s) {
  s.start = start_with::idle;
  s.options.calls_while_disconnected = grove::when_not_ready::wait;
  return start(node, s);
}

TEST_CASE("waiting_calls_are_served_in_arrival_order_once_connected_before_newer_mail") {
  grove::node node{{.threads = 2}};
  setup s;
  auto ref = start_idle_waiting(node, s);
  // Each call's reply is its serving position. Three wait; the cast then
  // connects; a fourth call sent after the cast comes after all three.
  std::vector<int> position(5, 0);
  auto record = [](grove::server_ref<scripted> r, int n, std::vector<int>* out) -> awaitable<void> {
    (*out)[static_cast<std::size_t>(n)] = co_await r.call(work{});
  };
  node.block_on(record(ref, 1, &position) && record(ref, 2, &position) && record(ref, 3, &position) &&
                cast_now(ref, connect_now{}) && record(ref, 4, &position));
  CHECK(position == std::vector<int>{0, 1, 2, 3, 4});
}

TEST_CASE("a_request_that_needs_no_readiness_is_served_while_disconnected") {
  grove::node node{{.threads = 1}};
  setup s;
  s.start = start_with::idle;
  auto ref = start(node, s);
  CHECK(node.block_on(ref.call(state_query{})) == "disconnected");
  CHECK(node.block_on(ref.call(connects_so_far{})) == 0);
  CHECK(call_error(node, ref, work{}) == grove::connection_errc::disconnected);
}

namespace {

struct link_lost {}; // the link is gone; its close message has not run yet
struct link_back {};

/// A connection whose link can be down while its state is still connected
/// (as a reader that saw EOF before its message reached the process).
class half_closed : public grove::connection {
public:
  explicit half_closed(grove::connection_options o) : grove::connection(std::move(o)) {}
  grove::action init() { return grove::connect(); }
  grove::connect_result connect() { return {}; }
  bool ready_for_calls() const { return link_up_; }
  int handle_call(work) { return ++served_; }
  std::string handle_call(state_query) { return std::string(grove::to_string(state())); }
  grove::action handle_cast(link_lost) {
    link_up_ = false;
    return {};
  }
  grove::action handle_cast(link_back) {
    link_up_ = true;
    return {};
  }

private:
  bool link_up_ = true;
  int served_ = 0;
};

awaitable<void> cast_back(grove::server_ref<half_closed> ref) {
  ref.cast(link_back{});
  co_return;
}

} // namespace

TEST_CASE("a_connection_not_ready_for_calls_gates_them_as_if_down_while_still_connected") {
  grove::node node{{.threads = 2}};
  auto ref = node.block_on(grove::start<half_closed>(node, grove::connection_options{}));
  CHECK(node.block_on(ref.call(work{})) == 1);
  ref.cast(link_lost{});
  CHECK(node.block_on(ref.call(state_query{})) == "connected"); // served: it needs no readiness
  CHECK(node.block_on(grove::testing::error_of(ref.call(work{}))) == grove::connection_errc::disconnected);
  grove::call_options waiting;
  waiting.if_not_ready = grove::when_not_ready::wait;
  waiting.timeout = 20s;
  // The call waits at the gate; the cast that brings the link back lets it through.
  int served = node.block_on(ref.call(work{}, waiting) && cast_back(ref));
  CHECK(served == 2);
  CHECK(node.block_on(ref.call(work{})) == 3);
}

TEST_CASE("a_waiting_call_that_drops_the_link_again_leaves_the_later_ones_waiting") {
  grove::node node{{.threads = 2}};
  setup s;
  s.plan->disconnects = {disconnect_step::noconnect};
  auto ref = start_idle_waiting(node, s);
  // work, drop (replies, then disconnects and stays down), then a call that
  // answers with the state it was served in: it waits for the next connect
  // instead of being served while down.
  int first = 0;
  std::string dropped;
  std::string served_in;
  auto call_work = [](grove::server_ref<scripted> r, int* out) -> awaitable<void> { *out = co_await r.call(work{}); };
  auto call_drop = [](grove::server_ref<scripted> r, std::string* out) -> awaitable<void> {
    *out = co_await r.call(drop{});
  };
  auto call_state = [](grove::server_ref<scripted> r, std::string* out) -> awaitable<void> {
    *out = co_await r.call(state_when_served{});
  };
  auto reconnect_twice = [](grove::server_ref<scripted> r) -> awaitable<void> {
    r.cast(connect_now{});
    // Served after the waiting calls that the connect let through, so
    // after the drop's disconnect: the third call still waits.
    CHECK(co_await r.call(state_query{}) == "disconnected");
    r.cast(connect_now{});
  };
  node.block_on(call_work(ref, &first) && call_drop(ref, &dropped) && call_state(ref, &served_in) &&
                reconnect_twice(ref));
  CHECK(first == 1);
  CHECK(dropped == "dropping");
  CHECK(served_in == "connected");
  CHECK(only(*s.log, {"connect:", "disconnect:"}) ==
        std::vector<std::string>{"connect:asked", "disconnect:dropped", "connect:asked"});
}

TEST_CASE("calls_still_waiting_fail_with_the_exit_reason_when_the_connection_stops") {
  grove::node node{{.threads = 1}};
  setup s;
  auto ref = start_idle_waiting(node, s);
  auto fails = [](grove::server_ref<scripted> r) -> awaitable<std::string> {
    try {
      co_await r.call(work{}, grove::infinity);
    } catch (const grove::error& e) {
      if (e.code() == grove::errc::exited && e.reason()) co_return e.reason()->to_string();
      co_return std::string("other: ") + e.what();
    }
    co_return "served";
  };
  auto stop_it = [](grove::server_ref<scripted> r) -> awaitable<void> {
    co_await grove::stop(r, grove::exit_reason::shutdown("closing"), 5s);
  };
  std::string reason = node.block_on(fails(ref) && stop_it(ref));
  CHECK(reason == "{shutdown, closing}");
}

// What connect() and disconnect() may return is the compiler's to check.
static_assert(std::is_convertible_v<grove::action, grove::connect_result>);
static_assert(std::is_convertible_v<grove::backoff_directive, grove::connect_result>);
static_assert(!std::is_constructible_v<grove::connect_result, grove::connect_directive>);
static_assert(!std::is_constructible_v<grove::connect_result, grove::disconnect_directive>);
static_assert(!std::is_constructible_v<grove::connect_result, grove::noconnect_directive>);
static_assert(std::is_convertible_v<grove::connect_directive, grove::disconnect_result>);
static_assert(std::is_convertible_v<grove::backoff_directive, grove::disconnect_result>);
static_assert(std::is_convertible_v<grove::noconnect_directive, grove::disconnect_result>);
static_assert(std::is_convertible_v<grove::action, grove::disconnect_result>);
static_assert(!std::is_constructible_v<grove::disconnect_result, grove::disconnect_directive>);
// The handlers' action takes every directive; the state decides at run time.
static_assert(std::is_convertible_v<grove::connect_directive, grove::action>);
static_assert(std::is_convertible_v<grove::disconnect_directive, grove::action>);

// -- observing the state ---------------------------------------------------------------------------

TEST_CASE("the_status_is_readable_from_any_thread_and_events_carry_failures_and_delays") {
  std::vector<grove::connection_event> events; // outlive the node, whose connection records into them
  std::mutex events_mutex;
  grove::node node{{.threads = 2}};
  setup s;
  auto status = std::make_shared<grove::connection_status>();
  s.options.status = status;
  s.options.backoff = grove::backoff_policy::constant(1h);
  s.plan->connects = {connect_step::fail};
  s.options.on_event = [&](const grove::connection_event& e) {
    std::lock_guard lock(events_mutex);
    events.push_back(e);
  };
  auto ref = start(node, s);
  REQUIRE(has(*s.log, "event:backing_off:connect failed"));
  auto snap = status->load();
  CHECK(snap.state == grove::connection_state::backing_off);
  CHECK(snap.failures == 1);
  CHECK(snap.retry_at - snap.since >= 1h);
  CHECK(status->state() == grove::connection_state::backing_off);
  {
    std::lock_guard lock(events_mutex);
    REQUIRE(events.size() == 2);
    CHECK(events[0].state == grove::connection_state::connecting);
    CHECK(events[0].previous == grove::connection_state::disconnected);
    CHECK(events[1].state == grove::connection_state::backing_off);
    CHECK(events[1].previous == grove::connection_state::connecting);
    CHECK(events[1].backoff == 1h);
    CHECK(events[1].failures == 1);
    CHECK(events[1].connection == ref.id());
  }
  ref.cast(connect_now{});
  REQUIRE(has(*s.log, "event:connected"));
  CHECK(status->state() == grove::connection_state::connected);
  CHECK(status->load().failures == 0);
}

TEST_CASE("a_bad_connect_timeout_names_the_option") {
  grove::node node{{.threads = 1}};
  setup s;
  s.options.connect_timeout = 0s;
  std::string text;
  try {
    start(node, s);
  } catch (const grove::error& e) {
    text = e.what();
  }
  CHECK(text.find("connect_timeout") != std::string::npos);
}
