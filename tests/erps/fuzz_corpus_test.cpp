// Replays the frame decoder's fuzz seed corpus through the fuzz body in
// every ordinary build, so the corpus and the body stay in working order
// even where clang's libFuzzer is not run.
#include "../fuzz/frame_decoder_fuzz.hpp"

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

TEST_CASE("every seed of the frame decoder's fuzz corpus decodes without a failed check") {
  const std::filesystem::path corpus = std::filesystem::path(GROVE_SOURCE_ROOT) / "tests/fuzz/corpus/frame_decoder";
  std::size_t seeds = 0;
  for (const auto& entry : std::filesystem::directory_iterator(corpus)) {
    std::ifstream in(entry.path(), std::ios::binary);
    std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    CAPTURE(entry.path().filename().string());
    CHECK(grove_fuzz::decode_frames(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()) == 0);
    ++seeds;
  }
  CHECK(seeds >= 10);
}
