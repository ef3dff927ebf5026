#include <grove/core/node.hpp>
#include <grove/remote_term/remote_term.hpp>

#include "../readme_check.hpp"
#include "../temp_dir.hpp"

#include <doctest/doctest.h>

#include <fstream>
#include <stdexcept>
#include <string>

namespace {

// --- README example begins
/// Reads feature flags from `file` every 30 s, and at once on refresh();
/// returns "beta" as it was at start and after the file was edited.
grove::awaitable<std::pair<bool, bool>> watch_flags(grove::node& node, std::string file) {
  grove::remote_term_options<nlohmann::json> options;
  options.name = "feature_flags";
  options.fetcher = grove::file_fetcher(file);
  options.interval = std::chrono::seconds(30);
  options.sync_first_load = true; // start() returns once the first attempt finished
  options.validate = [](const nlohmann::json& flags) {
    if (!flags.is_object()) throw std::runtime_error("expected a JSON object");
  };
  grove::remote_term<nlohmann::json> flags(std::move(options));
  co_await flags.start(node);
  const bool before = flags.get()->value("beta", false); // lock-free, from any thread

  std::ofstream(file) << R"({"beta": true})"; // an edit: the next attempt sees it
  grove::term_outcome outcome = co_await flags.refresh();
  if (outcome.status == grove::term_status::failed) throw std::runtime_error(outcome.reason);
  const bool after = flags.get()->value("beta", false);
  co_await flags.stop();
  co_return std::pair{before, after};
}
// --- README example ends

} // namespace

TEST_CASE("the_readme_example_sees_an_edited_flags_file") {
  test_support::temp_dir dir("grove-remote-term-readme");
  const std::string file = dir.file("flags.json");
  std::ofstream(file) << R"({"beta": false})";
  grove::node node{{.threads = 2}};
  auto [before, after] = node.block_on(watch_flags(node, file));
  CHECK_FALSE(before);
  CHECK(after);
  CHECK(readme_check::readme_holds_example_of("tests/remote_term/readme_remote_term_test.cpp"));
}
