// The store's snapshot file: one JSON document,
//   {"format":"groved-snapshot","version":1,"written_at":"...","keys":N,"wal_generation":G,"data":{key: value, ...}}
// (it holds every write-ahead log record of the generations before G; see wal.hpp)
// written to PATH.tmp, fsynced, renamed over PATH, and the directory fsynced,
// so a crash mid-write leaves the previous snapshot whole.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>

namespace groved {

class snapshot_error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

struct loaded_snapshot {
  nlohmann::json data;
  std::uint64_t wal_generation = 0; // 0: written before groved had a log
};

/// The data object, or nullopt when there is no file yet. Throws
/// snapshot_error for a file that cannot be read, is not a snapshot, or
/// nests deeper than `max_depth` (the document counts: a value stored by a
/// put within groved's max_depth always fits).
std::optional<loaded_snapshot> load_snapshot(const std::string& path, std::uint32_t max_depth);

/// A snapshot document's text (`name` says where it came from, for errors).
/// Throws snapshot_error as load_snapshot.
loaded_snapshot parse_snapshot(const std::string& text, const std::string& name, std::uint32_t max_depth);
/// The document write_snapshot writes, as text.
std::string snapshot_text(const nlohmann::json& data, std::uint64_t wal_generation);

/// Throws snapshot_error naming the step that failed (the old file stays).
void write_snapshot(const std::string& path, const nlohmann::json& data, std::uint64_t wal_generation);

} // namespace groved
