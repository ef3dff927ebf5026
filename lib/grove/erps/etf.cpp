#include <grove/erps/etf.hpp>
#include <grove/erps/term_json.hpp>

#include <zlib.h>

#include <algorithm>
#include <bit>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace grove::erps::etf {

namespace {

enum tag : std::uint8_t {
  version_tag = 131,
  new_float_ext = 70,
  bit_binary_ext = 77,
  compressed = 80,
  atom_cache_ref = 82,
  new_pid_ext = 88,
  new_port_ext = 89,
  newer_reference_ext = 90,
  small_integer_ext = 97,
  integer_ext = 98,
  float_ext = 99,
  atom_ext = 100,
  reference_ext = 101,
  port_ext = 102,
  pid_ext = 103,
  small_tuple_ext = 104,
  large_tuple_ext = 105,
  nil_ext = 106,
  string_ext = 107,
  list_ext = 108,
  binary_ext = 109,
  small_big_ext = 110,
  large_big_ext = 111,
  new_fun_ext = 112,
  export_ext = 113,
  new_reference_ext = 114,
  small_atom_ext = 115,
  map_ext = 116,
  fun_ext = 117,
  atom_utf8_ext = 118,
  small_atom_utf8_ext = 119,
  v4_port_ext = 120,
  local_ext = 121,
  dist_header = 68,
  dist_frag_header = 69,
};

// -- encoding -----------------------------------------------------------------

void put_u16(std::string& out, std::uint32_t v) {
  out.push_back(static_cast<char>(v >> 8));
  out.push_back(static_cast<char>(v));
}
void put_u32(std::string& out, std::uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>(v >> shift));
}

/// The code points of a UTF-8 name, or nullopt if it is not valid UTF-8.
std::optional<std::vector<std::uint32_t>> code_points(std::string_view s) {
  std::vector<std::uint32_t> out;
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return std::nullopt;
    std::uint32_t cp = n == 1 ? c : c & (0xFF >> (n + 1));
    for (std::size_t k = 1; k < n; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return std::nullopt;
      cp = (cp << 6) | (cc & 0x3F);
    }
    out.push_back(cp);
    i += n;
  }
  return out;
}

/// Whether a UTF-8 name is all Latin-1 (ASCII, or two-byte sequences led
/// by C2 or C3), without allocating: the common case of an atom.
bool latin1(std::string_view s) noexcept {
  for (std::size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) continue;
    if ((c != 0xC2 && c != 0xC3) || i + 1 == s.size() || (static_cast<unsigned char>(s[i + 1]) & 0xC0) != 0x80) return false;
    ++i;
  }
  return true;
}

void encode_atom(std::string& out, const std::string& name, int minor_version) {
  if (minor_version < 2 && latin1(name)) {
    out.push_back(static_cast<char>(atom_ext));
    const std::size_t length_at = out.size();
    out.append(2, '\0');
    std::size_t characters = 0;
    for (std::size_t i = 0; i < name.size(); ++i, ++characters) {
      const auto c = static_cast<unsigned char>(name[i]);
      if (c < 0x80) {
        out.push_back(static_cast<char>(c));
      } else {
        out.push_back(static_cast<char>(((c & 0x03) << 6) | (static_cast<unsigned char>(name[i + 1]) & 0x3F)));
        ++i;
      }
    }
    out[length_at] = static_cast<char>(characters >> 8);
    out[length_at + 1] = static_cast<char>(characters);
    return;
  }
  if (name.size() < 256) {
    out.push_back(static_cast<char>(small_atom_utf8_ext));
    out.push_back(static_cast<char>(name.size()));
  } else {
    out.push_back(static_cast<char>(atom_utf8_ext));
    put_u16(out, static_cast<std::uint32_t>(name.size()));
  }
  out += name;
}

void encode_big(std::string& out, bool negative, std::string_view magnitude) {
  if (magnitude.size() < 256) {
    out.push_back(static_cast<char>(small_big_ext));
    out.push_back(static_cast<char>(magnitude.size()));
  } else {
    out.push_back(static_cast<char>(large_big_ext));
    put_u32(out, static_cast<std::uint32_t>(magnitude.size()));
  }
  out.push_back(negative ? 1 : 0);
  out += magnitude;
}

