// The frame decoder fuzz body, shared by the libFuzzer target
// (frame_decoder_fuzz.cpp) and a doctest that replays the seed corpus in
// every ordinary build (tests/erps/fuzz_corpus_test.cpp).
//
// Input layout: byte 0 picks the read sizes the stream is split into, the
// rest is the byte stream. Whatever the bytes, the decoder must not crash,
// must not allocate for a length above its maximum, must hand out frames
// whose payload fits the maximum, and must stay failed once failed. Each
// call and reply payload also goes through the JSON codec, and so do the
// raw bytes: the codec's fast paths (simdjson to read, a bulk writer) must
// accept exactly what nlohmann accepts, read the same value, and write the
// same text; and the payload view of the codec must agree with the codec.
#pragma once

#include <grove/erps/json_codec.hpp>
#include <grove/erps/frame.hpp>
#include <grove/erps/payload.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <utility>
#include <vector>
#include <cstring>
#include <string>
#include <string_view>

namespace grove_fuzz {

inline void require(bool ok) {
  if (!ok) std::abort();
}

// Same value kinds everywhere (nlohmann reads 5 as unsigned, -5 as signed).
inline bool same_kinds(const grove::erps::json& a, const grove::erps::json& b) {
  if (a.type() != b.type() || a.size() != b.size()) return false;
  if (a.is_array()) {
    for (std::size_t i = 0; i < a.size(); ++i) {
      if (!same_kinds(a[i], b[i])) return false;
    }
  } else if (a.is_object()) {
    for (auto it = a.begin(); it != a.end(); ++it) {
      auto other = b.find(it.key());
      if (other == b.end() || !same_kinds(it.value(), *other)) return false;
    }
  }
  return true;
}

// Containers nested in `value`, the outermost counted; without recursion,
// since the reference may be as deep as the input is long.
inline std::size_t nesting_depth(const grove::erps::json& value) {
  std::size_t deepest = 0;
  std::vector<std::pair<const grove::erps::json*, std::size_t>> todo{{&value, 0}};
  while (!todo.empty()) {
    auto [v, depth] = todo.back();
    todo.pop_back();
    if (!v->is_structured()) continue;
    deepest = std::max(deepest, depth + 1);
    for (const auto& child : *v) todo.emplace_back(&child, depth + 1);
  }
  return deepest;
}

// The codec against nlohmann alone, on any bytes: empty if they agree,
// otherwise what differs. nlohmann has no depth limit, so what it accepts
// must be accepted exactly when it nests no deeper than the limit.
inline std::string codec_disagreement(std::string_view text, std::uint32_t max_depth = grove::erps::max_depth_limit) {
  using grove::erps::json;
  const auto& codec = grove::erps::json_codec();
  const json reference = json::parse(text.begin(), text.end(), nullptr, false);
  json fast;
  bool accepted = true;
  try {
    fast = codec.read_value(text, grove::erps::decode_limits{max_depth});
  } catch (const grove::erps::codec_error&) {
    accepted = false;
  }
  const bool acceptable = !reference.is_discarded() && nesting_depth(reference) <= max_depth;
  if (accepted != acceptable) return accepted ? "the codec accepted it" : "the codec refused it";
  if (!accepted) return {};
  if (fast != reference) return "a different value";
  if (!same_kinds(fast, reference)) return "different number kinds";
  const std::string expected = reference.dump(-1, ' ', false, json::error_handler_t::replace);
  std::string written;
  codec.write_value(written, fast);
  if (written != expected) return "written as " + written + " instead of " + expected;
  return {};
}

// The payload view of the JSON codec against the JSON codec: the same
// verdict on every read, the same values once parsed, and a call's or
// reply's parts cut from the text byte for byte. Empty if they agree.
inline std::string payload_disagreement(std::string_view text, std::uint32_t max_depth) {
  using grove::erps::json;
  using grove::erps::payload;
  const auto& codec = grove::erps::json_codec();
  const auto& view = *grove::erps::codec_for<payload>(codec);
  const grove::erps::decode_limits limits{max_depth};
  auto verdict = [](auto read) {
    try {
      return std::optional(read());
    } catch (const grove::erps::codec_error&) {
      return decltype(std::optional(read()))();
    }
  };
  auto cut = [&](const payload& p) { return text.find(p.text()) != std::string_view::npos; }; // byte for byte
  const auto value = verdict([&] { return codec.read_value(text, limits); });
  const auto lazy = verdict([&] { return view.read_value(text, limits); });
  if (value.has_value() != lazy.has_value()) return lazy ? "the payload view accepted a value" : "the payload view refused a value";
  if (lazy && (lazy->value(limits) != *value || !same_kinds(lazy->value(limits), *value))) return "a different value";
  if (lazy && value->is_object()) { // each member found by name, unparsed around it
    for (const auto& [key, member] : value->items()) {
      const auto found = lazy->find(key);
      if (!found || found->value(limits) != member) return "find(\"" + key + "\") differs from the member";
    }
    if (!value->contains("\x01" "absent") && lazy->find("\x01" "absent")) return "find() found an absent member";
  } else if (lazy && lazy->find("a")) {
    return "find() found a member in a value that is not an object";
  }

  const auto call = verdict([&] { return codec.read_call(text, limits); });
  const auto lazy_call = verdict([&] { return view.read_call(text, limits); });
  if (call.has_value() != lazy_call.has_value()) return lazy_call ? "the payload view accepted a call" : "the payload view refused a call";
  if (call) {
    if (lazy_call->id.value() != call->id || lazy_call->request.value(limits) != call->request) return "a different call";
    if (!cut(lazy_call->id) || !cut(lazy_call->request)) return "a call's parts are not cut from its text";
    std::string owned(text);
    const auto taken = view.take_call(owned, limits);
    if (!(taken.id == lazy_call->id) || !(taken.request == lazy_call->request)) return "take_call differs from read_call";
  } else {
    std::string owned(text);
    try {
      view.take_call(owned, limits);
    } catch (const grove::erps::codec_error&) {
    }
    if (owned != text) return "a refused take_call changed its input";
  }
  const auto reply = verdict([&] { return codec.read_reply(text, limits); });
  const auto lazy_reply = verdict([&] { return view.read_reply(text, limits); });
  if (reply.has_value() != lazy_reply.has_value()) return lazy_reply ? "the payload view accepted a reply" : "the payload view refused a reply";
  if (reply && (lazy_reply->id.value() != reply->id || lazy_reply->reply.value(limits) != reply->reply)) return "a different reply";
  if (reply && (!cut(lazy_reply->id) || !cut(lazy_reply->reply))) return "a reply's parts are not cut from its text";
  return {};
}

inline void codec_agrees(std::string_view text) {
  require(codec_disagreement(text).empty());
  require(codec_disagreement(text, 4).empty()); // the limit is exact on both read paths
  require(payload_disagreement(text, grove::erps::max_depth_limit).empty());
  require(payload_disagreement(text, 4).empty());
}

inline int decode_frames(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  codec_agrees(std::string_view(reinterpret_cast<const char*>(data + 1), size - 1));
  constexpr std::uint32_t max_payload = 4096;
  const std::size_t step = 1 + data[0] % 64; // read sizes 1..64, varied below
  grove::erps::frame_decoder decoder(max_payload);
  const auto& codec = grove::erps::json_codec();
  std::size_t at = 1;
  std::size_t round = 0;
  bool failed = false;
  while (at < size) {
    const std::size_t n = std::min(size - at, step + (round++ * 7) % step);
    decoder.feed(std::string_view(reinterpret_cast<const char*>(data + at), n));
    at += n;
    while (auto f = decoder.next()) {
      require(!failed);
      require(f.payload.size() <= max_payload);
      require(f.keepalive() == (f.header.type == grove::erps::frame_type::keepalive));
      codec_agrees(f.payload);
      try {
        switch (f.header.type) {
        case grove::erps::frame_type::call: {
          const auto id = codec.read_call_id(f.payload); // the id scan agrees with the parse, when it finds one
          const auto call = codec.read_call(f.payload, {});
          require(!id || *id == call.id);
          break;
        }
        case grove::erps::frame_type::reply: {
          const auto id = codec.read_reply_id(f.payload);
          const auto reply = codec.read_reply(f.payload, {});
          require(!id || *id == reply.id);
          break;
        }
        case grove::erps::frame_type::error: codec.read_error(f.payload, {}); break;
        case grove::erps::frame_type::keepalive: break;
        default: codec.read_value(f.payload, {}); break;
        }
      } catch (const grove::erps::codec_error&) {
      }
    }
    if (decoder.failed()) {
      failed = true;
      require(!decoder.error_text().empty());
    }
    // Never more than a header, the largest payload and one read buffered.
    require(decoder.capacity() <= grove::erps::header_size + max_payload + 64 * 1024);
  }
  return 0;
}

} // namespace grove_fuzz
