#include <grove/remote_term/remote_term.hpp>

#include <grove/core/node.hpp>
#include <grove/core/testing.hpp>
#include <grove/supervisor/supervisor.hpp>
#include <grove/telemetry/events.hpp>

#include "../gate.hpp"
#include "../temp_dir.hpp"
#include "gzip.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using grove::awaitable;
using json = nlohmann::json;

namespace {

// -- test fetchers ---------------------------------------------------------------------

using test_support::gate;
using test_support::open_gate;
using test_support::pass;
using test_support::gzip;

/// Answers from a script the test changes: fail, or serve bytes with a
/// version; optionally waits at a gate first. Counts its fetches.
class scripted_fetcher final : public grove::term_fetcher {
public:
  std::string describe() const override { return "scripted"; }
  awaitable<grove::fetched> fetch(const std::string& known, const grove::fetch_limits&) override {
    ++fetches;
    grove::server_ref<gate> g;
    {
      std::lock_guard lock(mutex);
      g = gate_ref;
    }
    if (g) (void)co_await g.call(pass{}, grove::infinity);
    std::lock_guard lock(mutex);
    if (failures_left > 0) {
      --failures_left;
      throw grove::error(grove::remote_term_errc::fetch_failed, "scripted: the source is down");
    }
    if (known == version) co_return grove::fetched{.modified = false};
    co_return grove::fetched{.bytes = bytes, .version = version};
  }

  void serve(std::string b, std::string v) {
    std::lock_guard lock(mutex);
    bytes = std::move(b);
    version = std::move(v);
  }
  void fail(int n) {
    std::lock_guard lock(mutex);
    failures_left = n;
  }
  void hold_at(grove::server_ref<gate> g) {
    std::lock_guard lock(mutex);
    gate_ref = g;
  }

  std::atomic<int> fetches{0};

private:
  std::mutex mutex;
  std::string bytes = "{}";
  std::string version = "v1";
  int failures_left = 0;
  grove::server_ref<gate> gate_ref;
};

/// Serves "n|n|n|...": a new version each fetch, so a reader can tell a
/// whole value from a torn one.
class counting_fetcher final : public grove::term_fetcher {
public:
  std::string describe() const override { return "counting"; }
  awaitable<grove::fetched> fetch(const std::string&, const grove::fetch_limits&) override {
    const std::string n = std::to_string(++count_);
    std::string bytes;
    for (int i = 0; i < 8; ++i) bytes += n + "|";
    co_return grove::fetched{.bytes = std::move(bytes), .version = n};
  }

private:
  std::uint64_t count_ = 0;
};


/// Options for a std::string term that is never started.
grove::remote_term_options<std::string> json_free_options(std::string name) {
  grove::remote_term_options<std::string> o;
  o.name = std::move(name);
  o.fetcher = grove::static_fetcher("x", "1");
  return o;
}

void write_file(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
}

grove::remote_term_options<json> json_options(std::shared_ptr<grove::term_fetcher> f) {
  grove::remote_term_options<json> o;
  o.name = "flags";
  o.fetcher = std::move(f);
  o.retry_backoff = grove::backoff_policy::constant(1ms);
  return o;
}

/// A node whose events the test can read.
struct fixture {
  fixture() : node{{.threads = 2, .events = [this](const grove::event& e) { record(e); }}} {}
  void record(const grove::event& e) {
    std::lock_guard lock(mutex);
    events.push_back(grove::to_logfmt(e));
  }
  std::vector<std::string> seen() {
    std::lock_guard lock(mutex);
    return events;
  }
  std::mutex mutex;
  std::vector<std::string> events;
  grove::node node;
};

} // namespace

TEST_CASE("static_data_is_loaded_lazily_and_read_without_the_refresher") {
  fixture f;
  grove::remote_term<json> term(json_options(grove::static_fetcher(R"({"beta": true})", "7")));
  CHECK_FALSE(term.get()); // before the first load: empty, at once
  CHECK_FALSE(term.share());
  f.node.block_on([&](grove::node& n) -> awaitable<void> {
    co_await term.start(n);
    co_await term.await_first_load(20s);
    auto value = term.get();
    REQUIRE(value);
    CHECK((*value)["beta"] == true);
    CHECK(value.version() == "7");
    CHECK((*term.share())["beta"] == true);
    grove::term_outcome again = co_await term.refresh();
    CHECK(again.status == grove::term_status::not_modified);
    CHECK(again.version == "7");
    grove::term_stats s = term.stats();
    CHECK(s.attempts == 2);
    CHECK(s.updates == 1);
    CHECK(s.not_modified == 1);
    CHECK(s.version == "7");
    CHECK(s.last_success);
    CHECK_FALSE(s.next_delay); // no interval: update() only
    co_await term.stop();
  });
  CHECK(term.get()); // the last value stays readable after a stop
}

