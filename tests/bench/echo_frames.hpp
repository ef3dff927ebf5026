// The erps echo the bench servers share (erps_echo_server on Asio,
// epoll_echo_server on bare epoll): frames are parsed in place from what a
// read brought, and each call's reply is appended to one output buffer, so
// the replies to one read go out in one write. A call's payload
// [id, request] comes back as the reply [request, id]; keepalives are
// answered; casts are dropped. With `dom`, the payload is parsed into an
// nlohmann::json and the reply serialised from one (what a server built on
// a JSON library pays); without, only the id is scanned and the request is
// copied as bytes.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace echo_frames {

constexpr std::size_t header_size = 96;
constexpr std::size_t keepalive_size = 9;

inline std::uint32_t length_of(const char* h) {
  return (std::uint32_t(std::uint8_t(h[4])) << 24) | (std::uint32_t(std::uint8_t(h[5])) << 16) |
         (std::uint32_t(std::uint8_t(h[6])) << 8) | std::uint32_t(std::uint8_t(h[7]));
}

inline void put_length(char* h, std::uint32_t n) {
  h[4] = static_cast<char>(n >> 24);
  h[5] = static_cast<char>(n >> 16);
  h[6] = static_cast<char>(n >> 8);
  h[7] = static_cast<char>(n);
}

/// Appends a reply header (the call's, retyped) and returns where its length goes.
inline std::size_t open_reply(std::string& out, const char* call_header) {
  const std::size_t at = out.size();
  out.append(call_header, header_size);
  out[at + 8] = 2; // reply
  return at;
}

inline bool append_scanned_reply(std::string& out, const char* header, std::string_view payload) {
  if (payload.size() < 5 || payload.front() != '[' || payload.back() != ']') return false;
  std::size_t end = 1;
  if (payload[1] == '"') {
    for (end = 2; end < payload.size() && payload[end] != '"'; ++end) {
      if (payload[end] == '\\') ++end;
    }
    ++end;
  } else {
    while (end < payload.size() && payload[end] != ',') ++end;
  }
  if (end >= payload.size() || payload[end] != ',') return false;
  const std::string_view id = payload.substr(1, end - 1);
  const std::string_view request = payload.substr(end + 1, payload.size() - end - 2);
  const std::size_t at = open_reply(out, header);
  put_length(out.data() + at, static_cast<std::uint32_t>(request.size() + id.size() + 3));
  out += '[';
  out += request;
  out += ',';
  out += id;
  out += ']';
  return true;
}

inline bool append_dom_reply(std::string& out, const char* header, std::string_view payload) {
  nlohmann::json call = nlohmann::json::parse(payload, nullptr, false);
  if (call.is_discarded() || !call.is_array() || call.size() != 2) return false;
  const nlohmann::json reply = nlohmann::json::array({std::move(call[1]), std::move(call[0])});
  const std::string body = reply.dump();
  const std::size_t at = open_reply(out, header);
  put_length(out.data() + at, static_cast<std::uint32_t>(body.size()));
  out += body;
  return true;
}

/// Consumes the whole frames in in[0, filled), appending replies to out.
/// Returns the bytes consumed, or -1 when the peer is out of step (close
/// the connection). Grows `in` when a frame is larger than it.
inline long consume(std::vector<char>& in, std::size_t filled, std::string& out, bool dom) {
  std::size_t at = 0;
  for (;;) {
    const std::size_t left = filled - at;
    if (left < keepalive_size) break;
    const char* h = in.data() + at;
    if (std::memcmp(h, "erps", 4) != 0) return -1;
    const std::uint32_t length = length_of(h);
    if (length == 0 && h[8] == 0) { // keepalive
      out.append(h, keepalive_size);
      at += keepalive_size;
      continue;
    }
    if (left < header_size || left - header_size < length) {
      if (header_size + length > in.size()) in.resize(header_size + length);
      break;
    }
    if (h[8] == 4) {
      const std::string_view payload(h + header_size, length);
      if (!(dom ? append_dom_reply(out, h, payload) : append_scanned_reply(out, h, payload))) return -1;
    }
    at += header_size + length;
  }
  return static_cast<long>(at);
}

} // namespace echo_frames
