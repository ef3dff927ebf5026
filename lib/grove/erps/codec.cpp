#include <grove/erps/codec.hpp>

#include <simdjson.h>

#include <charconv>

namespace grove::erps {

namespace {

// --- writing ------------------------------------------------------------------
// Straight into the frame buffer (json::dump would build a string and copy
// it). Strings of printable ASCII with nothing to escape, integers, bools and
// null are written here in bulk; anything else (escapes, UTF-8, floats) goes
// through nlohmann's serializer, which replaces invalid UTF-8 rather than
// throwing: a reply must not fail on the way out.

void append_with_nlohmann(std::string& out, const json& value) {
  nlohmann::detail::serializer<json> writer(nlohmann::detail::output_adapter<char>(out), ' ',
                                            nlohmann::detail::error_handler_t::replace);
  writer.dump(value, false, false, 0);
}

// True if the bytes need no escaping and are ASCII (so they are valid UTF-8).
bool plain_ascii(const std::string& s) noexcept {
  unsigned char bad = 0;
  for (unsigned char c : s) bad |= static_cast<unsigned char>((c < 0x20) | (c >= 0x80) | (c == '"') | (c == '\\'));
  return bad == 0;
}

void append_json(std::string& out, const json& value) {
  switch (value.type()) {
    case json::value_t::null: out += "null"; return;
    case json::value_t::boolean: out += value.get<bool>() ? "true" : "false"; return;
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: {
      char digits[24];
      const auto r = value.is_number_unsigned() ? std::to_chars(digits, digits + sizeof digits, value.get<std::uint64_t>())
                                                : std::to_chars(digits, digits + sizeof digits, value.get<std::int64_t>());
      out.append(digits, r.ptr);
      return;
    }
    case json::value_t::string: {
      const auto& s = value.get_ref<const std::string&>();
      if (plain_ascii(s)) {
        out += '"';
        out += s;
        out += '"';
      } else {
        append_with_nlohmann(out, value);
      }
      return;
    }
    case json::value_t::array: {
      out += '[';
      bool first = true;
      for (const auto& element : value) {
        if (!first) out += ',';
        first = false;
        append_json(out, element);
      }
      out += ']';
      return;
    }
    case json::value_t::object: {
      out += '{';
      bool first = true;
      for (auto it = value.begin(); it != value.end(); ++it) {
        if (!first) out += ',';
        first = false;
        if (plain_ascii(it.key())) {
          out += '"';
          out += it.key();
          out += '"';
        } else {
          append_with_nlohmann(out, json(it.key()));
        }
        out += ':';
        append_json(out, it.value());
      }
      out += '}';
      return;
    }
    default: append_with_nlohmann(out, value); return; // floats, binary, discarded
  }
}

// --- reading ------------------------------------------------------------------
// simdjson parses (validating UTF-8, as nlohmann does) and the result is
// built as a json value; whatever simdjson refuses (integers beyond 64 bits,
// which nlohmann reads as doubles; malformed input) is parsed again by
// nlohmann, whose verdict and value stand. So the fast path changes speed,
// never what is accepted.

json from_simdjson(simdjson::dom::element e) {
  switch (e.type()) {
    case simdjson::dom::element_type::ARRAY: {
      json a = json::array();
      for (simdjson::dom::element child : simdjson::dom::array(e)) a.push_back(from_simdjson(child));
      return a;
    }
    case simdjson::dom::element_type::OBJECT: {
      json o = json::object();
      for (simdjson::dom::key_value_pair field : simdjson::dom::object(e)) {
        o[std::string(field.key)] = from_simdjson(field.value);
      }
      return o;
    }
    case simdjson::dom::element_type::INT64: {
      // nlohmann reads a non-negative integer as unsigned; so do we.
      const std::int64_t v = std::int64_t(e);
      return v >= 0 ? json(static_cast<std::uint64_t>(v)) : json(v);
    }
    case simdjson::dom::element_type::UINT64: return json(std::uint64_t(e));
    case simdjson::dom::element_type::DOUBLE: return json(double(e));
    case simdjson::dom::element_type::STRING: return json(std::string(std::string_view(e)));
    case simdjson::dom::element_type::BOOL: return json(bool(e));
    case simdjson::dom::element_type::NULL_VALUE: return json(nullptr);
  }
  return json(nullptr);
}

json parse(std::string_view payload, const char* what) {
  // One parser per thread: it keeps its buffers between frames.
  thread_local simdjson::dom::parser parser;
  simdjson::dom::element root;
  // "-0" is the one text whose kind simdjson cannot tell apart (nlohmann reads
  // it as signed, "0" as unsigned): such payloads take the slow path.
  if (!payload.empty() && payload.size() <= (std::size_t(1) << 26) && payload.find("-0") == std::string_view::npos &&
      !parser.parse(payload.data(), payload.size(), true).get(root)) {
    return from_simdjson(root);
  }
  json value = json::parse(payload.begin(), payload.end(), nullptr, false);
  if (value.is_discarded()) {
    throw codec_error(std::string("malformed JSON in ") + what + " payload (" + std::to_string(payload.size()) +
                      " bytes)");
  }
  return value;
}

bool valid_id(const json& id) { return id.is_number_integer() || id.is_number_unsigned() || id.is_string(); }

class json_payload_codec final : public payload_codec {
public:
  std::string_view name() const noexcept override { return "json"; }

  void write_call(std::string& out, const json& id, const json& request) const override {
    out += '[';
    append_json(out, id);
    out += ',';
    append_json(out, request);
    out += ']';
  }

  void write_reply(std::string& out, const json& id, const json& reply) const override {
    out += '[';
    append_json(out, reply);
    out += ',';
    append_json(out, id);
    out += ']';
  }

  void write_value(std::string& out, const json& value) const override { append_json(out, value); }

  void write_error(std::string& out, const json* id, const json& error) const override {
    if (id == nullptr) {
      append_json(out, error);
      return;
    }
    out += '[';
    append_json(out, *id);
    out += ',';
    append_json(out, error);
    out += ']';
  }

  decoded_call read_call(std::string_view payload) const override {
    json value = parse(payload, "call");
    if (!value.is_array() || value.size() != 2 || !valid_id(value[0])) {
      throw codec_error("call payload must be [call_id, request] with a number or string id");
    }
    return {std::move(value[0]), std::move(value[1])};
  }

  decoded_reply read_reply(std::string_view payload) const override {
    json value = parse(payload, "reply");
    if (!value.is_array() || value.size() != 2 || !valid_id(value[1])) {
      throw codec_error("reply payload must be [reply, call_id] with a number or string id");
    }
    return {std::move(value[1]), std::move(value[0])};
  }

  json read_value(std::string_view payload) const override { return parse(payload, "value"); }

  decoded_error read_error(std::string_view payload) const override {
    json value = parse(payload, "error");
    if (value.is_array() && value.size() == 2 && valid_id(value[0])) {
      return {std::move(value[0]), std::move(value[1])};
    }
    return {std::nullopt, std::move(value)};
  }
};

} // namespace

const payload_codec& json_codec() noexcept {
  static const json_payload_codec codec;
  return codec;
}

} // namespace grove::erps