void encode_integer(std::string& out, std::int64_t v) {
  if (v >= 0 && v <= 255) {
    out.push_back(static_cast<char>(small_integer_ext));
    out.push_back(static_cast<char>(v));
  } else if (v >= INT32_MIN && v <= INT32_MAX) {
    out.push_back(static_cast<char>(integer_ext));
    put_u32(out, static_cast<std::uint32_t>(static_cast<std::int32_t>(v)));
  } else {
    std::uint64_t m = v < 0 ? static_cast<std::uint64_t>(0) - static_cast<std::uint64_t>(v) : static_cast<std::uint64_t>(v);
    std::string magnitude;
    for (; m != 0; m >>= 8) magnitude.push_back(static_cast<char>(m & 0xFF));
    encode_big(out, v < 0, magnitude);
  }
}

bool byte_list(const std::vector<term>& elements) {
  if (elements.size() > 65535) return false;
  return std::all_of(elements.begin(), elements.end(), [](const term& e) {
    const auto i = e.as_integer();
    return i && *i >= 0 && *i <= 255;
  });
}

void encode_term(std::string& out, const term& t, int minor_version, std::uint32_t depth) {
  if (depth > max_depth_limit) throw codec_error("etf: a term nested deeper than " + std::to_string(max_depth_limit));
  switch (t.type()) {
  case term::kind::integer:
    encode_integer(out, *t.as_integer());
    return;
  case term::kind::big_integer:
    encode_big(out, t.big_negative(), *t.big_magnitude());
    return;
  case term::kind::floating: {
    out.push_back(static_cast<char>(new_float_ext));
    const auto bits = std::bit_cast<std::uint64_t>(*t.as_floating());
    for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<char>(bits >> shift));
    return;
  }
  case term::kind::atom:
    encode_atom(out, *t.atom_name(), minor_version);
    return;
  case term::kind::reference:
  case term::kind::fun:
  case term::kind::port:
  case term::kind::pid: {
    const term::opaque_parts& o = *t.opaque();
    out.push_back(static_cast<char>(o.tag));
    const std::size_t size_at = out.size();
    if (o.tag == new_fun_ext) out.append(4, '\0'); // its size, counting itself: known at the end
    for (std::size_t i = 0; i < o.fields.size(); ++i) {
      if (o.layout[i] == 'r') out += *o.fields[i].bytes();
      else encode_term(out, o.fields[i], minor_version, depth + 1);
    }
    if (o.tag == new_fun_ext) {
      std::string size;
      put_u32(size, static_cast<std::uint32_t>(out.size() - size_at));
      out.replace(size_at, 4, size);
    }
    return;
  }
  case term::kind::tuple: {
    const auto& e = *t.elements();
    if (e.size() < 256) {
      out.push_back(static_cast<char>(small_tuple_ext));
      out.push_back(static_cast<char>(e.size()));
    } else {
      out.push_back(static_cast<char>(large_tuple_ext));
      put_u32(out, static_cast<std::uint32_t>(e.size()));
    }
    for (const term& x : e) encode_term(out, x, minor_version, depth + 1);
    return;
  }
  case term::kind::map: {
    const auto& entries = *t.entries();
    out.push_back(static_cast<char>(map_ext));
    put_u32(out, static_cast<std::uint32_t>(entries.size()));
    for (const auto& [k, v] : entries) {
      encode_term(out, k, minor_version, depth + 1);
      encode_term(out, v, minor_version, depth + 1);
    }
    return;
  }
  case term::kind::nil:
    out.push_back(static_cast<char>(nil_ext));
    return;
  case term::kind::list: {
    if (const std::string* s = t.string_bytes(); s && s->size() <= 65535) {
      out.push_back(static_cast<char>(string_ext));
      put_u16(out, static_cast<std::uint32_t>(s->size()));
      out += *s;
      return;
    }
    // A list kept as elements is encoded in place; only a string past
    // STRING_EXT's 65535 bytes is spelled out as integers.
    std::vector<term> spelled;
    const std::vector<term>* items = t.list_items();
    if (!items) {
      spelled = t.list_elements();
      items = &spelled;
    }
    const std::vector<term>& elements = *items;
    if (t.list_tail().is_nil() && byte_list(elements)) {
      out.push_back(static_cast<char>(string_ext));
      put_u16(out, static_cast<std::uint32_t>(elements.size()));
      for (const term& e : elements) out.push_back(static_cast<char>(*e.as_integer()));
      return;
    }
    out.push_back(static_cast<char>(list_ext));
    put_u32(out, static_cast<std::uint32_t>(elements.size()));
    for (const term& e : elements) encode_term(out, e, minor_version, depth + 1);
    encode_term(out, t.list_tail(), minor_version, depth + 1);
    return;
  }
  case term::kind::binary:
    out.push_back(static_cast<char>(binary_ext));
    put_u32(out, static_cast<std::uint32_t>(t.bytes()->size()));
    out += *t.bytes();
    return;
  case term::kind::bit_binary:
    out.push_back(static_cast<char>(bit_binary_ext));
    put_u32(out, static_cast<std::uint32_t>(t.bytes()->size()));
    out.push_back(static_cast<char>(t.bits_in_last()));
    out += *t.bytes();
    return;
  }
}

