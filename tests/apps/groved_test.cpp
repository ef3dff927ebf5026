// groved, driven by grovectl script: every operation, pushes, bad requests,
// configuration, TLS, snapshots, signals.
#include "apps_support.hpp"

#include <doctest/doctest.h>

#include <csignal>
#include <sched.h>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

using namespace apps_test;

namespace {

json call(json request, json expect) { return json{{"call", std::move(request)}, {"expect", std::move(expect)}}; }

// The replies of a script run, in order (pushes left out).
std::vector<json> replies(const result& r) {
  std::vector<json> out;
  for (auto& line : json_lines(r.out)) {
    if (line.contains("reply")) out.push_back(line["reply"]);
  }
  return out;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
}

} // namespace

TEST_CASE("every operation answers as documented") {
  groved d;
  result r = script(d.tcp(), {
      call({{"op", "ping"}}, {{"ok", true}, {"pong", true}}),
      call({{"op", "ping"}, {"data", {1, "two"}}}, {{"ok", true}, {"data", {1, "two"}}}),
      call({{"op", "put"}, {"key", "user/1"}, {"value", {{"name", "ada"}}}}, {{"ok", true}, {"created", true}}),
      call({{"op", "put"}, {"key", "user/1"}, {"value", {{"name", "ada l"}}}}, {{"ok", true}, {"created", false}}),
      call({{"op", "get"}, {"key", "user/1"}}, {{"ok", true}, {"value", {{"name", "ada l"}}}}),
      call({{"op", "put"}, {"key", "user/2"}, {"value", nullptr}}, {{"ok", true}}),
      call({{"op", "get"}, {"key", "user/2"}}, {{"ok", true}, {"value", nullptr}}),
      call({{"op", "get"}, {"key", "nobody"}}, {{"ok", false}, {"error", {{"code", "not_found"}}}}),
      call({{"op", "incr"}, {"key", "hits"}}, {{"ok", true}, {"value", 1}}),
      call({{"op", "incr"}, {"key", "hits"}, {"by", 41}}, {{"ok", true}, {"value", 42}}),
      call({{"op", "incr"}, {"key", "hits"}, {"by", -2}}, {{"ok", true}, {"value", 40}}),
      call({{"op", "incr"}, {"key", "user/1"}}, {{"ok", false}, {"error", {{"code", "wrong_type"}}}}),
      call({{"op", "put"}, {"key", "big"}, {"value", 9223372036854775807LL}}, {{"ok", true}}),
      call({{"op", "incr"}, {"key", "big"}}, {{"ok", false}, {"error", {{"code", "overflow"}}}}),
      call({{"op", "get"}, {"key", "big"}}, {{"ok", true}, {"value", 9223372036854775807LL}}),
      call({{"op", "keys"}, {"prefix", "user/"}}, {{"ok", true}, {"keys", {"user/1", "user/2"}}, {"truncated", false}}),
      call({{"op", "keys"}}, {{"ok", true}, {"keys", {"big", "hits", "user/1", "user/2"}}}),
      call({{"op", "keys"}, {"limit", 3}}, {{"ok", true}, {"keys", {"big", "hits", "user/1"}}, {"truncated", true}}),
      call({{"op", "delete"}, {"key", "user/2"}}, {{"ok", true}, {"deleted", true}}),
      call({{"op", "delete"}, {"key", "user/2"}}, {{"ok", true}, {"deleted", false}}),
      call({{"op", "get"}, {"key", "user/2"}}, {{"ok", false}, {"error", {{"code", "not_found"}}}}),
      json{{"cast", {{"op", "incr"}, {"key", "hits"}, {"by", 10}}}},
      call({{"op", "get"}, {"key", "hits"}}, {{"ok", true}, {"value", 50}}),
      call({{"op", "stats"}}, {{"ok", true}, {"keys", 3}, {"connections", 1}, {"casts", 1}}),
  });
  INFO(r.out, r.err);
  CHECK(r.status == 0);
  auto all = replies(r);
  REQUIRE(all.size() == 23);
  CHECK(all.back()["calls"].get<int>() == 23);
  CHECK(all.back()["uptime_ms"].is_number());
  CHECK(d.stop() == 0);
}

TEST_CASE("incr is atomic across concurrent clients") {
  groved d;
  std::vector<std::unique_ptr<child>> clients;
  std::string input;
  for (int i = 0; i < 200; ++i) input += json{{"call", {{"op", "incr"}, {"key", "shared"}}}}.dump() + "\n";
  for (int c = 0; c < 4; ++c) {
    std::vector<std::string> argv{grovectl_path(), "--port", std::to_string(d.tcp_port()), "script"};
    clients.push_back(std::make_unique<child>(argv, true));
    clients.back()->write_stdin(input);
    clients.back()->close_stdin();
  }
  for (auto& c : clients) CHECK(c->wait() == std::optional<int>(0));
  result r = script(d.tcp(), {call({{"op", "get"}, {"key", "shared"}}, {{"value", 800}})});
  INFO(r.out, r.err);
  CHECK(r.status == 0);
}

TEST_CASE("subscribers get pushes for their topic and the keys under it") {
  groved d;
  // The subscriber prints its subscribe reply once it is subscribed; only then does the writer start.
  std::vector<std::string> argv{grovectl_path(), "--port", std::to_string(d.tcp_port()), "--timeout", "20000", "script"};
  child subscriber(argv, true);
  subscriber.write_stdin(json{{"call", {{"op", "subscribe"}, {"topic", "room"}}}}.dump() + "\n" +
                         json{{"expect_push", {{"topic", "room"}, {"event", "put"}, {"key", "room/a"}, {"value", 1}}}}.dump() + "\n" +
                         json{{"expect_push", {{"event", "incr"}, {"key", "room/b/c"}, {"value", 5}}}}.dump() + "\n" +
                         json{{"expect_push", {{"event", "delete"}, {"key", "room/a"}}}}.dump() + "\n" +
                         json{{"expect_push", {{"event", "put"}, {"key", "room"}}}}.dump() + "\n");
  subscriber.close_stdin();
  REQUIRE(subscriber.wait_stdout("\"topic\":\"room\"", 30s));

  result w = script(d.tcp(), {
      call({{"op", "put"}, {"key", "roomy"}, {"value", 0}}, {{"ok", true}}), // not under "room"
      call({{"op", "put"}, {"key", "room/a"}, {"value", 1}}, {{"ok", true}}),
      call({{"op", "incr"}, {"key", "room/b/c"}, {"by", 5}}, {{"ok", true}}),
      call({{"op", "delete"}, {"key", "room/a"}}, {{"ok", true}}),
      call({{"op", "put"}, {"key", "room"}, {"value", "itself"}}, {{"ok", true}}),
  });
  INFO(w.out, w.err);
  CHECK(w.status == 0);
  CHECK(subscriber.wait(30s) == std::optional<int>(0));
  INFO(subscriber.out(), subscriber.err());
  CHECK(subscriber.out().find("roomy") == std::string::npos);
  CHECK(d.stop() == 0);
}

TEST_CASE("unsubscribe stops the pushes; a client's own writes are pushed before their reply") {
  groved d;
  result r = script(d.tcp(), {
      call({{"op", "subscribe"}, {"topic", "a"}}, {{"ok", true}}),
      call({{"op", "subscribe"}, {"topic", "b"}}, {{"ok", true}}),
      call({{"op", "put"}, {"key", "a/1"}, {"value", 1}}, {{"ok", true}}),
      json{{"expect_push", {{"topic", "a"}, {"key", "a/1"}}}},
      call({{"op", "unsubscribe"}, {"topic", "a"}}, {{"ok", true}, {"was_subscribed", true}}),
      call({{"op", "unsubscribe"}, {"topic", "a"}}, {{"ok", true}, {"was_subscribed", false}}),
      call({{"op", "put"}, {"key", "a/2"}, {"value", 2}}, {{"ok", true}}),
      call({{"op", "put"}, {"key", "b/1"}, {"value", 3}}, {{"ok", true}}),
      // Had a/2 been pushed, it would be the next push: it was sent before a/2's reply.
      json{{"expect_push", {{"topic", "b"}, {"key", "b/1"}, {"value", 3}}}},
  });
  INFO(r.out, r.err);
  CHECK(r.status == 0);
  CHECK(d.stop() == 0);
}

