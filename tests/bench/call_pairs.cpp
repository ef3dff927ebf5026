// Local call round trips: P caller processes, each starting its own
// gen_server and calling it N times, one call in flight per caller. The
// shape of CAF's and Erlang's call benchmarks (caf_call_pairs.cpp and
// call_pairs.erl beside this file run the same), so scripts/bench-calls can
// put the three side by side.
//
//   call_pairs --pairs P --workers W --calls N [--placement with_starter|round_robin]
//   (GROVE_BENCH_DIST=1: with a grove::dist running, to measure what its
//   route check costs local calls)
//   prints {"system":"grove","pairs":P,"workers":W,"round_trips":R,"seconds":S,"per_second":X}
//
// The clock runs from the first caller's start to the last caller's end
// (spawns included, as in the other two).
#include <grove/core/gen_server.hpp>
#include <grove/core/node.hpp>
#include <grove/dist/dist.hpp>

#include "pairs_args.hpp"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

using grove::awaitable;

namespace {

struct ping {
  using reply_type = int;
  int n;
};

class echo : public grove::gen_server {
public:
  int handle_call(ping p) { return p.n; }
};

struct done {};

} // namespace

int main(int argc, char** argv) {
  const bench::pairs_args args = bench::parse_pairs_args(argc, argv, "call_pairs", true);
  const long pairs = args.pairs, workers = args.workers, calls = args.calls;
  const grove::placement placement =
      args.placement == "round_robin" ? grove::placement::round_robin : grove::placement::with_starter;

  grove::node node{{.child_placement = placement, .threads = static_cast<std::size_t>(workers), .events = nullptr}};
  std::shared_ptr<grove::dist::instance> dist;
  if (const char* d = std::getenv("GROVE_BENCH_DIST"); d && std::strcmp(d, "1") == 0) {
    grove::dist::options o;
    o.cookie = "call-pairs";
    dist = node.block_on(grove::dist::start(node, o));
  }
  const auto started = std::chrono::steady_clock::now();
  node.block_on([&](grove::process& self) -> awaitable<void> {
    const grove::pid coordinator = self.self();
    for (long p = 0; p < pairs; ++p) {
      // Callers are spread over the workers; each caller's server goes where
      // the node's placement puts it: beside its caller (with_starter), or
      // the next worker round-robin, as grove placed every process before
      // placement existed (caller and server then alternate workers).
      grove::spawn_options where;
      if (placement == grove::placement::with_starter) where.worker = static_cast<std::size_t>(p) % node.size();
      grove::spawn(
          self.node(),
          [coordinator, calls](grove::process& me) -> awaitable<void> {
            auto server = co_await grove::start<echo>(me.node());
            long sum = 0;
            for (long i = 0; i < calls; ++i) sum += co_await server.call(ping{static_cast<int>(i & 0xffff)});
            if (sum < 0) std::abort(); // keeps the replies observed
            co_await grove::stop(server.id());
            grove::send(coordinator, done{});
          },
          where);
    }
    for (long p = 0; p < pairs; ++p) co_await self.receive();
  });
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  if (dist) dist->stop();
  const double trips = static_cast<double>(pairs) * static_cast<double>(calls);
  std::printf("{\"system\":\"grove\",\"pairs\":%ld,\"workers\":%zu,\"round_trips\":%.0f,\"seconds\":%.4f,\"per_second\":%.0f}\n",
              pairs, node.size(), trips, seconds, trips / seconds);
  return 0;
}