// -- decoding -----------------------------------------------------------------

class reader {
public:
  reader(std::string_view bytes, const decode_options& options) : bytes_(bytes), options_(options) {}

  term top() {
    if (bytes_.empty()) fail("empty payload");
    if (u8() != version_tag) fail("the first byte is not 131 (the ETF version)");
    if (at_ < bytes_.size() && static_cast<std::uint8_t>(bytes_[at_]) == compressed) return inflated();
    term t = any(0);
    if (at_ != bytes_.size()) fail(std::to_string(bytes_.size() - at_) + " bytes after the term");
    return t;
  }

private:
  [[noreturn]] void fail(const std::string& why) const {
    throw codec_error("etf: " + why + " (at byte " + std::to_string(at_) + ")");
  }
  void need(std::size_t n) const {
    if (bytes_.size() - at_ < n) fail("truncated: " + std::to_string(n) + " bytes needed, " + std::to_string(bytes_.size() - at_) + " left");
  }
  std::uint8_t u8() {
    need(1);
    return static_cast<std::uint8_t>(bytes_[at_++]);
  }
  std::uint32_t u16() {
    need(2);
    const auto* p = reinterpret_cast<const unsigned char*>(bytes_.data() + at_);
    at_ += 2;
    return (std::uint32_t{p[0]} << 8) | p[1];
  }
  std::uint32_t u32() {
    need(4);
    const auto* p = reinterpret_cast<const unsigned char*>(bytes_.data() + at_);
    at_ += 4;
    return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) | p[3];
  }
  std::string take(std::size_t n) {
    need(n);
    std::string s(bytes_.substr(at_, n));
    at_ += n;
    return s;
  }

  term inflated() {
    ++at_; // the tag
    const std::uint32_t size = u32();
    if (size > options_.max_inflated) {
      fail("a compressed term of " + std::to_string(size) + " bytes (the limit is " + std::to_string(options_.max_inflated) + ")");
    }
    std::string out(size, '\0');
    z_stream z{};
    if (inflateInit(&z) != Z_OK) fail("zlib's inflateInit failed");
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(bytes_.data() + at_));
    z.avail_in = static_cast<uInt>(bytes_.size() - at_);
    z.next_out = reinterpret_cast<Bytef*>(out.data());
    z.avail_out = size;
    const int rc = inflate(&z, Z_FINISH);
    const std::size_t produced = size - z.avail_out;
    const std::size_t consumed = (bytes_.size() - at_) - z.avail_in;
    inflateEnd(&z);
    if (rc != Z_STREAM_END || produced != size) {
      fail(rc == Z_STREAM_END || rc == Z_BUF_ERROR ? "a compressed term does not inflate to its stated " + std::to_string(size) + " bytes"
                                                   : "a compressed term's zlib data is corrupt");
    }
    if (consumed != bytes_.size() - at_) fail(std::to_string(bytes_.size() - at_ - consumed) + " bytes after the compressed term");
    reader inner(out, options_);
    term t = inner.any(0);
    if (inner.at_ != out.size()) inner.fail(std::to_string(out.size() - inner.at_) + " bytes after the term, inside the compressed data");
    return t;
  }

  std::string atom_bytes(std::uint8_t t) {
    const std::size_t n = (t == atom_ext || t == atom_utf8_ext) ? u16() : u8();
    std::string raw = take(n);
    if (t == atom_ext || t == small_atom_ext) { // Latin-1 -> UTF-8
      std::string utf8;
      for (unsigned char c : raw) {
        if (c < 0x80) {
          utf8.push_back(static_cast<char>(c));
        } else {
          utf8.push_back(static_cast<char>(0xC0 | (c >> 6)));
          utf8.push_back(static_cast<char>(0x80 | (c & 0x3F)));
        }
      }
      return utf8;
    }
    if (!code_points(raw)) fail("an atom that is not valid UTF-8");
    return raw;
  }

  /// The fields of a pid, port, reference or fun, as they are read.
  struct parts_builder {
    term::opaque_parts parts;
    void add_term(term t) {
      parts.fields.push_back(std::move(t));
      parts.layout.push_back('t');
    }
    void add_raw(std::string bytes) {
      parts.fields.push_back(term::binary(std::move(bytes)));
      parts.layout.push_back('r');
    }
  };

  /// An atom field (a node name, a module).
  term atom_field(std::uint32_t depth) {
    const std::size_t before = at_;
    const std::uint8_t t = u8();
    at_ = before;
    if (t != atom_ext && t != small_atom_ext && t != atom_utf8_ext && t != small_atom_utf8_ext) {
      fail("expected an atom (tag " + std::to_string(t) + ")");
    }
    return any(depth);
  }

  /// A pid, port or reference: [raw head,] node atom, raw tail.
  term node_based(term::kind k, std::uint8_t tag, std::size_t head, std::size_t tail, std::uint32_t depth) {
    parts_builder b;
    b.parts.what = k;
    b.parts.tag = tag;
    if (head != 0) b.add_raw(take(head));
    b.add_term(atom_field(depth + 1));
    b.add_raw(take(tail));
    return term::opaque(std::move(b.parts));
  }

  void check_depth(std::uint32_t depth) const {
    if (depth > options_.max_depth) fail("nested deeper than " + std::to_string(options_.max_depth));
  }

  term any(std::uint32_t depth) {
    const std::uint8_t t = u8();
    switch (t) {
    case small_integer_ext: return term::integer(static_cast<std::int64_t>(u8()));
    case integer_ext: return term::integer(static_cast<std::int64_t>(static_cast<std::int32_t>(u32())));
    case small_big_ext:
    case large_big_ext: {
      const std::size_t n = t == small_big_ext ? u8() : u32();
      const bool negative = u8() != 0;
      return term::big_integer(negative, take(n));
    }
    case new_float_ext: {
      need(8);
      std::uint64_t bits = 0;
      for (int i = 0; i < 8; ++i) bits = (bits << 8) | static_cast<unsigned char>(bytes_[at_ + i]);
      at_ += 8;
      return term::floating(std::bit_cast<double>(bits));
    }
    case float_ext: {
      std::string text = take(31);
      text = text.substr(0, text.find('\0'));
      char* end = nullptr;
      const double v = std::strtod(text.c_str(), &end);
      if (end == text.c_str()) fail("an old-style float that is not a number");
      return term::floating(v);
    }
    case atom_ext:
    case small_atom_ext:
    case atom_utf8_ext:
    case small_atom_utf8_ext: {
      std::string name = atom_bytes(t);
      try {
        return term::atom(std::move(name));
      } catch (const std::invalid_argument& e) {
        fail(e.what());
      }
    }
    case small_tuple_ext:
    case large_tuple_ext: {
      check_depth(depth + 1);
      const std::size_t n = t == small_tuple_ext ? u8() : u32();
      need(n); // each element takes a byte at least
      std::vector<term> e;
      e.reserve(n);
      for (std::size_t i = 0; i < n; ++i) e.push_back(any(depth + 1));
      return term::tuple(std::move(e));
    }
    case map_ext: {
      check_depth(depth + 1);
      const std::size_t n = u32();
      need(2 * std::size_t{n});
      std::vector<std::pair<term, term>> entries;
      entries.reserve(n);
      for (std::size_t i = 0; i < n; ++i) {
        term k = any(depth + 1);
        term v = any(depth + 1);
        entries.emplace_back(std::move(k), std::move(v));
      }
      term m = term::map(std::move(entries));
      if (m.entries()->size() != n) fail("a map with a key twice");
      return m;
    }
    case nil_ext: return term();
    case string_ext: return term::string(take(u16()));
    case list_ext: {
      check_depth(depth + 1);
      const std::size_t n = u32();
      need(n + 1); // the elements and the tail
      std::vector<term> e;
      e.reserve(n);
      for (std::size_t i = 0; i < n; ++i) e.push_back(any(depth + 1));
      term tail = any(depth + 1);
      if (n == 0) fail("a list of no elements (it is written as NIL_EXT)");
      return term::list(std::move(e), std::move(tail));
    }
    case binary_ext: return term::binary(take(u32()));
    case bit_binary_ext: {
      const std::size_t n = u32();
      const std::uint8_t bits = u8();
      if (bits < 1 || bits > 8 || n == 0) fail("a bit binary with " + std::to_string(bits) + " bits in its last of " + std::to_string(n) + " bytes");
      return term::bit_binary(take(n), bits);
    }
    case new_pid_ext: return node_based(term::kind::pid, t, 0, 12, depth);
    case pid_ext: return node_based(term::kind::pid, t, 0, 9, depth);
    case new_port_ext: return node_based(term::kind::port, t, 0, 8, depth);
    case port_ext: return node_based(term::kind::port, t, 0, 5, depth);
    case v4_port_ext: return node_based(term::kind::port, t, 0, 12, depth);
    case reference_ext: return node_based(term::kind::reference, t, 0, 5, depth);
    case newer_reference_ext:
    case new_reference_ext: {
      need(2);
      const std::size_t words = (static_cast<std::size_t>(static_cast<unsigned char>(bytes_[at_])) << 8) |
                                static_cast<unsigned char>(bytes_[at_ + 1]);
      if (words > 5) fail("a reference of " + std::to_string(words) + " words (at most 5)");
      return node_based(term::kind::reference, t, 2, (t == newer_reference_ext ? 4 : 1) + 4 * words, depth);
    }
    case new_fun_ext: {
      check_depth(depth + 1);
      const std::uint32_t size = u32(); // counts itself
      if (size < 4 + 25) fail("a fun of size " + std::to_string(size));
      need(size - 4);
      const std::size_t end = at_ + size - 4;
      parts_builder b;
      b.parts.what = term::kind::fun;
      b.parts.tag = t;
      // Arity (1), Uniq (16), Index (4): raw; NumFree (4) raw too, read for the count.
      std::string head = take(21);
      const std::uint32_t free = u32();
      std::string count;
      for (int shift = 24; shift >= 0; shift -= 8) count.push_back(static_cast<char>(free >> shift));
      b.add_raw(head + count);
      b.add_term(atom_field(depth + 1)); // Module
      b.add_term(any(depth + 1));        // OldIndex
      b.add_term(any(depth + 1));        // OldUniq
      b.add_term(any(depth + 1));        // Pid
      need(free);
      for (std::uint32_t i = 0; i < free; ++i) b.add_term(any(depth + 1)); // free variables
      if (at_ != end) fail("a fun whose size says " + std::to_string(size) + " bytes, and whose fields take another number");
      return term::opaque(std::move(b.parts));
    }
    case export_ext: {
      parts_builder b;
      b.parts.what = term::kind::fun;
      b.parts.tag = t;
      b.add_term(atom_field(depth + 1)); // module
      b.add_term(atom_field(depth + 1)); // function
      term arity = any(depth + 1);
      if (!arity.as_integer()) fail("an export's arity that is not an integer");
      b.add_term(std::move(arity));
      return term::opaque(std::move(b.parts));
    }
    case atom_cache_ref:
      --at_;
      fail("ATOM_CACHE_REF (82): atom cache references exist only on a distribution connection");
    case dist_header:
    case dist_frag_header:
      --at_;
      fail("a distribution header (tag " + std::to_string(t) + "): not a term");
    case compressed:
      --at_;
      fail("a compressed term inside a term (only the whole payload may be compressed)");
    default:
      --at_;
      fail("unknown tag " + std::to_string(t));
    }
  }

  std::string_view bytes_;
  const decode_options& options_;
  std::size_t at_ = 0;
};

} // namespace

