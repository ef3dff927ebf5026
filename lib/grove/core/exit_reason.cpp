#include <grove/core/exit_reason.hpp>

#include <ostream>

namespace grove {

std::string exit_reason::to_string() const {
  switch (kind_) {
  case kind::normal: return "normal";
  case kind::shutdown: return detail_.empty() ? "shutdown" : "{shutdown, " + detail_ + "}";
  case kind::kill: return "kill";
  case kind::killed: return "killed";
  case kind::error: return "{error, " + detail_ + "}";
  case kind::noproc: return "noproc";
  case kind::noconnection: return "noconnection";
  }
  return "unknown";
}

std::ostream& operator<<(std::ostream& os, const exit_reason& reason) {
  return os << reason.to_string();
}

} // namespace grove
