#include <grove/erps/codec.hpp>

namespace grove::erps {

namespace {

// Serialises straight into the frame buffer (json::dump would build a
// string and copy it). Invalid UTF-8 in a user's string is replaced rather
// than thrown: a reply must not fail on the way out.
void append_json(std::string& out, const json& value) {
  nlohmann::detail::serializer<json> writer(nlohmann::detail::output_adapter<char>(out), ' ',
                                            nlohmann::detail::error_handler_t::replace);
  writer.dump(value, false, false, 0);
}

json parse(std::string_view payload, const char* what) {
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