TEST_CASE("bad requests get JSON errors and the connection stays usable") {
  groved d({"--max_key_bytes=8", "--max_subscriptions=1", "--max_keys=2"});
  auto bad = [](json request, const char* code) {
    return call(std::move(request), {{"ok", false}, {"error", {{"code", code}}}});
  };
  result r = script(d.tcp(), {
      bad({{"op", "fly"}}, "unknown_op"),
      bad({{"nop", "get"}}, "bad_request"),
      bad(json::array({"get", "k"}), "bad_request"),
      bad("get", "bad_request"),
      bad({{"op", 7}}, "bad_request"),
      bad({{"op", "get"}}, "bad_request"),
      bad({{"op", "get"}, {"key", 12}}, "bad_request"),
      bad({{"op", "get"}, {"key", ""}}, "bad_request"),
      bad({{"op", "get"}, {"key", "longer-than-8"}}, "bad_request"),
      bad({{"op", "put"}, {"key", "k"}}, "bad_request"),
      bad({{"op", "incr"}, {"key", "k"}, {"by", "1"}}, "bad_request"),
      bad({{"op", "incr"}, {"key", "k"}, {"by", 1.5}}, "bad_request"),
      bad({{"op", "keys"}, {"limit", 0}}, "bad_request"),
      bad({{"op", "keys"}, {"prefix", 3}}, "bad_request"),
      bad({{"op", "subscribe"}}, "bad_request"),
      call({{"op", "subscribe"}, {"topic", "t1"}}, {{"ok", true}}),
      bad({{"op", "subscribe"}, {"topic", "t2"}}, "too_many_subscriptions"),
      call({{"op", "put"}, {"key", "k1"}, {"value", 1}}, {{"ok", true}}),
      call({{"op", "put"}, {"key", "k2"}, {"value", 2}}, {{"ok", true}}),
      bad({{"op", "put"}, {"key", "k3"}, {"value", 3}}, "store_full"),
      call({{"op", "put"}, {"key", "k2"}, {"value", 4}}, {{"ok", true}, {"created", false}}),
      call({{"op", "ping"}}, {{"ok", true}}),
  });
  INFO(r.out, r.err);
  CHECK(r.status == 0);
  for (const auto& reply : replies(r)) {
    if (reply["ok"] == false) CHECK(reply["error"]["message"].get<std::string>().size() > 5);
  }
  CHECK(d.stop() == 0);
}

TEST_CASE("a keys reply is cut short to fit the frame size clients accept") {
  groved d({"--max_payload=1024"});
  std::vector<json> steps;
  for (int i = 0; i < 40; ++i) {
    char key[32];
    std::snprintf(key, sizeof key, "key-number-%04d-padding", i);
    steps.push_back(call({{"op", "put"}, {"key", key}, {"value", i}}, {{"ok", true}}));
  }
  steps.push_back(call({{"op", "keys"}}, {{"ok", true}, {"truncated", true}}));
  steps.push_back(call({{"op", "keys"}, {"prefix", "key-number-000"}}, {{"ok", true}, {"truncated", false}}));
  result r = script(d.tcp(), steps);
  INFO(r.out, r.err);
  REQUIRE(r.status == 0);
  auto all = replies(r);
  const auto& cut = all.at(40)["keys"];
  CHECK(cut.size() > 5);
  CHECK(cut.size() < 40);
  CHECK(cut[0] == "key-number-0000-padding"); // sorted, cut at the end
  CHECK(all.at(41)["keys"].size() == 10);
  CHECK(d.stop() == 0);
}

TEST_CASE("bad configuration values name the key and the expected form") {
  temp_dir dir;
  struct bad_case {
    std::vector<std::string> args;
    std::string says;
  };
  write_file(dir.file("typo.json"), R"({"tcp": {"prot": 1}})");
  write_file(dir.file("type.json"), R"({"tcp": {"port": "7400"}})");
  write_file(dir.file("broken.json"), R"({"tcp": )");
  const std::vector<bad_case> cases{
      {{"--tcp.port=abc"}, "tcp.port: expected an integer from 0 to 65535, got \"abc\""},
      {{"--tcp.port=70000"}, "tcp.port: expected an integer from 0 to 65535, got 70000"},
      {{"--log.level=loud"}, "log.level: expected one of"},
      {{"--log.format=xml"}, "log.format: expected \"logfmt\" or \"json\""},
      {{"--tls.enabled=maybe"}, "tls.enabled: expected true or false"},
      {{"--workers=-1"}, "workers: expected an integer from 0 to 256"},
      {{"--keepalive_interval_ms=5000", "--keepalive_timeout_ms=4000"}, "keepalive_timeout_ms: expected more than"},
      {{"--tcp.enabled=false", "--tls.enabled=false"}, "at least one listener"},
      {{"--no-such-option=1"}, "--no-such-option: unknown option"},
      {{"--tcp.port"}, "--tcp.port: expected a value"},
      {{"--config", dir.file("typo.json")}, "unknown key 'tcp.prot'"},
      {{"--config", dir.file("type.json")}, "tcp.port: expected an integer from 0 to 65535, got \"7400\""},
      {{"--config", dir.file("broken.json")}, "is not valid JSON"},
      {{"--config", dir.file("missing.json")}, "cannot read"},
      {{"--tls.certificate", dir.file("nope.pem")}, "tls.certificate: cannot read"},
  };
  for (const auto& c : cases) {
    std::vector<std::string> argv{groved_path()};
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    result r = run(argv);
    INFO(c.args[0], " -> ", r.err);
    CHECK(r.status == 2);
    CHECK(r.err.find(c.says) != std::string::npos);
    CHECK(r.err.find('\n') == r.err.size() - 1); // one line
  }
}

TEST_CASE("--help lists every option with its default; a file and flags combine, flags win") {
  result help = run({groved_path(), "--help"});
  CHECK(help.status == 0);
  for (const char* key : {"--tcp.port (7400)", "--tls.port (7401)", "--tls.certificate", "--identifier (\"\")",
                          "--workers (0)", "--max_connections (10000)", "--log.level (\"info\")",
                          "--log.format (\"logfmt\")", "--data_path (\"\")", "--shutdown_timeout_ms (5000)"}) {
    CHECK_MESSAGE(help.out.find(key) != std::string::npos, key);
  }

  temp_dir dir;
  write_file(dir.file("groved.json"), R"({"identifier": "from-file", "tls": {"enabled": false}, "log": {"level": "warning"}})");
  result printed = run({groved_path(), "--config", dir.file("groved.json"), "--identifier=from-flag", "--print-config"});
  REQUIRE(printed.status == 0);
  json effective = json::parse(printed.out);
  CHECK(effective["identifier"] == "from-flag");
  CHECK(effective["tls"]["enabled"] == false);
  CHECK(effective["log"]["level"] == "warning");

  groved d({"--config", dir.file("groved.json"), "--identifier=from-flag"});
  CHECK(d.tls_port() == 0); // TLS off, from the file
  std::vector<std::string> with_flag = d.tcp();
  with_flag.insert(with_flag.end(), {"--identifier", "from-flag"});
  CHECK(grovectl(with_flag, {"call", R"({"op":"ping"})"}).status == 0);
  std::vector<std::string> with_file = d.tcp();
  with_file.insert(with_file.end(), {"--identifier", "from-file"});
  result refused = grovectl(with_file, {"call", R"({"op":"ping"})"});
  INFO(refused.err);
  CHECK(refused.status == 1); // the daemon answers frames with the wrong identifier with an error
  CHECK(refused.err.find("identifier") != std::string::npos);
  CHECK(d.stop() == 0);
  // Warning level from the file: the refused frame is logged, the info events are not.
  CHECK(d.process().err().find("\"level\":\"warning\"") != std::string::npos);
  CHECK(d.process().err().find("\"level\":\"info\"") == std::string::npos);
}

TEST_CASE("logs are one JSON object per line with ts, level and event") {
  groved d;
  CHECK(grovectl(d.tcp(), {"call", R"({"op":"ping"})"}).status == 0);
  CHECK(d.stop() == 0);
  int lines = 0;
  for (const auto& line : json_lines(d.process().err())) {
    CHECK(line.contains("ts"));
    CHECK(line.contains("level"));
    CHECK(line.contains("event"));
    ++lines;
  }
  CHECK(lines >= 4);
  const std::string err = d.process().err();
  for (const char* event : {"\"event\":\"ready\"", "\"event\":\"listening\"", "\"event\":\"stopping\"",
                            "\"event\":\"exit\"", "\"listener\":\"tcp\"", "\"listener\":\"tls\""}) {
    CHECK_MESSAGE(err.find(event) != std::string::npos, event);
  }

  // logfmt, the default.
  std::vector<std::string> argv{groved_path(), "--tcp.port=0", "--tls.enabled=false"};
  child plain(argv);
  REQUIRE(plain.wait_stdout("\n"));
  plain.signal(SIGINT);
  CHECK(plain.wait() == std::optional<int>(0));
  CHECK(plain.err().find("level=info event=ready") != std::string::npos);
  CHECK(plain.err().find("event=stopping signal=SIGINT") != std::string::npos);
}

TEST_CASE("workers = 0 starts one worker and one shard per CPU groved may use, not per CPU of the machine") {
  // Pinned to one CPU (taskset, as a container's cpuset does), groved must
  // not start a worker per core of the machine.
  const int cpu = sched_getcpu(); // one this process may use: it runs there
  REQUIRE(cpu >= 0);
  groved d({"--workers=0", "--shards=0"}, {"taskset", "-c", std::to_string(cpu)});
  CHECK(d.stop() == 0);
  bool seen = false;
  for (const auto& line : json_lines(d.process().err())) {
    if (line.value("event", "") != "ready") continue;
    seen = true;
    CHECK(line.value("workers", json()) == json(1));
    CHECK(line.value("shards", json()) == json(1));
  }
  CHECK(seen);
}

