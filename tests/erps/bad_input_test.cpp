// Bad input over plain TCP: each case shows the clear log line, the error
// frame where the protocol allows one, that only the offending connection
// is affected, and that a client connecting afterwards is served.
#include <grove/erps/frame.hpp>

#include "erps_support.hpp"

#include <doctest/doctest.h>

#include <algorithm>

using namespace erps_test;
using grove::erps::frame_type;
using erps_daemon = grove::erps::daemon;

namespace {

/// A daemon rig with a bystander: a client connected before the bad input,
/// which must not notice it.
struct rig : daemon_rig {
  grove::erps::client_ref bystander;

  explicit rig(grove::erps::daemon_options options = {}) : daemon_rig(std::move(options)) {
    bystander = connect_quick();
    REQUIRE(echo(bystander, "before") == "before");
  }

  // Keepalives well inside the shortest keepalive_timeout a test gives the daemon.
  grove::erps::client_ref connect_quick() {
    grove::erps::client_options o;
    o.link.keepalive_interval = 50ms;
    return connect(o);
  }

  /// The bystander still works, and so does a client that connects now.
  void others_unaffected() {
    CHECK(echo(bystander, "after") == "after");
    CHECK(echo(connect_quick(), "fresh") == "fresh");
  }
};

/// Expects an error frame whose text starts with `prefix`.
void expect_error_frame(raw_client& c, const std::string& prefix) {
  auto f = c.read_non_keepalive();
  REQUIRE(f);
  CHECK(f->type == frame_type::error);
  json text = json::parse(f->payload);
  REQUIRE(text.is_string());
  CHECK_MESSAGE(text.get<std::string>().rfind(prefix, 0) == 0, text.get<std::string>());
}

} // namespace

TEST_CASE("garbage bytes: an error frame, a clean close, one log line") {
  rig r;
  raw_client bad(r.server.port());
  bad.send("\x01\x02garbage that is not erps at all\r\n");
  expect_error_frame(bad, "bad frame: bad magic \"\\x01\\x02ga\": expected \"erps\"");
  CHECK(bad.closed_within());
  CHECK(logged(*r.logs, "bad_frame: bad frame: bad magic"));
  r.others_unaffected();
}

TEST_CASE("a frame with the wrong magic is refused") {
  rig r;
  raw_client bad(r.server.port());
  std::string frame = call_frame(1, json{{"op", "echo"}, {"value", 1}});
  frame[3] = 'z';
  bad.send(frame);
  expect_error_frame(bad, "bad frame: bad magic \"erpz\"");
  CHECK(bad.closed_within());
  r.others_unaffected();
}

TEST_CASE("a length above the maximum is refused from the header alone") {
  grove::erps::daemon_options o;
  o.link.max_payload = 1024;
  o.link.max_queued_bytes = 1u << 20;
  rig r(o);
  raw_client bad(r.server.port());
  std::string frame = call_frame(1, json{{"op", "echo"}, {"value", std::string(2000, 'x')}});
  bad.send(frame.substr(0, grove::erps::header_size)); // the header is enough
  expect_error_frame(bad, "bad frame: payload length ");
  CHECK(bad.closed_within());
  CHECK(logged(*r.logs, "bad_frame: bad frame: payload length 2028 is above the maximum of 1024 bytes"));
  r.others_unaffected();
}

TEST_CASE("a truncated frame and then silence: closed at the keepalive timeout, saying so") {
  grove::erps::daemon_options o;
  o.link.keepalive_interval = 50ms;
  o.link.keepalive_timeout = 300ms;
  rig r(o);
  raw_client bad(r.server.port());
  std::string frame = call_frame(1, json{{"op", "echo"}, {"value", "never finished"}});
  bad.send(frame.substr(0, 120));
  CHECK(bad.closed_within());
  CHECK(logged(*r.logs, "peer_silent: peer silent for 300 ms (keepalive timeout) with a frame unfinished (120 bytes"));
  r.others_unaffected();
}

TEST_CASE("an unknown frame type is refused and closes that connection") {
  rig r;
  raw_client bad(r.server.port());
  std::string frame = call_frame(1, json{{"op", "echo"}, {"value", 1}});
  frame[8] = 5;
  bad.send(frame);
  expect_error_frame(bad, "bad frame: unknown frame type 5");
  CHECK(bad.closed_within());
  CHECK(logged(*r.logs, "bad_frame: bad frame: unknown frame type 5"));
  r.others_unaffected();
}

