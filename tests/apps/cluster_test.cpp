// groved across nodes (cluster.etcd): placement, the `moved` error and
// grovectl following it, tenant records in etcd, the node name's lease.
// Against a real etcd (Debian's etcd-server) each test starts on loopback.
#include "apps_support.hpp"

#include "../etcd/etcd_server.hpp"

#include <doctest/doctest.h>

#include <functional>

using namespace apps_test;

namespace {

std::vector<std::string> node_flags(const test_support::etcd_server& etcd, const std::string& name, int ttl = 5) {
  return {"--cluster.etcd=" + etcd.url(), "--cluster.node=" + name, "--cluster.lease_ttl_s=" + std::to_string(ttl)};
}

// Asks until `done` holds of the reply (a watch on the other node brings
// the change): bounded, and each try is a round trip, not a sleep.
json call_until(const groved& d, const std::string& request, const std::function<bool(const json&)>& done) {
  json reply;
  for (int i = 0; i < 200; ++i) {
    result r = grovectl(d.tcp(), {"--no-follow", "call", request});
    reply = json::parse(r.out.empty() ? "null" : r.out, nullptr, false);
    if (done(reply)) return reply;
  }
  FAIL("no reply to " << request << " held the condition; the last: " << reply.dump());
  return reply;
}

} // namespace

TEST_CASE("one node serves each tenant; another sends its clients there and grovectl follows") {
  test_support::etcd_server etcd;
  groved a(node_flags(etcd, "a"));
  groved b(node_flags(etcd, "b"));
  CHECK(json::parse(a.process().out().substr(0, a.process().out().find('\n')))["cluster"]["node"] == "a");
  // a started first and placed the default tenant: b sends its clients to a.
  CHECK(b.process().wait_stderr("default_tenant_elsewhere"));

  result moved = grovectl(b.tcp(), {"--no-follow", "call", R"({"op":"put","key":"k","value":1})"});
  CHECK(moved.status == 1);
  const json error = json::parse(moved.out)["error"];
  CHECK(error["code"] == "moved");
  CHECK(error["tenant"] == "default");
  CHECK(error["node"] == "a");
  CHECK(error["tcp"] == "127.0.0.1:" + std::to_string(a.tcp_port()));
  CHECK(error["tls"] == "127.0.0.1:" + std::to_string(a.tls_port()));
  CHECK(moved.err.find("moved: tenant 'default' is served by node 'a' at 127.0.0.1:") != std::string::npos);

  // Followed: the write lands on a, and reads from either node see it.
  result put = grovectl(b.tcp(), {"call", R"({"op":"put","key":"k","value":1})"});
  CHECK(put.status == 0);
  CHECK(json::parse(put.out) == json{{"ok", true}, {"created", true}});
  CHECK(json::parse(grovectl(a.tcp(), {"call", R"({"op":"get","key":"k"})"}).out)["value"] == 1);
  CHECK(json::parse(grovectl(b.tcp(), {"call", R"({"op":"get","key":"k"})"}).out)["value"] == 1);
  CHECK(json::parse(grovectl(b.tcp(), {"call", R"({"op":"where"})"}).out) ==
        json{{"ok", true}, {"tenant", "default"}, {"node", "a"}});
  // Over TLS too, to a's TLS listener; a cast and a script are sent there first.
  CHECK(json::parse(grovectl(b.tls(), {"call", R"({"op":"incr","key":"n"})"}).out)["value"] == 1);
  CHECK(grovectl(b.tcp(), {"cast", R"({"op":"incr","key":"n"})"}).status == 0);
  result s = script(b.tcp(), {json{{"call", {{"op", "get"}, {"key", "n"}}}, {"expect", {{"value", 2}}}}});
  CHECK(s.status == 0);
  // a closed the moved connections after answering: only a serves them.
  CHECK(b.process().err().find("\"event\":\"access_refused\"") == std::string::npos);

  // A tenant installed through b is placed on b; a sends its admin there.
  result installed = grovectl(b.tcp(), {"tenant", "install", "shop"});
  CHECK(installed.status == 0);
  CHECK(json::parse(installed.out)["tenant"]["state"] == "running");
  result again = grovectl(a.tcp(), {"--no-follow", "tenant", "install", "shop"});
  CHECK(json::parse(again.out)["error"]["code"] == "moved");
  CHECK(json::parse(again.out)["error"]["node"] == "b");
  CHECK(json::parse(grovectl(a.tcp(), {"tenant", "install", "shop"}).out)["error"]["code"] == "already_exists");
  CHECK(json::parse(grovectl(a.tcp(), {"tenant", "get", "shop"}).out)["tenant"]["id"] == "shop");
  json list = call_until(a, R"({"op":"tenant.list"})", [](const json& r) {
    return r.is_object() && r.contains("cluster") && r["cluster"]["placements"].contains("shop");
  });
  CHECK(list["cluster"] == json{{"node", "a"}, {"placements", {{"default", "a"}, {"shop", "b"}}}});
  CHECK(list["tenants"].size() == 1); // a's own records

  // b stops: its lease is revoked, so its placements go at once (not at
  // the TTL); its records stay in etcd, and bring shop back when b returns.
  CHECK(b.stop() == 0);
  list = call_until(a, R"({"op":"tenant.list"})", [](const json& r) {
    return r.is_object() && r.contains("cluster") && !r["cluster"]["placements"].contains("shop");
  });
  CHECK(list["cluster"]["placements"] == json{{"default", "a"}});
  groved b2(node_flags(etcd, "b"));
  result back = grovectl(b2.tcp(), {"tenant", "get", "shop"});
  CHECK(back.status == 0);
  CHECK(json::parse(back.out)["tenant"]["state"] == "running");
  call_until(a, R"({"op":"tenant.list"})", [](const json& r) {
    return r.is_object() && r.contains("cluster") && r["cluster"]["placements"].value("shop", "") == "b";
  });
  // Uninstalled, its placement goes with it.
  CHECK(grovectl(b2.tcp(), {"tenant", "uninstall", "shop"}).status == 0);
  call_until(a, R"({"op":"tenant.list"})", [](const json& r) {
    return r.is_object() && r.contains("cluster") && !r["cluster"]["placements"].contains("shop");
  });
  CHECK(a.stop() == 0);
  CHECK(b2.stop() == 0);
}

