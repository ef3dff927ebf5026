// call_pairs.cpp's shape in CAF 0.17 (Debian's libcaf-dev), for
// scripts/bench-calls: P caller actors, each spawning its own server actor
// and sending it N requests, one in flight per caller.
//
//   caf_call_pairs --pairs P --workers W --calls N
//   prints {"system":"caf","pairs":P,"workers":W,"round_trips":R,"seconds":S,"per_second":X}
#include <caf/all.hpp>

#include "pairs_args.hpp"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace {

caf::behavior server(caf::event_based_actor*) {
  return {[](int n) { return n; }};
}

void next_call(caf::event_based_actor* self, caf::actor srv, long i, long calls, long sum) {
  if (i == calls) {
    if (sum < 0) std::abort(); // keeps the replies observed
    self->send_exit(srv, caf::exit_reason::user_shutdown);
    self->quit();
    return;
  }
  self->request(srv, caf::infinite, static_cast<int>(i & 0xffff)).then([=](int r) {
    next_call(self, srv, i + 1, calls, sum + r);
  });
}

caf::behavior caller(caf::event_based_actor* self, long calls) {
  caf::actor srv = self->spawn(server);
  next_call(self, srv, 0, calls, 0);
  return {[](const std::string&) {}}; // never sent: the actor lives on its requests
}

} // namespace

int main(int argc, char** argv) {
  const bench::pairs_args args = bench::parse_pairs_args(argc, argv, "caf_call_pairs", false);
  const long pairs = args.pairs, workers = args.workers, calls = args.calls;
  caf::actor_system_config cfg;
  cfg.set("scheduler.max-threads", static_cast<std::size_t>(workers));
  double seconds = 0;
  {
    caf::actor_system sys{cfg};
    const auto started = std::chrono::steady_clock::now();
    for (long p = 0; p < pairs; ++p) sys.spawn(caller, calls);
    sys.await_all_actors_done();
    seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  }
  const double trips = static_cast<double>(pairs) * static_cast<double>(calls);
  std::printf("{\"system\":\"caf\",\"pairs\":%ld,\"workers\":%ld,\"round_trips\":%.0f,\"seconds\":%.4f,\"per_second\":%.0f}\n",
              pairs, workers, trips, seconds, trips / seconds);
  return 0;
}
