// The grove side of the erps echo comparison (scripts/bench-erps): a
// grove::erps::daemon whose server's handle_call returns the request, on
// plain TCP, next to the hand-written erps_echo_server.cpp.
//
//   grove_echo_daemon [--port N] [--threads N] [--values payload|json]
//       prints {"event":"ready","port":N}; stops on SIGINT/SIGTERM
//
// --threads 0 (the default) is one worker per CPU the process may use.
// --values: payload (the default) echoes the request as the text it came
// as (erps/payloads.hpp); json parses it into an nlohmann::json and writes
// the reply from that (what a server of JSON values pays).
#include <grove/core/node.hpp>
#include <grove/erps/daemon.hpp>
#include <grove/erps/payloads.hpp>
#include <grove/erps/server.hpp>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <pthread.h>
#include <string>

namespace {

class echo_server : public grove::erps::server {
public:
  grove::erps::json handle_call(grove::erps::call c) { return std::move(c.request); }
};

class payload_echo_server : public grove::erps::payload_server {
public:
  grove::erps::payload handle_call(grove::erps::payload_call c) { return std::move(c.request); }
};

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr, "grove_echo_daemon: %s\nusage: grove_echo_daemon [--port N] [--threads N] [--values payload|json]\n",
               why);
  std::exit(2);
}

} // namespace

int main(int argc, char** argv) {
  unsigned long port = 0, threads = 0;
  bool json_values = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) usage(("missing a value after " + a).c_str());
    if (a == "--values") {
      const std::string v = argv[++i];
      if (v != "payload" && v != "json") usage("--values: expected payload or json");
      json_values = v == "json";
      continue;
    }
    char* end = nullptr;
    const unsigned long v = std::strtoul(argv[++i], &end, 10);
    if (!end || *end != '\0') usage((a + ": expected a number").c_str());
    if (a == "--port" && v <= 65535) {
      port = v;
    } else if (a == "--threads" && v <= 256) {
      threads = v;
    } else {
      usage(("unknown flag or value out of range: " + a).c_str());
    }
  }
  // The workers inherit a mask without SIGINT/SIGTERM: main waits for them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  grove::node node{{.threads = threads, .events = nullptr}};
  grove::erps::daemon_options options;
  options.port = static_cast<std::uint16_t>(port);
  options.max_connections = 0; // the idle-memory run opens 10,000
  options.link.log = nullptr;
  auto daemon = json_values ? node.block_on(grove::erps::daemon::start<echo_server>(node, options))
                            : node.block_on(grove::erps::daemon::start<payload_echo_server>(node, options));
  std::printf("{\"event\":\"ready\",\"port\":%u,\"workers\":%zu}\n", static_cast<unsigned>(daemon.port()), node.size());
  std::fflush(stdout);
  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  node.block_on(daemon.shutdown(std::chrono::seconds(2)));
  return 0;
}
