#include <grove/telemetry/metrics.hpp>

#include <grove/core/error.hpp>

#include "../child_process.hpp"
#include "../temp_dir.hpp"

#include <doctest/doctest.h>

#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace grove::telemetry;

/// promtool (Prometheus's own linter) on `text`: its exit status (0 = valid).
int promtool_check(const std::string& text) {
  test_support::temp_dir dir("grove-promtool");
  const std::string file = dir.file("metrics.txt");
  std::ofstream(file) << text;
  return test_support::child_process::run({"sh", "-c", "promtool check metrics < '" + file + "'"});
}

bool contains(const std::string& text, const std::string& line) { return text.find(line) != std::string::npos; }

} // namespace

TEST_CASE("counters from two threads are exact: N increments on each, 2N counted") {
  metric_registry metrics;
  auto calls = metrics.make_counter("test_calls_total", "Calls.", {"kind"});
  const counter c = calls.with({"call"});
  constexpr std::uint64_t n = 1'000'000;
  std::thread a([c] {
    for (std::uint64_t i = 0; i < n; ++i) c.inc();
  });
  std::thread b([c] {
    for (std::uint64_t i = 0; i < n; ++i) c.inc();
  });
  a.join();
  b.join();
  CHECK(c.value() == 2 * n);
  CHECK(contains(metrics.prometheus_text(), "test_calls_total{kind=\"call\"} 2000000\n"));
  // A thread that ended keeps its count, and a later thread adds to it.
  std::thread([c] { c.inc(5); }).join();
  CHECK(c.value() == 2 * n + 5);
}

TEST_CASE("a gauge is set, or moved with add from any thread; its value is the two together") {
  metric_registry metrics;
  const gauge g = metrics.make_gauge("test_things", "Things alive.").with({});
  g.set(10);
  CHECK(g.value() == 10);
  std::thread([g] {
    for (int i = 0; i < 1000; ++i) g.add(1);
    for (int i = 0; i < 400; ++i) g.sub(1);
  }).join();
  CHECK(g.value() == 610);
  g.set(-3); // set wins over what the shards held
  CHECK(g.value() == -3);
  g.add(5);
  CHECK(g.value() == 2);
  CHECK(contains(metrics.prometheus_text(), "# TYPE test_things gauge\ntest_things 2\n"));
}