TEST_CASE("a_sync_start_returns_after_the_first_attempt_and_a_lazy_one_at_once") {
  fixture f;
  auto source = std::make_shared<scripted_fetcher>();
  auto o = json_options(source);
  o.sync_first_load = true;
  grove::remote_term<json> sync_term(o);
  auto held = std::make_shared<scripted_fetcher>();
  auto lazy_options = json_options(held);
  grove::remote_term<json> lazy(lazy_options);
  auto slow = std::make_shared<scripted_fetcher>();
  auto slow_options = json_options(slow);
  slow_options.sync_first_load = true;
  slow_options.start_timeout = 50ms;
  grove::remote_term<json> never(slow_options);
  f.node.block_on([&](grove::node& n) -> awaitable<void> {
    co_await sync_term.start(n);
    CHECK(sync_term.get()); // loaded when start returned

    auto g = co_await grove::start<gate>(n);
    held->hold_at(g);
    co_await lazy.start(n);
    CHECK_FALSE(lazy.get()); // returned at once; the first attempt waits at the gate
    g.cast(open_gate{});
    co_await lazy.await_first_load(20s);
    CHECK(lazy.get());

    auto closed = co_await grove::start<gate>(n);
    slow->hold_at(closed);
    auto started = co_await grove::testing::capture(never.start(n));
    CHECK(started.error() == grove::errc::timeout); // start_timeout; the term keeps trying
    CHECK_FALSE(never.get());
    closed.cast(open_gate{});
    co_await never.await_first_load(20s);
    CHECK(never.get());
    co_await sync_term.stop();
    co_await lazy.stop();
    co_await never.stop();
  });
}

TEST_CASE("a_failing_deserialize_stores_nothing_and_logs_the_name_and_reason") {
  fixture f;
  grove::remote_term<json> term(json_options(grove::static_fetcher("{not json", "1")));
  f.node.block_on([&](grove::node& n) -> awaitable<void> {
    co_await term.start(n);
    grove::term_outcome o = co_await term.refresh();
    CHECK(o.status == grove::term_status::failed);
    CHECK(o.error == grove::remote_term_errc::deserialize_failed);
    CHECK(o.reason.find("remote term flags: deserialize: ") == 0);
    CHECK_FALSE(term.get());
    co_await term.stop();
  });
  bool logged = false;
  for (const std::string& e : f.seen()) {
    if (e.find("layer=remote_term event=refresh_failed term=flags") != std::string::npos &&
        e.find("deserialize") != std::string::npos) {
      logged = true;
    }
  }
  CHECK(logged);
}

TEST_CASE("gzip_is_decompressed_by_its_magic_and_left_alone_when_turned_off") {
  fixture f;
  const std::string text = R"({"prices": [1, 2, 3]})";
  grove::remote_term<json> unzipped(json_options(grove::static_fetcher(gzip(text))));
  grove::remote_term_options<std::string> raw_options;
  raw_options.name = "raw";
  raw_options.fetcher = grove::static_fetcher(gzip(text));
  raw_options.decompress = false;
  grove::remote_term<std::string> raw(raw_options);
  f.node.block_on([&](grove::node& n) -> awaitable<void> {
    co_await unzipped.start(n);
    co_await raw.start(n);
    co_await unzipped.await_first_load(20s);
    co_await raw.await_first_load(20s);
    co_await unzipped.stop();
    co_await raw.stop();
  });
  CHECK((*unzipped.get())["prices"] == json::array({1, 2, 3}));
  CHECK(*raw.get() == gzip(text));
}

