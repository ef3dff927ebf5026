#include <grove/erps/daemon.hpp>

#include "erps_support.hpp"
#include "../gate.hpp"

#include <grove/core/gen_server.hpp>
#include <grove/erps/client.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <string>

using namespace erps_test;
using grove::erps::client;
using grove::erps::client_options;
using grove::erps::client_ref;
// Not `using grove::erps::daemon`: <unistd.h> declares a function daemon().
using erps_daemon = grove::erps::daemon;
using grove::erps::daemon_options;

namespace {

/// A node, a daemon serving test_server on 127.0.0.1:0, and clients of it.
struct rig {
  std::shared_ptr<event_log> logs = std::make_shared<event_log>();
  std::shared_ptr<event_log> events = std::make_shared<event_log>();
  grove::node node{{.threads = 2}};
  erps_daemon server;

  explicit rig(daemon_options options = {}) {
    options.link.log = capture(logs);
    server = node.block_on(start_test_daemon(node, options, json{{"seed", 1}}, events));
  }

  client_options client_settings() const {
    client_options o;
    o.port = server.port();
    o.link.log = capture(logs);
    o.connection.backoff = grove::backoff_policy::constant(20ms);
    return o;
  }

  client_ref connect(client_options o) { return node.block_on(client::start(node, std::move(o))); }
  client_ref connect() { return connect(client_settings()); }

  json call(const client_ref& c, json request, grove::duration timeout = 10s) {
    return node.block_on(c.call(std::move(request), timeout));
  }

  /// The pids of the connection servers running now.
  std::vector<grove::pid> sessions() {
    std::vector<grove::pid> out;
    for (auto& child : node.block_on(server.supervisor().which_children())) out.push_back(child.process);
    return out;
  }
};

/// A process that makes one call and logs "<label> <reply>" or
/// "<label> error <what>".
struct caller {
  client_ref c;
  json request;
  std::string label;
  std::shared_ptr<event_log> log;
  grove::awaitable<void> operator()(grove::process&) {
    std::string line;
    try {
      json reply = co_await c.call(request, 20s);
      line = label + " " + reply.dump();
    } catch (const grove::error& e) {
      line = label + " error " + e.what();
    }
    log->add(line);
  }
};

/// The next `n` frames the daemon sends (keepalives skipped), each as
/// "<type> <payload>"; fewer if the rest do not come.
std::vector<std::string> next_frames(raw_client& wire, int n) {
  std::vector<std::string> frames;
  for (int i = 0; i < n; ++i) {
    auto f = wire.read_non_keepalive();
    if (!f) break;
    frames.push_back(std::string(grove::erps::to_string(f->type)) + " " + f->payload);
  }
  return frames;
}

json op(const char* name) { return json{{"op", name}}; }
json op(const char* name, json value) { return json{{"op", name}, {"value", std::move(value)}}; }

} // namespace

TEST_CASE("a call is answered, a cast is handled before the next call, and a push reaches the client") {
  rig r;
  auto pushes = std::make_shared<event_log>();
  auto settings = r.client_settings();
  settings.on_push = [pushes](const json& v) { pushes->add(v.dump()); };
  auto c = r.connect(settings);
  CHECK(r.call(c, op("echo", "hello")) == "hello");
  c.cast(json{{"op", "put"}, {"key", "k"}, {"value", 42}});
  CHECK(r.call(c, json{{"op", "get"}, {"key", "k"}}) == 42);
  CHECK(r.call(c, op("push", json{{"n", 7}})) == true);
  CHECK(pushes->wait_count("{\"n\":7}", 1));
  c.cast(json{{"op", "push"}, {"value", "from a cast"}});
  CHECK(pushes->wait_count("\"from a cast\"", 1));
}

