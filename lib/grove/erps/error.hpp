// grove/erps/error.hpp — the erps layer's error codes (category
// "grove.erps"). What the layer throws is a grove::error with one of these
// codes, or a core grove::errc (see grove/core/error.hpp for the rule).
#pragma once

#include <grove/core/error.hpp>

namespace grove {

enum class erps_errc {
  remote = 1, ///< the remote side answered with an error; what() has its text
  bad_payload, ///< a payload could not be decoded (malformed, or nested deeper than max_depth) or encoded; what() says why
  tls, ///< OpenSSL failed (a key, a certificate, a ticket key); what() has its reason
};

const std::error_category& erps_category() noexcept;
inline std::error_code make_error_code(erps_errc e) noexcept { return {static_cast<int>(e), erps_category()}; }

} // namespace grove

template <>
struct std::is_error_code_enum<grove::erps_errc> : std::true_type {};
