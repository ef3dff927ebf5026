// etcd_registry against a real etcd: two nodes in this program, each with
// its own registry on one etcd, stand for two machines of a cluster (each
// sees the other's names only through etcd).
#include <grove/etcd/etcd_registry.hpp>

#include <grove/core/gen_server.hpp>
#include <grove/core/node.hpp>
#include <grove/registry/error.hpp>

#include "etcd_server.hpp"

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace {
using namespace std::chrono_literals;
using grove::awaitable;
namespace etcd = grove::etcd;

/// A process that lives until told to stop (or killed).
grove::pid idle_process(grove::node& n) {
  return grove::spawn(n, [](grove::process& self) -> awaitable<void> { (void)co_await self.receive(); });
}

/// Runs `body` in a process on `n` and waits for it.
template <class F>
void on(grove::node& n, F body) {
  n.block_on([&](grove::process& self) -> awaitable<void> { co_await body(self); });
}

std::unique_ptr<grove::etcd_registry> open_on(grove::node& n, const etcd::client& c, std::int64_t ttl = 10,
                                              std::string endpoint = {}) {
  grove::etcd_registry_options o;
  o.lease_ttl_seconds = ttl;
  o.endpoint = std::move(endpoint);
  return n.block_on(grove::etcd_registry::open(n, c, o));
}

/// The next registry_event `self` receives, within 20 s.
awaitable<grove::registry_event> next_event(grove::process& self) {
  std::optional<grove::message> m = co_await self.receive_for(20s);
  REQUIRE(m.has_value());
  const auto* e = m->get_if<grove::registry_event>();
  REQUIRE(e != nullptr);
  co_return *e;
}

struct cluster {
  test_support::etcd_server server;
  etcd::client client{etcd::client_options{.endpoints = {server.url()}}};
  grove::node a{{.threads = 1}};
  grove::node b{{.threads = 1}};
};

} // namespace

TEST_CASE("a name registered on one node is seen on the other, and a second holder is refused") {
  cluster c;
  auto ra = open_on(c.a, c.client, 10, "10.0.0.1:4370");
  auto rb = open_on(c.b, c.client);
  const grove::pid holder = idle_process(c.a);
  const grove::pid rival = idle_process(c.b);
  grove::registry_event seen{};
  on(c.b, [&](grove::process& self) -> awaitable<void> {
    co_await rb->watch("db");
    co_await ra->register_name("db", holder); // node a's registry, asked from here
    seen = co_await next_event(self);
  });
  CHECK(ra->whereis("db") == holder); // in the registering node's cache when the call returned
  CHECK(seen.what == grove::registry_event::kind::registered);
  CHECK(seen.key == "db");
  CHECK(seen.process == holder);
  CHECK(rb->whereis("db") == holder); // a pid of node a, seen from node b
  CHECK(rb->endpoint_of("db") == "10.0.0.1:4370");
  CHECK(rb->names() == std::vector<std::string>{"db"});

  std::error_code refused;
  std::string text;
  on(c.b, [&](grove::process&) -> awaitable<void> {
    try {
      co_await rb->register_name("db", rival);
    } catch (const grove::error& e) {
      refused = e.code();
      text = e.what();
    }
  });
  CHECK(refused == grove::registry_errc::already_registered);
  CHECK(text.find(holder.to_string()) != std::string::npos);

  // A pid of another node cannot be registered here: its node owns it.
  std::error_code foreign;
  on(c.a, [&](grove::process&) -> awaitable<void> {
    try {
      co_await ra->register_name("other", rival);
    } catch (const grove::error& e) {
      foreign = e.code();
    }
  });
  CHECK(foreign == grove::errc::invalid_argument);

  // The holder ends: its node deletes the key, the other node hears of it.
  on(c.b, [&](grove::process& self) -> awaitable<void> {
    co_await rb->watch("db"); // (the first watcher was the process that ended above)
    grove::exit(holder, grove::exit_reason::kill());
    seen = co_await next_event(self);
  });
  CHECK(seen.what == grove::registry_event::kind::unregistered);
  CHECK(seen.process == holder);
  CHECK_FALSE(rb->whereis("db"));
  CHECK_FALSE(ra->whereis("db"));
  // Free again: the other node may take it, and unregister it.
  on(c.b, [&](grove::process&) -> awaitable<void> {
    co_await rb->register_name("db", rival);
    CHECK(rb->whereis("db") == rival);
    const bool removed = co_await rb->unregister_name("db", rival);
    const bool again = co_await rb->unregister_name("db", rival);
    CHECK(removed);
    CHECK_FALSE(again);
  });
  CHECK_FALSE(rb->whereis("db"));
}

