// grove/tenant/sqlite_store.hpp — tenant records in a SQLite file: the
// embedded default for durability.
//
//   grove::sqlite_tenant_store store("/var/lib/myservice/tenants.db");  // created if missing
//   auto [records, outbox] = store.load();
//
// Every commit is one transaction in WAL mode with synchronous=FULL: when
// commit() returns, the change is on disk and survives a crash of the
// program or of the machine. Opening refuses, with tenant_errc::store_refused
// naming the file, anything that is not a healthy grove tenant store:
// a file that is not SQLite, another program's database, a schema newer
// than this grove's, or a database that fails SQLite's quick_check. A
// refused file is never written to. A store is used from one thread at a
// time (the tenant_store contract); calls are serialised all the same.
#pragma once

#include <grove/tenant/store.hpp>

#include <chrono>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

struct sqlite3;

namespace grove {

struct sqlite_store_options {
  std::chrono::milliseconds busy_timeout = std::chrono::seconds(5); ///< how long a commit waits for another connection's lock (default 5 s)
};

class sqlite_tenant_store final : public tenant_store {
public:
  /// Opens `file`, creating it (and its schema) if it does not exist.
  /// Throws grove::error: store_refused (damaged, not a tenant store, newer
  /// schema, cannot be opened), invalid_argument (a bad option).
  explicit sqlite_tenant_store(std::filesystem::path file, sqlite_store_options options = {});
  ~sqlite_tenant_store() override;

  tenant_store_contents load() override;
  std::vector<std::uint64_t> commit(tenant_change change) override;
  void acknowledge(const std::vector<std::uint64_t>& sequences) override;
  std::string describe() const override;

  const std::filesystem::path& file() const noexcept { return file_; }

  /// The schema version this grove writes (SQLite's user_version).
  static constexpr int schema_version = 1;
  /// What marks a file as a grove tenant store (SQLite's application_id).
  static constexpr int application_id = 0x67727674; // "grvt"

private:
  class statement;
  class transaction;
  [[noreturn]] void refuse(const std::string& why) const;
  [[noreturn]] void fail(const std::string& doing) const;
  [[noreturn]] void fail(const std::string& doing, const std::string& why) const;
  void check_and_prepare();
  void close() noexcept;
  void create_schema();
  void execute(const char* sql, const char* doing);

  std::filesystem::path file_;
  std::mutex mutex_;
  sqlite3* db_ = nullptr;
  std::unique_ptr<statement> put_;
  std::unique_ptr<statement> erase_;
  std::unique_ptr<statement> append_;
  std::unique_ptr<statement> acknowledge_;
};

} // namespace grove
