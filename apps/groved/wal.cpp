#include "wal.hpp"

#include "file_io.hpp"
#include "snapshot.hpp"

#include <grove/core/process.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <unordered_map>

namespace groved {
namespace {

constexpr char magic[8] = {'G', 'R', 'V', 'W', 'A', 'L', '0', '1'};
constexpr std::size_t header_size = 16;
constexpr std::size_t record_header = 8;
constexpr std::uint8_t put_kind = 1;
constexpr std::uint8_t delete_kind = 2;
// No record groved writes comes near this (a value is at most max_payload,
// 1 GiB); a larger size is damage.
constexpr std::uint32_t max_body = (1u << 30) + (1u << 20);

void put_u32(std::string& out, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

std::uint32_t get_u32(const char* p) {
  std::uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

// CRC-32C (Castagnoli): the SSE4.2 instruction where the CPU has it (about
// 20 GB/s, where zlib's CRC-32 did 1-2), a table otherwise; same result.
std::array<std::uint32_t, 256> crc32c_table() {
  std::array<std::uint32_t, 256> t{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    t[i] = c;
  }
  return t;
}

std::uint32_t crc32c_portable(const char* data, std::size_t size) {
  static const std::array<std::uint32_t, 256> table = crc32c_table();
  std::uint32_t c = 0xFFFFFFFFu;
  for (std::size_t i = 0; i < size; ++i) c = table[(c ^ static_cast<unsigned char>(data[i])) & 0xff] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) std::uint32_t crc32c_sse42(const char* data, std::size_t size) {
  std::uint64_t c = 0xFFFFFFFFu;
  while (size >= 8) {
    std::uint64_t word;
    std::memcpy(&word, data, 8);
    c = __builtin_ia32_crc32di(c, word);
    data += 8;
    size -= 8;
  }
  auto c32 = static_cast<std::uint32_t>(c);
  while (size-- > 0) c32 = __builtin_ia32_crc32qi(c32, static_cast<unsigned char>(*data++));
  return c32 ^ 0xFFFFFFFFu;
}
#endif

std::uint32_t checksum(const char* data, std::size_t size) {
#if defined(__x86_64__)
  static const bool sse42 = __builtin_cpu_supports("sse4.2");
  if (sse42) return crc32c_sse42(data, size);
#endif
  return crc32c_portable(data, size);
}

std::string errno_text(int e) { return std::strerror(e); }

std::string file_name(std::uint64_t generation) {
  char name[32];
  std::snprintf(name, sizeof name, "%016llx.log", static_cast<unsigned long long>(generation));
  return name;
}

// The log directory synced, or wal_error.
void sync_log_directory(const std::string& directory) {
  if (const int e = sync_directory(directory); e != 0) {
    throw wal_error("cannot fsync the log directory '" + directory + "': " + errno_text(e));
  }
}

// A new log file with its header, synced, and its directory entry synced.
int create_log(const std::string& directory, std::uint64_t generation) {
  const std::string path = directory + "/" + file_name(generation);
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) throw wal_error("cannot create the log '" + path + "': " + errno_text(errno));
  std::string header(magic, sizeof magic);
  for (int i = 0; i < 8; ++i) header.push_back(static_cast<char>((generation >> (8 * i)) & 0xff));
  int error = write_all(fd, header.data(), header.size());
  if (error != 0 || ::fdatasync(fd) != 0) {
    if (error == 0) error = errno;
    ::close(fd);
    ::unlink(path.c_str());
    throw wal_error("cannot write the log '" + path + "': " + errno_text(error));
  }
  sync_log_directory(directory);
  return fd;
}

// Whether a record with a good checksum starts anywhere from `from` on.
bool good_record_after(const std::string& bytes, std::size_t from) {
  for (std::size_t at = from; at + record_header + 5 <= bytes.size(); ++at) {
    const std::uint32_t size = get_u32(bytes.data() + at);
    if (size < 5 || size > max_body || size > bytes.size() - at - record_header) continue;
    if (checksum(bytes.data() + at + record_header, size) == get_u32(bytes.data() + at + 4)) return true;
  }
  return false;
}

} // namespace

std::string_view to_string(durability d) noexcept {
  switch (d) {
    case durability::always: return "always";
    case durability::batch: return "batch";
    case durability::none: return "none";
  }
  return "always";
}

std::optional<durability> durability_from(std::string_view text) noexcept {
  if (text == "always") return durability::always;
  if (text == "batch") return durability::batch;
  if (text == "none") return durability::none;
  return std::nullopt;
}

std::uint32_t wal_checksum(std::string_view bytes) noexcept { return checksum(bytes.data(), bytes.size()); }

std::string wal_directory(const std::string& data_path) { return data_path + ".wal"; }

void encode_record(std::string& out, std::string_view key, const nlohmann::json* value) {
  const std::size_t start = out.size();
  out.append(record_header, '\0');
  out.push_back(static_cast<char>(value ? put_kind : delete_kind));
  put_u32(out, static_cast<std::uint32_t>(key.size()));
  out.append(key);
  if (value) nlohmann::json::to_msgpack(*value, nlohmann::detail::output_adapter<char>(out));
  const std::size_t body = out.size() - start - record_header;
  const std::uint32_t crc = checksum(out.data() + start + record_header, body);
  for (int i = 0; i < 4; ++i) out[start + i] = static_cast<char>((body >> (8 * i)) & 0xff);
  for (int i = 0; i < 4; ++i) out[start + 4 + i] = static_cast<char>((crc >> (8 * i)) & 0xff);
}

void replay_file(const std::string& path, bool lenient,
                 const std::function<void(std::string&&, std::optional<nlohmann::json>&&)>& apply, replay_stats& stats) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw wal_error("cannot open the log '" + path + "': " + errno_text(errno));
  std::string bytes;
  {
    char chunk[1 << 16];
    for (;;) {
      const ssize_t n = ::read(fd, chunk, sizeof chunk);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        const int saved = errno;
        ::close(fd);
        throw wal_error("cannot read the log '" + path + "': " + errno_text(saved));
      }
      if (n == 0) break;
      bytes.append(chunk, static_cast<std::size_t>(n));
    }
  }
  ::close(fd);
  ++stats.files;
  auto torn = [&](std::size_t offset) {
    ++stats.torn;
    stats.torn_at.push_back(path + " at offset " + std::to_string(offset));
  };
  // A file cut inside its header was being created when the crash came:
  // nothing in it was ever acknowledged.
  if (bytes.size() < header_size) {
    if (!bytes.empty() && std::memcmp(bytes.data(), magic, std::min(bytes.size(), sizeof magic)) != 0) {
      throw wal_error("'" + path + "' is not a groved log (bad header); not starting, so it is not overwritten");
    }
    if (!bytes.empty()) torn(0);
    return;
  }
  if (std::memcmp(bytes.data(), magic, sizeof magic) != 0) {
    throw wal_error("'" + path + "' is not a groved log (bad header); not starting, so it is not overwritten");
  }
  replay_records(bytes, header_size, path, lenient, apply, stats);
}

