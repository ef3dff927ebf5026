#include <grove/erps/error.hpp>
#include <grove/erps/frame.hpp>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <stdexcept>

namespace grove::erps {

namespace {

constexpr char magic[4] = {'e', 'r', 'p', 's'};
constexpr std::size_t length_at = 4, type_at = 8, version_at = 9, identifier_at = 12, key_id_at = 48,
                      signature_at = 64;

std::uint32_t load_u32(const unsigned char* p) noexcept {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) | std::uint32_t{p[3]};
}

void store_u32(char* p, std::uint32_t v) noexcept {
  p[0] = static_cast<char>(v >> 24);
  p[1] = static_cast<char>(v >> 16);
  p[2] = static_cast<char>(v >> 8);
  p[3] = static_cast<char>(v);
}

std::string_view without_padding(const char* p, std::size_t n) noexcept {
  return {p, static_cast<std::size_t>(std::find(p, p + n, '\0') - p)};
}

// The HMAC algorithm, fetched once: fetching is a provider lookup, and the
// fetched object is immutable and safe to share between threads.
EVP_MAC* hmac_algorithm() {
  static EVP_MAC* const mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  if (mac == nullptr) throw grove::error(erps_errc::tls, "OpenSSL has no HMAC implementation");
  return mac;
}

struct mac_context {
  EVP_MAC_CTX* ctx = EVP_MAC_CTX_new(hmac_algorithm());
  ~mac_context() { EVP_MAC_CTX_free(ctx); }
};

// HMAC-SHA256(secret, header-with-zero-signature || payload).
std::array<std::uint8_t, signature_size> hmac(std::string_view secret, const unsigned char* header,
                                              std::string_view payload) {
  unsigned char zeroed[header_size];
  std::memcpy(zeroed, header, header_size);
  std::memset(zeroed + signature_at, 0, signature_size);
  mac_context mac;
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0), OSSL_PARAM_construct_end()};
  std::array<std::uint8_t, signature_size> out{};
  std::size_t written = 0;
  if (mac.ctx == nullptr ||
      EVP_MAC_init(mac.ctx, reinterpret_cast<const unsigned char*>(secret.data()), secret.size(), params) != 1 ||
      EVP_MAC_update(mac.ctx, zeroed, header_size) != 1 ||
      EVP_MAC_update(mac.ctx, reinterpret_cast<const unsigned char*>(payload.data()), payload.size()) != 1 ||
      EVP_MAC_final(mac.ctx, out.data(), &written, out.size()) != 1 || written != signature_size) {
    throw grove::error(erps_errc::tls, "HMAC-SHA256 failed in OpenSSL");
  }
  return out;
}

std::string quoted(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c >= 0x20 && c < 0x7f) {
      out += c;
    } else {
      static constexpr char hex[] = "0123456789abcdef";
      out += "\\x";
      out += hex[(static_cast<unsigned char>(c) >> 4) & 0xf];
      out += hex[static_cast<unsigned char>(c) & 0xf];
    }
  }
  return out + '"';
}

} // namespace

std::string_view to_string(frame_type t) noexcept {
  switch (t) {
  case frame_type::keepalive: return "keepalive";
  case frame_type::error: return "error";
  case frame_type::reply: return "reply";
  case frame_type::push: return "push";
  case frame_type::call: return "call";
  case frame_type::cast: return "cast";
  }
  return "unknown";
}

bool is_frame_type(std::uint8_t byte) noexcept { return byte <= 4 || byte == 8; }

protocol_version protocol_version::parse(std::string_view text) {
  protocol_version v;
  std::uint8_t* parts[] = {&v.major, &v.minor, &v.patch};
  const char* p = text.data();
  const char* end = text.data() + text.size();
  for (int i = 0; i < 3; ++i) {
    unsigned value = 0;
    auto [next, error] = std::from_chars(p, end, value);
    if (error != std::errc{} || value > 255 || next == p) {
      throw grove::error(errc::invalid_argument, "version \"" + std::string(text) +
                                  "\": expected MAJOR.MINOR.PATCH with each part 0-255, e.g. 1.2.0");
    }
    *parts[i] = static_cast<std::uint8_t>(value);
    p = next;
    if (i < 2) {
      if (p == end || *p != '.') {
        throw grove::error(errc::invalid_argument, "version \"" + std::string(text) +
                                    "\": expected MAJOR.MINOR.PATCH with each part 0-255, e.g. 1.2.0");
      }
      ++p;
    }
  }
  if (p != end) {
    throw grove::error(errc::invalid_argument, "version \"" + std::string(text) +
                                "\": expected MAJOR.MINOR.PATCH with each part 0-255, e.g. 1.2.0");
  }
  return v;
}

