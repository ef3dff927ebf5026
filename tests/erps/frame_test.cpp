#include <grove/erps/frame.hpp>

#include <doctest/doctest.h>

#include <array>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

using namespace grove::erps;

namespace {

std::string bytes_of(std::initializer_list<int> values) {
  std::string s;
  for (int v : values) s += static_cast<char>(v);
  return s;
}

struct collected {
  std::vector<frame_type> types;
  std::vector<std::string> payloads;
  std::vector<std::string> identifiers;
};

void drain(frame_decoder& d, collected& out) {
  while (auto f = d.next()) {
    out.types.push_back(f.header.type);
    out.payloads.emplace_back(f.payload);
    out.identifiers.emplace_back(f.header.identifier);
  }
}

} // namespace

TEST_CASE("a frame's header is laid out as erps lays it out, big-endian") {
  frame_writer w{{1, 2, 3}, "grove", std::nullopt};
  std::string f = w.frame(frame_type::call, "[1,2]");
  REQUIRE(f.size() == header_size + 5);
  CHECK(f.substr(0, 4) == "erps");
  CHECK(f.substr(4, 4) == bytes_of({0, 0, 0, 5}));
  CHECK(static_cast<unsigned char>(f[8]) == 4);
  CHECK(f.substr(9, 3) == bytes_of({1, 2, 3}));
  CHECK(f.substr(12, 5) == "grove");
  CHECK(f.substr(17, 31) == std::string(31, '\0'));      // identifier padding
  CHECK(f.substr(48, 48) == std::string(48, '\0'));      // unsigned: no key id, no signature
  CHECK(f.substr(96) == "[1,2]");
}

TEST_CASE("a keepalive is erps and five zero bytes") {
  CHECK(frame_writer::keepalive() == std::string("erps\0\0\0\0\0", 9));
  frame_decoder d;
  d.feed(frame_writer::keepalive());
  auto f = d.next();
  REQUIRE(f);
  CHECK(f.keepalive());
  CHECK_FALSE(d.next());
  CHECK(d.buffered() == 0);
}

TEST_CASE("coalesced frames in one read all come out, in order") {
  frame_writer w{{0, 4, 0}, "id", std::nullopt};
  std::string stream = w.frame(frame_type::call, "[1,\"a\"]") + std::string(frame_writer::keepalive()) +
                       w.frame(frame_type::cast, "\"b\"") + w.frame(frame_type::push, "");
  frame_decoder d;
  d.feed(stream);
  collected got;
  drain(d, got);
  CHECK(got.types == std::vector{frame_type::call, frame_type::keepalive, frame_type::cast, frame_type::push});
  CHECK(got.payloads == std::vector<std::string>{"[1,\"a\"]", "", "\"b\"", ""});
  CHECK(got.identifiers[0] == "id");
  CHECK_FALSE(d.failed());
}

TEST_CASE("a stream split at every byte decodes to the same frames") {
  frame_writer w{{0, 4, 0}, "", std::nullopt};
  std::string stream = w.frame(frame_type::reply, "[\"x\",1]") + std::string(frame_writer::keepalive()) +
                       w.frame(frame_type::error, "\"no\"");
  frame_decoder d;
  collected got;
  for (char c : stream) {
    d.feed(std::string_view(&c, 1));
    drain(d, got);
  }
  CHECK(got.types == std::vector{frame_type::reply, frame_type::keepalive, frame_type::error});
  CHECK(got.payloads == std::vector<std::string>{"[\"x\",1]", "", "\"no\""});
  CHECK_FALSE(d.in_frame());
}

TEST_CASE("a length above the maximum fails from the header, before the payload is buffered") {
  frame_decoder d(32 * 1024);
  std::string header = frame_writer{}.frame(frame_type::call, std::string(64 * 1024, 'x')).substr(0, header_size);
  d.feed(header);
  CHECK_FALSE(d.next());
  CHECK(d.failed());
  CHECK(d.error() == decode_error::too_large);
  CHECK(d.error_text() == "payload length 65536 is above the maximum of 32768 bytes");
  // Nothing the size of the claimed payload was allocated (at most a pooled read buffer).
  CHECK(d.capacity() <= 16 * 1024);
  CHECK(d.missing() == 0);
}

TEST_CASE("a 4 GiB length claim is refused without allocating it") {
  frame_decoder d; // default maximum, 16 MiB
  std::string header = frame_writer{}.frame(frame_type::cast, "").substr(0, header_size);
  header[4] = header[5] = header[6] = header[7] = static_cast<char>(0xff);
  d.feed(header);
  CHECK_FALSE(d.next());
  CHECK(d.error() == decode_error::too_large);
  CHECK(d.capacity() < 1024 * 1024);
}

