// Tenant benchmarks.
//  - The store: what one lifecycle change costs to commit (the record and
//    its event, one transaction), in memory and in SQLite with a disk sync
//    per commit, and an install's whole store traffic (commit, then
//    acknowledge the delivered event).
//  - The manager: a sync install + uninstall, with each store; fetch and
//    whereis on 1 and 2 threads beside a shared_mutex + unordered_map
//    holding the same records; memory per idle tenant.
// Run: scripts/bench micro   (or build-release/tests/bench/tenant_bench)
#include <grove/core/node.hpp>
#include <grove/tenant/manager.hpp>
#include <grove/tenant/sqlite_store.hpp>
#include <grove/tenant/store.hpp>

#include <benchmark/benchmark.h>

#include <stdlib.h> // mkdtemp
#include <unistd.h> // sysconf

#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace {

/// A store file in a fresh directory, removed afterwards.
class scratch {
public:
  scratch() {
    std::string pattern = (std::filesystem::temp_directory_path() / "grove-tenant-bench-XXXXXX").string();
    if (!::mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed");
    dir_ = pattern;
  }
  ~scratch() {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
  std::filesystem::path file() const { return dir_ / "tenants.db"; }

private:
  std::filesystem::path dir_;
};

grove::tenant_change install(std::uint64_t n) {
  grove::tenant_change c;
  const std::string id = "tenant-" + std::to_string(n);
  c.put = grove::tenant_record{.id = id,
                               .state = grove::tenant_state::running,
                               .config = {{"plan", "gold"}, {"region", "eu-west-1"}, {"limits", {{"rps", 100}}}},
                               .capabilities = {"read", "write"},
                               .generation = 1};
  c.events.push_back({.tenant = id, .kind = grove::tenant_event_kind::install, .generation = 1});
  return c;
}

template <class Open>
void commit_then_acknowledge(benchmark::State& state, Open open) {
  auto store = open();
  std::uint64_t n = 0;
  for (auto _ : state) {
    auto sequences = store->commit(install(++n));
    if (state.range(0) != 0) store->acknowledge(sequences);
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_memory_store(benchmark::State& state) {
  commit_then_acknowledge(state, [] { return std::make_unique<grove::memory_tenant_store>(); });
}

void BM_sqlite_store(benchmark::State& state) {
  scratch dir;
  commit_then_acknowledge(state, [&] { return std::make_unique<grove::sqlite_tenant_store>(dir.file()); });
}

// -- the manager ----------------------------------------------------------------

/// The least a tenant can be: its install succeeds at once.
class idle_tenant : public grove::tenant<nlohmann::json> {
public:
  grove::tenant_result<nlohmann::json> handle_install(const grove::tenant_info&) { return grove::tenant_ok(); }
};

grove::awaitable<void> install_uninstall(const grove::tenant_manager<idle_tenant>& m, int first, int count) {
  for (int i = first; i < first + count; ++i) {
    const std::string id = "tenant-" + std::to_string(i);
    grove::tenant_op in = co_await m.install(id);
    grove::tenant_op out = co_await m.uninstall(id);
    if (!in.ok() || !out.ok()) throw std::runtime_error("install / uninstall failed");
  }
}

/// Sync install + uninstall pairs per second; argument 0 = memory store, 1 = SQLite.
void BM_manager_install_uninstall(benchmark::State& state) {
  scratch dir;
  grove::tenant_manager_options o;
  if (state.range(0) == 1) o.store_file = dir.file();
  grove::node node{{.threads = 2, .events = nullptr}};
  grove::tenant_manager<idle_tenant> m(o);
  node.block_on(m.start(node));
  constexpr int batch = 32;
  int next = 0;
  for (auto _ : state) {
    node.block_on(install_uninstall(m, next, batch));
    next += batch;
  }
  node.block_on(m.stop());
  state.SetItemsProcessed(state.iterations() * batch);
}

constexpr int read_tenants = 1000;

std::vector<std::string> read_ids() {
  std::vector<std::string> ids;
  for (int i = 0; i < read_tenants; ++i) ids.push_back("tenant-" + std::to_string(i));
  return ids;
}

/// A manager holding read_tenants idle tenants, shared by the read
/// benchmarks' threads (built once, never torn down: the process ends).
struct read_fixture {
  read_fixture() {
    node.block_on(manager.start(node));
    node.block_on([this](grove::node&) -> grove::awaitable<void> {
      for (const std::string& id : ids) (void)co_await manager.install(id);
    });
    for (const grove::tenant_record& r : manager.list()) {
      baseline.emplace(r.id, std::make_shared<const view>(view{r, manager.whereis_pid(r.id)}));
    }
  }
  struct view {
    grove::tenant_record record;
    grove::pid process;
  };
  grove::node node{{.threads = 2, .events = nullptr}};
  grove::tenant_manager<idle_tenant> manager{grove::tenant_manager_options{}};
  std::vector<std::string> ids = read_ids();
  std::shared_mutex mutex;
  std::unordered_map<std::string, std::shared_ptr<const view>> baseline;
};

read_fixture& readers() {
  static read_fixture* f = new read_fixture; // leaked on purpose: threads of every run share it
  return *f;
}

void BM_whereis(benchmark::State& state) {
  read_fixture& f = readers();
  std::size_t i = static_cast<std::size_t>(state.thread_index()) * 7;
  for (auto _ : state) {
    benchmark::DoNotOptimize(f.manager.whereis_pid(f.ids[i++ % f.ids.size()]));
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_whereis_shared_mutex_map(benchmark::State& state) {
  read_fixture& f = readers();
  std::size_t i = static_cast<std::size_t>(state.thread_index()) * 7;
  for (auto _ : state) {
    std::shared_lock lock(f.mutex);
    auto it = f.baseline.find(f.ids[i++ % f.ids.size()]);
    benchmark::DoNotOptimize(it->second->process);
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_fetch(benchmark::State& state) {
  read_fixture& f = readers();
  std::size_t i = static_cast<std::size_t>(state.thread_index()) * 7;
  for (auto _ : state) {
    benchmark::DoNotOptimize(f.manager.fetch(f.ids[i++ % f.ids.size()]));
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_fetch_shared_mutex_map(benchmark::State& state) {
  read_fixture& f = readers();
  std::size_t i = static_cast<std::size_t>(state.thread_index()) * 7;
  for (auto _ : state) {
    std::optional<grove::tenant_record> copy;
    {
      std::shared_lock lock(f.mutex);
      auto it = f.baseline.find(f.ids[i++ % f.ids.size()]);
      copy = it->second->record;
    }
    benchmark::DoNotOptimize(copy);
  }
  state.SetItemsProcessed(state.iterations());
}

long resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  long pages = 0, resident = 0;
  statm >> pages >> resident;
  return resident * ::sysconf(_SC_PAGESIZE);
}

/// RSS growth per idle tenant (record, table entry, process) over 10,000.
void BM_memory_per_idle_tenant(benchmark::State& state) {
  constexpr int tenants = 10'000;
  for (auto _ : state) {
    grove::node node{{.threads = 2, .events = nullptr}};
    grove::tenant_manager<idle_tenant> m{grove::tenant_manager_options{}};
    node.block_on(m.start(node));
    const long before = resident_bytes();
    node.block_on([&m](grove::node&) -> grove::awaitable<void> {
      for (int i = 0; i < tenants; ++i) (void)co_await m.install("idle-" + std::to_string(i));
    });
    const long after = resident_bytes();
    state.counters["bytes_per_tenant"] = static_cast<double>(after - before) / tenants;
    node.block_on(m.stop());
  }
}

} // namespace

BENCHMARK(BM_manager_install_uninstall)->Arg(0)->Arg(1)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_whereis)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_whereis_shared_mutex_map)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_fetch)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_fetch_shared_mutex_map)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_memory_per_idle_tenant)->Iterations(1)->Unit(benchmark::kMillisecond);

// Argument: 0 = commit only, 1 = commit and acknowledge the event.
BENCHMARK(BM_memory_store)->Arg(0)->Arg(1);
BENCHMARK(BM_sqlite_store)->Arg(0)->Arg(1)->UseRealTime();

BENCHMARK_MAIN();
