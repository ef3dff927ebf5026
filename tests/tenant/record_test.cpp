#include <grove/tenant/record.hpp>

#include <grove/core/testing.hpp>

#include <doctest/doctest.h>

#include <string>

TEST_CASE("tenant_states_and_event_kinds_round_trip_through_their_names") {
  for (auto s : {grove::tenant_state::installing, grove::tenant_state::running, grove::tenant_state::updating,
                 grove::tenant_state::uninstalling, grove::tenant_state::error_occurred}) {
    CHECK(grove::parse_tenant_state(grove::to_string(s)) == s);
  }
  CHECK(grove::to_string(grove::tenant_state::error_occurred) == "error_occurred");
  CHECK_FALSE(grove::parse_tenant_state("Running").has_value());
  for (auto k : {grove::tenant_event_kind::install, grove::tenant_event_kind::update,
                 grove::tenant_event_kind::uninstall, grove::tenant_event_kind::error_occurred,
                 grove::tenant_event_kind::restarted, grove::tenant_event_kind::gave_up,
                 grove::tenant_event_kind::dropped}) {
    CHECK(grove::parse_tenant_event_kind(grove::to_string(k)) == k);
  }
  CHECK_FALSE(grove::parse_tenant_event_kind("").has_value());
}

TEST_CASE("a_tenant_id_is_one_to_255_bytes_of_anything") {
  CHECK_NOTHROW(grove::check_tenant_id("a"));
  CHECK_NOTHROW(grove::check_tenant_id(std::string(255, 'x')));
  CHECK_NOTHROW(grove::check_tenant_id(std::string("a/b:c\0d", 7))); // no byte means anything
  auto code_of = [](const std::string& id) {
    try {
      grove::check_tenant_id(id);
    } catch (const grove::error& e) {
      CHECK(std::string(e.what()).find("tenant id") != std::string::npos);
      return e.code();
    }
    return std::error_code{};
  };
  CHECK(code_of("") == grove::tenant_errc::bad_tenant_id);
  CHECK(code_of(std::string(256, 'x')) == grove::tenant_errc::bad_tenant_id);
}

TEST_CASE("the_header_snippet_builds_a_record") {
  grove::tenant_record r{.id = "acme", .state = grove::tenant_state::running, .config = {{"plan", "gold"}}};
  grove::check_tenant_id(r.id);
  CHECK(grove::to_string(r.state) == "running");
  CHECK(r.config.at("plan") == "gold");
  CHECK(r.capabilities == nlohmann::json::array());
  CHECK(grove::make_error_code(grove::tenant_errc::store_refused).category().name() == std::string("grove.tenant"));
}
