// Erlang terms and their External Term Format, judged by real Erlang: the
// frames captured from Elixir's erps (tests/erps/golden/, from
// ../shared/erps-golden/captures), random terms encoded by erl and read by
// grove, and terms grove encodes read back by erl (tests/erps/etf_judge.escript).
#include <grove/erps/etf.hpp>
#include <grove/erps/term.hpp>
#include <grove/erps/terms.hpp>

#include "../child_process.hpp"
#include "erps_support.hpp"
#include "../temp_dir.hpp"

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

using grove::erps::term;
using erps_test::raw_client;
using namespace std::chrono_literals;
namespace etf = grove::erps::etf;

namespace {

const std::filesystem::path source_root{GROVE_SOURCE_ROOT};

std::string hex(std::string_view bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out.push_back(digits[c >> 4]);
    out.push_back(digits[c & 15]);
  }
  return out;
}

std::string unhex(std::string_view text) {
  std::string out;
  for (std::size_t i = 0; i + 1 < text.size(); i += 2) out.push_back(static_cast<char>(std::stoi(std::string(text.substr(i, 2)), nullptr, 16)));
  return out;
}

std::vector<std::string> words(const std::string& line) {
  std::istringstream in(line);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

/// Every frame payload of a capture, with its session and direction.
struct captured {
  std::string where; // "tcp_default c2s #3"
  bool client_side;
  std::string payload;
};

/// A capture's byte streams: "conn dir" ("1 c2s") -> every byte, in order.
std::map<std::string, std::string> streams_of(const std::string& capture) {
  std::ifstream in(source_root / "tests" / "erps" / "golden" / (capture + ".log"));
  REQUIRE(in.good());
  std::map<std::string, std::string> streams;
  for (std::string line; std::getline(in, line);) {
    const auto w = words(line);
    if (w.size() == 4) streams[w[0] + " " + w[1]] += unhex(w[3]);
  }
  return streams;
}

std::vector<captured> payloads_of(const std::string& capture) {
  auto streams = streams_of(capture);
  std::vector<captured> out;
  for (auto& [key, stream] : streams) {
    const std::string& bytes = stream; // (a structured binding cannot be captured before C++20's P1091 in clang 14)
    std::size_t at = 0, n = 0;
    while (at + 9 <= bytes.size()) {
      const auto u = [&](std::size_t i) { return static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[at + i])); };
      const std::uint32_t size = (u(4) << 24) | (u(5) << 16) | (u(6) << 8) | u(7);
      if (size == 0 && u(8) == 0) { // a keepalive: 9 bytes
        at += 9;
        continue;
      }
      REQUIRE(at + 96 + size <= bytes.size());
      out.push_back({capture + " " + key + " #" + std::to_string(++n), key.ends_with("c2s"), bytes.substr(at + 96, size)});
      at += 96 + size;
    }
    CHECK(at == bytes.size());
  }
  return out;
}

/// Lines an escript writes (its stdin from `input`, if any).
std::vector<std::string> escript(const std::string& args, const std::string& input = {}) {
  test_support::temp_dir dir("grove-etf");
  const std::string in = dir.file("in.txt");
  std::ofstream(in) << input;
  const std::string script = (source_root / "tests" / "erps" / "etf_judge.escript").string();
  test_support::child_process erl({"sh", "-c", "escript '" + script + "' " + args + " < '" + in + "'; echo END"});
  std::vector<std::string> lines;
  for (std::string line = erl.read_line(std::chrono::seconds(60)); line != "END"; line = erl.read_line(std::chrono::seconds(60))) {
    lines.push_back(line);
  }
  return lines;
}

std::string decode_error(const std::string& bytes, const etf::decode_options& o = {}) {
  try {
    (void)etf::decode(bytes, o);
  } catch (const grove::erps::codec_error& e) {
    return e.what();
  }
  return "decoded";
}

/// What the Elixir server of the captures does: echo a call, keep a cast,
/// answer :last_cast with it.
class golden_server : public grove::erps::term_server {
public:
  term handle_call(grove::erps::term_call c) {
    if (c.request.is_atom("last_cast")) return last_cast_;
    return std::move(c.request);
  }
  void handle_cast(grove::erps::term_cast c) { last_cast_ = std::move(c.request); }

private:
  term last_cast_;
};

/// A daemon set up as the captures' server was: ETF, identifier "grove"
/// and versions "~> 1.2" for all but tcp_default.
grove::erps::daemon start_golden_daemon(grove::node& n, const std::string& capture) {
  grove::erps::daemon_options o;
  o.link.codec = &etf::etf_codec();
  o.link.log = nullptr;
  if (capture != "tcp_default") {
    o.link.identifier = "grove";
    o.version_requirement = "~> 1.2";
  }
  return n.block_on(grove::erps::daemon::start<golden_server>(n, o));
}

} // namespace