void encode_into(std::string& out, const term& t, const encode_options& options) {
  if (options.minor_version != 1 && options.minor_version != 2) {
    throw codec_error("etf: minor_version " + std::to_string(options.minor_version) + " (expected 1 or 2)");
  }
  if (options.compress && (*options.compress < 0 || *options.compress > 9)) {
    throw codec_error("etf: compression level " + std::to_string(*options.compress) + " (expected 0 to 9)");
  }
  out.push_back(static_cast<char>(version_tag));
  const std::size_t body_at = out.size();
  encode_term(out, t, options.minor_version, 0);
  if (!options.compress) return;
  // As term_to_binary: compressed only when that is no longer (the zlib
  // stream and its 5-byte header within the term's size).
  const std::size_t body_size = out.size() - body_at;
  uLongf packed_size = compressBound(static_cast<uLong>(body_size));
  std::string packed(packed_size, '\0');
  if (compress2(reinterpret_cast<Bytef*>(packed.data()), &packed_size,
                reinterpret_cast<const Bytef*>(out.data() + body_at), static_cast<uLong>(body_size), *options.compress) != Z_OK) {
    throw codec_error("etf: zlib's compress2 failed");
  }
  if (packed_size + 5 > body_size) return;
  packed.resize(packed_size);
  std::string head;
  head.push_back(static_cast<char>(compressed));
  put_u32(head, static_cast<std::uint32_t>(body_size));
  out.resize(body_at);
  out += head;
  out += packed;
}

