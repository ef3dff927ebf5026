// groved's write-ahead log as files: what start-up replays, what it drops
// as a torn write, and what stops it.
#include "snapshot.hpp"
#include "wal.hpp"

#include "../temp_dir.hpp"

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <thread>
#include <vector>

namespace {

using json = nlohmann::json;
using groved::recover_store;
using groved::recovered_store;

std::string header(std::uint64_t generation) {
  std::string h = "GRVWAL01";
  for (int i = 0; i < 8; ++i) h.push_back(static_cast<char>((generation >> (8 * i)) & 0xff));
  return h;
}

std::string put(std::string_view key, const json& value) {
  std::string out;
  groved::encode_record(out, key, &value);
  return out;
}

std::string erase(std::string_view key) {
  std::string out;
  groved::encode_record(out, key, nullptr);
  return out;
}

void write_file(const std::string& path, const std::string& bytes) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
  REQUIRE(out.good());
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

groved::logger quiet() { return groved::logger(groved::log_level::error, groved::log_format::json); }

} // namespace

TEST_CASE("records are checksummed with CRC-32C, whichever way the CPU computes it") {
  CHECK(groved::wal_checksum("123456789") == 0xE3069283u); // the standard check value
  CHECK(groved::wal_checksum("") == 0u);
  // Every length and alignment against the bitwise definition.
  std::string bytes;
  for (int i = 0; i < 300; ++i) bytes.push_back(static_cast<char>((i * 131 + 7) & 0xff));
  for (std::size_t begin : {0u, 1u, 3u, 7u}) {
    for (std::size_t size = 0; begin + size <= bytes.size(); size += 13) {
      std::uint32_t c = 0xFFFFFFFFu;
      for (std::size_t i = begin; i < begin + size; ++i) {
        c ^= static_cast<unsigned char>(bytes[i]);
        for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
      }
      CHECK(groved::wal_checksum(std::string_view(bytes).substr(begin, size)) == (c ^ 0xFFFFFFFFu));
    }
  }
}

TEST_CASE("a log replays puts, deletes and counters in order, after the snapshot, across generations") {
  test_support::temp_dir dir;
  const std::string data = dir.file("store.json");
  const std::string wal = groved::wal_directory(data);
  // The snapshot holds generation 1; file 1 is left over and must be skipped.
  groved::write_snapshot(data, json{{"a", 1}, {"gone", "x"}, {"kept", true}}, 2);
  write_file(wal + "/0000000000000001.log", header(1) + put("a", 100) + put("stale", 1));
  write_file(wal + "/0000000000000002.log", header(2) + put("a", 2) + erase("gone") + put("n", 1));
  write_file(wal + "/0000000000000003.log", header(3) + put("n", 2) + put("n", 3) + put("v", json{{"deep", {1, 2}}}));
  write_file(wal + "/notes.txt", "not a log");

  const recovered_store r = recover_store(data, 128, false);
  CHECK(r.snapshot_found);
  CHECK(r.snapshot_generation == 2);
  CHECK(r.next_generation == 4);
  CHECK(r.replay.files == 2);
  CHECK(r.replay.records == 6);
  CHECK(r.replay.torn == 0);
  CHECK(r.data == json{{"a", 2}, {"kept", true}, {"n", 3}, {"v", json{{"deep", {1, 2}}}}});

  // A restarted shard reads only its own keys.
  const recovered_store some = recover_store(data, 128, false, [](std::string_view k) { return k == "n" || k == "a"; });
  CHECK(some.data == json{{"a", 2}, {"n", 3}});
}

TEST_CASE("a log cut at every byte offset of its last record starts cleanly with the records before it") {
  test_support::temp_dir dir;
  const std::string data = dir.file("store.json");
  const std::string path = groved::wal_directory(data) + "/0000000000000001.log";
  const std::string first = header(1) + put("counter", 1) + put("name", "grove") + erase("name");
  const std::string last = put("counter", json{{"big", std::string(300, 'x')}, {"n", 2}});
  for (std::size_t cut = 0; cut <= last.size(); ++cut) {
    CAPTURE(cut);
    write_file(path, first + last.substr(0, cut));
    const recovered_store r = recover_store(data, 128, false);
    if (cut == last.size()) {
      CHECK(r.replay.torn == 0);
      CHECK(r.data["counter"]["n"] == 2);
    } else {
      CHECK(r.replay.torn == (cut == 0 ? 0u : 1u));
      CHECK(r.data == json{{"counter", 1}});
      if (cut > 0) CHECK(r.replay.torn_at.at(0) == path + " at offset " + std::to_string(first.size()));
    }
    CHECK(read_file(path) == first + last.substr(0, cut)); // nothing rewritten
  }
  // A file cut inside its header was being created: nothing in it counts.
  for (std::size_t cut = 1; cut < 16; ++cut) {
    write_file(path, header(1).substr(0, cut));
    CHECK(recover_store(data, 128, false).data.empty());
  }
}

