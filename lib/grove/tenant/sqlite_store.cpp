#include <grove/tenant/sqlite_store.hpp>

#include <sqlite3.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <string_view>
#include <utility>

namespace grove {

namespace {

std::int64_t micros(tenant_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
}

tenant_clock::time_point from_micros(std::int64_t us) {
  return tenant_clock::time_point(std::chrono::duration_cast<tenant_clock::duration>(std::chrono::microseconds(us)));
}

/// The first bytes of every SQLite database file.
constexpr std::string_view sqlite_magic{"SQLite format 3\0", 16};

/// An existing, non-empty file that does not start as a SQLite database:
/// refused before SQLite opens it at all.
bool foreign_file(const std::filesystem::path& file) {
  std::error_code ec;
  if (!std::filesystem::exists(file, ec) || std::filesystem::file_size(file, ec) == 0) return false;
  std::ifstream in(file, std::ios::binary);
  char head[16] = {};
  in.read(head, sizeof head);
  return in.gcount() < static_cast<std::streamsize>(sizeof head) || std::string_view(head, sizeof head) != sqlite_magic;
}

constexpr const char* schema_sql = R"sql(
CREATE TABLE tenants (
  id BLOB PRIMARY KEY NOT NULL,
  state TEXT NOT NULL,
  config TEXT NOT NULL,
  capabilities TEXT NOT NULL,
  generation INTEGER NOT NULL,
  last_error TEXT NOT NULL,
  snapshot TEXT,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE outbox (
  sequence INTEGER PRIMARY KEY AUTOINCREMENT,
  tenant BLOB NOT NULL,
  kind TEXT NOT NULL,
  ok INTEGER NOT NULL,
  error TEXT NOT NULL,
  generation INTEGER NOT NULL,
  at INTEGER NOT NULL
);
)sql";

} // namespace

/// A prepared statement: bound, stepped and reset in place.
class sqlite_tenant_store::statement {
public:
  statement(sqlite3* db, const char* sql) {
    if (sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr) != SQLITE_OK) stmt_ = nullptr;
  }
  ~statement() { sqlite3_finalize(stmt_); }
  statement(const statement&) = delete;
  statement& operator=(const statement&) = delete;

  bool ok() const noexcept { return stmt_ != nullptr; }
  sqlite3_stmt* get() const noexcept { return stmt_; }

  void bind(int i, std::string_view text) { check(sqlite3_bind_text(stmt_, i, text.data(), size(text), SQLITE_TRANSIENT)); }
  void bind_blob(int i, std::string_view bytes) {
    check(sqlite3_bind_blob(stmt_, i, bytes.data(), size(bytes), SQLITE_TRANSIENT));
  }
  void bind(int i, std::int64_t v) { check(sqlite3_bind_int64(stmt_, i, v)); }
  void bind_null(int i) { check(sqlite3_bind_null(stmt_, i)); }

  /// Steps once: true for a row, false when done.
  bool step() {
    const int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    error_ = rc;
    return false;
  }
  int error() const noexcept { return error_; }
  void reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
    error_ = SQLITE_OK;
  }

  std::string text(int column) const {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_blob(stmt_, column));
    return p ? std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(stmt_, column))) : std::string();
  }
  std::int64_t integer(int column) const { return sqlite3_column_int64(stmt_, column); }
  bool is_null(int column) const { return sqlite3_column_type(stmt_, column) == SQLITE_NULL; }

private:
  static int size(std::string_view s) { return static_cast<int>(s.size()); }
  void check(int rc) {
    if (rc != SQLITE_OK && error_ == SQLITE_OK) error_ = rc;
  }

  sqlite3_stmt* stmt_ = nullptr;
  int error_ = SQLITE_OK;
};

