// The node's one event sink: a record from each layer reaches it, and the
// daemon's own log switch silences its supervisor too.
#include "erps_support.hpp"

#include <grove/core/event.hpp>
#include <grove/core/testing.hpp>
#include <grove/registry/local_registry.hpp>
#include <grove/supervisor/supervisor.hpp>

#include <doctest/doctest.h>

#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using grove::awaitable;
using namespace erps_test;

namespace {

/// Collects "layer/name" of every event, for the test thread to wait on.
struct sink_log {
  std::shared_ptr<event_log> names = std::make_shared<event_log>();
  std::shared_ptr<std::vector<grove::event>> kept = std::make_shared<std::vector<grove::event>>();
  std::shared_ptr<std::mutex> mutex = std::make_shared<std::mutex>();

  grove::event_sink sink() const {
    return [names = names, kept = kept, mutex = mutex](const grove::event& e) {
      {
        std::lock_guard lock(*mutex);
        kept->push_back(e);
      }
      names->add(std::string(e.layer) + "/" + std::string(e.name));
    };
  }
  bool saw(const std::string& key) const { return names->wait_count(key, 1); }
  grove::event first(const std::string& layer, const std::string& name) const {
    std::lock_guard lock(*mutex);
    for (const auto& e : *kept) {
      if (e.layer == layer && e.name == name) return e;
    }
    return {};
  }
};

struct crashes_on_call : grove::gen_server {
  struct crash {
    using reply_type = int;
  };
  int handle_call(crash) { throw std::runtime_error("handler bug"); }
};

awaitable<void> wait_then_end(grove::process& self) { co_await self.receive(); }

} // namespace

TEST_CASE("every_layer_reports_through_the_nodes_one_sink") {
  sink_log log;
  grove::node node{{.threads = 2, .events = log.sink(), .min_event_level = grove::event_level::debug}};

  // core: a process that fails by its own hand.
  grove::pid thrower = grove::spawn(node, [](grove::process& self) -> awaitable<void> {
    co_await self.receive();
    throw std::runtime_error("body bug");
  });
  grove::send(thrower, 0);
  REQUIRE(log.saw("core/process_crashed"));
  CHECK(log.first("core", "process_crashed").field("pid") == thrower.to_string());
  CHECK(log.first("core", "process_crashed").field("reason") == "{error, body bug}");

  // supervisor: a child that crashes is reported (and restarted).
  auto sup = node.block_on(grove::supervisor::start(node, {grove::server_child<crashes_on_call>("fragile")}));
  auto child = grove::server_ref<crashes_on_call>(node.block_on(sup.child_pid("fragile")));
  CHECK(node.block_on(grove::testing::error_of(child.call(crashes_on_call::crash{}))) == grove::errc::exited);
  REQUIRE(log.saw("supervisor/child_terminated"));
  CHECK(log.first("supervisor", "child_terminated").field("child_id") == "fragile");

  // registry: a holder that ends takes its names with it.
  grove::local_registry names(node);
  grove::pid holder = grove::spawn(node, wait_then_end);
  node.block_on([&]() -> awaitable<void> { co_await names.register_name("x", holder); }());
  grove::send(holder, 0);
  REQUIRE(log.saw("registry/owner_down"));
  CHECK(log.first("registry", "owner_down").field("owner") == holder.to_string());

  // connection and erps: a client that connects, a raw peer that sends garbage.
  grove::erps::daemon_options d; // default log: the node's sink
  auto server = node.block_on(start_test_daemon(node, d, json(), std::shared_ptr<event_log>()));
  grove::erps::client_options c;
  c.port = server.port();
  auto client = node.block_on(grove::erps::client::start(node, c));
  REQUIRE(log.saw("connection/connected"));
  CHECK(log.first("connection", "connected").field("connection") == client.id().to_string());
  raw_client raw(server.port());
  raw.send("GET / HTTP/1.1\r\n\r\n");
  REQUIRE(log.saw("erps/bad_frame"));
  CHECK(log.first("erps", "bad_frame").field("msg").find("bad magic") != std::string_view::npos);
}

TEST_CASE("the_default_sink_writes_logfmt_and_a_throwing_sink_disturbs_nothing") {
  grove::event e{.level = grove::event_level::warning,
                 .layer = "erps",
                 .name = "bad_frame",
                 .fields = {{"peer", "127.0.0.1:5000"}, {"msg", "bad magic \"GET \""}}};
  const std::string line = grove::to_logfmt(e);
  CHECK(line.rfind("ts=", 0) == 0);
  CHECK(line.find(" level=warning layer=erps event=bad_frame peer=127.0.0.1:5000 msg=\"bad magic \\\"GET \\\"\"") !=
        std::string::npos);

  grove::node node{{.threads = 1, .events = [](const grove::event&) { throw std::runtime_error("sink bug"); }}};
  grove::pid thrower = grove::spawn(node, [](grove::process& self) -> awaitable<void> {
    co_await self.receive();
    throw std::runtime_error("body bug");
  });
  auto down = node.block_on([thrower](grove::process& self) -> awaitable<std::string> {
    const grove::monitor_ref m = self.monitor(thrower);
    grove::send(thrower, 0);
    auto msg = co_await self.receive_for(20s);
    auto* d = msg ? msg->get_if<grove::down_message>() : nullptr;
    co_return d && d->ref == m ? d->reason.to_string() : "no down message";
  });
  CHECK(down == "{error, body bug}"); // the node carried on past its sink's throw
}

TEST_CASE("a_daemon_with_its_log_off_keeps_its_supervisors_reports_off_too") {
  for (bool log_on : {true, false}) {
    CAPTURE(log_on);
    sink_log log;
    grove::node node{{.threads = 2, .events = log.sink(), .min_event_level = grove::event_level::debug}};
    grove::erps::daemon_options d;
    if (!log_on) d.link.log = nullptr;
    auto server = node.block_on(start_test_daemon(node, d, json(), std::shared_ptr<event_log>()));
    grove::erps::client_options c;
    c.port = server.port();
    c.link.log = nullptr;
    c.connection.on_event = nullptr;
    auto client = node.block_on(grove::erps::client::start(node, c));
    // A session whose handler throws: its supervisor reports it.
    CHECK(node.block_on(grove::testing::error_of(client.call(json{{"op", "throw"}}, 10s))));
    if (log_on) {
      // Through the daemon's log, so as an erps event.
      REQUIRE(log.saw("erps/child_terminated"));
      continue;
    }
    // The session's end reaches the daemon's supervisor before a new call
    // on a fresh connection is answered by a new session.
    auto again = node.block_on(grove::erps::client::start(node, c));
    CHECK(node.block_on(again.call(json{{"op", "echo"}, {"value", 1}}, 10s)) == json(1));
    grove::emit(node, grove::event{.level = grove::event_level::info, .layer = "test", .name = "marker"});
    REQUIRE(log.saw("test/marker"));
    for (const auto& name : log.names->events()) {
      CHECK_MESSAGE(name.rfind("supervisor/", 0) != 0, name);
      CHECK_MESSAGE(name.rfind("erps/", 0) != 0, name);
    }
  }
}