TEST_CASE("terms: built in C++, compared in Erlang's term order, printed in Erlang syntax") {
  const term ok = term::tuple({term::atom("ok"), term::binary("value")});
  CHECK(ok.to_string() == "{ok,<<\"value\">>}");
  CHECK(ok.type() == term::kind::tuple);
  CHECK(ok.elements()->at(0).is_atom("ok"));

  // number < atom < reference < fun < port < pid < tuple < map < [] < list < bit string
  const std::vector<term> ordered{term::integer(std::int64_t{-5}), term::floating(1.5), term::integer(std::int64_t{2}),
                                  term::atom("a"), term::tuple({}), term::map({}), term(),
                                  term::list({term::integer(std::int64_t{1})}), term::binary("")};
  for (std::size_t i = 0; i + 1 < ordered.size(); ++i) CHECK(ordered[i] < ordered[i + 1]);
  CHECK(term::integer(std::int64_t{1}) != term::floating(1.0)); // =:=, not ==
  CHECK(term::integer(std::int64_t{1}) < term::floating(1.0));  // the integer first, a total order
  CHECK(term::string("ab") == term::list({term::integer(std::int64_t{97}), term::integer(std::int64_t{98})}));
  CHECK(term::string("ab").to_string() == "\"ab\"");
  CHECK(term::list({term::integer(std::int64_t{1})}, term::atom("x")).to_string() == "[1|x]");
  CHECK(term::list({term::integer(std::int64_t{1})}, term::list({term::integer(std::int64_t{2})})) ==
        term::list({term::integer(std::int64_t{1}), term::integer(std::int64_t{2})}));

  const term m = term::map({{term::binary("key"), term::integer(std::int64_t{1})},
                            {term::atom("ok"), term::string("\x01\x02")},
                            {term::binary("key"), term::integer(std::int64_t{2})}}); // the last value wins
  CHECK(m.entries()->size() == 2);
  CHECK(m.entries()->front().first.is_atom("ok")); // keys in term order: atoms before binaries
  CHECK(*m.find(term::binary("key")) == term::integer(std::int64_t{2}));
  CHECK(m.find(term::binary("nope")) == nullptr);
  CHECK(m.to_string() == "#{ok => [1,2],<<\"key\">> => 2}");

  CHECK(term::integer(std::uint64_t{18446744073709551615u}).type() == term::kind::big_integer);
  CHECK(term::integer(std::uint64_t{18446744073709551615u}).to_string() == "18446744073709551615");
  CHECK(term::big_integer(true, std::string("\x01\x00\x00", 3)).as_integer() == -1); // normalised
  CHECK(term::big_integer(true, std::string("\x00\x00\x00\x00\x00\x00\x00\x80", 8)).as_integer() == INT64_MIN);
  CHECK(term::floating(5.0).to_string() == "5.0");
  CHECK(term::floating(1e15).to_string() == "1.0e15");
  CHECK(term::floating(1234567.0).to_string() == "1234567.0");
  CHECK(term::floating(1.5e-7).to_string() == "1.5e-7");
  CHECK(term::atom("Quoted Atom").to_string() == "'Quoted Atom'");
  CHECK(term::atom("and").to_string() == "'and'");
  CHECK(term::bit_binary("\xff", 3).to_string() == "<<7:3>>");
  CHECK_THROWS_AS(term::atom(std::string(256, 'a')), std::invalid_argument);
}

TEST_CASE("every payload captured from Elixir's erps decodes, and re-encodes to exactly its bytes") {
  std::size_t frames = 0;
  for (const char* capture : {"tcp_default", "tcp_versioned", "tcp_wrong_identifier", "tcp_wrong_version"}) {
    for (const captured& c : payloads_of(capture)) {
      CAPTURE(c.where);
      const term t = etf::decode(c.payload);
      // The versioned session's client writes term_to_binary(T, [{compressed, 9}, {minor_version, 2}]).
      const bool compressed_client = std::string(capture) == "tcp_versioned" && c.client_side;
      etf::encode_options o;
      if (compressed_client) o = {.minor_version = 2, .compress = 9};
      CHECK(hex(etf::encode(t, o)) == hex(c.payload));
      ++frames;
    }
  }
  CHECK(frames >= 40);
  // G1 and G2 of frames.md, by value.
  const auto g = payloads_of("tcp_default");
  CHECK(etf::decode(g[0].payload) == term::tuple({term::integer(std::int64_t{108462924}), term::integer(std::int64_t{42})}));
}