TEST_CASE("each connection has its own server, seeded with the daemon's initial data") {
  rig r;
  auto a = r.connect();
  auto b = r.connect();
  CHECK(r.call(a, op("initial")) == json{{"seed", 1}});
  CHECK(r.call(a, json{{"op", "put"}, {"key", "x"}, {"value", "a's"}}) == true);
  CHECK(r.call(b, json{{"op", "get"}, {"key", "x"}}).is_null());
  CHECK(r.call(a, json{{"op", "get"}, {"key", "x"}}) == "a's");
  CHECK(r.sessions().size() == 2);
  CHECK(r.server.stats().connections == 2);
}

TEST_CASE("replies come back out of order over one connection and each reaches its own caller") {
  rig r;
  auto c = r.connect();
  auto log = std::make_shared<event_log>();
  grove::spawn(r.node, caller{c, op("hold", "first"), "first", log});
  REQUIRE(r.events->wait_count("held \"first\"", 1));
  grove::spawn(r.node, caller{c, op("hold", "second"), "second", log});
  REQUIRE(r.events->wait_count("held \"second\"", 1));
  CHECK(r.call(c, op("release")) == 2); // answers "second" first
  CHECK(log->wait_count("second \"second\"", 1));
  CHECK(log->wait_count("first \"first\"", 1));
}

TEST_CASE("on the wire, a later call's reply goes out before an earlier one's, each with its call id") {
  rig r;
  raw_client wire(r.server.port());
  wire.send(call_frame(1, op("hold", "first")));
  wire.send(call_frame("two", op("hold", "second")));
  wire.send(call_frame(3, op("release")));
  std::vector<std::string> replies;
  for (int i = 0; i < 3; ++i) {
    auto f = wire.read_non_keepalive();
    REQUIRE(f);
    CHECK(f->type == grove::erps::frame_type::reply);
    replies.push_back(f->payload);
  }
  // release's own reply is immediate; the two it answered through their
  // from<json> follow, last held first.
  CHECK(replies == std::vector<std::string>{"[2,3]", "[\"second\",\"two\"]", "[\"first\",1]"});
}

TEST_CASE("a from kept after its call was answered reaches no later call on that connection") {
  rig r;
  auto c = r.connect();
  CHECK(r.call(c, op("echo", "warm")) == "warm"); // (a session reuses an answered call's slot when nothing holds it)
  CHECK(r.call(c, op("keep", "kept")) == "kept");
  for (int i = 0; i < 3; ++i) {
    CHECK(r.call(c, op("late")) == false); // the kept from's call was answered: this one is not
    CHECK(r.call(c, op("echo", i)) == i);
  }
}

TEST_CASE("a reply can come later from another thread") {
  rig r;
  auto c = r.connect();
  CHECK(r.call(c, op("from_thread", json{{"from", "a thread"}})) == json{{"from", "a thread"}});
}

TEST_CASE("10 KiB and 1 MiB payloads go both ways intact") {
  rig r;
  auto c = r.connect();
  for (std::size_t size : {std::size_t{10 * 1024}, std::size_t{1024 * 1024}}) {
    std::string big(size, 'x');
    for (std::size_t i = 0; i < size; i += 97) big[i] = static_cast<char>('a' + i % 26);
    CHECK(r.call(c, op("echo", big)) == big);
  }
}

TEST_CASE("stop with a reply: the caller gets it, the server terminates, the client reconnects to a new one") {
  rig r;
  auto events = std::make_shared<event_log>();
  auto settings = r.client_settings();
  settings.connection.on_event = record_states(events);
  auto c = r.connect(settings);
  REQUIRE(r.call(c, json{{"op", "put"}, {"key", "k"}, {"value", 1}}) == true);
  CHECK(r.call(c, op("stop")) == "bye");
  CHECK(r.events->wait_count("terminate normal", 1));
  REQUIRE(events->wait_count("connected", 2));
  json request = json{{"op", "get"}, {"key", "k"}};
  CHECK(r.node.block_on(c.call(request, waiting())).is_null()); // a fresh server
}

