// Payloads: JSON kept as its text. The value type, the JSON codec's view
// of it (same verdicts as the codec, parts cut byte for byte), and a
// daemon and client of payloads over TCP.
#include <grove/erps/etf.hpp>
#include <grove/erps/payloads.hpp>

#include "../fuzz/frame_decoder_fuzz.hpp"
#include "erps_support.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace erps_test;
using grove::erps::codec_error;
using grove::erps::payload;

namespace {

const grove::erps::basic_codec<payload>& view() { return *grove::erps::codec_for<payload>(grove::erps::json_codec()); }

/// Parses the request only for "op"; echoes anything else untouched.
class lazy_server : public grove::erps::payload_server {
public:
  payload handle_call(grove::erps::payload_call c) {
    if (c.request.text().starts_with("{\"op\"")) {
      const json request = c.request.value();
      if (request.at("op") == "size") return json(c.request.text().size());
      if (request.at("op") == "push") {
        push(c.request);
        return json(true);
      }
    }
    return std::move(c.request);
  }
  void handle_cast(grove::erps::payload_cast c) { push(c.request); }
};

} // namespace

TEST_CASE("a payload holds checked JSON text and parses it when asked") {
  CHECK(payload().text() == "null");
  CHECK(payload().is_null());
  const payload p = payload::parse(" {\"a\": [1, 2.5, \"x\"]}\n");
  CHECK(p.text() == "{\"a\": [1, 2.5, \"x\"]}"); // as it came, without the space around it
  CHECK(p.value() == json{{"a", {1, 2.5, "x"}}});
  CHECK(p.get<json>().at("a").size() == 3);
  CHECK(payload(json{{"ok", true}}).text() == "{\"ok\":true}");
  CHECK(payload(json{{"ok", true}}) == payload::parse("{\"ok\":true}"));
  CHECK_FALSE(payload::parse("{\"a\":1}") == payload::parse("{ \"a\": 1 }")); // texts compare, not values

  CHECK_THROWS_WITH_AS(payload::parse("{\"a\":"), doctest::Contains("malformed JSON in value payload"), codec_error);
  CHECK_THROWS_AS(payload::parse(""), codec_error);
  CHECK_THROWS_AS(payload::parse("[1] x"), codec_error);
  CHECK_THROWS_AS(payload::parse("\"\xff\""), codec_error); // not UTF-8
  CHECK_THROWS_WITH_AS(payload::parse("[[[[1]]]]", {.max_depth = 3}), doctest::Contains("deeper than 3 levels"),
                       codec_error);
  CHECK(payload::parse("[[[1]]]", {.max_depth = 3}).text() == "[[[1]]]");
  // A value read with a larger limit than value()'s default says so there.
  const payload deep = payload::parse(std::string(200, '[') + std::string(200, ']'), {.max_depth = 300});
  CHECK_THROWS_WITH_AS(deep.value(), doctest::Contains("max_depth"), codec_error);
  CHECK(deep.value({.max_depth = 300}).is_array());
}

TEST_CASE("find() reads one member of an object, leaving the others unparsed") {
  const payload p = payload::parse(R"({ "op" : "put", "v": {"s":"}]\"{[", "n":[1,{"op":"inner"}]}, "k\u0065y" : "k1", "op":"last" })");
  REQUIRE(p.find("v"));
  CHECK(p.find("v")->text() == R"({"s":"}]\"{[", "n":[1,{"op":"inner"}]})");
  CHECK(p.find("op")->value() == "last"); // a repeated name: the last, as value() reads it
  CHECK(p.find("key")->text() == "\"k1\""); // a name with escapes, compared as what it says
  CHECK_FALSE(p.find("n").has_value());      // members of members are not members
  CHECK_FALSE(p.find("absent").has_value());
  CHECK_FALSE(payload::parse("[1,2]").find("0").has_value());
  CHECK_FALSE(payload().find("a").has_value());
  CHECK_FALSE(payload::parse("{}").find("").has_value());
  const std::string big(200000, 'b');
  CHECK(payload::parse(R"({"blob":")" + big + R"(","key":7})").find("key")->value() == 7);
}