std::string encode(const term& t, const encode_options& options) {
  std::string out;
  encode_into(out, t, options);
  return out;
}

term decode(std::string_view bytes, const decode_options& options) { return reader(bytes, options).top(); }

} // namespace grove::erps::etf

namespace grove::erps::etf {

namespace {

bool valid_utf8(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    const std::size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (std::size_t k = 1; k < n; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    }
    i += n;
  }
  return true;
}

nlohmann::json to_json_at(const term& t, std::uint32_t depth) {
  if (depth > max_depth_limit) throw codec_error("etf: a term nested deeper than " + std::to_string(max_depth_limit));
  using json = nlohmann::json;
  switch (t.type()) {
  case term::kind::integer: return *t.as_integer();
  case term::kind::big_integer: {
    const std::string& m = *t.big_magnitude();
    if (!t.big_negative() && m.size() <= 8) {
      std::uint64_t v = 0;
      for (std::size_t i = m.size(); i-- > 0;) v = (v << 8) | static_cast<unsigned char>(m[i]);
      return v;
    }
    throw codec_error("etf: the integer " + t.to_string() + " has no JSON form (past 64 bits)");
  }
  case term::kind::floating: return *t.as_floating();
  case term::kind::atom: {
    const std::string& name = *t.atom_name();
    if (name == "true") return true;
    if (name == "false") return false;
    if (name == "nil" || name == "undefined") return nullptr;
    return name;
  }
  case term::kind::binary: {
    const std::string& b = *t.bytes();
    if (!valid_utf8(b)) throw codec_error("etf: a binary that is not UTF-8 has no JSON form");
    return b;
  }
  case term::kind::nil: return json::array();
  case term::kind::list: {
    if (!t.list_tail().is_nil()) throw codec_error("etf: an improper list has no JSON form");
    json out = json::array();
    if (const std::vector<term>* items = t.list_items()) {
      for (const term& e : *items) out.push_back(to_json_at(e, depth + 1));
    } else {
      for (unsigned char c : *t.string_bytes()) out.push_back(c);
    }
    return out;
  }
  case term::kind::tuple: {
    json out = json::array();
    for (const term& e : *t.elements()) out.push_back(to_json_at(e, depth + 1));
    return out;
  }
  case term::kind::map: {
    json out = json::object();
    for (const auto& [k, v] : *t.entries()) {
      const std::string* key = k.type() == term::kind::atom ? k.atom_name() : k.type() == term::kind::binary ? k.bytes() : nullptr;
      if (!key) throw codec_error("etf: a map key " + k.to_string() + " has no JSON form (atom or binary keys only)");
      if (k.type() == term::kind::binary && !valid_utf8(*key)) throw codec_error("etf: a map key that is not UTF-8");
      if (out.contains(*key)) throw codec_error("etf: a map with two keys named \"" + *key + "\" (an atom and a binary)");
      out[*key] = to_json_at(v, depth + 1);
    }
    return out;
  }
  case term::kind::bit_binary: throw codec_error("etf: a bit string has no JSON form");
  case term::kind::pid:
  case term::kind::port:
  case term::kind::reference:
  case term::kind::fun: break;
  }
  throw codec_error("etf: a pid, port, reference or fun has no JSON form");
}

term from_json_at(const nlohmann::json& j, std::uint32_t depth) {
  if (depth > max_depth_limit) throw codec_error("etf: a value nested deeper than " + std::to_string(max_depth_limit));
  using json = nlohmann::json;
  switch (j.type()) {
  case json::value_t::null: return term::atom("nil");
  case json::value_t::boolean: return term::boolean(j.get<bool>());
  case json::value_t::number_integer: return term::integer(j.get<std::int64_t>());
  case json::value_t::number_unsigned: return term::integer(j.get<std::uint64_t>());
  case json::value_t::number_float: return term::floating(j.get<double>());
  case json::value_t::string: return term::binary(j.get<std::string>());
  case json::value_t::array: {
    std::vector<term> e;
    e.reserve(j.size());
    for (const json& x : j) e.push_back(from_json_at(x, depth + 1));
    return term::list(std::move(e));
  }
  case json::value_t::object: {
    std::vector<std::pair<term, term>> e;
    e.reserve(j.size());
    for (auto it = j.begin(); it != j.end(); ++it) e.emplace_back(term::binary(it.key()), from_json_at(it.value(), depth + 1));
    return term::map(std::move(e));
  }
  case json::value_t::binary: return term::binary(std::string(j.get_binary().begin(), j.get_binary().end()));
  case json::value_t::discarded: break;
  }
  throw codec_error("etf: a discarded JSON value");
}

std::string shape(const term& t) {
  std::string s = t.to_string();
  if (s.size() > 80) s = s.substr(0, 77) + "...";
  return s;
}

std::optional<std::uint64_t> id_number_of(const term& id) {
  if (const auto n = id.as_integer(); n && *n >= 0) return static_cast<std::uint64_t>(*n);
  if (id.type() == term::kind::big_integer) {
    const std::string* magnitude = id.big_magnitude();
    if (magnitude && !id.big_negative() && magnitude->size() <= 8) {
      std::uint64_t n = 0;
      for (std::size_t i = magnitude->size(); i-- > 0;) n = (n << 8) | static_cast<unsigned char>((*magnitude)[i]);
      return n;
    }
  }
  return std::nullopt;
}

/// erps's envelopes in ETF: {Ref, Request} for a call, {Reply, Ref} for a
/// reply, a cast and a push the bare term, an error a binary. The codec of
/// terms; seen as a codec of JSON values, json_over_etf.
class etf_term_codec final : public basic_codec<term> {
public:
  std::string_view name() const noexcept override { return "etf"; }

