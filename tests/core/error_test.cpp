#include <grove/core/error.hpp>

#include <doctest/doctest.h>

#include <string>

TEST_CASE("grove_errors_carry_a_code_in_the_grove_category_and_a_helpful_message") {
  grove::error e(grove::errc::timeout);
  CHECK(e.code() == grove::errc::timeout);
  CHECK(e.code().category().name() == std::string("grove"));
  CHECK(std::string(e.what()).find("did not answer in time") != std::string::npos);
  CHECK_FALSE(e.reason().has_value());
  for (int c = 1; c <= static_cast<int>(grove::errc::invalid_argument); ++c) {
    CHECK(grove::make_error_code(static_cast<grove::errc>(c)).message() != "unknown grove error");
  }
}

TEST_CASE("exited_errors_carry_the_exit_reason") {
  grove::error e(grove::errc::exited, grove::exit_reason::error("disk full"));
  REQUIRE(e.reason().has_value());
  CHECK(*e.reason() == grove::exit_reason::error("disk full"));
  CHECK(std::string(e.what()).find("{error, disk full}") != std::string::npos);
}
