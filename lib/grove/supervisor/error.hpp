// grove/supervisor/error.hpp — the supervisor layer's error codes (category
// "grove.supervisor"). What the layer throws is a grove::error with one of these
// codes, or a core grove::errc (see grove/core/error.hpp for the rule).
#pragma once

#include <grove/core/error.hpp>

namespace grove {

enum class supervisor_errc {
  already_started = 1, ///< a supervisor already runs a child with that id
  already_present, ///< a supervisor already holds a (stopped) child spec with that id
  not_found, ///< no child with that id
  running, ///< the child is running; terminate it first
  restarting, ///< the child is being restarted by its supervisor
  max_children, ///< a dynamic supervisor is at its max_children
};

const std::error_category& supervisor_category() noexcept;
inline std::error_code make_error_code(supervisor_errc e) noexcept { return {static_cast<int>(e), supervisor_category()}; }

} // namespace grove

template <>
struct std::is_error_code_enum<grove::supervisor_errc> : std::true_type {};
