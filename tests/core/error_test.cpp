#include <grove/core/error.hpp>

#include <grove/connection/error.hpp>
#include <grove/core/node.hpp>
#include <grove/core/testing.hpp>
#include <grove/erps/error.hpp>
#include <grove/registry/error.hpp>
#include <grove/supervisor/error.hpp>

#include <doctest/doctest.h>

#include <string>

TEST_CASE("grove_errors_carry_a_code_in_the_grove_category_and_a_helpful_message") {
  grove::error e(grove::errc::timeout);
  CHECK(e.code() == grove::errc::timeout);
  CHECK(e.code().category().name() == std::string("grove.core"));
  CHECK(std::string(e.what()).find("did not answer in time") != std::string::npos);
  CHECK_FALSE(e.reason().has_value());
  for (int c = 1; c <= static_cast<int>(grove::errc::bad_directive); ++c) {
    CHECK(grove::make_error_code(static_cast<grove::errc>(c)).message().find("unknown") == std::string::npos);
  }
  CHECK(grove::make_error_code(static_cast<grove::errc>(99)).message() == "unknown grove.core error 99");
}

TEST_CASE("exited_errors_carry_the_exit_reason") {
  grove::error e(grove::errc::exited, grove::exit_reason::error("disk full"));
  REQUIRE(e.reason().has_value());
  CHECK(*e.reason() == grove::exit_reason::error("disk full"));
  CHECK(std::string(e.what()).find("{error, disk full}") != std::string::npos);
}

TEST_CASE("an_error_can_name_what_failed_and_carry_why") {
  grove::error e(grove::errc::start_failed, "child \"db\"", grove::exit_reason::error("refused"));
  REQUIRE(e.reason().has_value());
  CHECK(*e.reason() == grove::exit_reason::error("refused"));
  const std::string text = e.what();
  CHECK(text.find("child \"db\"") != std::string::npos);
  CHECK(text.find("{error, refused}") != std::string::npos);
}

TEST_CASE("each_layer_has_its_own_category_and_codes_never_collide_across_layers") {
  const std::error_code core = grove::errc::noproc; // value 1
  const std::error_code sup = grove::supervisor_errc::already_started;
  const std::error_code con = grove::connection_errc::disconnected;
  const std::error_code reg = grove::registry_errc::already_registered;
  const std::error_code erps = grove::erps_errc::remote;
  const std::error_code all[] = {core, sup, con, reg, erps};
  const char* names[] = {"grove.core", "grove.supervisor", "grove.connection", "grove.registry", "grove.erps"};
  for (std::size_t i = 0; i < std::size(all); ++i) {
    CHECK(all[i].value() == 1);
    CHECK(all[i].category().name() == std::string(names[i]));
    CHECK(all[i].message().find("unknown") == std::string::npos);
    for (std::size_t j = 0; j < std::size(all); ++j) CHECK((all[i] == all[j]) == (i == j));
  }
  // What a layer throws is a grove::error with its code; the enum compares.
  grove::error e(grove::connection_errc::disconnected, "link dropped");
  CHECK(e.code() == grove::connection_errc::disconnected);
  CHECK(e.code() != grove::errc::noproc);
  CHECK(std::string(e.what()).find("link dropped") == 0);
}

TEST_CASE("testing_capture_turns_a_thrown_grove_error_into_a_value") {
  grove::node node{{.threads = 1}};
  auto fails = []() -> grove::awaitable<int> {
    throw grove::error(grove::supervisor_errc::max_children, "full");
    co_return 0;
  };
  auto works = []() -> grove::awaitable<int> { co_return 7; };
  auto bad = node.block_on(grove::testing::capture(fails()));
  CHECK_FALSE(bad);
  CHECK(bad.error() == grove::supervisor_errc::max_children);
  CHECK(bad.what().find("full") == 0);
  auto good = node.block_on(grove::testing::capture(works()));
  REQUIRE(good);
  CHECK(*good == 7);
  CHECK(node.block_on(grove::testing::error_of(fails())) == grove::supervisor_errc::max_children);
  CHECK_FALSE(node.block_on(grove::testing::error_of(works())));
}
