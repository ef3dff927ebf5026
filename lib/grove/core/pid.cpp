#include <grove/core/pid.hpp>

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

} // namespace grove
