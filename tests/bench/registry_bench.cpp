// Registry benchmarks: local_registry's lock-free whereis, its name table's
// writes, and a whole register + unregister through the registry's process,
// each beside a std::shared_mutex + std::unordered_map doing the same in the
// same binary (the obvious way to write a thread-safe name table).
// Run: scripts/bench micro   (or build-release/tests/bench/registry_bench)
#include <grove/core/node.hpp>
#include <grove/registry/detail/name_table.hpp>
#include <grove/registry/local_registry.hpp>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace {

constexpr std::size_t names = 10'000;

/// Every hardware thread (at least 2, so scaling shows even on one core).
int all_threads() { return static_cast<int>(std::max(2U, std::thread::hardware_concurrency())); }

const std::vector<std::string>& keys() {
  static const std::vector<std::string> k = [] {
    std::vector<std::string> v;
    for (std::size_t i = 0; i < names; ++i) v.push_back("worker-" + std::to_string(i));
    return v;
  }();
  return k;
}

/// The baseline: readers share a lock, writers take it exclusively.
class locked_map {
public:
  bool find(const std::string& key, std::uint64_t& out) const {
    std::shared_lock lock(mutex_);
    auto it = map_.find(key);
    if (it == map_.end()) return false;
    out = it->second;
    return true;
  }
  bool insert(const std::string& key, std::uint64_t value) {
    std::unique_lock lock(mutex_);
    return map_.emplace(key, value).second;
  }
  bool erase(const std::string& key) {
    std::unique_lock lock(mutex_);
    return map_.erase(key) > 0;
  }

private:
  mutable std::shared_mutex mutex_;
  std::unordered_map<std::string, std::uint64_t> map_;
};

using table = grove::detail::name_table<std::uint64_t>;

/// Both hold every name, built once and shared by the benchmark threads.
table& filled_table() {
  static table* t = [] {
    auto* fresh = new table;
    for (std::size_t i = 0; i < names; ++i) fresh->insert(keys()[i], i);
    return fresh;
  }();
  return *t;
}

locked_map& filled_locked_map() {
  static locked_map* m = [] {
    auto* fresh = new locked_map;
    for (std::size_t i = 0; i < names; ++i) fresh->insert(keys()[i], i);
    return fresh;
  }();
  return *m;
}

// -- whereis on 1 thread and on all (each thread walks the names from its own offset)

/// A node, a registry with every name registered to one idle process.
struct registry_fixture {
  grove::node node{{.threads = 1}};
  grove::local_registry names{node};
  grove::pid holder;
  registry_fixture() {
    holder = grove::spawn(node, [](grove::process& self) -> grove::awaitable<void> { co_await self.receive(); });
    for (std::size_t i = 0; i < ::names; ++i) node.block_on(names.register_name(keys()[i], holder));
  }
};

registry_fixture& filled_registry() {
  static registry_fixture* f = new registry_fixture; // lives to the end of the program
  return *f;
}

void BM_registry_whereis(benchmark::State& state) {
  const grove::local_registry& r = filled_registry().names;
  std::size_t i = static_cast<std::size_t>(state.thread_index()) * 4999;
  std::size_t found = 0;
  for (auto _ : state) {
    found += static_cast<bool>(r.whereis(keys()[i % names]));
    ++i;
  }
  benchmark::DoNotOptimize(found);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_registry_whereis)->Threads(1)->Threads(all_threads())->UseRealTime();

void BM_name_table_lookup(benchmark::State& state) {
  table& t = filled_table();
  std::size_t i = static_cast<std::size_t>(state.thread_index()) * 4999;
  std::uint64_t sum = 0;
  for (auto _ : state) {
    t.visit(keys()[i % names], [&](std::uint64_t v) { sum += v; });
    ++i;
  }
  benchmark::DoNotOptimize(sum);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_name_table_lookup)->Threads(1)->Threads(all_threads())->UseRealTime();

void BM_shared_mutex_map_lookup(benchmark::State& state) {
  locked_map& m = filled_locked_map();
  std::size_t i = static_cast<std::size_t>(state.thread_index()) * 4999;
  std::uint64_t sum = 0;
  for (auto _ : state) {
    std::uint64_t v = 0;
    if (m.find(keys()[i % names], v)) sum += v;
    ++i;
  }
  benchmark::DoNotOptimize(sum);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_shared_mutex_map_lookup)->Threads(1)->Threads(all_threads())->UseRealTime();

// -- register + unregister (one writer; the registry serialises writes) ------

void BM_name_table_insert_erase(benchmark::State& state) {
  table t;
  for (std::size_t i = 0; i < names; ++i) t.insert(keys()[i], i);
  std::size_t i = 0;
  for (auto _ : state) {
    const std::string& key = keys()[i % names];
    t.erase(key);
    t.insert(key, i);
    ++i;
  }
  state.SetItemsProcessed(state.iterations() * 2);
}
BENCHMARK(BM_name_table_insert_erase)->UseRealTime();

/// register_name + unregister_name from a process, each a call to the
/// registry's process (which monitors and unmonitors the owner too).
grove::awaitable<void> register_loop(grove::local_registry* r, benchmark::State* state) {
  std::size_t i = 0;
  for (auto _ : *state) {
    const std::string& key = keys()[i++ % names];
    co_await r->register_name(key);
    co_await r->unregister_name(key);
  }
}

void BM_registry_register_unregister(benchmark::State& state) {
  grove::node node{{.threads = 1}};
  grove::local_registry r(node);
  node.block_on([&](grove::process& self) -> grove::awaitable<void> {
    (void)self;
    co_await register_loop(&r, &state);
  });
  state.SetItemsProcessed(state.iterations() * 2);
}
BENCHMARK(BM_registry_register_unregister)->UseRealTime();

void BM_shared_mutex_map_register_unregister(benchmark::State& state) {
  locked_map m;
  for (std::size_t i = 0; i < names; ++i) m.insert(keys()[i], i);
  std::size_t i = 0;
  for (auto _ : state) {
    const std::string& key = keys()[i % names];
    m.erase(key);
    m.insert(key, i);
    ++i;
  }
  state.SetItemsProcessed(state.iterations() * 2);
}
BENCHMARK(BM_shared_mutex_map_register_unregister)->UseRealTime();

} // namespace

BENCHMARK_MAIN();