TEST_CASE("malformed JSON in a call: an error frame answering its id, and the connection stays usable") {
  rig r;
  raw_client bad(r.server.port());
  bad.send(grove::erps::frame_writer{}.frame(frame_type::call, "[1, {\"op\": "));
  auto refused = bad.read_non_keepalive();
  REQUIRE(refused);
  CHECK(refused->type == frame_type::error);
  CHECK(refused->payload == R"x([1,"malformed JSON in call payload (11 bytes)"])x");
  bad.send(grove::erps::frame_writer{}.frame(frame_type::call, "{\"op\": "));
  expect_error_frame(bad, "malformed JSON in call payload (7 bytes)"); // no id to answer
  CHECK(logged(*r.logs, "bad_payload: malformed JSON in call payload"));
  bad.send(call_frame(2, json{{"op", "echo"}, {"value", "still here"}}));
  auto f = bad.read_non_keepalive();
  REQUIRE(f);
  CHECK(f->type == frame_type::reply);
  CHECK(f->payload == "[\"still here\",2]");
  r.others_unaffected();
}

TEST_CASE("a call without an id: an error frame, and the connection stays usable") {
  rig r;
  raw_client bad(r.server.port());
  bad.send(grove::erps::frame_writer{}.frame(frame_type::call, R"({"op":"echo","value":1})"));
  expect_error_frame(bad, "call payload must be [call_id, request]");
  bad.send(grove::erps::frame_writer{}.frame(frame_type::call, R"([null,{"op":"echo","value":1}])"));
  expect_error_frame(bad, "call payload must be [call_id, request]");
  CHECK(logged(*r.logs, "bad_payload: call payload must be [call_id, request]"));
  bad.send(call_frame(3, json{{"op", "echo"}, {"value", "ok"}}));
  auto f = bad.read_non_keepalive();
  REQUIRE(f);
  CHECK(f->payload == "[\"ok\",3]");
  r.others_unaffected();
}

TEST_CASE("a reply or push frame from a client is refused with an error frame; the connection stays") {
  rig r;
  raw_client bad(r.server.port());
  bad.send(grove::erps::frame_writer{}.frame(frame_type::push, "1"));
  expect_error_frame(bad, "unexpected push frame from a client");
  bad.send(call_frame(1, json{{"op", "echo"}, {"value", 1}}));
  auto f = bad.read_non_keepalive();
  REQUIRE(f);
  CHECK(f->type == frame_type::reply);
  r.others_unaffected();
}

TEST_CASE("a client that never reads its replies: the daemon stops reading from it and its memory stays bounded") {
  grove::erps::daemon_options o;
  o.max_calls_in_flight = 8;
  rig r(o);
  raw_client slow(r.server.port());
  const std::string frame = call_frame(1, json{{"op", "echo"}, {"value", std::string(64 * 1024, 'y')}});
  std::size_t sent = 0;
  std::size_t offset = 0;
  const std::size_t give_up = 256u << 20; // far more than any socket buffers hold
  while (sent < give_up) {
    std::size_t n = slow.send_some(std::string_view(frame).substr(offset));
    if (n == 0) {
      pollfd p{slow.fd(), POLLOUT, 0};
      if (::poll(&p, 1, 500) <= 0) break; // not writable for half a second: the daemon stopped reading
      continue;
    }
    sent += n;
    offset = (offset + n) % frame.size();
  }
  CHECK(sent < give_up);
  const auto queued = r.server.stats().queued_bytes;
  MESSAGE("sent " << sent << " bytes before blocking; daemon queue " << queued << " bytes");
  // The pause threshold (1 MiB) plus at most max_calls_in_flight replies.
  CHECK(queued <= (1 << 20) + 9 * static_cast<std::int64_t>(frame.size()));
  r.others_unaffected();
}