TEST_CASE("the snapshot survives a restart; a damaged one stops the start") {
  temp_dir dir;
  const std::string data = "--data_path=" + dir.file("store.json");
  {
    groved d({data});
    result r = script(d.tcp(), {
        call({{"op", "put"}, {"key", "config/mode"}, {"value", {{"fast", true}}}}, {{"ok", true}}),
        call({{"op", "incr"}, {"key", "visits"}, {"by", 7}}, {{"ok", true}}),
        call({{"op", "put"}, {"key", "gone"}, {"value", 1}}, {{"ok", true}}),
        call({{"op", "delete"}, {"key", "gone"}}, {{"ok", true}}),
        json{{"cast", {{"op", "put"}, {"key", "cast"}, {"value", "kept"}}}},
    });
    INFO(r.out, r.err);
    REQUIRE(r.status == 0);
    CHECK(d.stop() == 0);
    CHECK(d.process().err().find("snapshot_written") != std::string::npos);
  }
  CHECK_FALSE(std::filesystem::exists(dir.file("store.json.tmp")));
  {
    groved d({data, "--workers=1", "--shards=3"}); // a different shard count reads the same file
    result r = script(d.tcp(), {
        call({{"op", "get"}, {"key", "config/mode"}}, {{"value", {{"fast", true}}}}),
        call({{"op", "get"}, {"key", "visits"}}, {{"value", 7}}),
        call({{"op", "get"}, {"key", "gone"}}, {{"ok", false}}),
        call({{"op", "get"}, {"key", "cast"}}, {{"value", "kept"}}),
        call({{"op", "stats"}}, {{"keys", 3}}),
    });
    INFO(r.out, r.err);
    CHECK(r.status == 0);
    CHECK(d.stop() == 0);
  }
  write_file(dir.file("store.json"), read_file(dir.file("store.json")).substr(0, 20));
  result damaged = run({groved_path(), "--tcp.port=0", "--tls.enabled=false", data});
  CHECK(damaged.status == 1);
  CHECK(damaged.err.find("snapshot_unreadable") != std::string::npos);
  CHECK(damaged.err.find("store.json") != std::string::npos);
  CHECK(read_file(dir.file("store.json")).size() == 20); // left as it was
}

TEST_CASE("mutual TLS: served with a client certificate, refused without or from another CA") {
  groved d;
  CHECK(grovectl(d.tls(), {"call", R"({"op":"ping"})"}).status == 0);

  std::vector<std::string> no_cert{"--port", std::to_string(d.tls_port()), "--ca", certs_dir() + "/ca.pem", "--no-cert"};
  result r = grovectl(no_cert, {"call", R"({"op":"ping"})"});
  INFO(r.err);
  CHECK(r.status == 4);
  CHECK(r.err.rfind("grovectl: ", 0) == 0);

  std::vector<std::string> other{"--port", std::to_string(d.tls_port()), "--ca", certs_dir() + "/ca.pem", "--cert",
                                 certs_dir() + "/other-client.pem", "--key", certs_dir() + "/other-client.key"};
  r = grovectl(other, {"call", R"({"op":"ping"})"});
  INFO(r.err);
  CHECK(r.status == 4);

  std::vector<std::string> wrong_ca = d.tls();
  wrong_ca[3] = certs_dir() + "/other-ca.pem";
  r = grovectl(wrong_ca, {"call", R"({"op":"ping"})"});
  INFO(r.err);
  CHECK(r.status == 4);
  CHECK(r.err.find("certificate verify failed") != std::string::npos);

  // The daemon logged each refusal and still serves.
  CHECK(d.process().err().find("handshake_failed") != std::string::npos);
  CHECK(grovectl(d.tls(), {"call", R"({"op":"ping"})"}).status == 0);
  CHECK(d.stop() == 0);
}

TEST_CASE("one-way TLS when client certificates are not required") {
  groved d({"--tls.require_client_certificate=false"});
  std::vector<std::string> no_cert{"--port", std::to_string(d.tls_port()), "--ca", certs_dir() + "/ca.pem", "--no-cert"};
  result r = grovectl(no_cert, {"call", R"({"op":"ping"})"});
  INFO(r.err);
  CHECK(r.status == 0);
  CHECK(d.stop() == 0);
}

TEST_CASE("SIGHUP reloads the TLS files; a bad file is refused and the old one kept") {
  temp_dir dir;
  std::filesystem::copy_file(certs_dir() + "/server.pem", dir.file("server.pem"));
  std::filesystem::copy_file(certs_dir() + "/server.key", dir.file("server.key"));
  std::filesystem::copy_file(certs_dir() + "/ca.pem", dir.file("ca.pem"));
  groved d({"--tls.certificate=" + dir.file("server.pem"), "--tls.private_key=" + dir.file("server.key"),
            "--tls.ca=" + dir.file("ca.pem")});
  CHECK(grovectl(d.tls(), {"call", R"({"op":"ping"})"}).status == 0);

  write_file(dir.file("server.pem"), "not a certificate\n");
  d.process().signal(SIGHUP);
  REQUIRE(d.process().wait_stderr("tls_reload_failed"));
  CHECK(grovectl(d.tls(), {"call", R"({"op":"ping"})"}).status == 0);

  // Trust the other CA instead: its clients get in, ours no longer do.
  std::filesystem::copy_file(certs_dir() + "/server.pem", dir.file("server.pem"),
                             std::filesystem::copy_options::overwrite_existing);
  std::filesystem::copy_file(certs_dir() + "/other-ca.pem", dir.file("ca.pem"),
                             std::filesystem::copy_options::overwrite_existing);
  d.process().signal(SIGHUP);
  REQUIRE(d.process().wait_stderr("tls_reloaded"));
  std::vector<std::string> other{"--port", std::to_string(d.tls_port()), "--ca", certs_dir() + "/ca.pem", "--cert",
                                 certs_dir() + "/other-client.pem", "--key", certs_dir() + "/other-client.key"};
  CHECK(grovectl(other, {"call", R"({"op":"ping"})"}).status == 0);
  CHECK(grovectl(d.tls(), {"call", R"({"op":"ping"})"}).status == 4);
  CHECK(d.stop() == 0);
}

TEST_CASE("SIGTERM with calls in flight: every acknowledged write is in the snapshot") {
  temp_dir dir;
  const std::string data = "--data_path=" + dir.file("store.json");
  std::int64_t acknowledged = 0;
  {
    groved d({data});
    // 4 connections x 16 calls in flight, all incrementing one counter.
    std::vector<std::string> argv{grove_bench_path(), "--port", std::to_string(d.tcp_port()), "-c", "4", "-p", "16",
                                  "--op", "incr", "--same-key", "counter", "-d", "120", "-w", "1"};
    child bench(argv);
    REQUIRE(bench.wait_stderr("measuring", 60s));
    CHECK(d.stop() == 0);
    REQUIRE(bench.wait(60s).has_value());
    bench.finish_output();
    INFO(bench.out(), bench.err());
    std::vector<json> lines = json_lines(bench.out());
    REQUIRE_FALSE(lines.empty());
    acknowledged = lines.back()["ok"].get<std::int64_t>();
    CHECK(acknowledged > 0);
    CHECK(lines.back()["errors"].get<int>() > 0); // calls the daemon had not read when it stopped
    const std::string err = d.process().err();
    CHECK(err.find("\"event\":\"draining\"") != std::string::npos);
    CHECK(err.find("\"event\":\"snapshot_written\"") != std::string::npos);
  }
  groved d({data});
  result r = script(d.tcp(), {json{{"call", {{"op", "get"}, {"key", "counter"}}}}});
  REQUIRE(r.status == 0);
  const std::int64_t stored = json_lines(r.out).at(0)["reply"]["value"].get<std::int64_t>();
  INFO("acknowledged ", acknowledged, ", stored ", stored);
  CHECK(stored >= acknowledged);     // nothing acknowledged was lost
  CHECK(stored <= acknowledged + 64); // and at most the calls in flight were applied unanswered
  CHECK(d.stop() == 0);
}

