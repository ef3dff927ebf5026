// etcd_registry benchmarks against a real etcd (Debian's etcd-server,
// started here on loopback ports with a temporary data directory):
// whereis from the watch-fed cache on 1 and 2 threads (10,000 names held
// by another node's registry, so every lookup is of a remote holder), and
// register + unregister through etcd (two transactions, each answered once
// the registry's own watch brought it back).
// Run: scripts/bench micro   (or build-release/tests/bench/etcd_registry_bench)
#include <grove/core/node.hpp>
#include <grove/etcd/etcd_registry.hpp>

#include "../etcd/etcd_server.hpp"

#include <benchmark/benchmark.h>

#include <memory>
#include <string>
#include <vector>

namespace {

constexpr std::size_t names = 10'000;

const std::vector<std::string>& keys() {
  static const std::vector<std::string> k = [] {
    std::vector<std::string> v;
    for (std::size_t i = 0; i < names; ++i) v.push_back("worker-" + std::to_string(i));
    return v;
  }();
  return k;
}

/// One etcd, and two nodes each with its registry: `owner` holds every
/// name, `reader` looks them up.
struct cluster {
  cluster() {
    owner_registry = owner.block_on(grove::etcd_registry::open(owner, client));
    reader_registry = reader.block_on(grove::etcd_registry::open(reader, client));
    holder = grove::spawn(owner, [](grove::process& self) -> grove::awaitable<void> { (void)co_await self.receive(); });
    owner.block_on([this](grove::process&) -> grove::awaitable<void> {
      for (const auto& k : keys()) co_await owner_registry->register_name(k, holder);
    });
    // The reader's cache catches up through its watch.
    while (reader_registry->revision() < owner_registry->revision()) std::this_thread::yield();
  }
  test_support::etcd_server server;
  grove::etcd::client client{grove::etcd::client_options{.endpoints = {server.url()}}};
  grove::node owner{{.threads = 1}};
  grove::node reader{{.threads = 1}};
  std::unique_ptr<grove::etcd_registry> owner_registry, reader_registry;
  grove::pid holder;
};

cluster& shared_cluster() {
  static auto* c = new cluster; // for every run of every benchmark (etcd keeps running until exit)
  return *c;
}

void BM_whereis_from_cache(benchmark::State& state) {
  auto& c = shared_cluster();
  std::size_t i = static_cast<std::size_t>(state.thread_index()) * 7919;
  std::size_t found = 0;
  for (auto _ : state) {
    found += c.reader_registry->whereis(keys()[i % names]) ? 1 : 0;
    ++i;
  }
  if (found != static_cast<std::size_t>(state.iterations())) state.SkipWithError("a name was not found");
  state.SetItemsProcessed(state.iterations());
}

void BM_register_unregister_through_etcd(benchmark::State& state) {
  auto& c = shared_cluster();
  std::size_t n = 0;
  c.reader.block_on([&](grove::process& self) -> grove::awaitable<void> {
    for (auto _ : state) {
      const std::string name = "bench-" + std::to_string(n++);
      co_await c.reader_registry->register_name(name, self.self());
      const bool removed = co_await c.reader_registry->unregister_name(name, self.self());
      if (!removed) state.SkipWithError("unregister found nothing");
    }
  });
  state.SetItemsProcessed(state.iterations());
}

} // namespace

BENCHMARK(BM_whereis_from_cache)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_register_unregister_through_etcd)->UseRealTime()->Unit(benchmark::kMicrosecond)->MinTime(2.0);

BENCHMARK_MAIN();
