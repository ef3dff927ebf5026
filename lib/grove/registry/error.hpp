// grove/registry/error.hpp — the registry layer's error codes (category
// "grove.registry"). What the layer throws is a grove::error with one of these
// codes, or a core grove::errc (see grove/core/error.hpp for the rule).
#pragma once

#include <grove/core/error.hpp>

namespace grove {

enum class registry_errc {
  already_registered = 1, ///< a registry name is held by another live process
};

const std::error_category& registry_category() noexcept;
inline std::error_code make_error_code(registry_errc e) noexcept { return {static_cast<int>(e), registry_category()}; }

} // namespace grove

template <>
struct std::is_error_code_enum<grove::registry_errc> : std::true_type {};
