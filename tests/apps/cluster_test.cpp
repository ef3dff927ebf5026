// groved across nodes (cluster.etcd): placement, the `moved` error and
// grovectl following it, tenant records in etcd, the node name's lease.
// Against a real etcd (Debian's etcd-server) each test starts on loopback.
#include "apps_support.hpp"

#include "../etcd/etcd_server.hpp"

#include <doctest/doctest.h>

#include <csignal>
#include <fstream>
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
  // A script's casts before its first call went to b, which dropped them: it says so.
  result dropped = script(b.tcp(), {json{{"cast", {{"op", "incr"}, {"key", "n"}}}},
                                    json{{"call", {{"op", "get"}, {"key", "n"}}}}});
  CHECK(dropped.status == 1);
  CHECK(dropped.err.find("the casts before it went to that node and were dropped") != std::string::npos);
  CHECK(json::parse(grovectl(a.tcp(), {"call", R"({"op":"get","key":"n"})"}).out)["value"] == 2);
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

  // b stops: its lease is revoked, so its name and placements go at once
  // (not at the TTL), and a takes shop over with its record.
  CHECK(b.stop() == 0);
  CHECK(a.process().wait_stderr("tenant_taken_over"));
  list = call_until(a, R"({"op":"tenant.list"})", [](const json& r) {
    return r.is_object() && r.contains("cluster") && r["cluster"]["placements"].value("shop", "") == "a";
  });
  CHECK(list["tenants"].size() == 2);
  // b returns without it, and sends its admin to a.
  groved b2(node_flags(etcd, "b"));
  CHECK(json::parse(grovectl(b2.tcp(), {"tenant", "list"}).out)["tenants"].empty());
  result back = grovectl(b2.tcp(), {"tenant", "get", "shop"});
  CHECK(back.status == 0);
  CHECK(json::parse(back.out)["tenant"]["state"] == "running");
  // Uninstalled, its placement goes with it.
  CHECK(grovectl(b2.tcp(), {"tenant", "uninstall", "shop"}).status == 0);
  call_until(b2, R"({"op":"tenant.list"})", [](const json& r) {
    return r.is_object() && r.contains("cluster") && !r["cluster"]["placements"].contains("shop");
  });
  CHECK(json::parse(grovectl(a.tcp(), {"tenant", "get", "shop"}).out)["error"]["code"] == "not_found");
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

TEST_CASE("a node killed and started again waits out its old lease, then serves its tenants from etcd") {
  test_support::etcd_server etcd;
  const std::vector<std::string> flags = node_flags(etcd, "a", 2);
  {
    groved a(flags);
    CHECK(grovectl(a.tcp(), {"call", R"({"op":"put","key":"kept","value":"yes"})"}).status == 0);
    a.process().signal(SIGKILL);
    CHECK(a.process().wait(10s) == 128 + SIGKILL);
  }
  groved again(flags);
  // Its name was still held by the killed one's lease: it waited, took it
  // back, and read the default tenant's data from etcd.
  CHECK(again.process().err().find("cluster_name_held") != std::string::npos);
  CHECK(json::parse(grovectl(again.tcp(), {"call", R"({"op":"get","key":"kept"})"}).out)["value"] == "yes");
  CHECK(again.stop() == 0);
  // And after a graceful stop too (its snapshot went to etcd).
  groved third(flags);
  CHECK(json::parse(grovectl(third.tcp(), {"call", R"({"op":"get","key":"kept"})"}).out)["value"] == "yes");
  CHECK(third.stop() == 0);
}

namespace {

// The node of three that serves `tenant` now, by asking `via` where it is.
std::string serving_node(const groved& via) {
  result r = grovectl(via.tcp(), {"call", R"({"op":"where"})"});
  const json reply = json::parse(r.out.empty() ? "null" : r.out, nullptr, false);
  return reply.is_object() && reply.value("ok", false) ? reply.value("node", "") : "";
}

} // namespace

