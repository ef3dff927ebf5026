// The load client for grpc_echo_server: erps_load's three modes and output,
// on gRPC's own C++ client (callback API), so gRPC is measured with the
// client gRPC users run. Each connection is a channel of its own (a local
// subchannel pool: no sharing of one HTTP/2 connection).
//
//   grpc_load --port N --connections C --in-flight P [--size BYTES] [--seconds S] [--warmup S]
//   grpc_load --port N --connect-rate --connections C [--seconds S]
//   grpc_load --port N --idle COUNT [--seconds S]
//
// Every run is bounded by --seconds (plus warm-up) and stops by itself.
#include "echo.grpc.pb.h"
#include "../load_args.hpp"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

using clock_type = std::chrono::steady_clock;

[[noreturn]] void fail(const std::string& why) {
  std::fprintf(stderr, "grpc_load: %s\n", why.c_str());
  std::exit(1);
}

std::shared_ptr<grpc::Channel> open_channel(int port) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  auto channel = grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials(), args);
  if (!channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(10))) fail("could not connect");
  return channel;
}

double percentile(std::vector<std::uint32_t>& v, double p) {
  if (v.empty()) return 0;
  const auto k = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return v[k];
}

/// One call in flight on one channel, reissued as each completes.
struct slot {
  grove_bench::Echo::Stub* stub = nullptr;
  std::unique_ptr<grpc::ClientContext> context;
  grove_bench::Request request;
  grove_bench::Reply reply;
  clock_type::time_point sent;
};

struct calls_run {
  std::mutex mutex;
  std::condition_variable idle;
  std::vector<std::uint32_t> latencies;
  std::uint64_t counted = 0, replies = 0, outstanding = 0;
  std::atomic<std::uint64_t> next_id{1};
  clock_type::time_point measure_from, stop_at;
  std::string failure;

  void issue(slot& s) {
    s.context = std::make_unique<grpc::ClientContext>();
    s.request.set_id(next_id++);
    s.sent = clock_type::now();
    s.stub->async()->Call(s.context.get(), &s.request, &s.reply, [this, &s](grpc::Status status) { done(s, status); });
  }

  void done(slot& s, const grpc::Status& status) {
    const auto got = clock_type::now();
    bool again = false;
    {
      std::lock_guard lock(mutex);
      --outstanding;
      if (!status.ok()) {
        failure = status.error_message();
      } else {
        ++replies;
        if (s.sent >= measure_from && got <= stop_at) {
          ++counted;
          latencies.push_back(
              static_cast<std::uint32_t>(std::chrono::duration_cast<std::chrono::microseconds>(got - s.sent).count()));
        }
        again = got < stop_at && failure.empty();
        if (again) ++outstanding;
      }
      if (outstanding == 0) idle.notify_all();
    }
    if (again) issue(s);
  }
};

int run_calls(int port, int connections, int in_flight, std::size_t size, double seconds, double warmup) {
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  std::vector<std::unique_ptr<grove_bench::Echo::Stub>> stubs;
  for (int i = 0; i < connections; ++i) {
    channels.push_back(open_channel(port));
    stubs.push_back(grove_bench::Echo::NewStub(channels.back()));
  }
  calls_run run;
  std::vector<slot> slots(static_cast<std::size_t>(connections) * static_cast<std::size_t>(in_flight));
  const std::string value(size, 'x');
  const auto start = clock_type::now();
  run.measure_from = start + std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(warmup));
  run.stop_at = run.measure_from + std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(seconds));
  for (std::size_t i = 0; i < slots.size(); ++i) {
    slots[i].stub = stubs[i / static_cast<std::size_t>(in_flight)].get();
    slots[i].request.set_value(value);
  }
  {
    std::lock_guard lock(run.mutex);
    run.outstanding = slots.size();
  }
  for (auto& s : slots) run.issue(s);
  std::unique_lock lock(run.mutex);
  if (!run.idle.wait_until(lock, run.stop_at + std::chrono::seconds(10), [&] { return run.outstanding == 0; }))
    fail("calls still unanswered 10 s after the run ended");
  if (!run.failure.empty()) fail("a call failed: " + run.failure);
  std::printf("{\"mode\":\"calls\",\"connections\":%d,\"in_flight\":%d,\"size\":%zu,\"calls_per_second\":%.0f,"
              "\"p50_us\":%.0f,\"p99_us\":%.0f,\"p999_us\":%.0f,\"replies\":%llu}\n",
              connections, in_flight, size, static_cast<double>(run.counted) / seconds, percentile(run.latencies, 0.5),
              percentile(run.latencies, 0.99), percentile(run.latencies, 0.999),
              static_cast<unsigned long long>(run.replies));
  return 0;
}

void one_call(grove_bench::Echo::Stub& stub, const std::string& value) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grove_bench::Request request;
  request.set_id(1);
  request.set_value(value);
  grove_bench::Reply reply;
  const grpc::Status status = stub.Call(&context, request, &reply);
  if (!status.ok()) fail("a call failed: " + status.error_message());
  if (reply.value() != value) fail("a reply that is not the request");
}

int run_connect_rate(int port, int lanes, double seconds) {
  std::atomic<std::uint64_t> done{0};
  const auto start = clock_type::now();
  const auto stop_at = start + std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(seconds));
  std::vector<std::thread> threads;
  for (int i = 0; i < lanes; ++i) {
    threads.emplace_back([&] {
      while (clock_type::now() < stop_at) {
        auto stub = grove_bench::Echo::NewStub(open_channel(port));
        one_call(*stub, "x");
        ++done;
      }
    });
  }
  for (auto& t : threads) t.join();
  const double elapsed = std::chrono::duration<double>(clock_type::now() - start).count();
  std::printf("{\"mode\":\"connect_rate\",\"lanes\":%d,\"connections\":%llu,\"per_second\":%.0f}\n", lanes,
              static_cast<unsigned long long>(done.load()), static_cast<double>(done.load()) / elapsed);
  return 0;
}

int run_idle(int port, int count, double seconds) {
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  for (int i = 0; i < count; ++i) {
    channels.push_back(open_channel(port));
    one_call(*grove_bench::Echo::NewStub(channels.back()), "x");
  }
  std::printf("{\"event\":\"idle\",\"connections\":%d}\n", count);
  std::fflush(stdout);
  // Held until the deadline, watching the first channel: a connection the
  // server drops fails the run.
  const auto deadline = std::chrono::system_clock::now() +
                        std::chrono::duration_cast<std::chrono::system_clock::duration>(std::chrono::duration<double>(seconds));
  while (std::chrono::system_clock::now() < deadline) {
    const grpc_connectivity_state state = channels.front()->GetState(false);
    if (state != GRPC_CHANNEL_READY && state != GRPC_CHANNEL_IDLE) fail("an idle connection was dropped");
    channels.front()->WaitForStateChange(state, deadline);
  }
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  const load_args::options o = load_args::parse(argc, argv, "grpc_load");
  const int port = static_cast<int>(o.port);
  if (o.idle > 0) return run_idle(port, static_cast<int>(o.idle), o.seconds);
  if (o.connect_rate) return run_connect_rate(port, static_cast<int>(o.connections), o.seconds);
  return run_calls(port, static_cast<int>(o.connections), static_cast<int>(o.in_flight), static_cast<std::size_t>(o.size),
                   o.seconds, o.warmup);
}