TEST_CASE("grove-bench --keep-going rides out a SIGKILL and restart of groved, counting failures by kind") {
  std::optional<groved> d;
  d.emplace(std::vector<std::string>{"--tls.enabled=false"});
  const std::string port = std::to_string(d->tcp_port());
  child bench({grove_bench_path(), "--port", port, "-c", "4", "-p", "4", "--op", "incr", "-d", "4", "-w", "1",
               "--keep-going"});
  REQUIRE(bench.wait_stderr("measuring", 60s));
  d->process().signal(SIGKILL);
  REQUIRE(d->process().wait() == std::optional<int>(128 + SIGKILL));
  d.emplace(std::vector<std::string>{"--tls.enabled=false", "--tcp.port=" + port});
  REQUIRE(bench.wait(90s) == std::optional<int>(0));
  bench.finish_output();
  INFO(bench.out(), bench.err());
  const std::vector<json> lines = json_lines(bench.out());
  REQUIRE_FALSE(lines.empty());
  const json& summary = lines.back();
  CHECK(summary["ok"].get<std::int64_t>() > 0);
  CHECK(summary["reconnects"].get<std::int64_t>() >= 4); // every connection came back
  CHECK(summary["longest_gap_ms"].get<double>() > 0);
  std::int64_t by_kind = 0;
  for (const char* kind : {"disconnected", "timeout", "remote", "error_reply", "other"}) {
    REQUIRE(summary["errors_by_kind"].contains(kind));
    by_kind += summary["errors_by_kind"][kind].get<std::int64_t>();
  }
  CHECK(by_kind == summary["errors"].get<std::int64_t>());
  CHECK(bench.out().find("longest gap without a reply: ") != std::string::npos);
  // The restarted daemon served the run's second half.
  result stats = grovectl(d->tcp(), {"call", R"({"op":"stats"})"});
  REQUIRE(stats.status == 0);
  CHECK(json::parse(stats.out)["calls"].get<std::int64_t>() > 1);
  CHECK(d->stop() == 0);
}

namespace {

std::string deep_arrays(std::size_t depth) { return std::string(depth, '[') + "1" + std::string(depth, ']'); }

} // namespace