/// BEGIN IMMEDIATE .. COMMIT; rolled back if left by an exception.
class sqlite_tenant_store::transaction {
public:
  explicit transaction(sqlite_tenant_store& store) : store_(store) {
    if (sqlite3_exec(store_.db_, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) != SQLITE_OK) {
      store_.fail("starting a transaction");
    }
  }
  ~transaction() {
    if (!done_) sqlite3_exec(store_.db_, "ROLLBACK", nullptr, nullptr, nullptr);
  }
  transaction(const transaction&) = delete;
  transaction& operator=(const transaction&) = delete;

  /// Runs a bound statement to its end, and resets it for the next use.
  void run(statement& s, const char* doing) {
    s.step();
    const bool failed = s.error() != SQLITE_OK;
    const std::string why = failed ? sqlite3_errmsg(store_.db_) : std::string();
    s.reset();
    if (failed) store_.fail(doing, why);
  }
  void commit() {
    if (sqlite3_exec(store_.db_, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK) store_.fail("committing");
    done_ = true;
  }

private:
  sqlite_tenant_store& store_;
  bool done_ = false;
};

sqlite_tenant_store::sqlite_tenant_store(std::filesystem::path file, sqlite_store_options options)
    : file_(std::move(file)) {
  if (options.busy_timeout < std::chrono::milliseconds::zero()) {
    throw grove::error(errc::invalid_argument, "sqlite_store_options.busy_timeout: " +
                                                   std::to_string(options.busy_timeout.count()) +
                                                   " ms (expected >= 0)");
  }
  if (foreign_file(file_)) refuse("not a SQLite database (another kind of file, or a damaged one)");
  const int rc = sqlite3_open_v2(file_.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                                 nullptr);
  if (rc != SQLITE_OK) {
    const std::string why = db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
    close();
    refuse("cannot open it: " + why);
  }
  sqlite3_extended_result_codes(db_, 1);
  sqlite3_busy_timeout(db_, static_cast<int>(options.busy_timeout.count()));
  try {
    check_and_prepare();
  } catch (...) {
    close();
    throw;
  }
}

sqlite_tenant_store::~sqlite_tenant_store() { close(); }

void sqlite_tenant_store::close() noexcept {
  put_.reset(); // statements first: a connection with statements left does not close
  erase_.reset();
  append_.reset();
  acknowledge_.reset();
  sqlite3_close(db_);
  db_ = nullptr;
}

std::string sqlite_tenant_store::describe() const { return "sqlite " + file_.string(); }

void sqlite_tenant_store::refuse(const std::string& why) const {
  throw grove::error(tenant_errc::store_refused, "tenant store " + file_.string() + ": " + why + "; left untouched");
}

void sqlite_tenant_store::fail(const std::string& doing) const { fail(doing, sqlite3_errmsg(db_)); }

void sqlite_tenant_store::fail(const std::string& doing, const std::string& why) const {
  throw grove::error(tenant_errc::store_failed, "tenant store " + file_.string() + ": " + doing + " failed: " + why);
}

void sqlite_tenant_store::execute(const char* sql, const char* doing) {
  char* message = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &message) != SQLITE_OK) {
    std::string why = message ? message : sqlite3_errmsg(db_);
    sqlite3_free(message);
    fail(doing, why);
  }
}

