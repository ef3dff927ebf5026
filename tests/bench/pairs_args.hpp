// The command line shared by call_pairs.cpp and caf_call_pairs.cpp (no
// grove, no CAF here: each program links one of them).
//   --pairs P --workers W --calls N [--placement with_starter|round_robin]
// (--placement only where `with_placement`.)
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>

namespace bench {

struct pairs_args {
  long pairs = 1;
  long workers = 1;
  long calls = 100000;
  std::string placement = "with_starter";
};

[[noreturn]] inline void pairs_usage(const char* program, bool with_placement, const std::string& why) {
  std::fprintf(stderr, "%s: %s\nusage: %s --pairs P --workers W --calls N%s\n", program, why.c_str(), program,
               with_placement ? " [--placement with_starter|round_robin]" : "");
  std::exit(2);
}

inline pairs_args parse_pairs_args(int argc, char** argv, const char* program, bool with_placement) {
  pairs_args out;
  auto positive = [&](const std::string& flag, const char* text) {
    char* end = nullptr;
    const long v = std::strtol(text, &end, 10);
    if (!end || *end != '\0' || v <= 0) pairs_usage(program, with_placement, flag + ": expected a positive integer");
    return v;
  };
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) pairs_usage(program, with_placement, "missing a value after " + a);
    const char* v = argv[++i];
    if (a == "--pairs") {
      out.pairs = positive(a, v);
    } else if (a == "--workers") {
      out.workers = positive(a, v);
    } else if (a == "--calls") {
      out.calls = positive(a, v);
    } else if (a == "--placement" && with_placement) {
      out.placement = v;
      if (out.placement != "with_starter" && out.placement != "round_robin") {
        pairs_usage(program, with_placement, "--placement: expected with_starter or round_robin");
      }
    } else {
      pairs_usage(program, with_placement, "unknown flag " + a);
    }
  }
  return out;
}

} // namespace bench
