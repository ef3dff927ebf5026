// The etcd client against a real etcd on 127.0.0.1 (tests/etcd/etcd_server.hpp).
#include <grove/etcd/client.hpp>

#include <grove/core/node.hpp>

#include "etcd_server.hpp"

#include <doctest/doctest.h>

#include <chrono>
#include <functional>
#include <set>
#include <string>
#include <vector>

namespace {

using namespace std::chrono_literals;
using grove::awaitable;
using test_support::etcd_server;
namespace etcd = grove::etcd;

/// Runs `body` as a process on a one-worker node and waits for it.
void run(const std::function<awaitable<void>()>& body) {
  grove::node node{{.threads = 1}};
  node.block_on([&](grove::process&) -> awaitable<void> { co_await body(); });
}

/// The code of the grove::error `work` throws (empty if none).
std::error_code error_of(const std::function<awaitable<void>()>& work, std::string* text = nullptr) {
  std::error_code code;
  run([&]() -> awaitable<void> {
    try {
      co_await work();
    } catch (const grove::error& e) {
      code = e.code();
      if (text) *text = e.what();
    }
  });
  return code;
}

etcd::client_options plain(const etcd_server& server) {
  etcd::client_options o;
  o.endpoints = {server.url()};
  o.request_timeout = 5s;
  return o;
}

std::string cert(const std::string& name) {
  std::string path = GROVE_SOURCE_ROOT; // (appended, not a + chain: g++ 12 warns falsely on that)
  path += "/certs/";
  path += name;
  return path;
}

} // namespace

TEST_CASE("keys: put, get one, a prefix or everything, and erase with the previous values") {
  etcd_server server;
  etcd::client c(plain(server));
  run([&]() -> awaitable<void> {
    const etcd::put_result first = co_await c.put("app/a", "1");
    CHECK(first.revision > 0);
    const etcd::put_result again = co_await c.put("app/a", "one", {.prev_kv = true});
    REQUIRE(again.prev.has_value());
    CHECK(again.prev->value == "1");
    co_await c.put("app/b", std::string("two\0bytes", 9));
    co_await c.put("other", "3");

    const etcd::get_result a = co_await c.get("app/a");
    REQUIRE(a.kvs.size() == 1);
    CHECK(a.kvs[0].key == "app/a");
    CHECK(a.kvs[0].value == "one");
    CHECK(a.kvs[0].version == 2);
    CHECK(a.count == 1);

    const etcd::get_result app = co_await c.get("app/", {.prefix = true});
    REQUIRE(app.kvs.size() == 2);
    CHECK(app.kvs[1].value == std::string("two\0bytes", 9));
    const etcd::get_result all = co_await c.get("", {.prefix = true, .count_only = true});
    CHECK(all.count == 3);
    CHECK(all.kvs.empty());
    const etcd::get_result limited = co_await c.get("", {.prefix = true, .limit = 1});
    CHECK(limited.kvs.size() == 1);
    CHECK(limited.more);

    const etcd::erase_result erased = co_await c.erase("app/", {.prefix = true, .prev_kv = true});
    CHECK(erased.deleted == 2);
    CHECK(erased.prev_kvs.size() == 2);
    const etcd::get_result gone = co_await c.get("app/a");
    CHECK(gone.kvs.empty());
    const etcd::get_result old = co_await c.get("app/a", {.revision = first.revision});
    REQUIRE(old.kvs.size() == 1);
    CHECK(old.kvs[0].value == "1");
  });
}

