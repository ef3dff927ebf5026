#include <grove/remote_term/remote_term.hpp>

#include <grove/telemetry/events.hpp>
#include <grove/telemetry/metrics.hpp>

#include <grove/core/event.hpp>

#include <zlib.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <mutex>
#include <optional>
#include <vector>

namespace grove {

std::string_view to_string(term_status s) noexcept {
  switch (s) {
  case term_status::updated:
    return "updated";
  case term_status::not_modified:
    return "not_modified";
  case term_status::failed:
    return "failed";
  }
  return "unknown";
}

namespace detail {

namespace {

using steady = std::chrono::steady_clock;

/// The published value: readers load it lock-free; the refresher swaps it
/// and frees the old one once no reader can hold it.
class term_cell {
public:
  term_cell() = default;
  term_cell(const term_cell&) = delete;
  term_cell& operator=(const term_cell&) = delete;

  const term_value* load() const noexcept { return current_.load(std::memory_order_acquire); }

  /// Links a remote_term object's copy of the address, set to the value
  /// published now; publish() keeps it current until detach().
  void attach(term_mirror& m) {
    std::lock_guard lock(writer_);
    const term_value* now = current_.load(std::memory_order_relaxed);
    m.value.store(now ? now->raw() : nullptr, std::memory_order_release);
    m.prev = nullptr;
    m.next = mirrors_;
    if (mirrors_) mirrors_->prev = &m;
    mirrors_ = &m;
  }
  void detach(term_mirror& m) noexcept {
    std::lock_guard lock(writer_);
    (m.prev ? m.prev->next : mirrors_) = m.next;
    if (m.next) m.next->prev = m.prev;
    m.prev = m.next = nullptr;
    m.value.store(nullptr, std::memory_order_relaxed);
  }

  /// `value` is never null (make_value makes it).
  void publish(std::shared_ptr<term_value> value, std::string version) {
    const void* address = value->raw();
    if (static_cast<const char*>(address) - reinterpret_cast<const char*>(value.get()) != term_value_offset) {
      // Readers find the header at that distance (header_of); a compiler
      // laying term_value_of out otherwise would break them.
      throw grove::error(errc::invalid_argument, "remote term: the value is not at term_value_offset");
    }
    value->version = std::move(version); // before any reader can see it
    term_value* fresh = value.get();
    fresh->self = std::move(value); // the refresher's reference, kept on the value
    std::lock_guard lock(writer_);
    // Every copy of the address first, then the canonical one: the old
    // value is retired only once no object can lead a reader to it.
    for (term_mirror* m = mirrors_; m; m = m->next) m->value.store(address, std::memory_order_release);
    const term_value* old = current_.exchange(fresh, std::memory_order_acq_rel);
    if (old) retired_.retire(const_cast<term_value*>(old), &drop_reference);
    if (retired_.size() >= 8) retired_.collect();
  }

  ~term_cell() {
    if (const term_value* last = current_.load(std::memory_order_relaxed)) drop_reference(const_cast<term_value*>(last));
  }

private:
  /// No reader can be pinned on `p` any more: drops the refresher's
  /// reference (share()'s copies may keep the value on).
  static void drop_reference(void* p) {
    std::shared_ptr<const term_value> gone = std::move(static_cast<term_value*>(p)->self);
  }

  std::atomic<const term_value*> current_{nullptr};
  std::mutex writer_;
  term_mirror* mirrors_ = nullptr; // the remote_term objects' copies (under writer_)
  retired_list retired_;
};

} // namespace

struct remote_term_state {
  explicit remote_term_state(term_config c) : config(std::move(c)) {}

  term_config config;
  term_cell cell;

  mutable std::mutex mutex; // stats and the refresher's pid
  term_stats stats;
  pid refresher;