/// Reads what the file says it is, before anything is written to it.
void sqlite_tenant_store::check_and_prepare() {
  auto read_int = [&](const char* sql, std::int64_t& out) -> bool {
    statement s(db_, sql);
    if (!s.ok() || !s.step()) return false;
    out = s.integer(0);
    return true;
  };
  std::int64_t app = 0;
  std::int64_t version = 0;
  std::int64_t objects = 0;
  if (!read_int("PRAGMA application_id", app) || !read_int("PRAGMA user_version", version) ||
      !read_int("SELECT count(*) FROM sqlite_master", objects)) {
    refuse(std::string("cannot be read as a SQLite database: ") + sqlite3_errmsg(db_));
  }
  const bool fresh = app == 0 && version == 0 && objects == 0;
  if (!fresh) {
    if (app != application_id) refuse("a SQLite database of another program (no grove tenant store mark)");
    if (version > schema_version) {
      refuse("written by a newer grove (schema " + std::to_string(version) + ", this one reads up to " +
             std::to_string(schema_version) + ")");
    }
    if (version < 1) refuse("an incomplete tenant store (schema version " + std::to_string(version) + ")");
    // quick_check says "ok", or lists problems (the first few say enough).
    statement check(db_, "PRAGMA quick_check(4)");
    if (!check.ok() || !check.step()) refuse(std::string("damaged: ") + sqlite3_errmsg(db_));
    std::string verdict = check.text(0);
    if (verdict != "ok") {
      while (check.step()) verdict += "\n" + check.text(0);
      std::replace(verdict.begin(), verdict.end(), '\n', ';'); // one line, for logs
      refuse("damaged (SQLite's quick_check: " + verdict + ")");
    }
  }
  // From here on the file is ours (or new): WAL, and a sync at every commit.
  {
    statement wal(db_, "PRAGMA journal_mode=WAL");
    if (!wal.ok() || !wal.step() || wal.text(0) != "wal") fail("switching to WAL mode");
  }
  execute("PRAGMA synchronous=FULL", "asking for synchronous commits");
  if (fresh) create_schema();

  put_ = std::make_unique<statement>(
      db_,
      "INSERT OR REPLACE INTO tenants (id, state, config, capabilities, generation, last_error, snapshot, "
      "created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)");
  erase_ = std::make_unique<statement>(db_, "DELETE FROM tenants WHERE id = ?1");
  append_ = std::make_unique<statement>(
      db_, "INSERT INTO outbox (tenant, kind, ok, error, generation, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)");
  acknowledge_ = std::make_unique<statement>(db_, "DELETE FROM outbox WHERE sequence = ?1");
  if (!put_->ok() || !erase_->ok() || !append_->ok() || !acknowledge_->ok()) {
    refuse(std::string("its tables are not a tenant store's: ") + sqlite3_errmsg(db_));
  }
}

void sqlite_tenant_store::create_schema() {
  transaction t(*this);
  execute(schema_sql, "creating the schema");
  execute(("PRAGMA application_id=" + std::to_string(application_id)).c_str(), "marking the file");
  execute(("PRAGMA user_version=" + std::to_string(schema_version)).c_str(), "marking the file");
  t.commit();
}

tenant_store_contents sqlite_tenant_store::load() {
  std::lock_guard lock(mutex_);
  tenant_store_contents contents;
  statement records(db_,
                    "SELECT id, state, config, capabilities, generation, last_error, snapshot, created_at, updated_at "
                    "FROM tenants ORDER BY id");
  if (!records.ok()) fail("reading the tenants");
  while (records.step()) {
    tenant_record r;
    r.id = records.text(0);
    const std::string state = records.text(1);
    const auto parsed = parse_tenant_state(state);
    auto damaged = [&](const std::string& what) {
      throw grove::error(tenant_errc::store_failed,
                         "tenant store " + file_.string() + ": the record of tenant '" + r.id + "' is damaged: " + what);
    };
    if (!parsed) damaged("unknown state '" + state + "'");
    r.state = *parsed;
    r.config = nlohmann::json::parse(records.text(2), nullptr, false);
    r.capabilities = nlohmann::json::parse(records.text(3), nullptr, false);
    if (!r.config.is_object()) damaged("config is not a JSON object");
    if (!r.capabilities.is_array()) damaged("capabilities is not a JSON array");
    r.generation = static_cast<std::uint64_t>(records.integer(4));
    r.last_error = records.text(5);
    if (!records.is_null(6)) {
      r.snapshot = nlohmann::json::parse(records.text(6), nullptr, false);
      if (r.snapshot->is_discarded()) damaged("snapshot is not JSON");
    }
    r.created_at = from_micros(records.integer(7));
    r.updated_at = from_micros(records.integer(8));
    contents.records.push_back(std::move(r));
  }
  if (records.error() != SQLITE_OK) fail("reading the tenants");

  statement outbox(db_, "SELECT sequence, tenant, kind, ok, error, generation, at FROM outbox ORDER BY sequence");
  if (!outbox.ok()) fail("reading the outbox");
  while (outbox.step()) {
    tenant_event e;
    e.sequence = static_cast<std::uint64_t>(outbox.integer(0));
    e.tenant = outbox.text(1);
    const std::string kind = outbox.text(2);
    const auto parsed = parse_tenant_event_kind(kind);
    if (!parsed) {
      throw grove::error(tenant_errc::store_failed, "tenant store " + file_.string() + ": outbox event " +
                                                        std::to_string(e.sequence) + " is damaged: unknown kind '" +
                                                        kind + "'");
    }
    e.kind = *parsed;
    e.ok = outbox.integer(3) != 0;
    e.error = outbox.text(4);
    e.generation = static_cast<std::uint64_t>(outbox.integer(5));
    e.at = from_micros(outbox.integer(6));
    contents.outbox.push_back(std::move(e));
  }
  if (outbox.error() != SQLITE_OK) fail("reading the outbox");
  return contents;
}