void replay_records(const std::string& bytes, std::size_t from, const std::string& name, bool lenient,
                    const std::function<void(std::string&&, std::optional<nlohmann::json>&&)>& apply,
                    replay_stats& stats) {
  auto torn = [&](std::size_t offset) {
    ++stats.torn;
    stats.torn_at.push_back(name + " at offset " + std::to_string(offset));
  };
  std::size_t at = from;
  while (at < bytes.size()) {
    const std::size_t left = bytes.size() - at;
    std::string why;
    std::uint32_t size = 0;
    if (left < record_header) {
      why = "cut inside a record header";
    } else {
      size = get_u32(bytes.data() + at);
      const std::uint32_t crc = get_u32(bytes.data() + at + 4);
      if (size > max_body || size > left - record_header) {
        why = size > max_body ? "a record size no record has" : "a record runs past the end of the file";
      } else {
        const char* body = bytes.data() + at + record_header;
        if (checksum(body, size) != crc) {
          why = "checksum mismatch";
        } else if (size < 5 || (body[0] != put_kind && body[0] != delete_kind) || get_u32(body + 1) > size - 5 ||
                   (body[0] == delete_kind && get_u32(body + 1) != size - 5)) {
          why = "a record that is not a put or a delete";
        } else {
          const std::uint32_t key_size = get_u32(body + 1);
          std::string key(body + 5, key_size);
          std::optional<nlohmann::json> value;
          if (body[0] == put_kind) {
            try {
              value = nlohmann::json::from_msgpack(body + 5 + key_size, body + size);
            } catch (const nlohmann::json::exception& e) {
              why = std::string("a value that does not decode (") + e.what() + ")";
            }
          }
          if (why.empty()) {
            apply(std::move(key), std::move(value));
            ++stats.records;
            at += record_header + size;
            continue;
          }
        }
      }
    }
    // A bad record is a torn write (a crash mid-append) when no good record
    // follows it; what follows a torn write is never acknowledged data.
    // A record whose size fits is searched past (its body is a client's
    // bytes); a size that does not fit may itself be the damage.
    const bool fits = left >= record_header && size <= max_body && size <= left - record_header;
    if (lenient || !good_record_after(bytes, fits ? at + record_header + size : at + 1)) {
      torn(at);
      return;
    }
    throw wal_error("the log '" + name + "' has a damaged record at offset " + std::to_string(at) + " (" + why +
                    ") with more records after it; not starting, so nothing is overwritten (move the file away to "
                    "start from what precedes it)");
  }
}

