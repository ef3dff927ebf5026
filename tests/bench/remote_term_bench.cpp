// remote_term benchmarks: get() on 1 and 2 threads beside a plain
// std::atomic<T*> load of a value that never changes (the floor: no
// reclamation at all), and get() while the refresher republishes the value
// about a thousand times a second.
// Run: scripts/bench   (or build-release/tests/bench/remote_term_bench)
#include <grove/core/node.hpp>
#include <grove/remote_term/remote_term.hpp>

#include <benchmark/benchmark.h>

#include <atomic>
#include <memory>
#include <string>

namespace {

/// A term holding a small JSON object, loaded once; with `interval` it is
/// republished (a new version each time) at that pace.
class counting_fetcher final : public grove::term_fetcher {
public:
  std::string describe() const override { return "counting"; }
  grove::awaitable<grove::fetched> fetch(const std::string&, const grove::fetch_limits&) override {
    const std::string n = std::to_string(++count_);
    co_return grove::fetched{.bytes = R"({"plan": "gold", "limit": )" + n + "}", .version = n};
  }

private:
  std::uint64_t count_ = 0;
};

struct term_fixture {
  explicit term_fixture(std::optional<grove::duration> interval) : term(options(interval)) {
    node.block_on(term.start(node));
    node.block_on(term.await_first_load());
  }
  static grove::remote_term_options<nlohmann::json> options(std::optional<grove::duration> interval) {
    grove::remote_term_options<nlohmann::json> o;
    o.name = "bench";
    o.fetcher = std::make_shared<counting_fetcher>();
    o.interval = interval;
    o.jitter = 0;
    return o;
  }
  grove::node node{{.threads = 1, .events = nullptr}};
  grove::remote_term<nlohmann::json> term;
};

term_fixture& still_term() {
  static auto* f = new term_fixture(std::nullopt); // shared by every thread of every run
  return *f;
}

term_fixture& republished_term() {
  static auto* f = new term_fixture(std::chrono::milliseconds(1)); // ~1 kHz
  return *f;
}

void BM_get(benchmark::State& state) {
  auto& term = still_term().term;
  for (auto _ : state) {
    auto v = term.get();
    benchmark::DoNotOptimize(v.get());
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_get_republished_1khz(benchmark::State& state) {
  auto& term = republished_term().term;
  for (auto _ : state) {
    auto v = term.get();
    benchmark::DoNotOptimize(v.get());
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_share(benchmark::State& state) {
  auto& term = still_term().term;
  for (auto _ : state) benchmark::DoNotOptimize(term.share());
  state.SetItemsProcessed(state.iterations());
}

const nlohmann::json plain_value{{"plan", "gold"}};
std::atomic<const nlohmann::json*> plain_pointer{&plain_value};

void BM_atomic_pointer_load(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(plain_pointer.load(std::memory_order_acquire));
  state.SetItemsProcessed(state.iterations());
}

} // namespace

BENCHMARK(BM_get)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_atomic_pointer_load)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_share)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_get_republished_1khz)->Threads(1)->Threads(2)->UseRealTime();

BENCHMARK_MAIN();
