// The daemon's whole request path under a fuzzer: groved's own tree (store
// shards and erps sessions, apps/groved/tree.hpp) on a node, and each input
// read as a small program that writes frames over an in-memory connection
// the daemon adopts (erps/detail/memory_transport.hpp). Frames carry JSON
// built from a grammar: requests groved knows and ones it does not, values
// deep (to 100,000 levels) and wide, numbers past 64 bits, escapes,
// surrogates, bad UTF-8, malformed text, and frames split at any byte, with
// bad headers now and then. An input that starts with 'E' goes to a second
// groved, whose codec is ETF: frames carry Erlang terms from a grammar of
// ETF bytes (maps with atom and binary keys, every integer width, floats,
// binaries, strings, improper lists, pids, nesting to 100,000 levels,
// compressed terms, and bytes flipped or cut), so the frame + ETF path and
// the term-to-JSON mapping groved's handlers sit behind are fuzzed too.
//
// What must hold, for any input:
//   - nothing crashes (ASan/UBSan watch the daemon, the crash report hook
//     counts a process that died by its own hand: any is a failure);
//   - the daemon writes only well-formed frames whose payloads the codec
//     reads;
//   - when every frame sent was whole and of a known type, every call is
//     answered, by a reply or an error frame naming its id (or, for a call
//     whose id cannot be read, an error frame without one; ETF error frames
//     never name one), and a ping sent last comes back;
//   - after the peer's end of stream the daemon closes the connection;
//   - the daemon keeps serving: each input is a new connection.
// Shared by the libFuzzer target (tests/fuzz/daemon_fuzz.cpp) and a doctest
// that replays its seed corpus (tests/erps/fuzz_corpus_test.cpp).
#pragma once

#include "config.hpp"
#include "logger.hpp"
#include "service.hpp"
#include "tree.hpp"

#include <grove/core/node.hpp>
#include <grove/erps/etf.hpp>
#include <grove/erps/json_codec.hpp>
#include <grove/erps/daemon.hpp>
#include <grove/erps/detail/memory_transport.hpp>
#include <grove/erps/frame.hpp>
#include <grove/registry/local_registry.hpp>
#include <grove/supervisor/supervisor.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace grove_daemon_fuzz {

using namespace std::chrono_literals;

[[noreturn]] inline void fail(const std::string& why) {
  std::fprintf(stderr, "daemon fuzz: %s\n", why.c_str());
  std::abort();
}
inline void require(bool ok, const char* why) {
  if (!ok) fail(why);
}

// --- the input, as a stream of choices --------------------------------------

class choices {
public:
  choices(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}
  bool empty() const noexcept { return at_ >= size_; }
  std::uint8_t byte() noexcept { return at_ < size_ ? data_[at_++] : 0; }
  std::size_t below(std::size_t n) noexcept { return n == 0 ? 0 : byte() % n; }
  std::uint32_t u32() noexcept {
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v = (v << 8) | byte();
    return v;
  }

private:
  const std::uint8_t* data_;
  std::size_t size_;
  std::size_t at_ = 0;
};

// --- the JSON grammar ----------------------------------------------------------

inline void string_body(choices& in, std::string& out) {
  static const char* const pieces[] = {
      "a", "key", "room/1", " ", "\\n", "\\\"", "\\\\", "\\/", "\\u0000", "\\u00e9", "\\ud83d\\ude00",
      "\\ud800",             // a lone surrogate
      "\xc3\xa9",            // é
      "\xf0\x9f\x98\x80",    // an emoji
      "\xc0\xaf",            // overlong
      "\xed\xa0\x80",        // an encoded surrogate
      "\xff",                // never UTF-8
      "\x01",                // a raw control character
      "\\x",                 // a bad escape
      "\\u12",               // a short one
  };
  const std::size_t n = in.below(8);
  for (std::size_t i = 0; i < n; ++i) out += pieces[in.below(std::size(pieces))];
}

