#include <grove/supervisor/child_spec.hpp>

#include "probe.hpp"

#include <doctest/doctest.h>

#include <sstream>

using namespace std::chrono_literals;

namespace {
struct counter : grove::gen_server {
  explicit counter(int start) : n(start) {}
  int n;
};
struct opaque {
  int v;
}; // not comparable
struct holds_opaque : grove::gen_server {
  explicit holds_opaque(opaque) {}
};
} // namespace

TEST_CASE("server_child_specs_are_values_equal_when_type_arguments_and_fields_are") {
  grove::child_spec a = grove::server_child<counter>("c", 1);
  grove::child_spec b = grove::server_child<counter>("c", 1);
  CHECK(a == b);
  CHECK(a != grove::server_child<counter>("c", 2));
  CHECK(a != grove::server_child<counter>("d", 1));
  grove::child_spec c = a;
  c.restart = grove::restart_type::transient;
  CHECK(a != c);
  c = a;
  c.shutdown = grove::shutdown_policy::brutal_kill();
  CHECK(a != c);
  CHECK(a.restart == grove::restart_type::permanent);
  CHECK(a.type == grove::child_type::worker);
}

TEST_CASE("starts_compare_equal_when_copied_and_unequal_when_they_cannot_be_compared") {
  auto f = [](grove::node& n) { return grove::spawn(n, [](grove::process&) -> grove::awaitable<void> { co_return; }); };
  grove::child_start s1(f);
  grove::child_start s2 = s1;
  CHECK(s1 == s2);
  CHECK(s1 != grove::child_start(f)); // a second wrapping is another start
  grove::child_start o1 = grove::child_start::server<holds_opaque>({}, opaque{1});
  CHECK(o1 == o1);
  CHECK(o1 != grove::child_start::server<holds_opaque>({}, opaque{1})); // arguments not comparable: identity
  CHECK(grove::child_start() == grove::child_start());
  CHECK_FALSE(static_cast<bool>(grove::child_start()));
}

TEST_CASE("shutdown_defaults_follow_otp_five_seconds_for_workers_infinity_for_supervisors") {
  grove::child_spec w = grove::server_child<counter>("w", 0);
  CHECK(w.effective_shutdown() == grove::shutdown_policy::timeout(5s));
  w.type = grove::child_type::supervisor;
  CHECK(w.effective_shutdown() == grove::shutdown_policy::infinity());
  w.shutdown = grove::shutdown_policy::timeout(250ms);
  CHECK(w.effective_shutdown().limit() == 250ms);
  CHECK(grove::shutdown_policy::timeout(250ms).to_string() == "250ms");
  CHECK(grove::shutdown_policy::brutal_kill().to_string() == "brutal_kill");
  CHECK(grove::shutdown_policy::infinity().to_string() == "infinity");
  std::ostringstream os;
  os << grove::restart_type::transient << ' ' << grove::child_type::supervisor << ' ' << grove::child_status::restarting;
  CHECK(os.str() == "transient supervisor restarting");
}
