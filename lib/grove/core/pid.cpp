#include <grove/core/detail/runtime.hpp>
#include <grove/core/pid.hpp>

#include <ostream>

namespace grove {

std::uint32_t pid::node_id() const noexcept { return node_ ? node_->id : 0; }

std::string pid::to_string() const {
  if (!*this) return "<null>";
  return "<" + std::to_string(node_id()) + "." + std::to_string(worker_) + "." + std::to_string(serial_) + ">";
}

std::ostream& operator<<(std::ostream& os, const pid& p) { return os << p.to_string(); }

} // namespace grove
