#include <grove/connection/connection.hpp>

#include <grove/core/event.hpp>
#include <grove/connection/error.hpp>
#include <grove/core/node.hpp>
#include <grove/telemetry/metrics.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/error_code.hpp>

#include <algorithm>
#include <array>
#include <cstdio>
#include <exception>
#include <ostream>
#include <stdexcept>
#include <system_error>

namespace grove {

namespace asio = boost::asio;
using steady = std::chrono::steady_clock;

std::string_view to_string(connection_state s) noexcept {
  switch (s) {
  case connection_state::disconnected: return "disconnected";
  case connection_state::connecting: return "connecting";
  case connection_state::connected: return "connected";
  case connection_state::backing_off: return "backing_off";
  }
  return "unknown";
}

std::ostream& operator<<(std::ostream& out, connection_state s) { return out << to_string(s); }

// -- connection_status: a seqlock over atomics (one writer, any readers) ------

connection_status::snapshot connection_status::load() const noexcept {
  for (;;) {
    const std::uint64_t before = sequence_.load(std::memory_order_acquire);
    if (before & 1U) continue; // a store is in progress; it takes a few stores
    snapshot s;
    s.state = state_.load(std::memory_order_relaxed);
    s.since = steady::time_point(steady::duration(since_.load(std::memory_order_relaxed)));
    s.retry_at = steady::time_point(steady::duration(retry_at_.load(std::memory_order_relaxed)));
    s.failures = failures_.load(std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_acquire);
    if (sequence_.load(std::memory_order_relaxed) == before) return s;
  }
}

void connection_status::store(const snapshot& s) noexcept {
  const std::uint64_t sequence = sequence_.load(std::memory_order_relaxed);
  sequence_.store(sequence + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  state_.store(s.state, std::memory_order_relaxed);
  since_.store(s.since.time_since_epoch().count(), std::memory_order_relaxed);
  retry_at_.store(s.retry_at.time_since_epoch().count(), std::memory_order_relaxed);
  failures_.store(s.failures, std::memory_order_relaxed);
  sequence_.store(sequence + 2, std::memory_order_release);
}

namespace {

/// A delay this long is "never": no timer is armed (and now + delay would
/// overflow the clock).
constexpr duration forever = std::chrono::hours(24 * 365 * 100);

std::string seconds_text(duration d) {
  char text[48];
  std::snprintf(text, sizeof text, "%g s", std::chrono::duration<double>(d).count());
  return text;
}

/// An info as text for events: the common ways to say why.
std::string describe(const message& info) {
  if (auto* s = info.get_if<std::string>()) return *s;
  if (auto* s = info.get_if<std::string_view>()) return std::string(*s);
  if (auto* s = info.get_if<const char*>()) return *s ? *s : "";
  if (auto* e = info.get_if<std::error_code>()) return e->message();
  if (auto* e = info.get_if<boost::system::error_code>()) return e->message();
  if (auto* r = info.get_if<exit_reason>()) return r->to_string();
  if (auto* x = info.get_if<std::exception_ptr>()) {
    try {
      if (*x) std::rethrow_exception(*x);
    } catch (const std::exception& e) {
      return e.what();
    } catch (...) {
      return "unknown exception";
    }
  }
  if (info.is<backoff_elapsed>()) return "backoff elapsed";
  return {};
}

action with_idle(action a, const std::optional<duration>& idle) {
  if (idle && !a.idle_timeout()) return std::move(a).with_idle_timeout(*idle);
  return a;
}

} // namespace

connection::connection(connection_options options)
    : options_(std::move(options)), random_(options_.seed ? backoff_random(*options_.seed) : backoff_random()),
      since_(steady::now()) {
  if (options_.connect_timeout <= duration::zero()) {
    throw grove::error(errc::invalid_argument,
                       "connection_options::connect_timeout is " + seconds_text(options_.connect_timeout) +
                           " (expected > 0, or grove::infinity for none)");
  }
  if (options_.status) options_.status->store({state_, since_, {}, 0});
}

// -- the directive interpreter ---------------------------------------------
//
// Each directive becomes a step: either done (an action for the server
// loop), or one of the two callbacks to await next. The pure parts — what a
// directive or a callback's result means in the current state — are flat
// visits below; drive() only awaits the callbacks they ask for.

struct detail::connection_step {
  struct run_connect {
    message info;
    std::optional<duration> idle;
  };
  struct run_disconnect {
    message info;
    std::optional<duration> idle;
  };
  std::variant<action, run_connect, run_disconnect> next;
};

namespace {
template <class... F>
struct overloaded : F... {
  using F::operator()...;
};
template <class... F>
overloaded(F...) -> overloaded<F...>; // (clang 14 has no aggregate deduction)

/// A directive's own idle timeout, else the one of the step it came from.
std::optional<duration> idle_of(const std::optional<duration>& own, const std::optional<duration>& outer) {
  return own ? own : outer;
}
} // namespace

detail::handler_outcome connection::run(action a, const detail::connection_callbacks& callbacks) {
  const std::optional<duration> idle = a.idle_timeout();
  message carried = a.take_directive();
  auto* directive = carried.get_if<detail::any_directive>();
  if (!directive) throw grove::error(errc::bad_directive, "a connection got a directive of another layer");
  return start(on_request(std::move(*directive), idle), callbacks);
}

detail::handler_outcome connection::on_timer(std::uint64_t generation, const detail::connection_callbacks& callbacks) {
  // A timer cancelled after it fired: its message is stale, and dropped.
  if (generation != generation_ || state_ != connection_state::backing_off) return action{};
  timer_ = {};
  return start(step{step::run_connect{backoff_elapsed{}, std::nullopt}}, callbacks);
}

detail::handler_outcome connection::start(step first, const detail::connection_callbacks& callbacks) {
  if (auto* done = std::get_if<action>(&first.next)) return std::move(*done); // no callback to await: no coroutine
  return drive(std::move(first), &callbacks);
}

awaitable<action> connection::drive(step next, const detail::connection_callbacks* callbacks) {
  for (;;) {
    if (auto* done = std::get_if<action>(&next.next)) co_return std::move(*done);
    if (auto* c = std::get_if<step::run_connect>(&next.next)) {
      const std::optional<duration> idle = c->idle;
      std::optional<connect_result> result = co_await attempt(std::move(c->info), callbacks);
      next = result ? after_connect(std::move(*result), idle) : connect_timed_out(idle);
    } else {
      auto& d = std::get<step::run_disconnect>(next.next);
      const std::optional<duration> idle = d.idle;
      disconnect_result result = co_await run_disconnect(std::move(d.info), callbacks);
      next = after_disconnect(std::move(result), idle);
    }
  }
}

/// A directive from init or a handler. What it may do depends on the state,
/// so these are the checks left to run time.
connection::step connection::on_request(detail::any_directive directive, std::optional<duration> idle) {
  return std::visit(
      overloaded{
          [&](connect_directive& c) -> step {
            return {step::run_connect{std::move(c.info), idle_of(c.idle_timeout(), idle)}};
          },
          [&](disconnect_directive& d) -> step {
            cancel_timer();
            enter(connection_state::disconnected, describe(d.info));
            return {step::run_disconnect{std::move(d.info), idle_of(d.idle_timeout(), idle)}};
          },
          [&](backoff_directive& b) -> step {
            if (state_ == connection_state::connected) {
              throw grove::error(errc::bad_directive,
                                 "a handler returned grove::backoff() while connected; return grove::disconnect(info) "
                                 "and back off from disconnect()");
            }
            return {schedule(b.delay, idle_of(b.idle_timeout(), idle), {})};
          },
          [&](noconnect_directive& n) -> step {
            if (state_ == connection_state::connected) {
              throw grove::error(errc::bad_directive,
                                 "a handler returned grove::noconnect() while connected; it is for disconnect() (or a "
                                 "handler while disconnected)");
            }
            if (state_ != connection_state::disconnected) {
              cancel_timer();
              enter(connection_state::disconnected, {});
            }
            return {with_idle(action{}, idle_of(n.idle_timeout(), idle))};
          },
      },
      directive);
}

connection::step connection::after_connect(connect_result result, std::optional<duration> idle) {
  return std::visit(overloaded{
                        [&](action& a) -> step {
                          if (a.has_directive()) {
                            throw grove::error(errc::bad_directive,
                                               "connect() returned a directive inside a grove::action; it returns "
                                               "{} when connected, grove::backoff() or grove::stop()");
                          }
                          if (a.stops()) return {std::move(a)}; // gave up: not connected
                          return {connected(with_idle(std::move(a), idle))};
                        },
                        [&](backoff_directive& b) -> step {
                          ++failures_;
                          return {schedule(b.delay, idle_of(b.idle_timeout(), idle), "connect failed")};
                        },
                    },
                    result.value());
}

connection::step connection::connect_timed_out(std::optional<duration> idle) {
  ++failures_;
  return {schedule(std::nullopt, idle, "connect timed out after " + seconds_text(options_.connect_timeout))};
}

connection::step connection::after_disconnect(disconnect_result result, std::optional<duration> idle) {
  return std::visit(
      overloaded{
          [&](action& a) -> step {
            if (a.has_directive()) {
              throw grove::error(errc::bad_directive,
                                 "disconnect() returned a directive inside a grove::action; it returns "
                                 "grove::connect(), grove::backoff(), grove::noconnect(), {} or grove::stop()");
            }
            return {with_idle(std::move(a), idle)}; // stay down, or stop
          },
          [&](connect_directive& c) -> step {
            return {step::run_connect{std::move(c.info), idle_of(c.idle_timeout(), idle)}};
          },
          [&](backoff_directive& b) -> step { return {schedule(b.delay, idle_of(b.idle_timeout(), idle), {})}; },
          [&](noconnect_directive& n) -> step { return {with_idle(action{}, idle_of(n.idle_timeout(), idle))}; },
      },
      result.value());
}

awaitable<std::optional<connect_result>> connection::attempt(message info,
                                                             const detail::connection_callbacks* callbacks) {
  cancel_timer();
  enter(connection_state::connecting, {});
  detail::callback_outcome<connect_result> o = callbacks->connect(*this, std::move(info));
  if (auto* ready = std::get_if<connect_result>(&o)) co_return std::move(*ready);
  awaitable<connect_result> pending = std::get<awaitable<connect_result>>(std::move(o));
  if (options_.connect_timeout >= forever) co_return co_await std::move(pending);

  // connect() races a timer; the loser is cancelled and waited for, so a
  // timed-out connect has unwound before the next step. A kill of this
  // process cancels both.
  auto executor = co_await asio::this_coro::executor;
  asio::steady_timer timer(executor, options_.connect_timeout);
  auto [order, failure, result, timer_error] =
      co_await asio::experimental::make_parallel_group(asio::co_spawn(executor, std::move(pending), asio::deferred),
                                                       timer.async_wait(asio::deferred))
          .async_wait(asio::experimental::wait_for_one(), asio::use_awaitable);
  (void)timer_error;
  if (order[0] == 0) {
    if (failure) std::rethrow_exception(failure);
    co_return std::move(result);
  }
  co_return std::nullopt;
}

awaitable<disconnect_result> connection::run_disconnect(message info, const detail::connection_callbacks* callbacks) {
  if (!callbacks->disconnect) co_return grove::backoff(); // without a disconnect(), back off by the policy
  detail::callback_outcome<disconnect_result> o = callbacks->disconnect(*this, std::move(info));
  if (auto* ready = std::get_if<disconnect_result>(&o)) co_return std::move(*ready);
  co_return co_await std::get<awaitable<disconnect_result>>(std::move(o));
}

// -- the call gate -----------------------------------------------------------

bool connection::admit(detail::envelope& call, bool ready) {
  if ((ready && state_ == connection_state::connected) || call.readiness == detail::served_when_not_ready) return true;
  auto policy = static_cast<when_not_ready>(call.readiness);
  if (policy == when_not_ready::server_default) policy = options_.calls_while_disconnected;
  if (policy == when_not_ready::wait) {
    hold(std::move(call));
  } else {
    call.reply->fail(connection_errc::disconnected);
  }
  return false;
}

bool connection::release(detail::envelope& out, bool ready) {
  if (held_head_ == held_.size() || state_ != connection_state::connected || !ready) return false;
  out = std::move(held_[held_head_++]);
  if (held_head_ == held_.size()) {
    held_.clear();
    held_head_ = 0;
  }
  return true;
}

/// Calls whose callers gave up are swept out whenever the queue doubles.
void connection::hold(detail::envelope call) {
  if (held_.size() >= held_compact_at_) {
    held_.erase(held_.begin(), held_.begin() + static_cast<std::ptrdiff_t>(held_head_));
    held_head_ = 0;
    std::erase_if(held_, [](const detail::envelope& e) { return e.reply->completed(); });
    held_compact_at_ = std::max<std::size_t>(16, held_.size() * 2);
  }
  held_.push_back(std::move(call));
}

action connection::connected(action result) {
  cancel_timer();
  failures_ = 0;
  options_.backoff.reset();
  enter(connection_state::connected, {});
  return result;
}

action connection::schedule(std::optional<duration> delay, std::optional<duration> idle_timeout, std::string reason) {
  cancel_timer();
  duration d = delay ? *delay : options_.backoff.next(random_);
  if (d < duration::zero()) d = duration::zero();
  last_delay_ = d;
  const auto now = steady::now();
  if (d < forever) {
    retry_at_ = now + d;
    timer_ = send_after(self(), d, detail::backoff_timer{generation_});
  } else {
    retry_at_ = steady::time_point::max();
  }
  enter(connection_state::backing_off, std::move(reason), now);
  return with_idle(action{}, idle_timeout);
}

void connection::cancel_timer() noexcept {
  if (timer_) grove::cancel_timer(timer_);
  timer_ = {};
  ++generation_;
}

void report_connection_event(const connection_event& e) {
  event_level level = event_level::debug;
  if (e.state == connection_state::connected) level = event_level::info;
  if ((e.state == connection_state::disconnected || e.state == connection_state::backing_off) && !e.reason.empty()) {
    level = event_level::warning;
  }
  std::vector<event_field> fields{{"connection", e.connection.to_string()},
                                  {"previous", std::string(to_string(e.previous))},
                                  {"failures", std::to_string(e.failures)}};
  if (e.state == connection_state::backing_off) {
    fields.push_back(
        {"backoff_ms", std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(e.backoff).count())});
  }
  if (!e.reason.empty()) fields.push_back({"reason", e.reason});
  grove::emit(event{.level = level, .layer = "connection", .name = std::string(to_string(e.state)), .fields = std::move(fields)});
}

namespace detail {

/// A connection's series (labels node, and state or result).
struct connection_series {
  struct families {
    explicit families(telemetry::metric_registry& r)
        : states(r.make_gauge("grove_connections", "Connection processes, by state.", {"node", "state"})),
          attempts(r.make_counter("grove_connection_attempts_total", "Connects tried, by result (ok, failed).",
                                  {"node", "result"})),
          backoff(r.make_histogram("grove_connection_backoff_seconds", "Backoff delays scheduled before a reconnect.",
                                   {"node"}, telemetry::histogram_options::nanoseconds_as_seconds())) {}
    telemetry::gauge_family states;
    telemetry::counter_family attempts;
    telemetry::histogram_family backoff;
  };

