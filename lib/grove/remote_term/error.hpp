// grove/remote_term/error.hpp — the remote_term layer's error codes
// (category "grove.remote_term"). An attempt that fails keeps the last good
// value; its error (one of these, with a text naming the term and the
// reason) is in the term's stats, its span and its event.
#pragma once

#include <grove/core/error.hpp>

namespace grove {

enum class remote_term_errc {
  fetch_failed = 1,   ///< the fetcher could not read the source (missing file, refused connection, ...)
  too_large,          ///< the payload (or its decompressed form) is over max_bytes
  checksum_mismatch,  ///< the payload's SHA-256 is not the one expected
  decompress_failed,  ///< a gzip payload could not be decompressed
  deserialize_failed, ///< deserialize threw or could not read the payload
  rejected,           ///< validate threw: the value was not published
  attempt_timeout,    ///< the attempt took longer than attempt_timeout
};

const std::error_category& remote_term_category() noexcept;
inline std::error_code make_error_code(remote_term_errc e) noexcept {
  return {static_cast<int>(e), remote_term_category()};
}

} // namespace grove

template <>
struct std::is_error_code_enum<grove::remote_term_errc> : std::true_type {};