TEST_CASE("a client that stops reading is closed once nothing it was sent is taken for the keepalive timeout") {
  grove::erps::daemon_options o;
  o.link.keepalive_interval = 50ms;
  o.link.keepalive_timeout = 500ms;
  rig r(o);
  raw_client stuck(r.server.port());
  // One small call, answered with 16 MiB of pushes it never reads: more
  // than the socket buffers hold, less than max_queued_bytes.
  stuck.send(call_frame(1, json{{"op", "flood"}, {"value", std::string(64 * 1024, 'z')}, {"count", 256}}));
  CHECK(r.logs->wait_for([](const auto& v) {
    return std::any_of(v.begin(), v.end(), [](const std::string& l) {
      return l.rfind("slow_peer: peer is not reading: ", 0) == 0 && l.find("none taken for 500 ms") != std::string::npos;
    });
  }));
  r.others_unaffected();
}

namespace {

std::string deep_arrays(std::size_t depth) { return std::string(depth, '[') + "1" + std::string(depth, ']'); }

std::string deep_objects(std::size_t depth) {
  std::string text;
  for (std::size_t i = 0; i < depth; ++i) text += "{\"k\":";
  return text + "1" + std::string(depth, '}');
}

// Built without a parse, and without nlohmann's recursive dump.
json nested(std::size_t depth) {
  json v = "core";
  for (std::size_t i = 0; i < depth; ++i) v = json::array({std::move(v)});
  return v;
}

// What a grove call throws (grove::error's what(): the detail, then the code's message).
std::string call_failure(daemon_rig& r, const grove::erps::client_ref& c, json request) {
  try {
    r.node.block_on(c.call(std::move(request), 10s));
  } catch (const grove::error& e) {
    return e.what();
  }
  return "no failure";
}

} // namespace

TEST_CASE("a call 100,000 levels deep is refused by its id, naming the limit; that connection and everyone else go on") {
  rig r;
  raw_client bad(r.server.port());
  for (const std::string& body : {deep_arrays(100'000), deep_objects(100'000)}) {
    bad.send(grove::erps::frame_writer{}.frame(frame_type::call, "[7,{\"op\":\"echo\",\"value\":" + body + "}]"));
    auto f = bad.read_non_keepalive();
    REQUIRE(f);
    CHECK(f->type == frame_type::error);
    CHECK(f->payload == R"x([7,"call payload nests deeper than 128 levels (max_depth)"])x");
  }
  CHECK(logged(*r.logs, "bad_payload: call payload nests deeper than 128 levels (max_depth)"));
  bad.send(call_frame(8, json{{"op", "echo"}, {"value", "still here"}}));
  auto f = bad.read_non_keepalive();
  REQUIRE(f);
  CHECK(f->payload == R"(["still here",8])");
  r.others_unaffected();
}

