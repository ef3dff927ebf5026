// telemetry benchmarks: a counter increment and a histogram observation on
// 1 and 2 threads (each thread writes its own shard), beside a relaxed
// fetch_add on one shared atomic (what a naive counter does), and an
// event emitted with no handler and with one.
// Run: scripts/bench micro   (or build-release/tests/bench/telemetry_bench)
#include <grove/telemetry/events.hpp>
#include <grove/telemetry/metrics.hpp>

#include <benchmark/benchmark.h>

#include <atomic>

namespace {

using namespace grove::telemetry;

metric_registry& registry() {
  static auto* r = new metric_registry; // shared by every thread of every run
  return *r;
}

void BM_counter_inc(benchmark::State& state) {
  static const counter c = registry().make_counter("bench_calls_total", "Calls.", {"kind"}).with({"call"});
  for (auto _ : state) c.inc();
  state.SetItemsProcessed(state.iterations());
}

std::atomic<std::uint64_t> shared_count{0};

void BM_shared_atomic_fetch_add(benchmark::State& state) {
  for (auto _ : state) shared_count.fetch_add(1, std::memory_order_relaxed);
  state.SetItemsProcessed(state.iterations());
}

void BM_histogram_observe(benchmark::State& state) {
  static const histogram h =
      registry().make_histogram("bench_call_seconds", "Latency.", {}, histogram_options::nanoseconds_as_seconds()).with({});
  std::uint64_t x = 1;
  for (auto _ : state) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL; // (an LCG step: values spread over buckets, cheaply)
    h.observe(x >> 44);                                       // 0 to 1 M "ns"
  }
  state.SetItemsProcessed(state.iterations());
}

event_hub& hub() {
  static auto* h = [] {
    auto* made = new event_hub(nullptr);
    made->attach("count", {"bench.handled"}, [](std::string_view, measurements m, metadata) {
      benchmark::DoNotOptimize(m.data());
    });
    return made;
  }();
  return *h;
}

void BM_event_without_handler(benchmark::State& state) {
  const event_hub& h = hub();
  const measurement m[] = {{"duration", 1}};
  for (auto _ : state) h.execute("bench.unhandled", m);
  state.SetItemsProcessed(state.iterations());
}

void BM_event_with_one_handler(benchmark::State& state) {
  const event_hub& h = hub();
  const measurement m[] = {{"duration", 1}};
  for (auto _ : state) h.execute("bench.handled", m);
  state.SetItemsProcessed(state.iterations());
}

} // namespace

BENCHMARK(BM_counter_inc)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_shared_atomic_fetch_add)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_histogram_observe)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_event_without_handler)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_event_with_one_handler)->Threads(1)->Threads(2)->UseRealTime();

BENCHMARK_MAIN();