TEST_CASE("a payload copied from a frame's part holds only that part") {
  std::string frame = "[7,{\"big\":\"" + std::string(1000, 'x') + "\"}]";
  const std::size_t size = frame.size();
  auto call = view().take_call(frame, {});
  CHECK(call.id.text() == "7");
  CHECK(call.request.text().size() == size - 4);
  const payload copy = call.request;
  CHECK(copy == call.request);
  CHECK(copy.text().data() != call.request.text().data());
}

TEST_CASE("the payload view cuts a call's id and request out byte for byte") {
  struct example {
    std::string text, id, request;
  };
  const std::vector<example> calls = {
      {"[1,{\"op\":\"get\"}]", "1", "{\"op\":\"get\"}"},
      {" [ -12 ,\t[1, 2 ] ]\n", "-12", "[1, 2 ]"},
      {"[\"a\\\"b\\\\\",\"x\"]", "\"a\\\"b\\\\\"", "\"x\""},
      {"[\"\\\\\",null]", "\"\\\\\"", "null"},
      {"[18446744073709551615,\"\\u00e9t\\u00e9\"]", "18446744073709551615", "\"\\u00e9t\\u00e9\""},
      {"[-0,-0]", "-0", "-0"},
      {"[\"2024-01-02\",{\"when\":\"2024-01-02\"}]", "\"2024-01-02\"", "{\"when\":\"2024-01-02\"}"},
  };
  for (const auto& e : calls) {
    CAPTURE(e.text);
    auto c = view().read_call(e.text, {});
    CHECK(c.id.text() == e.id);
    CHECK(c.request.text() == e.request);
    std::string owned = e.text;
    auto taken = view().take_call(owned, {});
    CHECK(taken.id == c.id);
    CHECK(taken.request == c.request);
    // The same call as the JSON codec reads it.
    auto reference = grove::erps::json_codec().read_call(e.text, {});
    CHECK(c.id.value() == reference.id);
    CHECK(c.request.value() == reference.request);
  }
  const std::vector<std::string> refused = {
      "[1.5,1]", "[[1],1]", "[true,1]", "[1]", "[1,2,3]", "{\"a\":1}", "[1,2", "[123456789012345678901234567890,1]",
      "[\"a\",\"\\ud800\"]", "",
  };
  for (const auto& text : refused) {
    CAPTURE(text);
    CHECK_THROWS_AS(view().read_call(text, {}), codec_error);
    CHECK_THROWS_AS(grove::erps::json_codec().read_call(text, {}), codec_error);
    std::string owned = text;
    CHECK_THROWS_AS(view().take_call(owned, {}), codec_error);
    CHECK(owned == text); // left as it was
  }
}

TEST_CASE("the payload view reads replies from the end, and writes what it holds") {
  auto r = view().read_reply("[{\"v\":[1,\"]\"]} , \"id\\\\\\\"\" ]", {});
  CHECK(r.id.text() == "\"id\\\\\\\"\"");
  CHECK(r.reply.text() == "{\"v\":[1,\"]\"]}");
  CHECK(r.id.value() == "id\\\"");
  CHECK_THROWS_WITH_AS(view().read_reply("[1,[2]]", {}), doctest::Contains("[reply, call_id]"), codec_error);

  std::string out;
  view().write_reply(out, view().make_id(42), payload::parse("{ \"kept\" : \"as is\" }"));
  CHECK(out == "[{ \"kept\" : \"as is\" },42]");
  CHECK(view().id_number(view().make_id(42)) == 42u);
  CHECK_FALSE(view().id_number(payload::parse("\"42\"")).has_value());
  out.clear();
  const payload id = payload::parse("\"c-1\"");
  view().write_error(out, &id, "no such op");
  CHECK(out == "[\"c-1\",\"no such op\"]");
  auto e = view().read_error(out, {});
  REQUIRE(e.id.has_value());
  CHECK(*e.id == id);
  CHECK(e.text == "no such op");
}

