// grovectl's commands, output and exit codes.
#include "apps_support.hpp"

#include <doctest/doctest.h>

#include <csignal>
#include <fstream>

using namespace apps_test;

TEST_CASE("call prints the reply; cast returns once the daemon has it") {
  groved d;
  result put = grovectl(d.tcp(), {"cast", R"({"op":"put","key":"k","value":[1,2]})"});
  CHECK(put.status == 0);
  CHECK(put.out.empty());
  result got = grovectl(d.tcp(), {"call", R"({"op":"get","key":"k"})"});
  CHECK(got.status == 0);
  CHECK(json::parse(got.out) == json{{"ok", true}, {"value", {1, 2}}});
  CHECK(got.err.empty());
  CHECK(d.stop() == 0);
}

TEST_CASE("exit codes: remote error, bad input, expectation, timeout") {
  groved d;
  result r = grovectl(d.tcp(), {"call", R"({"op":"get","key":"missing"})"});
  CHECK(r.status == 1);
  CHECK(json::parse(r.out)["error"]["code"] == "not_found");
  CHECK(r.err == "grovectl: not_found: no key 'missing'\n");

  for (const auto& args : std::vector<std::vector<std::string>>{
           {"call", "{not json"}, {"call"}, {"call", "{}", "{}"}, {"launch", "{}"}, {"--port", "x", "call", "{}"},
           {"--timeout", "0", "call", "{}"}, {"--bogus", "call", "{}"}, {}}) {
    std::vector<std::string> flags = d.tcp();
    r = grovectl(args.size() > 1 && args[0] == "--port" ? std::vector<std::string>{} : flags, args);
    const std::string first = args.empty() ? "(none)" : args[0];
    INFO(first, " ", r.err);
    CHECK(r.status == 2);
    CHECK(r.err.rfind("grovectl: ", 0) == 0);
  }

  r = script(d.tcp(), {json{{"call", {{"op", "ping"}}}}, json("not an object")});
  CHECK(r.status == 2);
  CHECK(r.err.find("script line 2") != std::string::npos);
  CHECK(json_lines(r.out).size() == 1); // the first step ran

  r = script(d.tcp(), {json{{"jump", 1}}});
  CHECK(r.status == 2);

  r = script(d.tcp(), {json{{"call", {{"op", "get"}, {"key", "missing"}}}}});
  CHECK(r.status == 1); // an error reply with no "expect"

  r = script(d.tcp(), {json{{"call", {{"op", "ping"}}}, {"expect", {{"pong", false}}}}});
  CHECK(r.status == 6);
  CHECK(r.err.find("expected {\"pong\":false}") != std::string::npos);

  r = script(d.tcp(), {json{{"expect_push", json::object()}, {"timeout_ms", 200}}});
  CHECK(r.status == 5);
  CHECK(r.err.find("no push within 200 ms") != std::string::npos);
  CHECK(d.stop() == 0);
}

TEST_CASE("cannot connect: exit code 3 with the reason") {
  std::uint16_t port = 0;
  {
    groved d({"--tls.enabled=false"});
    port = d.tcp_port();
    CHECK(d.stop() == 0);
  }
  result r = grovectl({"--port", std::to_string(port)}, {"call", R"({"op":"ping"})"});
  INFO(r.err);
  CHECK(r.status == 3);
  CHECK(r.err.find("Connection refused") != std::string::npos);

  // Plain TCP to the TLS listener: the daemon drops it.
  groved d;
  r = grovectl({"--port", std::to_string(d.tls_port())}, {"call", R"({"op":"ping"})"});
  INFO(r.err);
  CHECK(r.status == 3);
  CHECK(d.stop() == 0);
}

namespace {

// Waits (bounded) until the daemon counts `n` subscriptions over all clients.
bool wait_subscriptions(groved& d, int n) {
  for (int attempt = 0; attempt < 300; ++attempt) {
    result s = grovectl(d.tcp(), {"call", R"({"op":"stats"})"});
    if (s.status == 0 && json::parse(s.out)["subscriptions"] == n) return true;
  }
  return false;
}

} // namespace

