// grove/erps/codec.hpp — how values become frame payloads and back: the
// seam between the wire and the values servers and clients work with.
//
// A codec trades bytes for values of its own type: the JSON codec
// (erps/json_codec.hpp) for nlohmann::json, the ETF codec (erps/etf.hpp)
// for Erlang terms (erps/term.hpp). Neither knows the other. A server or
// client is written against one value type (server: JSON, term_server:
// terms) and works on a link whose codec has a view of that type: the
// codec's own, or one through a mapping the codec defines (the ETF codec
// can be seen as JSON through etf::to_json/from_json, and JSON as terms).
//
//   const grove::erps::basic_codec<grove::erps::json>& codec = grove::erps::json_codec();
//   std::string payload;
//   codec.write_call(payload, 7, {{"op", "get"}});        // [7,{"op":"get"}]
//   auto call = codec.read_call(payload, {});             // call.id == 7
//
// Depth: a payload from the network is untrusted, and a value nested
// 100,000 levels deep would overflow the stack of whatever recurses over it
// later (a writer, a comparison, a store's snapshot). So every read enforces
// decode_limits::max_depth while it decodes, and nothing deeper is ever
// returned; writers refuse values deeper than max_depth_limit.
#pragma once

#include <grove/erps/error.hpp>

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <typeinfo>

namespace grove::erps {

/// A payload the codec cannot read or write: a grove::error with code
/// erps_errc::bad_payload; what() says why, in one line.
class codec_error : public grove::error {
public:
  explicit codec_error(const std::string& why) : grove::error(erps_errc::bad_payload, why) {}
};

/// Nesting depth a payload may have by default, and the most any option may
/// allow (values this deep are safe to recurse over on any thread's stack).
inline constexpr std::uint32_t default_max_depth = 128;
inline constexpr std::uint32_t max_depth_limit = 1024;

/// Bounds a read enforces while it decodes.
struct decode_limits {
  /// Containers (arrays, objects; Erlang tuples, lists, maps) nested one in
  /// another, the outermost counted: `[]` is 1, `[[1]]` 2, `1` 0. A call's
  /// envelope counts, so a request may nest one level less. (default 128,
  /// at most max_depth_limit)
  std::uint32_t max_depth = default_max_depth;
};

template <class V>
struct decoded_call {
  V id;
  V request;
};
template <class V>
struct decoded_reply {
  V id;
  V reply;
};
template <class V>
struct decoded_error {
  std::optional<V> id{}; ///< the call it answers, if the codec's errors name one
  std::string text;      ///< what the peer said (a value that is not text, printed)
};

/// A payload codec, seen without its value type: what the link needs to
/// refuse a frame before anything is decoded. Every codec is a
/// basic_codec<V>; see there for what an implementation guarantees.
class payload_codec {
public:
  virtual ~payload_codec() = default;
  virtual std::string_view name() const noexcept = 0;
  /// The type of the values it reads and writes itself.
  virtual const std::type_info& value_typeid() const noexcept = 0;
  /// Appends an error frame's payload saying `text`: answering the call
  /// whose payload is `call_payload` when its id can be read cheaply (and
  /// the codec's error frames name calls), a bare one otherwise.
  virtual void write_refusal(std::string& out, std::string_view text, std::string_view call_payload) const = 0;
  /// This codec as a basic_codec of the value type `as` (a
  /// `const basic_codec<As>*`, type-erased): itself when `as` is its value
  /// type, a view through a mapping it defines, or null. Use codec_as<V>.
  virtual const void* view_as(const std::type_info& as) const noexcept = 0;
};

/// A codec of values of type V. What an implementation must guarantee:
/// - it is immutable and shared by every connection: const and thread-safe;
/// - write_* append one payload to `out`, and throw codec_error (leaving
///   whatever they appended) for a value they cannot write, e.g. one nested
///   deeper than max_depth_limit; they never recurse deeper than that;
/// - read_* accept any bytes: they return a value or throw codec_error with
///   a one-line reason, never crash and never recurse on the input's depth;
///   a payload nested deeper than `limits.max_depth` is refused, with the
///   limit named in the reason, before a value that deep is built;
/// - read_call_id and read_reply_id find the id of a call or reply whose
///   body could not be read, cheaply and without decoding the body, so that
///   the refusal can answer (or fail) that one call; nullopt when the id
///   itself cannot be read.
/// A call id is whatever the peer chose; this side's clients make theirs
/// from numbers (make_id) and find them again (id_number).
template <class V>
class basic_codec : public payload_codec {
public:
  using value_type = V;

  virtual void write_call(std::string& out, const V& id, const V& request) const = 0;
  virtual void write_reply(std::string& out, const V& id, const V& reply) const = 0;
  virtual void write_value(std::string& out, const V& value) const = 0; ///< push and cast
  /// An error frame; `id` names the call it answers, if the codec's error
  /// frames can (JSON's can, erps's ETF ones cannot).
  virtual void write_error(std::string& out, const V* id, std::string_view text) const = 0;

  virtual decoded_call<V> read_call(std::string_view payload, const decode_limits& limits) const = 0;
  virtual decoded_reply<V> read_reply(std::string_view payload, const decode_limits& limits) const = 0;
  virtual V read_value(std::string_view payload, const decode_limits& limits) const = 0;
  virtual decoded_error<V> read_error(std::string_view payload, const decode_limits& limits) const = 0;
  virtual std::optional<V> read_call_id(std::string_view payload) const = 0;
  virtual std::optional<V> read_reply_id(std::string_view payload) const = 0;
  /// read_call, read_reply and read_value of bytes the caller gives up: a
  /// codec may keep them (a payload's request shares its frame's buffer)
  /// rather than copy. `payload` is left as it was when they throw.
  virtual decoded_call<V> take_call(std::string& payload, const decode_limits& limits) const {
    return read_call(payload, limits);
  }
  virtual decoded_reply<V> take_reply(std::string& payload, const decode_limits& limits) const {
    return read_reply(payload, limits);
  }
  virtual V take_value(std::string& payload, const decode_limits& limits) const { return read_value(payload, limits); }

  /// The id a client gives its n-th call.
  virtual V make_id(std::uint64_t n) const = 0;
  /// The number back from an id make_id made; nullopt for any other.
  virtual std::optional<std::uint64_t> id_number(const V& id) const = 0;

  const std::type_info& value_typeid() const noexcept final { return typeid(V); }
  void write_refusal(std::string& out, std::string_view text, std::string_view call_payload) const final {
    const std::optional<V> id = call_payload.empty() ? std::nullopt : read_call_id(call_payload);
    write_error(out, id ? &*id : nullptr, text);
  }
  const void* view_as(const std::type_info& as) const noexcept override {
    return as == typeid(V) ? static_cast<const basic_codec<V>*>(this) : nullptr;
  }
};

/// `codec` as a codec of V values (itself, or its view), or null.
template <class V>
const basic_codec<V>* codec_as(const payload_codec& codec) noexcept {
  return static_cast<const basic_codec<V>*>(codec.view_as(typeid(V)));
}

class term;

/// How a server or client of V values finds its codec on a link: the
/// codec's own or its view (codec_as<V>), or for terms also a view of the
/// JSON codec through etf's mapping (etf::to_json, etf::from_json), so a
/// term server works on a JSON link too. Null when there is none.
template <class V>
const basic_codec<V>* codec_for(const payload_codec& codec) noexcept {
  return codec_as<V>(codec);
}
template <>
const basic_codec<term>* codec_for<term>(const payload_codec& codec) noexcept; // in etf.cpp

} // namespace grove::erps