TEST_CASE("two nodes claiming the same names get one process each, and both agree on it") {
  cluster c;
  auto ra = open_on(c.a, c.client);
  auto rb = open_on(c.b, c.client);
  constexpr int names = 12;
  struct outcome {
    bool granted = false;
    grove::pid holder;
  };
  std::vector<outcome> from_a(names), from_b(names);
  // Each node claims every name at once from its own process; a granted
  // claimant starts a process and settles the claim with it.
  auto claimer = [&](grove::node& n, grove::etcd_registry& r, std::vector<outcome>& out) {
    return [&n, &r, &out](grove::process&) -> awaitable<void> {
      for (int i = 0; i < names; ++i) {
        const std::string name = "shard/" + std::to_string(i);
        const grove::name_claim got = co_await r.claim(name);
        if (got.granted) {
          const grove::pid started = idle_process(n);
          co_await r.settle_claim(name, started);
          out[i] = outcome{true, started};
        } else {
          out[i] = outcome{false, got.holder};
        }
      }
    };
  };
  std::thread on_a([&] { on(c.a, claimer(c.a, *ra, from_a)); });
  std::thread on_b([&] { on(c.b, claimer(c.b, *rb, from_b)); });
  on_a.join();
  on_b.join();
  for (int i = 0; i < names; ++i) {
    CAPTURE(i);
    CHECK(from_a[i].granted != from_b[i].granted); // exactly one node started it
    CHECK(from_a[i].holder == from_b[i].holder);   // and both know which process holds it
    CHECK(from_a[i].holder);
  }
}

TEST_CASE("a node that dies without a word loses its names and memberships at its lease's TTL") {
  cluster c;
  auto ra = open_on(c.a, c.client, 2);
  auto rb = open_on(c.b, c.client);
  const grove::pid holder = idle_process(c.a);
  bool registered = false, joined = false, leader_gone = false, worker_left = false;
  on(c.b, [&](grove::process& self) -> awaitable<void> {
    co_await rb->watch("leader");
    co_await rb->watch("workers");
    // Node a's registry, asked from here, after b watches: b hears of both.
    co_await ra->register_name("leader", holder);
    std::any fast = std::string("fast");
    co_await ra->join("workers", std::move(fast), holder);
    while (!registered || !joined) {
      const grove::registry_event e = co_await next_event(self);
      registered = registered || (e.key == "leader" && e.what == grove::registry_event::kind::registered);
      joined = joined || (e.key == "workers" && e.what == grove::registry_event::kind::joined);
    }
    REQUIRE(rb->members("workers").size() == 1);
    CHECK(std::any_cast<std::string>(rb->members("workers")[0].value) == "fast");
    CHECK(rb->whereis("leader") == holder);
    // Node a's registry dies at once, as in a kill -9 of its machine: no
    // clean-up, no revoke; only the lease's TTL ends its keys.
    grove::exit(ra->process(), grove::exit_reason::kill());
    while (!leader_gone || !worker_left) {
      const grove::registry_event e = co_await next_event(self);
      leader_gone = leader_gone || (e.key == "leader" && e.what == grove::registry_event::kind::unregistered);
      worker_left = worker_left || (e.key == "workers" && e.what == grove::registry_event::kind::left);
    }
  });
  CHECK(leader_gone);
  CHECK(worker_left);
  CHECK_FALSE(rb->whereis("leader"));
  CHECK(rb->members("workers").empty());
}