TEST_CASE("a transaction claims a name only while it is absent: of two claims one wins, the other sees the holder") {
  etcd_server server;
  etcd::client c(plain(server));
  run([&]() -> awaitable<void> {
    const etcd::txn_request claim_1{.when = {etcd::compare::absent("names/db")},
                                    .then = {etcd::txn_op::put("names/db", "node-1")},
                                    .otherwise = {etcd::txn_op::get("names/db")}};
    const etcd::txn_result won = co_await c.txn(claim_1);
    CHECK(won.succeeded);
    REQUIRE(won.responses.size() == 1);
    CHECK(std::holds_alternative<etcd::put_result>(won.responses[0]));

    const etcd::txn_request claim_2{.when = {etcd::compare::absent("names/db")},
                                    .then = {etcd::txn_op::put("names/db", "node-2")},
                                    .otherwise = {etcd::txn_op::get("names/db")}};
    const etcd::txn_result lost = co_await c.txn(claim_2);
    CHECK_FALSE(lost.succeeded);
    REQUIRE(lost.responses.size() == 1);
    const auto& holder = std::get<etcd::get_result>(lost.responses[0]);
    REQUIRE(holder.kvs.size() == 1);
    CHECK(holder.kvs[0].value == "node-1");

    // A conditional update on the value, then on the revision it was written at.
    const etcd::txn_request swap{.when = {etcd::compare::value_is("names/db", "node-1")},
                                 .then = {etcd::txn_op::put("names/db", "node-3"), etcd::txn_op::get("names/db")}};
    const etcd::txn_result swapped = co_await c.txn(swap);
    CHECK(swapped.succeeded);
    REQUIRE(swapped.responses.size() == 2);
    const auto& now = std::get<etcd::get_result>(swapped.responses[1]);
    REQUIRE(now.kvs.size() == 1);
    CHECK(now.kvs[0].value == "node-3");
    const etcd::txn_request stale{.when = {etcd::compare::mod_revision_is("names/db", holder.kvs[0].mod_revision)},
                                  .then = {etcd::txn_op::erase("names/db")}};
    const etcd::txn_result refused = co_await c.txn(stale);
    CHECK_FALSE(refused.succeeded);
  });
}

TEST_CASE("a lease: its keys go when it is revoked, and a gone lease is lease_not_found") {
  etcd_server server;
  etcd::client c(plain(server));
  etcd::lease l;
  run([&]() -> awaitable<void> {
    l = co_await c.grant_lease(30);
    CHECK(l.id != 0);
    CHECK(l.ttl >= 30);
    co_await c.put("leased", "x", {.lease = l.id});
    const etcd::get_result held = co_await c.get("leased");
    REQUIRE(held.kvs.size() == 1);
    CHECK(held.kvs[0].lease == l.id);
    const std::int64_t ttl = co_await c.keep_alive_once(l.id);
    CHECK(ttl >= 29);
    co_await c.revoke_lease(l.id);
    const etcd::get_result gone = co_await c.get("leased");
    CHECK(gone.kvs.empty());
  });
  CHECK(error_of([&]() -> awaitable<void> { co_await c.keep_alive_once(l.id); }) == etcd::errc::lease_not_found);
  CHECK(error_of([&]() -> awaitable<void> { co_await c.revoke_lease(l.id); }) == etcd::errc::lease_not_found);
  CHECK(error_of([&]() -> awaitable<void> { co_await c.put("k", "v", {.lease = l.id}); }) == etcd::errc::lease_not_found);
}

TEST_CASE("a watch delivers puts and erases in revision order, and next() times out without losing its place") {
  etcd_server server;
  etcd::client c(plain(server));
  run([&]() -> awaitable<void> {
    etcd::watch w = co_await c.watch("w/", {.prefix = true, .prev_kv = true});
    bool timed_out = false;
    try {
      co_await w.next(200ms); // nothing happens
    } catch (const grove::error& e) {
      timed_out = e.code() == etcd::errc::timeout;
    }
    CHECK(timed_out);
    const etcd::put_result p = co_await c.put("w/a", "1");
    // One transaction: its two events come together.
    const etcd::txn_request both{.then = {etcd::txn_op::put("w/b", "2"), etcd::txn_op::erase("w/a")}};
    co_await c.txn(both);
    co_await c.put("elsewhere", "not watched");

    std::vector<etcd::event> seen;
    while (seen.size() < 3) {
      std::vector<etcd::event> batch = co_await w.next(10s);
      seen.insert(seen.end(), batch.begin(), batch.end());
    }
    REQUIRE(seen.size() == 3);
    CHECK(seen[0].type == etcd::event_type::put);
    CHECK(seen[0].kv.key == "w/a");
    CHECK(seen[0].kv.mod_revision == p.revision);
    CHECK(seen[1].type == etcd::event_type::put);
    CHECK(seen[1].kv.key == "w/b");
    CHECK(seen[2].type == etcd::event_type::erase);
    CHECK(seen[2].kv.key == "w/a");
    REQUIRE(seen[2].prev.has_value());
    CHECK(seen[2].prev->value == "1");
    CHECK(seen[1].kv.mod_revision == seen[2].kv.mod_revision);
    CHECK(w.revision() == seen[2].kv.mod_revision);
  });
}