TEST_CASE("a damaged record with records after it stops the start, naming the file and the offset") {
  test_support::temp_dir dir;
  const std::string data = dir.file("store.json");
  const std::string path = groved::wal_directory(data) + "/0000000000000001.log";
  const std::string a = header(1) + put("a", 1);
  const std::string b = put("b", "two");
  const std::string c = put("c", 3);

  SUBCASE("a flipped byte in a body") {
    std::string bytes = a + b + c;
    bytes[a.size() + 10] ^= 0x20;
    write_file(path, bytes);
    try {
      (void)recover_store(data, 128, false);
      FAIL("a damaged log was accepted");
    } catch (const groved::wal_error& e) {
      const std::string what = e.what();
      CHECK(what.find(path) != std::string::npos);
      CHECK(what.find("offset " + std::to_string(a.size())) != std::string::npos);
      CHECK(what.find("checksum") != std::string::npos);
    }
    CHECK(read_file(path) == bytes);
    // A reader that must not stop (a restarted shard) takes what precedes it.
    CHECK(recover_store(data, 128, true).data == json{{"a", 1}});
  }
  SUBCASE("a size no record has, in the middle") {
    std::string bytes = a + b + c;
    bytes[a.size() + 3] = '\x7f';
    write_file(path, bytes);
    CHECK_THROWS_AS((void)recover_store(data, 128, false), groved::wal_error);
  }
  SUBCASE("a bad last record followed only by zeros is a torn write") {
    std::string bytes = a + b;
    bytes[a.size() + 10] ^= 0x20;
    write_file(path, bytes + std::string(4096, '\0'));
    const recovered_store r = recover_store(data, 128, false);
    CHECK(r.replay.torn == 1);
    CHECK(r.data == json{{"a", 1}});
  }
  SUBCASE("a file that is not a log") {
    write_file(path, "GRVWAL99" + std::string(8, '\0') + b);
    CHECK_THROWS_WITH_AS((void)recover_store(data, 128, false), doctest::Contains("not a groved log"), groved::wal_error);
  }
}

TEST_CASE("the log writes what is appended, rotates to a new generation, and removes what a snapshot holds") {
  test_support::temp_dir dir;
  const std::string data = dir.file("store.json");
  groved::write_ahead_log::options o;
  o.directory = groved::wal_directory(data);
  o.generation = 5;
  o.mode = groved::durability::none; // nobody to tell: no shard processes here
  o.shards = 2;
  {
    groved::write_ahead_log log(o, quiet());
    const json one = 1;
    const json two = "two";
    CHECK(log.append(0, grove::pid{}, "a", &one) == 1);
    CHECK(log.append(1, grove::pid{}, "b", &two) == 2);
    CHECK(log.flush());
    log.rotate(6);
    CHECK(log.generation() == 6);
    CHECK(log.append(0, grove::pid{}, "a", nullptr) == 3);
    CHECK(log.flush());
    const auto s = log.stats();
    CHECK(s.records == 3);
    CHECK(recover_store(data, 128, false).data == json{{"b", "two"}});
    log.remove_before(6);
    const auto files = groved::log_files(o.directory);
    REQUIRE(files.size() == 1);
    CHECK(files[0].first == 6);
  }
  // Without the snapshot that held generation 5, only 6 is left to replay.
  CHECK(recover_store(data, 128, false).data == json::object());
  // A generation's file is never reused.
  o.generation = 6;
  CHECK_THROWS_WITH_AS(groved::write_ahead_log(o, quiet()), doctest::Contains("cannot create the log"), groved::wal_error);
  CHECK(groved::durability_from("batch") == groved::durability::batch);
  CHECK_FALSE(groved::durability_from("sometimes").has_value());
}

TEST_CASE("a full queue holds writers until the log thread takes it, and loses nothing") {
  test_support::temp_dir dir;
  const std::string data = dir.file("store.json");
  groved::write_ahead_log::options o;
  o.directory = groved::wal_directory(data);
  o.mode = groved::durability::none;
  o.max_queued_bytes = 256; // about one record: nearly every append waits for a round
  groved::write_ahead_log log(o, quiet());
  const json value = std::string(200, 'v');
  std::vector<std::thread> writers;
  for (int t = 0; t < 2; ++t) {
    writers.emplace_back([&, t] {
      for (int i = 0; i < 500; ++i) log.append(0, grove::pid{}, "k" + std::to_string(t) + "/" + std::to_string(i), &value);
    });
  }
  for (auto& w : writers) w.join();
  REQUIRE(log.flush());
  CHECK(log.stats().records == 1000);
  CHECK(recover_store(data, 128, false).data.size() == 1000);
}

TEST_CASE("an idle log holds no thread: it ends after idle_exit and the next append starts one") {
  test_support::temp_dir dir;
  const std::string data = dir.file("store.json");
  groved::write_ahead_log::options o;
  o.directory = groved::wal_directory(data);
  o.mode = groved::durability::batch; // a pending sync keeps the thread until it is done
  o.batch_interval = std::chrono::milliseconds(5);
  o.idle_exit = std::chrono::milliseconds(10);
  groved::write_ahead_log log(o, quiet());
  auto ended = [&] { return log.wait_thread_ended(std::chrono::seconds(10)); };
  const json one = 1;
  CHECK_FALSE(log.thread_running()); // nothing appended yet
  CHECK(log.flush());
  for (int round = 0; round < 3; ++round) {
    REQUIRE(ended());
    CHECK(log.append(0, grove::pid{}, "k" + std::to_string(round), &one) != 0);
    CHECK(log.thread_running());
    CHECK(log.flush());
  }
  REQUIRE(ended());
  // The batch was synced before the thread ended, and every record is there.
  CHECK(log.stats().syncs >= 1);
  CHECK(log.stats().records == 3);
  CHECK(recover_store(data, 128, false).data == json{{"k0", 1}, {"k1", 1}, {"k2", 1}});
}