TEST_CASE("stop without a reply: the remote caller gets an error for that call") {
  rig r;
  auto c = r.connect();
  CHECK_THROWS_WITH_AS(r.call(c, op("stop_noreply")), doctest::Contains("the server stopped before it replied"),
                       grove::error);
  CHECK(r.events->wait_count("terminate normal", 1));
}

TEST_CASE("a handler that throws ends that connection's server only; the caller gets an error") {
  rig r;
  auto other = r.connect();
  auto c = r.connect();
  try {
    r.call(c, op("throw"));
    FAIL("the call should have failed");
  } catch (const grove::error& e) {
    CHECK(e.code() == grove::erps_errc::remote);
  }
  CHECK(r.events->wait_count("terminate {error, asked to throw}", 1));
  CHECK(r.call(other, op("echo", 1)) == 1);
}

TEST_CASE("is_remote tells the client's calls from local ones; the server is callable locally") {
  rig r;
  auto c = r.connect();
  CHECK(r.call(c, op("remote")) == true);
  CHECK(r.call(c, op("client")) == json{{"has_client", true}, {"pending", 1}}); // this very call
  auto sessions = r.sessions();
  REQUIRE(sessions.size() == 1);
  grove::server_ref<test_server> local(sessions[0]);
  CHECK(r.node.block_on(local.call(grove::erps::call(op("remote")))) == false);
  CHECK(r.node.block_on(local.call(grove::erps::call(op("echo", "local")))) == "local");
  CHECK(r.node.block_on(local.call(grove::erps::call(op("client")))) == json{{"has_client", true}, {"pending", 0}});

  auto alone = r.node.block_on(grove::start<test_server>(r.node, json{{"seed", 2}}, std::shared_ptr<event_log>()));
  CHECK(r.node.block_on(alone.call(grove::erps::call(op("initial")))) == json{{"seed", 2}});
  CHECK(r.node.block_on(alone.call(grove::erps::call(op("push", 1)))) == false); // no client to push to
  CHECK(r.node.block_on(alone.call(grove::erps::call(op("client")))) == json{{"has_client", false}, {"pending", 0}});
}

TEST_CASE("close_connection: the reply goes out first, then the server stops and the client reconnects") {
  rig r;
  auto c = r.connect();
  CHECK(r.call(c, op("close")) == true);
  CHECK(r.events->wait_count("terminate normal", 1));
  CHECK(logged(*r.logs, "connection_closed: asked to close"));
  CHECK(r.node.block_on(c.call(op("echo", "again"), waiting())) == "again");
}

TEST_CASE("handle_continue runs after a remote call's reply") {
  rig r;
  auto pushes = std::make_shared<event_log>();
  auto settings = r.client_settings();
  settings.on_push = [pushes](const json& v) { pushes->add(v.dump()); };
  auto c = r.connect(settings);
  CHECK(r.call(c, op("continue", 5)) == true);
  CHECK(pushes->wait_count("{\"continued\":5}", 1));
}

TEST_CASE("a reply to a call that gave up is dropped and the connection goes on") {
  rig r;
  auto c = r.connect();
  CHECK_THROWS_AS(r.call(c, op("hold", "late"), 50ms), grove::error);
  REQUIRE(r.events->wait_count("held \"late\"", 1));
  CHECK(r.call(c, op("release")) == 1); // the late reply goes out and is dropped
  CHECK(r.call(c, op("echo", "after")) == "after");
}

