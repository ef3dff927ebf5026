#include "snapshot.hpp"

#include "file_io.hpp"

#include <grove/erps/json_codec.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iterator>

namespace groved {
namespace {

[[noreturn]] void fail(const std::string& what, const std::string& path) {
  throw snapshot_error(what + " '" + path + "': " + std::strerror(errno));
}

std::string utc_now() {
  const std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buffer[32];
  std::strftime(buffer, sizeof buffer, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buffer;
}

} // namespace

std::optional<loaded_snapshot> load_snapshot(const std::string& path, std::uint32_t max_depth) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (errno == ENOENT) return std::nullopt;
    fail("cannot open snapshot", path);
  }
  const std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  if (in.bad()) fail("cannot read snapshot", path);
  return parse_snapshot(text, "'" + path + "'", max_depth);
}

loaded_snapshot parse_snapshot(const std::string& text, const std::string& name, std::uint32_t max_depth) {
  nlohmann::json document;
  try {
    // The same reader and bound as a client's payload: a value deeper than
    // a put could have stored was not written by groved.
    document = grove::erps::read_json(text, grove::erps::decode_limits{max_depth}, "snapshot");
  } catch (const grove::erps::codec_error& e) {
    throw snapshot_error("snapshot " + name + " is not a snapshot groved wrote (truncated or edited?): " + e.what());
  }
  if (!document.is_object() || document.value("format", "") != "groved-snapshot" || !document.contains("data") ||
      !document["data"].is_object()) {
    throw snapshot_error(name + " is not a groved snapshot (expected {\"format\":\"groved-snapshot\",\"data\":{...}})");
  }
  if (document.value("version", 0) != 1) {
    throw snapshot_error("snapshot " + name + " has version " + document["version"].dump() + "; this groved reads version 1");
  }
  loaded_snapshot out;
  const auto generation = document.find("wal_generation");
  if (generation != document.end()) {
    if (!generation->is_number_unsigned()) {
      throw snapshot_error("snapshot " + name + ": wal_generation is " + generation->dump() + ", expected a count");
    }
    out.wal_generation = generation->get<std::uint64_t>();
  }
  out.data = std::move(document["data"]);
  return out;
}

std::string snapshot_text(const nlohmann::json& data, std::uint64_t wal_generation) {
  nlohmann::json document = nlohmann::json::object();
  document["format"] = "groved-snapshot";
  document["version"] = 1;
  document["written_at"] = utc_now();
  document["keys"] = data.size();
  document["wal_generation"] = wal_generation;
  document["data"] = data;
  return document.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

void write_snapshot(const std::string& path, const nlohmann::json& data, std::uint64_t wal_generation) {
  const std::string text = snapshot_text(data, wal_generation);

  const std::string temporary = path + ".tmp";
  const int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail("cannot create", temporary);
  if (const int e = write_all(fd, text.data(), text.size()); e != 0) {
    ::close(fd);
    ::unlink(temporary.c_str());
    errno = e;
    fail("cannot write", temporary);
  }
  if (::fsync(fd) != 0) {
    const int saved = errno;
    ::close(fd);
    ::unlink(temporary.c_str());
    errno = saved;
    fail("cannot fsync", temporary);
  }
  if (::close(fd) != 0) fail("cannot close", temporary);
  if (::rename(temporary.c_str(), path.c_str()) != 0) fail("cannot rename the snapshot into", path);
  // The rename itself is durable once the directory is synced.
  std::filesystem::path dir = std::filesystem::path(path).parent_path();
  if (dir.empty()) dir = ".";
  if (const int e = sync_directory(dir.string()); e != 0) {
    errno = e;
    fail("cannot fsync directory", dir.string());
  }
}

} // namespace groved
