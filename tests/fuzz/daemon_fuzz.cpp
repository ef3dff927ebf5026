// libFuzzer target for the daemon's whole request path (daemon_fuzz.hpp),
// built by scripts/fuzz with clang: -fsanitize=fuzzer,address,undefined.
#include "daemon_fuzz.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // For the process's life: libFuzzer ends it without unwinding.
  static grove_daemon_fuzz::rig* daemon = new grove_daemon_fuzz::rig();
  return grove_daemon_fuzz::run_one(*daemon, data, size);
}