TEST_CASE("groups and metadata are shared, in join order, with their values") {
  cluster c;
  auto ra = open_on(c.a, c.client);
  auto rb = open_on(c.b, c.client);
  const grove::pid first = idle_process(c.a);
  const grove::pid second = idle_process(c.b);
  on(c.a, [&](grove::process&) -> awaitable<void> {
    nlohmann::json weight;
    weight["weight"] = 3;
    std::any value = weight; // (named: a braced temporary in a co_await trips g++ 12)
    co_await ra->join("pool/a b", std::move(value), first);
    co_await ra->put_meta("schema", "7");
  });
  on(c.b, [&](grove::process& self) -> awaitable<void> {
    co_await rb->watch("pool/a b");
    co_await rb->join("pool/a b", {}, second);
    // b's own join is in its cache when join returns, and after a's (join order).
    const auto members = rb->members("pool/a b");
    REQUIRE(members.size() == 2);
    CHECK(members[0].process == first);
    CHECK(std::any_cast<nlohmann::json>(members[0].value)["weight"] == 3);
    CHECK(members[1].process == second);
    CHECK_FALSE(members[1].value.has_value());
    // a's join may reach b's cache before or after the watch began.
    grove::registry_event joined = co_await next_event(self);
    if (joined.process == first) joined = co_await next_event(self);
    CHECK(joined.what == grove::registry_event::kind::joined);
    CHECK(joined.process == second);
    CHECK(rb->meta("schema") == std::optional<std::string>("7"));
    const bool left = co_await rb->leave("pool/a b", second);
    const bool again = co_await rb->leave("pool/a b", second);
    CHECK(left);
    CHECK_FALSE(again);
    const grove::registry_event gone = co_await next_event(self);
    CHECK(gone.what == grove::registry_event::kind::left);
    std::error_code refused;
    try {
      std::any number = 42; // an int cannot go through etcd
      co_await rb->join("pool/a b", std::move(number), second);
    } catch (const grove::error& e) {
      refused = e.code();
    }
    CHECK(refused == grove::errc::invalid_argument);
  });
  int visited = 0;
  rb->for_each_member("pool/a b", [&](const grove::group_member& m) {
    CHECK(m.process == first);
    ++visited;
  });
  CHECK(visited == 1);
}

TEST_CASE("a second registry for one node id is refused, naming the id") {
  cluster c;
  auto ra = open_on(c.a, c.client);
  std::string text;
  try {
    open_on(c.a, c.client);
  } catch (const grove::error& e) {
    text = e.what();
  }
  CHECK(text.find("node id " + std::to_string(c.a.id())) != std::string::npos);
}

TEST_CASE("the registry keeps up across an etcd restart: changes made after it reach the other node") {
  cluster c;
  auto ra = open_on(c.a, c.client, 30);
  auto rb = open_on(c.b, c.client, 30);
  const grove::pid holder = idle_process(c.a);
  c.server.kill();
  c.server.start(); // same data directory: the leases and revisions survive
  grove::registry_event seen{};
  on(c.b, [&](grove::process& self) -> awaitable<void> {
    co_await rb->watch("after-restart");
    co_await ra->register_name("after-restart", holder);
    seen = co_await next_event(self);
  });
  CHECK(seen.what == grove::registry_event::kind::registered);
  CHECK(rb->whereis("after-restart") == holder);
}

TEST_CASE("a registry whose lease is lost takes a new one and registers its names and members again") {
  cluster c;
  auto ra = open_on(c.a, c.client, 5);
  auto rb = open_on(c.b, c.client);
  const grove::pid holder = idle_process(c.a);
  const std::string node_key = "grove/nodes/" + std::to_string(c.a.id());
  std::int64_t old_lease = 0, new_lease = 0;
  on(c.b, [&](grove::process& self) -> awaitable<void> {
    co_await rb->watch("kept");
    co_await rb->watch("crew");
    co_await ra->register_name("kept", holder);
    std::any role = std::string("cook");
    co_await ra->join("crew", std::move(role), holder);
    bool registered = false, joined = false;
    while (!registered || !joined) {
      const grove::registry_event e = co_await next_event(self);
      registered = registered || e.what == grove::registry_event::kind::registered;
      joined = joined || e.what == grove::registry_event::kind::joined;
    }
    const etcd::get_result before = co_await c.client.get(node_key);
    REQUIRE(before.kvs.size() == 1);
    old_lease = before.kvs[0].lease;
    co_await c.client.revoke_lease(old_lease); // as if it had expired while etcd was away
    // The keys went with the lease, and come back on a new one.
    bool gone = false, back = false, left = false, rejoined = false;
    while (!back || !rejoined) {
      const grove::registry_event e = co_await next_event(self);
      if (e.key == "kept") {
        gone = gone || e.what == grove::registry_event::kind::unregistered;
        back = back || (gone && e.what == grove::registry_event::kind::registered);
      } else {
        left = left || e.what == grove::registry_event::kind::left;
        rejoined = rejoined || (left && e.what == grove::registry_event::kind::joined);
      }
    }
    const etcd::get_result after = co_await c.client.get(node_key);
    REQUIRE(after.kvs.size() == 1);
    new_lease = after.kvs[0].lease;
    const etcd::get_result name = co_await c.client.get("grove/names/kept");
    REQUIRE(name.kvs.size() == 1);
    CHECK(name.kvs[0].lease == new_lease);
    // A write through a returns once a's cache reflects it, and so what
    // came before it: the name a wrote again.
    co_await ra->register_name("after", holder);
  });
  CHECK(grove::alive(ra->process()));
  CHECK(new_lease != 0);
  CHECK(new_lease != old_lease);
  CHECK(rb->whereis("kept") == holder);
  CHECK(ra->whereis("kept") == holder);
  REQUIRE(rb->members("crew").size() == 1);
  CHECK(std::any_cast<std::string>(rb->members("crew")[0].value) == "cook");
}