  pid get_pid() const {
    std::lock_guard lock(mutex);
    return refresher;
  }
  void set_pid(pid p) {
    std::lock_guard lock(mutex);
    refresher = p;
  }
};

namespace {

// -- the pipeline's pieces ------------------------------------------------------------

bool gzip_magic(std::string_view bytes) {
  return bytes.size() >= 2 && static_cast<unsigned char>(bytes[0]) == 0x1F &&
         static_cast<unsigned char>(bytes[1]) == 0x8B;
}

/// Inflates a gzip payload, refusing output over `max_bytes`.
std::string gunzip(std::string_view in, std::size_t max_bytes) {
  z_stream z{};
  if (inflateInit2(&z, 15 + 16) != Z_OK) {
    throw grove::error(remote_term_errc::decompress_failed, "gzip: zlib's inflateInit2 failed");
  }
  std::string out;
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  int rc = Z_OK;
  char chunk[64 * 1024];
  while (rc != Z_STREAM_END) {
    z.next_out = reinterpret_cast<Bytef*>(chunk);
    z.avail_out = sizeof chunk;
    rc = inflate(&z, Z_NO_FLUSH);
    if (rc != Z_OK && rc != Z_STREAM_END) {
      const std::string why = z.msg ? z.msg : "a truncated or damaged stream";
      inflateEnd(&z);
      throw grove::error(remote_term_errc::decompress_failed, "gzip: " + why);
    }
    out.append(chunk, sizeof chunk - z.avail_out);
    if (out.size() > max_bytes) {
      inflateEnd(&z);
      throw grove::error(remote_term_errc::too_large,
                         "gzip: decompresses to more than max_bytes (" + std::to_string(max_bytes) + ")");
    }
    if (rc == Z_OK && z.avail_in == 0 && z.avail_out != 0) {
      inflateEnd(&z);
      throw grove::error(remote_term_errc::decompress_failed, "gzip: the stream ends before its trailer");
    }
  }
  inflateEnd(&z);
  return out;
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

// -- the refresher ------------------------------------------------------------------------

struct attempt_due {
  std::uint64_t chain = 0;
};
struct update_now {
  steady::time_point asked_at;
};
struct refresh_request {
  using reply_type = term_outcome;
  steady::time_point asked_at;
};
struct next_outcome {
  using reply_type = term_outcome;
};
struct first_outcome {
  using reply_type = term_outcome;
};
struct loaded_request {
  using reply_type = bool;
};

/// A term's built-in metrics (labels node, term).
struct term_metrics {
  struct families {
    explicit families(telemetry::metric_registry& r)
        : attempts(r.make_counter("grove_remote_term_refreshes_total",
                                  "Refresh attempts, by status (updated, not_modified, failed).", {"node", "term", "status"})) {}
    telemetry::counter_family attempts;
  };

  term_metrics(telemetry::metric_registry& r, const std::string& node, std::shared_ptr<remote_term_state> state) {
    auto& f = r.part<families>();
    const std::string& term = state->config.name;
    for (auto s : {term_status::updated, term_status::not_modified, term_status::failed}) {
      by_status[static_cast<std::size_t>(s)] = f.attempts.with({node, term, to_string(s)});
    }
    age = telemetry::scoped_collector(
        r, "grove_remote_term_age_seconds", "Seconds since the source was last read successfully (absent before that).",
        telemetry::metric_type::gauge, {"node", "term"}, [node, state] {
          std::optional<std::chrono::system_clock::time_point> last;
          {
            std::lock_guard lock(state->mutex);
            last = state->stats.last_success;
          }
          std::vector<telemetry::sample> out;
          if (last) {
            const std::chrono::duration<double> age = std::chrono::system_clock::now() - *last;
            out.push_back({{node, state->config.name}, age.count()});
          }
          return out;
        });
  }

  std::array<telemetry::counter, 3> by_status;
  telemetry::scoped_collector age;
};

class refresher : public gen_server {
public:
  explicit refresher(std::shared_ptr<remote_term_state> state)
      : state_(std::move(state)), backoff_(state_->config.retry_backoff) {}

  void init() {
    state_->set_pid(self());
    this_process().set_label("remote term " + state_->config.name);
    if (telemetry::metric_registry* r = this_process().node().metrics()) {
      metrics_.emplace(*r, std::to_string(this_process().node().id()), state_);
    }
    schedule(duration::zero()); // the first attempt, at once
  }

  awaitable<void> handle_info(message m) {
    if (auto* due = m.get_if<attempt_due>(); due && due->chain == chain_) co_await attempt_and_schedule();
  }

  awaitable<void> handle_cast(update_now u) {
    // Asked for before the last attempt started: that attempt answered it.
    if (u.asked_at < last_started_) co_return;
    co_await attempt_and_schedule();
  }

  awaitable<term_outcome> handle_call(refresh_request r) {
    if (!(last_ && r.asked_at < last_started_)) co_await attempt_and_schedule();
    co_return *last_; // the attempt that started after it was asked for
  }

  call_result<term_outcome> handle_call(next_outcome, from<term_outcome> caller) {
    next_waiters_.push_back(std::move(caller));
    return noreply;
  }

  call_result<term_outcome> handle_call(first_outcome, from<term_outcome> caller) {
    if (first_) return *first_;
    next_waiters_.push_back(std::move(caller));
    return noreply;
  }

  call_result<bool> handle_call(loaded_request, from<bool> caller) {
    if (state_->cell.load()) return true;
    load_waiters_.push_back(std::move(caller));
    return noreply;
  }

  void terminate(const exit_reason&) {
    if (state_->get_pid() == self()) state_->set_pid(pid{});
  }

private:
  void schedule(duration delay) {
    if (timer_) cancel_timer(timer_);
    timer_ = send_after(self(), delay, attempt_due{++chain_});
  }

  duration jittered(duration interval) {
    const double spread = state_->config.jitter * (2.0 * random_.uniform() - 1.0);
    const double d = static_cast<double>(interval.count()) * (1.0 + spread);
    return duration(static_cast<duration::rep>(std::max(d, 0.0)));
  }

  awaitable<void> attempt_and_schedule() {
    // Whatever was scheduled is replaced by this attempt and what it schedules.
    if (timer_) cancel_timer(timer_);
    timer_ = {};
    ++chain_;
    last_started_ = steady::now();
    term_outcome outcome = co_await attempt();
    if (!first_) first_ = outcome;
    last_ = outcome;
    for (auto& w : next_waiters_) w.reply(outcome);
    next_waiters_.clear();
    if (state_->cell.load()) {
      for (auto& w : load_waiters_) w.reply(true);
      load_waiters_.clear();
    }
    std::optional<duration> next;
    if (outcome.status == term_status::failed) {
      next = backoff_.next(random_); // a retry, not a full interval
    } else {
      backoff_.reset();
      // The source's own freshness (an HTTP max-age, floored by the
      // fetcher) before the configured interval.
      if (refresh_hint_) next = jittered(*refresh_hint_);
      else if (state_->config.interval) next = jittered(*state_->config.interval);
    }
    {
      std::lock_guard lock(state_->mutex);
      state_->stats.next_delay = next;
    }
    if (next) schedule(*next);
  }

  /// The fetch, bounded by attempt_timeout: it runs in a helper process
  /// (linked, on this worker); past the timeout the helper is killed and
  /// waited for, so a fetch never overlaps the next one. A kill cancels
  /// whatever the fetch awaits (I/O, a timer, a grove call).
  awaitable<fetched> fetch_within_timeout(const std::string& known, const fetch_limits& limits) {
    std::shared_ptr<term_fetcher> fetcher = state_->config.fetcher;
    const duration limit = state_->config.attempt_timeout;
    if (limit == infinity) co_return co_await fetcher->fetch(known, limits);
    auto slot = std::make_shared<reply_slot<fetched>>();
    const pid helper = grove::spawn(
        this_process().node(),
        [slot, fetcher, known, limits](process&) -> awaitable<void> {
          try {
            fetched f = co_await fetcher->fetch(known, limits);
            slot->set(std::move(f));
          } catch (const grove::error& e) {
            slot->fail(e.code(), exit_reason::error(e.what()));
          } catch (const std::exception& e) {
            slot->fail(remote_term_errc::fetch_failed, exit_reason::error(fetcher->describe() + ": " + e.what()));
          }
        },
        spawn_options{.worker = self().worker(), .link = true});
    co_await await_reply(slot, limit);
    if (slot->error() == errc::timeout) {
      this_process().unlink(helper);
      (void)co_await await_exit(helper, infinity, exit_reason::kill());
      throw grove::error(remote_term_errc::attempt_timeout,
                         fetcher->describe() + ": no answer within attempt_timeout (" +
                             std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(limit).count()) +
                             " ms)");
    }
    co_return slot->take();
  }

  /// Runs the pipeline on fetched bytes and publishes; throws what failed.
  void publish(fetched f) {
    const term_config& c = state_->config;
    if (f.bytes.size() > c.max_bytes) {
      throw grove::error(remote_term_errc::too_large, c.fetcher->describe() + ": " + std::to_string(f.bytes.size()) +
                                                          " bytes, over max_bytes (" + std::to_string(c.max_bytes) +
                                                          ")");
    }
    const std::optional<std::string>& expected = c.sha256 ? c.sha256 : f.sha256;
    if (expected) {
      const std::string actual = sha256_hex(f.bytes);
      if (actual != lower(*expected)) {
        throw grove::error(remote_term_errc::checksum_mismatch,
                           "SHA-256 " + actual + ", expected " + lower(*expected));
      }
    }
    std::string bytes = c.decompress && gzip_magic(f.bytes) ? gunzip(f.bytes, c.max_bytes) : std::move(f.bytes);
    std::shared_ptr<term_value> value;
    try {
      value = c.make_value(bytes);
    } catch (const std::exception& e) {
      throw grove::error(remote_term_errc::deserialize_failed, std::string("deserialize: ") + e.what());
    }
    if (c.validate) {
      try {
        c.validate(value->raw());
      } catch (const std::exception& e) {
        throw grove::error(remote_term_errc::rejected, std::string("validate: ") + e.what());
      }
    }
    state_->cell.publish(std::move(value), std::move(f.version));
  }

  void span(term_span::phase what, term_status status, duration elapsed, std::string error) const {
    if (const telemetry::event_hub* hub = state_->config.events) telemetry_span(*hub, what, status, elapsed, error);
    const auto& hook = state_->config.on_span;
    if (!hook) return;
    try {
      hook(term_span{.name = state_->config.name, .what = what, .status = status, .elapsed = elapsed,
                     .error = std::move(error)});
    } catch (...) {
      // A span hook that throws must not fail the attempt.
    }
  }

  /// The span as grove.remote_term.refresh.{start,stop,exception} events.
  void telemetry_span(const telemetry::event_hub& hub, term_span::phase what, term_status status, duration elapsed,
                      const std::string& error) const {
    static constexpr std::string_view names[] = {"grove.remote_term.refresh.start", "grove.remote_term.refresh.stop",
                                                 "grove.remote_term.refresh.exception"};
    const std::string_view event = names[static_cast<int>(what)];
    if (!hub.has_handlers(event)) return;
    const telemetry::measurement took[] = {
        {"duration", static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(elapsed).count())}};
    const telemetry::tag with_status[] = {{"term", state_->config.name}, {"status", to_string(status)}, {"error", error}};
    const telemetry::measurements m = what == term_span::phase::start ? telemetry::measurements() : telemetry::measurements(took);
    const telemetry::metadata md = what == term_span::phase::start ? telemetry::metadata(with_status, 1)
                                                                   : telemetry::metadata(with_status, error.empty() ? 2 : 3);
    hub.execute(event, m, md);
  }