TEST_CASE("a node killed: the others take its tenants over within the lease TTL, with every acknowledged write") {
  test_support::etcd_server etcd;
  groved a(node_flags(etcd, "a", 2));
  groved b(node_flags(etcd, "b", 2));
  groved c(node_flags(etcd, "c", 2));
  // a serves the default tenant and three more; 100 acknowledged writes.
  for (const char* t : {"t1", "t2", "t3"}) CHECK(grovectl(a.tcp(), {"tenant", "install", t}).status == 0);
  std::vector<json> lines;
  for (int i = 0; i < 100; ++i) {
    lines.push_back(json{{"call", {{"op", "put"}, {"key", "k" + std::to_string(i)}, {"value", i}}}, {"expect", {{"ok", true}}}});
  }
  lines.push_back(json{{"call", {{"op", "incr"}, {"key", "n"}, {"by", 7}}}, {"expect", {{"value", 7}}}});
  result written = script(a.tcp(), lines);
  REQUIRE(written.status == 0);

  a.process().signal(SIGKILL);
  CHECK(a.process().wait(10s) == 128 + SIGKILL);
  // Within the TTL (2 s) and a watch round trip, b and c between them take
  // all four over, each tenant once (the claim is a transaction).
  auto takeovers = [](groved& d, const std::string& tenant) {
    const std::string err = d.process().err();
    int n = 0;
    for (std::size_t at = err.find("\"tenant_taken_over\""); at != std::string::npos;
         at = err.find("\"tenant_taken_over\"", at + 1)) {
      const std::size_t end = err.find('\n', at);
      n += err.substr(at, end - at).find("\"tenant\":\"" + tenant + "\"") != std::string::npos;
    }
    return n;
  };
  const std::vector<std::string> tenants{"default", "t1", "t2", "t3"};
  auto all_taken = [&] {
    for (const auto& t : tenants) {
      if (takeovers(b, t) + takeovers(c, t) == 0) return false;
    }
    return true;
  };
  for (int i = 0; i < 300 && !all_taken(); ++i) (void)b.process().wait_stderr("\n\n", 100ms); // (a bounded wait for output)
  for (const auto& t : tenants) {
    INFO("tenant ", t);
    CHECK(takeovers(b, t) + takeovers(c, t) == 1);
    groved& by = takeovers(b, t) ? b : c;
    result got = grovectl(by.tcp(), {"tenant", "get", t});
    CHECK(json::parse(got.out)["tenant"]["state"] == "running");
  }
  // Every acknowledged write is there, read through either survivor.
  const std::string now = serving_node(b);
  CHECK((now == "b" || now == "c"));
  CHECK(serving_node(c) == now);
  for (int i = 0; i < 100; ++i) {
    result r = grovectl(i % 2 ? b.tcp() : c.tcp(), {"call", R"({"op":"get","key":"k)" + std::to_string(i) + R"("})"});
    REQUIRE(r.status == 0);
    CHECK(json::parse(r.out)["value"] == i);
  }
  CHECK(json::parse(grovectl(c.tcp(), {"call", R"({"op":"incr","key":"n"})"}).out)["value"] == 8);

  // a comes back: its tenants are served elsewhere now, and it sends their clients there.
  groved a2(node_flags(etcd, "a", 2));
  CHECK(a2.process().wait_stderr("default_tenant_elsewhere"));
  CHECK(serving_node(a2) == now);
  CHECK(json::parse(grovectl(a2.tcp(), {"tenant", "list"}).out)["tenants"].empty());
  CHECK(a2.stop() == 0);
  CHECK(b.stop() == 0);
  CHECK(c.stop() == 0);
}