TEST_CASE("histogram buckets hold their values, and the exposition is cumulative with _sum and _count") {
  for (std::uint64_t v : {0ULL, 1ULL, 2ULL, 3ULL, 4ULL, 5ULL, 7ULL, 8ULL, 9ULL, 1000ULL, 1023ULL, 1024ULL, 1025ULL,
                          (1ULL << 40) + 12345, ~0ULL}) {
    CAPTURE(v);
    const std::uint32_t b = histogram::bucket_of(v);
    REQUIRE(b < histogram::bucket_count);
    CHECK(v <= histogram::bucket_upper(b));
    if (b > 0) CHECK(v > histogram::bucket_upper(b - 1));
    if (v > 4) CHECK(static_cast<double>(histogram::bucket_upper(b)) <= static_cast<double>(v) * 1.25 + 1); // log-linear: < 25 % wide
  }
  for (int k = 0; k < 64; ++k) CHECK(histogram::bucket_upper(histogram::bucket_of(std::uint64_t{1} << k)) == std::uint64_t{1} << k);

  metric_registry metrics;
  auto family = metrics.make_histogram("test_latency_seconds", "Latency.", {"op"}, {1e-9, 10, 12});
  const histogram h = family.with({"get"});
  // 1000 ns (<= 1024), 1500 and 2048 (<= 2048), 3000 (<= 4096), 10^9 (+Inf).
  for (std::uint64_t v : {1000ULL, 1500ULL, 2048ULL, 3000ULL, 1'000'000'000ULL}) h.observe(v);
  CHECK(h.count() == 5);
  CHECK(h.sum() == 1'000'007'548ULL);
  CHECK(h.quantile(0.5) == 2048);
  const std::string text = metrics.prometheus_text();
  CHECK(contains(text, "# TYPE test_latency_seconds histogram\n"));
  CHECK(contains(text, "test_latency_seconds_bucket{op=\"get\",le=\"1.024e-06\"} 1\n"));
  CHECK(contains(text, "test_latency_seconds_bucket{op=\"get\",le=\"2.048e-06\"} 3\n"));
  CHECK(contains(text, "test_latency_seconds_bucket{op=\"get\",le=\"4.096e-06\"} 4\n"));
  CHECK(contains(text, "test_latency_seconds_bucket{op=\"get\",le=\"+Inf\"} 5\n"));
  CHECK(contains(text, "test_latency_seconds_sum{op=\"get\"} 1.00000754")); // (1.000007548, give or take the last bit)
  CHECK(contains(text, "test_latency_seconds_count{op=\"get\"} 5\n"));
}

TEST_CASE("histogram observations from two threads: the buckets sum to the count") {
  metric_registry metrics;
  const histogram h = metrics.make_histogram("test_sizes_bytes", "Sizes.", {}, histogram_options::bytes()).with({});
  auto work = [h](std::uint64_t seed) {
    std::uint64_t x = seed;
    for (int i = 0; i < 200'000; ++i) {
      x = x * 6364136223846793005ULL + 1442695040888963407ULL;
      h.observe(x >> 40);
    }
  };
  std::thread a(work, 1), b(work, 2);
  a.join();
  b.join();
  CHECK(h.count() == 400'000);
  const std::string text = metrics.prometheus_text();
  CHECK(contains(text, "test_sizes_bytes_bucket{le=\"+Inf\"} 400000\n"));
  CHECK(contains(text, "test_sizes_bytes_count 400000\n"));
  CHECK(promtool_check(text) == 0);
}

TEST_CASE("the exposition is valid Prometheus text: promtool accepts it, labels and help are escaped") {
  metric_registry metrics;
  metrics.make_counter("test_requests_total", "Requests served,\nby path \\ method.", {"path", "method"})
      .with({"/a \"quoted\"\npath", "GET"})
      .inc(3);
  metrics.make_counter("test_requests_total", "ignored: the family exists", {"path", "method"}).with({"/b", "PUT"}).inc();
  metrics.make_gauge("test_queue_depth", "Queue depth.").with({}).set(7);
  metrics.make_histogram("test_call_seconds", "Call latency.", {}, histogram_options::nanoseconds_as_seconds())
      .with({})
      .observe(2'000'000);
  metrics.add_collector("test_uptime_seconds", "Uptime.", metric_type::gauge, {"node"},
                        [] { return std::vector<sample>{{{"n1"}, 12.5}}; });
  const std::string text = metrics.prometheus_text();
  CHECK(contains(text, "# HELP test_requests_total Requests served,\\nby path \\\\ method.\n"));
  CHECK(contains(text, "test_requests_total{path=\"/a \\\"quoted\\\"\\npath\",method=\"GET\"} 3\n"));
  CHECK(contains(text, "test_requests_total{path=\"/b\",method=\"PUT\"} 1\n"));
  CHECK(contains(text, "test_uptime_seconds{node=\"n1\"} 12.5\n"));
  CHECK(text.find("test_call_seconds") < text.find("test_queue_depth")); // sorted by name
  CHECK(promtool_check(text) == 0);
  CHECK(promtool_check("test_bad{ 1\n") != 0); // (the check can fail)
}

TEST_CASE("collectors are asked at each scrape; one that throws leaves out only itself") {
  metric_registry metrics;
  int asked = 0;
  const auto id = metrics.add_collector("test_asked", "Times asked.", metric_type::counter, {},
                                        [&] { return std::vector<sample>{{{}, static_cast<double>(++asked)}}; });
  metrics.add_collector("test_broken", "Throws.", metric_type::gauge, {},
                        []() -> std::vector<sample> { throw std::runtime_error("down"); });
  CHECK(contains(metrics.prometheus_text(), "test_asked 1\n"));
  const std::string second = metrics.prometheus_text();
  CHECK(contains(second, "test_asked 2\n"));
  CHECK_FALSE(contains(second, "test_broken"));
  metrics.remove_collector(id);
  CHECK_FALSE(contains(metrics.prometheus_text(), "test_asked"));
}

TEST_CASE("bad names, label counts and redefinitions are refused, naming the metric and what was expected") {
  metric_registry metrics;
  CHECK_THROWS_WITH_AS(metrics.make_counter("9lives", "x"), doctest::Contains("metric \"9lives\": not a metric name"),
                       grove::error);
  CHECK_THROWS_WITH_AS(metrics.make_counter("ok_total", "x", {"__reserved"}),
                       doctest::Contains("label \"__reserved\""), grove::error);
  CHECK_THROWS_WITH_AS(metrics.make_histogram("h_seconds", "x", {"le"}), doctest::Contains("not le"), grove::error);
  auto family = metrics.make_counter("ok_total", "x", {"a", "b"});
  CHECK_THROWS_WITH_AS(family.with({"only one"}), doctest::Contains("metric ok_total: 1 label values (expected 2: a, b)"),
                       grove::error);
  CHECK_THROWS_WITH_AS(metrics.make_gauge("ok_total", "x", {"a", "b"}),
                       doctest::Contains("metric ok_total: already made as a counter with labels (a, b)"), grove::error);
  CHECK_THROWS_WITH_AS((metrics.make_histogram("h2_seconds", "x", {}, {1.0, 10, 5})),
                       doctest::Contains("exponents 10..5"), grove::error);
}

TEST_CASE("a new registry's series start at zero, though the cells they reuse were counted before") {
  {
    metric_registry first;
    first.make_counter("test_reused_total", "x").with({}).inc(41);
  }
  metric_registry second;
  const counter c = second.make_counter("test_reused_total", "x").with({});
  CHECK(c.value() == 0);
  c.inc();
  CHECK(c.value() == 1);
}
