// grove/dist against a second node in a process of its own
// (tests/dist/dist_peer.cpp), over loopback.
#include <grove/dist/dist.hpp>

#include "../child_process.hpp"
#include "../etcd/etcd_server.hpp"
#include "../readme_check.hpp"
#include "dist_types.hpp"

#include <grove/core/node.hpp>
#include <grove/etcd/etcd_registry.hpp>

#include <doctest/doctest.h>

#include <chrono>
#include <mutex>
#include <optional>
#include <string>

using namespace std::chrono_literals;
using dist_test::service;

namespace {

constexpr const char* cookie = "dist-test-cookie";

struct peer {
  test_support::child_process process;
  std::uint16_t port = 0;
  std::uint32_t node = 0;
  grove::pid service{};

  explicit peer(std::uint32_t id, std::string secret = cookie, std::string etcd_url = {})
      : process({GROVE_DIST_PEER, std::to_string(id), secret, std::string(GROVE_SOURCE_ROOT) + "/certs", etcd_url}) {
    auto line = nlohmann::json::parse(process.wait_for("\"port\""));
    port = line.at("port").get<std::uint16_t>();
    node = line.at("node").get<std::uint32_t>();
    service = line.at("service").get<grove::pid>();
  }
};

grove::dist::options plain_options() {
  grove::dist::options o;
  o.cookie = cookie;
  return o;
}

grove::node_options node_one() {
  grove::node_options o;
  o.threads = 2;
  o.id = 1;
  return o;
}

struct registered {
  registered() {
    static bool once = [] {
      dist_test::register_types();
      return true;
    }();
    (void)once;
  }
};

/// Node 1 with its dist, linked to a peer node 2.
struct linked {
  registered types;
  peer p{2};
  grove::node n{node_one()};
  std::shared_ptr<grove::dist::instance> d = n.block_on(grove::dist::start(n, plain_options()));
  std::uint32_t linked_to = n.block_on(d->connect("127.0.0.1", p.port));
  ~linked() { d->stop(); }
};

/// Waits for a message the predicate accepts (others are dropped).
template <class T>
grove::awaitable<std::optional<T>> receive_one(grove::process& self, std::chrono::milliseconds within = 10s) {
  const auto until = std::chrono::steady_clock::now() + within;
  for (;;) {
    const auto left = std::chrono::duration_cast<grove::duration>(until - std::chrono::steady_clock::now());
    if (left <= grove::duration::zero()) co_return std::nullopt;
    auto m = co_await self.receive_for(left);
    if (!m) co_return std::nullopt;
    if (auto* v = m->template get_if<T>()) co_return *v;
  }
}

std::error_code call_error(grove::node& n, grove::awaitable<void> work) {
  try {
    n.block_on(std::move(work));
  } catch (const grove::error& e) {
    return e.code();
  }
  return {};
}

} // namespace

TEST_CASE("dist: calls, casts and sends reach a process of another node, and answers come back") {
  registered r;
  peer p(2);
  grove::node n(node_one());
  auto d = n.block_on(grove::dist::start(n, plain_options()));
  CHECK(n.block_on(d->connect("127.0.0.1", p.port)) == 2);
  REQUIRE(d->peers().size() == 1);
  CHECK(d->peers()[0].node == 2);
  CHECK(d->peers()[0].dialed);

  // clang-format off
// --- README example begins
// p.service: a pid of node 2, as its line printed it ("2.C.W.S.N")
grove::server_ref<service> remote(p.service);
CHECK(n.block_on(remote.call(dist_test::echo{"hello over there"})) == "hello over there");
remote.cast(dist_test::note{"a cast crosses too"});
// --- README example ends
  // clang-format on
  CHECK(n.block_on(remote.call(dist_test::get_notes{})).at(0) == "a cast crosses too");
  CHECK(readme_check::readme_holds_example_of("tests/dist/dist_test.cpp"));
  // Casts and calls from one process arrive in the order they were made.
  n.block_on([&](grove::process&) -> grove::awaitable<void> {
    for (int i = 0; i < 50; ++i) remote.cast(dist_test::note{"n" + std::to_string(i)});
    auto notes = co_await remote.call(dist_test::get_notes{});
    REQUIRE(notes.size() == 51); // (the README example's first)
    for (int i = 0; i < 50; ++i) CHECK(notes[static_cast<std::size_t>(i) + 1] == "n" + std::to_string(i));
  });
  // A plain send with a pid inside: the peer answers to it.
  const int got = n.block_on([&](grove::process& self) -> grove::awaitable<int> {
    grove::send(p.service, dist_test::ping{self.self(), 41});
    auto pong = co_await receive_one<dist_test::pong>(self);
    co_return pong ? pong->n : -1;
  });
  CHECK(got == 41);
  d->stop();
}