TEST_CASE("replaying Elixir erps clients' captured bytes to a grove ETF daemon gives the captured server bytes exactly") {
  grove::node n{{.threads = 2, .events = nullptr}};
  for (const std::string capture : {"tcp_default", "tcp_versioned"}) {
    CAPTURE(capture);
    auto streams = streams_of(capture);
    const std::string& sent = streams["1 c2s"];
    const std::string& answered = streams["1 s2c"];
    REQUIRE(!answered.empty());
    const auto d = start_golden_daemon(n, capture);
    {
      raw_client c(d.port());
      c.send(sent); // calls (compressed ones in tcp_versioned), a cast, keepalives, verbatim
      const std::string got = c.read_bytes(answered.size(), 20s);
      CHECK(hex(got) == hex(answered));
      CHECK(c.read_bytes(1, 200ms).empty()); // and nothing more: keepalives are not answered
    }
    n.block_on(d.shutdown(5s));
  }
}

TEST_CASE("the captured clients with a wrong identifier or version get an error frame as erps's, and the daemon goes on") {
  // erps's server answers the first such frame with "wrong identifier" or
  // "incompatible version" and then says nothing; grove's error frames have
  // the same header and form (a binary), say why in full, and answer every
  // refused frame so that no caller waits for its timeout.
  grove::node n{{.threads = 2, .events = nullptr}};
  for (const std::string capture : {"tcp_wrong_identifier", "tcp_wrong_version"}) {
    CAPTURE(capture);
    auto streams = streams_of(capture);
    const std::string& answered = streams["1 s2c"];
    REQUIRE(answered.size() > 96);
    const auto d = start_golden_daemon(n, capture);
    {
      raw_client c(d.port());
      c.send(streams["1 c2s"]);
      const std::size_t frames = payloads_of(capture).size() - 1; // all the client's frames but keepalives
      for (std::size_t i = 0; i < frames; ++i) {
        const std::string header = c.read_bytes(96, 10s);
        REQUIRE(header.size() == 96);
        CHECK(hex(header.substr(8)) == hex(answered.substr(8, 88))); // type error, 0.0.0, no identifier, unsigned
        const auto u = [&](std::size_t k) { return static_cast<std::uint32_t>(static_cast<unsigned char>(header[k])); };
        const std::string payload = c.read_bytes((u(4) << 24) | (u(5) << 16) | (u(6) << 8) | u(7), 10s);
        const term why = etf::decode(payload);
        REQUIRE(why.type() == term::kind::binary);
        CHECK(why.bytes()->find(capture == "tcp_wrong_identifier" ? "identifier mismatch" : "is not allowed") != std::string::npos);
      }
    }
    raw_client again(d.port()); // the daemon serves the next client
    again.send(streams_of("tcp_versioned")["1 c2s"].substr(0, 106));
    const auto reply = again.read_frame(10s);
    REQUIRE(reply);
    CHECK(reply->type == grove::erps::frame_type::reply);
    n.block_on(d.shutdown(5s));
  }
}

TEST_CASE("the BEAM as the judge: 400 random terms encoded by erl decode in grove and re-encode to erl's bytes") {
  const std::vector<std::string> lines = escript("generate 400 20261206");
  REQUIRE(lines.size() == 400);
  for (const std::string& line : lines) {
    const auto w = words(line);
    REQUIRE(w.size() == 3);
    CAPTURE(w[0]);
    const term t = etf::decode(unhex(w[0]));
    CHECK(hex(etf::encode(t)) == w[0]);                                    // term_to_binary(T)
    CHECK(hex(etf::encode(t, {.compress = 6})) == w[1]);                   // [{compressed, 6}]
    CHECK(hex(etf::encode(t, {.minor_version = 2})) == w[2]);              // [{minor_version, 2}]
    CHECK(etf::decode(unhex(w[1])) == t);
    CHECK(etf::decode(unhex(w[2])) == t);
  }
}