TEST_CASE("wrong magic fails at the first wrong byte, and the decoder stays failed") {
  frame_decoder d;
  d.feed("GET / HTTP/1.1\r\n");
  CHECK_FALSE(d.next());
  CHECK(d.error() == decode_error::bad_magic);
  CHECK(d.error_text() == "bad magic \"GET \": expected \"erps\"");
  d.feed(frame_writer::keepalive());
  CHECK_FALSE(d.next()); // no resynchronising on an untrusted stream
  CHECK(d.failed());

  frame_decoder one;
  one.feed("x");
  CHECK_FALSE(one.next());
  CHECK(one.error() == decode_error::bad_magic);
  CHECK(one.error_text() == "bad magic \"x\": expected \"erps\"");
}

TEST_CASE("an unknown type byte is refused with its value") {
  std::string f = frame_writer{}.frame(frame_type::call, "1");
  f[8] = 7;
  frame_decoder d;
  d.feed(f);
  CHECK_FALSE(d.next());
  CHECK(d.error() == decode_error::unknown_type);
  CHECK(d.error_text().find("unknown frame type 7") == 0);
}

TEST_CASE("a keepalive that claims a payload is refused") {
  frame_decoder d;
  d.feed(bytes_of({'e', 'r', 'p', 's', 0, 0, 0, 3, 0}));
  CHECK_FALSE(d.next());
  CHECK(d.error() == decode_error::bad_keepalive);
}

TEST_CASE("a truncated frame waits for the rest and reports how much is missing") {
  std::string f = frame_writer{}.frame(frame_type::call, std::string(1000, 'a'));
  frame_decoder d;
  d.feed(f.substr(0, 500));
  CHECK_FALSE(d.next());
  CHECK_FALSE(d.failed());
  CHECK(d.in_frame());
  CHECK(d.missing() == f.size() - 500);
  d.feed(f.substr(500));
  auto got = d.next();
  REQUIRE(got);
  CHECK(got.payload.size() == 1000);
}

TEST_CASE("the decoder gives back a large buffer once the large frame is consumed") {
  frame_decoder d;
  d.feed(frame_writer{}.frame(frame_type::cast, std::string(1 << 20, 'z')));
  REQUIRE(d.next());
  CHECK(d.capacity() >= (1u << 20));
  d.prepare();
  CHECK(d.capacity() <= 64 * 1024);
}

TEST_CASE("between frames the decoder can hand its buffer back; the next read takes one from the thread's pool") {
  const std::string f = frame_writer{}.frame(frame_type::cast, std::string(100, 'p'));
  frame_decoder d;
  // Half a frame buffered (read as a reader reads: into a 16 KiB buffer): release() keeps it.
  auto first = d.prepare();
  REQUIRE(first.size() >= 16 * 1024);
  std::memcpy(first.data(), f.data(), 40);
  d.commit(40);
  d.release();
  CHECK(d.capacity() >= 16 * 1024);
  CHECK(d.buffered() == 40);
  d.feed(f.substr(40));
  auto got = d.next();
  REQUIRE(got);
  CHECK(got.payload == std::string(100, 'p'));
  // Nothing buffered: the buffer goes back, and an idle decoder holds none.
  d.release();
  CHECK(d.capacity() == 0);
  d.release(); // again: nothing to give
  CHECK(d.capacity() == 0);
  // The next read gets the pooled one (the same storage), and decoding goes on.
  auto space = d.prepare();
  CHECK(space.size() == 16 * 1024);
  std::memcpy(space.data(), f.data(), f.size());
  d.commit(f.size());
  got = d.next();
  REQUIRE(got);
  CHECK(got.payload == std::string(100, 'p'));
  // Another decoder on this thread reuses a released buffer rather than allocating.
  d.release();
  frame_decoder other;
  const char* pooled = d.prepare().data(); // takes it back
  d.release();
  CHECK(other.prepare().data() == pooled);
  // A large frame's buffer is not pooled: it is freed.
  frame_decoder big;
  big.feed(frame_writer{}.frame(frame_type::cast, std::string(100 * 1024, 'z')));
  REQUIRE(big.next());
  big.release();
  CHECK(big.capacity() == 0);
}

TEST_CASE("protocol versions parse and compare; bad ones name the expected form") {
  CHECK(protocol_version::parse("1.2.3") == protocol_version{1, 2, 3});
  CHECK(protocol_version{1, 2, 3}.to_string() == "1.2.3");
  CHECK(protocol_version{1, 10, 0} > protocol_version{1, 9, 9});
  CHECK_THROWS_WITH_AS(protocol_version::parse("1.2"),
                       "version \"1.2\": expected MAJOR.MINOR.PATCH with each part 0-255, e.g. 1.2.0",
                       grove::error);
  CHECK_THROWS_AS(protocol_version::parse("1.2.300"), grove::error);
  CHECK_THROWS_AS(protocol_version::parse("1.2.3x"), grove::error);
}

