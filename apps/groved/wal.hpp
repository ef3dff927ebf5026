// groved's write-ahead log: every change to the store, as the state it left
// (a key's new value, or its deletion), appended before the change is
// acknowledged. The log sits beside the snapshot, in the directory
// `<data_path>.wal/`, one file per generation:
//
//   <data_path>.wal/0000000000000007.log
//     header  "GRVWAL01" u64-le generation                      (16 bytes)
//     record  u32-le body size, u32-le CRC-32C of the body, body
//     body    u8 kind (1 put, 2 delete), u32-le key size, key,
//             and for a put the value as MessagePack
//
// A snapshot written with generation N holds every record of the files
// before N (its "wal_generation" field); those files are then removed.
// Records hold states, not operations (an incr is logged as the counter's
// new value), so replaying a record the snapshot already holds changes
// nothing; start-up loads the snapshot and replays the files from N on.
//
// Group commit: one thread per store writes whatever the shards appended
// since its last write in one write(2) and, with durability "always", one
// fdatasync(2), then tells each shard how far its records are stored.
#pragma once

#include "logger.hpp"

#include <grove/core/pid.hpp>

#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace groved {

/// When an acknowledged write is on disk.
enum class durability : std::uint8_t {
  always, // the reply waits for fdatasync: survives kill -9 and power loss
  batch,  // the reply waits for write(2); fdatasync at most every interval: survives kill -9,
          // power loss can take the last interval's writes
  none,   // the reply does not wait; written soon after, never synced by groved
};

std::string_view to_string(durability d) noexcept;
std::optional<durability> durability_from(std::string_view text) noexcept;

class wal_error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// Sent by the log's thread to a shard: its records up to `upto` are stored
/// (`error` empty), or a write failed and every record of that shard not yet
/// reported stored was dropped (`error` says why).
struct wal_done {
  std::uint64_t upto = 0;
  std::string error;
};

/// A record body's checksum: CRC-32C.
std::uint32_t wal_checksum(std::string_view bytes) noexcept;

/// The log directory of a snapshot path.
std::string wal_directory(const std::string& data_path);

/// One record as bytes (header included). `value` null: a delete.
void encode_record(std::string& out, std::string_view key, const nlohmann::json* value);

/// What a replay found. A torn record is the last one of a file, cut short
/// or with a bad checksum (a crash mid-write); it is dropped and counted.
struct replay_stats {
  std::size_t files = 0;
  std::size_t records = 0;
  std::size_t torn = 0;
  std::vector<std::string> torn_at; // "file at offset N", one per torn record
};

/// Replays records (no file header) from `bytes`, as replay_file does a
/// file's; `name` says where they came from in errors.
void replay_records(const std::string& bytes, std::size_t from, const std::string& name, bool lenient,
                    const std::function<void(std::string&&, std::optional<nlohmann::json>&&)>& apply,
                    replay_stats& stats);

/// Replays one log file in order. A damaged record followed by more data
/// throws wal_error naming the file and the offset; with `lenient` it ends
/// the file instead (a file another thread may be appending to).
void replay_file(const std::string& path, bool lenient,
                 const std::function<void(std::string&&, std::optional<nlohmann::json>&&)>& apply, replay_stats& stats);

/// The log files of `directory` with their generations, oldest first.
std::vector<std::pair<std::uint64_t, std::string>> log_files(const std::string& directory);

/// The store as the disk holds it: the snapshot, then every log file from
/// the snapshot's generation on. `keep` filters keys (a restarted shard
/// takes its own). Throws snapshot_error or wal_error.
struct recovered_store {
  nlohmann::json data = nlohmann::json::object();
  bool snapshot_found = false;
  std::uint64_t snapshot_generation = 0;
  std::uint64_t next_generation = 1; // for the log this run writes
  replay_stats replay;
};
recovered_store recover_store(const std::string& data_path, std::uint32_t max_depth, bool lenient,
                              const std::function<bool(std::string_view)>& keep = {});

/// Where a store's log goes instead of a file: a clustered groved's etcd
/// (cluster.hpp). Called on the log's thread; may block it.
class wal_remote {
public:
  virtual ~wal_remote() = default;
  /// Stores one round of whole records of log generation `generation`,
  /// durably: "" once stored, else why not (then nothing of the round is
  /// kept, or `broken` says it could not be taken back).
  virtual std::string store(std::string_view records, std::uint64_t generation, bool& broken) = 0;
};