TEST_CASE("a node name held by a running groved is refused; a bad cluster option names its key") {
  test_support::etcd_server etcd;
  groved a(node_flags(etcd, "a", 2));
  std::vector<std::string> twin{groved_path(), "--tcp.port=0", "--tls.port=0", "--log.format=json"};
  for (const auto& f : node_flags(etcd, "a", 2)) twin.push_back(f);
  result r = run(twin, {}, 60s);
  CHECK(r.status == 1);
  CHECK(r.err.find("cluster.node: 'a' is held by another running groved") != std::string::npos);
  CHECK(r.err.find("cluster_name_held") != std::string::npos); // it waited one TTL first
  // a is untouched: it still serves.
  CHECK(json::parse(grovectl(a.tcp(), {"call", R"({"op":"where"})"}).out)["node"] == "a");

  result no_name = run({groved_path(), "--cluster.etcd=" + etcd.url()});
  CHECK(no_name.status == 2);
  CHECK(no_name.err.find("cluster.node: expected this groved's name in the cluster") != std::string::npos);
  result bad_url = run({groved_path(), "--cluster.etcd=127.0.0.1:2379", "--cluster.node=x"});
  CHECK(bad_url.status == 2);
  CHECK(bad_url.err.find("cluster.etcd: expected comma-separated endpoints") != std::string::npos);
  result wildcard = run({groved_path(), "--cluster.etcd=" + etcd.url(), "--cluster.node=x", "--tcp.address=0.0.0.0"});
  CHECK(wildcard.status == 2);
  CHECK(wildcard.err.find("cluster.advertise: expected the host clients reach this node at") != std::string::npos);
  CHECK(a.stop() == 0);
}

TEST_CASE("a node killed and started again waits out its old lease, then serves its tenants") {
  test_support::etcd_server etcd;
  temp_dir dir;
  const std::string data = "--data_path=" + dir.file("data.json");
  std::vector<std::string> flags = node_flags(etcd, "a", 2);
  flags.push_back(data);
  {
    groved a(flags);
    CHECK(grovectl(a.tcp(), {"call", R"({"op":"put","key":"kept","value":"yes"})"}).status == 0);
    a.process().signal(SIGKILL);
    CHECK(a.process().wait(10s) == 128 + SIGKILL);
  }
  groved again(flags);
  // Its name and the default tenant's placement were still held by the
  // killed one's lease: it waited, then took both back.
  CHECK(again.process().err().find("cluster_name_held") != std::string::npos);
  CHECK(json::parse(grovectl(again.tcp(), {"call", R"({"op":"get","key":"kept"})"}).out)["value"] == "yes");
  CHECK(again.stop() == 0);
}