TEST_CASE("a node cut off past its lease: no write of its lands once another node serves its tenant") {
  test_support::etcd_server etcd;
  // Fixed ports: a's listeners restart when it finds its lease gone.
  std::vector<std::string> a_flags = node_flags(etcd, "a", 2);
  a_flags.push_back("--tcp.port=" + std::to_string(test_support::free_port()));
  a_flags.push_back("--tls.port=" + std::to_string(test_support::free_port()));
  groved a(a_flags);
  groved b(node_flags(etcd, "b", 2));
  CHECK(json::parse(grovectl(a.tcp(), {"call", R"({"op":"put","key":"before","value":1})"}).out)["ok"] == true);
  // a stops dead (as a long pause or a partition would), its lease ends, b
  // takes the default tenant over; then a runs again, not knowing yet.
  a.process().signal(SIGSTOP);
  CHECK(b.process().wait_stderr("tenant_taken_over", 30s));
  a.process().signal(SIGCONT);
  // Whatever a answers now (storage_error from the fenced log, moved, or
  // unavailable while it restarts its tenants), it never acknowledges it.
  result late = grovectl(a.tcp(), {"--no-follow", "--timeout", "10000", "call", R"({"op":"put","key":"late","value":2})"});
  INFO(late.out, late.err);
  CHECK(late.out.find("\"ok\":true") == std::string::npos);
  // ... and b, which serves the tenant now, never sees it.
  CHECK(json::parse(grovectl(b.tcp(), {"call", R"({"op":"get","key":"late"})"}).out)["error"]["code"] == "not_found");
  CHECK(json::parse(grovectl(b.tcp(), {"call", R"({"op":"get","key":"before"})"}).out)["value"] == 1);
  // a learns its lease is gone, stops serving, and sends clients to b.
  CHECK(a.process().wait_stderr("lost", 30s));
  std::string serving;
  for (int i = 0; i < 100 && (serving = serving_node(a)) != "b"; ++i) (void)a.process().wait_stderr("\n\n", 100ms);
  CHECK(serving == "b");
  CHECK(a.stop() == 0);
  CHECK(b.stop() == 0);
}

