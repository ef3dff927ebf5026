// grove/connection/error.hpp — the connection layer's error codes (category
// "grove.connection"). What the layer throws is a grove::error with one of these
// codes, or a core grove::errc (see grove/core/error.hpp for the rule).
#pragma once

#include <grove/core/error.hpp>

namespace grove {

enum class connection_errc {
  disconnected = 1, ///< the connection is not connected (a call while it was down, or one in flight when it dropped)
};

const std::error_category& connection_category() noexcept;
inline std::error_code make_error_code(connection_errc e) noexcept { return {static_cast<int>(e), connection_category()}; }

} // namespace grove

template <>
struct std::is_error_code_enum<grove::connection_errc> : std::true_type {};