std::vector<std::pair<std::uint64_t, std::string>> log_files(const std::string& directory) {
  std::vector<std::pair<std::uint64_t, std::string>> out;
  std::error_code ec;
  if (!std::filesystem::is_directory(directory, ec)) return out;
  for (const auto& entry : std::filesystem::directory_iterator(directory, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.size() != 20 || name.substr(16) != ".log") continue;
    if (!std::all_of(name.begin(), name.begin() + 16, [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); })) {
      continue;
    }
    out.emplace_back(std::stoull(name.substr(0, 16), nullptr, 16), entry.path().string());
  }
  if (ec) throw wal_error("cannot list the log directory '" + directory + "': " + ec.message());
  std::sort(out.begin(), out.end());
  return out;
}

recovered_store recover_store(const std::string& data_path, std::uint32_t max_depth, bool lenient,
                              const std::function<bool(std::string_view)>& keep) {
  recovered_store r;
  if (std::optional<loaded_snapshot> s = load_snapshot(data_path, max_depth)) {
    r.snapshot_found = true;
    r.snapshot_generation = s->wal_generation;
    r.data = std::move(s->data);
    if (keep) {
      for (auto it = r.data.begin(); it != r.data.end();) {
        if (keep(it.key())) ++it;
        else it = r.data.erase(it);
      }
    }
  }
  r.next_generation = std::max<std::uint64_t>(1, r.snapshot_generation);
  for (const auto& [generation, path] : log_files(wal_directory(data_path))) {
    r.next_generation = std::max(r.next_generation, generation + 1);
    if (generation < r.snapshot_generation) continue; // held by the snapshot; removed at the next one
    replay_file(path, lenient, [&](std::string&& key, std::optional<nlohmann::json>&& value) {
      if (keep && !keep(key)) return;
      if (value) r.data[key] = std::move(*value);
      else r.data.erase(key);
    }, r.replay);
  }
  return r;
}

// --- write_ahead_log --------------------------------------------------------

write_ahead_log::write_ahead_log(options o, logger log)
    : options_(std::move(o)), log_(log), failed_(options_.shards), generation_(options_.generation) {
  last_sync_ = std::chrono::steady_clock::now();
  if (options_.remote) return; // no file: the records go to the remote
  std::error_code ec;
  std::filesystem::create_directories(options_.directory, ec);
  if (ec) throw wal_error("cannot create the log directory '" + options_.directory + "': " + ec.message());
  fd_ = create_log(options_.directory, generation_);
  good_size_ = header_size;
  last_sync_ = std::chrono::steady_clock::now();
  // The thread starts with the first append (a tenant that never writes holds none).
}

void write_ahead_log::start_thread() {
  // The one before ended (it set running_ false as its last step under the lock).
  if (thread_.joinable()) thread_.join();
  running_ = true;
  thread_ = std::thread([this] { run(); });
}

bool write_ahead_log::thread_running() const {
  std::lock_guard lock(mutex_);
  return running_;
}

bool write_ahead_log::wait_thread_ended(std::chrono::milliseconds limit) {
  std::unique_lock lock(mutex_);
  return written_.wait_for(lock, limit, [&] { return !running_; });
}

write_ahead_log::~write_ahead_log() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  room_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (fd_ >= 0) {
    if (unsynced_ && ::fdatasync(fd_) != 0) {
      log_.log(log_level::error, "wal_sync_failed", {{"msg", "the log's last writes may not be on disk: " + errno_text(errno)}});
    }
    ::close(fd_);
  }
}

