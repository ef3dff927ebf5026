// grove/remote_term/http_fetcher.hpp — remote terms read over HTTP(S) and
// from S3 (or an S3-compatible store).
//
//   auto flags = grove::http_fetcher({.url = "https://config.internal/flags.json",
//                                     .tls = {.ca_file = "/etc/myservice/ca.pem"}});
//   auto prices = grove::s3_fetcher({.bucket = "prices", .key = "eu/table.json.gz", .region = "eu-west-1"});
//
// Each attempt opens a connection (TLS sessions resume across attempts),
// sends one GET and closes. The version a term holds is the response's
// ETag (else "last-modified <date>", else "sha256:<hex of the body>"); the
// next GET is conditional on it (If-None-Match on an ETag, else
// If-Modified-Since), and a 304 is "not modified". A 200 whose
// version is the held one is "not modified" too (a server that ignores
// conditions), so the term never deserializes the same bytes twice.
//
// Refused, with an error naming the URL (its query left out: it may hold a
// token) and the reason: a status >= 300 after redirects ("status 404 Not
// Found"; for S3 with its error code, e.g. "(NoSuchBucket)"), more than
// max_redirects redirects, a redirect from https to http, a body over the
// term's max_bytes (by its Content-Length before a byte of it is read, or
// as it arrives), a Content-Encoding other than gzip, a connect,
// handshake, write or read slower than io_timeout, a certificate that does
// not verify (with OpenSSL's reason).
//
// TLS follows erps's client policy (TLS 1.2 floor, ECDHE + AEAD) and its
// options (erps::tls_client_options): the server is verified against
// tls.ca_file, which defaults here to Debian's system bundle; a client
// certificate is sent when one is given.
#pragma once

#include <grove/core/process.hpp>
#include <grove/erps/tls.hpp>
#include <grove/remote_term/fetcher.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace grove {

/// The CA bundle an https fetcher verifies against when tls.ca_file is
/// empty (Debian's ca-certificates).
inline constexpr const char* system_ca_bundle = "/etc/ssl/certs/ca-certificates.crt";

struct http_fetcher_options {
  std::string url{};                   ///< http://host[:port]/path[?query] or https://... (required)
  std::vector<std::pair<std::string, std::string>> headers{}; ///< sent with every request, e.g. {"Authorization", "Bearer ..."} (default none)
  int max_redirects = 5;               ///< 301, 302, 303, 307 and 308 followed up to this many (default 5; 0: none)
  bool conditional = true;             ///< send If-None-Match / If-Modified-Since for the held version (default on)
  bool accept_gzip = true;             ///< send Accept-Encoding: gzip; a gzip body reaches the term as is, which inflates it
                                       ///< by its magic (default on; turn it off with the term's decompress)
  std::optional<duration> cache_control_floor{}; ///< when set, a response's Cache-Control max-age (minus Age) sets the
                                                 ///< next attempt, never sooner than this (default: unset, the interval rules)
  duration io_timeout = std::chrono::seconds(10); ///< each connect, handshake, write and read (default 10 s)
  erps::tls_client_options tls{};      ///< https: CA (default system_ca_bundle), client certificate, server name
  std::string user_agent = "grove-remote-term"; ///< (default "grove-remote-term")
};

/// A resource over HTTP or HTTPS. Throws grove::error (invalid_argument)
/// naming the option for a bad URL, header or TLS file.
std::shared_ptr<term_fetcher> http_fetcher(http_fetcher_options options);

struct s3_fetcher_options {
  std::string bucket{};                ///< (required)
  std::string key{};                   ///< the object's key, e.g. "eu/table.json.gz" (required)
  std::string region{};                ///< (default $AWS_REGION, else $AWS_DEFAULT_REGION, else "us-east-1")
  std::string endpoint{};              ///< e.g. "http://127.0.0.1:4568" (default https://s3.<region>.amazonaws.com)
  std::optional<bool> path_style{};    ///< host/bucket/key rather than bucket.host/key (default: on with an endpoint, off on AWS)
  std::string access_key_id{};         ///< (default $AWS_ACCESS_KEY_ID)
  std::string secret_access_key{};     ///< (default $AWS_SECRET_ACCESS_KEY)
  std::string session_token{};         ///< temporary credentials' token (default $AWS_SESSION_TOKEN, if set)
  duration io_timeout = std::chrono::seconds(10); ///< as http_fetcher_options::io_timeout
  erps::tls_client_options tls{};      ///< as http_fetcher_options::tls
};

/// An object in S3: a GET signed with AWS Signature Version 4, conditional
/// on the held ETag. Several buckets or endpoints in order: put s3_fetchers
/// in a fallback_fetcher. Throws grove::error (invalid_argument) naming the
/// option (or the environment variable) that is missing or malformed.
std::shared_ptr<term_fetcher> s3_fetcher(s3_fetcher_options options);

} // namespace grove