TEST_CASE("subscribe prints each push as a JSON line until stopped") {
  groved d;
  std::vector<std::string> argv{grovectl_path(), "--port", std::to_string(d.tcp_port()), "subscribe", "news"};
  child sub(argv);
  REQUIRE(wait_subscriptions(d, 1));
  result w = script(d.tcp(), {json{{"call", {{"op", "put"}, {"key", "news/1"}, {"value", "a"}}}},
                              json{{"call", {{"op", "put"}, {"key", "other"}, {"value", "x"}}}},
                              json{{"call", {{"op", "put"}, {"key", "news/2"}, {"value", "b"}}}}});
  CHECK(w.status == 0);
  REQUIRE(sub.wait_stdout("news/2", 30s));
  sub.signal(SIGTERM);
  CHECK(sub.wait() == std::optional<int>(0));
  std::vector<json> lines = json_lines(sub.out());
  REQUIRE(lines.size() == 2);
  CHECK(lines[0] == json{{"topic", "news"}, {"event", "put"}, {"key", "news/1"}, {"value", "a"}});
  CHECK(lines[1] == json{{"topic", "news"}, {"event", "put"}, {"key", "news/2"}, {"value", "b"}});
  CHECK(wait_subscriptions(d, 0)); // its session ended and took its subscription along
  CHECK(d.stop() == 0);
}

TEST_CASE("subscribe --count N exits after N pushes; a daemon gone past --retry-for is exit code 3") {
  groved d;
  std::vector<std::string> argv{grovectl_path(), "--port", std::to_string(d.tcp_port()), "subscribe", "t", "--count", "1"};
  child one(argv);
  std::vector<std::string> argv2{grovectl_path(), "--port", std::to_string(d.tcp_port()), "subscribe", "t",
                                 "--retry-for", "300"};
  child forever(argv2);
  REQUIRE(wait_subscriptions(d, 2));
  CHECK(grovectl(d.tcp(), {"call", R"({"op":"incr","key":"t"})"}).status == 0);
  CHECK(one.wait(30s) == std::optional<int>(0));
  CHECK(json_lines(one.out()) == std::vector<json>{json{{"topic", "t"}, {"event", "incr"}, {"key", "t"}, {"value", 1}}});
  REQUIRE(forever.wait_stdout("incr", 30s));
  CHECK(d.stop() == 0);
  CHECK(forever.wait(30s) == std::optional<int>(3));
  INFO("grovectl's stderr: " << forever.err());
  CHECK(forever.err().find("connection lost and not made again within 300 ms (--retry-for)") != std::string::npos);
  CHECK(forever.out().find(R"("link":"down")") != std::string::npos);
}

TEST_CASE("subscribe rides out a SIGKILL and restart of the daemon: it subscribes again and prints the gap") {
  std::optional<groved> d;
  d.emplace(std::vector<std::string>{"--tls.enabled=false"});
  const std::uint16_t port = d->tcp_port();
  child sub({grovectl_path(), "--port", std::to_string(port), "subscribe", "room"});
  REQUIRE(wait_subscriptions(*d, 1));
  REQUIRE(grovectl(d->tcp(), {"call", R"({"op":"put","key":"room/1","value":"before"})"}).status == 0);
  REQUIRE(sub.wait_stdout("before"));
  d->process().signal(SIGKILL);
  REQUIRE(d->process().wait() == std::optional<int>(128 + SIGKILL));
  REQUIRE(sub.wait_stdout(R"("link":"down")"));
  d.emplace(std::vector<std::string>{"--tls.enabled=false", "--tcp.port=" + std::to_string(port)});
  REQUIRE(sub.wait_stdout(R"("link":"up")"));
  REQUIRE(wait_subscriptions(*d, 1)); // subscribed again, by itself
  REQUIRE(grovectl(d->tcp(), {"call", R"({"op":"put","key":"room/2","value":"after"})"}).status == 0);
  REQUIRE(sub.wait_stdout("after"));
  sub.signal(SIGTERM);
  CHECK(sub.wait() == std::optional<int>(0));
  // The pushes, in order, with the link lines between them: a down, then
  // an up (a connect that lands while the new daemon starts may add a
  // second pair, so the pairs are counted, not the lines).
  const std::vector<json> lines = json_lines(sub.out());
  INFO(sub.out());
  std::vector<std::string> pushes;
  std::string links;
  for (const json& line : lines) {
    if (line.contains("link")) {
      links += line["link"].get<std::string>() == "down" ? "D" : "U";
      if (line["link"] == "down") CHECK(line["reason"].is_string());
      if (line["link"] == "up") CHECK(line["gap_ms"].get<std::int64_t>() >= 0);
    } else {
      pushes.push_back(line["value"].get<std::string>());
    }
  }
  CHECK(pushes == std::vector<std::string>{"before", "after"});
  REQUIRE(lines.size() >= 4);
  CHECK(lines.front()["value"] == "before");
  CHECK(lines.back()["value"] == "after");
  CHECK(links.size() % 2 == 0);
  for (std::size_t i = 0; i < links.size(); ++i) CHECK(links[i] == (i % 2 == 0 ? 'D' : 'U'));
  CHECK(d->stop() == 0);
}