  awaitable<term_outcome> attempt() {
    const term_config& c = state_->config;
    const auto started = steady::now();
    span(term_span::phase::start, term_status::failed, {}, {});
    const term_value* held = state_->cell.load();
    const std::string known = held ? held->version : std::string();
    term_outcome out;
    refresh_hint_.reset();
    try {
      fetched f = co_await fetch_within_timeout(known, fetch_limits{c.max_bytes});
      refresh_hint_ = f.refresh_after;
      if (!f.modified) {
        out.status = term_status::not_modified;
        out.version = known;
      } else {
        out.version = f.version;
        publish(std::move(f));
        out.status = term_status::updated;
      }
    } catch (const grove::error& e) {
      out.status = term_status::failed;
      out.error = e.code();
      out.reason = e.what();
    } catch (const std::exception& e) {
      out.status = term_status::failed;
      out.error = remote_term_errc::fetch_failed;
      out.reason = c.fetcher->describe() + ": " + e.what();
    }
    const duration elapsed = steady::now() - started;
    if (out.status == term_status::failed) {
      out.reason = "remote term " + c.name + ": " + out.reason;
      const term_value* still = state_->cell.load();
      out.version = still ? still->version : std::string();
    }
    if (metrics_) metrics_->by_status[static_cast<std::size_t>(out.status)].inc();
    {
      std::lock_guard lock(state_->mutex);
      term_stats& s = state_->stats;
      ++s.attempts;
      switch (out.status) {
      case term_status::updated:
        ++s.updates;
        break;
      case term_status::not_modified:
        ++s.not_modified;
        break;
      case term_status::failed:
        ++s.failures;
        break;
      }
      if (out.status == term_status::failed) {
        s.last_error = out.reason;
      } else {
        s.last_error.clear();
        s.last_success = std::chrono::system_clock::now();
        s.version = out.version;
      }
    }
    if (out.status == term_status::failed) {
      span(term_span::phase::exception, out.status, elapsed, out.reason);
      grove::emit(event{.level = event_level::warning,
                        .layer = "remote_term",
                        .name = "refresh_failed",
                        .fields = {{"term", c.name}, {"reason", out.reason}}});
    } else {
      span(term_span::phase::stop, out.status, elapsed, {});
    }
    co_return out;
  }