TEST_CASE("on a three-member etcd cluster, killing the member the registries use leaves them working") {
  test_support::etcd_cluster etcd(3);
  // A long request timeout: killing the member may cost an election, which
  // took more than the default 5 s once under ASan on a loaded machine.
  etcd::client client{etcd::client_options{.endpoints = etcd.urls(), .request_timeout = 20s}};
  grove::node a{{.threads = 1}};
  grove::node b{{.threads = 1}};
  auto ra = open_on(a, client);
  auto rb = open_on(b, client);
  const grove::pid before = idle_process(a);
  const grove::pid after = idle_process(a);
  on(b, [&](grove::process& self) -> awaitable<void> {
    co_await rb->watch("before");
    co_await rb->watch("after");
    co_await ra->register_name("before", before);
    const grove::registry_event first = co_await next_event(self);
    CHECK(first.process == before);
    // Every client talks to the first endpoint while it answers: that one goes.
    etcd.member(0).kill();
    co_await ra->register_name("after", after); // through a member still up
    const grove::registry_event second = co_await next_event(self); // b's watch moved over too
    CHECK(second.key == "after");
    CHECK(second.what == grove::registry_event::kind::registered);
    CHECK(second.process == after);
  });
  CHECK(rb->whereis("before") == before);
  CHECK(rb->whereis("after") == after);
  CHECK(client.current_endpoint() != etcd.urls()[0]);
}

TEST_CASE("etcd_registry: a watch that fell behind a compaction reloads, and watchers hear what changed meanwhile") {
  test_support::etcd_cluster etcd(3);
  const auto urls = etcd.urls();
  // a reaches etcd through member 0 only; b through the other two. (Long
  // request timeouts: killing a member may cost an election, slow on a
  // loaded machine.)
  etcd::client client_a{etcd::client_options{.endpoints = {urls[0]}, .request_timeout = 20s}};
  etcd::client client_b{etcd::client_options{.endpoints = {urls[1], urls[2]}, .request_timeout = 20s}};
  grove::node a{{.threads = 1}};
  grove::node b{{.threads = 1}};
  auto ra = open_on(a, client_a);
  auto rb = open_on(b, client_b);
  const grove::pid gone = idle_process(b);
  const grove::pid came = idle_process(b);
  on(a, [&](grove::process& self) -> awaitable<void> {
    co_await ra->watch("gone");
    co_await ra->watch("came");
    co_await rb->register_name("gone", gone);
    const grove::registry_event seen = co_await next_event(self); // through a's watch
    CHECK(seen.key == "gone");
    CHECK(seen.what == grove::registry_event::kind::registered);
    // a loses etcd; meanwhile b changes both names, and the history of the
    // change is compacted away, so a's watch cannot resume where it was.
    etcd.member(0).kill();
    const bool unregistered = co_await rb->unregister_name("gone", gone);
    CHECK(unregistered);
    co_await rb->register_name("came", came);
    etcd::get_options o;
    const etcd::get_result now = co_await client_b.get("grove/", o);
    co_await client_b.compact(now.revision);
    etcd.member(0).start();
    // a reloads and tells its watchers the difference, in either order.
    std::optional<grove::registry_event> about_gone, about_came;
    while (!about_gone || !about_came) {
      const grove::registry_event e = co_await next_event(self);
      if (e.key == "gone") about_gone = e;
      if (e.key == "came") about_came = e;
    }
    CHECK(about_gone->what == grove::registry_event::kind::unregistered);
    CHECK(about_gone->process == gone);
    CHECK(about_came->what == grove::registry_event::kind::registered);
    CHECK(about_came->process == came);
  });
  CHECK(ra->whereis("gone") == grove::pid());
  CHECK(ra->whereis("came") == came);
}