TEST_CASE("the_last_good_value_is_kept_and_failures_retry_with_backoff_then_the_interval") {
  fixture f;
  auto source = std::make_shared<scripted_fetcher>();
  source->serve(R"({"v": 1})", "v1");
  auto o = json_options(source);
  o.interval = 1h; // the next scheduled attempt is far away: only the retries run by themselves
  o.jitter = 0;
  o.retry_backoff = grove::backoff_policy::constant(3ms);
  grove::remote_term<json> term(o);
  f.node.block_on([&](grove::node& n) -> awaitable<void> {
    co_await term.start(n);
    co_await term.await_first_load(20s);
    CHECK(term.stats().next_delay == std::optional<grove::duration>(1h));
    source->serve("{broken", "v2");
    grove::term_outcome bad = co_await term.refresh();
    CHECK(bad.status == grove::term_status::failed);
    CHECK((*term.get())["v"] == 1); // kept
    CHECK(term.get().version() == "v1");
    CHECK(term.stats().next_delay == std::optional<grove::duration>(3ms)); // a retry, not the interval
    CHECK(term.stats().last_error.find("deserialize") != std::string::npos);
    // The source recovers; the retry (not an update) picks it up.
    source->serve(R"({"v": 3})", "v3");
    grove::term_outcome retried = co_await term.await_update(20s);
    while (retried.status == grove::term_status::failed) retried = co_await term.await_update(20s);
    CHECK(retried.status == grove::term_status::updated);
    CHECK((*term.get())["v"] == 3);
    CHECK(term.stats().next_delay == std::optional<grove::duration>(1h)); // back to the interval
    CHECK(term.stats().last_error.empty());
    co_await term.stop();
  });
}

TEST_CASE("updates_while_an_attempt_runs_share_one_timer_chain") {
  fixture f;
  auto source = std::make_shared<scripted_fetcher>();
  auto o = json_options(source);
  o.interval = 1h;
  o.jitter = 0;
  grove::remote_term<json> term(o);
  f.node.block_on([&](grove::node& n) -> awaitable<void> {
    co_await term.start(n);
    co_await term.await_first_load(20s);
    CHECK(source->fetches == 1);
    auto g = co_await grove::start<gate>(n);
    source->hold_at(g);
    term.update(); // this attempt waits at the gate...
    for (int i = 0; i < 20; ++i) term.update(); // ...while twenty more are asked for
    g.cast(open_gate{});
    grove::term_outcome answered = co_await term.refresh();
    CHECK(answered.status == grove::term_status::not_modified);
    // The first load and the held attempt; the twenty updates asked for
    // while it ran share one attempt (none if they came before it started),
    // and the refresh shares that one or gets its own: never 22.
    CHECK(source->fetches >= 2);
    CHECK(source->fetches <= 4);
    CHECK(term.stats().next_delay == std::optional<grove::duration>(1h));
    co_await term.stop();
  });
}

TEST_CASE("oversize_payloads_a_checksum_mismatch_and_a_slow_attempt_are_refused") {
  fixture f;
  auto big = json_options(grove::static_fetcher(std::string(2000, ' ') + "{}"));
  big.max_bytes = 1000;
  grove::remote_term<json> oversize(big);
  auto bomb = json_options(grove::static_fetcher(gzip(std::string(1'000'000, ' ') + "{}")));
  bomb.max_bytes = 100'000; // the compressed bytes fit; what they inflate to does not
  grove::remote_term<json> inflated(bomb);
  const std::string payload = R"({"ok": true})";
  auto wrong = json_options(grove::static_fetcher(payload));
  wrong.sha256 = std::string(64, 'a');
  grove::remote_term<json> mismatched(wrong);
  auto right = json_options(grove::static_fetcher(payload));
  right.sha256 = grove::detail::sha256_hex(payload);
  grove::remote_term<json> matched(right);
  auto source = std::make_shared<scripted_fetcher>();
  auto slow_options = json_options(source);
  slow_options.attempt_timeout = 30ms;
  grove::remote_term<json> slow(slow_options);
  f.node.block_on([&](grove::node& n) -> awaitable<void> {
    for (auto* t : {&oversize, &inflated, &mismatched, &matched}) co_await t->start(n);
    CHECK((co_await oversize.refresh()).error == grove::remote_term_errc::too_large);
    CHECK((co_await inflated.refresh()).error == grove::remote_term_errc::too_large);
    CHECK((co_await mismatched.refresh()).error == grove::remote_term_errc::checksum_mismatch);
    co_await matched.await_first_load(20s);
    CHECK(matched.get());
    auto never = co_await grove::start<gate>(n);
    source->hold_at(never); // a source that never answers
    co_await slow.start(n);
    grove::term_outcome timed_out = co_await slow.await_update(20s);
    CHECK(timed_out.error == grove::remote_term_errc::attempt_timeout);
    for (auto* t : {&oversize, &inflated, &mismatched, &matched, &slow}) co_await t->stop();
  });
  CHECK_FALSE(oversize.get());
  CHECK_FALSE(inflated.get());
  CHECK_FALSE(mismatched.get());
}