TEST_CASE("the payload view gives the JSON codec's verdict on edge cases") {
  const std::vector<std::string> texts = {
      "-0",       "[-0.0e-0]",  "1e999",          "1e-999",         "123456789012345678901234567890", "\"\\ud83d\\ude00\"",
      "\"\\ud800\"", "\"\\udc00\"", "\"\xed\xa0\x80\"", "\"\xf4\x90\x80\x80\"", "\"\x01\"", "[1,]", "{\"a\":1,}", "01",
      "1.",       ".5",         "[1e5,-1E+2]",    "{\"a\":{\"b\":[]}}", " \t\n[]\r ", "nul", "true ", "[\"\\/\"]",
      std::string("[0,2]\0\0\xe2", 8), // nlohmann ends its input at a NUL (found by the fuzzer)
      std::string("[0,\0 2]", 7),
  };
  for (const auto& text : texts) {
    CAPTURE(text);
    CHECK(grove_fuzz::payload_disagreement(text, grove::erps::max_depth_limit) == "");
    CHECK(grove_fuzz::payload_disagreement(text, 1) == "");
    CHECK(grove_fuzz::payload_disagreement("[7," + text + "]", 2) == "");
    CHECK(grove_fuzz::payload_disagreement("[" + text + ",7]", 2) == "");
  }
}

TEST_CASE("a daemon of payloads echoes requests byte for byte and parses only what it looks at") {
  grove::node node{{.threads = 2}};
  grove::erps::daemon_options o;
  auto logs = std::make_shared<event_log>();
  o.link.log = capture(logs);
  auto d = node.block_on(grove::erps::daemon::start<lazy_server>(node, o));

  auto pushes = std::make_shared<event_log>();
  grove::erps::payload_client_options co;
  co.port = d.port();
  co.link.log = capture(logs);
  co.on_push = [pushes](const payload& p) { pushes->add(std::string(p.text())); };
  auto c = node.block_on(grove::erps::payload_client::start(node, co));

  const payload odd = payload::parse("{ \"z\" : [ 1 , 2.50 , \"\\u00e9\" ] }");
  CHECK(node.block_on(c.call(odd, 10s)).text() == odd.text());
  const std::string big = "\"" + std::string(100000, 'q') + "\"";
  CHECK(node.block_on(c.call(payload::parse(big), 10s)).text() == big);
  CHECK(node.block_on(c.call(payload::parse("{\"op\":\"size\"}"), 10s)).value() == 13);
  CHECK(node.block_on(c.call(payload::parse("{\"op\":\"push\",\"n\":1}"), 10s)).value() == true);
  c.cast(payload::parse("[ \"cast\" ]"));
  CHECK(pushes->wait_count("{\"op\":\"push\",\"n\":1}", 1));
  CHECK(pushes->wait_count("[ \"cast\" ]", 1));

  // A JSON client talks to it too: the wire is JSON either way.
  grove::erps::client_options jo;
  jo.port = d.port();
  jo.link.log = capture(logs);
  auto j = node.block_on(grove::erps::client::start(node, jo));
  CHECK(node.block_on(j.call(json{{"op", "size"}}, 10s)) == 13);

  // A malformed request fails that call; the connection goes on.
  raw_client raw(d.port());
  grove::erps::frame_writer w{{0, 4, 0}, "", std::nullopt};
  raw.send(w.frame(grove::erps::frame_type::call, "[5,{\"a\":]"));
  auto refusal = raw.read_non_keepalive();
  REQUIRE(refusal);
  CHECK(refusal->type == grove::erps::frame_type::error);
  CHECK(refusal->payload.starts_with("[5,\"malformed JSON in call payload"));
  raw.send(w.frame(grove::erps::frame_type::call, "[6,{\"a\":1}]"));
  auto reply = raw.read_non_keepalive();
  REQUIRE(reply);
  CHECK(reply->payload == "[{\"a\":1},6]");
  CHECK(logged(*logs, "bad_payload: malformed JSON in call payload"));
  node.block_on(d.shutdown(2s));
}

TEST_CASE("a daemon whose codec is ETF refuses a payload server, naming the codec") {
  grove::node node{{.threads = 1}};
  grove::erps::daemon_options o;
  o.link.codec = &grove::erps::etf::etf_codec();
  CHECK_THROWS_WITH_AS(node.block_on(grove::erps::daemon::start<lazy_server>(node, o)),
                       doctest::Contains("daemon_options.link.codec: the etf codec cannot carry JSON payloads"),
                       grove::error);
}
