// Core micro-benchmarks, each beside a bare Asio baseline run the same way
// (on a grove node's worker, driven by node.block_on), so a figure reads as a
// ratio. Run: scripts/bench micro   (or build/tests/bench/core_bench)
#include <grove/core/gen_server.hpp>
#include <grove/core/node.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <benchmark/benchmark.h>

#include <malloc.h>

#include <optional>
#include <vector>

namespace asio = boost::asio;
using grove::awaitable;

namespace {

constexpr int batch = 10000; // operations per benchmark iteration

// -- the bare baseline: two Asio coroutines ping-ponging through post --------

/// A one-waiter wake-up: notify() resumes the waiting coroutine through
/// one post. Its state is touched only on its own io_context's thread (the
/// waiter's): notify() may come from another thread.
class bare_signal {
public:
  explicit bare_signal(asio::io_context& io) : io_(io) {}

  void notify() {
    asio::post(io_, [this] {
      if (waiting_) {
        auto h = std::move(*waiting_);
        waiting_.reset();
        std::move(h)();
      } else {
        pending_ = true;
      }
    });
  }

  awaitable<void> wait() {
    if (pending_) {
      pending_ = false;
      co_return;
    }
    co_await asio::async_initiate<const asio::use_awaitable_t<>&, void()>(
        [this](auto h) { waiting_.emplace(std::move(h)); }, asio::use_awaitable);
  }

private:
  asio::io_context& io_;
  std::optional<asio::any_completion_handler<void()>> waiting_;
  bool pending_ = false;
};

awaitable<void> bare_server(bare_signal* in, bare_signal* out, int n) {
  for (int i = 0; i < n; ++i) {
    co_await in->wait();
    out->notify();
  }
}

awaitable<void> bare_client(bare_signal* to_server, bare_signal* from_server, int n) {
  for (int i = 0; i < n; ++i) {
    to_server->notify();
    co_await from_server->wait();
  }
}

awaitable<void> bare_round_trips(asio::io_context* client_io, asio::io_context* server_io, int n) {
  bare_signal to_server(*server_io), from_server(*client_io);
  // The server half runs on server_io; this coroutine is the client.
  asio::co_spawn(*server_io, bare_server(&to_server, &from_server, n), asio::detached);
  co_await bare_client(&to_server, &from_server, n);
}

// -- grove ------------------------------------------------------------------

struct ping {
  using reply_type = int;
  int n;
};
struct bump {};
struct sync {
  using reply_type = long;
};

class echo : public grove::gen_server {
public:
  int handle_call(ping p) { return p.n; }
  void handle_cast(bump) { ++count_; }
  long handle_call(sync) { return count_; }

private:
  long count_ = 0;
};

awaitable<void> grove_round_trips(grove::server_ref<echo> ref, int n) {
  for (int i = 0; i < n; ++i) benchmark::DoNotOptimize(co_await ref.call(ping{i}));
}

void report(benchmark::State& state) {
  state.SetItemsProcessed(state.iterations() * batch);
  // Seconds per operation, printed with an SI prefix (e.g. 1.1u = 1.1 µs).
  state.counters["per_op"] = benchmark::Counter(static_cast<double>(state.iterations() * batch),
                                                benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

void BM_bare_round_trip_same_executor(benchmark::State& state) {
  grove::node node{{.threads = 1}};
  for (auto _ : state) node.block_on(bare_round_trips(&node.context(0), &node.context(0), batch));
  report(state);
}

void BM_grove_call_same_executor(benchmark::State& state) {
  grove::node node{{.threads = 1}};
  auto ref = node.block_on(grove::start<echo>(node));
  for (auto _ : state) node.block_on(grove_round_trips(ref, batch));
  report(state);
}

void BM_bare_round_trip_across_executors(benchmark::State& state) {
  grove::node node{{.threads = 2}};
  for (auto _ : state) node.block_on(bare_round_trips(&node.context(0), &node.context(1), batch));
  report(state);
}

void BM_grove_call_across_executors(benchmark::State& state) {
  grove::node node{{.threads = 2}};
  grove::start_options on1;
  on1.worker = 1;
  auto ref = node.block_on(grove::start<echo>(node, on1)); // callers run on worker 0
  for (auto _ : state) node.block_on(grove_round_trips(ref, batch));
  report(state);
}

// -- casts: one-way messages --------------------------------------------------

awaitable<void> bare_posts(asio::io_context* io, int n) {
  long count = 0;
  for (int i = 0; i < n; ++i) asio::post(*io, [&count] { ++count; });
  co_await asio::post(*io, asio::use_awaitable); // after all of them ran
  benchmark::DoNotOptimize(count);
}

awaitable<void> grove_casts(grove::server_ref<echo> ref, int n) {
  for (int i = 0; i < n; ++i) ref.cast(bump{});
  benchmark::DoNotOptimize(co_await ref.call(sync{})); // after all of them ran
}

void BM_bare_post_throughput(benchmark::State& state) {
  grove::node node{{.threads = 1}};
  for (auto _ : state) node.block_on(bare_posts(&node.context(0), batch));
  report(state);
}

void BM_grove_cast_throughput(benchmark::State& state) {
  grove::node node{{.threads = 1}};
  auto ref = node.block_on(grove::start<echo>(node));
  for (auto _ : state) node.block_on(grove_casts(ref, batch));
  report(state);
}

// -- spawn + exit -------------------------------------------------------------

awaitable<void> bare_child(long* done) {
  ++*done;
  co_return;
}

awaitable<void> bare_spawns(asio::io_context* io, int n) {
  long done = 0;
  for (int i = 0; i < n; ++i) asio::co_spawn(*io, bare_child(&done), asio::detached);
  while (done < n) co_await asio::post(*io, asio::use_awaitable);
}

void BM_bare_co_spawn_and_finish(benchmark::State& state) {
  grove::node node{{.threads = 1}};
  for (auto _ : state) node.block_on(bare_spawns(&node.context(0), batch));
  report(state);
}

void BM_grove_spawn_and_exit(benchmark::State& state) {
  grove::node node{{.threads = 1}};
  for (auto _ : state) {
    node.block_on([](grove::process& self) -> awaitable<void> {
      grove::pid parent = self.self();
      for (int i = 0; i < batch; ++i) {
        grove::spawn(self.node(), [parent](grove::process&) -> awaitable<void> {
          grove::send(parent, 0);
          co_return;
        });
      }
      for (int i = 0; i < batch; ++i) co_await self.receive();
    });
  }
  report(state);
}

// -- memory per idle process --------------------------------------------------

std::size_t heap_in_use() { return mallinfo2().uordblks; }

void BM_memory_per_idle_process(benchmark::State& state) {
  constexpr int count = 10000;
  for (auto _ : state) {
    grove::node node{{.threads = 1}};
    node.block_on(grove::start<echo>(node)); // warm every allocator path once
    const std::size_t before = heap_in_use();
    std::vector<grove::pid> pids;
    pids.reserve(count);
    for (int i = 0; i < count; ++i) {
      pids.push_back(grove::spawn(node, [](grove::process& self) -> awaitable<void> { co_await self.receive(); }));
    }
    // Every process has run up to its receive once this round trip is done.
    node.block_on(grove::start<echo>(node));
    const std::size_t after = heap_in_use();
    state.counters["bytes_per_process"] =
        static_cast<double>(after - before - pids.capacity() * sizeof(grove::pid)) / count;
    std::vector<grove::server_ref<echo>> servers;
    const std::size_t before_servers = heap_in_use();
    for (int i = 0; i < count; ++i) servers.push_back(node.block_on(grove::start<echo>(node)));
    node.block_on(grove::start<echo>(node));
    const std::size_t after_servers = heap_in_use();
    state.counters["bytes_per_gen_server"] =
        static_cast<double>(after_servers - before_servers - servers.capacity() * sizeof(grove::server_ref<echo>)) /
        count;
  }
}

} // namespace

BENCHMARK(BM_bare_round_trip_same_executor)->UseRealTime();
BENCHMARK(BM_grove_call_same_executor)->UseRealTime();
BENCHMARK(BM_bare_round_trip_across_executors)->UseRealTime();
BENCHMARK(BM_grove_call_across_executors)->UseRealTime();
BENCHMARK(BM_bare_post_throughput)->UseRealTime();
BENCHMARK(BM_grove_cast_throughput)->UseRealTime();
BENCHMARK(BM_bare_co_spawn_and_finish)->UseRealTime();
BENCHMARK(BM_grove_spawn_and_exit)->UseRealTime();
BENCHMARK(BM_memory_per_idle_process)->Iterations(1)->UseRealTime();

BENCHMARK_MAIN();