TEST_CASE_FIXTURE(linked, "dist: a call keeps its semantics across nodes") {
  CHECK(linked_to == 2);
  grove::server_ref<service> remote(p.service);

  // A handler that throws: exited, with the reason.
  try {
    n.block_on(remote.call(dist_test::crash{}));
    FAIL("the call should have failed");
  } catch (const grove::error& e) {
    CHECK(e.code() == grove::errc::exited);
    REQUIRE(e.reason());
    CHECK(e.reason()->detail().find("asked to crash") != std::string::npos);
  }
  // The server crashed with it; a new pid of that node that names nothing: noproc.
  // (Requests named before a co_await: g++ 12 destroys a braced temporary
  // with a destructor inside a co_await expression twice.)
  CHECK(call_error(n, [&]() -> grove::awaitable<void> {
          dist_test::echo request{"x"};
          co_await remote.call(std::move(request));
        }()) == grove::errc::noproc);
  grove::pid bogus(p.service.node_id(), p.service.creation(), 0, 0, 999999);
  CHECK(call_error(n, [&]() -> grove::awaitable<void> {
          dist_test::echo request{"x"};
          co_await grove::server_ref<service>(bogus).call(std::move(request));
        }()) == grove::errc::noproc);
  // A pid of the right node id but another life of it: not reachable.
  grove::pid old_life(p.service.node_id(), p.service.creation() + 1, 0, 0, 1);
  CHECK(call_error(n, [&]() -> grove::awaitable<void> {
          dist_test::echo request{"x"};
          co_await grove::server_ref<service>(old_life).call(std::move(request));
        }()) == grove::errc::noproc);
  // A type nobody registered: refused before it leaves, naming the type.
  try {
    n.block_on(remote.call(dist_test::not_registered{}));
    FAIL("the call should have failed");
  } catch (const grove::error& e) {
    CHECK(e.code() == grove::errc::invalid_argument);
    CHECK(std::string(e.what()).find("not registered") != std::string::npos);
  }
}