TEST_CASE("version requirements take Elixir's comparisons") {
  auto r = version_requirement::parse(">= 1.2.0, < 2.0.0");
  CHECK(r.allows({1, 2, 0}));
  CHECK(r.allows({1, 9, 255}));
  CHECK_FALSE(r.allows({1, 1, 9}));
  CHECK_FALSE(r.allows({2, 0, 0}));
  auto exact = version_requirement::parse("== 0.4.0");
  CHECK(exact.allows({0, 4, 0}));
  CHECK_FALSE(exact.allows({0, 4, 1}));
  CHECK(version_requirement::parse("> 1.0.0 and != 1.5.0").allows({1, 4, 0}));
  CHECK_FALSE(version_requirement::parse("> 1.0.0 and != 1.5.0").allows({1, 5, 0}));
  CHECK(version_requirement::parse("").allows({9, 9, 9}));
  CHECK(version_requirement::parse("1.0.0").allows({1, 0, 0}));
  CHECK_THROWS_AS(version_requirement::parse(">= 1.2"), grove::error);
  CHECK_THROWS_AS(version_requirement::parse(">= 1.2.0,"), grove::error);
  auto about = version_requirement::parse("~> 1.2"); // what the golden captures' erps server requires
  CHECK(about.allows({1, 2, 0}));
  CHECK(about.allows({1, 9, 3}));
  CHECK_FALSE(about.allows({1, 1, 9}));
  CHECK_FALSE(about.allows({2, 0, 0}));
  auto about_patch = version_requirement::parse("~> 1.2.3");
  CHECK(about_patch.allows({1, 2, 9}));
  CHECK_FALSE(about_patch.allows({1, 2, 2}));
  CHECK_FALSE(about_patch.allows({1, 3, 0}));
  CHECK_THROWS_AS(version_requirement::parse("~> 1"), grove::error);
  CHECK_THROWS_AS(version_requirement::parse("~> 255.0"), grove::error);
  CHECK_THROWS_AS(version_requirement::parse("=~ 1.2.0"), grove::error);
}

TEST_CASE("a signed frame verifies with its key and fails with a changed payload or key") {
  std::vector<signing_key> keys{{"k1", "secret one"}, {"k2", "secret two"}};
  frame_writer w{{0, 4, 0}, "id", signing_key{"k2", "secret two"}};
  std::string f = w.frame(frame_type::call, "[1,\"payload\"]");
  CHECK(f.substr(48, 2) == "k2");
  frame_decoder d;
  d.feed(f);
  auto got = d.next();
  REQUIRE(got);
  CHECK(got.header.signed_frame());
  CHECK(got.header.key_id_text() == "k2");
  std::span<const std::uint8_t, header_size> raw(got.raw_header.data(), header_size);
  CHECK_FALSE(verify_signature(raw, got.payload, keys).has_value());
  CHECK(verify_signature(raw, "[1,\"tampered\"]", keys) == "bad HMAC-SHA256 signature for key id \"k2\"");
  std::vector<signing_key> wrong{{"k2", "not the secret"}};
  CHECK(verify_signature(raw, got.payload, wrong).has_value());
  std::vector<signing_key> other{{"k9", "x"}};
  CHECK(verify_signature(raw, got.payload, other) == "frame signed with unknown key id \"k2\"");
}

TEST_CASE("the signature is HMAC-SHA256 over the header with a zero signature, then the payload") {
  // The reference was computed outside grove, with the openssl command:
  //   the 64 header bytes, 32 zero bytes and the payload "1" in a file, then
  //   openssl dgst -sha256 -mac HMAC -macopt key:key FILE
  frame_writer w{{0, 4, 0}, "", signing_key{"key", "key"}};
  std::string f = w.frame(frame_type::cast, "1");
  static constexpr char reference[] = "77572de4603cc6011f8567fd6aa211f36328787171b435eef2df2ef64252ca5b";
  std::string hex;
  for (unsigned char c : f.substr(64, 32)) {
    static constexpr char digits[] = "0123456789abcdef";
    hex += digits[c >> 4];
    hex += digits[c & 0xf];
  }
  CHECK(hex == reference);
}

TEST_CASE("an unsigned frame is refused where signatures are required") {
  std::string f = frame_writer{}.frame(frame_type::call, "[1,2]");
  frame_decoder d;
  d.feed(f);
  auto got = d.next();
  REQUIRE(got);
  std::vector<signing_key> keys{{"k", "s"}};
  CHECK(verify_signature(std::span<const std::uint8_t, header_size>(got.raw_header.data(), header_size), got.payload,
                         keys) == "frame is not signed: this server requires HMAC-SHA256 signatures");
}

TEST_CASE("a writer refuses an identifier or key id that does not fit the header") {
  CHECK_THROWS_WITH_AS((frame_writer{{0, 4, 0}, std::string(37, 'i'), std::nullopt}.validate()),
                       doctest::Contains("expected at most 36"), grove::error);
  CHECK_THROWS_WITH_AS((frame_writer{{0, 4, 0}, "", signing_key{std::string(17, 'k'), "s"}}.validate()),
                       doctest::Contains("expected at most 16"), grove::error);
  CHECK_NOTHROW((frame_writer{{0, 4, 0}, std::string(36, 'i'), signing_key{std::string(16, 'k'), "s"}}.validate()));
}
