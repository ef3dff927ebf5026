// The command line erps_load and grpc_load share (one load client per wire
// protocol, the same modes and output):
//   PROGRAM --port N (--connections C --in-flight P [--size B] | --connect-rate --connections C | --idle COUNT)
//           [--seconds S] [--warmup S]
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>

namespace load_args {

struct options {
  long port = -1, connections = 1, in_flight = 1, size = 48, idle = 0;
  double seconds = 5, warmup = 1;
  bool connect_rate = false;
};

[[noreturn]] inline void usage(const char* program, const std::string& why) {
  std::fprintf(stderr,
               "%s: %s\nusage: %s --port N (--connections C --in-flight P [--size B] | --connect-rate "
               "--connections C | --idle COUNT) [--seconds S] [--warmup S]\n",
               program, why.c_str(), program);
  std::exit(2);
}

/// Parses and bounds the options; prints the usage and exits on a bad one.
inline options parse(int argc, char** argv, const char* program) {
  options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--connect-rate") {
      o.connect_rate = true;
      continue;
    }
    if (i + 1 >= argc) usage(program, "missing a value after " + a);
    const char* v = argv[++i];
    char* end = nullptr;
    const double x = std::strtod(v, &end);
    if (!end || *end != '\0' || x < 0) usage(program, a + ": expected a non-negative number");
    if (a == "--port") o.port = static_cast<long>(x);
    else if (a == "--connections") o.connections = static_cast<long>(x);
    else if (a == "--in-flight") o.in_flight = static_cast<long>(x);
    else if (a == "--size") o.size = static_cast<long>(x);
    else if (a == "--idle") o.idle = static_cast<long>(x);
    else if (a == "--seconds") o.seconds = x;
    else if (a == "--warmup") o.warmup = x;
    else usage(program, "unknown flag " + a);
  }
  if (o.port <= 0 || o.port > 65535) usage(program, "--port: expected 1 to 65535");
  if (o.connections < 1 || o.connections > 100000 || o.in_flight < 1 || o.in_flight > 1024 || o.seconds <= 0 ||
      o.seconds > 600) {
    usage(program, "--connections 1..100000, --in-flight 1..1024, --seconds up to 600");
  }
  return o;
}

} // namespace load_args