TEST_CASE("a watch from a past revision replays what was written since, in order, each once") {
  etcd_server server;
  etcd::client c(plain(server));
  run([&]() -> awaitable<void> {
    const std::int64_t from = (co_await c.put("r/0", "before")).revision + 1;
    for (int i = 1; i <= 5; ++i) co_await c.put("r/" + std::to_string(i), "after");
    etcd::watch w = co_await c.watch("r/", {.prefix = true, .start_revision = from});
    std::vector<std::string> keys;
    while (keys.size() < 5) {
      for (const auto& e : co_await w.next(10s)) keys.push_back(e.kv.key);
    }
    CHECK(keys == std::vector<std::string>{"r/1", "r/2", "r/3", "r/4", "r/5"});
  });
}

TEST_CASE("a watch rides out etcd killed and restarted: writes made meanwhile arrive, none lost or repeated") {
  etcd_server server;
  etcd::client c(plain(server));
  grove::node node{{.threads = 1}};
  std::unique_ptr<etcd::watch> w;
  node.block_on([&](grove::process&) -> awaitable<void> {
    w = std::make_unique<etcd::watch>(co_await c.watch("s/", {.prefix = true}));
    co_await c.put("s/1", "x");
    const auto batch = co_await w->next(10s);
    CHECK(batch.size() == 1);
  });
  const std::int64_t seen = w->revision();
  server.kill();
  server.start();
  node.block_on([&](grove::process&) -> awaitable<void> {
    // Written while the watch's stream is broken (it has not read since).
    co_await c.put("s/2", "y");
    co_await c.put("s/3", "z");
    std::vector<etcd::event> after;
    while (after.size() < 2) {
      auto batch = co_await w->next(20s);
      after.insert(after.end(), batch.begin(), batch.end());
    }
    REQUIRE(after.size() == 2);
    CHECK(after[0].kv.key == "s/2");
    CHECK(after[1].kv.key == "s/3");
    CHECK(after[0].kv.mod_revision > seen);
    w.reset(); // on its worker, before the node goes
  });
}

TEST_CASE("a watch whose etcd is down times out saying why, and resumes once etcd is back") {
  etcd_server server;
  etcd::client c(plain(server));
  grove::node node{{.threads = 1}};
  std::unique_ptr<etcd::watch> w;
  node.block_on([&](grove::process&) -> awaitable<void> {
    w = std::make_unique<etcd::watch>(co_await c.watch("d/", {.prefix = true}));
    co_await c.put("d/1", "x");
    const auto batch = co_await w->next(10s);
    CHECK(batch.size() == 1);
  });
  server.kill();
  std::error_code code;
  std::string text;
  node.block_on([&](grove::process&) -> awaitable<void> {
    try {
      co_await w->next(1500ms); // the stream breaks; reconnecting fails round after round
    } catch (const grove::error& e) {
      code = e.code();
      text = e.what();
    }
  });
  CHECK(code == etcd::errc::timeout);
  CHECK(text.find("not connected: " + server.url() + ": cannot connect") != std::string::npos);
  server.start();
  node.block_on([&](grove::process&) -> awaitable<void> {
    co_await c.put("d/2", "y");
    const auto batch = co_await w->next(20s);
    REQUIRE(batch.size() == 1);
    CHECK(batch[0].kv.key == "d/2");
    w.reset();
  });
}

