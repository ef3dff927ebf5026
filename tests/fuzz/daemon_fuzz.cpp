// libFuzzer target for the daemon's whole request path (daemon_fuzz.hpp),
// built by scripts/fuzz with clang: -fsanitize=fuzzer,address,undefined.
#include "daemon_fuzz.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // For the process's life: libFuzzer ends it without unwinding.
  static grove_daemon_fuzz::rig* json_daemon = new grove_daemon_fuzz::rig(false);
  static grove_daemon_fuzz::rig* etf_daemon = new grove_daemon_fuzz::rig(true);
  return grove_daemon_fuzz::run_input(*json_daemon, *etf_daemon, data, size);
}
