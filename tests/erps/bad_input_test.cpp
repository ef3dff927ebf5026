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
    o.keepalive_interval = 50ms;
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
  o.max_payload = 1024;
  o.max_queued_bytes = 1u << 20;
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
  o.keepalive_interval = 50ms;
  o.keepalive_timeout = 300ms;
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

TEST_CASE("malformed JSON in a call: an error frame, and the connection stays usable") {
  rig r;
  raw_client bad(r.server.port());
  bad.send(grove::erps::frame_writer{}.frame(frame_type::call, "[1, {\"op\": "));
  expect_error_frame(bad, "malformed JSON in call payload (11 bytes)");
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
  o.keepalive_interval = 50ms;
  o.keepalive_timeout = 500ms;
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