TEST_CASE("calls while disconnected fail at once, or wait for the daemon when asked to") {
  auto logs = std::make_shared<event_log>();
  grove::node node{{.threads = 2}};
  auto events = std::make_shared<event_log>();
  daemon_options d;
  d.link.log = capture(logs);
  auto first = node.block_on(start_test_daemon(node, d, json(), events));
  const auto port = first.port();
  node.block_on(first.shutdown(2s));

  client_options o;
  o.port = port;
  o.link.log = capture(logs);
  o.connection.backoff = grove::backoff_policy::constant(20ms);
  auto c = node.block_on(client::start(node, o));
  try {
    node.block_on(c.call(op("echo", 1)));
    FAIL("a call while disconnected should fail");
  } catch (const grove::error& e) {
    CHECK(e.code() == grove::connection_errc::disconnected);
  }
  auto log = std::make_shared<event_log>();
  struct waiting_caller {
    client_ref c;
    std::shared_ptr<event_log> log;
    grove::awaitable<void> operator()(grove::process&) {
      grove::call_options options;
      options.timeout = 20s;
      options.if_not_ready = grove::when_not_ready::wait;
      json request = op("echo", "waited");
      json reply = co_await c.call(request, options);
      log->add(reply.dump());
    }
  };
  grove::spawn(node, waiting_caller{c, log});
  d.port = port;
  auto second = node.block_on(start_test_daemon(node, d, json(), events));
  CHECK(second.port() == port);
  CHECK(log->wait_count("\"waited\"", 1));
}

TEST_CASE("killing a connection's server: the client sees the drop, reconnects, and works") {
  rig r;
  auto states = std::make_shared<event_log>();
  auto settings = r.client_settings();
  settings.connection.on_event = record_states(states);
  auto c = r.connect(settings);
  REQUIRE(r.call(c, op("echo", 1)) == 1);
  auto sessions = r.sessions();
  REQUIRE(sessions.size() == 1);
  grove::exit(sessions[0], grove::exit_reason::kill());
  CHECK(states->wait_count("connected", 2));
  CHECK(states->wait_for([](const auto& v) {
    return std::any_of(v.begin(), v.end(), [](const std::string& s) { return s.find("closed by the peer") != std::string::npos; });
  }));
  CHECK(r.node.block_on(c.call(op("echo", 2), waiting())) == 2);
}

TEST_CASE("the daemon killed and started again on the same port: the client reconnects by itself") {
  rig r;
  auto states = std::make_shared<event_log>();
  auto settings = r.client_settings();
  settings.connection.on_event = record_states(states);
  auto c = r.connect(settings);
  REQUIRE(r.call(c, op("echo", 1)) == 1);
  const auto port = r.server.port();
  const auto supervisor = r.server.supervisor().id();
  grove::exit(r.server.id(), grove::exit_reason::kill());
  REQUIRE(r.node.block_on(grove::detail::await_exit(supervisor, 5s)).has_value());
  REQUIRE(states->wait_count("connecting", 2));
  daemon_options again;
  again.port = port;
  again.link.log = capture(r.logs);
  auto restarted = r.node.block_on(start_test_daemon(r.node, again, json(), r.events));
  CHECK(states->wait_count("connected", 2));
  CHECK(r.node.block_on(c.call(op("echo", "back"), waiting())) == "back");
}

TEST_CASE("graceful shutdown lets a call in flight finish, then closes, and stops accepting") {
  rig r;
  auto c = r.connect();
  auto log = std::make_shared<event_log>();
  grove::spawn(r.node, caller{c, json{{"op", "slow"}, {"value", "finished"}, {"ms", 300}}, "slow", log});
  REQUIRE(r.events->wait_count("held \"finished\"", 1));
  const auto port = r.server.port();
  r.node.block_on(r.server.shutdown(10s));
  // The reply was written before the close; the caller logs it on its own
  // worker, possibly just after shutdown() returned.
  CHECK(log->wait_for([](const std::vector<std::string>& v) { return !v.empty(); }));
  CHECK(log->events() == std::vector<std::string>{"slow \"finished\""});
  CHECK(logged(*r.logs, "draining: shutting down: 1 connection(s)"));
  CHECK(logged(*r.logs, "stopped: the daemon stopped"));
  CHECK_THROWS(raw_client(port));
}