TEST_CASE("a_file_replaced_by_rename_is_read_whole_and_an_untouched_one_is_not_modified") {
  fixture f;
  test_support::temp_dir dir("grove-remote-term");
  const std::string path = dir.file("flags.json");
  write_file(path, R"({"v": 1})");
  grove::remote_term<json> by_metadata(json_options(grove::file_fetcher(path)));
  auto hashed = json_options(grove::file_fetcher(path, grove::file_version::content_hash));
  hashed.name = "hashed";
  grove::remote_term<json> by_hash(hashed);
  f.node.block_on([&](grove::node& n) -> awaitable<void> {
    co_await by_metadata.start(n);
    co_await by_hash.start(n);
    co_await by_metadata.await_first_load(20s);
    co_await by_hash.await_first_load(20s);
    CHECK((co_await by_metadata.refresh()).status == grove::term_status::not_modified);
    // A new file renamed over the old one.
    const std::string next = dir.file("flags.json.next");
    write_file(next, R"({"v": 2, "more": "data"})");
    REQUIRE(std::rename(next.c_str(), path.c_str()) == 0);
    CHECK((co_await by_metadata.refresh()).status == grove::term_status::updated);
    CHECK((*by_metadata.get())["v"] == 2);
    CHECK((co_await by_hash.refresh()).status == grove::term_status::updated);
    // The same bytes written again: a new inode and mtime, the same hash.
    const std::string same = dir.file("flags.json.same");
    write_file(same, R"({"v": 2, "more": "data"})");
    REQUIRE(std::rename(same.c_str(), path.c_str()) == 0);
    CHECK((co_await by_hash.refresh()).status == grove::term_status::not_modified);
    // Gone: a failure that keeps the value.
    std::remove(path.c_str());
    grove::term_outcome gone = co_await by_metadata.refresh();
    CHECK(gone.error == grove::remote_term_errc::fetch_failed);
    CHECK(gone.reason.find(path) != std::string::npos);
    CHECK((*by_metadata.get())["v"] == 2);
    co_await by_metadata.stop();
    co_await by_hash.stop();
  });
}

TEST_CASE("readers_on_two_threads_see_whole_values_while_it_is_republished_100000_times") {
  fixture f;
  grove::remote_term_options<std::string> o;
  o.name = "counter";
  o.fetcher = std::make_shared<counting_fetcher>();
  o.interval = std::chrono::nanoseconds(1); // republish as fast as it can
  o.jitter = 0;
  o.attempt_timeout = grove::infinity; // no helper process per attempt: the publishing is what is tested
  grove::remote_term<std::string> term(o);
  constexpr std::uint64_t target = 100'000;
  f.node.block_on(term.start(f.node));
  std::atomic<int> torn{0};
  auto reader = [&] {
    const auto deadline = std::chrono::steady_clock::now() + 120s;
    std::uint64_t last = 0;
    while (last < target && std::chrono::steady_clock::now() < deadline) {
      auto v = term.get();
      if (!v) continue;
      const std::string& s = *v;
      const std::string first = s.substr(0, s.find('|'));
      std::string expected;
      for (int i = 0; i < 8; ++i) expected += first + "|";
      if (s != expected || v.version() != first) torn.fetch_add(1);
      const std::uint64_t n = std::stoull(first);
      if (n < last) torn.fetch_add(1); // never goes back
      last = n;
    }
    return last;
  };
  std::uint64_t seen_a = 0, seen_b = 0;
  std::thread a([&] { seen_a = reader(); });
  std::thread b([&] { seen_b = reader(); });
  a.join();
  b.join();
  f.node.block_on(term.stop());
  CHECK(torn == 0);
  CHECK(seen_a >= target);
  CHECK(seen_b >= target);
}

TEST_CASE("copies_of_a_term_read_what_it_publishes_and_snapshots_released_in_any_order_stay_whole") {
  fixture f;
  grove::remote_term_options<std::string> o;
  o.name = "counter";
  o.fetcher = std::make_shared<counting_fetcher>();
  o.attempt_timeout = grove::infinity;
  grove::remote_term<std::string> term(o);
  auto copy = std::make_unique<grove::remote_term<std::string>>(term); // before the first load
  grove::remote_term<std::string> other(json_free_options("other"));
  grove::remote_term<std::string> reassigned(other);
  reassigned = term;
  f.node.block_on([&](grove::node& n) -> awaitable<void> {
    co_await term.start(n);
    co_await term.await_first_load(20s);
    CHECK(copy->get().version() == "1");
    CHECK(reassigned.get().version() == "1");
    CHECK_FALSE(other.get()); // never started: still empty, and not the term it was copied into
    // Two snapshots on this thread: the first takes the thread's held
    // pin, the second a nested one; each is released while the other
    // still reads.
    auto first = term.get();
    auto second = copy->get();
    grove::remote_term<std::string> moved(std::move(*copy));
    copy.reset();
    for (int i = 0; i < 20; ++i) (void)co_await term.refresh(20s); // retires and collects the old values
    CHECK(*first == "1|1|1|1|1|1|1|1|");
    first = {}; // the held pin goes first
    for (int i = 0; i < 20; ++i) (void)co_await term.refresh(20s);
    CHECK(*second == "1|1|1|1|1|1|1|1|"); // still pinned by the nested one
    CHECK(second.version() == "1");
    second = {};
    CHECK(moved.get().version() == "41");
    CHECK(reassigned.get().version() == "41");
    // The other order: nested released first, then the held one.
    auto outer = term.get();
    {
      auto inner = moved.get();
      CHECK(inner.version() == "41");
    }
    for (int i = 0; i < 20; ++i) (void)co_await term.refresh(20s);
    CHECK(*outer == "41|41|41|41|41|41|41|41|");
    outer = {};
    auto empty = other.get();
    CHECK_FALSE(empty);
    CHECK(empty.version().empty());
    co_await term.stop();
  });
  CHECK(term.stats().updates == 61);
}

