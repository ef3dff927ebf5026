#include <grove/core/pid.hpp>
#include <grove/core/pid_text.hpp>

#include <charconv>
#include <cinttypes>
#include <cstdio>
#include <ostream>

namespace grove {

std::string pid::to_string() const {
  if (!*this) return "<null>";
  // Formatted into a buffer: g++ 12 at -O3 warns falsely about the
  // std::string concatenation this used to be.
  char text[64];
  const int n = std::snprintf(text, sizeof text, "<%" PRIu32 ".%" PRIu32 ".%" PRIu64 ">", node_,
                              static_cast<std::uint32_t>(worker_), static_cast<std::uint64_t>(serial_));
  return std::string(text, static_cast<std::size_t>(n));
}

std::ostream& operator<<(std::ostream& os, const pid& p) { return os << p.to_string(); }

std::string pid_text(const pid& p) {
  char text[96];
  const int n = std::snprintf(text, sizeof text, "%" PRIu32 ".%" PRIu32 ".%" PRIu32 ".%" PRIu32 ".%" PRIu64, p.node_id(),
                              p.creation(), p.worker(), p.slot(), p.serial());
  return std::string(text, static_cast<std::size_t>(n));
}

std::optional<pid> parse_pid(std::string_view text) noexcept {
  std::uint64_t parts[5] = {};
  const char* at = text.data();
  const char* end = text.data() + text.size();
  for (int i = 0; i < 5; ++i) {
    auto [next, ec] = std::from_chars(at, end, parts[i]);
    if (ec != std::errc() || (i < 4 && parts[i] > 0xffffffffu)) return std::nullopt;
    at = next;
    if (i < 4) {
      if (at == end || *at != '.') return std::nullopt;
      ++at;
    }
  }
  if (at != end) return std::nullopt;
  return pid(static_cast<std::uint32_t>(parts[0]), static_cast<std::uint32_t>(parts[1]), static_cast<std::uint32_t>(parts[2]),
             static_cast<std::uint32_t>(parts[3]), parts[4]);
}

} // namespace grove
