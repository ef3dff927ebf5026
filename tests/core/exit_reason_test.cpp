#include <grove/core/exit_reason.hpp>

#include <doctest/doctest.h>

#include <sstream>

TEST_CASE("exit_reasons_print_as_otp_spells_them_and_classify") {
  using r = grove::exit_reason;
  CHECK(r().to_string() == "normal");
  CHECK(r::shutdown().to_string() == "shutdown");
  CHECK(r::shutdown("reload").to_string() == "{shutdown, reload}");
  CHECK(r::kill().to_string() == "kill");
  CHECK(r::killed().to_string() == "killed");
  CHECK(r::error("boom").to_string() == "{error, boom}");
  CHECK(r::noproc().to_string() == "noproc");
  CHECK(r::normal().is_normal());
  CHECK_FALSE(r::shutdown().is_normal());
  CHECK(r::shutdown("x").is_clean());
  CHECK_FALSE(r::error("x").is_clean());
  CHECK(r::shutdown("a") != r::shutdown("b"));
  std::ostringstream os;
  os << r::error("e");
  CHECK(os.str() == "{error, e}");
}