std::string protocol_version::to_string() const {
  return std::to_string(major) + '.' + std::to_string(minor) + '.' + std::to_string(patch);
}

version_requirement version_requirement::parse(std::string_view text) {
  version_requirement r;
  r.text_ = std::string(text);
  auto fail = [&] {
    return grove::error(errc::invalid_argument, "version requirement \"" + std::string(text) +
                                 "\": expected comparisons like \">= 1.2.0, < 2.0.0\" (operators == != < <= > >=, "
                                 "joined by \",\" or \"and\")");
  };
  auto skip_space = [&](std::size_t i) {
    while (i < text.size() && text[i] == ' ') ++i;
    return i;
  };
  std::size_t i = skip_space(0);
  while (i < text.size()) {
    op comparison = op::eq;
    bool about = false; // ~>: Elixir's "at least this, below the next release of the part before the last given"
    if (text.substr(i, 2) == "~>") {
      about = true, i += 2;
    } else if (text.substr(i, 2) == ">=") {
      comparison = op::ge, i += 2;
    } else if (text.substr(i, 2) == "<=") {
      comparison = op::le, i += 2;
    } else if (text.substr(i, 2) == "==") {
      comparison = op::eq, i += 2;
    } else if (text.substr(i, 2) == "!=") {
      comparison = op::ne, i += 2;
    } else if (text[i] == '>') {
      comparison = op::gt, ++i;
    } else if (text[i] == '<') {
      comparison = op::lt, ++i;
    } else if (!(text[i] >= '0' && text[i] <= '9')) {
      throw fail();
    }
    i = skip_space(i);
    std::size_t end = i;
    while (end < text.size() && ((text[end] >= '0' && text[end] <= '9') || text[end] == '.')) ++end;
    try {
      const std::string_view given = text.substr(i, end - i);
      if (about) {
        // ~> 1.2 means >= 1.2.0 and < 2.0.0; ~> 1.2.3 means >= 1.2.3 and < 1.3.0.
        const bool two_parts = std::count(given.begin(), given.end(), '.') == 1;
        const protocol_version low = protocol_version::parse(two_parts ? std::string(given) + ".0" : std::string(given));
        protocol_version high = low;
        if (two_parts) {
          if (high.major == 255) throw fail();
          high = {static_cast<std::uint8_t>(high.major + 1), 0, 0};
        } else {
          if (high.minor == 255) throw fail();
          high = {high.major, static_cast<std::uint8_t>(high.minor + 1), 0};
        }
        r.clauses_.push_back({op::ge, low});
        r.clauses_.push_back({op::lt, high});
      } else {
        r.clauses_.push_back({comparison, protocol_version::parse(given)});
      }
    } catch (const grove::error&) {
      throw fail();
    }
    i = skip_space(end);
    if (i == text.size()) break;
    if (text[i] == ',') {
      i = skip_space(i + 1);
    } else if (text.substr(i, 4) == "and ") {
      i = skip_space(i + 4);
    } else {
      throw fail();
    }
    if (i == text.size()) throw fail();
  }
  return r;
}

bool version_requirement::allows(const protocol_version& v) const noexcept {
  for (const clause& c : clauses_) {
    bool ok = false;
    switch (c.comparison) {
    case op::eq: ok = v == c.version; break;
    case op::ne: ok = v != c.version; break;
    case op::lt: ok = v < c.version; break;
    case op::le: ok = v <= c.version; break;
    case op::gt: ok = v > c.version; break;
    case op::ge: ok = v >= c.version; break;
    }
    if (!ok) return false;
  }
  return true;
}

std::optional<std::string> frame_writer::problem() const {
  if (identifier.size() > identifier_size) {
    return "identifier " + quoted(identifier) + " is " + std::to_string(identifier.size()) +
           " bytes: expected at most 36";
  }
  if (signing && signing->key_id.size() > key_id_size) {
    return "signing key id " + quoted(signing->key_id) + " is " + std::to_string(signing->key_id.size()) +
           " bytes: expected at most 16";
  }
  if (signing && signing->key_id.empty()) return "signing key id is empty: expected 1 to 16 bytes";
  return std::nullopt;
}

void frame_writer::validate() const {
  if (auto why = problem()) throw grove::error(errc::invalid_argument, *why);
}

