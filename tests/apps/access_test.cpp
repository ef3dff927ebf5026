// groved's access policy as a document: what it accepts, what it refuses
// (naming the field), and how a client's identities are matched.
#include "access.hpp"

#include <doctest/doctest.h>

namespace {

using groved::role;

} // namespace

TEST_CASE("an access policy maps identities to roles; the first identity the policy names decides") {
  const groved::access_policy p = groved::parse_access_policy(R"({"format":"groved-access","version":1,"identities":{
      "URI:grove://tenant/a": {"role": "write"},
      "subject:/CN=grove tenant b": {"role": "read"},
      "DNS:ops.grove.test": {"role": "admin"},
      "tcp": {"role": "read"}}})");
  CHECK(p.identities.size() == 4);
  auto m = groved::match(p, {"DNS:unknown", "URI:grove://tenant/a", "subject:/CN=grove tenant b"});
  REQUIRE(m);
  CHECK(m->granted == role::write);
  CHECK(m->identity == "URI:grove://tenant/a");
  m = groved::match(p, {"URI:grove://tenant/b", "subject:/CN=grove tenant b"});
  REQUIRE(m);
  CHECK(m->granted == role::read);
  CHECK(groved::match(p, {"tcp"})->granted == role::read);
  CHECK_FALSE(groved::match(p, {"anonymous"}));
  CHECK_FALSE(groved::match(p, {}));

  CHECK(groved::required_role("get") == role::read);
  CHECK(groved::required_role("stats") == role::read);
  CHECK(groved::required_role("put") == role::write);
  CHECK(groved::required_role("incr") == role::write);
  CHECK(groved::required_role("delete") == role::write);
  CHECK(groved::required_role("debug.kill_shard") == role::admin);
  CHECK(groved::required_role("tenant.install") == role::admin);
  CHECK(groved::required_role("tenant.list") == role::admin);
  CHECK(groved::required_role("no-such-op") == role::read); // answered unknown_op, not forbidden
}

TEST_CASE("an access policy entry names its identity's tenant; without one, the default tenant") {
  const groved::access_policy p = groved::parse_access_policy(R"({"format":"groved-access","version":1,"identities":{
      "URI:grove://tenant/a": {"role": "write", "tenant": "a"},
      "tcp": {"role": "admin"}}})");
  CHECK(groved::match(p, {"URI:grove://tenant/a"})->tenant == "a");
  CHECK(groved::match(p, {"tcp"})->tenant.empty());
  CHECK(groved::is_tenant_id("shop-1.eu_west"));
  CHECK_FALSE(groved::is_tenant_id(""));
  CHECK_FALSE(groved::is_tenant_id("a/b"));
  CHECK_FALSE(groved::is_tenant_id(".."));
  CHECK_FALSE(groved::is_tenant_id("-x"));
  CHECK_FALSE(groved::is_tenant_id(std::string(65, 'a')));
}

TEST_CASE("a bad access policy is refused, naming what is wrong") {
  using groved::access_error;
  auto refused = [](const char* text) {
    try {
      (void)groved::parse_access_policy(text);
    } catch (const access_error& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  CHECK(refused("{not json").find("not JSON") == 0);
  CHECK(refused(R"({"version":1,"identities":{}})").find("format:") == 0);
  CHECK(refused(R"({"format":"groved-access","version":2,"identities":{}})") == "version: expected 1");
  CHECK(refused(R"({"format":"groved-access","version":1})").find("identities:") == 0);
  CHECK(refused(R"({"format":"groved-access","version":1,"identities":{"alice":{"role":"read"}}})")
            .find("\"alice\" is no identity") != std::string::npos);
  CHECK(refused(R"({"format":"groved-access","version":1,"identities":{"URI:x":{"role":"root"}}})") ==
        "identities.\"URI:x\".role: expected \"read\", \"write\" or \"admin\"");
  CHECK(refused(R"({"format":"groved-access","version":1,"identities":{"URI:x":"write"}})").find(".role: expected") !=
        std::string::npos);
  CHECK(refused(R"({"format":"groved-access","version":1,"identities":{"URI:x":{"role":"read","tenant":"../b"}}})")
            .find("identities.\"URI:x\".tenant: expected 1 to 64 characters") == 0);
  CHECK(refused(R"({"format":"groved-access","version":1,"identities":{"URI:x":{"role":"read","tenant":7}}})")
            .find(".tenant: expected") != std::string::npos);
  CHECK(refused(R"({"format":"groved-access","version":1,"identities":{"URI:x":{"role":"read","tennant":"a"}}})") ==
        "identities.\"URI:x\".tennant: unknown field (expected \"role\" and \"tenant\")");
  // An empty policy is a policy: nobody is served.
  CHECK(groved::parse_access_policy(R"({"format":"groved-access","version":1,"identities":{}})").identities.empty());
}