inline void number(choices& in, std::string& out) {
  static const char* const numbers[] = {"0", "1", "-1", "-0", "42", "9223372036854775807", "9223372036854775808",
                                        "-9223372036854775808", "-9223372036854775809", "18446744073709551615",
                                        "18446744073709551616", "123456789012345678901234567890", "1.5", "-0.0",
                                        "1e400", "-1e-400", "1E2", "0.1e1", "01", "+1", ".5", "1.", "NaN", "-"};
  out += numbers[in.below(std::size(numbers))];
}

inline void value(choices& in, std::string& out, int depth);

inline void container(choices& in, std::string& out, int depth, bool object) {
  out += object ? '{' : '[';
  const std::size_t n = in.below(5);
  for (std::size_t i = 0; i < n; ++i) {
    if (i > 0) out += in.below(40) == 0 ? "" : ","; // now and then a comma missing
    if (object) {
      out += '"';
      string_body(in, out);
      out += "\":";
    }
    value(in, out, depth + 1);
  }
  if (in.below(40) != 0) out += object ? '}' : ']'; // now and then left open
}

inline void value(choices& in, std::string& out, int depth) {
  if (depth > 12) { // the grammar's own recursion stays shallow; depth comes from "deep" below
    number(in, out);
    return;
  }
  switch (in.below(11)) {
    case 0: out += "null"; return;
    case 1: out += in.below(2) ? "true" : "false"; return;
    case 2: number(in, out); return;
    case 3:
      out += '"';
      string_body(in, out);
      out += '"';
      return;
    case 4: container(in, out, depth, false); return;
    case 5: container(in, out, depth, true); return;
    case 6: { // deep: 100 to 100,000 levels
      static const std::size_t depths[] = {100, 126, 127, 128, 129, 1000, 1024, 1025, 100'000};
      const std::size_t d = depths[in.below(std::size(depths))];
      const bool objects = in.below(2) != 0;
      for (std::size_t i = 0; i < d; ++i) out += objects ? "{\"k\":" : "[";
      out += "1";
      for (std::size_t i = 0; i < d; ++i) out += objects ? '}' : ']';
      return;
    }
    case 7: { // wide
      const std::size_t n = 1 + in.below(4) * 2000;
      out += '[';
      for (std::size_t i = 0; i < n; ++i) out += i == 0 ? "0" : ",0";
      out += ']';
      return;
    }
    case 8: { // a long string
      out += '"';
      out.append(1 + in.below(8) * 4096, 'x');
      out += '"';
      return;
    }
    case 9: out += in.below(2) ? "nul" : "\"unterminated"; return; // malformed
    default: out += " \t\n"; value(in, out, depth); return;      // whitespace around
  }
}

inline std::string request(choices& in) {
  static const char* const ops[] = {"ping", "get", "put", "delete", "incr", "keys", "subscribe", "unsubscribe",
                                    "stats", "", "nope"};
  static const char* const fields[] = {"key", "value", "by", "prefix", "limit", "topic", "data", "op"};
  if (in.below(16) == 0) { // not an object at all
    std::string other;
    value(in, other, 0);
    return other;
  }
  std::string out = "{\"op\":\"";
  out += ops[in.below(std::size(ops))];
  out += '"';
  const std::size_t n = in.below(4);
  for (std::size_t i = 0; i < n; ++i) {
    out += ",\"";
    out += fields[in.below(std::size(fields))];
    out += "\":";
    if (in.below(3) == 0) {
      out += "\"room/";
      string_body(in, out);
      out += '"';
    } else {
      value(in, out, 1);
    }
  }
  out += '}';
  return out;
}

// --- the ETF grammar ------------------------------------------------------------
// ETF bytes written directly (no term objects: a term 100,000 levels deep
// would take the harness's own stack with it).

inline void put_u32(std::string& out, std::uint32_t v) {
  for (int i = 3; i >= 0; --i) out += static_cast<char>((v >> (8 * i)) & 0xff);
}

inline void etf_atom(std::string& out, std::string_view name) {
  out += '\x77'; // SMALL_ATOM_UTF8_EXT
  out += static_cast<char>(name.size());
  out += name;
}

inline void etf_binary(std::string& out, std::string_view bytes) {
  out += '\x6d'; // BINARY_EXT
  put_u32(out, static_cast<std::uint32_t>(bytes.size()));
  out += bytes;
}

inline void etf_integer(choices& in, std::string& out) {
  switch (in.below(5)) {
    case 0: out += '\x61', out += static_cast<char>(in.byte()); return;         // SMALL_INTEGER_EXT
    case 1: out += '\x62', put_u32(out, in.u32()); return;                      // INTEGER_EXT
    case 2: {                                                                   // SMALL_BIG_EXT, 1 to 12 bytes
      const std::size_t n = 1 + in.below(12);
      out += '\x6e', out += static_cast<char>(n), out += static_cast<char>(in.below(2));
      for (std::size_t i = 0; i < n; ++i) out += static_cast<char>(in.byte());
      return;
    }
    case 3: out += "\x6e\x08\x00\xff\xff\xff\xff\xff\xff\xff\xff"; return; // 2^64 - 1
    default: out += "\x6e\x00\x00"; return;                                   // a big integer of no digits
  }
}

inline void etf_value(choices& in, std::string& out, int depth);

inline void etf_map(choices& in, std::string& out, int depth, std::string_view op) {
  static const char* const fields[] = {"key", "value", "by", "prefix", "limit", "topic", "data", "op"};
  const std::size_t n = in.below(4);
  out += '\x74'; // MAP_EXT
  put_u32(out, static_cast<std::uint32_t>(n + (op.empty() ? 0 : 1)));
  auto key = [&](std::string_view name) { in.below(2) ? etf_atom(out, name) : etf_binary(out, name); };
  if (!op.empty()) {
    key("op");
    in.below(2) ? etf_atom(out, op) : etf_binary(out, op);
  }
  for (std::size_t i = 0; i < n; ++i) {
    key(fields[in.below(std::size(fields))]); // a key twice is Erlang's to refuse, and ours
    if (in.below(3) == 0) {
      std::string room = "room/";
      string_body(in, room);
      etf_binary(out, room);
    } else {
      etf_value(in, out, depth + 1);
    }
  }
}

inline void etf_value(choices& in, std::string& out, int depth) {
  if (depth > 12) {
    etf_integer(in, out);
    return;
  }
  switch (in.below(14)) {
    case 0: etf_atom(out, in.below(2) ? "nil" : in.below(2) ? "true" : "false"); return;
    case 1: etf_integer(in, out); return;
    case 2: { // NEW_FLOAT_EXT: any bits, NaN and infinities included
      out += '\x46';
      for (int i = 0; i < 8; ++i) out += static_cast<char>(in.byte());
      return;
    }
    case 3: {
      std::string bytes;
      string_body(in, bytes);
      etf_binary(out, bytes);
      return;
    }
    case 4: { // SMALL_TUPLE_EXT
      const std::size_t n = in.below(4);
      out += '\x68', out += static_cast<char>(n);
      for (std::size_t i = 0; i < n; ++i) etf_value(in, out, depth + 1);
      return;
    }
    case 5: { // LIST_EXT, proper or not
      const std::size_t n = 1 + in.below(4);
      out += '\x6c', put_u32(out, static_cast<std::uint32_t>(n));
      for (std::size_t i = 0; i <= n; ++i) {
        if (i == n && in.below(4) != 0) out += '\x6a'; else etf_value(in, out, depth + 1);
      }
      return;
    }
    case 6: etf_map(in, out, depth, {}); return;
    case 7: { // STRING_EXT
      std::string bytes;
      string_body(in, bytes);
      out += '\x6b', out += static_cast<char>(bytes.size() >> 8), out += static_cast<char>(bytes.size() & 0xff), out += bytes;
      return;
    }
    case 8: { // a pid: no JSON form
      out += '\x58';
      etf_atom(out, "nonode@nohost");
      put_u32(out, in.u32()), put_u32(out, in.u32()), put_u32(out, in.u32());
      return;
    }
    case 9: { // deep: 100 to 100,000 levels of tuples or lists
      static const std::size_t depths[] = {100, 127, 128, 129, 1024, 1025, 100'000};
      const std::size_t d = depths[in.below(std::size(depths))];
      const bool lists = in.below(2) != 0;
      for (std::size_t i = 0; i < d; ++i) out += lists ? std::string_view("\x6c\x00\x00\x00\x01", 5) : std::string_view("\x68\x01", 2);
      out += "\x61\x01";
      if (lists) out.append(d, '\x6a');
      return;
    }
    case 10: { // wide: a list of up to 6,000 small integers
      const std::size_t n = 1 + in.below(4) * 2000;
      out += '\x6c', put_u32(out, static_cast<std::uint32_t>(n));
      for (std::size_t i = 0; i < n; ++i) out += "\x61\x00";
      out += '\x6a';
      return;
    }
    case 11: out += '\x6a'; return; // []
    case 12: { // a size that lies
      out += in.below(2) ? '\x6d' : '\x6c';
      put_u32(out, in.u32());
      return;
    }
    default: out += static_cast<char>(in.byte()); return; // any tag
  }
}

/// A request: most often a map with an op groved knows, else any term.
inline std::string etf_request_body(choices& in) {
  static const char* const ops[] = {"ping", "get", "put", "delete", "incr", "keys", "subscribe", "unsubscribe",
                                    "stats", "", "nope"};
  std::string out;
  if (in.below(8) == 0) {
    etf_value(in, out, 0);
  } else {
    etf_map(in, out, 1, ops[in.below(std::size(ops))]);
  }
  return out;
}

/// A whole payload: 131, then `body`; now and then compressed (as erps's
/// compressed: option sends), a byte flipped, or cut short.
inline std::string etf_payload(choices& in, const std::string& body) {
  std::string out = "\x83" + body;
  switch (in.below(12)) {
    case 0:
      try { // compressed, when it reads
        out = grove::erps::etf::encode(grove::erps::etf::decode(out), {.compress = 6});
      } catch (const grove::erps::codec_error&) {
      }
      break;
    case 1:
      if (!out.empty()) out[in.below(out.size())] = static_cast<char>(in.byte());
      break;
    case 2: out.resize(in.below(out.size() + 1)); break;
    default: break;
  }
  return out;
}

inline std::string etf_integer_id(std::uint64_t id) {
  std::string out = "\x62";
  put_u32(out, static_cast<std::uint32_t>(id));
  return out;
}

/// {Id, Request}, as an erps client sends a call.
inline std::string etf_call(choices& in, std::uint64_t id) {
  return etf_payload(in, "\x68\x02" + etf_integer_id(id) + etf_request_body(in));
}

// --- the daemon -------------------------------------------------------------------

struct rig {
  std::atomic<std::uint64_t> crashes{0};
  bool etf = false; // groved's codec is ETF, and inputs are read with the ETF grammar
  grove::node node;
  groved::config settings;
  groved::logger log{groved::log_level::error, groved::log_format::logfmt};
  grove::local_registry names{node};
  std::shared_ptr<groved::service_state> state;
  std::vector<groved::part> parts;
  grove::supervisor top;
  grove::erps::daemon daemon;

  explicit rig(bool speak_etf = false)
      : node(grove::node_options{.threads = 2, .events = [this](const grove::event& e) {
                                   if (e.layer == "core" && e.name == "process_crashed") ++crashes;
                                   grove::logfmt_to_stderr(e);
                                 }}) {
    settings = groved::default_config();
    settings.tcp = {true, "127.0.0.1", 0}; // listening, but the fuzzer's connections are adopted
    settings.tls.enabled = false;
    settings.max_payload = 256 * 1024; // small, so the length limit is within reach
    settings.shards = 2;
    etf = speak_etf;
    if (etf) settings.codec = "etf";
    state = std::make_shared<groved::service_state>(names, settings, log, settings.shards);
    grove::supervisor_options o;
    o.strategy = grove::restart_strategy::rest_for_one;
    parts = groved::tree(settings, state, nullptr);
    top = node.block_on(grove::supervisor::start(node, groved::child_specs(parts), o));
    daemon = state->daemons()[groved::tcp_slot];
    require(static_cast<bool>(daemon), "groved's tcp daemon did not start");
  }
};


// --- one input --------------------------------------------------------------------

// What the daemon wrote, frame by frame, read as it comes: while waiting,
// only the ids (a cheap scan); at the end, every payload in full.
class answer_reader {
public:
  std::set<std::uint64_t> ids;  // call ids answered by reply or error frame
  std::size_t without_id = 0;   // error frames answering no id
  std::size_t replies = 0;      // reply frames, whatever their id

  answer_reader(bool full, bool etf) : full_(full), etf_(etf) {}

  void update(std::string_view all) {
    decoder_.feed(all.substr(seen_));
    seen_ = all.size();
    // ETF answers read as JSON ones do: through the codec's JSON view, which
    // reads everything the daemon may write (groved's values are JSON).
    const auto& codec = etf_ ? *grove::erps::codec_as<grove::erps::json>(grove::erps::etf::etf_codec())
                             : grove::erps::json_codec();
    const grove::erps::decode_limits any{.max_depth = grove::erps::max_depth_limit};
    while (auto f = decoder_.next()) {
      if (f.keepalive()) continue;
      std::optional<grove::erps::json> id;
      switch (f.header.type) {
        case grove::erps::frame_type::reply:
          ++replies;
          id = full_ ? std::optional(codec.read_reply(f.payload, any).id) : codec.read_reply_id(f.payload);
          break;
        case grove::erps::frame_type::error:
          id = full_ ? codec.read_error(f.payload, any).id : codec.read_call_id(f.payload);
          if (!id) ++without_id;
          break;
        case grove::erps::frame_type::push:
          if (full_) codec.read_value(f.payload, any);
          break;
        default: fail("the daemon wrote a " + std::string(grove::erps::to_string(f.header.type)) + " frame");
      }
      if (id) {
        if (const auto n = codec.id_number(*id)) ids.insert(*n);
      }
    }
    require(!decoder_.failed(), "the daemon wrote bytes that are not erps frames");
  }
  bool complete() const noexcept { return !decoder_.in_frame(); }

private:
  bool full_;
  bool etf_;
  grove::erps::frame_decoder decoder_{64u << 20};
  std::size_t seen_ = 0;
};

inline int run_one(rig& r, const std::uint8_t* data, std::size_t size) {
  choices in(data, size);
  const std::size_t worker = in.below(r.node.size());
  const std::size_t split = in.byte();
  const std::size_t vary = in.byte();
  auto connection = grove::erps::detail::make_memory_connection(r.node.context(worker).get_executor());
  grove::erps::detail::adopt_connection(r.daemon, std::move(connection.daemon_side), worker);
  grove::erps::detail::memory_peer& peer = connection.peer;

  const grove::erps::frame_writer writer{};
  std::string stream;             // what this input sends, split below
  std::set<std::uint64_t> calls;  // ids of whole, well-formed-header calls
  std::size_t unreadable_calls = 0;
  std::size_t etf_calls = 0; // ETF: each answered by a reply or an error frame (naming no call); a flipped byte may change its id
  bool whole = true;              // every frame whole and of a known type
  std::uint64_t next_id = 1;
  for (std::size_t frames = 0; !in.empty() && frames < 64; ++frames) {
    const std::size_t what = in.below(10);
    if (what <= 4) { // a call
      const std::uint64_t id = next_id++;
      std::string payload;
      if (r.etf) {
        payload = etf_call(in, id);
      } else {
        payload = "[" + std::to_string(id) + "," + request(in) + "]";
        if (in.below(24) == 0) payload.resize(in.below(payload.size() + 1)); // cut short: the id may go with it
      }
      stream += writer.frame(grove::erps::frame_type::call, payload);
      if (payload.size() > r.settings.max_payload) {
        whole = false; // refused from its header: the stream ends there
      } else if (r.etf) {
        ++etf_calls;
      } else if (grove::erps::json_codec().read_call_id(payload)) {
        calls.insert(id);
      } else {
        ++unreadable_calls;
      }
    } else if (what <= 6) { // a cast
      std::string payload = r.etf ? etf_payload(in, etf_request_body(in)) : request(in);
      if (payload.size() > r.settings.max_payload) whole = false;
      stream += writer.frame(grove::erps::frame_type::cast, payload);
    } else if (what == 7) {
      stream += grove::erps::frame_writer::keepalive();
    } else if (what == 8) { // any type byte: one a client does not send, an unknown one, a keepalive with a length
      std::string f = writer.frame(grove::erps::frame_type::push, r.etf ? etf_payload(in, etf_request_body(in)) : request(in));
      const auto type = static_cast<std::uint8_t>(in.byte() % 10);
      f[8] = static_cast<char>(type);
      // 1-4 and 8 are frames the daemon answers (or refuses) and goes on; the rest end the stream.
      if (!(type >= 1 && type <= 4) && type != 8) whole = false;
      if (f.size() > grove::erps::header_size + r.settings.max_payload) whole = false;
      stream += f;
    } else { // a header that lies: a wrong magic, or a length past the frame (or past the maximum)
      std::string f = writer.frame(grove::erps::frame_type::call, r.etf ? etf_call(in, next_id++) : request(in));
      if (in.below(2) == 0) {
        f[in.below(4)] = static_cast<char>(in.byte());
      } else {
        const std::uint32_t claim = in.u32();
        for (int i = 0; i < 4; ++i) f[4 + i] = static_cast<char>((claim >> (24 - 8 * i)) & 0xff);
      }
      stream += f;
      whole = false;
    }
  }
  const std::uint64_t sentinel = next_id;
  if (r.etf) {
    std::string ping = "\x83\x68\x02" + etf_integer_id(sentinel) + "\x74";
    put_u32(ping, 1);
    etf_atom(ping, "op");
    etf_atom(ping, "ping");
    stream += writer.frame(grove::erps::frame_type::call, ping);
  } else {
    stream += writer.frame(grove::erps::frame_type::call, "[" + std::to_string(sentinel) + ",{\"op\":\"ping\"}]");
  }

  // Sent in pieces of the sizes the input chose at its start (1 byte to
  // 64 KiB, varying piece by piece), the rest in one piece after 256.
  std::size_t at = 0;
  for (std::size_t k = 0; at < stream.size() && k < 256; ++k) {
    const std::size_t piece = std::size_t{1} << ((split + k * vary) % 17);
    peer.write(stream.substr(at, piece));
    at += piece;
  }
  if (at < stream.size()) peer.write(stream.substr(at));

  if (whole) {
    // Every call answered, the ping last sent among them.
    answer_reader waiting(false, r.etf);
    auto all_answered = [&] {
      if (!waiting.ids.contains(sentinel)) return false;
      for (std::uint64_t id : calls) {
        if (!waiting.ids.contains(id)) return false;
      }
      if (r.etf) return waiting.replies + waiting.without_id >= etf_calls + 1;
      return waiting.without_id >= unreadable_calls;
    };
    peer.wait_for(20s, [&](std::string_view bytes) {
      waiting.update(bytes);
      return all_answered();
    });
    require(waiting.ids.contains(sentinel), "the ping after the input was not answered within 20 s");
    for (std::uint64_t id : calls) require(waiting.ids.contains(id), "a call was not answered");
    require(waiting.without_id >= unreadable_calls, "a call whose id could not be read got no error frame");
    require(!r.etf || waiting.replies + waiting.without_id >= etf_calls + 1, "an ETF call got neither a reply nor an error frame");
  }
  peer.close();
  const std::string out = peer.wait_for(20s, [](std::string_view) { return false; });
  require(peer.closed_by_daemon(), "the daemon did not close the connection after the peer's end of stream");
  answer_reader written(true, r.etf);
  written.update(out);
  require(written.complete(), "the daemon closed in the middle of a frame it wrote");
  require(r.crashes.load() == 0, "a process crashed");
  return 0;
}

/// One input: to the ETF daemon when it starts with 'E' (the rest is the
/// program), else to the JSON one.
inline int run_input(rig& json_daemon, rig& etf_daemon, const std::uint8_t* data, std::size_t size) {
  if (size > 0 && data[0] == 'E') return run_one(etf_daemon, data + 1, size - 1);
  return run_one(json_daemon, data, size);
}

} // namespace grove_daemon_fuzz