std::string frame_writer::frame(frame_type type, std::string_view payload) const {
  std::string buffer;
  buffer.reserve(header_size + payload.size());
  buffer.resize(header_size);
  buffer.append(payload);
  seal(type, buffer);
  return buffer;
}

void frame_writer::seal(frame_type type, std::string& buffer, std::size_t at) const {
  char* h = buffer.data() + at;
  const std::size_t payload_size = buffer.size() - at - header_size;
  if (payload_size > 0xffffffffu) throw grove::error(erps_errc::bad_payload, "a payload larger than 4 GiB cannot be framed");
  std::memcpy(h, magic, 4);
  store_u32(h + length_at, static_cast<std::uint32_t>(payload_size));
  h[type_at] = static_cast<char>(type);
  h[version_at] = static_cast<char>(version.major);
  h[version_at + 1] = static_cast<char>(version.minor);
  h[version_at + 2] = static_cast<char>(version.patch);
  std::memset(h + identifier_at, 0, header_size - identifier_at);
  std::memcpy(h + identifier_at, identifier.data(), std::min(identifier.size(), identifier_size));
  if (signing) {
    std::memcpy(h + key_id_at, signing->key_id.data(), std::min(signing->key_id.size(), key_id_size));
    auto signature = hmac(signing->secret, reinterpret_cast<const unsigned char*>(h),
                          std::string_view(h + header_size, payload_size));
    std::memcpy(h + signature_at, signature.data(), signature_size);
  }
}

std::string_view frame_writer::keepalive() noexcept { return std::string_view("erps\0\0\0\0\0", keepalive_size); }

bool frame_header::signed_frame() const noexcept {
  return std::any_of(key_id.begin(), key_id.end(), [](std::uint8_t b) { return b != 0; }) ||
         std::any_of(signature.begin(), signature.end(), [](std::uint8_t b) { return b != 0; });
}

std::string_view frame_header::key_id_text() const noexcept {
  return without_padding(reinterpret_cast<const char*>(key_id.data()), key_id_size);
}

std::optional<std::string> verify_signature(std::span<const std::uint8_t, header_size> raw_header,
                                            std::string_view payload, std::span<const signing_key> keys) {
  std::string_view id = without_padding(reinterpret_cast<const char*>(raw_header.data() + key_id_at), key_id_size);
  const std::uint8_t* given = raw_header.data() + signature_at;
  if (id.empty() && std::all_of(given, given + signature_size, [](std::uint8_t b) { return b == 0; })) {
    return "frame is not signed: this server requires HMAC-SHA256 signatures";
  }
  auto key = std::find_if(keys.begin(), keys.end(), [&](const signing_key& k) { return k.key_id == id; });
  if (key == keys.end()) return "frame signed with unknown key id " + quoted(id);
  auto expected = hmac(key->secret, raw_header.data(), payload);
  if (CRYPTO_memcmp(expected.data(), given, signature_size) != 0) {
    return "bad HMAC-SHA256 signature for key id " + quoted(id);
  }
  return std::nullopt;
}

std::string_view to_string(decode_error e) noexcept {
  switch (e) {
  case decode_error::none: return "none";
  case decode_error::bad_magic: return "bad magic";
  case decode_error::too_large: return "payload too large";
  case decode_error::unknown_type: return "unknown frame type";
  case decode_error::bad_keepalive: return "keepalive with a payload";
  }
  return "unknown";
}

frame_decoder::frame_decoder(std::uint32_t max_payload) : max_payload_(max_payload) {}

namespace {

// Read buffers of the usual size, kept per thread for the connections that
// run on it: a connection gives its buffer back while it waits for its next
// frame (release()) and takes one when bytes arrive. Bounded, so a burst of
// many connections going idle at once does not stay allocated.
constexpr std::size_t pooled_size = 16 * 1024;
constexpr std::size_t pool_capacity = 64;

std::vector<std::vector<char>>& read_buffer_pool() {
  thread_local std::vector<std::vector<char>> pool;
  return pool;
}

} // namespace

void frame_decoder::release() noexcept {
  if (begin_ != end_ || buffer_.empty()) return;
  begin_ = end_ = 0;
  auto& pool = read_buffer_pool();
  if (buffer_.size() == pooled_size && pool.size() < pool_capacity) {
    try {
      pool.push_back(std::move(buffer_));
    } catch (...) {
      // No room to keep it: it is freed below.
    }
  }
  std::vector<char>().swap(buffer_);
}

