// grove/erps/payload.hpp — a JSON value kept as its text: what a frame
// carried, checked but not parsed. A server or client of payloads
// (erps/payloads.hpp) forwards, stores or echoes what it is sent without
// building a tree for it, and parses only what it looks at.
//
//   grove::erps::payload p = grove::erps::payload::parse(R"({"op":"get","key":"k"})");
//   p.text();                                  // {"op":"get","key":"k"}, as it came
//   grove::erps::json v = p.value();           // parsed now, by the JSON codec's reader
//   p.find("key")->text();                     // "k": one member, the rest unparsed
//   grove::erps::payload q = grove::erps::json{{"ok", true}}; // serialised
//
// A payload always holds one well-formed JSON text (RFC 8259, UTF-8
// checked) within the nesting limit it was read with: what the JSON codec
// would accept, the same verdict, so value() of a payload the codec handed
// over succeeds with the same limits. A default payload is null.
//
// A payload read from a frame may share that frame's buffer (a call's
// request is the frame minus its envelope): it is then a view into bytes
// it owns, never copied until it is. == compares the texts, so two payloads
// of one value written differently ({"a":1} and { "a" : 1 }) differ.
#pragma once

#include <grove/erps/codec.hpp>
#include <grove/erps/json_codec.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace grove::erps {

class payload {
public:
  /// null.
  payload() noexcept = default;
  /// A copy holds only the text, not the frame around it.
  payload(const payload& other) : bytes_(other.bytes_.data() + other.begin_, other.size_), size_(other.size_) {}
  payload& operator=(const payload& other) {
    if (this != &other) *this = payload(other);
    return *this;
  }
  payload(payload&&) noexcept = default;
  payload& operator=(payload&&) noexcept = default;
  /// `value`, serialised as the JSON codec writes it. Throws codec_error for
  /// a value nested deeper than max_depth_limit.
  payload(const json& value); // NOLINT(google-explicit-constructor): a handler may return a json
  /// `text` after checking that it is one JSON value within `limits`.
  /// Throws codec_error (malformed, or nested too deep) naming what is wrong.
  static payload parse(std::string text, const decode_limits& limits = {});

  /// The JSON text ("null" for a default payload).
  std::string_view text() const noexcept {
    return size_ == 0 ? std::string_view("null") : std::string_view(bytes_.data() + begin_, size_);
  }
  /// The value, parsed now (a tree of its own: parse once, keep it).
  /// Throws codec_error only when `limits` are tighter than those it was
  /// read with.
  json value(const decode_limits& limits = {}) const;
  /// value().get<T>().
  template <class T>
  T get() const {
    return value().template get<T>();
  }
  bool is_null() const noexcept { return text() == "null"; }
  /// In an object, the value of member `key` (the last one, if it repeats),
  /// found without parsing the others: a copy of its text. nullopt when
  /// there is no such member, or this is not an object.
  std::optional<payload> find(std::string_view key) const;

  friend bool operator==(const payload& a, const payload& b) noexcept { return a.text() == b.text(); }

private:
  friend class payload_access;
  payload(std::string bytes, std::size_t begin, std::size_t size) noexcept
      : bytes_(std::move(bytes)), begin_(begin), size_(size) {}

  std::string bytes_; // the text, or a frame whose part it is
  std::size_t begin_ = 0;
  std::size_t size_ = 0; // 0: null
};

} // namespace grove::erps
