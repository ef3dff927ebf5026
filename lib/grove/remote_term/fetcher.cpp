#include <grove/remote_term/error.hpp>
#include <grove/remote_term/fetcher.hpp>
#include <grove/remote_term/detail/http_rules.hpp>

#include <openssl/evp.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <utility>

namespace grove {

const std::error_category& remote_term_category() noexcept {
  static constexpr const char* messages[] = { // in the order of remote_term_errc
      "the fetcher could not read the source",
      "the payload is over max_bytes",
      "the payload's SHA-256 is not the one expected",
      "a gzip payload could not be decompressed",
      "deserialize could not read the payload",
      "validate rejected the value; it was not published",
      "the attempt took longer than attempt_timeout",
  };
  return detail::table_category_of<remote_term_errc::attempt_timeout>("grove.remote_term", messages);
}

namespace detail {

std::string sha256_hex(std::string_view bytes) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  if (EVP_Digest(bytes.data(), bytes.size(), digest, &size, EVP_sha256(), nullptr) != 1) {
    throw grove::error(remote_term_errc::checksum_mismatch, "SHA-256: OpenSSL's EVP_Digest failed");
  }
  return to_hex(std::string_view(reinterpret_cast<const char*>(digest), size));
}

} // namespace detail

namespace {

class static_source final : public term_fetcher {
public:
  static_source(std::string bytes, std::string version) : bytes_(std::move(bytes)), version_(std::move(version)) {}
  std::string describe() const override { return "static"; }
  awaitable<fetched> fetch(const std::string& known_version, const fetch_limits& limits) override {
    if (known_version == version_) co_return fetched{.modified = false};
    if (bytes_.size() > limits.max_bytes) {
      throw grove::error(remote_term_errc::too_large, "static: " + std::to_string(bytes_.size()) +
                                                          " bytes, over max_bytes (" +
                                                          std::to_string(limits.max_bytes) + ")");
    }
    co_return fetched{.bytes = bytes_, .version = version_};
  }

private:
  std::string bytes_;
  std::string version_;
};

/// Closes a file descriptor on every path.
struct fd_closer {
  int fd;
  ~fd_closer() {
    if (fd >= 0) ::close(fd);
  }
};

std::string metadata_version(const struct stat& st) {
  return std::to_string(st.st_size) + "-" + std::to_string(st.st_mtim.tv_sec) + "." +
         std::to_string(st.st_mtim.tv_nsec) + "-" + std::to_string(st.st_ino);
}

class file_source final : public term_fetcher {
public:
  file_source(std::filesystem::path file, file_version how) : file_(std::move(file)), how_(how) {}
  std::string describe() const override { return "file " + file_.string(); }

  awaitable<fetched> fetch(const std::string& known_version, const fetch_limits& limits) override {
    co_return read(known_version, limits);
  }

private:
  [[noreturn]] void fail(const char* doing, int error) const {
    throw grove::error(remote_term_errc::fetch_failed,
                       "file " + file_.string() + ": " + doing + ": " + std::strerror(error));
  }

  fetched read(const std::string& known_version, const fetch_limits& limits) const {
    if (how_ == file_version::metadata && !known_version.empty()) {
      struct stat st {};
      if (::stat(file_.c_str(), &st) != 0) fail("stat", errno);
      if (metadata_version(st) == known_version) return fetched{.modified = false};
    }
    // One open file gives both the version and the bytes: a rename over
    // the path while this reads leaves this file whole.
    const int fd = ::open(file_.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail("open", errno);
    fd_closer closer{fd};
    struct stat st {};
    if (::fstat(fd, &st) != 0) fail("fstat", errno);
    if (!S_ISREG(st.st_mode)) {
      throw grove::error(remote_term_errc::fetch_failed, "file " + file_.string() + ": not a regular file");
    }
    if (static_cast<std::size_t>(st.st_size) > limits.max_bytes) {
      throw grove::error(remote_term_errc::too_large, "file " + file_.string() + ": " +
                                                          std::to_string(st.st_size) + " bytes, over max_bytes (" +
                                                          std::to_string(limits.max_bytes) + ")");
    }
    fetched out;
    out.bytes.resize(static_cast<std::size_t>(st.st_size));
    std::size_t got = 0;
    while (got < out.bytes.size()) {
      const ssize_t n = ::read(fd, out.bytes.data() + got, out.bytes.size() - got);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) fail("read", errno);
      if (n == 0) break; // truncated under us: what is there is what the file holds now
      got += static_cast<std::size_t>(n);
    }
    out.bytes.resize(got);
    out.version = how_ == file_version::metadata ? metadata_version(st) : detail::sha256_hex(out.bytes);
    if (how_ == file_version::content_hash && out.version == known_version) return fetched{.modified = false};
    return out;
  }