std::span<char> frame_decoder::prepare(std::size_t at_least) {
  if (buffer_.empty() && at_least <= pooled_size) {
    // A pooled buffer if there is one; else what is asked for, below (a
    // reader asks for the pooled size, and gives that back).
    auto& pool = read_buffer_pool();
    if (!pool.empty()) {
      buffer_ = std::move(pool.back());
      pool.pop_back();
    }
  }
  // After a large frame the buffer would stay large for the connection's
  // whole life; give it back once nothing is buffered.
  constexpr std::size_t keep = 64 * 1024;
  if (begin_ == end_) {
    begin_ = end_ = 0;
    if (buffer_.size() > keep && at_least <= keep) {
      buffer_.resize(keep);
      buffer_.shrink_to_fit();
    }
  }
  if (buffer_.size() - end_ < at_least) {
    compact();
    if (buffer_.size() - end_ < at_least) buffer_.resize(end_ + at_least);
  }
  return {buffer_.data() + end_, buffer_.size() - end_};
}

void frame_decoder::commit(std::size_t n) noexcept { end_ += std::min(n, buffer_.size() - end_); }

void frame_decoder::feed(std::string_view bytes) {
  if (bytes.empty()) return; // (memcpy from an empty view's null data is undefined, even for 0 bytes)
  auto space = prepare(bytes.size());
  std::memcpy(space.data(), bytes.data(), bytes.size());
  commit(bytes.size());
}

void frame_decoder::compact() {
  if (begin_ != 0) {
    std::memmove(buffer_.data(), buffer_.data() + begin_, end_ - begin_);
    end_ -= begin_;
    begin_ = 0;
  }
}

std::size_t frame_decoder::missing() const noexcept {
  const std::size_t have = end_ - begin_;
  if (failed() || have < keepalive_size) return 0;
  const auto* p = reinterpret_cast<const unsigned char*>(buffer_.data() + begin_);
  const std::uint32_t length = load_u32(p + length_at);
  if (p[type_at] == 0 || length > max_payload_) return 0;
  const std::size_t whole = header_size + std::size_t{length};
  return whole > have ? whole - have : 0;
}

void frame_decoder::fail(decode_error e, std::string text) {
  error_ = e;
  error_text_ = std::move(text);
}

frame_decoder::frame frame_decoder::next() {
  frame f;
  if (failed()) return f;
  const std::size_t have = end_ - begin_;
  if (have == 0) return f;
  const auto* p = reinterpret_cast<const unsigned char*>(buffer_.data() + begin_);
  // Check what is there as soon as it is there: a wrong first byte fails
  // now, not after a whole header's worth of garbage.
  const std::size_t magic_have = std::min<std::size_t>(have, 4);
  if (std::memcmp(p, magic, magic_have) != 0) {
    std::string got;
    for (std::size_t i = 0; i < magic_have; ++i) got += static_cast<char>(p[i]);
    fail(decode_error::bad_magic, "bad magic " + quoted(got) + ": expected \"erps\"");
    return f;
  }
  if (have < keepalive_size) return f;
  const std::uint32_t length = load_u32(p + length_at);
  const std::uint8_t type = p[type_at];
  if (!is_frame_type(type)) {
    fail(decode_error::unknown_type, "unknown frame type " + std::to_string(type) +
                                         ": expected 0 keepalive, 1 error, 2 reply, 3 push, 4 call or 8 cast");
    return f;
  }
  if (type == 0) {
    if (length != 0) {
      fail(decode_error::bad_keepalive, "keepalive with payload length " + std::to_string(length) + ": expected 0");
      return f;
    }
    begin_ += keepalive_size;
    f.ok = true;
    return f;
  }
  if (length > max_payload_) {
    fail(decode_error::too_large, "payload length " + std::to_string(length) + " is above the maximum of " +
                                      std::to_string(max_payload_) + " bytes");
    return f;
  }
  if (have < header_size + std::size_t{length}) return f;
  f.header.type = static_cast<frame_type>(type);
  f.header.payload_length = length;
  f.header.version = {p[version_at], p[version_at + 1], p[version_at + 2]};
  f.header.identifier = without_padding(reinterpret_cast<const char*>(p + identifier_at), identifier_size);
  std::memcpy(f.header.key_id.data(), p + key_id_at, key_id_size);
  std::memcpy(f.header.signature.data(), p + signature_at, signature_size);
  f.raw_header = {p, header_size};
  f.payload = {reinterpret_cast<const char*>(p + header_size), length};
  begin_ += header_size + length;
  f.ok = true;
  return f;
}

} // namespace grove::erps