TEST_CASE("the BEAM as the judge: terms grove encodes, erl reads back to the same bytes and prints as grove does") {
  std::vector<term> table{
      term::tuple({term::atom("ok"), term::binary("value")}),
      term::integer(std::int64_t{0}),
      term::integer(std::int64_t{255}),
      term::integer(std::int64_t{256}),
      term::integer(std::int64_t{-1}),
      term::integer(std::int64_t{2147483647}),
      term::integer(std::int64_t{2147483648}),
      term::integer(std::int64_t{-2147483649}),
      term::integer(INT64_MIN),
      term::integer(std::uint64_t{18446744073709551615u}),
      term::big_integer(false, std::string(300, '\x7f')), // LARGE_BIG_EXT
      term::floating(0.1),
      term::floating(-2.5e300),
      term::atom("héllo"),
      term::atom("π"),
      term::atom(""),
      term(),
      term::string("abc"),
      term::string(std::string(70000, 'x')), // past STRING_EXT's 65535: a LIST_EXT
      term::list({term::integer(std::int64_t{1}), term::atom("two")}, term::floating(3.0)),
      term::list({term::integer(std::int64_t{1}), term::integer(std::int64_t{2})}), // a string on the wire
      term::binary(std::string("\0\1\2", 3)),
      term::bit_binary("\xa0", 3),
      term::map({{term::integer(std::int64_t{1}), term::atom("a")},
                 {term::floating(1.0), term::atom("b")},
                 {term::tuple({}), term()},
                 {term::binary("k"), term::map({{term::atom("nested"), term::boolean(true)}})}}),
  };
  std::vector<term> big_tuple;
  for (int i = 0; i < 300; ++i) big_tuple.push_back(term::integer(std::int64_t{i})); // LARGE_TUPLE_EXT
  table.push_back(term::tuple(big_tuple));
  std::string input;
  for (const term& t : table) input += hex(etf::encode(t)) + "\n";
  const std::vector<std::string> back = escript("check", input);
  REQUIRE(back.size() == table.size());
  for (std::size_t i = 0; i < table.size(); ++i) {
    CAPTURE(i);
    const std::string mine = hex(etf::encode(table[i]));
    CHECK(back[i].substr(0, back[i].find(' ')) == mine);
  }
  // Printing, beside erl's ~p, for the kinds whose syntax is plain ASCII.
  for (std::size_t i : {0u, 4u, 9u, 11u, 17u, 19u, 20u, 21u, 22u, 23u}) {
    CAPTURE(i);
    CHECK(back[i].substr(back[i].find(' ') + 1) == table[i].to_string());
  }
}

TEST_CASE("bad ETF is refused with a clear error, before anything large is allocated") {
  CHECK(decode_error("") == "etf: empty payload (at byte 0)");
  CHECK(decode_error("\x82\x61\x01").find("not 131") != std::string::npos);
  CHECK(decode_error("\x83\x61").find("truncated") != std::string::npos);
  CHECK(decode_error("\x83\x61\x01\x61").find("1 bytes after the term") != std::string::npos);
  CHECK(decode_error("\x83\x52\x00").find("ATOM_CACHE_REF") != std::string::npos);
  CHECK(decode_error("\x83\x01").find("unknown tag 1") != std::string::npos);
  // A list claiming 4 billion elements in 9 bytes: refused for size, not allocated.
  CHECK(decode_error(std::string("\x83\x6c\xff\xff\xff\xff\x6a", 7)).find("truncated") != std::string::npos);
  CHECK(decode_error(std::string("\x83\x74\xff\xff\xff\xff", 6)).find("truncated") != std::string::npos);
  CHECK(decode_error(std::string("\x83\x6d\xff\xff\xff\xff", 6)).find("truncated") != std::string::npos);
  // Nesting past max_depth.
  std::string deep = "\x83";
  for (int i = 0; i < 200; ++i) deep += std::string("\x6c\x00\x00\x00\x01", 5);
  deep += "\x6a";
  for (int i = 0; i < 200; ++i) deep += "\x6a";
  CHECK(decode_error(deep).find("nested deeper than 128") != std::string::npos);
  CHECK(decode_error(deep, {.max_depth = 250}) == "decoded");
  // A compressed term: over the inflate limit, lying about its size, corrupt.
  const std::string packed = etf::encode(term::binary(std::string(10000, 'e')), {.compress = 9});
  REQUIRE(static_cast<unsigned char>(packed[1]) == 80);
  CHECK(decode_error(packed) == "decoded");
  CHECK(decode_error(packed, {.max_inflated = 1000}).find("the limit is 1000") != std::string::npos);
  std::string lying = packed;
  lying[5] = static_cast<char>(lying[5] + 1); // stated size one more than it inflates to
  CHECK(decode_error(lying).find("does not inflate to its stated") != std::string::npos);
  std::string corrupt = packed;
  corrupt[8] = static_cast<char>(corrupt[8] ^ 0x55);
  CHECK(decode_error(corrupt) != "decoded");
  // A map with a key twice; an atom that is not UTF-8.
  CHECK(decode_error(std::string("\x83\x74\x00\x00\x00\x02\x61\x01\x61\x02\x61\x01\x61\x03", 14)).find("key twice") != std::string::npos);
  CHECK(decode_error(std::string("\x83\x77\x01\xff", 4)).find("not valid UTF-8") != std::string::npos);
}
