// Identifier, version requirement and HMAC signatures: a refused frame gets
// an error frame (for a call, naming its id) and the connection stays open.
#include <grove/erps/json_codec.hpp>

#include "erps_support.hpp"

#include <doctest/doctest.h>

using namespace erps_test;
using grove::erps::frame_type;
using erps_daemon = grove::erps::daemon;

namespace {

using rig = daemon_rig;

json echo_request(json value) { return json{{"op", "echo"}, {"value", std::move(value)}}; }

} // namespace

TEST_CASE("an identifier mismatch is refused for that frame; the connection stays open") {
  grove::erps::daemon_options o;
  o.link.identifier = "grove-test";
  rig r(o);
  raw_client wire(r.server.port());
  wire.send(call_frame(1, echo_request("x"), "someone-else"));
  auto refused = wire.read_non_keepalive();
  REQUIRE(refused);
  CHECK(refused->type == frame_type::error);
  CHECK(refused->payload ==
        R"([1,"identifier mismatch: this server is \"grove-test\", the frame says \"someone-else\""])");
  CHECK(logged(*r.logs, "frame_refused: identifier mismatch"));
  wire.send(call_frame(2, echo_request("right"), "grove-test"));
  auto ok = wire.read_non_keepalive();
  REQUIRE(ok);
  CHECK(ok->payload == R"(["right",2])");
  CHECK(r.server.stats().rejected_frames == 1);
}

TEST_CASE("a client with the wrong identifier gets erps_errc::remote naming the mismatch") {
  grove::erps::daemon_options o;
  o.link.identifier = "grove-test";
  rig r(o);
  grove::erps::client_options wrong;
  wrong.link.identifier = "nope";
  auto c = r.connect(wrong);
  try {
    r.echo(c, 1);
    FAIL("the call should be refused");
  } catch (const grove::error& e) {
    CHECK(e.code() == grove::erps_errc::remote);
    CHECK(std::string(e.what()).find("identifier mismatch") != std::string::npos);
  }
  grove::erps::client_options right;
  right.link.identifier = "grove-test";
  CHECK(r.echo(r.connect(right), 2) == 2);
}

TEST_CASE("a version outside the requirement is refused for that frame; the connection stays open") {
  grove::erps::daemon_options o;
  o.version_requirement = ">= 1.2.0, < 2.0.0";
  rig r(o);
  raw_client wire(r.server.port());
  wire.send(call_frame(1, echo_request("old"), "", {1, 1, 9}));
  auto refused = wire.read_non_keepalive();
  REQUIRE(refused);
  CHECK(refused->payload ==
        R"([1,"protocol version 1.1.9 is not allowed: this server requires >= 1.2.0, < 2.0.0"])");
  wire.send(call_frame(2, echo_request("new"), "", {2, 0, 0}));
  auto refused_too = wire.read_non_keepalive();
  REQUIRE(refused_too);
  CHECK(refused_too->type == frame_type::error);
  wire.send(call_frame(3, echo_request("fits"), "", {1, 5, 0}));
  auto ok = wire.read_non_keepalive();
  REQUIRE(ok);
  CHECK(ok->payload == R"(["fits",3])");
  CHECK(logged(*r.logs, "frame_refused: protocol version 1.1.9 is not allowed"));
}

TEST_CASE("HMAC required: signed frames are served, unsigned and badly signed ones refused") {
  grove::erps::daemon_options o;
  o.link.require_signed = true;
  o.link.verify_keys = {{"k1", "first secret"}, {"k2", "second secret"}};
  rig r(o);

  grove::erps::client_options good;
  good.link.signing = grove::erps::signing_key{"k2", "second secret"};
  CHECK(r.echo(r.connect(good), "signed") == "signed");

  grove::erps::client_options none;
  try {
    r.echo(r.connect(none), "unsigned");
    FAIL("an unsigned call should be refused");
  } catch (const grove::error& e) {
    CHECK(e.code() == grove::erps_errc::remote);
    CHECK(std::string(e.what()).find("frame is not signed") != std::string::npos);
  }

  grove::erps::client_options bad;
  bad.link.signing = grove::erps::signing_key{"k1", "not the secret"};
  try {
    r.echo(r.connect(bad), "forged");
    FAIL("a badly signed call should be refused");
  } catch (const grove::error& e) {
    CHECK(std::string(e.what()).find("bad HMAC-SHA256 signature for key id \"k1\"") != std::string::npos);
  }

  grove::erps::client_options unknown;
  unknown.link.signing = grove::erps::signing_key{"k9", "x"};
  CHECK_THROWS_WITH_AS(r.echo(r.connect(unknown), 1), doctest::Contains("unknown key id \"k9\""), grove::error);
  CHECK(logged(*r.logs, "frame_refused: frame is not signed"));
}

TEST_CASE("a client that requires signatures accepts the daemon's signed replies") {
  grove::erps::daemon_options o;
  o.link.signing = grove::erps::signing_key{"srv", "server secret"};
  rig r(o);
  grove::erps::client_options c;
  c.link.require_signed = true;
  c.link.verify_keys = {{"srv", "server secret"}};
  CHECK(r.echo(r.connect(c), "verified") == "verified");
}

TEST_CASE("the json codec maps calls, replies, values and errors as DESIGN.md says") {
  const auto& codec = grove::erps::json_codec();
  std::string out;
  codec.write_call(out, 7, json{{"op", "get"}});
  CHECK(out == R"([7,{"op":"get"}])");
  out.clear();
  codec.write_reply(out, "id", json::array({1, 2}));
  CHECK(out == R"([[1,2],"id"])");
  out.clear();
  codec.write_error(out, nullptr, "no");
  CHECK(out == R"("no")");
  out.clear();
  json id = 3;
  codec.write_error(out, &id, "refused");
  CHECK(out == R"([3,"refused"])");
  auto call = codec.read_call(R"(["a",{"x":1}])", {});
  CHECK(call.id == "a");
  CHECK(call.request == json{{"x", 1}});
  auto reply = codec.read_reply(R"([true,9])", {});
  CHECK(reply.id == 9);
  CHECK(reply.reply == true);
  auto error = codec.read_error(R"([9,"why"])", {});
  REQUIRE(error.id);
  CHECK(*error.id == 9);
  CHECK(error.text == "why");
  CHECK(codec.read_error(R"("plain")", {}).text == "plain");
  CHECK(codec.read_error(R"({"not":"text"})", {}).text == R"({"not":"text"})");
  // What the link writes for a frame it refuses: by the call's id when it reads.
  out.clear();
  codec.write_refusal(out, "refused", R"([12,{"deep":[]}])");
  CHECK(out == R"([12,"refused"])");
  out.clear();
  codec.write_refusal(out, "refused", "[nonsense");
  CHECK(out == R"("refused")");
  CHECK_THROWS_AS(codec.read_call("[1]", {}), grove::erps::codec_error);
  CHECK_THROWS_AS(codec.read_call("[1.5,2]", {}), grove::erps::codec_error);
  CHECK_THROWS_AS(codec.read_reply("{}", {}), grove::erps::codec_error);
  CHECK_THROWS_WITH_AS(codec.read_value("{", {}), "malformed JSON in value payload (1 bytes)", grove::erps::codec_error);
  // Invalid UTF-8 in a value does not fail the reply on its way out.
  out.clear();
  codec.write_value(out, json(std::string("a\xff")));
  CHECK(out == "\"a\xEF\xBF\xBD\"");
}
