// grove/erps/codec.hpp — how values become frame payloads and back. JSON
// (nlohmann) is the default; the interface is the seam for another codec
// (Erlang's External Term Format) without touching daemon, server or client.
//
//   const grove::erps::payload_codec& codec = grove::erps::json_codec();
//   std::string payload;
//   codec.write_call(payload, 7, {{"op", "get"}});        // [7,{"op":"get"}]
//   auto call = codec.read_call(payload);                 // call.id == 7
//
// JSON shapes (DESIGN.md): call [call_id, request]; reply [reply, call_id];
// push and cast the bare value; error a string, or [call_id, error] when it
// answers one call. A call id is a number or a string.
#pragma once

#include <nlohmann/json.hpp>

#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace grove::erps {

using json = nlohmann::json;

/// A payload the codec cannot read; what() says why, in one line.
class codec_error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
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

/// A payload codec. Implementations are immutable and shared by every
/// connection (so const and thread-safe). write_* append to `out`; read_*
/// throw codec_error.
class payload_codec {
public:
  virtual ~payload_codec() = default;
  virtual std::string_view name() const noexcept = 0;

  virtual void write_call(std::string& out, const json& id, const json& request) const = 0;
  virtual void write_reply(std::string& out, const json& id, const json& reply) const = 0;
  virtual void write_value(std::string& out, const json& value) const = 0; ///< push and cast
  virtual void write_error(std::string& out, const json* id, const json& error) const = 0;

  virtual decoded_call read_call(std::string_view payload) const = 0;
  virtual decoded_reply read_reply(std::string_view payload) const = 0;
  virtual json read_value(std::string_view payload) const = 0;
  virtual decoded_error read_error(std::string_view payload) const = 0;
};

/// The JSON codec (one shared instance).
const payload_codec& json_codec() noexcept;

} // namespace grove::erps