  void write_call(std::string& out, const term& id, const term& request) const override {
    encode_into(out, term::tuple({id, request}));
  }
  void write_reply(std::string& out, const term& id, const term& reply) const override {
    encode_into(out, term::tuple({reply, id}));
  }
  void write_value(std::string& out, const term& value) const override { encode_into(out, value); }
  void write_error(std::string& out, const term*, std::string_view text) const override {
    encode_into(out, term::binary(std::string(text))); // erps's error frame is a binary; it names no call
  }

  decoded_call<term> read_call(std::string_view payload, const decode_limits& limits) const override {
    term t = decode(payload, {.max_depth = limits.max_depth});
    auto* e = t.elements();
    if (!e || e->size() != 2) throw codec_error("etf: a call is {Ref, Request}; got " + shape(t));
    return {std::move(t.elements()->at(0)), std::move(t.elements()->at(1))};
  }
  decoded_reply<term> read_reply(std::string_view payload, const decode_limits& limits) const override {
    term t = decode(payload, {.max_depth = limits.max_depth});
    auto* e = t.elements();
    if (!e || e->size() != 2) throw codec_error("etf: a reply is {Reply, Ref}; got " + shape(t));
    return {std::move(t.elements()->at(1)), std::move(t.elements()->at(0))};
  }
  term read_value(std::string_view payload, const decode_limits& limits) const override {
    return decode(payload, {.max_depth = limits.max_depth});
  }
  decoded_error<term> read_error(std::string_view payload, const decode_limits& limits) const override {
    const term t = decode(payload, {.max_depth = limits.max_depth});
    if (const std::string* b = t.bytes(); b && t.type() == term::kind::binary && valid_utf8(*b)) return {std::nullopt, *b};
    return {std::nullopt, t.to_string()};
  }
  std::optional<term> read_call_id(std::string_view payload) const override { return element_of(payload, 0); }
  std::optional<term> read_reply_id(std::string_view payload) const override { return element_of(payload, 1); }

