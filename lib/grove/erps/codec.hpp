// grove/erps/codec.hpp — how values become frame payloads and back. JSON
// (nlohmann) is the default; the interface is the seam for another codec
// (Erlang's External Term Format) without touching daemon, server or client.
//
//   const grove::erps::payload_codec& codec = grove::erps::json_codec();
//   std::string payload;
//   codec.write_call(payload, 7, {{"op", "get"}});        // [7,{"op":"get"}]
//   auto call = codec.read_call(payload, {});             // call.id == 7
//
// JSON shapes (DESIGN.md): call [call_id, request]; reply [reply, call_id];
// push and cast the bare value; error a string, or [call_id, error] when it
// answers one call. A call id is a number or a string.
//
// Depth: a payload from the network is untrusted, and a value nested
// 100,000 levels deep would overflow the stack of whatever recurses over it
// later (a writer, a comparison, a store's snapshot). So every read enforces
// decode_limits::max_depth while it decodes, and nothing deeper is ever
// returned; writers refuse values deeper than max_depth_limit.
#pragma once

#include <grove/erps/error.hpp>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace grove::erps {

using json = nlohmann::json;

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

struct decoded_call {
  json id;
  json request;
};
struct decoded_reply {
  json id;
  json reply;
};
struct decoded_error {
  std::optional<json> id; ///< the call it answers, if any
  json error;             ///< usually a string
};

/// A payload codec. What an implementation must guarantee:
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
class payload_codec {
public:
  virtual ~payload_codec() = default;
  virtual std::string_view name() const noexcept = 0;

  virtual void write_call(std::string& out, const json& id, const json& request) const = 0;
  virtual void write_reply(std::string& out, const json& id, const json& reply) const = 0;
  virtual void write_value(std::string& out, const json& value) const = 0; ///< push and cast
  virtual void write_error(std::string& out, const json* id, const json& error) const = 0;

  virtual decoded_call read_call(std::string_view payload, const decode_limits& limits) const = 0;
  virtual decoded_reply read_reply(std::string_view payload, const decode_limits& limits) const = 0;
  virtual json read_value(std::string_view payload, const decode_limits& limits) const = 0;
  virtual decoded_error read_error(std::string_view payload, const decode_limits& limits) const = 0;
  virtual std::optional<json> read_call_id(std::string_view payload) const = 0;
  virtual std::optional<json> read_reply_id(std::string_view payload) const = 0;
};

/// The JSON codec (one shared instance).
const payload_codec& json_codec() noexcept;

/// Reads one JSON text with the codec's reader and its limits (for JSON that
/// does not come in a frame: a snapshot, a file a user edited). `what` names
/// the text in the error, e.g. "snapshot". Throws codec_error.
json read_json(std::string_view text, const decode_limits& limits, std::string_view what);

} // namespace grove::erps