std::vector<std::uint64_t> sqlite_tenant_store::commit(tenant_change change) {
  if (change.put) check_tenant_id(change.put->id);
  // Serialised before the transaction: a value nlohmann cannot write (invalid
  // UTF-8) fails the commit with nothing applied.
  std::string config;
  std::string capabilities;
  std::optional<std::string> snapshot;
  if (change.put) {
    try {
      config = change.put->config.dump();
      capabilities = change.put->capabilities.dump();
      if (change.put->snapshot) snapshot = change.put->snapshot->dump();
    } catch (const nlohmann::json::exception& e) {
      throw grove::error(tenant_errc::store_failed, "tenant store " + file_.string() + ": the record of tenant '" +
                                                        change.put->id + "' cannot be written as JSON: " + e.what());
    }
  }

  std::lock_guard lock(mutex_);
  transaction t(*this);
  if (change.erase) {
    erase_->bind_blob(1, *change.erase);
    t.run(*erase_, "erasing a record");
  }
  if (change.put) {
    const tenant_record& r = *change.put;
    put_->bind_blob(1, r.id);
    put_->bind(2, to_string(r.state));
    put_->bind(3, config);
    put_->bind(4, capabilities);
    put_->bind(5, static_cast<std::int64_t>(r.generation));
    put_->bind(6, r.last_error);
    if (snapshot) {
      put_->bind(7, *snapshot);
    } else {
      put_->bind_null(7);
    }
    put_->bind(8, micros(r.created_at));
    put_->bind(9, micros(r.updated_at));
    t.run(*put_, "writing a record");
  }
  std::vector<std::uint64_t> sequences;
  sequences.reserve(change.events.size());
  for (const tenant_event& e : change.events) {
    append_->bind_blob(1, e.tenant);
    append_->bind(2, to_string(e.kind));
    append_->bind(3, std::int64_t{e.ok ? 1 : 0});
    append_->bind(4, e.error);
    append_->bind(5, static_cast<std::int64_t>(e.generation));
    append_->bind(6, micros(e.at));
    t.run(*append_, "appending an event");
    sequences.push_back(static_cast<std::uint64_t>(sqlite3_last_insert_rowid(db_)));
  }
  t.commit();
  return sequences;
}

void sqlite_tenant_store::acknowledge(const std::vector<std::uint64_t>& sequences) {
  if (sequences.empty()) return;
  std::lock_guard lock(mutex_);
  transaction t(*this);
  for (std::uint64_t s : sequences) {
    acknowledge_->bind(1, static_cast<std::int64_t>(s));
    t.run(*acknowledge_, "acknowledging events");
  }
  t.commit();
}

} // namespace grove