  term make_id(std::uint64_t n) const override { return term::integer(n); }
  std::optional<std::uint64_t> id_number(const term& id) const override { return id_number_of(id); }

  const void* view_as(const std::type_info& as) const noexcept override;

private:
  /// Element `i` of a two-tuple payload, if the payload reads and it has
  /// one. Only on a refusal's path (a body too deep), so it reads the
  /// whole payload, up to the deepest any limit allows.
  static std::optional<term> element_of(std::string_view payload, std::size_t i) {
    try {
      term t = decode(payload, {.max_depth = max_depth_limit});
      auto* e = t.elements();
      if (!e || e->size() != 2) return std::nullopt;
      return std::move(e->at(i));
    } catch (const codec_error&) {
      return std::nullopt;
    }
  }
};

const etf_term_codec& the_etf_codec() noexcept {
  static const etf_term_codec codec;
  return codec;
}

/// A codec of From values seen as a codec of To values: the same bytes,
/// the values crossing by `to` and `from` (which throw codec_error for a
/// value with no form on the other side). Ids that do not cross are
/// treated as unreadable.
template <class To, class From, To (*to)(const From&), From (*from)(const To&)>
class mapped_codec final : public basic_codec<To> {
public:
  explicit mapped_codec(const basic_codec<From>& (*inner)() noexcept) : inner_(inner) {}
  std::string_view name() const noexcept override { return inner_().name(); }