TEST_CASE("each_attempt_is_a_span_seen_by_on_span_and_as_telemetry_events") {
  fixture f;
  auto source = std::make_shared<scripted_fetcher>();
  grove::telemetry::event_hub hub(nullptr);
  std::mutex mutex;
  std::vector<std::string> events, hooked;
  hub.attach("spans",
             {"grove.remote_term.refresh.start", "grove.remote_term.refresh.stop", "grove.remote_term.refresh.exception"},
             [&](std::string_view name, grove::telemetry::measurements m, grove::telemetry::metadata md) {
               std::string line = std::string(name);
               for (const auto& t : md) line += " " + std::string(t.key) + "=" + std::string(t.value);
               if (!m.empty()) line += m[0].value >= 0 ? " duration" : " negative";
               std::lock_guard lock(mutex);
               events.push_back(line);
             });
  auto o = json_options(source);
  o.events = &hub;
  o.on_span = [&](const grove::term_span& s) {
    std::lock_guard lock(mutex);
    hooked.push_back(std::string(s.name) + " " + std::to_string(static_cast<int>(s.what)) + " " +
                     std::string(grove::to_string(s.status)));
  };
  grove::remote_term<json> term(o);
  f.node.block_on([&](grove::node& n) -> awaitable<void> {
    co_await term.start(n);
    (void)co_await term.first_attempt(20s);
    source->fail(1);
    (void)co_await term.refresh(20s);
    co_await term.stop();
  });
  std::lock_guard lock(mutex);
  CHECK(events == std::vector<std::string>{
                      "grove.remote_term.refresh.start term=flags",
                      "grove.remote_term.refresh.stop term=flags status=updated duration",
                      "grove.remote_term.refresh.start term=flags",
                      "grove.remote_term.refresh.exception term=flags status=failed error=remote term flags: scripted: "
                      "the source is down duration",
                  });
  CHECK(hooked == std::vector<std::string>{"flags 0 failed", "flags 1 updated", "flags 0 failed", "flags 2 failed"});
}

TEST_CASE("bad_options_name_the_option") {
  auto o = json_options(grove::static_fetcher("{}"));
  o.name.clear();
  CHECK_THROWS_WITH_AS(grove::remote_term<json>{o}, doctest::Contains("remote_term_options.name"), grove::error);
  o = json_options(nullptr);
  CHECK_THROWS_WITH_AS(grove::remote_term<json>{o}, doctest::Contains("remote_term_options.fetcher"), grove::error);
  o = json_options(grove::static_fetcher("{}"));
  o.jitter = 2;
  CHECK_THROWS_WITH_AS(grove::remote_term<json>{o}, doctest::Contains("remote_term_options.jitter: 2"), grove::error);
  o = json_options(grove::static_fetcher("{}"));
  o.sha256 = "abc";
  CHECK_THROWS_WITH_AS(grove::remote_term<json>{o}, doctest::Contains("remote_term_options.sha256: abc"), grove::error);
  o = json_options(grove::static_fetcher("{}"));
  o.interval = grove::duration::zero();
  CHECK_THROWS_WITH_AS(grove::remote_term<json>{o}, doctest::Contains("remote_term_options.interval"), grove::error);
  struct custom {};
  grove::remote_term_options<custom> c;
  c.name = "c";
  c.fetcher = grove::static_fetcher("x");
  CHECK_THROWS_WITH_AS(grove::remote_term<custom>{c}, doctest::Contains("remote_term_options.deserialize: missing"),
                       grove::error);
}
