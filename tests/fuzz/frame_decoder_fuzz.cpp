// libFuzzer target for the erps frame decoder (built and run by
// scripts/fuzz with clang: -fsanitize=fuzzer,address,undefined).
#include "frame_decoder_fuzz.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return grove_fuzz::decode_frames(data, size);
}
