// grove's built-in metrics (README, "Built-in metrics"): a node given a
// registry records them from every layer; each is checked here against a
// known amount of work, and the whole exposition against promtool.
#include <grove/core/node.hpp>
#include <grove/erps/client.hpp>
#include <grove/erps/daemon.hpp>
#include <grove/erps/server.hpp>
#include <grove/registry/local_registry.hpp>
#include <grove/remote_term/remote_term.hpp>
#include <grove/supervisor/supervisor.hpp>
#include <grove/telemetry/metrics.hpp>
#include <grove/tenant/manager.hpp>

#include "../child_process.hpp"
#include "../temp_dir.hpp"

#include <doctest/doctest.h>

#include <fstream>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using grove::telemetry::metric_registry;

namespace {

/// The value of the series `series` (name and labels, as exposed), or -1
/// when the exposition has no such line.
double value_of(const metric_registry& metrics, const std::string& series) {
  const std::string text = metrics.prometheus_text();
  const std::string key = "\n" + series + " ";
  const std::string padded = "\n" + text;
  const auto at = padded.find(key);
  if (at == std::string::npos) return -1;
  const auto from = at + key.size();
  return std::stod(padded.substr(from, padded.find('\n', from) - from));
}

int promtool_check(const std::string& text) {
  test_support::temp_dir dir("grove-promtool");
  const std::string file = dir.file("metrics.txt");
  std::ofstream(file) << text;
  return test_support::child_process::run({"sh", "-c", "promtool check metrics < '" + file + "'"});
}

class echo : public grove::erps::server {
public:
  grove::erps::json handle_call(grove::erps::call c) {
    if (c.request == "push") push("pushed");
    return c.request;
  }
  void handle_cast(grove::erps::cast) {}
};

class idle_worker : public grove::gen_server {};

grove::awaitable<void> kill_and_wait(grove::process& self, grove::pid p) {
  self.monitor(p);
  grove::exit(p, grove::exit_reason::kill());
  const std::optional<grove::message> down = co_await self.receive_for(std::chrono::seconds(60));
  if (!down) throw std::runtime_error("no down message within 60 s");
}

struct empty_state {};

class quiet_tenant : public grove::tenant<empty_state> {
public:
  grove::tenant_result<empty_state> handle_install(const grove::tenant_info&) { return grove::tenant_ok(empty_state{}); }
};

} // namespace

TEST_CASE("a node without a registry records nothing; with one, the core's metrics count processes") {
  metric_registry metrics;
  grove::node n{{.threads = 2, .events = nullptr, .metrics = &metrics}};
  const std::string node = "{node=\"" + std::to_string(n.id()) + "\"}";
  CHECK(n.metrics() == &metrics);
  const double spawned_before = value_of(metrics, "grove_processes_spawned_total" + node);
  // Ten processes that finish, one that fails, one that waits with 20 messages queued.
  for (int i = 0; i < 10; ++i) n.block_on([](grove::process&) -> grove::awaitable<void> { co_return; });
  n.block_on([](grove::process& self) -> grove::awaitable<void> {
    const grove::pid failing = grove::spawn(self.node(), [](grove::process&) -> grove::awaitable<void> {
      throw std::runtime_error("on purpose");
      co_return;
    });
    self.monitor(failing);
    (void)co_await self.receive(); // its down message
  });
  const double errors = value_of(metrics, "grove_process_exits_total{node=\"" + std::to_string(n.id()) + "\",reason=\"error\"}");
  CHECK(errors == 1);
  CHECK(value_of(metrics, "grove_processes_spawned_total" + node) - spawned_before == 12);
  n.block_on([](grove::process& self) -> grove::awaitable<void> {
    // On this worker: the sends below are delivered at once, before it runs.
    const grove::pid sleeper = grove::spawn(
        self.node(), [](grove::process& me) -> grove::awaitable<void> { (void)co_await me.receive(); },
        {.worker = self.self().worker()});
    for (int i = 0; i < 20; ++i) grove::send(sleeper, i);
    co_return;
  });
  CHECK(value_of(metrics, "grove_mailbox_depth_high_water" + node) >= 20);
  CHECK(value_of(metrics, "grove_processes" + node) == static_cast<double>(n.process_count()));
  CHECK(value_of(metrics, "grove_worker_busy_seconds_total{node=\"" + std::to_string(n.id()) + "\",worker=\"0\"}") > 0);
  CHECK(promtool_check(metrics.prometheus_text()) == 0);

  grove::node plain{{.threads = 1, .events = nullptr}};
  CHECK(plain.metrics() == nullptr);
}

