// The JSON codec's limits: a payload nested deeper than max_depth is refused
// while it is read, on both read paths (simdjson, and nlohmann for what
// simdjson leaves to it), with the limit named; ids are found without
// reading the body; writers refuse what they could not write safely.
#include <grove/erps/json_codec.hpp>

#include <doctest/doctest.h>

#include <string>

namespace {

using grove::erps::codec_error;
using grove::erps::decode_limits;
using grove::erps::json;

const grove::erps::basic_codec<grove::erps::json>& codec = grove::erps::json_codec();

std::string nested_arrays(std::size_t depth, std::string_view inside = "1") {
  return std::string(depth, '[') + std::string(inside) + std::string(depth, ']');
}

std::string nested_objects(std::size_t depth) {
  std::string text;
  for (std::size_t i = 0; i < depth; ++i) text += "{\"a\":";
  text += "1";
  text += std::string(depth, '}');
  return text;
}

// A value nested `depth` deep, built without a parse.
json nested_value(std::size_t depth) {
  json v = 1;
  for (std::size_t i = 0; i < depth; ++i) v = json::array({std::move(v)});
  return v;
}

} // namespace

TEST_CASE("a payload 100,000 levels deep is refused with the limit named, on both read paths") {
  for (const std::string& text : {nested_arrays(100'000), nested_objects(100'000),
                                  nested_arrays(100'000, "-0"), // "-0" sends it to nlohmann
                                  "[7," + nested_arrays(100'000) + "]"}) {
    CHECK_THROWS_WITH_AS(codec.read_value(text, {}), "value payload nests deeper than 128 levels (max_depth)",
                         codec_error);
    CHECK_THROWS_WITH_AS(codec.read_call(text, {}), "call payload nests deeper than 128 levels (max_depth)", codec_error);
    CHECK_THROWS_AS(codec.read_reply(text, {}), codec_error);
    CHECK_THROWS_AS(codec.read_error(text, {}), codec_error);
  }
}

TEST_CASE("the depth limit is exact: max_depth levels are read, one more is refused") {
  for (std::uint32_t limit : {1u, 2u, 128u, 1024u}) {
    CAPTURE(limit);
    CHECK(codec.read_value(nested_arrays(limit), decode_limits{limit}) == nested_value(limit));
    CHECK(codec.read_value(nested_arrays(limit, "-0"), decode_limits{limit}).is_array());
    CHECK_THROWS_AS(codec.read_value(nested_arrays(limit + 1), decode_limits{limit}), codec_error);
    CHECK_THROWS_AS(codec.read_value(nested_arrays(limit + 1, "-0"), decode_limits{limit}), codec_error);
    CHECK_THROWS_AS(codec.read_value(nested_objects(limit + 1), decode_limits{limit}), codec_error);
  }
  CHECK(codec.read_value("5", decode_limits{1}) == 5);
  CHECK_THROWS_WITH_AS(codec.read_value("[1]", decode_limits{2000}),
                       "decode_limits.max_depth 2000: expected at most 1024", codec_error);
}

TEST_CASE("writers refuse a value nested deeper than max_depth_limit instead of recursing into it") {
  std::string out;
  codec.write_value(out, nested_value(grove::erps::max_depth_limit));
  CHECK(out == nested_arrays(grove::erps::max_depth_limit));
  out.clear();
  CHECK_THROWS_WITH_AS(codec.write_value(out, nested_value(100'000)),
                       "value nests deeper than 1024 levels (max_depth_limit): erps does not write it", codec_error);
}

TEST_CASE("read_call_id and read_reply_id find the id without reading the body") {
  const std::string deep = nested_arrays(100'000);
  CHECK(codec.read_call_id("[7," + deep + "]") == json(7));
  CHECK(codec.read_call_id(" [ \"call-1\" ,{}]") == json("call-1"));
  CHECK(codec.read_call_id("[-3,{}]") == json(-3));
  CHECK(codec.read_reply_id("[" + deep + ",42]") == json(42));
  CHECK(codec.read_reply_id("[{}, \"r,9\" ] ") == json("r,9"));
  // No id to be had: not a call, an id of another kind, escapes, half a frame.
  for (const char* text : {"", "{}", "[]", "[1.5,2]", "[null,1]", "[\"a\\\"b\",1]", "[01,1]", "[7", "[\"open,1]"}) {
    CAPTURE(text);
    CHECK_FALSE(codec.read_call_id(text));
  }
  for (const char* text : {"", "[1]", "[1,1.5]", "[1,\"a\\\"\"]", "[1,\"x\\\\\",\"y\"", "7]", "\"]"}) {
    CAPTURE(text);
    CHECK_FALSE(codec.read_reply_id(text));
  }
}

TEST_CASE("read_json reads a document with the same limit and names it") {
  CHECK(grove::erps::read_json(R"({"a":[1,2]})", {}, "snapshot") == json{{"a", {1, 2}}});
  CHECK_THROWS_WITH_AS(grove::erps::read_json(nested_objects(500), {}, "snapshot"),
                       "snapshot nests deeper than 128 levels (max_depth)", codec_error);
  CHECK_THROWS_WITH_AS(grove::erps::read_json("{", {}, "snapshot"), "malformed JSON in snapshot (1 bytes)", codec_error);
}

TEST_CASE("strings are escaped wherever in them the byte that needs it falls") {
  // Lengths around the writer's 16-byte steps, and each byte that needs
  // more than a copy at every position: control, quote, backslash,
  // UTF-8 (valid, kept), and a byte that is not UTF-8 (replaced).
  const std::string specials[] = {"\n", "\x01", "\"", "\\", "\xC3\xA9", "\x7F"};
  for (std::size_t length : {1u, 15u, 16u, 17u, 31u, 32u, 33u, 47u}) {
    for (std::size_t at = 0; at < length; ++at) {
      for (const std::string& special : specials) {
        std::string text(length, 'a');
        text.replace(at, 1, special);
        std::string out;
        codec.write_value(out, json(text));
        CAPTURE(out);
        const json back = codec.read_value(out, {});
        REQUIRE(back.is_string());
        CHECK(back.get<std::string>() == text);
        CHECK(out == json(text).dump());
      }
      std::string broken(length, 'a');
      broken[at] = '\xFF';
      std::string out;
      codec.write_value(out, json(broken));
      CAPTURE(out);
      const json back = codec.read_value(out, {});
      REQUIRE(back.is_string());
      std::string expected = broken;
      expected.replace(at, 1, "\xEF\xBF\xBD"); // U+FFFD, as nlohmann's replace handler writes it
      CHECK(back.get<std::string>() == expected);
    }
  }
}