namespace {

// A client certificate for "/CN=grove load NAME", signed by the test CA,
// made with the openssl command into `dir` (NAME.pem, NAME.key).
void make_client_cert(const temp_dir& dir, const std::string& name) {
  const std::string key = dir.file(name + ".key");
  const std::string csr = dir.file(name + ".csr");
  REQUIRE(run({"openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key}).status == 0);
  REQUIRE(run({"openssl", "req", "-new", "-key", key, "-subj", "/CN=grove load " + name, "-out", csr}).status == 0);
  REQUIRE(run({"openssl", "x509", "-req", "-in", csr, "-CA", certs_dir() + "/ca.pem", "-CAkey", certs_dir() + "/ca.key",
               "-CAserial", dir.file("ca.srl"), "-CAcreateserial", "-days", "2", "-out", dir.file(name + ".pem")})
              .status == 0);
}

} // namespace

TEST_CASE("three nodes, 30 tenants: one node killed under load and an etcd member killed; every acknowledged write stays") {
  test_support::etcd_cluster etcd(3);
  temp_dir dir;
  // 30 tenants, each with its client's certificate; the test client is the admin.
  json identities = json::object();
  identities["subject:/CN=grove test client"] = {{"role", "admin"}};
  std::vector<std::string> tenants;
  for (int i = 0; i < 30; ++i) {
    tenants.push_back("t" + std::to_string(i));
    make_client_cert(dir, tenants.back());
    identities["subject:/CN=grove load " + tenants.back()] = {{"role", "write"}, {"tenant", tenants.back()}};
  }
  {
    std::ofstream policy(dir.file("policy.json"));
    policy << json{{"format", "groved-access"}, {"version", 1}, {"identities", identities}}.dump();
  }
  std::string endpoints;
  for (const auto& u : etcd.urls()) endpoints += (endpoints.empty() ? "" : ",") + u;
  auto node = [&](const std::string& name) {
    // A lease of 5 s outlives the election that killing an etcd member may
    // cost, so only a's tenants move.
    return std::vector<std::string>{"--cluster.etcd=" + endpoints, "--cluster.node=" + name, "--cluster.lease_ttl_s=5",
                                    "--access.policy=" + dir.file("policy.json")};
  };
  groved a(node("a"));
  groved b(node("b"));
  groved c(node("c"));
  auto as = [&](const groved& d, const std::string& who) {
    const std::string certs = who == "admin" ? certs_dir() + "/client" : dir.file(who);
    return std::vector<std::string>{"--port", std::to_string(d.tls_port()), "--ca", certs_dir() + "/ca.pem", "--cert",
                                    certs + ".pem", "--key", certs + ".key"};
  };
  // Ten tenants placed on each node.
  groved* nodes[] = {&a, &b, &c};
  for (int i = 0; i < 30; ++i) {
    result r = grovectl(as(*nodes[i / 10], "admin"), {"tenant", "install", tenants[i]});
    REQUIRE(r.status == 0);
  }

  // Load on b meanwhile: puts of a tenant b serves, riding out failures.
  child load({grove_bench_path(), "--tls", "--port", std::to_string(b.tls_port()), "--ca", certs_dir() + "/ca.pem",
              "--cert", dir.file("t15.pem"), "--key", dir.file("t15.key"), "-c", "8", "-p", "4", "--op", "put",
              "--keep-going", "-d", "12", "-w", "0"});
  // A writer per tenant of a's: 400 numbered puts each, its acknowledged
  // ones printed as it goes; a dies under them.
  std::vector<std::unique_ptr<child>> writers;
  for (int i = 0; i < 10; ++i) {
    std::vector<std::string> argv{grovectl_path()};
    for (const auto& f : as(a, tenants[i])) argv.push_back(f);
    argv.push_back("script");
    writers.push_back(std::make_unique<child>(argv, true));
    std::string lines;
    for (int k = 0; k < 400; ++k) {
      lines += json{{"call", {{"op", "put"}, {"key", "w" + std::to_string(k)}, {"value", k}}}, {"expect", {{"ok", true}}}}.dump() + "\n";
    }
    writers.back()->write_stdin(lines);
    writers.back()->close_stdin();
  }
  for (auto& w : writers) CHECK(w->wait_stdout("\"line\":20,", 30s)); // each has 20 acknowledged
  etcd.member(0).kill();       // the cluster goes on through the other two members
  a.process().signal(SIGKILL); // and a dies mid-stream
  CHECK(a.process().wait(10s) == 128 + SIGKILL);

  // What each writer had acknowledged when a died.
  std::vector<int> acknowledged;
  for (auto& w : writers) {
    CHECK(w->wait(30s).has_value());
    w->finish_output();
    int last = -1;
    for (const json& line : json_lines(w->out())) {
      if (line.contains("reply") && line["reply"].value("ok", false)) last = line["line"].get<int>() - 1;
    }
    acknowledged.push_back(last);
  }

  // Within the TTL and a watch round trip (bounded here by 60 s), b and c
  // take a's ten tenants over, each once.
  auto takeovers = [&](const std::string& tenant) {
    int n = 0;
    for (groved* d : {&b, &c}) {
      const std::string err = d->process().err();
      for (std::size_t at = err.find("\"tenant_taken_over\""); at != std::string::npos;
           at = err.find("\"tenant_taken_over\"", at + 1)) {
        n += err.substr(at, err.find('\n', at) - at).find("\"tenant\":\"" + tenant + "\"") != std::string::npos;
      }
    }
    return n;
  };
  auto all_taken = [&] {
    for (int i = 0; i < 10; ++i) {
      if (takeovers(tenants[i]) == 0) return false;
    }
    return true;
  };
  for (int i = 0; i < 600 && !all_taken(); ++i) (void)b.process().wait_stderr("\n\n", 100ms);
  for (int i = 0; i < 10; ++i) {
    INFO("tenant ", tenants[i], ", acknowledged up to w", acknowledged[i]);
    CHECK(takeovers(tenants[i]) == 1);
    // Every acknowledged write is there, read through b (which sends the client on if c serves it).
    std::vector<json> reads;
    for (int k = 0; k <= acknowledged[i]; ++k) {
      reads.push_back(json{{"call", {{"op", "get"}, {"key", "w" + std::to_string(k)}}}, {"expect", {{"value", k}}}});
    }
    result r = script(as(b, tenants[i]), reads);
    CHECK(r.status == 0);
    CHECK(r.err.empty());
  }
  // The tenants of b and c were served all along, and still are.
  for (int i = 10; i < 30; ++i) {
    result r = grovectl(as(i % 2 ? b : c, tenants[i]), {"call", R"({"op":"put","key":"after","value":1})"});
    CHECK(r.status == 0);
  }
  CHECK(load.wait(60s) == 0);
  load.finish_output();
  const json report = json::parse(load.out().substr(load.out().rfind("{\"calls\"")));
  CHECK(report["ok"].get<std::int64_t>() > 0);
  CHECK(b.stop() == 0);
  CHECK(c.stop() == 0);
}

TEST_CASE("a node that joins takes over the tenants of a node that died while nobody watched") {
  test_support::etcd_server etcd;
  {
    groved a(node_flags(etcd, "a", 2));
    CHECK(grovectl(a.tcp(), {"tenant", "install", "x"}).status == 0);
    CHECK(grovectl(a.tcp(), {"call", R"({"op":"put","key":"kept","value":"yes"})"}).status == 0);
    a.process().signal(SIGKILL);
    CHECK(a.process().wait(10s) == 128 + SIGKILL);
  }
  // Its lease ends with nobody watching (asked of etcd until its name is gone).
  bool gone = false;
  for (int i = 0; i < 300 && !gone; ++i) {
    result r = run({"etcdctl", "--endpoints", etcd.url(), "get", "--prefix", "--keys-only", "groved/cluster/nodes/"});
    gone = r.status == 0 && r.out.find("groved/cluster/nodes/a") == std::string::npos;
  }
  REQUIRE(gone);
  groved b(node_flags(etcd, "b", 2));
  // It placed the default tenant anew (first to start) with its data from
  // etcd, and took x over with its record.
  CHECK(b.process().wait_stderr("\"tenant_taken_over\""));
  CHECK(json::parse(grovectl(b.tcp(), {"call", R"({"op":"get","key":"kept"})"}).out)["value"] == "yes");
  CHECK(json::parse(grovectl(b.tcp(), {"tenant", "get", "x"}).out)["tenant"]["state"] == "running");
  // a's stale record of the default tenant went too: back, a has no tenants of its own.
  groved a2(node_flags(etcd, "a", 2));
  CHECK(json::parse(grovectl(a2.tcp(), {"tenant", "list"}).out)["tenants"].empty());
  CHECK(serving_node(a2) == "b");
  CHECK(a2.stop() == 0);
  CHECK(b.stop() == 0);
}

TEST_CASE("a store shard killed in a clustered groved reads its keys back from etcd") {
  test_support::etcd_server etcd;
  std::vector<std::string> flags = node_flags(etcd, "a", 5);
  flags.push_back("--debug.chaos_ops=true");
  flags.push_back("--shards=2");
  groved a(flags);
  std::vector<json> puts;
  for (int i = 0; i < 50; ++i) {
    puts.push_back(json{{"call", {{"op", "put"}, {"key", "k" + std::to_string(i)}, {"value", i}}}, {"expect", {{"ok", true}}}});
  }
  REQUIRE(script(a.tcp(), puts).status == 0);
  for (int shard : {0, 1}) {
    result killed = grovectl(a.tcp(), {"call", json{{"op", "debug.kill_shard"}, {"shard", shard}}.dump()});
    CHECK(killed.status == 0);
  }
  CHECK(a.process().wait_stderr_count("\"event\":\"shard_recovered\"", 2));
  std::vector<json> gets;
  for (int i = 0; i < 50; ++i) {
    gets.push_back(json{{"call", {{"op", "get"}, {"key", "k" + std::to_string(i)}}}, {"expect", {{"value", i}}}});
  }
  result r = script(a.tcp(), gets);
  INFO(r.out, r.err);
  CHECK(r.status == 0);
  CHECK(a.stop() == 0);
}
