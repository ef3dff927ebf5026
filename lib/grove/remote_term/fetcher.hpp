// grove/remote_term/fetcher.hpp — where a remote term's bytes come from: the
// fetcher seam, and the static and file fetchers.
//
//   auto flags = grove::file_fetcher("/etc/myservice/flags.json");   // version: size, mtime and inode
//   auto fixed = grove::static_fetcher(R"({"beta": true})");          // for tests
//
// A fetcher answers one question per attempt: given the version the term
// holds (empty before the first load), what is there now? Either "not
// modified" (cheap: a stat, an HTTP 304) or the bytes and their version.
// It runs in the term's refresher process, one attempt at a time, and may
// co_await; the term bounds each attempt by attempt_timeout.
#pragma once

#include <grove/core/process.hpp>

#include <cstddef>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace grove {

/// What the term allows one attempt to read.
struct fetch_limits {
  std::size_t max_bytes = 0; ///< a payload over this is refused (remote_term_errc::too_large)
};

/// What one attempt found.
struct fetched {
  bool modified = true;                  ///< false: the known version is still current (nothing else is set)
  std::string bytes{};                   ///< the payload, as stored (maybe gzip)
  std::string version{};                 ///< its version (non-empty)
  std::optional<std::string> sha256{};   ///< the SHA-256 the source states for it (hex), if any
  std::optional<duration> refresh_after{}; ///< when the source says to look again (an HTTP max-age), if it does
};

class term_fetcher {
public:
  term_fetcher() = default;
  term_fetcher(const term_fetcher&) = delete;
  term_fetcher& operator=(const term_fetcher&) = delete;
  virtual ~term_fetcher() = default;

  /// What it reads, for logs and errors ("file /etc/x.json", "static").
  virtual std::string describe() const = 0;
  /// One attempt. Throws grove::error (fetch_failed, too_large) naming the
  /// source and the reason.
  virtual awaitable<fetched> fetch(const std::string& known_version, const fetch_limits& limits) = 0;
};

/// Fixed bytes with a fixed version: "modified" once, then never again.
std::shared_ptr<term_fetcher> static_fetcher(std::string bytes, std::string version = "static");

/// How a file fetcher tells versions apart.
enum class file_version : std::uint8_t {
  metadata,     ///< size, modification time and inode (a stat per attempt; default)
  content_hash, ///< the SHA-256 of the content (reads the file every attempt)
};

/// A local file. A file replaced by rename is read whole, old or new,
/// never half of each: the version and the bytes come from one open file.
std::shared_ptr<term_fetcher> file_fetcher(std::filesystem::path file, file_version how = file_version::metadata);

/// Several sources of one term, in order: each attempt asks the first
/// (the primary), and the next only when one fails, so a recovered primary
/// is used again at the next attempt. A source is asked conditionally only
/// if it gave the held value, and its "not modified" ends the attempt (it
/// never fails over). An attempt fails only when every source does, with
/// each one's reason. The version says which source gave it ("1:" + that
/// source's version), so a value from another source is downloaded again,
/// never taken for unchanged.
///
///   auto prices = grove::fallback_fetcher({grove::s3_fetcher(primary), grove::s3_fetcher(replica)});
std::shared_ptr<term_fetcher> fallback_fetcher(std::vector<std::shared_ptr<term_fetcher>> sources);

namespace detail {
/// SHA-256 of `bytes` as 64 lowercase hex digits.
std::string sha256_hex(std::string_view bytes);
} // namespace detail

} // namespace grove