TEST_CASE_FIXTURE(linked, "dist: timeouts, monitors and links across nodes; noconnection when the other node dies") {
  auto fresh = n.block_on(grove::server_ref<service>(p.service).call(dist_test::echo{"up"}));
  CHECK(fresh == "up");

  n.block_on([&](grove::process& self) -> grove::awaitable<void> {
    grove::server_ref<service> remote(p.service);
    // A call the server keeps without answering: the caller's timeout.
    std::error_code failed;
    try {
      co_await remote.call(dist_test::never_answer{}, 200ms);
    } catch (const grove::error& e) {
      failed = e.code();
    }
    CHECK(failed == grove::errc::timeout);
    // Its reply, late, is dropped; the link and the next calls go on.
    const int released = co_await remote.call(dist_test::release_kept{});
    CHECK(released == 1);
    const int late_fresh = co_await remote.call(dist_test::release_kept{});
    CHECK(late_fresh == 0);
    // A monitor and a link on the remote server; its clean stop arrives as a down.
    self.trap_exit(true);
    auto ref = self.monitor(p.service);
    dist_test::stop_with bye{"bye"};
    const bool stopping = co_await remote.call(std::move(bye));
    CHECK(stopping);
    auto down = co_await receive_one<grove::down_message>(self);
    REQUIRE(down);
    CHECK(down->ref == ref);
    CHECK(down->reason == grove::exit_reason::shutdown("bye"));
  });

  // The peer watches and links to a process of ours: its end reaches it.
  peer q(3);
  n.block_on(d->connect("127.0.0.1", q.port));
  grove::server_ref<service> watcher(q.service);
  auto ours = n.block_on(grove::start<service>(n));
  CHECK(n.block_on(watcher.call(dist_test::link_to{ours.id()})));
  const std::string watched = n.block_on([&](grove::process& self) -> grove::awaitable<std::string> {
    const grove::pid me = self.self();
    grove::spawn(n, [&, me](grove::process&) -> grove::awaitable<void> {
      std::string reason = co_await watcher.call(dist_test::watch{ours.id(), me}, 10s);
      grove::send(me, dist_test::note{reason});
    });
    auto watching = co_await receive_one<dist_test::pong>(self); // the monitor is set
    REQUIRE(watching);
    dist_test::stop_with done{"ours done"};
    const bool stopping = co_await ours.call(std::move(done));
    CHECK(stopping);
    auto reason = co_await receive_one<dist_test::note>(self);
    co_return reason ? reason->text : std::string("no answer");
  });
  CHECK(watched == "{shutdown, ours done}");
  // The link delivered the exit to the trapping peer server too.
  auto exits = n.block_on(watcher.call(dist_test::exits_seen{}));
  REQUIRE(exits.size() == 1);
  CHECK(exits[0] == "{shutdown, ours done}");

  // kill -9 of the other node: a monitor and a link fire noconnection, a
  // call fails with noconnection (whether it left before the kill or after).
  struct go {};
  grove::pid killer = grove::spawn(n, [&](grove::process& self) -> grove::awaitable<void> {
    if (co_await receive_one<go>(self)) q.process.stop();
  });
  n.block_on([&](grove::process& self) -> grove::awaitable<void> {
    self.trap_exit(true);
    auto ref = self.monitor(q.service);
    self.link(q.service);
    grove::send(killer, go{});
    std::error_code failed;
    try {
      co_await watcher.call(dist_test::never_answer{}, 30s);
    } catch (const grove::error& e) {
      failed = e.code();
    }
    CHECK(failed == grove::errc::noconnection);
    // Both come, in either order.
    std::optional<grove::down_message> down;
    std::optional<grove::exit_message> exit;
    while (!down || !exit) {
      auto m = co_await self.receive_for(10s);
      REQUIRE(m);
      if (auto* d = m->get_if<grove::down_message>()) down = *d;
      if (auto* e = m->get_if<grove::exit_message>()) exit = *e;
    }
    CHECK(down->ref == ref);
    CHECK(down->reason == grove::exit_reason::noconnection());
    CHECK(exit->from == q.service);
    CHECK(exit->reason == grove::exit_reason::noconnection());
    // And later ones: the node is known to be down.
    std::error_code later;
    try {
      dist_test::echo anyone{"anyone?"};
      co_await watcher.call(std::move(anyone));
    } catch (const grove::error& e) {
      later = e.code();
    }
    CHECK(later == grove::errc::noconnection);
  });
  // Node 3 is gone from the peers; node 2 is still there.
  auto peers = d->peers();
  REQUIRE(peers.size() == 1);
  CHECK(peers[0].node == 2);
}

TEST_CASE("dist: the handshake refuses a wrong cookie and a second node with our id") {
  registered r;
  grove::node n(node_one());
  auto d = n.block_on(grove::dist::start(n, plain_options()));
  {
    peer wrong(2, "another-cookie");
    CHECK(call_error(n, [&]() -> grove::awaitable<void> { co_await d->connect("127.0.0.1", wrong.port); }()) ==
          grove::errc::noconnection);
  }
  {
    peer same(1);
    CHECK(call_error(n, [&]() -> grove::awaitable<void> { co_await d->connect("127.0.0.1", same.port); }()) ==
          grove::errc::noconnection);
  }
  CHECK(d->peers().empty());
  // Nothing to connect to.
  peer gone(2);
  const auto port = gone.port;
  gone.process.stop();
  CHECK(call_error(n, [&]() -> grove::awaitable<void> { co_await d->connect("127.0.0.1", port); }()) ==
        grove::errc::noconnection);
  d->stop();
}