  std::filesystem::path file_;
  file_version how_;
};

class fallback_source final : public term_fetcher {
public:
  explicit fallback_source(std::vector<std::shared_ptr<term_fetcher>> sources) : sources_(std::move(sources)) {}

  std::string describe() const override {
    std::string out = "sources [";
    for (std::size_t i = 0; i < sources_.size(); ++i) out += (i == 0 ? "" : ", ") + sources_[i]->describe();
    return out + "]";
  }

  awaitable<fetched> fetch(const std::string& known_version, const fetch_limits& limits) override {
    // "<index>:<that source's version>"
    std::size_t held_from = sources_.size();
    std::string held_version;
    if (const std::size_t colon = known_version.find(':'); colon != std::string::npos) {
      std::size_t index = 0;
      const auto [end, ec] = std::from_chars(known_version.data(), known_version.data() + colon, index);
      if (ec == std::errc() && end == known_version.data() + colon && index < sources_.size()) {
        held_from = index;
        held_version = known_version.substr(colon + 1);
      }
    }
    std::string reasons;
    std::error_code last = remote_term_errc::fetch_failed;
    for (std::size_t i = 0; i < sources_.size(); ++i) {
      const std::string& known = i == held_from ? held_version : empty_;
      std::string failure;
      try {
        fetched f = co_await sources_[i]->fetch(known, limits);
        if (f.modified) f.version = std::to_string(i) + ":" + f.version;
        co_return f;
      } catch (const grove::error& e) {
        failure = e.what();
        last = e.code();
      } catch (const std::exception& e) {
        failure = sources_[i]->describe() + ": " + e.what();
        last = remote_term_errc::fetch_failed;
      }
      reasons += (reasons.empty() ? "" : "; ") + failure;
    }
    // One source's code when only one was asked; else "all failed".
    throw grove::error(sources_.size() == 1 ? last : std::error_code(remote_term_errc::fetch_failed),
                       "every source failed: " + reasons);
  }

private:
  std::vector<std::shared_ptr<term_fetcher>> sources_;
  const std::string empty_{};
};

} // namespace

std::shared_ptr<term_fetcher> fallback_fetcher(std::vector<std::shared_ptr<term_fetcher>> sources) {
  if (sources.empty()) throw grove::error(errc::invalid_argument, "fallback_fetcher: sources: empty (expected one or more fetchers)");
  for (std::size_t i = 0; i < sources.size(); ++i) {
    if (!sources[i]) {
      throw grove::error(errc::invalid_argument, "fallback_fetcher: sources[" + std::to_string(i) + "]: null (expected a fetcher)");
    }
  }
  return std::make_shared<fallback_source>(std::move(sources));
}

std::shared_ptr<term_fetcher> static_fetcher(std::string bytes, std::string version) {
  if (version.empty()) throw grove::error(errc::invalid_argument, "static_fetcher: version: empty (expected a non-empty text)");
  return std::make_shared<static_source>(std::move(bytes), std::move(version));
}

std::shared_ptr<term_fetcher> file_fetcher(std::filesystem::path file, file_version how) {
  if (file.empty()) throw grove::error(errc::invalid_argument, "file_fetcher: file: empty (expected a path)");
  return std::make_shared<file_source>(std::move(file), how);
}

} // namespace grove
