// Internal: the pure rules the HTTP(S) and S3 fetchers follow, kept apart
// so that tests check them against published examples without a server.
//  - cache_max_age: when Cache-Control (with Age) says to look again;
//  - AWS Signature Version 4 for S3 requests (OpenSSL's HMAC-SHA256).
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace grove::detail {

/// The freshness left by a response: Cache-Control's max-age (a directive
/// anywhere in the list, names case-insensitive, the value plain or
/// quoted) minus the Age header (seconds; absent or unreadable: 0), and
/// never below zero. std::nullopt without a readable max-age.
std::optional<std::chrono::seconds> cache_max_age(std::string_view cache_control, std::string_view age = {});

/// RFC 3986 percent-encoding as SigV4 wants it: unreserved bytes stay, all
/// others become %XX (upper case); '/' stays when `keep_slash` (paths).
std::string uri_encode(std::string_view text, bool keep_slash);

/// `raw` bytes as lowercase hex digits.
std::string to_hex(std::string_view raw);

/// Lowercase hex of HMAC-SHA256 / SHA-256 helpers for the signer.
std::string hmac_sha256(std::string_view key, std::string_view data);

struct sigv4_request {
  std::string method = "GET";
  std::string path = "/";                                  ///< the object's path, not yet encoded
  std::vector<std::pair<std::string, std::string>> query{};  ///< raw names and values
  std::vector<std::pair<std::string, std::string>> headers{}; ///< every header to sign (host, x-amz-date, x-amz-content-sha256, ...)
  std::string payload_sha256{};                            ///< hex SHA-256 of the body ("e3b0..." for none)
};

struct sigv4_key {
  std::string access_key{};
  std::string secret_key{};
};

/// The Authorization header value for `request`, signed for `region` and
/// `service` at `amz_date` ("20130524T000000Z", which must also be the
/// request's x-amz-date header).
std::string sigv4_authorization(const sigv4_request& request, const sigv4_key& key, std::string_view region,
                                std::string_view service, std::string_view amz_date);

} // namespace grove::detail
