#include <grove/tenant/sqlite_store.hpp>

#include "../readme_check.hpp"
#include "../temp_dir.hpp"
#include "sigkill_child.hpp"

#include <doctest/doctest.h>
#include <sqlite3.h>


#include <chrono>
#include <cstdint>
#include <fstream>
#include <functional>
#include <iterator>
#include <set>
#include <string>
#include <vector>

namespace {

using test_support::temp_dir;

grove::tenant_change put_running(const std::string& id, std::uint64_t generation) {
  grove::tenant_change c;
  c.put = grove::tenant_record{.id = id, .state = grove::tenant_state::running, .config = {{"n", generation}},
                               .generation = generation};
  c.events.push_back({.tenant = id, .kind = grove::tenant_event_kind::install, .generation = generation});
  return c;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
}

/// Runs SQL on `file` with SQLite itself (not through the store).
void raw_sql(const std::string& file, const std::string& sql) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(file.c_str(), &db) == SQLITE_OK);
  char* message = nullptr;
  const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &message);
  INFO(sql << ": " << (message ? message : ""));
  sqlite3_free(message);
  sqlite3_close(db);
  REQUIRE(rc == SQLITE_OK);
}

/// The error an open of `file` throws (its text in `text`).
std::error_code open_error(const std::string& file, std::string& text) {
  try {
    grove::sqlite_tenant_store store(file);
  } catch (const grove::error& e) {
    text = e.what();
    return e.code();
  }
  return {};
}

/// Opening `file` is refused with a text naming it and `why`; the file's
/// bytes are as they were and SQLite left no journal beside it.
void check_refused_and_untouched(const std::string& file, const std::string& why) {
  const std::string before = read_file(file);
  std::string text;
  CHECK(open_error(file, text) == grove::tenant_errc::store_refused);
  CHECK(text.find(file) != std::string::npos);
  CHECK_MESSAGE(text.find(why) != std::string::npos, text);
  CHECK(read_file(file) == before);
  CHECK_FALSE(std::filesystem::exists(file + "-wal"));
}

} // namespace

TEST_CASE("records_and_the_outbox_survive_a_reopen_and_sequences_go_on_from_there") {
  temp_dir dir("grove-sqlite");
  const std::string file = dir.file("tenants.db");
  std::uint64_t last = 0;
  {
    grove::sqlite_tenant_store store(file);
    CHECK(store.describe() == "sqlite " + file);
    auto a = store.commit(put_running("acme", 1));
    auto b = store.commit(put_running("globex", 1));
    store.acknowledge(a);
    last = b.at(0);
    store.acknowledge(b); // the outbox is empty: nothing left to derive the next sequence from
  }
  grove::sqlite_tenant_store store(file);
  auto got = store.load();
  REQUIRE(got.records.size() == 2);
  CHECK(got.records[0].id == "acme");
  CHECK(got.records[1].config.at("n") == 1);
  CHECK(got.outbox.empty());
  auto c = store.commit(put_running("initech", 1));
  CHECK(c.at(0) > last);
}

TEST_CASE("the_store_runs_in_wal_mode_and_marks_its_file") {
  temp_dir dir("grove-sqlite");
  const std::string file = dir.file("tenants.db");
  grove::sqlite_tenant_store store(file);
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(file.c_str(), &db) == SQLITE_OK);
  auto pragma = [&](const char* sql) {
    sqlite3_stmt* s = nullptr;
    REQUIRE(sqlite3_prepare_v2(db, sql, -1, &s, nullptr) == SQLITE_OK);
    REQUIRE(sqlite3_step(s) == SQLITE_ROW);
    std::string v = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
    sqlite3_finalize(s);
    return v;
  };
  CHECK(pragma("PRAGMA journal_mode") == "wal");
  CHECK(pragma("PRAGMA application_id") == std::to_string(grove::sqlite_tenant_store::application_id));
  CHECK(pragma("PRAGMA user_version") == std::to_string(grove::sqlite_tenant_store::schema_version));
  sqlite3_close(db);
}

TEST_CASE("every_commit_that_returned_survives_a_sigkill_of_the_writer") {
  temp_dir dir("grove-sqlite");
  const std::string file = dir.file("tenants.db");
  // The child commits one tenant at a time and says so only once commit()
  // returned; it is killed somewhere in the middle.
  const test_support::killed_child writer = test_support::run_and_sigkill(
      [&](const std::function<bool(std::uint32_t)>& confirm) {
        grove::sqlite_tenant_store store(file);
        for (std::uint32_t i = 1; i <= 5000; ++i) {
          store.commit(put_running("tenant-" + std::to_string(i), i));
          if (!confirm(i)) break;
        }
      },
      40);
  const std::set<std::uint32_t>& confirmed = writer.confirmed;
  REQUIRE(confirmed.size() >= 40);
  CHECK(writer.signalled);

  grove::sqlite_tenant_store store(file);
  auto got = store.load();
  std::set<std::string> ids;
  for (const auto& r : got.records) ids.insert(r.id);
  for (std::uint32_t i : confirmed) CHECK(ids.count("tenant-" + std::to_string(i)) == 1);
  CHECK(got.outbox.size() == got.records.size()); // each record came with its event, or neither did
}