TEST_CASE("tenant: groved's tenant ops as words, each command with the certificate it is given") {
  temp_dir dir;
  const std::string policy = dir.file("access.json");
  std::ofstream(policy) << json{{"format", "groved-access"},
                          {"version", 1},
                          {"identities",
                           {{"subject:/CN=grove test client", {{"role", "admin"}}},
                            {"URI:grove://tenant/a", {{"role", "write"}, {"tenant", "a"}}}}}}
                               .dump();
  groved d({"--access.policy=" + policy});
  auto as = [&](const std::string& who) {
    return std::vector<std::string>{"--port", std::to_string(d.tls_port()), "--ca", certs_dir() + "/ca.pem", "--cert",
                                    certs_dir() + "/" + who + ".pem", "--key", certs_dir() + "/" + who + ".key"};
  };
  result r = grovectl(as("client"), {"tenant", "install", "a", R"({"max_keys":1})"});
  INFO(r.out, r.err);
  REQUIRE(r.status == 0);
  CHECK(json::parse(r.out)["tenant"]["state"] == "running");
  CHECK(grovectl(as("tenant-a"), {"call", R"({"op":"put","key":"x","value":1})"}).status == 0);
  r = grovectl(as("tenant-a"), {"call", R"({"op":"put","key":"y","value":1})"});
  CHECK(r.status == 1); // a's own limit
  CHECK(r.err.find("store_full") != std::string::npos);
  r = grovectl(as("client"), {"tenant", "update", "a", R"({"max_keys":2})"});
  CHECK(r.status == 0);
  CHECK(grovectl(as("tenant-a"), {"call", R"({"op":"put","key":"y","value":1})"}).status == 0);
  r = grovectl(as("client"), {"tenant", "get", "a"});
  CHECK(json::parse(r.out)["tenant"]["keys"] == 2);
  r = grovectl(as("client"), {"tenant", "list"});
  CHECK(json::parse(r.out)["tenants"].size() == 2); // a and default
  // Only an admin: tenant-a's certificate is refused for the same command.
  r = grovectl(as("tenant-a"), {"tenant", "list"});
  CHECK(r.status == 1);
  CHECK(r.err.find("forbidden: op 'tenant.list' needs role admin") != std::string::npos);
  CHECK(grovectl(as("client"), {"tenant", "uninstall", "a"}).status == 0);
  r = grovectl(as("client"), {"tenant", "get", "a"});
  CHECK(r.status == 1);
  CHECK(r.err.find("not_found") != std::string::npos);
  r = grovectl(as("client"), {"tenant", "update", "a"});
  CHECK(r.status == 2);
  CHECK(r.err.find("tenant update: expected ID CONFIG") != std::string::npos);
  CHECK(grovectl(as("client"), {"tenant", "rename"}).status == 2);
  CHECK(d.stop() == 0);
}

TEST_CASE("--help documents commands, flags, steps and exit codes") {
  result r = run({grovectl_path(), "--help"});
  CHECK(r.status == 0);
  for (const char* text : {"call JSON", "cast JSON", "subscribe TOPIC", "script [FILE]", "--tls", "--ca FILE",
                           "--cert FILE", "--key FILE", "--identifier ID", "--timeout MS", "expect_push", "sleep_ms",
                           "3 cannot connect", "4 TLS failure", "5 timeout"}) {
    CHECK_MESSAGE(r.out.find(text) != std::string::npos, text);
  }
}
