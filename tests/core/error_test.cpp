#include <grove/core/error.hpp>

#include <doctest/doctest.h>

#include <string>

TEST_CASE("grove_errors_carry_a_code_in_the_grove_category_and_a_helpful_message") {
  grove::error e(grove::errc::timeout);
  CHECK(e.code() == grove::errc::timeout);
  CHECK(e.code().category().name() == std::string("grove"));
  CHECK(std::string(e.what()).find("did not answer in time") != std::string::npos);
  CHECK_FALSE(e.reason().has_value());
  for (int c = 1; c <= static_cast<int>(grove::errc::max_children); ++c) {
    CHECK(grove::make_error_code(static_cast<grove::errc>(c)).message() != "unknown grove error");
  }
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