TEST_CASE("a_file_that_is_not_sqlite_is_refused_and_left_as_it_was") {
  temp_dir dir("grove-sqlite");
  const std::string file = dir.file("tenants.db");
  write_file(file, "tenants:\n  acme: running\n"); // someone's YAML
  check_refused_and_untouched(file, "not a SQLite database");
}

TEST_CASE("another_programs_database_is_refused_and_left_as_it_was") {
  temp_dir dir("grove-sqlite");
  const std::string file = dir.file("app.db");
  raw_sql(file, "CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL); INSERT INTO invoices VALUES (1, 9.5);");
  check_refused_and_untouched(file, "another program");
}

TEST_CASE("a_store_of_a_newer_schema_is_refused_and_left_as_it_was") {
  temp_dir dir("grove-sqlite");
  const std::string file = dir.file("tenants.db");
  {
    grove::sqlite_tenant_store store(file);
    store.commit(put_running("acme", 1));
  }
  raw_sql(file, "PRAGMA journal_mode=DELETE; PRAGMA user_version=99;");
  check_refused_and_untouched(file, "newer grove (schema 99");
}

TEST_CASE("a_damaged_store_is_refused_and_left_as_it_was") {
  temp_dir dir("grove-sqlite");
  const std::string file = dir.file("tenants.db");
  {
    grove::sqlite_tenant_store store(file);
    for (int i = 0; i < 300; ++i) store.commit(put_running("tenant-" + std::to_string(i), 1));
  }
  raw_sql(file, "PRAGMA journal_mode=DELETE;"); // everything in the main file, no WAL beside it
  std::string bytes = read_file(file);
  REQUIRE(bytes.size() > 4 * 4096);
  for (std::size_t i = 2 * 4096; i < 4 * 4096; ++i) bytes[i] = static_cast<char>(0xA5); // two pages of noise
  write_file(file, bytes);
  std::string text;
  check_refused_and_untouched(file, "tenant store");
  CHECK(open_error(file, text) == grove::tenant_errc::store_refused);
  CHECK_MESSAGE((text.find("damaged") != std::string::npos || text.find("malformed") != std::string::npos), text);
}

TEST_CASE("a_store_that_cannot_be_opened_names_the_file") {
  temp_dir dir("grove-sqlite");
  const std::string file = dir.file("no/such/dir/tenants.db");
  std::string text;
  CHECK(open_error(file, text) == grove::tenant_errc::store_refused);
  CHECK(text.find(file) != std::string::npos);
  CHECK(text.find("cannot open") != std::string::npos);
}

TEST_CASE("a_record_that_cannot_be_written_as_json_fails_the_commit_and_applies_nothing") {
  temp_dir dir("grove-sqlite");
  grove::sqlite_tenant_store store(dir.file("tenants.db"));
  grove::tenant_change bad = put_running("acme", 1);
  bad.put->config = {{"name", std::string("\xff\xfe")}}; // not UTF-8
  std::string text;
  try {
    store.commit(std::move(bad));
  } catch (const grove::error& e) {
    CHECK(e.code() == grove::tenant_errc::store_failed);
    text = e.what();
  }
  CHECK(text.find("acme") != std::string::npos);
  auto got = store.load();
  CHECK(got.records.empty());
  CHECK(got.outbox.empty());
}

TEST_CASE("a_negative_busy_timeout_names_the_option") {
  temp_dir dir("grove-sqlite");
  std::string text;
  try {
    grove::sqlite_tenant_store store(dir.file("tenants.db"), {.busy_timeout = std::chrono::milliseconds(-1)});
  } catch (const grove::error& e) {
    CHECK(e.code() == grove::errc::invalid_argument);
    text = e.what();
  }
  CHECK(text.find("sqlite_store_options.busy_timeout") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(dir.file("tenants.db")));
}

namespace {
// --- README example begins
/// Stores tenant "acme" with its install event; returns what a restarted
/// manager would warm up from.
grove::tenant_store_contents remember_acme(const std::filesystem::path& file) {
  grove::sqlite_tenant_store store(file); // created if missing
  grove::tenant_change c;
  c.put = grove::tenant_record{.id = "acme", .state = grove::tenant_state::running, .generation = 1};
  c.events.push_back({.tenant = "acme", .kind = grove::tenant_event_kind::install, .generation = 1});
  std::vector<std::uint64_t> sequences = store.commit(std::move(c)); // on disk when it returns
  store.acknowledge(sequences);                                       // delivered: out of the outbox
  return store.load();
}
// --- README example ends
} // namespace

TEST_CASE("the_readme_example_stores_a_tenant_and_reads_it_back") {
  temp_dir dir("grove-sqlite");
  auto [records, outbox] = remember_acme(dir.file("tenants.db"));
  REQUIRE(records.size() == 1);
  CHECK(records[0].id == "acme");
  CHECK(outbox.empty());
  CHECK(grove::sqlite_tenant_store(dir.file("tenants.db")).load().records.size() == 1);
  CHECK(readme_check::readme_holds_example_of("tests/tenant/sqlite_store_test.cpp"));
}
