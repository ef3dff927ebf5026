// Replays the frame decoder's fuzz seed corpus through the fuzz body in
// every ordinary build, so the corpus and the body stay in working order
// even where clang's libFuzzer is not run.
#include "../fuzz/etf_fuzz.hpp"
#include "../fuzz/frame_decoder_fuzz.hpp"

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace {

/// Runs `body` (a fuzz body) on every seed of tests/fuzz/corpus/TARGET;
/// the number of seeds.
template <class Body>
std::size_t replay(const char* target, Body body) {
  const std::filesystem::path corpus = std::filesystem::path(GROVE_SOURCE_ROOT) / "tests/fuzz/corpus" / target;
  std::size_t seeds = 0;
  for (const auto& entry : std::filesystem::directory_iterator(corpus)) {
    std::ifstream in(entry.path(), std::ios::binary);
    std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    CAPTURE(entry.path().filename().string());
    CHECK(body(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()) == 0);
    ++seeds;
  }
  return seeds;
}

} // namespace

TEST_CASE("every seed of the frame decoder's fuzz corpus decodes without a failed check") {
  CHECK(replay("frame_decoder", grove_fuzz::decode_frames) >= 10);
}

TEST_CASE("every seed of the ETF decoder's fuzz corpus decodes or is refused, and round-trips") {
  CHECK(replay("etf", grove_fuzz::decode_etf) >= 20);
}

// The codec reads with simdjson and writes common values itself; both must
// agree with nlohmann alone on what is accepted, the value, and the text.
TEST_CASE("the JSON codec accepts, reads and writes exactly what nlohmann does") {
  using grove::erps::json;
  const auto& codec = grove::erps::json_codec();
  const std::vector<std::string> texts{
      R"({"op":"put","key":"k","value":[1,-2,3.5,true,false,null,"x"]})",
      "5", "-5", "0", "-0", "1.0", "1e2", "-1.5e-300", "1e400", "18446744073709551615", "18446744073709551616",
      "-9223372036854775808", "-9223372036854775809", "9223372036854775807", "9223372036854775808",
      R"("tab\tquote\"slash\\ nul\u0000 é 😀")", "\"\xc3\xa9\"", "\"\xff\"", "\"\xed\xa0\x80\"", R"("\ud800")",
      R"({"b":1,"a":2,"b":3})", R"({"":{"":[]}})", "[[[[[[]]]]]]", " [1 , 2] ", "[1,]", "{\"a\"}", "", " ", "nul",
      "[1] 2", "\"unterminated", "{\"a\":1}\x00", "01", "+1", ".5", "NaN", "[\"\x7f\"]", "\"\x1f\""};
  for (const auto& text : texts) {
    CAPTURE(text);
    CHECK(grove_fuzz::codec_disagreement(text) == "");
  }
  // Values built in code (not parsed) take the writer's fast paths too.
  const json built{{"s", std::string(20000, 'x')}, {"n", -7}, {"u", 7u}, {"bad", std::string("\xff\xfe")}, {"f", 0.1}};
  std::string written;
  codec.write_value(written, built);
  CHECK(written == built.dump(-1, ' ', false, json::error_handler_t::replace));
}