TEST_CASE("supervisors count restarts per child and giving up") {
  metric_registry metrics;
  grove::node n{{.threads = 2, .events = nullptr, .metrics = &metrics}};
  const std::string id = std::to_string(n.id());
  std::vector<grove::child_spec> children{grove::server_child<idle_worker>("steady"),
                                          grove::server_child<idle_worker>("flaky")};
  // (An hour's intensity window: the third restart is one too many however slow the machine.)
  const grove::supervisor sup = n.block_on(
      grove::supervisor::start(n, children, {.max_restarts = 2, .max_seconds = std::chrono::seconds(3600), .report = nullptr}));
  for (int i = 0; i < 2; ++i) {
    const grove::pid flaky = n.block_on(sup.child_pid("flaky"));
    n.block_on([flaky](grove::process& self) { return kill_and_wait(self, flaky); });
    // Its down reached us; the supervisor's exit signal may still be on its
    // way (two senders, no order between them): ask until it has restarted
    // the child, so the next kill is of the new one.
    for (int asked = 0; n.block_on(sup.child_pid("flaky")) == flaky; ++asked) REQUIRE(asked < 100'000);
  }
  CHECK(value_of(metrics, "grove_supervisor_restarts_total{node=\"" + id + "\",child=\"flaky\"}") == 2);
  CHECK(value_of(metrics, "grove_supervisor_restarts_total{node=\"" + id + "\",child=\"steady\"}") == -1);
  // A third restart within max_seconds is one too many.
  const grove::pid flaky = n.block_on(sup.child_pid("flaky"));
  n.block_on([sup, flaky](grove::process& self) -> grove::awaitable<void> {
    self.monitor(sup.id());
    grove::exit(flaky, grove::exit_reason::kill());
    // The supervisor's own down: it gave up.
    const std::optional<grove::message> down = co_await self.receive_for(std::chrono::seconds(60));
    if (!down) throw std::runtime_error("the supervisor did not give up within 60 s");
  });
  CHECK(value_of(metrics, "grove_supervisor_intensity_exceeded_total{node=\"" + id + "\"}") == 1);
}

TEST_CASE("an erps daemon counts calls exactly under load from two workers, and its bytes, casts, pushes and latency") {
  metric_registry metrics;
  grove::node n{{.threads = 2, .events = nullptr, .metrics = &metrics}};
  grove::erps::daemon_options serve;
  serve.name = "echo";
  serve.link.log = nullptr;
  const grove::erps::daemon d = n.block_on(grove::erps::daemon::start<echo>(n, serve));
  constexpr int per_client = 500;
  grove::erps::client_options connect;
  connect.port = d.port();
  connect.link.log = nullptr;
  connect.connection.on_event = nullptr;
  const auto first = n.block_on(grove::erps::client::start(n, connect));
  const auto second = n.block_on(grove::erps::client::start(n, connect));
  const std::string labels = "{node=\"" + std::to_string(n.id()) + "\",daemon=\"echo\"}";
  // Two callers, one per worker, at once.
  auto load = [](grove::erps::client_ref c) -> grove::awaitable<void> {
    for (int i = 0; i < per_client; ++i) {
      grove::erps::json request = i;
      (void)co_await c.call(request);
    }
  };
  n.block_on([&](grove::process& self) -> grove::awaitable<void> {
    grove::pid a = grove::spawn(self.node(), [&](grove::process&) { return load(first); }, {.worker = 0});
    grove::pid b = grove::spawn(self.node(), [&](grove::process&) { return load(second); }, {.worker = 1});
    self.monitor(a);
    self.monitor(b);
    (void)co_await self.receive();
    (void)co_await self.receive();
  });
  grove::erps::json push_request = "push";
  (void)n.block_on(first.call(push_request));
  first.cast(grove::erps::json("cast"));
  grove::erps::json after_cast = "after";
  (void)n.block_on(first.call(after_cast)); // answered after the cast was handled
  const double calls = 2 * per_client + 2;
  CHECK(value_of(metrics, "grove_erps_connections" + labels) == 2);
  CHECK(value_of(metrics, "grove_erps_accepted_total" + labels) == 2);
  CHECK(value_of(metrics, "grove_erps_calls_total" + labels) == calls);
  CHECK(value_of(metrics, "grove_erps_casts_total" + labels) == 1);
  CHECK(value_of(metrics, "grove_erps_pushes_total" + labels) == 1);
  CHECK(value_of(metrics, "grove_erps_call_duration_seconds_count" + labels) == calls);
  CHECK(value_of(metrics, "grove_erps_call_duration_seconds_bucket{node=\"" + std::to_string(n.id()) +
                              "\",daemon=\"echo\",le=\"+Inf\"}") == calls);
  CHECK(value_of(metrics, "grove_erps_received_bytes_total" + labels) > calls * 10);
  CHECK(value_of(metrics, "grove_erps_sent_bytes_total" + labels) > calls * 10);
  // The clients are connections: both connected, each after one attempt.
  const std::string node = std::to_string(n.id());
  CHECK(value_of(metrics, "grove_connections{node=\"" + node + "\",state=\"connected\"}") == 2);
  CHECK(value_of(metrics, "grove_connection_attempts_total{node=\"" + node + "\",result=\"ok\"}") == 2);
  (void)n.block_on(grove::stop(first.id()));
  (void)n.block_on(grove::stop(second.id()));
  n.block_on(d.shutdown(5s));
  CHECK(value_of(metrics, "grove_erps_connections" + labels) == -1); // its collectors left with it
  CHECK(value_of(metrics, "grove_erps_calls_total" + labels) == calls); // counters stay
  CHECK(promtool_check(metrics.prometheus_text()) == 0);
}

TEST_CASE("a registry counts names, groups and claims; a remote term its refreshes and age; tenants their states") {
  metric_registry metrics;
  grove::node n{{.threads = 2, .events = nullptr, .metrics = &metrics}};
  const std::string node = std::to_string(n.id());
  {
    grove::local_registry names(n);
    const std::string labels = "{node=\"" + node + "\",registry=\"" + names.process().to_string() + "\"";
    // Read while the process holding the name and the membership lives.
    const std::vector<double> seen = n.block_on([&](grove::process&) -> grove::awaitable<std::vector<double>> {
      co_await names.register_name("one");
      co_await names.join("group", std::any{});
      grove::name_claim c = co_await names.claim("two");
      co_return std::vector<double>{value_of(metrics, "grove_registry_names" + labels + "}"),
                                    value_of(metrics, "grove_registry_groups" + labels + "}"), c.granted ? 1.0 : 0.0};
    });
    CHECK(seen == std::vector<double>{1, 1, 1});
    CHECK(value_of(metrics, "grove_registry_claims_total" + labels + ",outcome=\"granted\"}") == 1);
  }

  grove::remote_term_options<nlohmann::json> o;
  o.name = "flags";
  o.fetcher = grove::static_fetcher(R"({"beta": true})");
  o.sync_first_load = true;
  grove::remote_term<nlohmann::json> flags(std::move(o));
  n.block_on(flags.start(n));
  const std::string term = "{node=\"" + node + "\",term=\"flags\"";
  CHECK(value_of(metrics, "grove_remote_term_refreshes_total" + term + ",status=\"updated\"}") == 1);
  CHECK(value_of(metrics, "grove_remote_term_age_seconds" + term + "}") >= 0);

  grove::tenant_manager_options options;
  options.name = "shops";
  grove::tenant_manager<quiet_tenant> shops(std::move(options));
  n.block_on([&](grove::node& nd) -> grove::awaitable<void> {
    co_await shops.start(nd);
    nlohmann::json config = nlohmann::json::object();
    grove::tenant_op op = co_await shops.install("acme", config);
    grove::tenant_outcome done = co_await op.done();
    REQUIRE(done.ok);
  });
  const std::string manager = "{node=\"" + node + "\",manager=\"shops\"";
  CHECK(value_of(metrics, "grove_tenants" + manager + ",state=\"running\"}") == 1);
  CHECK(value_of(metrics, "grove_tenants" + manager + ",state=\"installing\"}") == 0);
  CHECK(value_of(metrics, "grove_tenant_transitions_total" + manager + ",event=\"install\",outcome=\"ok\"}") == 1);
  CHECK(promtool_check(metrics.prometheus_text()) == 0);
  n.block_on(shops.stop());
  n.block_on(flags.stop());
}