TEST_CASE("graceful shutdown returns at the deadline even when a call never finishes") {
  rig r;
  auto c = r.connect();
  auto log = std::make_shared<event_log>();
  grove::spawn(r.node, caller{c, json{{"op", "slow"}, {"value", "never"}, {"ms", 60'000}}, "slow", log});
  REQUIRE(r.events->wait_count("held \"never\"", 1));
  r.node.block_on(r.server.shutdown(200ms));
  CHECK(logged(*r.logs, "shutdown_deadline: 1 connection(s) still busy"));
  CHECK(log->wait_for([](const auto& v) { return v.size() == 1 && v[0].rfind("slow error", 0) == 0; }));
}

TEST_CASE("over max_connections a client gets an error frame and a clean close; the others go on") {
  daemon_options o;
  o.max_connections = 1;
  rig r(o);
  auto c = r.connect();
  REQUIRE(r.call(c, op("echo", 1)) == 1);
  raw_client extra(r.server.port());
  auto f = extra.read_non_keepalive();
  REQUIRE(f);
  CHECK(f->type == grove::erps::frame_type::error);
  CHECK(f->payload == "\"too many connections: 1 open (max_connections 1)\"");
  CHECK(extra.closed_within());
  CHECK(logged(*r.logs, "connection_refused: too many connections"));
  CHECK(r.call(c, op("echo", 2)) == 2);
  CHECK(r.server.stats().refused == 1);
}

TEST_CASE("a connection idle past idle_timeout is told and closed") {
  daemon_options o;
  o.idle_timeout = 200ms;
  rig r(o);
  raw_client idle(r.server.port());
  auto f = idle.read_non_keepalive();
  REQUIRE(f);
  CHECK(f->type == grove::erps::frame_type::error);
  CHECK(f->payload == "\"closing: idle for 200 ms (no call or cast)\"");
  CHECK(idle.closed_within());
  CHECK(logged(*r.logs, "idle_timeout: idle for 200 ms"));
}

TEST_CASE("the daemon sends keepalives at its interval and closes a silent client") {
  daemon_options o;
  o.link.keepalive_interval = 50ms;
  o.link.keepalive_timeout = 400ms;
  rig r(o);
  raw_client quiet(r.server.port());
  auto f = quiet.read_frame();
  REQUIRE(f);
  CHECK(f->type == grove::erps::frame_type::keepalive);
  CHECK(quiet.closed_within());
  CHECK(logged(*r.logs, "peer_silent: peer silent for 400 ms (keepalive timeout)"));
}

TEST_CASE("the client sends keepalives when quiet, and the daemon counts them") {
  daemon_options o;
  rig r(o);
  auto settings = r.client_settings();
  settings.link.keepalive_interval = 20ms;
  settings.link.keepalive_timeout = 10s;
  auto c = r.connect(settings);
  REQUIRE(r.call(c, op("echo", 1)) == 1);
  // A call after a few keepalive intervals: the keepalives went before it
  // on the same stream, so the daemon counted them by the time it replies.
  auto log = std::make_shared<event_log>();
  grove::spawn(r.node, caller{c, json{{"op", "slow"}, {"value", "v"}, {"ms", 200}}, "slow", log});
  REQUIRE(log->wait_count("slow \"v\"", 1));
  CHECK(r.call(c, op("echo", 2)) == 2);
  CHECK(r.server.stats().keepalives_in >= 2);
}

TEST_CASE("an idle TCP connection parks, keeps taking keepalives, and serves the next call") {
  daemon_options o;
  o.link.keepalive_interval = 40ms; // the server's heartbeat ticks every 40 ms, each with a keepalive out
  o.link.keepalive_timeout = 2s;
  rig r(o);
  auto settings = r.client_settings();
  settings.link.log = capture(std::make_shared<event_log>()); // the client's link parks too: not counted here
  settings.link.keepalive_interval = 20ms;                    // keepalives reach the parked server link
  settings.link.keepalive_timeout = 10s;
  auto c = r.connect(settings);
  REQUIRE(r.call(c, op("echo", 1)) == 1);
  auto starting = [](const std::vector<std::string>& all, const char* prefix) {
    return static_cast<std::size_t>(
        std::count_if(all.begin(), all.end(), [&](const std::string& l) { return l.rfind(prefix, 0) == 0; }));
  };
  auto lines = [&](const char* prefix, std::size_t n) {
    return r.logs->wait_for([&](const std::vector<std::string>& all) { return starting(all, prefix) >= n; });
  };
  REQUIRE(lines("parked: ", 1));
  CHECK(r.server.stats().parked == 1);
  const auto keepalives = r.server.stats().keepalives_in;
  // 300 ms pass (a slow call on another connection) while it stays parked:
  // it reads the client's keepalives (or the daemon would close it for
  // silence) without unparking.
  auto other_settings = r.client_settings();
  other_settings.link.log = nullptr;
  other_settings.link.keepalive_interval = 20ms;
  other_settings.link.keepalive_timeout = 10s;
  auto other = r.connect(other_settings);
  CHECK(r.call(other, json{{"op", "slow"}, {"value", "v"}, {"ms", 300}}) == "v");
  CHECK(r.server.stats().keepalives_in >= keepalives + 5);
  CHECK(starting(r.logs->events(), "unparked: ") == 0);
  CHECK(r.server.stats().parked >= 1);
  // A call unparks it and is answered; idle again, it parks again (and so
  // does the other connection's link): three parkings, two links parked.
  CHECK(r.call(c, op("echo", 2)) == 2);
  CHECK(lines("unparked: ", 1));
  REQUIRE(lines("parked: ", 3));
  CHECK(r.server.stats().parked == 2);
  CHECK(r.call(c, op("echo", 3)) == 3);
  CHECK(starting(r.logs->events(), "peer_silent") == 0);
}

TEST_CASE("bad daemon options are refused with the option's name and the expected form") {
  grove::node node{{.threads = 1}};
  auto start = [&](daemon_options o) {
    o.link.log = nullptr;
    return node.block_on(start_test_daemon(node, o, json(), std::shared_ptr<event_log>()));
  };
  daemon_options bad_address;
  bad_address.bind_address = "localhost:80";
  CHECK_THROWS_WITH_AS(start(bad_address),
                       "daemon_options.bind_address: \"localhost:80\": expected an IPv4 or IPv6 address, e.g. 127.0.0.1 or ::1",
                       grove::error);
  daemon_options bad_requirement;
  bad_requirement.version_requirement = ">= 1";
  CHECK_THROWS_WITH_AS(start(bad_requirement), doctest::Contains("daemon_options.version_requirement: version requirement \">= 1\": expected"),
                       grove::error);
  daemon_options unsigned_keys;
  unsigned_keys.link.require_signed = true;
  CHECK_THROWS_WITH_AS(start(unsigned_keys), "daemon_options.link.require_signed: set, but verify_keys is empty: expected at least one key", grove::error);
  daemon_options no_backlog;
  no_backlog.backlog = 0;
  CHECK_THROWS_WITH_AS(start(no_backlog), "daemon_options.backlog: 0: expected a positive number", grove::error);
  daemon_options small_queue;
  small_queue.link.max_queued_bytes = 1000;
  CHECK_THROWS_WITH_AS(start(small_queue), "daemon_options.link.max_queued_bytes: 1000: expected at least max_payload + 96 (one whole frame)", grove::error);
  daemon_options no_cert;
  no_cert.tls = grove::erps::tls_server_options{};
  CHECK_THROWS_WITH_AS(start(no_cert), doctest::Contains("tls.certificate_file is empty"), grove::error);

  daemon_options taken;
  auto first = start(taken);
  taken.port = first.port();
  try {
    start(taken);
    FAIL("a second daemon on a taken port should not start");
  } catch (const grove::error& e) {
    CHECK(e.code() == grove::errc::start_failed);
    CHECK(std::string(e.what()).find("cannot listen on 127.0.0.1:" + std::to_string(first.port())) !=
          std::string::npos);
  }
}

TEST_CASE("connections run under the dynamic supervisor the user passes") {
  grove::node node{{.threads = 2}};
  auto mine = node.block_on(grove::dynamic_supervisor::start(node, {}));
  daemon_options o;
  o.supervisor = mine;
  o.link.log = nullptr;
  auto server = node.block_on(start_test_daemon(node, o, json(), std::shared_ptr<event_log>()));
  CHECK(server.supervisor() == mine);
  client_options c;
  c.port = server.port();
  c.link.log = nullptr;
  auto client = node.block_on(client::start(node, c));
  CHECK(node.block_on(client.call(op("echo", 1))) == 1);
  auto children = node.block_on(mine.which_children());
  REQUIRE(children.size() == 1);
  CHECK(children[0].restart == grove::restart_type::temporary);
  node.block_on(server.shutdown(2s));
  CHECK(grove::alive(mine.id())); // the user's supervisor is the user's to stop
}

TEST_CASE("at max_calls_in_flight the daemon reads no further calls from that client until one is answered") {
  daemon_options o;
  o.max_calls_in_flight = 2;
  rig r(o);
  raw_client wire(r.server.port());
  wire.send(call_frame(1, json{{"op", "slow"}, {"value", "one"}, {"ms", 100}}) +
            call_frame(2, json{{"op", "slow"}, {"value", "two"}, {"ms", 100}}) + call_frame(3, op("echo", "three")));
  auto first = wire.read_non_keepalive();
  REQUIRE(first);
  // Without the limit the echo would be answered at once, before the slow
  // calls; with it, the echo is not even read until a slow call is done.
  CHECK(first->payload.rfind("[\"one\"", 0) == 0);
  std::vector<std::string> rest;
  for (int i = 0; i < 2; ++i) {
    auto f = wire.read_non_keepalive();
    REQUIRE(f);
    rest.push_back(f->payload);
  }
  std::sort(rest.begin(), rest.end());
  CHECK(rest == std::vector<std::string>{"[\"three\",3]", "[\"two\",2]"});
}

// Calls and casts that one read brings go to the session in one message;
// each is still handled as if it were a message of its own.
TEST_CASE("frames that arrive together are handled in order, with handle_continue between them as it was asked") {
  rig r;
  raw_client wire(r.server.port());
  wire.send(call_frame(1, op("continue", 5)) + cast_frame(json{{"op", "push"}, {"value", "after"}}) +
            call_frame(2, op("echo", "x")));
  std::vector<std::string> frames = next_frames(wire, 4);
  REQUIRE(frames.size() == 4);
  // The continue runs before the cast behind its call, and the cast before
  // the call behind it.
  CHECK(frames == std::vector<std::string>{"reply [true,1]", "push {\"continued\":5}", "push \"after\"",
                                           "reply [\"x\",2]"});
}

TEST_CASE("a server that stops in the middle of frames that came together: each call behind the stop gets an error") {
  rig r;
  raw_client wire(r.server.port());
  wire.send(call_frame(1, op("stop")) + call_frame("b", op("echo", "b")) +
            cast_frame(json{{"op", "put"}, {"key", "late"}, {"value", 1}}) +
            call_frame(3, op("echo", "c")));
  std::vector<std::string> frames = next_frames(wire, 3);
  REQUIRE(frames.size() == 3);
  CHECK(frames == std::vector<std::string>{"reply [\"bye\",1]",
                                           "error [\"b\",\"the server stopped before it took this call\"]",
                                           "error [3,\"the server stopped before it took this call\"]"});
  CHECK(wire.closed_within());
  CHECK(r.events->wait_count("terminate normal", 1));
  CHECK(r.events->count("cast {\"key\":\"late\",\"op\":\"put\",\"value\":1}") == 0); // behind the stop
}

TEST_CASE("a handler that throws in the middle of frames that came together: the calls behind it get an error each") {
  rig r;
  raw_client wire(r.server.port());
  wire.send(call_frame(1, op("throw")) + call_frame(2, op("echo", "b")));
  std::vector<std::string> frames = next_frames(wire, 2);
  REQUIRE(frames.size() == 2);
  std::sort(frames.begin(), frames.end());
  CHECK(frames[0].rfind("error [1,", 0) == 0);
  CHECK(frames[1] == "error [2,\"the server stopped before it took this call\"]");
  CHECK(r.events->wait_count("terminate {error, asked to throw}", 1));
}

namespace {

/// A server whose "wait" call holds its connection's next frames until
/// the test opens the gate (its handler is a coroutine waiting there).
class gated_server : public grove::erps::server {
public:
  gated_server(grove::server_ref<test_support::gate> g, std::shared_ptr<event_log> events)
      : gate_(g), events_(std::move(events)) {}
  grove::awaitable<json> handle_call(grove::erps::call c) {
    if (c.request.value("op", "") == "wait") {
      events_->add("waiting");
      co_await gate_.call(test_support::pass{}, 20s);
    }
    co_return c.request;
  }
  void handle_cast(grove::erps::cast c) { events_->add("cast " + c.request.dump()); }
  void terminate(const grove::exit_reason& reason) { events_->add("terminate " + reason.to_string()); }

private:
  grove::server_ref<test_support::gate> gate_;
  std::shared_ptr<event_log> events_;
};

} // namespace

TEST_CASE("a client that sends frames and closes at once: every cast it sent is handled before the server stops") {
  auto logs = std::make_shared<event_log>();
  auto events = std::make_shared<event_log>();
  grove::node node{{.threads = 2}};
  auto g = node.block_on(grove::start<test_support::gate>(node));
  daemon_options o;
  o.link.log = capture(logs);
  erps_daemon server = node.block_on(erps_daemon::start<gated_server>(node, o, g, events));
  raw_client wire(server.port());
  // The first call holds the server; the frames after it, and the close,
  // reach the server's mailbox together while it waits. Their first call
  // waits again, with the casts and the close behind it.
  wire.send(call_frame(1, op("wait")));
  REQUIRE(events->wait_count("waiting", 1));
  std::string bytes = call_frame(2, op("wait"));
  for (int i = 0; i < 20; ++i) bytes += cast_frame(json{{"k", i}});
  wire.send(bytes);
  ::shutdown(wire.fd(), SHUT_WR);
  CHECK(logged(*logs, "connection_closed: closed by the peer"));
  g.cast(test_support::open_gate{});
  CHECK(events->wait_count("terminate normal", 1));
  std::vector<std::string> seen = events->events();
  std::erase(seen, "waiting");
  REQUIRE(seen.size() == 21);
  for (int i = 0; i < 20; ++i) CHECK(seen[static_cast<std::size_t>(i)] == "cast {\"k\":" + std::to_string(i) + "}");
  CHECK(seen.back() == "terminate normal");
}

TEST_CASE("a call longer than the keepalive timeout, at the in-flight limit, does not make the client look silent") {
  daemon_options o;
  o.max_calls_in_flight = 1;
  o.link.keepalive_interval = 50ms;
  o.link.keepalive_timeout = 300ms;
  rig r(o);
  auto settings = r.client_settings();
  settings.link.keepalive_interval = 50ms;
  auto c = r.connect(settings);
  // The daemon stops reading while the call runs, so the client's
  // keepalives sit unread for twice the timeout.
  CHECK(r.call(c, json{{"op", "slow"}, {"value", "long"}, {"ms", 600}}) == "long");
  CHECK(r.call(c, op("echo", "same link")) == "same link");
  CHECK(r.server.stats().accepted == 1);
}

TEST_CASE("a daemon listens on IPv6 loopback") {
  daemon_options o;
  o.bind_address = "::1";
  rig r(o);
  auto settings = r.client_settings();
  settings.host = "::1";
  auto c = r.connect(settings);
  CHECK(r.call(c, op("echo", "v6")) == "v6");
}