TEST_CASE("a watch from a compacted revision fails with compacted, naming the revision") {
  etcd_server server;
  etcd::client c(plain(server));
  std::string text;
  std::int64_t last = 0;
  run([&]() -> awaitable<void> {
    for (int i = 0; i < 4; ++i) last = (co_await c.put("c", std::to_string(i))).revision;
    co_await c.compact(last);
  });
  const std::error_code code = error_of(
      [&]() -> awaitable<void> {
        etcd::watch w = co_await c.watch("c", {.start_revision = 1});
        co_await w.next(10s);
      },
      &text);
  CHECK(code == etcd::errc::compacted);
  CHECK(text.find("compacted up to revision " + std::to_string(last)) != std::string::npos);
  CHECK(error_of([&]() -> awaitable<void> { co_await c.get("c", {.revision = 1}); }) == etcd::errc::compacted);
}

TEST_CASE("requests fail over to the next endpoint, and name every endpoint when none answers") {
  etcd_server server;
  const std::string dead = "http://127.0.0.1:" + std::to_string(test_support::free_port());
  etcd::client_options o = plain(server);
  o.endpoints = {dead, server.url()};
  etcd::client c(o);
  run([&]() -> awaitable<void> {
    co_await c.put("k", "v"); // refused at the first before it was sent: safe to move on
    const etcd::get_result got = co_await c.get("k");
    CHECK(got.kvs.size() == 1);
  });
  CHECK(c.current_endpoint() == server.url());

  const std::string dead_too = "http://127.0.0.1:" + std::to_string(test_support::free_port());
  etcd::client none({.endpoints = {dead, dead_too}, .request_timeout = 2s});
  std::string text;
  CHECK(error_of([&]() -> awaitable<void> { co_await none.get("k"); }, &text) == etcd::errc::unavailable);
  CHECK(text.find(dead) != std::string::npos);
  CHECK(text.find(dead_too) != std::string::npos);
}

TEST_CASE("mutual TLS: etcd with client-cert-auth serves a client with the test certificate, and refuses one without") {
  etcd_server server(true);
  etcd::client_options o;
  o.endpoints = {server.url()};
  o.tls.ca_file = cert("ca.pem");
  o.tls.certificate_file = cert("client.pem");
  o.tls.private_key_file = cert("client.key");
  etcd::client c(o);
  run([&]() -> awaitable<void> {
    co_await c.put("secure", "yes");
    const etcd::get_result got = co_await c.get("secure");
    REQUIRE(got.kvs.size() == 1);
    CHECK(got.kvs[0].value == "yes");
    etcd::watch w = co_await c.watch("secure");
    co_await c.put("secure", "still");
    const auto batch = co_await w.next(10s);
    REQUIRE(batch.size() == 1);
    CHECK(batch[0].kv.value == "still");
  });
  etcd::client_options anonymous = o;
  anonymous.tls.certificate_file.clear();
  anonymous.tls.private_key_file.clear();
  etcd::client refused(anonymous);
  CHECK(error_of([&]() -> awaitable<void> { co_await refused.get("secure"); }) == etcd::errc::unavailable);
}

TEST_CASE("bad options are refused at construction, naming the option") {
  const auto refused = [](etcd::client_options o) {
    try {
      etcd::client c(std::move(o));
    } catch (const grove::error& e) {
      CHECK(e.code() == grove::errc::invalid_argument);
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  CHECK(refused({}).find("client_options.endpoints: empty") != std::string::npos);
  CHECK(refused({.endpoints = {"127.0.0.1:2379"}}).find("endpoints[0] \"127.0.0.1:2379\": no http:// or https://") !=
        std::string::npos);
  CHECK(refused({.endpoints = {"http://127.0.0.1:2379", "http://host"}}).find("endpoints[1] \"http://host\": no port") !=
        std::string::npos);
  CHECK(refused({.endpoints = {"http://127.0.0.1:99999"}}).find("port \"99999\" is not 1 to 65535") != std::string::npos);
  CHECK(refused({.endpoints = {"http://127.0.0.1:2379/v3"}}).find("a path") != std::string::npos);
  CHECK(refused({.endpoints = {"https://127.0.0.1:2379"}}).find("client_options.tls.ca_file: empty") != std::string::npos);
  CHECK(refused({.endpoints = {"http://127.0.0.1:2379"}, .request_timeout = 0s}).find("client_options.request_timeout") !=
        std::string::npos);
}