  connection_series(telemetry::metric_registry& r, const std::string& node) {
    auto& f = r.part<families>();
    for (auto s : {connection_state::disconnected, connection_state::connecting, connection_state::connected,
                   connection_state::backing_off}) {
      states[static_cast<std::size_t>(s)] = f.states.with({node, to_string(s)});
    }
    connected = f.attempts.with({node, "ok"});
    failed = f.attempts.with({node, "failed"});
    backoff = f.backoff.with({node});
  }

  std::array<telemetry::gauge, 4> states;
  telemetry::counter connected, failed;
  telemetry::histogram backoff;
};

} // namespace detail

connection::~connection() {
  if (metrics_) metrics_->states[static_cast<std::size_t>(state_)].sub(1);
}

void connection::enter(connection_state next, std::string reason, std::chrono::steady_clock::time_point now) {
  const connection_state previous = state_;
  state_ = next;
  if (!metrics_looked_up_) {
    metrics_looked_up_ = true;
    if (telemetry::metric_registry* r = this_process().node().metrics()) {
      metrics_ = std::make_shared<const detail::connection_series>(*r, std::to_string(this_process().node().id()));
      metrics_->states[static_cast<std::size_t>(previous)].add(1); // counted from its start
    }
  }
  if (metrics_) {
    metrics_->states[static_cast<std::size_t>(previous)].sub(1);
    metrics_->states[static_cast<std::size_t>(next)].add(1);
    if (previous == connection_state::connecting) (next == connection_state::connected ? metrics_->connected : metrics_->failed).inc();
    if (next == connection_state::backing_off && last_delay_ < forever) {
      metrics_->backoff.observe(static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(last_delay_).count()));
    }
  }
  since_ = now;
  if (options_.status) {
    options_.status->store({next, since_, next == connection_state::backing_off ? retry_at_ : steady::time_point{},
                            failures_});
  }
  if (options_.on_event) {
    connection_event event;
    event.connection = self();
    event.state = next;
    event.previous = previous;
    event.at = std::chrono::system_clock::now();
    event.backoff = next == connection_state::backing_off ? last_delay_ : duration::zero();
    event.failures = failures_;
    event.reason = std::move(reason);
    options_.on_event(event);
  }
}

const std::error_category& connection_category() noexcept {
  static constexpr const char* messages[] = { // in the order of connection_errc
      "not connected: the connection is down and reconnecting (retry, or call with call_options{.if_not_ready = when_not_ready::wait} to wait for it)",
  };
  return detail::table_category_of<connection_errc::disconnected>("grove.connection", messages);
}

} // namespace grove