std::uint64_t write_ahead_log::append(std::size_t shard, const grove::pid& owner, std::string_view key,
                                      const nlohmann::json* value) {
  std::unique_lock lock(mutex_);
  if (buffer_.size() >= options_.max_queued_bytes && !stopping_) {
    // The disk is slower than the writes coming in: hold this shard (and
    // so its clients) until the log thread takes the queue.
    ++counters_.stalls;
    room_.wait(lock, [&] { return buffer_.size() < options_.max_queued_bytes || stopping_ || broken_; });
  }
  if (broken_ || !failed_[shard].empty()) return 0;
  encode_record(buffer_, key, value);
  const std::uint64_t lsn = next_lsn_++;
  queue_.push_back({shard, owner, lsn, buffer_.size()});
  const bool first = queue_.size() == 1;
  if (!running_) start_thread();
  lock.unlock();
  if (first) wake_.notify_one();
  return lsn;
}

void write_ahead_log::reset(std::size_t shard) {
  std::lock_guard lock(mutex_);
  failed_[shard].clear();
}

std::string write_ahead_log::error(std::size_t shard) const {
  std::lock_guard lock(mutex_);
  if (broken_) return broken_reason_;
  return failed_[shard];
}

bool write_ahead_log::flush() {
  std::unique_lock lock(mutex_);
  const std::uint64_t target = next_lsn_ - 1;
  const std::uint64_t failures = failed_flushes_;
  wake_.notify_one();
  written_.wait(lock, [&] { return written_lsn_ >= target || stopping_; });
  return failed_flushes_ == failures && !broken_;
}

void write_ahead_log::rotate(std::uint64_t next) {
  if (options_.remote) {
    std::lock_guard file(file_mutex_); // (after the round being stored, if any)
    std::lock_guard lock(mutex_);
    generation_ = next;
    return;
  }
  const int fd = create_log(options_.directory, next);
  std::lock_guard file(file_mutex_);
  if (::fdatasync(fd_) != 0) {
    // What was written is still in the old file; only its sync failed.
    log_.log(log_level::error, "wal_sync_failed", {{"msg", "syncing the log before rotating it: " + errno_text(errno)}});
  }
  ::close(fd_);
  fd_ = fd;
  good_size_ = header_size;
  unsynced_ = false;
  std::lock_guard lock(mutex_);
  generation_ = next;
}

std::uint64_t write_ahead_log::generation() const {
  std::lock_guard lock(mutex_);
  return generation_;
}

void write_ahead_log::remove_before(std::uint64_t generation) {
  if (options_.remote) return; // the remote's owner drops what a snapshot holds
  bool removed = false;
  for (const auto& [g, path] : log_files(options_.directory)) {
    if (g >= generation) continue;
    if (::unlink(path.c_str()) != 0) {
      log_.log(log_level::warning, "wal_remove_failed", {{"path", path}, {"msg", errno_text(errno)}});
    } else {
      removed = true;
    }
  }
  if (removed) {
    // A failure is harmless: a removed file that comes back is older than the snapshot and skipped.
    (void)sync_directory(options_.directory);
  }
}

write_ahead_log::counters write_ahead_log::stats() const {
  std::lock_guard lock(mutex_);
  return counters_;
}

// Drops what the failed shards still have queued, and tells each of them.
std::uint64_t write_ahead_log::fail_shards(std::vector<queued>& round, const std::string& why) {
  std::uint64_t last = round.empty() ? 0 : round.back().lsn;
  std::unordered_map<std::size_t, grove::pid> owners;
  for (const auto& q : round) {
    failed_[q.shard] = why;
    owners[q.shard] = q.owner;
  }
  if (!queue_.empty()) {
    std::string kept;
    std::vector<queued> kept_queue;
    std::size_t begin = 0;
    for (const auto& q : queue_) {
      if (failed_[q.shard].empty()) {
        kept.append(buffer_, begin, q.end - begin);
        kept_queue.push_back({q.shard, q.owner, q.lsn, kept.size()});
      } else {
        owners[q.shard] = q.owner;
        last = std::max(last, q.lsn);
      }
      begin = q.end;
    }
    buffer_ = std::move(kept);
    queue_ = std::move(kept_queue);
  }
  for (const auto& [shard, owner] : owners) grove::send(owner, wal_done{0, why});
  return last;
}

