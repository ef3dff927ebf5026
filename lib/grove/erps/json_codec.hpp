// grove/erps/json_codec.hpp — the JSON payload codec (nlohmann::json
// values), erps's default.
//
// Shapes (DESIGN.md): call [call_id, request]; reply [reply, call_id];
// push and cast the bare value; error a string, or [call_id, error] when it
// answers one call. A call id is a number or a string.
#pragma once

#include <grove/erps/codec.hpp>
#include <nlohmann/json.hpp>

#include <string_view>

namespace grove::erps {

using json = nlohmann::json;

/// The JSON codec (one shared instance).
const basic_codec<json>& json_codec() noexcept;

/// Reads one JSON text with the codec's reader and its limits (for JSON that
/// does not come in a frame: a snapshot, a file a user edited). `what` names
/// the text in the error, e.g. "snapshot". Throws codec_error.
json read_json(std::string_view text, const decode_limits& limits, std::string_view what);

} // namespace grove::erps
