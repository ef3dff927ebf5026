// Supervision benchmarks, each beside the same work done by hand with core
// grove (no supervisor), so a figure reads as the supervisor's own cost.
// Run: scripts/bench micro   (or build-release/tests/bench/supervisor_bench)
#include <grove/core/gen_server.hpp>
#include <grove/core/node.hpp>
#include <grove/supervisor/dynamic_supervisor.hpp>
#include <grove/supervisor/supervisor.hpp>

#include <benchmark/benchmark.h>

#include <vector>

using grove::awaitable;

namespace {

struct ping {
  using reply_type = int;
};
/// What a restarted child tells the benchmark: "I am up".
struct up {
  grove::pid who;
};

/// A child that announces itself to `watcher` from init and answers pings.
class pinger : public grove::gen_server {
public:
  explicit pinger(grove::pid watcher) : watcher_(watcher) {}
  void init() {
    if (watcher_) grove::send(watcher_, up{self()});
  }
  int handle_call(ping) { return 1; }

private:
  grove::pid watcher_;
};

/// state.range(0) workers: 1 shows the CPU cost alone, 2 adds the wake-up
/// of another worker's thread for every message that crosses workers.
grove::node_options bench_node(const benchmark::State& state) {
  grove::node_options o;
  o.threads = static_cast<std::size_t>(state.range(0));
  o.events = nullptr;
  return o;
}

void on_one_and_two_workers(benchmark::internal::Benchmark* b) {
  b->Arg(1)->Arg(2)->ArgName("workers")->UseRealTime();
}

awaitable<grove::pid> next_up(grove::process& self) {
  for (;;) {
    grove::message m = co_await self.receive();
    if (auto* u = m.get_if<up>()) co_return u->who;
  }
}

awaitable<void> await_down(grove::process& self, grove::monitor_ref ref) {
  for (;;) {
    grove::message m = co_await self.receive();
    if (auto* d = m.get_if<grove::down_message>(); d && d->ref == ref) co_return;
  }
}

// -- restart latency: child killed -> replacement running and answering ------

awaitable<void> restart_by_supervisor(grove::process& self, benchmark::State* state) {
  std::vector<grove::child_spec> children{grove::server_child<pinger>("p", self.self())};
  grove::supervisor_options options;
  options.max_restarts = 1'000'000'000; // the benchmark restarts on purpose
  options.report = nullptr;
  grove::supervisor sup = co_await grove::supervisor::start_link(self.node(), children, options);
  grove::pid child = co_await next_up(self);
  for (auto _ : *state) {
    grove::exit(child, grove::exit_reason::kill());
    child = co_await next_up(self);
    benchmark::DoNotOptimize(co_await grove::server_ref<pinger>(child).call(ping{}));
  }
  self.unlink(sup.id());
  grove::exit(sup.id(), grove::exit_reason::shutdown());
}

/// The same by hand: monitor the child, see it die, start a new one.
awaitable<void> restart_by_hand(grove::process& self, benchmark::State* state) {
  grove::server_ref<pinger> child = co_await grove::start<pinger>(self.node(), grove::pid{});
  for (auto _ : *state) {
    const grove::monitor_ref ref = self.monitor(child.id());
    grove::exit(child.id(), grove::exit_reason::kill());
    co_await await_down(self, ref);
    child = co_await grove::start<pinger>(self.node(), grove::pid{});
    benchmark::DoNotOptimize(co_await child.call(ping{}));
  }
  grove::exit(child.id(), grove::exit_reason::kill());
}

void BM_restart_latency_supervisor(benchmark::State& state) {
  grove::node node{bench_node(state)};
  node.block_on([&state](grove::process& self) { return restart_by_supervisor(self, &state); });
}
BENCHMARK(BM_restart_latency_supervisor)->Apply(on_one_and_two_workers)->Unit(benchmark::kMicrosecond);

void BM_restart_latency_by_hand(benchmark::State& state) {
  grove::node node{bench_node(state)};
  node.block_on([&state](grove::process& self) { return restart_by_hand(self, &state); });
}
BENCHMARK(BM_restart_latency_by_hand)->Apply(on_one_and_two_workers)->Unit(benchmark::kMicrosecond);

// -- 10,000 children under a dynamic supervisor ----------------------------------

constexpr int children = 10'000;

/// near: the supervisor runs on the caller's worker (its children still go
/// round-robin over the node).
awaitable<void> start_under_dynamic_supervisor(grove::process& self, benchmark::State* state, bool near) {
  for (auto _ : *state) {
    grove::dynamic_supervisor_options options;
    options.report = nullptr;
    if (near) options.worker = self.self().worker();
    auto sup = co_await grove::dynamic_supervisor::start(self.node(), options);
    for (int i = 0; i < children; ++i) co_await sup.start_child<pinger>(grove::pid{});
    state->PauseTiming();
    const grove::monitor_ref ref = self.monitor(sup.id());
    grove::exit(sup.id(), grove::exit_reason::shutdown());
    co_await await_down(self, ref);
    state->ResumeTiming();
  }
  state->SetItemsProcessed(state->iterations() * children);
}

awaitable<void> start_by_hand(grove::process& self, benchmark::State* state) {
  std::vector<grove::pid> started;
  started.reserve(children);
  for (auto _ : *state) {
    for (int i = 0; i < children; ++i) {
      grove::start_options o;
      o.link = true; // as a supervisor's children are
      started.push_back((co_await grove::start<pinger>(self.node(), o, grove::pid{})).id());
    }
    state->PauseTiming();
    for (const grove::pid& p : started) {
      self.monitor(p);
      self.unlink(p);
      grove::exit(p, grove::exit_reason::kill());
    }
    for (std::size_t down = 0; down < started.size();) {
      grove::message m = co_await self.receive();
      if (m.is<grove::down_message>()) ++down;
    }
    started.clear();
    state->ResumeTiming();
  }
  state->SetItemsProcessed(state->iterations() * children);
}

awaitable<void> stop_dynamic_supervisor(grove::process& self, benchmark::State* state) {
  for (auto _ : *state) {
    state->PauseTiming();
    grove::dynamic_supervisor_options options;
    options.report = nullptr;
    auto sup = co_await grove::dynamic_supervisor::start(self.node(), options);
    for (int i = 0; i < children; ++i) co_await sup.start_child<pinger>(grove::pid{});
    const grove::monitor_ref ref = self.monitor(sup.id());
    state->ResumeTiming();
    grove::exit(sup.id(), grove::exit_reason::shutdown());
    co_await await_down(self, ref);
  }
  state->SetItemsProcessed(state->iterations() * children);
}

void BM_start_10k_children_dynamic_supervisor(benchmark::State& state) {
  grove::node node{bench_node(state)};
  node.block_on([&state](grove::process& self) { return start_under_dynamic_supervisor(self, &state, false); });
}
BENCHMARK(BM_start_10k_children_dynamic_supervisor)->Apply(on_one_and_two_workers)->Unit(benchmark::kMillisecond);

void BM_start_10k_children_dynamic_supervisor_on_callers_worker(benchmark::State& state) {
  grove::node node{bench_node(state)};
  node.block_on([&state](grove::process& self) { return start_under_dynamic_supervisor(self, &state, true); });
}
BENCHMARK(BM_start_10k_children_dynamic_supervisor_on_callers_worker)
    ->Arg(2)
    ->ArgName("workers")
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

void BM_start_10k_children_by_hand(benchmark::State& state) {
  grove::node node{bench_node(state)};
  node.block_on([&state](grove::process& self) { return start_by_hand(self, &state); });
}
BENCHMARK(BM_start_10k_children_by_hand)->Apply(on_one_and_two_workers)->Unit(benchmark::kMillisecond);

void BM_stop_10k_children_dynamic_supervisor(benchmark::State& state) {
  grove::node node{bench_node(state)};
  node.block_on([&state](grove::process& self) { return stop_dynamic_supervisor(self, &state); });
}
BENCHMARK(BM_stop_10k_children_dynamic_supervisor)->Apply(on_one_and_two_workers)->Unit(benchmark::kMillisecond);

} // namespace

BENCHMARK_MAIN();