  std::shared_ptr<remote_term_state> state_;
  backoff_policy backoff_;
  backoff_random random_;
  timer_ref timer_;
  std::optional<duration> refresh_hint_; ///< what the last attempt's source said about freshness
  std::uint64_t chain_ = 0;
  steady::time_point last_started_{};
  std::optional<term_outcome> first_;
  std::optional<term_outcome> last_;
  std::vector<from<term_outcome>> next_waiters_;
  std::vector<from<bool>> load_waiters_;
  std::optional<term_metrics> metrics_; // when the node has a registry
};

awaitable<pid> start_refresher(node& n, std::shared_ptr<remote_term_state> state, bool link) {
  start_options o;
  o.link = link;
  o.worker = state->config.worker;
  return start_untyped<refresher>(n, o, std::move(state));
}

server_ref<refresher> refresher_of(const remote_term_state& state) {
  const pid p = state.get_pid();
  if (!p) throw grove::error(errc::noproc, "remote term " + state.config.name + ": its refresher is not running");
  return server_ref<refresher>(p);
}

void check(const term_config& c) {
  auto bad = [](const std::string& what) { throw grove::error(errc::invalid_argument, "remote_term_options." + what); };
  if (c.name.empty()) bad("name: empty (expected a name for logs and telemetry)");
  if (!c.fetcher) bad("fetcher: missing (expected a term_fetcher: static_fetcher, file_fetcher, ...)");
  if (c.interval && *c.interval <= duration::zero()) bad("interval: not positive (expected a positive duration, or none)");
  if (!(c.jitter >= 0.0 && c.jitter <= 1.0)) bad("jitter: " + std::to_string(c.jitter) + " (expected 0 to 1)");
  if (c.start_timeout <= duration::zero()) bad("start_timeout: not positive (expected a positive duration)");
  if (c.max_bytes == 0) bad("max_bytes: 0 (expected at least 1)");
  if (c.attempt_timeout <= duration::zero()) bad("attempt_timeout: not positive (expected a positive duration, or grove::infinity)");
  if (c.sha256) {
    const std::string& h = *c.sha256;
    const bool hex = h.size() == 64 && std::all_of(h.begin(), h.end(), [](unsigned char ch) { return std::isxdigit(ch); });
    if (!hex) bad("sha256: " + h + " (expected 64 hex digits)");
  }
}

} // namespace

remote_term_base::remote_term_base(term_config config) {
  check(config);
  state_ = std::make_shared<remote_term_state>(std::move(config));
  state_->cell.attach(mirror_);
}

remote_term_base::remote_term_base(const remote_term_base& other) : state_(other.state_) { state_->cell.attach(mirror_); }

remote_term_base& remote_term_base::operator=(const remote_term_base& other) {
  if (state_ != other.state_) {
    state_->cell.detach(mirror_);
    state_ = other.state_;
    state_->cell.attach(mirror_);
  }
  return *this;
}

remote_term_base::~remote_term_base() { state_->cell.detach(mirror_); }

bool remote_term_base::loaded() const noexcept { return state_->cell.load() != nullptr; }

const std::string& remote_term_base::name() const noexcept { return state_->config.name; }

term_stats remote_term_base::stats() const {
  std::lock_guard lock(state_->mutex);
  return state_->stats;
}

awaitable<void> remote_term_base::start(node& n) const {
  const pid running = state_->get_pid();
  if (running && grove::alive(running)) {
    throw grove::error(errc::invalid_argument, "remote term " + state_->config.name + ": already running");
  }
  co_await start_refresher(n, state_, false);
  if (state_->config.sync_first_load) {
    server_ref<refresher> r = refresher_of(*state_);
    (void)co_await r.call(first_outcome{}, state_->config.start_timeout);
  }
}

awaitable<void> remote_term_base::stop(duration timeout) const {
  const pid p = state_->get_pid();
  if (!p) throw grove::error(errc::noproc, "remote term " + state_->config.name + ": not running");
  co_await grove::stop(p, exit_reason::shutdown(), timeout);
}

child_spec remote_term_base::child_spec(std::string id) const {
  auto state = state_;
  return grove::child_spec{.id = id.empty() ? state->config.name : std::move(id),
                           .start = child_start([state](node& n) { return start_refresher(n, state, true); })};
}

void remote_term_base::update() const {
  const pid p = state_->get_pid();
  if (p) server_ref<refresher>(p).cast(update_now{steady::now()});
}

awaitable<term_outcome> remote_term_base::refresh(duration timeout) const {
  server_ref<refresher> r = refresher_of(*state_);
  refresh_request request{steady::now()};
  term_outcome o = co_await r.call(std::move(request), timeout);
  co_return o;
}

awaitable<term_outcome> remote_term_base::await_update(duration timeout) const {
  server_ref<refresher> r = refresher_of(*state_);
  term_outcome o = co_await r.call(next_outcome{}, timeout);
  co_return o;
}

awaitable<term_outcome> remote_term_base::first_attempt(duration timeout) const {
  server_ref<refresher> r = refresher_of(*state_);
  term_outcome o = co_await r.call(first_outcome{}, timeout);
  co_return o;
}

awaitable<void> remote_term_base::await_first_load(duration timeout) const {
  if (loaded()) co_return;
  server_ref<refresher> r = refresher_of(*state_);
  (void)co_await r.call(loaded_request{}, timeout);
}

} // namespace detail

} // namespace grove