  void write_call(std::string& out, const To& id, const To& request) const override {
    inner_().write_call(out, from(id), from(request));
  }
  void write_reply(std::string& out, const To& id, const To& reply) const override {
    inner_().write_reply(out, from(id), from(reply));
  }
  void write_value(std::string& out, const To& value) const override { inner_().write_value(out, from(value)); }
  void write_error(std::string& out, const To* id, std::string_view text) const override {
    std::optional<From> inner_id;
    if (id) inner_id = crossed<From, To, from>(*id);
    inner_().write_error(out, inner_id ? &*inner_id : nullptr, text);
  }

  decoded_call<To> read_call(std::string_view payload, const decode_limits& limits) const override {
    auto c = inner_().read_call(payload, limits);
    return {to(c.id), to(c.request)};
  }
  decoded_reply<To> read_reply(std::string_view payload, const decode_limits& limits) const override {
    auto r = inner_().read_reply(payload, limits);
    return {to(r.id), to(r.reply)};
  }
  To read_value(std::string_view payload, const decode_limits& limits) const override {
    return to(inner_().read_value(payload, limits));
  }
  decoded_error<To> read_error(std::string_view payload, const decode_limits& limits) const override {
    auto e = inner_().read_error(payload, limits);
    std::optional<To> id;
    if (e.id) id = crossed<To, From, to>(*e.id);
    return {std::move(id), std::move(e.text)};
  }
  std::optional<To> read_call_id(std::string_view payload) const override {
    auto id = inner_().read_call_id(payload);
    return id ? crossed<To, From, to>(*id) : std::nullopt;
  }
  std::optional<To> read_reply_id(std::string_view payload) const override {
    auto id = inner_().read_reply_id(payload);
    return id ? crossed<To, From, to>(*id) : std::nullopt;
  }

  To make_id(std::uint64_t n) const override { return to(inner_().make_id(n)); }
  std::optional<std::uint64_t> id_number(const To& id) const override {
    auto inner_id = crossed<From, To, from>(id);
    return inner_id ? inner_().id_number(*inner_id) : std::nullopt;
  }

  const void* view_as(const std::type_info& as) const noexcept override {
    if (as == typeid(From)) return &inner_();
    return basic_codec<To>::view_as(as);
  }

private:
  template <class A, class B, A (*convert)(const B&)>
  static std::optional<A> crossed(const B& value) {
    try {
      return convert(value);
    } catch (const codec_error&) {
      return std::nullopt;
    }
  }

  const basic_codec<From>& (*inner_)() noexcept;
};

const basic_codec<term>& etf_as_is() noexcept { return the_etf_codec(); }
const basic_codec<nlohmann::json>& json_as_is() noexcept { return json_codec(); }

using json_over_etf = mapped_codec<nlohmann::json, term, to_json, from_json>;
using terms_over_json = mapped_codec<term, nlohmann::json, from_json, to_json>;

const json_over_etf& the_json_over_etf() noexcept {
  static const json_over_etf codec(etf_as_is);
  return codec;
}

const void* etf_term_codec::view_as(const std::type_info& as) const noexcept {
  if (as == typeid(nlohmann::json)) return static_cast<const basic_codec<nlohmann::json>*>(&the_json_over_etf());
  return basic_codec<term>::view_as(as);
}

const terms_over_json& the_terms_over_json() noexcept {
  static const terms_over_json codec(json_as_is);
  return codec;
}

} // namespace

nlohmann::json to_json(const term& t) { return to_json_at(t, 0); }
term from_json(const nlohmann::json& j) { return from_json_at(j, 0); }

const basic_codec<term>& etf_codec() noexcept { return the_etf_codec(); }

} // namespace grove::erps::etf

namespace grove::erps {

template <>
const basic_codec<term>* codec_for<term>(const payload_codec& codec) noexcept {
  if (const auto* own = codec_as<term>(codec)) return own;
  if (codec_as<json>(codec) == &json_codec()) return &etf::the_terms_over_json();
  return nullptr;
}

} // namespace grove::erps