TEST_CASE("dist: mutual TLS between nodes, and the peer that dialed us is reachable") {
  registered r;
  peer p(2, "tls");
  grove::node n(node_one());
  grove::dist::options o;
  dist_test::use_test_tls(o, std::string(GROVE_SOURCE_ROOT) + "/certs");
  auto d = n.block_on(grove::dist::start(n, o));
  CHECK(n.block_on(d->connect("127.0.0.1", p.port)) == 2);
  CHECK(n.block_on(grove::server_ref<service>(p.service).call(dist_test::echo{"sealed"})) == "sealed");
  d->stop();
}

TEST_CASE("dist: options are checked, and one dist runs per program") {
  registered r;
  grove::node n(node_one());
  grove::dist::options o; // no cookie, no TLS
  try {
    n.block_on(grove::dist::start(n, o));
    FAIL("start should have refused");
  } catch (const grove::error& e) {
    CHECK(std::string(e.what()).find("dist.options.cookie") != std::string::npos);
  }
  o = plain_options();
  o.address = "not-an-address";
  CHECK_THROWS_WITH_AS(n.block_on(grove::dist::start(n, o)), doctest::Contains("dist.options.address"), grove::error);
  auto d = n.block_on(grove::dist::start(n, plain_options()));
  CHECK_THROWS_WITH_AS(n.block_on(grove::dist::start(n, plain_options())), doctest::Contains("one per program"),
                       grove::error);
  d->stop();
  auto again = n.block_on(grove::dist::start(n, plain_options()));
  again->stop();
}