void write_ahead_log::run() {
  std::string writing;
  std::vector<queued> round;
  for (;;) {
    {
      std::unique_lock lock(mutex_);
      const bool sync_pending = options_.mode == durability::batch && unsynced_;
      auto ready = [&] { return stopping_ || !queue_.empty(); };
      if (sync_pending) {
        wake_.wait_until(lock, last_sync_ + options_.batch_interval, ready);
      } else if (!wake_.wait_for(lock, options_.idle_exit, ready)) {
        // Nothing to write or sync for a while: end, and let the next append start a thread.
        running_ = false;
        written_.notify_all();
        return;
      }
      if (queue_.empty() && stopping_) {
        running_ = false;
        return;
      }
      writing.swap(buffer_);
      buffer_.clear();
      round.swap(queue_);
      queue_.clear();
    }
    room_.notify_all();
    std::string failure;
    if (options_.remote) {
      std::lock_guard file(file_mutex_);
      bool broken = false;
      if (!writing.empty()) {
        std::uint64_t generation = 0;
        {
          std::lock_guard lock(mutex_);
          generation = generation_;
        }
        failure = options_.remote->store(writing, generation, broken);
      }
      if (!failure.empty() && broken) {
        std::lock_guard lock(mutex_);
        broken_ = true;
        broken_reason_ = failure + "; no more writes are taken until groved restarts";
      }
    } else {
      std::lock_guard file(file_mutex_);
      const int error = writing.empty() ? 0 : write_all(fd_, writing.data(), writing.size());
      if (error != 0) {
        failure = "cannot write the log: " + errno_text(error);
      } else if (!writing.empty() && options_.mode == durability::always && ::fdatasync(fd_) != 0) {
        failure = "cannot fdatasync the log: " + errno_text(errno);
      }
      if (failure.empty()) {
        good_size_ += writing.size();
        if (!writing.empty() && options_.mode != durability::always) unsynced_ = true;
        const auto now = std::chrono::steady_clock::now();
        if (options_.mode == durability::always) {
          last_sync_ = now;
        } else if (options_.mode == durability::batch && unsynced_ && now - last_sync_ >= options_.batch_interval) {
          if (::fdatasync(fd_) != 0) {
            // The replies are out: say loudly that the last interval may not be on disk.
            log_.log(log_level::error, "wal_sync_failed",
                     {{"msg", "acknowledged writes of the last batch interval may be lost on power failure: " +
                                  errno_text(errno)}});
          } else {
            std::lock_guard lock(mutex_);
            ++counters_.syncs;
          }
          unsynced_ = false;
          last_sync_ = now;
        }
      } else if (::ftruncate(fd_, static_cast<off_t>(good_size_)) != 0) {
        // The file may hold part of a record: nothing may follow it.
        std::lock_guard lock(mutex_);
        broken_ = true;
        broken_reason_ = failure + "; cutting the log back failed too (" + errno_text(errno) +
                         "), so no more writes are taken until groved restarts";
      }
    }
    std::unique_lock lock(mutex_);
    if (failure.empty()) {
      if (failing_since_ != 0 && !round.empty()) {
        log_.log(log_level::warning, "wal_write_recovered",
                 {{"failed_rounds", counters_.failures - failing_since_ + 1}, {"msg", "the log takes writes again"}});
        failing_since_ = 0;
      }
      counters_.records += round.size();
      counters_.bytes += writing.size();
      if (options_.mode == durability::always && !writing.empty()) ++counters_.syncs;
      written_lsn_ = round.empty() ? written_lsn_ : round.back().lsn;
      if (options_.mode != durability::none) {
        // One message per shard: its last record of the round.
        std::unordered_map<std::size_t, std::pair<grove::pid, std::uint64_t>> last;
        for (const auto& q : round) last[q.shard] = {q.owner, q.lsn};
        lock.unlock();
        for (const auto& [shard, done] : last) grove::send(done.first, wal_done{done.second, {}});
        lock.lock();
      }
    } else {
      ++counters_.failures;
      ++failed_flushes_;
      // One line when writes start failing (and when they work again), not one per round.
      if (failing_since_ == 0 || broken_) {
        log_.log(log_level::error, "wal_write_failed",
                 {{"msg", broken_ ? broken_reason_
                                  : failure + "; writes are refused with storage_error until the log takes them again"},
                  {"records", round.size()}});
      }
      failing_since_ = failing_since_ == 0 ? counters_.failures : failing_since_;
      std::uint64_t last = round.empty() ? 0 : round.back().lsn;
      if (options_.mode != durability::none) last = fail_shards(round, broken_ ? broken_reason_ : failure);
      written_lsn_ = std::max(written_lsn_, last);
      // With "none" the replies are out: the log says what was lost.
    }
    written_.notify_all();
    round.clear();
    writing.clear();
  }
}

} // namespace groved