TEST_CASE("a cast 100,000 levels deep is refused with an error frame and never reaches the server") {
  rig r;
  raw_client bad(r.server.port());
  bad.send(grove::erps::frame_writer{}.frame(frame_type::cast, deep_arrays(100'000)));
  expect_error_frame(bad, "value payload nests deeper than 128 levels (max_depth)");
  bad.send(call_frame(1, json{{"op", "echo"}, {"value", 1}}));
  auto f = bad.read_non_keepalive();
  REQUIRE(f);
  CHECK(f->payload == "[1,1]");
  r.others_unaffected();
}

TEST_CASE("max_depth is exact: a request at the limit is served, one level more fails the call at once") {
  grove::erps::daemon_options o;
  o.link.max_depth = 10; // [id, {"op", "value": 8 levels}]
  rig r(o);
  CHECK(r.echo(r.bystander, nested(8)) == nested(8));
  CHECK(call_failure(r, r.bystander, json{{"op", "echo"}, {"value", nested(9)}}) ==
        "call payload nests deeper than 10 levels (max_depth)");
  r.others_unaffected();
}

TEST_CASE("a reply deeper than the client's max_depth fails that call at once with bad_payload") {
  rig r;
  grove::erps::client_options o;
  o.link.max_depth = 4; // [reply, id] leaves the echoed value 3 levels
  auto strict = r.connect(o);
  CHECK(r.echo(strict, nested(3)) == nested(3));
  CHECK(call_failure(r, strict, json{{"op", "echo"}, {"value", nested(50)}}) ==
        "the reply could not be read: reply payload nests deeper than 4 levels (max_depth)");
  CHECK(r.echo(strict, "next") == "next");
  r.others_unaffected();
}

TEST_CASE("a reply the codec cannot write fails that call alone; the replies queued around it go out whole") {
  rig r;
  raw_client c(r.server.port());
  // One write: the three replies are queued together, the middle one fails
  // half-way into the queue.
  c.send(call_frame(1, json{{"op", "echo"}, {"value", "before"}}) + call_frame(2, json{{"op", "deep"}, {"levels", 1100}}) +
         call_frame(3, json{{"op", "echo"}, {"value", "after"}}));
  auto first = c.read_non_keepalive();
  REQUIRE(first);
  CHECK(first->type == frame_type::reply);
  CHECK(first->payload == R"(["before",1])");
  auto refused = c.read_non_keepalive();
  REQUIRE(refused);
  CHECK(refused->type == frame_type::error);
  CHECK(refused->payload.rfind(R"([2,"the reply could not be written: value nests deeper than 1024 levels)", 0) == 0);
  auto third = c.read_non_keepalive();
  REQUIRE(third);
  CHECK(third->type == frame_type::reply);
  CHECK(third->payload == R"(["after",3])");
  CHECK(logged(*r.logs, "reply_unwritable: the reply could not be written: value nests deeper than 1024 levels"));
  r.others_unaffected();
}

TEST_CASE("max_depth out of range is refused by validate, naming the option") {
  grove::erps::daemon_options d;
  d.link.max_depth = 0;
  CHECK_THROWS_WITH_AS(d.validate(), "daemon_options.link.max_depth: 0: expected a nesting depth from 1 to 1024", grove::error);
  grove::erps::client_options c;
  c.port = 1;
  c.link.max_depth = 5000;
  CHECK_THROWS_WITH_AS(c.validate(), "client_options.link.max_depth: 5000: expected a nesting depth from 1 to 1024", grove::error);
}

namespace {

// Sends `bytes` one at a time, one a second, until the daemon closes the
// connection: the wait for the close is the pacing. The bytes sent.
std::size_t trickle_until_closed(raw_client& c, std::string_view bytes) {
  for (std::size_t sent = 0; sent < bytes.size(); ++sent) {
    if (c.closed_within(1000ms)) return sent;
    c.send(bytes.substr(sent, 1));
  }
  return bytes.size();
}

} // namespace

TEST_CASE("a client that trickles a frame at one byte a second is closed at the frame deadline, saying so") {
  grove::erps::daemon_options o;
  o.link.keepalive_interval = 1s;
  o.link.keepalive_timeout = 5s; // never silent for that long: only the frame deadline can close it
  o.link.frame_timeout = 3s;
  rig r(o);
  raw_client slow(r.server.port());
  const std::string frame = call_frame(1, json{{"op", "echo"}, {"value", "slowly"}});
  const std::size_t sent = trickle_until_closed(slow, frame);
  CHECK(sent < frame.size());
  CHECK(logged(*r.logs, "frame_timeout: frame not complete within 3 s ("));
  const std::string tail = " bytes of its header received): the peer sends too slowly (frame_timeout, min_frame_rate)";
  CHECK(r.logs->wait_for([&](const std::vector<std::string>& lines) {
    return std::any_of(lines.begin(), lines.end(), [&](const std::string& l) { return l.find(tail) != std::string::npos; });
  }));
  r.others_unaffected();
}

TEST_CASE("a large frame sent steadily within min_frame_rate is served though it takes longer than frame_timeout") {
  grove::erps::daemon_options o;
  o.link.frame_timeout = 300ms;
  o.link.min_frame_rate = 256 * 1024; // 512 KiB: 300 ms + 2 s
  rig r(o);
  raw_client steady(r.server.port());
  const std::string frame = call_frame(9, json{{"op", "echo"}, {"value", std::string(512 * 1024, 's')}});
  constexpr std::size_t chunks = 16;
  const std::size_t chunk = frame.size() / chunks + 1;
  for (std::size_t at = 0; at < frame.size(); at += chunk) {
    if (at != 0) CHECK_FALSE(steady.read_frame(60ms)); // the pacing: nothing comes back, the frame is not whole
    steady.send(std::string_view(frame).substr(at, chunk));
  }
  auto reply = steady.read_non_keepalive();
  REQUIRE(reply);
  CHECK(reply->type == frame_type::reply);
  CHECK(reply->payload.size() == 512 * 1024 + 6);
  r.others_unaffected();
}