TEST_CASE("dist: with options.resolve a node dials on demand, and again once the other node restarted") {
  registered r;
  std::optional<peer> p;
  p.emplace(2);
  std::mutex mutex;
  std::uint16_t port_of_2 = p->port;
  grove::node n(node_one());
  grove::dist::options o = plain_options();
  o.resolve = [&](std::uint32_t node) -> std::string {
    std::lock_guard lock(mutex);
    if (node == 2) return "127.0.0.1:" + std::to_string(port_of_2);
    if (node == 8) return "127.0.0.1:1"; // nothing listens there
    return {};
  };
  auto d = n.block_on(grove::dist::start(n, o));
  CHECK(d->peers().empty());
  // A process told of nodes coming and going.
  struct fetch {};
  struct seen {
    std::vector<std::string> events;
  };
  std::vector<std::string> events;
  const grove::pid node_watcher = grove::spawn(n, [&](grove::process& self) -> grove::awaitable<void> {
    std::vector<std::string> log;
    for (;;) {
      auto m = co_await self.receive();
      if (auto* u = m.get_if<grove::dist::node_up>()) log.push_back("up " + std::to_string(u->node));
      if (auto* dn = m.get_if<grove::dist::node_down>()) log.push_back("down " + std::to_string(dn->node));
      if (auto* f = m.get_if<std::pair<fetch, grove::pid>>()) grove::send(f->second, seen{log});
    }
  });
  d->monitor_nodes(node_watcher);
  auto events_so_far = [&] {
    return n.block_on([&](grove::process& self) -> grove::awaitable<std::vector<std::string>> {
      grove::send(node_watcher, std::make_pair(fetch{}, self.self()));
      auto s = co_await receive_one<seen>(self);
      co_return s ? s->events : std::vector<std::string>{"no answer"};
    });
  };

  // No connect(): the first call opens the link, and the casts before it wait for it, in order.
  const grove::pid first = p->service;
  n.block_on([&](grove::process&) -> grove::awaitable<void> {
    grove::server_ref<service> remote(first);
    for (int i = 0; i < 20; ++i) remote.cast(dist_test::note{"n" + std::to_string(i)});
    auto notes = co_await remote.call(dist_test::get_notes{});
    REQUIRE(notes.size() == 20);
    for (int i = 0; i < 20; ++i) CHECK(notes[static_cast<std::size_t>(i)] == "n" + std::to_string(i));
  });
  REQUIRE(d->peers().size() == 1);
  CHECK(d->peers()[0].dialed);

  // Node 2 dies and comes back (another life: a new creation, a new port).
  n.block_on([&](grove::process& self) -> grove::awaitable<void> {
    self.monitor(first);
    p->process.stop();
    auto down = co_await receive_one<grove::down_message>(self);
    REQUIRE(down);
    CHECK(down->reason == grove::exit_reason::noconnection());
  });
  p.emplace(2);
  {
    std::lock_guard lock(mutex);
    port_of_2 = p->port;
  }
  CHECK(p->service.creation() != first.creation());
  CHECK(n.block_on(grove::server_ref<service>(p->service).call(dist_test::echo{"again"})) == "again");
  // (node_up is sent before the first reply can come back over the link, node_down before the monitors fire)
  CHECK(events_so_far() == std::vector<std::string>{"up 2", "down 2", "up 2"});
  // A pid of its earlier life names no process now.
  CHECK(call_error(n, [&]() -> grove::awaitable<void> {
          dist_test::echo request{"old"};
          co_await grove::server_ref<service>(first).call(std::move(request));
        }()) == grove::errc::noproc);
  // A node the resolver does not know: no process; one that cannot be reached: noconnection.
  CHECK(call_error(n, [&]() -> grove::awaitable<void> {
          dist_test::echo request{"x"};
          co_await grove::server_ref<service>(grove::pid(7, 1, 0, 0, 1)).call(std::move(request));
        }()) == grove::errc::noproc);
  CHECK(call_error(n, [&]() -> grove::awaitable<void> {
          dist_test::echo request{"x"};
          co_await grove::server_ref<service>(grove::pid(8, 1, 0, 0, 1)).call(std::move(request));
        }()) == grove::errc::noconnection);
  d->stop();
}

TEST_CASE("dist: a name held on another node, found through etcd_registry, reached by via") {
  registered r;
  test_support::etcd_server etcd_server;
  peer p(2, cookie, etcd_server.url()); // registers its service as "svc", its dist port as its endpoint
  grove::node n(node_one());
  grove::etcd::client etcd(grove::etcd::client_options{.endpoints = {etcd_server.url()}});
  auto names = std::make_shared<std::unique_ptr<grove::etcd_registry>>();
  grove::dist::options o = plain_options();
  o.resolve = [names](std::uint32_t node) { return *names ? (*names)->node_endpoint(node) : std::string(); };
  auto d = n.block_on(grove::dist::start(n, o));
  grove::etcd_registry_options ro;
  ro.endpoint = "127.0.0.1:" + std::to_string(d->port());
  *names = n.block_on(grove::etcd_registry::open(n, etcd, ro));
  CHECK((*names)->node_endpoint(2) == "127.0.0.1:" + std::to_string(p.port));
  CHECK((*names)->node_endpoint(1) == ro.endpoint);
  CHECK((*names)->node_endpoint(9).empty());
  // The name is the peer's; no connect(): the via call dials node 2 through the registry's endpoint.
  CHECK((*names)->whereis("svc") == p.service);
  CHECK(n.block_on(grove::via<service>(**names, "svc").call(dist_test::echo{"via etcd"})) == "via etcd");
  grove::via<service>(**names, "svc").cast(dist_test::note{"cast by name"});
  const auto notes = n.block_on(grove::via<service>(**names, "svc").call(dist_test::get_notes{}));
  REQUIRE(notes.size() == 1);
  CHECK(notes[0] == "cast by name");
  REQUIRE(d->peers().size() == 1);
  CHECK(d->peers()[0].node == 2);
  names->reset(); // leaves the cluster (its lease revoked) before the node stops
  d->stop();
}
