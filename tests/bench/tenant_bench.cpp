// Tenant store benchmarks: what one lifecycle change costs to commit (the
// record and its event, one transaction), in memory and in SQLite with a
// disk sync per commit, and an install's whole store traffic (commit, then
// acknowledge the delivered event). The manager's own figures come with it.
// Run: scripts/bench   (or build-release/tests/bench/tenant_bench)
#include <grove/tenant/sqlite_store.hpp>
#include <grove/tenant/store.hpp>

#include <benchmark/benchmark.h>

#include <stdlib.h> // mkdtemp

#include <filesystem>
#include <memory>
#include <string>

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

} // namespace

// Argument: 0 = commit only, 1 = commit and acknowledge the event.
BENCHMARK(BM_memory_store)->Arg(0)->Arg(1);
BENCHMARK(BM_sqlite_store)->Arg(0)->Arg(1)->UseRealTime();

BENCHMARK_MAIN();
