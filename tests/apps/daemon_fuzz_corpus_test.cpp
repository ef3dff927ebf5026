// Replays the daemon fuzz target's seed corpus through its body in every
// ordinary build (so under ThreadSanitizer too, which the fuzz run is not),
// keeping the corpus and the harness in working order.
#include "../fuzz/daemon_fuzz.hpp"

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

TEST_CASE("every seed of the daemon fuzz corpus is answered or refused, and nothing crashes") {
  grove_daemon_fuzz::rig daemon(false);
  grove_daemon_fuzz::rig etf_daemon(true);
  const std::filesystem::path corpus = std::filesystem::path(GROVE_SOURCE_ROOT) / "tests/fuzz/corpus/daemon";
  std::size_t seeds = 0, etf_seeds = 0;
  for (const auto& entry : std::filesystem::directory_iterator(corpus)) {
    std::ifstream in(entry.path(), std::ios::binary);
    std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    CAPTURE(entry.path().filename().string());
    CHECK(grove_daemon_fuzz::run_input(daemon, etf_daemon, reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()) == 0);
    ++seeds;
    if (!bytes.empty() && bytes[0] == 'E') ++etf_seeds;
  }
  CHECK(seeds >= 10);
  CHECK(etf_seeds >= 5);
  CHECK(daemon.crashes.load() == 0);
  CHECK(etf_daemon.crashes.load() == 0);
}