TEST_CASE("a value 100,000 levels deep is refused at the edge as a put, a call or a cast; the daemon and its data are unharmed") {
  temp_dir dir;
  groved d({"--data_path=" + dir.file("store.json")});
  REQUIRE(script(d.tcp(), {call({{"op", "put"}, {"key", "keep"}, {"value", "safe"}}, {{"ok", true}})}).status == 0);

  raw_connection hostile(d.tcp_port());
  const std::string deep = deep_arrays(100'000);
  REQUIRE(hostile.send(erps_frame(4, R"([1,{"op":"put","key":"deep","value":)" + deep + "}]")));
  auto refused = hostile.next_frame();
  REQUIRE(refused);
  CHECK(refused->type == 1);
  CHECK(refused->payload == R"x([1,"call payload nests deeper than 128 levels (max_depth)"])x");
  REQUIRE(hostile.send(erps_frame(4, "[2," + deep + "]")));
  refused = hostile.next_frame();
  REQUIRE(refused);
  CHECK(refused->payload == R"x([2,"call payload nests deeper than 128 levels (max_depth)"])x");
  REQUIRE(hostile.send(erps_frame(8, R"({"op":"put","key":"deep","value":)" + deep + "}")));
  refused = hostile.next_frame();
  REQUIRE(refused);
  CHECK(refused->payload == R"x("value payload nests deeper than 128 levels (max_depth)")x");
  // The same connection is still served.
  REQUIRE(hostile.send(erps_frame(4, R"([3,{"op":"get","key":"keep"}])")));
  auto answered = hostile.next_frame();
  REQUIRE(answered);
  CHECK(answered->type == 2);
  CHECK(json::parse(answered->payload) == json::array({{{"ok", true}, {"value", "safe"}}, 3}));

  // Through grovectl: within what it writes (1024), past what groved reads.
  const result too_deep = grovectl(d.tcp(), {"call", R"({"op":"put","key":"deep","value":)" + deep_arrays(200) + "}"});
  CHECK(too_deep.status == 1);
  CHECK(too_deep.err.find("call payload nests deeper than 128 levels (max_depth)") != std::string::npos);
  const result unwritable = grovectl(d.tcp(), {"call", R"({"op":"put","key":"deep","value":)" + deep_arrays(5000) + "}"});
  CHECK(unwritable.status == 2);
  CHECK(unwritable.err.find("nests deeper than 1024 levels") != std::string::npos);

  result r = script(d.tcp(), {call({{"op", "get"}, {"key", "deep"}}, {{"ok", false}, {"error", {{"code", "not_found"}}}}),
                              call({{"op", "get"}, {"key", "keep"}}, {{"value", "safe"}}),
                              call({{"op", "stats"}}, {{"keys", 1}})});
  INFO(r.out, r.err);
  CHECK(r.status == 0);
  CHECK(d.stop() == 0);
  CHECK(d.process().err().find("bad_payload") != std::string::npos);
  CHECK(read_file(dir.file("store.json")).find("\"keep\":\"safe\"") != std::string::npos);
}

TEST_CASE("a snapshot edited by hand to nest 100,000 levels deep is refused at start and left as it was") {
  temp_dir dir;
  const std::string text =
      R"({"format":"groved-snapshot","version":1,"keys":2,"data":{"ok":1,"deep":)" + deep_arrays(100'000) + "}}\n";
  write_file(dir.file("store.json"), text);
  result refused = run({groved_path(), "--tcp.port=0", "--tls.enabled=false", "--data_path=" + dir.file("store.json")});
  CHECK(refused.status == 1);
  CHECK(refused.err.find("snapshot_unreadable") != std::string::npos);
  CHECK(refused.err.find("snapshot nests deeper than 128 levels (max_depth)") != std::string::npos);
  CHECK(read_file(dir.file("store.json")) == text);
}

TEST_CASE("a client trickling one byte a second is closed at frame_timeout_ms with a log line; others are served") {
  groved d({"--frame_timeout_ms=2000", "--keepalive_timeout_ms=10000"});
  raw_connection slow(d.tcp_port());
  const std::string frame = erps_frame(4, R"([1,{"op":"ping"}])");
  std::size_t sent = 0;
  while (sent < frame.size() && !slow.closed_within(1000ms)) { // the wait for the close is the pacing
    REQUIRE(slow.send(frame.substr(sent, 1)));
    ++sent;
  }
  CHECK(sent < frame.size());
  CHECK(d.process().wait_stderr("\"event\":\"frame_timeout\""));
  CHECK(d.process().err().find("frame not complete within 2 s") != std::string::npos);
  CHECK(grovectl(d.tcp(), {"call", R"({"op":"ping"})"}).status == 0);
  CHECK(d.stop() == 0);
}

namespace {

std::size_t open_fds(pid_t p) {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator("/proc/" + std::to_string(p) + "/fd")) ++n;
  return n;
}

std::size_t rss_kib(pid_t p) {
  std::ifstream status("/proc/" + std::to_string(p) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoul(line.substr(6));
  }
  return 0;
}

// With one raw connection of ours open: waits (by round trips on it) until
// it is the only client, then counts the daemon's file descriptors.
std::size_t fds_with_one_client(groved& d, raw_connection& mine) {
  for (int attempt = 0; attempt < 1000; ++attempt) {
    REQUIRE(mine.send(erps_frame(4, R"([1,{"op":"stats"}])")));
    auto f = mine.next_frame();
    REQUIRE(f);
    if (json::parse(f->payload)[0]["connections"] == 1) return open_fds(d.process().pid());
  }
  FAIL("other clients never went away");
  return 0;
}

} // namespace

TEST_CASE("chaos under load: sessions killed, SIGHUP, SIGSTOP past the keepalive timeout; calls succeed or fail by name") {
  groved d({"--tls.enabled=false", "--debug.chaos_ops=true", "--keepalive_interval_ms=250", "--keepalive_timeout_ms=1000"});
  const std::string port = std::to_string(d.tcp_port());
  const pid_t daemon = d.process().pid();
  // The same load once first, so the allocator has grown to it before the baseline.
  result warm = run({grove_bench_path(), "--port", port, "-c", "16", "-p", "16", "-d", "2", "-w", "0"});
  REQUIRE(warm.status == 0);
  std::size_t baseline_fds = 0;
  std::size_t baseline_rss = 0;
  {
    raw_connection mine(d.tcp_port());
    baseline_fds = fds_with_one_client(d, mine);
    baseline_rss = rss_kib(daemon);
  }

  child bench({grove_bench_path(), "--port", port, "-c", "16", "-p", "16", "-d", "8", "-w", "1", "--keep-going"});
  REQUIRE(bench.wait_stderr("measuring", 60s));
  auto kill_some = [&] {
    result killed = grovectl(d.tcp(), {"call", R"({"op":"debug.kill_sessions","count":4})"});
    REQUIRE(killed.status == 0);
    CHECK(json::parse(killed.out)["killed"] == 4);
  };
  // The pauses between the blows are waits for the bench's exit: it must not end yet.
  kill_some();
  CHECK_FALSE(bench.wait(500ms));
  d.process().signal(SIGHUP);
  CHECK_FALSE(bench.wait(500ms));
  d.process().signal(SIGSTOP);
  CHECK_FALSE(bench.wait(1500ms)); // longer than the daemon's keepalive timeout (and the clients keep sending)
  d.process().signal(SIGCONT);
  CHECK_FALSE(bench.wait(500ms));
  kill_some();
  // Every call ends by its timeout (30 s) at the latest: the run ends in time.
  REQUIRE(bench.wait(60s) == std::optional<int>(0));
  bench.finish_output();
  INFO(bench.out(), bench.err());
  const json summary = json_lines(bench.out()).back();
  CHECK(summary["ok"].get<std::int64_t>() > 0);
  const json& kinds = summary["errors_by_kind"];
  CHECK(kinds["other"] == 0);   // every failure has a name
  CHECK(kinds["timeout"] == 0); // and none waited out its timeout
  CHECK(kinds["disconnected"].get<std::int64_t>() >= 1); // the killed sessions' calls in flight
  CHECK(summary["reconnects"].get<std::int64_t>() >= 8);

  const std::string err = d.process().err();
  CHECK(err.find("\"event\":\"sessions_killed\"") != std::string::npos);
  CHECK(err.find("\"event\":\"tls_reload_failed\"") == std::string::npos); // (no TLS listener: SIGHUP has nothing to reload)
  CHECK(err.find("peer_silent") == std::string::npos); // the stop was ours, not the clients' silence
  raw_connection mine(d.tcp_port());
  CHECK(fds_with_one_client(d, mine) == baseline_fds);
  const std::size_t rss = rss_kib(daemon);
  MESSAGE("RSS " << baseline_rss << " KiB before the chaos run, " << rss << " KiB after; fds " << baseline_fds);
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
  // (Not under a sanitizer: ASan keeps freed memory in quarantine, TSan its shadow.)
  CHECK(rss <= baseline_rss + 16 * 1024);
#endif
  CHECK(d.stop() == 0);
}

TEST_CASE("the admin endpoint serves groved's metrics, health and readiness; promtool accepts the metrics") {
  temp_dir dir;
  groved d({"--admin.enabled=true", "--admin.port=0", "--data_path=" + dir.file("store.json")});
  REQUIRE(d.admin_port() != 0);
  result calls = script(d.tcp(), {call({{"op", "put"}, {"key", "a"}, {"value", 1}}, {{"ok", true}}),
                                  call({{"op", "get"}, {"key", "a"}}, {{"ok", true}, {"value", 1}}),
                                  call({{"op", "get"}, {"key", "nobody"}}, {{"ok", false}})});
  CHECK(calls.status == 0);
  const std::string base = "http://127.0.0.1:" + std::to_string(d.admin_port());
  const result health = run({"curl", "-sS", base + "/healthz"});
  CHECK(health.out == "ok\n");
  const result ready = run({"curl", "-sS", base + "/readyz"});
  CHECK(ready.out == "ready\n");
  const result metrics = run({"curl", "-sS", base + "/metrics"});
  CHECK(metrics.out.find("groved_calls_total 3\n") != std::string::npos);
  // The store's figures, one series per tenant.
  CHECK(metrics.out.find("groved_keys{tenant=\"default\"} 1\n") != std::string::npos);
  CHECK(metrics.out.find("groved_wal_records_total{tenant=\"default\"} 1\n") != std::string::npos); // the put, stored before its reply
  CHECK(metrics.out.find("groved_wal_generation{tenant=\"default\"} 1\n") != std::string::npos);
  CHECK(metrics.out.find("groved_wal_write_failures_total{tenant=\"default\"} 0\n") != std::string::npos);
  CHECK(metrics.out.find("grove_tenants{node=\"1\",manager=\"groved\",state=\"running\"} 1\n") != std::string::npos);
  // grove's built-in metrics, the listener named by its section.
  CHECK(metrics.out.find("grove_erps_accepted_total{node=\"1\",daemon=\"tcp\"} 1\n") != std::string::npos);
  CHECK(metrics.out.find("grove_erps_calls_total{node=\"1\",daemon=\"tcp\"} 3\n") != std::string::npos);
  CHECK(metrics.out.find("grove_erps_call_duration_seconds_count{node=\"1\",daemon=\"tcp\"} 3\n") != std::string::npos);
  CHECK(metrics.out.find("grove_processes{node=\"1\"} ") != std::string::npos);
  CHECK(metrics.out.find("grove_registry_names{node=\"1\",") != std::string::npos);
  const result checked = run({"promtool", "check", "metrics"}, metrics.out);
  CHECK(checked.status == 0);

  // /tree: the root supervisor, the tenants with the default one's shards, the listener and a live session.
  raw_connection mine(d.tcp_port());
  REQUIRE(mine.send(erps_frame(4, R"([7,{"op":"get","key":"a"}])")));
  REQUIRE(mine.next_frame()); // answered: its session runs
  const result tree = run({"curl", "-sS", base + "/tree"});
  const json t = json::parse(tree.out);
  CHECK(t["node"] == 1);
  std::string text = tree.out;
  CHECK(text.find("\"strategy\":\"rest_for_one\"") != std::string::npos);
  CHECK(text.find("\"id\":\"tenants\"") != std::string::npos);
  CHECK(text.find("\"id\":\"snapshots\"") != std::string::npos);
  CHECK(text.find("\"label\":\"groved admin endpoint\"") != std::string::npos);
  CHECK(text.find("\"label\":\"tenant manager groved\"") != std::string::npos);
  CHECK(text.find("\"label\":\"groved tenant default\"") != std::string::npos);
  CHECK(text.find("\"id\":\"shard-0\"") != std::string::npos);
  CHECK(text.find("\"label\":\"groved store default shard 0\"") != std::string::npos);
  CHECK(text.find("\"label\":\"erps listener 127.0.0.1:" + std::to_string(d.tcp_port()) + " (TCP)\"") != std::string::npos);
  CHECK(text.find("\"label\":\"erps session 127.0.0.1:") != std::string::npos);
  const result page = run({"curl", "-sS", base + "/"});
  CHECK(page.out.find("EventSource(") != std::string::npos);
  CHECK(d.stop() == 0);
}

TEST_CASE("groved with --codec=etf serves grovectl --codec etf and a real Erlang erps client") {
  groved d({"--codec=etf"});
  std::vector<std::string> flags = d.tcp();
  flags.push_back("--codec=etf");
  const result r = script(flags, {call({{"op", "put"}, {"key", "k"}, {"value", {{"n", 1}, {"list", {1, 2}}}}}, {{"ok", true}}),
                                  call({{"op", "get"}, {"key", "k"}}, {{"ok", true}, {"value", {{"n", 1}, {"list", {1, 2}}}}})});
  CHECK(r.status == 0);
  // A JSON client on an ETF daemon: its frame is not ETF, refused with an error frame.
  const result wrong = script(d.tcp(), {call({{"op", "ping"}}, {{"ok", true}})});
  CHECK(wrong.status != 0);
  const std::string peer = (std::filesystem::path(GROVE_SOURCE_ROOT) / "tests/erps/erps_peer.escript").string();
  const result erl = run({"escript", peer, "groved", std::to_string(d.tcp_port())});
  CHECK(erl.out == "ok put_atom_keys\nok get_binary_keys\nok get_missing\ndone\n");
  CHECK(d.stop() == 0);
}

namespace {

// The 64 counters grove-bench -c 4 -p 16 --op incr writes, summed (a key
// that was never stored counts 0).
std::int64_t bench_counter_sum(const groved& d) {
  std::vector<json> lines;
  for (int c = 0; c < 4; ++c) {
    for (int s = 0; s < 16; ++s) {
      lines.push_back(call({{"op", "get"}, {"key", "bench/" + std::to_string(c) + "/" + std::to_string(s)}}, json::object()));
    }
  }
  result r = script(d.tcp(), lines);
  INFO(r.out, r.err);
  REQUIRE(r.status == 0);
  std::int64_t sum = 0;
  for (const json& line : json_lines(r.out)) {
    if (line["reply"].value("ok", false)) sum += line["reply"]["value"].get<std::int64_t>();
  }
  return sum;
}

std::string newest_log(const std::string& wal_dir) {
  std::string newest;
  for (const auto& e : std::filesystem::directory_iterator(wal_dir)) {
    if (e.path().extension() == ".log" && e.path().string() > newest) newest = e.path().string();
  }
  return newest;
}

} // namespace

TEST_CASE("kill -9 under load loses no acknowledged write (durability always and batch), snapshots rotating the log") {
  for (const char* mode : {"always", "batch"}) {
    CAPTURE(mode);
    temp_dir dir;
    const std::string data = "--data_path=" + dir.file("store.json");
    std::int64_t acknowledged = 0;
    {
      groved d({data, std::string("--durability=") + mode, "--snapshot_interval_ms=100", "--tls.enabled=false"});
      child bench({grove_bench_path(), "--port", std::to_string(d.tcp_port()), "-c", "4", "-p", "16", "--op", "incr",
                   "-d", "120", "-w", "1"});
      REQUIRE(bench.wait_stderr("measuring", 60s));
      // Snapshots are written (and the log rotated under them) while the load runs.
      REQUIRE(d.process().wait_stderr("\"event\":\"snapshot_written\"", 30s));
      d.process().signal(SIGKILL);
      REQUIRE(d.process().wait() == std::optional<int>(128 + SIGKILL));
      REQUIRE(bench.wait(60s).has_value());
      bench.finish_output();
      INFO(bench.out(), bench.err());
      const std::vector<json> lines = json_lines(bench.out());
      REQUIRE_FALSE(lines.empty());
      acknowledged = lines.back()["ok"].get<std::int64_t>();
      CHECK(acknowledged > 0);
    }
    groved d({data, "--tls.enabled=false"});
    const std::string err = d.process().err();
    CHECK(err.find("\"event\":\"snapshot_loaded\"") != std::string::npos);
    const std::int64_t stored = bench_counter_sum(d);
    INFO("acknowledged ", acknowledged, ", stored ", stored);
    CHECK(stored >= acknowledged);      // every acknowledged increment is there
    CHECK(stored <= acknowledged + 64); // and at most the 64 calls in flight more
    CHECK(d.stop() == 0);
  }
}

TEST_CASE("a torn last log record is dropped at start; a damaged one in the middle stops the start and is left as it was") {
  temp_dir dir;
  const std::string data = "--data_path=" + dir.file("store.json");
  const std::string wal = dir.file("store.json.wal");
  {
    groved d({data, "--tls.enabled=false"});
    result r = script(d.tcp(), {call({{"op", "put"}, {"key", "a"}, {"value", "first"}}, {{"ok", true}}),
                                call({{"op", "incr"}, {"key", "n"}, {"by", 5}}, {{"ok", true}}),
                                call({{"op", "put"}, {"key", "b"}, {"value", "second"}}, {{"ok", true}})});
    REQUIRE(r.status == 0);
    d.process().signal(SIGKILL); // no snapshot: everything is in the log
    REQUIRE(d.process().wait().has_value());
  }
  const std::string log = newest_log(wal);
  REQUIRE_FALSE(log.empty());
  const std::string whole = read_file(log);
  // A crash in the middle of an append: half a record at the end.
  write_file(log, whole + std::string("\x40\x00\x00\x00\x12\x34\x56\x78\x01\x02\x00", 11));
  {
    groved d({data, "--tls.enabled=false"});
    CHECK(d.process().err().find("\"event\":\"wal_torn_record\"") != std::string::npos);
    result r = script(d.tcp(), {call({{"op", "get"}, {"key", "a"}}, {{"value", "first"}}),
                                call({{"op", "get"}, {"key", "n"}}, {{"value", 5}}),
                                call({{"op", "get"}, {"key", "b"}}, {{"value", "second"}})});
    INFO(r.out, r.err);
    CHECK(r.status == 0);
    d.process().signal(SIGKILL);
    REQUIRE(d.process().wait().has_value());
  }
  // Bit rot in the first record, with good ones after it.
  std::string damaged = read_file(log);
  damaged[16 + 12] ^= 0x01;
  write_file(log, damaged);
  result r = run({groved_path(), "--tcp.port=0", "--tls.enabled=false", "--log.format=json", data});
  CHECK(r.status == 1);
  CHECK(r.err.find("\"event\":\"wal_unreadable\"") != std::string::npos);
  CHECK(r.err.find(log) != std::string::npos);
  CHECK(r.err.find("offset 16 ") != std::string::npos);
  CHECK(read_file(log) == damaged);
}

TEST_CASE("a disk that refuses writes: they fail with storage_error, nothing unstored is acknowledged, reads go on") {
  temp_dir dir;
  const std::string data = "--data_path=" + dir.file("store.json");
  std::vector<std::string> stored_keys;
  std::vector<std::string> refused_keys;
  {
    // Files of this process stop growing at 64 KiB: the log fills up.
    groved d({data, "--tls.enabled=false"}, {"prlimit", "--fsize=65536", "--"});
    std::vector<json> lines{call({{"op", "put"}, {"key", "early"}, {"value", 1}}, {{"ok", true}})};
    for (int i = 0; i < 24; ++i) {
      lines.push_back(call({{"op", "put"}, {"key", "big/" + std::to_string(i)}, {"value", std::string(8000, 'x')}},
                           json::object()));
    }
    lines.push_back(call({{"op", "get"}, {"key", "early"}}, {{"value", 1}}));
    result r = script(d.tcp(), lines);
    INFO(r.out, r.err);
    REQUIRE(r.status == 0);
    std::string error;
    for (const json& line : json_lines(r.out)) {
      const json& reply = line["reply"];
      if (!line.contains("reply") || reply.contains("value")) continue;
      const std::string key = lines.at(line["line"].get<std::size_t>() - 1)["call"]["key"];
      if (reply.value("ok", false)) {
        stored_keys.push_back(key);
      } else {
        refused_keys.push_back(key);
        error = reply["error"].dump();
      }
    }
    REQUIRE_FALSE(refused_keys.empty());
    CHECK(stored_keys.size() > 1);
    CHECK(error.find("storage_error") != std::string::npos);
    CHECK(error.find("File too large") != std::string::npos);
    // A refused put left nothing behind.
    result get = script(d.tcp(), {call({{"op", "get"}, {"key", refused_keys.back()}}, {{"ok", false}})});
    CHECK(get.status == 0);
    CHECK(d.process().err().find("\"event\":\"wal_write_failed\"") != std::string::npos);
    d.process().signal(SIGKILL);
    REQUIRE(d.process().wait().has_value());
  }
  groved d({data, "--tls.enabled=false"});
  std::vector<json> checks;
  for (const auto& k : stored_keys) checks.push_back(call({{"op", "get"}, {"key", k}}, {{"ok", true}}));
  for (const auto& k : refused_keys) checks.push_back(call({{"op", "get"}, {"key", k}}, {{"ok", false}}));
  result r = script(d.tcp(), checks);
  INFO(r.out, r.err);
  CHECK(r.status == 0);
  CHECK(d.stop() == 0);
}

TEST_CASE("a store shard killed under load: every call gets a reply, and the shard reads its keys back from disk") {
  temp_dir dir;
  groved d({"--data_path=" + dir.file("store.json"), "--debug.chaos_ops=true", "--shards=2", "--tls.enabled=false"});
  child bench({grove_bench_path(), "--port", std::to_string(d.tcp_port()), "-c", "4", "-p", "16", "--op", "incr", "-d",
               "3", "-w", "1", "--keep-going"});
  REQUIRE(bench.wait_stderr("measuring", 60s));
  for (int shard : {0, 1}) {
    result killed = grovectl(d.tcp(), {"call", json{{"op", "debug.kill_shard"}, {"shard", shard}}.dump()});
    INFO(killed.out, killed.err);
    CHECK(killed.status == 0);
  }
  REQUIRE(d.process().wait_stderr("\"event\":\"shard_recovered\"", 30s));
  REQUIRE(bench.wait(90s) == std::optional<int>(0));
  bench.finish_output();
  INFO(bench.out(), bench.err());
  const json summary = json_lines(bench.out()).back();
  // Calls parked at a killed shard fail at once: none waits for its timeout.
  CHECK(summary["errors_by_kind"]["timeout"] == 0);
  const std::int64_t acknowledged = summary["ok"].get<std::int64_t>();
  const std::int64_t failed = summary["errors"].get<std::int64_t>();
  const std::int64_t stored = bench_counter_sum(d);
  INFO("acknowledged ", acknowledged, ", failed ", failed, ", stored ", stored);
  CHECK(stored >= acknowledged);          // the restarted shards lost nothing acknowledged
  CHECK(stored <= acknowledged + failed); // a failed call may or may not have been applied
  CHECK(d.stop() == 0);
}

namespace {

// grovectl's flags for the TLS listener with the test certificate `who`.
std::vector<std::string> tls_as(const groved& d, const std::string& who) {
  return {"--port", std::to_string(d.tls_port()), "--ca", certs_dir() + "/ca.pem", "--cert",
          certs_dir() + "/" + who + ".pem", "--key", certs_dir() + "/" + who + ".key"};
}

std::string access_policy(const json& identities) {
  return json{{"format", "groved-access"}, {"version", 1}, {"identities", identities}}.dump();
}

// As an operator would: the new file renamed over the old one.
void replace_file(const std::string& path, const std::string& text) {
  write_file(path + ".new", text);
  std::filesystem::rename(path + ".new", path);
}

const json forbidden = {{"ok", false}, {"error", {{"code", "forbidden"}}}};

} // namespace

TEST_CASE("the access policy: who may connect and what each may do; a client it does not name is refused and closed") {
  temp_dir dir;
  const std::string path = dir.file("access.json");
  write_file(path, access_policy({{"URI:grove://tenant/a", {{"role", "write"}}},
                                  {"subject:/CN=grove tenant b", {{"role", "read"}}}}));
  groved d({"--access.policy=" + path});
  result a = script(tls_as(d, "tenant-a"), {call({{"op", "put"}, {"key", "k"}, {"value", 1}}, {{"ok", true}}),
                                            call({{"op", "get"}, {"key", "k"}}, {{"value", 1}})});
  INFO(a.out, a.err);
  CHECK(a.status == 0);
  // Named by its subject, with role read: reads, but may not write.
  result b = script(tls_as(d, "tenant-b"), {call({{"op", "get"}, {"key", "k"}}, {{"value", 1}}),
                                            call({{"op", "put"}, {"key", "k"}, {"value", 2}}, forbidden),
                                            call({{"op", "stats"}}, {{"ok", true}})});
  INFO(b.out, b.err);
  CHECK(b.status == 0);
  CHECK(b.out.find("op 'put' needs role write; subject:/CN=grove tenant b has role read") != std::string::npos);
  // A certificate from the CA that the policy does not name: refused, then
  // closed. grovectl's second call finds the connection gone: either it was
  // sent as the daemon closed (connection lost), or grovectl connected again
  // and was refused again.
  result c = script(tls_as(d, "client"), {call({{"op", "ping"}}, forbidden), call({{"op", "ping"}}, forbidden)});
  INFO(c.out, c.err);
  CHECK(c.out.find("this client (subject:/CN=grove test client) is not in groved's access policy") != std::string::npos);
  const bool lost = c.status == 3;
  if (lost) CHECK(c.err.find("closed by the peer") != std::string::npos);
  else CHECK(c.status == 0);
  // Plain TCP clients are "tcp", which this policy does not name.
  result t = script(d.tcp(), {call({{"op", "get"}, {"key", "k"}}, forbidden)});
  CHECK(t.status == 0);
  CHECK(d.stop() == 0);
  d.process().finish_output();
  // One refusal logged per connection.
  std::size_t client_refusals = 0;
  std::size_t tcp_refusals = 0;
  std::istringstream lines(d.process().err());
  for (std::string line; std::getline(lines, line);) {
    if (line.find("\"event\":\"access_refused\"") == std::string::npos) continue;
    if (line.find("subject:/CN=grove test client") != std::string::npos) ++client_refusals;
    if (line.find("\"identities\":[\"tcp\"]") != std::string::npos) ++tcp_refusals;
  }
  CHECK(client_refusals == (lost ? 1u : 2u));
  CHECK(tcp_refusals == 1);
}

TEST_CASE("a new access policy applies on SIGHUP: a removed identity's connection closes; a bad one is refused") {
  temp_dir dir;
  const std::string path = dir.file("access.json");
  write_file(path, access_policy({{"URI:grove://tenant/a", {{"role", "write"}}},
                                  {"URI:grove://tenant/b", {{"role", "write"}}}}));
  groved d({"--access.policy=" + path, "--access.refresh_ms=3600000"}); // only SIGHUP reloads here
  std::vector<std::string> argv{grovectl_path()};
  for (const auto& f : tls_as(d, "tenant-a")) argv.push_back(f);
  argv.insert(argv.end(), {"subscribe", "news"});
  child subscriber(argv);
  // Its subscription is in place once a write to the topic reaches it.
  for (int i = 0; i < 100 && subscriber.out().find("\"topic\":\"news\"") == std::string::npos; ++i) {
    result put = script(tls_as(d, "tenant-b"), {call({{"op", "put"}, {"key", "news"}, {"value", i}}, {{"ok", true}})});
    REQUIRE(put.status == 0);
    subscriber.wait_stdout("\"topic\":\"news\"", 100ms);
  }
  REQUIRE(subscriber.out().find("\"topic\":\"news\"") != std::string::npos);

  replace_file(path, access_policy({{"URI:grove://tenant/b", {{"role", "read"}}}}));
  d.process().signal(SIGHUP);
  // tenant-a's open connection is closed by the daemon ...
  CHECK(subscriber.wait_stdout("\"link\":\"down\"", 30s));
  CHECK(d.process().wait_stderr("\"event\":\"access_revoked\"", 10s));
  // ... and its new ones are refused; tenant-b now only reads.
  CHECK(script(tls_as(d, "tenant-a"), {call({{"op", "ping"}}, forbidden)}).status == 0);
  CHECK(script(tls_as(d, "tenant-b"), {call({{"op", "get"}, {"key", "news"}}, {{"ok", true}}),
                                       call({{"op", "put"}, {"key", "news"}, {"value", 0}}, forbidden)})
            .status == 0);

  // A bad policy is refused (logged) and the one in force stays.
  replace_file(path, access_policy({{"URI:grove://tenant/b", {{"role", "superuser"}}}}));
  d.process().signal(SIGHUP);
  REQUIRE(d.process().wait_stderr("\"event\":\"access_policy_refused\"", 30s));
  CHECK(d.process().err().find(".role: expected") != std::string::npos);
  CHECK(script(tls_as(d, "tenant-b"), {call({{"op", "get"}, {"key", "news"}}, {{"ok", true}})}).status == 0);
  CHECK(script(tls_as(d, "tenant-a"), {call({{"op", "ping"}}, forbidden)}).status == 0);
  CHECK(d.stop() == 0);
}

TEST_CASE("an access policy that cannot be read stops the start, naming the option") {
  temp_dir dir;
  result missing = run({groved_path(), "--tcp.port=0", "--tls.port=0", "--log.format=json",
                        "--access.policy=" + dir.file("none.json")});
  CHECK(missing.status == 1);
  CHECK(missing.err.find("access.policy") != std::string::npos);
  CHECK(missing.err.find("none.json") != std::string::npos);
  write_file(dir.file("bad.json"), R"({"format":"groved-access","version":1,"identities":{"bob":{"role":"read"}}})");
  result bad = run({groved_path(), "--tcp.port=0", "--tls.port=0", "--log.format=json",
                    "--access.policy=" + dir.file("bad.json")});
  CHECK(bad.status == 1);
  CHECK(bad.err.find("\\\"bob\\\" is no identity") != std::string::npos);
}

TEST_CASE("an access policy served over HTTP is read at start and again on SIGHUP") {
  temp_dir dir;
  write_file(dir.file("access.json"), access_policy({{"URI:grove://tenant/a", {{"role", "write"}}}}));
  // A real HTTP server on a free loopback port, serving the directory.
  child http({"python3", "-u", "-m", "http.server", "--bind", "127.0.0.1", "--directory", dir.path(), "0"});
  REQUIRE(http.wait_stdout("(http://127.0.0.1:", 30s));
  const std::string out = http.out();
  const std::size_t at = out.find("(http://127.0.0.1:") + 18;
  const std::string port = out.substr(at, out.find('/', at) - at);
  groved d({"--access.policy=http://127.0.0.1:" + port + "/access.json", "--access.refresh_ms=3600000"});
  CHECK(script(tls_as(d, "tenant-a"), {call({{"op", "put"}, {"key", "k"}, {"value", 1}}, {{"ok", true}})}).status == 0);
  CHECK(script(tls_as(d, "tenant-b"), {call({{"op", "ping"}}, forbidden)}).status == 0);
  replace_file(dir.file("access.json"), access_policy({{"URI:grove://tenant/b", {{"role", "read"}}}}));
  // Python's server dates a file to the second (Last-Modified only), so
  // this edit may fall in the second of the first read: the fetcher took
  // that Last-Modified as weak and asks without If-Modified-Since.
  d.process().signal(SIGHUP);
  // The first load was logged at start; this is the second.
  REQUIRE(d.process().wait_stderr_count("\"event\":\"access_policy_loaded\"", 2, 30s));
  CHECK(script(tls_as(d, "tenant-b"), {call({{"op", "get"}, {"key", "k"}}, {{"value", 1}})}).status == 0);
  CHECK(script(tls_as(d, "tenant-a"), {call({{"op", "ping"}}, forbidden)}).status == 0);
  CHECK(d.stop() == 0);
}

namespace {

const json no_tenant = {{"ok", false}, {"error", {{"code", "no_tenant"}}}};

// `grovectl subscribe TOPIC` as `who`, returned once a put of TOPIC by
// `who` has reached it.
std::unique_ptr<child> subscribed_as(const groved& d, const std::string& who, const std::string& topic) {
  std::vector<std::string> argv{grovectl_path()};
  for (const auto& f : tls_as(d, who)) argv.push_back(f);
  argv.insert(argv.end(), {"subscribe", topic});
  auto subscriber = std::make_unique<child>(argv);
  const std::string seen = "\"topic\":\"" + topic + "\"";
  for (int i = 0; i < 100 && subscriber->out().find(seen) == std::string::npos; ++i) {
    result put = script(tls_as(d, who), {call({{"op", "put"}, {"key", topic}, {"value", "b"}}, {{"ok", true}})});
    REQUIRE(put.status == 0);
    subscriber->wait_stdout(seen, 100ms);
  }
  REQUIRE(subscriber->out().find(seen) != std::string::npos);
  return subscriber;
}

// The keys of `who`'s tenant, as its client sees them.
json keys_as(const groved& d, const std::string& who) {
  result r = script(tls_as(d, who), {call({{"op", "keys"}}, {{"ok", true}})});
  REQUIRE(r.status == 0);
  return json_lines(r.out).back()["reply"]["keys"];
}

} // namespace

TEST_CASE("tenants: a client of tenant A never reads, writes, hears of or counts tenant B's keys") {
  temp_dir dir;
  const std::string policy = dir.file("access.json");
  const std::string data = dir.file("store.json");
  write_file(policy, access_policy({{"URI:grove://tenant/a", {{"role", "write"}, {"tenant", "a"}}},
                                    {"subject:/CN=grove tenant b", {{"role", "write"}, {"tenant", "b"}}},
                                    {"subject:/CN=grove test client", {{"role", "admin"}}}}));
  const std::vector<std::string> flags{"--access.policy=" + policy, "--data_path=" + data};
  auto d = std::make_unique<groved>(flags);

  // Not installed yet: refused, naming the tenant, and closed.
  result early = script(tls_as(*d, "tenant-a"), {call({{"op", "get"}, {"key", "k"}}, no_tenant)});
  CHECK(early.status == 0);
  CHECK(early.out.find("tenant 'a' (of URI:grove://tenant/a") != std::string::npos);
  CHECK(d->process().wait_stderr("is not installed; closing", 10s));

  // Only an admin installs; b with limits of its own.
  CHECK(script(tls_as(*d, "tenant-a"), {call({{"op", "tenant.install"}, {"tenant", "a"}}, forbidden)}).status == 0);
  result installed = script(tls_as(*d, "client"),
                            {call({{"op", "tenant.install"}, {"tenant", "a"}}, {{"tenant", {{"id", "a"}, {"state", "running"}}}}),
                             call({{"op", "tenant.install"}, {"tenant", "b"}, {"config", {{"max_keys", 2}}}},
                                  {{"tenant", {{"id", "b"}, {"state", "running"}}}}),
                             call({{"op", "tenant.install"}, {"tenant", "b"}}, {{"error", {{"code", "already_exists"}}}}),
                             call({{"op", "tenant.install"}, {"tenant", "../x"}}, {{"error", {{"code", "bad_request"}}}}),
                             call({{"op", "tenant.install"}, {"tenant", "c"}, {"config", {{"max_keys", "many"}}}},
                                  {{"error", {{"code", "bad_request"}}}})});
  INFO(installed.out, installed.err);
  REQUIRE(installed.status == 0);
  CHECK(installed.out.find("config.max_keys: expected an integer") != std::string::npos);

  // b subscribes to topic "k" (b's own put of k proves it is in place).
  std::unique_ptr<child> subscriber = subscribed_as(*d, "tenant-b", "k");

  // a writes the same key names; b's value, b's subscriber and b's counts do not move.
  result a = script(tls_as(*d, "tenant-a"), {call({{"op", "put"}, {"key", "k"}, {"value", "a"}}, {{"created", true}}),
                                              call({{"op", "incr"}, {"key", "n"}, {"by", 5}}, {{"value", 5}}),
                                              call({{"op", "put"}, {"key", "k/secret"}, {"value", 1}}, {{"ok", true}}),
                                              call({{"op", "get"}, {"key", "k"}}, {{"value", "a"}}),
                                              call({{"op", "stats"}}, {{"tenant", "a"}, {"keys", 3}})});
  INFO(a.out, a.err);
  CHECK(a.status == 0);
  CHECK(json_lines(a.out).back()["reply"].contains("connections") == false); // the daemon's figures are an admin's
  result b = script(tls_as(*d, "tenant-b"), {call({{"op", "get"}, {"key", "k"}}, {{"value", "b"}}),
                                              call({{"op", "get"}, {"key", "n"}}, {{"error", {{"code", "not_found"}}}}),
                                              call({{"op", "incr"}, {"key", "n"}}, {{"value", 1}}),
                                              call({{"op", "stats"}}, {{"tenant", "b"}, {"keys", 2}}),
                                              // b's own limit: two keys
                                              call({{"op", "put"}, {"key", "third"}, {"value", 0}},
                                                   {{"error", {{"code", "store_full"}}}}),
                                              call({{"op", "tenant.list"}}, forbidden)});
  INFO(b.out, b.err);
  CHECK(b.status == 0);
  CHECK(keys_as(*d, "tenant-a") == json::array({"k", "k/secret", "n"}));
  CHECK(keys_as(*d, "tenant-b") == json::array({"k", "n"}));
  // One more push for b, then b's subscriber has heard exactly b's writes.
  REQUIRE(script(tls_as(*d, "tenant-b"), {call({{"op", "put"}, {"key", "k"}, {"value", "last"}}, {{"ok", true}})}).status == 0);
  REQUIRE(subscriber->wait_stdout("\"value\":\"last\"", 30s));
  CHECK(subscriber->out().find("\"value\":\"a\"") == std::string::npos);
  CHECK(subscriber->out().find("k/secret") == std::string::npos);

  // The admin sees every tenant; the records and the keys survive a restart.
  result listed = script(tls_as(*d, "client"), {call({{"op", "tenant.list"}}, {{"ok", true}})});
  REQUIRE(listed.status == 0);
  const json tenants = json_lines(listed.out).back()["reply"]["tenants"];
  REQUIRE(tenants.size() == 3);
  CHECK(tenants[0]["id"] == "a");
  CHECK(tenants[0]["keys"] == 3);
  CHECK(tenants[1]["id"] == "b");
  CHECK(tenants[1]["config"] == json{{"max_keys", 2}});
  CHECK(tenants[2]["id"] == "default");
  subscriber->signal(SIGTERM);
  CHECK(d->stop() == 0);
  d = std::make_unique<groved>(flags);
  CHECK(keys_as(*d, "tenant-a") == json::array({"k", "k/secret", "n"}));
  CHECK(script(tls_as(*d, "tenant-b"), {call({{"op", "get"}, {"key", "k"}}, {{"value", "last"}}),
                                        call({{"op", "put"}, {"key", "third"}, {"value", 0}},
                                             {{"error", {{"code", "store_full"}}}})})
            .status == 0);

  // Uninstalled: b's open connection is closed, its next one refused, its files gone; a is untouched.
  std::unique_ptr<child> holder = subscribed_as(*d, "tenant-b", "k");
  REQUIRE(std::filesystem::exists(data + ".tenants/b.json.wal"));
  result gone = script(tls_as(*d, "client"), {call({{"op", "tenant.uninstall"}, {"tenant", "b"}}, {{"tenant", "b"}}),
                                              call({{"op", "tenant.get"}, {"tenant", "b"}}, {{"error", {{"code", "not_found"}}}}),
                                              call({{"op", "tenant.uninstall"}, {"tenant", "default"}}, forbidden)});
  INFO(gone.out, gone.err);
  CHECK(gone.status == 0);
  CHECK(holder->wait_stdout("\"link\":\"down\"", 30s));
  CHECK(script(tls_as(*d, "tenant-b"), {call({{"op", "get"}, {"key", "k"}}, no_tenant)}).status == 0);
  CHECK_FALSE(std::filesystem::exists(data + ".tenants/b.json.wal"));
  CHECK_FALSE(std::filesystem::exists(data + ".tenants/b.json"));
  CHECK(keys_as(*d, "tenant-a") == json::array({"k", "k/secret", "n"}));
  CHECK(d->stop() == 0);
}

TEST_CASE("tenants without an access policy: every client works in tenants.default, and may manage tenants up to tenants.max") {
  groved d({"--tenants.default=dev", "--tenants.max=2"});
  CHECK(script(d.tcp(), {call({{"op", "put"}, {"key", "k"}, {"value", 1}}, {{"ok", true}}),
                         call({{"op", "stats"}}, {{"tenant", "dev"}, {"keys", 1}, {"daemon", {{"tenants", 1}}}}),
                         call({{"op", "tenant.install"}, {"tenant", "t1"}, {"config", {{"shards", 3}}}},
                              {{"tenant", {{"id", "t1"}, {"state", "running"}}}}),
                         call({{"op", "tenant.install"}, {"tenant", "t2"}}, {{"error", {{"code", "too_many_tenants"}}}}),
                         call({{"op", "tenant.update"}, {"tenant", "t1"}, {"config", {{"shards", 4}}}},
                              {{"error", {{"code", "tenant_failed"}}}}),
                         call({{"op", "tenant.update"}, {"tenant", "t1"}, {"config", {{"shards", 3}, {"max_keys", 9}}}},
                              {{"tenant", {{"config", {{"shards", 3}, {"max_keys", 9}}}}}}),
                         call({{"op", "tenant.list"}}, {{"ok", true}})})
            .status == 0);
  CHECK(run({groved_path(), "--tenants.default=a/b"}).err.find("tenants.default: expected") != std::string::npos);
  CHECK(d.stop() == 0);
}

// The harness itself: a groved that crashes (or stops on a sanitizer's
// report) fails the test that ran it, with its stderr, even when no check
// looks at it. This case must fail.
TEST_CASE("a groved that crashes fails its test with its stderr" * doctest::should_fail()) {
  groved d;
  d.process().signal(SIGSEGV);
  REQUIRE(d.process().wait().has_value());
}