/// The log of one store.
class write_ahead_log {
public:
  struct options {
    std::string directory;
    std::uint64_t generation = 1;
    durability mode = durability::always;
    std::chrono::milliseconds batch_interval{10};
    std::size_t shards = 1;
    /// Appends wait (a write stall) while this much is queued and not yet written.
    std::size_t max_queued_bytes = 64u << 20;
    /// The log's thread starts with the first append, ends after this long
    /// without work, and the next append starts it again: an idle tenant's
    /// log holds no thread.
    std::chrono::milliseconds idle_exit{2000};
    /// Records go there instead of to files in `directory` (none is made;
    /// rotate() only counts generations, remove_before() does nothing).
    /// Every mode but none waits for it.
    std::shared_ptr<wal_remote> remote{};
  };

  /// Creates the directory and the generation's file (synced). Throws wal_error.
  write_ahead_log(options o, logger log);
  ~write_ahead_log(); // writes what is queued, syncs, stops the thread
  write_ahead_log(const write_ahead_log&) = delete;
  write_ahead_log& operator=(const write_ahead_log&) = delete;

  durability mode() const noexcept { return options_.mode; }

  /// Queues a record of shard `shard` (process `owner` gets wal_done);
  /// its sequence number, or 0 when the shard's records are being refused
  /// after a failed write (error() says why) until reset(shard).
  std::uint64_t append(std::size_t shard, const grove::pid& owner, std::string_view key, const nlohmann::json* value);
  /// The shard has undone its failed writes; its records are taken again.
  void reset(std::size_t shard);
  std::string error(std::size_t shard) const;

  /// Blocks until everything appended before the call is written (and
  /// synced, with "always"). False if a write failed meanwhile.
  bool flush();

  /// Starts generation `next` (a new, synced file): records appended after
  /// this returns go there. Throws wal_error (the old file stays in use).
  void rotate(std::uint64_t next);
  std::uint64_t generation() const;
  /// Removes the files of generations before `generation` (a snapshot holds them).
  void remove_before(std::uint64_t generation);

  /// Bytes and records written, fdatasync calls (for stats and benches).
  struct counters {
    std::uint64_t records = 0;
    std::uint64_t bytes = 0;
    std::uint64_t syncs = 0;
    std::uint64_t failures = 0;
    std::uint64_t stalls = 0; // appends that waited for the queue to drain
  };
  counters stats() const;
  /// Whether the log's thread is running (it ends when idle; for tests).
  bool thread_running() const;
  /// Waits until the thread has ended by itself, at most `limit`; false if it still runs (for tests).
  bool wait_thread_ended(std::chrono::milliseconds limit);

private:
  struct queued {
    std::size_t shard;
    grove::pid owner;
    std::uint64_t lsn;
    std::size_t end; // offset in the buffer just past this record
  };
  void run();
  void start_thread(); // with mutex_ held
  std::uint64_t fail_shards(std::vector<queued>& round, const std::string& why);

  options options_;
  logger log_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable written_;
  std::condition_variable room_;
  std::string buffer_;
  std::vector<queued> queue_;
  std::vector<std::string> failed_; // per shard: why its records are refused ("" when taken)
  std::uint64_t next_lsn_ = 1;
  std::uint64_t written_lsn_ = 0;   // everything up to this is done (stored or failed)
  std::uint64_t failed_flushes_ = 0; // bumped on every failed write
  bool stopping_ = false;
  bool running_ = false; // the thread is in run() (it ends when idle)
  bool broken_ = false; // a failed write could not be cut back: nothing more is taken
  std::string broken_reason_;
  std::uint64_t failing_since_ = 0; // the failure count when the current run of failures began
  counters counters_;

  std::mutex file_mutex_; // the file: the thread's writes, rotate()
  int fd_ = -1;
  std::uint64_t generation_;
  std::uint64_t good_size_ = 0; // the file's size after the last good write
  std::atomic<bool> unsynced_{false}; // read by the thread's wait, written under file_mutex_
  std::chrono::steady_clock::time_point last_sync_;
  std::thread thread_;
};

} // namespace groved
