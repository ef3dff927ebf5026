// libFuzzer target for the ETF decoder and encoder (built and run by
// scripts/fuzz with clang: -fsanitize=fuzzer,address,undefined).
#include "etf_fuzz.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return grove_fuzz::decode_etf(data, size);
}
