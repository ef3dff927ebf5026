#include <grove/erps/json_codec.hpp>
#include <grove/erps/error.hpp>
#include <grove/erps/payload.hpp>

#include <grove/erps/detail/link_messages.hpp>

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

[[noreturn]] void too_deep_to_write() {
  throw codec_error("value nests deeper than " + std::to_string(max_depth_limit) +
                    " levels (max_depth_limit): erps does not write it");
}

// `depth`: containers around `value`. Bounded by max_depth_limit, so the
// recursion is too.
void append_json(std::string& out, const json& value, std::uint32_t depth = 0) {
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
      if (depth >= max_depth_limit) too_deep_to_write();
      out += '[';
      bool first = true;
      for (const auto& element : value) {
        if (!first) out += ',';
        first = false;
        append_json(out, element, depth + 1);
      }
      out += ']';
      return;
    }
    case json::value_t::object: {
      if (depth >= max_depth_limit) too_deep_to_write();
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
        append_json(out, it.value(), depth + 1);
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
// which nlohmann reads as doubles; malformed input; nesting past its own
// bound) is parsed again by nlohmann, whose verdict and value stand. So the
// fast path changes speed, never what is accepted. Both paths enforce the
// depth limit while they build, neither recurses deeper than it: simdjson's
// tape is walked by simdjson_reader (depth-checked), and nlohmann's parser is
// iterative and told the depth of every container through its callback.

[[noreturn]] void too_deep(std::string_view what, const decode_limits& limits) {
  throw codec_error(std::string(what) + " nests deeper than " + std::to_string(limits.max_depth) +
                    " levels (max_depth)");
}

struct simdjson_reader {
  std::string_view what;
  const decode_limits& limits;

  // `depth`: containers around `e`.
  json build(simdjson::dom::element e, std::uint32_t depth) const {
    switch (e.type()) {
      case simdjson::dom::element_type::ARRAY: {
        if (depth >= limits.max_depth) too_deep(what, limits);
        json a = json::array();
        for (simdjson::dom::element child : simdjson::dom::array(e)) a.push_back(build(child, depth + 1));
        return a;
      }
      case simdjson::dom::element_type::OBJECT: {
        if (depth >= limits.max_depth) too_deep(what, limits);
        json o = json::object();
        for (simdjson::dom::key_value_pair field : simdjson::dom::object(e)) {
          o[std::string(field.key)] = build(field.value, depth + 1);
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
};

// Which payloads simdjson can read exactly as nlohmann would.
//  - "-0": the one number text whose kind simdjson cannot tell apart
//    (nlohmann reads it as signed, "0" as unsigned). The search is over the
//    whole payload, strings included: a false positive costs only speed.
//  - size: simdjson needs its whole input, padded, in one buffer it owns
//    per thread; past 64 MiB (four times the default max_payload) that
//    buffer is not worth keeping for every worker thread.
constexpr std::size_t simdjson_max_bytes = std::size_t(64) << 20;
bool simdjson_reads_exactly(std::string_view payload) noexcept {
  return !payload.empty() && payload.size() <= simdjson_max_bytes && payload.find("-0") == std::string_view::npos;
}

json parse_with_nlohmann(std::string_view payload, std::string_view what, const decode_limits& limits) {
  const std::uint32_t max_depth = limits.max_depth;
  auto bound = [&](int depth, json::parse_event_t event, json&) {
    // `depth` is the containers around this one.
    if ((event == json::parse_event_t::object_start || event == json::parse_event_t::array_start) &&
        static_cast<std::uint32_t>(depth) >= max_depth) {
      too_deep(what, limits);
    }
    return true;
  };
  json value = json::parse(payload.begin(), payload.end(), bound, false);
  if (value.is_discarded()) {
    throw codec_error("malformed JSON in " + std::string(what) + " (" + std::to_string(payload.size()) +
                      " bytes)");
  }
  return value;
}

void check_limits(const decode_limits& limits) {
  if (limits.max_depth > max_depth_limit) {
    throw codec_error("decode_limits.max_depth " + std::to_string(limits.max_depth) + ": expected at most " +
                      std::to_string(max_depth_limit));
  }
}

// One parser per thread: it keeps its buffers between frames. Its own
// depth bound (1024) is max_depth_limit's: past it, nlohmann judges.
simdjson::dom::parser& thread_parser() {
  thread_local simdjson::dom::parser parser;
  return parser;
}

// Whether simdjson may read past the end of `bytes`: a frame's payload is
// allocated with room for it (link_frame), so simdjson reads it in place
// instead of copying it into a padded buffer first.
static_assert(detail::payload_padding >= simdjson::SIMDJSON_PADDING);
bool has_padding(const std::string& bytes) noexcept { return bytes.capacity() - bytes.size() >= simdjson::SIMDJSON_PADDING; }

json parse(std::string_view payload, std::string_view what, const decode_limits& limits, bool padded = false) {
  check_limits(limits);
  if (simdjson_reads_exactly(payload)) {
    simdjson::dom::element root;
    if (!thread_parser().parse(payload.data(), payload.size(), !padded).get(root)) {
      return simdjson_reader{what, limits}.build(root, 0);
    }
  }
  return parse_with_nlohmann(payload, what, limits);
}

// --- payloads: JSON checked, not built -------------------------------------------
// A payload's text is checked as parse() would read it (simdjson, and
// nlohmann for what simdjson refuses), with no tree built on the fast path:
// simdjson's tape is only walked for depth. "-0" does not send a text to
// nlohmann here: it changes the kind of a number parse() builds, not
// whether the text is JSON.

// Containers below `e` against the limit; stops there, so the recursion is
// bounded by max_depth_limit. Scalars cost nothing, whatever their size.
void check_depth(simdjson::dom::element e, std::uint32_t depth, std::string_view what, const decode_limits& limits) {
  switch (e.type()) {
    case simdjson::dom::element_type::ARRAY:
      if (depth >= limits.max_depth) too_deep(what, limits);
      for (simdjson::dom::element child : simdjson::dom::array(e)) check_depth(child, depth + 1, what, limits);
      return;
    case simdjson::dom::element_type::OBJECT:
      if (depth >= limits.max_depth) too_deep(what, limits);
      for (simdjson::dom::key_value_pair field : simdjson::dom::object(e)) check_depth(field.value, depth + 1, what, limits);
      return;
    default: return;
  }
}

struct checked_json {
  std::string_view text; // the JSON: nlohmann ends its input at a NUL, and ignores what follows
  bool pair = false;     // an array of exactly two elements
};

/// Throws codec_error unless `text` is one JSON value parse() accepts
/// within `limits`. `padded`: the simdjson padding past its end is
/// readable, so simdjson reads it in place instead of copying it first.
checked_json check_json(std::string_view text, std::string_view what, const decode_limits& limits,
                        bool padded = false) {
  check_limits(limits);
  if (!text.empty() && text.size() <= simdjson_max_bytes) {
    simdjson::dom::element root;
    if (!thread_parser().parse(text.data(), text.size(), !padded).get(root)) { // (simdjson refuses a NUL)
      // Each level takes two bytes: a shorter text cannot nest too deep.
      if (text.size() >= 2 * (std::size_t(limits.max_depth) + 1)) check_depth(root, 0, what, limits);
      simdjson::dom::array elements;
      return {text, !root.get_array().get(elements) && elements.size() == 2};
    }
  }
  const json value = parse_with_nlohmann(text, what, limits);
  return {text.substr(0, text.find('\0')), value.is_array() && value.size() == 2};
}

bool json_space(char c) noexcept { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
std::size_t skip_space_forward(std::string_view text, std::size_t at) noexcept {
  while (at < text.size() && json_space(text[at])) ++at;
  return at;
}
std::size_t skip_space_backward(std::string_view text, std::size_t at) noexcept {
  while (at > 0 && json_space(text[at - 1])) --at;
  return at;
}
bool ends_token(char c) noexcept { return json_space(c) || c == ',' || c == ']' || c == '}' || c == ':'; }

// Whether the quote at `at` closes (or opens) a string: it follows an even
// run of backslashes (or none); a quote inside a string follows an odd one.
bool unescaped(std::string_view text, std::size_t at) noexcept {
  std::size_t backslashes = 0;
  while (backslashes < at && text[at - 1 - backslashes] == '\\') ++backslashes;
  return backslashes % 2 == 0;
}

// In checked JSON: the end of the string or scalar starting at `at`.
std::size_t token_end(std::string_view text, std::size_t at) noexcept {
  if (text[at] == '"') {
    std::size_t close = at;
    do {
      close = text.find('"', close + 1); // memchr: long strings go fast
    } while (!unescaped(text, close));
    return close + 1;
  }
  while (at < text.size() && !ends_token(text[at])) ++at;
  return at;
}

// In checked JSON: the end of the value starting at `at`.
std::size_t value_end(std::string_view text, std::size_t at) noexcept {
  if (text[at] != '[' && text[at] != '{') return token_end(text, at);
  std::size_t depth = 0;
  for (;;) {
    const char c = text[at];
    if (c == '"') {
      at = token_end(text, at);
      continue;
    }
    if (c == '[' || c == '{') {
      ++depth;
    } else if ((c == ']' || c == '}') && --depth == 0) {
      return at + 1;
    }
    ++at;
  }
}

// In checked JSON: the start of the string or scalar ending at `end`. A
// quote inside a string follows an odd run of backslashes; the opening one
// an even run (or none).
std::size_t token_begin(std::string_view text, std::size_t end) noexcept {
  if (text[end - 1] == '"') {
    std::size_t at = end - 1;
    do {
      at = text.rfind('"', at - 1);
    } while (!unescaped(text, at));
    return at;
  }
  while (end > 0 && !ends_token(text[end - 1]) && text[end - 1] != '[' && text[end - 1] != '{') --end;
  return end;
}

// A call id as the JSON codec takes one (valid_id): a string, or an integer
// that fits 64 bits (nlohmann reads a larger one as a double).
bool id_token(std::string_view token) noexcept {
  if (token.empty()) return false;
  if (token.front() == '"') return true;
  if (token.front() != '-' && (token.front() < '0' || token.front() > '9')) return false;
  if (token.find_first_of(".eE") != std::string_view::npos) return false;
  const char* last = token.data() + token.size();
  if (token.front() == '-') {
    std::int64_t v = 0;
    const auto r = std::from_chars(token.data(), last, v);
    return r.ec == std::errc() && r.ptr == last;
  }
  std::uint64_t v = 0;
  const auto r = std::from_chars(token.data(), last, v);
  return r.ec == std::errc() && r.ptr == last;
}

/// Where the two elements of a checked two-element array are, and whether
/// the one that should be an id (the first of a call, the second of a
/// reply) is one.
struct pair_spans {
  std::size_t first = 0, first_end = 0, second = 0, second_end = 0;
  bool id_ok = false;
};

pair_spans spans_with_id_first(std::string_view text) noexcept {
  pair_spans s;
  s.first = skip_space_forward(text, skip_space_forward(text, 0) + 1);
  if (text[s.first] == '[' || text[s.first] == '{') return s;
  s.first_end = token_end(text, s.first);
  s.second = skip_space_forward(text, skip_space_forward(text, s.first_end) + 1); // past the comma
  s.second_end = skip_space_backward(text, skip_space_backward(text, text.size()) - 1);
  s.id_ok = id_token(text.substr(s.first, s.first_end - s.first));
  return s;
}

pair_spans spans_with_id_second(std::string_view text) noexcept {
  pair_spans s;
  s.second_end = skip_space_backward(text, skip_space_backward(text, text.size()) - 1);
  if (text[s.second_end - 1] == ']' || text[s.second_end - 1] == '}') return s;
  s.second = token_begin(text, s.second_end);
  s.first = skip_space_forward(text, skip_space_forward(text, 0) + 1);
  s.first_end = skip_space_backward(text, skip_space_backward(text, s.second) - 1); // before the comma
  s.id_ok = id_token(text.substr(s.second, s.second_end - s.second));
  return s;
}

bool valid_id(const json& id) { return id.is_number_integer() || id.is_number_unsigned() || id.is_string(); }

const basic_codec<payload>& payload_view() noexcept;

class json_payload_codec final : public basic_codec<json> {
public:
  std::string_view name() const noexcept override { return "json"; }
  const void* view_as(const std::type_info& as) const noexcept override {
    if (as == typeid(payload)) return &payload_view();
    return basic_codec<json>::view_as(as);
  }

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

  void write_error(std::string& out, const json* id, std::string_view text) const override {
    const json error(text);
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

  decoded_call<json> read_call(std::string_view payload, const decode_limits& limits) const override {
    return call_of(parse(payload, "call payload", limits));
  }
  decoded_call<json> take_call(std::string& payload, const decode_limits& limits) const override {
    return call_of(parse(payload, "call payload", limits, has_padding(payload)));
  }

  decoded_reply<json> read_reply(std::string_view payload, const decode_limits& limits) const override {
    return reply_of(parse(payload, "reply payload", limits));
  }
  decoded_reply<json> take_reply(std::string& payload, const decode_limits& limits) const override {
    return reply_of(parse(payload, "reply payload", limits, has_padding(payload)));
  }

  json read_value(std::string_view payload, const decode_limits& limits) const override {
    return parse(payload, "value payload", limits);
  }
  json take_value(std::string& payload, const decode_limits& limits) const override {
    return parse(payload, "value payload", limits, has_padding(payload));
  }

  decoded_error<json> read_error(std::string_view payload, const decode_limits& limits) const override {
    json value = parse(payload, "error payload", limits);
    if (value.is_array() && value.size() == 2 && valid_id(value[0])) {
      return {std::move(value[0]), text_of(value[1])};
    }
    return {std::nullopt, text_of(value)};
  }

  json make_id(std::uint64_t n) const override { return json(n); }
  std::optional<std::uint64_t> id_number(const json& id) const override {
    if (id.is_number_unsigned()) return id.get<std::uint64_t>();
    if (id.is_number_integer() && id.get<std::int64_t>() >= 0) return static_cast<std::uint64_t>(id.get<std::int64_t>());
    return std::nullopt;
  }

  // The id of [id, ...] or [..., id], found by scanning from that end (a
  // call's or error's id first, a reply's last) without reading the rest.
  std::optional<json> read_call_id(std::string_view payload) const override {
    std::size_t at = skip_space_forward(payload, 0);
    if (at >= payload.size() || payload[at] != '[') return std::nullopt;
    const std::size_t begin = skip_space_forward(payload, at + 1);
    std::size_t end = begin;
    if (end < payload.size() && payload[end] == '"') {
      end = payload.find('"', end + 1);
      if (end == std::string_view::npos) return std::nullopt;
      ++end;
    } else {
      while (end < payload.size() && (payload[end] == '-' || (payload[end] >= '0' && payload[end] <= '9'))) ++end;
    }
    at = skip_space_forward(payload, end);
    if (at >= payload.size() || payload[at] != ',') return std::nullopt;
    return plain_id(payload.substr(begin, end - begin));
  }

  std::optional<json> read_reply_id(std::string_view payload) const override {
    std::size_t at = skip_space_backward(payload, payload.size());
    if (at == 0 || payload[at - 1] != ']') return std::nullopt;
    const std::size_t end = skip_space_backward(payload, at - 1);
    std::size_t begin = end;
    if (begin > 0 && payload[begin - 1] == '"') {
      const std::size_t open = begin >= 2 ? payload.rfind('"', begin - 2) : std::string_view::npos;
      if (open == std::string_view::npos) return std::nullopt;
      begin = open;
    } else {
      while (begin > 0 && (payload[begin - 1] == '-' || (payload[begin - 1] >= '0' && payload[begin - 1] <= '9'))) --begin;
    }
    at = skip_space_backward(payload, begin);
    if (at == 0 || payload[at - 1] != ',') return std::nullopt;
    return plain_id(payload.substr(begin, end - begin));
  }

private:
  static decoded_call<json> call_of(json value) {
    if (!value.is_array() || value.size() != 2 || !valid_id(value[0])) {
      throw codec_error("call payload must be [call_id, request] with a number or string id");
    }
    return {std::move(value[0]), std::move(value[1])};
  }
  static decoded_reply<json> reply_of(json value) {
    if (!value.is_array() || value.size() != 2 || !valid_id(value[1])) {
      throw codec_error("reply payload must be [reply, call_id] with a number or string id");
    }
    return {std::move(value[1]), std::move(value[0])};
  }
  static std::string text_of(const json& error) { return error.is_string() ? error.get<std::string>() : error.dump(-1, ' ', false, json::error_handler_t::replace); }
  // An integer, or a string without escapes or control characters (ids
  // that need those are not looked for), of a sane length.
  static std::optional<json> plain_id(std::string_view token) {
    constexpr std::size_t longest_id = 256;
    if (token.empty() || token.size() > longest_id) return std::nullopt;
    if (token.front() == '"') {
      for (unsigned char c : token.substr(1, token.size() - 2)) {
        if (c == '\\' || c == '"' || c < 0x20) return std::nullopt;
      }
    }
    json id = json::parse(token, nullptr, false);
    if (id.is_discarded() || !valid_id(id)) return std::nullopt;
    return id;
  }
};

} // namespace

/// Makes payloads from checked text (payload's constructor for that is private).
class payload_access {
public:
  static payload adopt(std::string& bytes, std::size_t begin, std::size_t end) {
    return payload(std::move(bytes), begin, end - begin);
  }
  static payload copy(std::string_view text, std::size_t begin, std::size_t end) {
    return payload(std::string(text.substr(begin, end - begin)), 0, end - begin);
  }
  static payload whole(std::string_view text) {
    const std::size_t begin = skip_space_forward(text, 0);
    return copy(text, begin, skip_space_backward(text, text.size()));
  }
};

namespace {

// The JSON codec seen as a codec of payloads: the same bytes on the wire,
// checked instead of built. Its view of json is the JSON codec.
class payload_view_codec final : public basic_codec<payload> {
public:
  std::string_view name() const noexcept override { return "json"; }
  const void* view_as(const std::type_info& as) const noexcept override {
    if (as == typeid(json)) return &json_codec();
    return basic_codec<payload>::view_as(as);
  }

  void write_call(std::string& out, const payload& id, const payload& request) const override {
    pair(out, id.text(), request.text());
  }
  void write_reply(std::string& out, const payload& id, const payload& reply) const override {
    pair(out, reply.text(), id.text());
  }
  void write_value(std::string& out, const payload& value) const override { out += value.text(); }
  void write_error(std::string& out, const payload* id, std::string_view text) const override {
    if (id == nullptr) {
      json_codec().write_error(out, nullptr, text);
      return;
    }
    const json id_value = id->value();
    json_codec().write_error(out, &id_value, text);
  }

  decoded_call<payload> read_call(std::string_view text, const decode_limits& limits) const override {
    const pair_spans s = call_spans(text, limits);
    return {payload_access::copy(text, s.first, s.first_end), payload_access::copy(text, s.second, s.second_end)};
  }
  decoded_call<payload> take_call(std::string& bytes, const decode_limits& limits) const override {
    const pair_spans s = call_spans(bytes, limits, has_padding(bytes));
    payload id = payload_access::copy(bytes, s.first, s.first_end);
    return {std::move(id), payload_access::adopt(bytes, s.second, s.second_end)};
  }
  decoded_reply<payload> read_reply(std::string_view text, const decode_limits& limits) const override {
    const pair_spans s = reply_spans(text, limits);
    return {payload_access::copy(text, s.second, s.second_end), payload_access::copy(text, s.first, s.first_end)};
  }
  decoded_reply<payload> take_reply(std::string& bytes, const decode_limits& limits) const override {
    const pair_spans s = reply_spans(bytes, limits, has_padding(bytes));
    payload id = payload_access::copy(bytes, s.second, s.second_end);
    return {std::move(id), payload_access::adopt(bytes, s.first, s.first_end)};
  }
  payload read_value(std::string_view text, const decode_limits& limits) const override {
    return payload_access::whole(check_json(text, "value payload", limits).text);
  }
  payload take_value(std::string& bytes, const decode_limits& limits) const override {
    const std::string_view text = check_json(bytes, "value payload", limits, has_padding(bytes)).text;
    const std::size_t begin = skip_space_forward(text, 0);
    return payload_access::adopt(bytes, begin, skip_space_backward(text, text.size()));
  }
  decoded_error<payload> read_error(std::string_view text, const decode_limits& limits) const override {
    decoded_error<json> e = json_codec().read_error(text, limits);
    decoded_error<payload> out;
    if (e.id) out.id = payload(*e.id);
    out.text = std::move(e.text);
    return out;
  }
  std::optional<payload> read_call_id(std::string_view text) const override {
    if (auto id = json_codec().read_call_id(text)) return payload(*id);
    return std::nullopt;
  }
  std::optional<payload> read_reply_id(std::string_view text) const override {
    if (auto id = json_codec().read_reply_id(text)) return payload(*id);
    return std::nullopt;
  }

  payload make_id(std::uint64_t n) const override {
    char digits[24];
    const auto r = std::to_chars(digits, digits + sizeof digits, n);
    return payload_access::copy(std::string_view(digits, static_cast<std::size_t>(r.ptr - digits)), 0,
                                static_cast<std::size_t>(r.ptr - digits));
  }
  std::optional<std::uint64_t> id_number(const payload& id) const override {
    const std::string_view t = id.text();
    std::uint64_t n = 0;
    const auto r = std::from_chars(t.data(), t.data() + t.size(), n);
    if (r.ec != std::errc() || r.ptr != t.data() + t.size()) return std::nullopt;
    return n;
  }

private:
  static void pair(std::string& out, std::string_view first, std::string_view second) {
    out.reserve(out.size() + first.size() + second.size() + 3);
    out += '[';
    out += first;
    out += ',';
    out += second;
    out += ']';
  }
  static pair_spans call_spans(std::string_view text, const decode_limits& limits, bool padded = false) {
    pair_spans s;
    if (const checked_json c = check_json(text, "call payload", limits, padded); c.pair) s = spans_with_id_first(c.text);
    if (!s.id_ok) throw codec_error("call payload must be [call_id, request] with a number or string id");
    return s;
  }
  static pair_spans reply_spans(std::string_view text, const decode_limits& limits, bool padded = false) {
    pair_spans s;
    if (const checked_json c = check_json(text, "reply payload", limits, padded); c.pair) s = spans_with_id_second(c.text);
    if (!s.id_ok) throw codec_error("reply payload must be [reply, call_id] with a number or string id");
    return s;
  }
};

const basic_codec<payload>& payload_view() noexcept {
  static const payload_view_codec codec;
  return codec;
}

} // namespace

const basic_codec<json>& json_codec() noexcept {
  static const json_payload_codec codec;
  return codec;
}

payload::payload(const json& value) {
  json_codec().write_value(bytes_, value);
  size_ = bytes_.size();
}

payload payload::parse(std::string text, const decode_limits& limits) {
  return payload_view().take_value(text, limits);
}

json payload::value(const decode_limits& limits) const { return read_json(text(), limits, "payload"); }

std::optional<payload> payload::find(std::string_view key) const {
  const std::string_view t = text();
  if (t.front() != '{') return std::nullopt;
  std::optional<payload> found;
  std::size_t at = skip_space_forward(t, 1);
  while (t[at] == '"') {
    const std::size_t key_end = token_end(t, at);
    const std::string_view name = t.substr(at + 1, key_end - at - 2);
    const std::size_t value = skip_space_forward(t, skip_space_forward(t, key_end) + 1); // past the colon
    const std::size_t end = value_end(t, value);
    // A name with escapes is compared as what it says; a repeated name's
    // last value is the one, as value() reads it.
    const bool match = name.find('\\') == std::string_view::npos
                           ? name == key
                           : json::parse(t.substr(at, key_end - at)).get_ref<const std::string&>() == key;
    if (match) found = payload_access::copy(t, value, end);
    at = skip_space_forward(t, end);
    if (t[at] == ',') at = skip_space_forward(t, at + 1);
  }
  return found;
}

json read_json(std::string_view text, const decode_limits& limits, std::string_view what) {
  return parse(text, what, limits);
}

} // namespace grove::erps

namespace grove {

const std::error_category& erps_category() noexcept {
  static constexpr const char* messages[] = { // in the order of erps_errc
      "the remote side answered the call with an error",
      "bad payload",
      "a TLS operation failed in OpenSSL",
  };
  return detail::table_category_of<erps_errc::tls>("grove.erps", messages);
}

} // namespace grove
