// The dashboard in a real browser: headless Chromium loads the page the
// admin endpoint serves, the page connects to /events and draws the tree;
// a child is killed and the page shows its restart. A screenshot of each
// moment goes to test-output/ under the directory the test runs in, for
// humans.
#include <grove/admin/admin_server.hpp>

#include <grove/core/node.hpp>
#include <grove/supervisor/supervisor.hpp>
#include <grove/telemetry/metrics.hpp>

#include "../temp_dir.hpp"
#include "headless_browser.hpp"

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <string>

using namespace std::chrono_literals;

namespace {

class idle_worker : public grove::gen_server {};

void save(const std::string& png, const std::string& name) {
  const std::filesystem::path dir = std::filesystem::current_path() / "test-output";
  std::filesystem::create_directories(dir);
  std::ofstream(dir / name, std::ios::binary) << png;
  MESSAGE("screenshot: " << (dir / name).string());
}

} // namespace

TEST_CASE("the dashboard, in headless Chromium, shows the live tree and a child's restart") {
  grove::telemetry::metric_registry metrics;
  grove::node n{{.threads = 2, .events = nullptr, .metrics = &metrics}};
  grove::admin::admin_server admin({.metrics = &metrics, .bearer_token = "t0ken", .dashboard_interval = 200ms});
  n.block_on(admin.start(n));
  std::vector<grove::child_spec> children{grove::server_child<idle_worker>("ledger"),
                                          grove::server_child<idle_worker>("mailer")};
  const grove::supervisor sup = n.block_on(grove::supervisor::start(n, children, {.report = nullptr}));
  const grove::pid ledger = n.block_on(sup.child_pid("ledger"));

  test_support::temp_dir profile;
  test_support::headless_browser browser(profile.path());
  const std::string url = "http://127.0.0.1:" + std::to_string(admin.port()) + "/?access_token=t0ken";
  browser.navigate(url);

  // Once connected, the page draws the tree: the supervisor and its children by id and pid.
  const nlohmann::json shown = browser.when(
      "document.getElementById('status').textContent === 'live' && document.querySelector('li[data-id=\"ledger\"]')",
      "({ledger: document.querySelector('li[data-id=\"ledger\"]').dataset.pid,"
      "  mailer: document.querySelector('li[data-id=\"mailer\"]').dataset.pid,"
      "  supervisor: !!document.querySelector('li[data-pid=\"" + sup.id().to_string() + "\"]'),"
      "  node: document.getElementById('node').textContent,"
      "  rates: document.getElementById('rates').textContent})");
  CHECK(shown["ledger"] == ledger.to_string());
  CHECK(shown["mailer"] == n.block_on(sup.child_pid("mailer")).to_string());
  CHECK(shown["supervisor"] == true);
  CHECK(shown["node"] == std::to_string(n.id()));
  CHECK(shown["rates"].get<std::string>().find("restarts/s") != std::string::npos);
  const std::string before = browser.screenshot_png();
  REQUIRE(before.size() > 8);
  CHECK(before.compare(1, 3, "PNG") == 0);
  save(before, "dashboard.png");

  // Kill the ledger: the supervisor restarts it, and the page, on its next
  // snapshot, shows the new pid and one restart.
  n.block_on([ledger](grove::process& self) -> grove::awaitable<void> {
    self.monitor(ledger);
    grove::exit(ledger, grove::exit_reason::kill());
    (void)co_await self.receive(); // its down message
  });
  const grove::pid ledger_again = n.block_on(sup.child_pid("ledger"));
  REQUIRE(ledger_again);
  // (A snapshot between the kill and the restart shows one restart and no
  // pid yet: wait for the new pid, then read the row.)
  const nlohmann::json restarted = browser.when(
      "document.querySelector('li[data-id=\"ledger\"]').dataset.restarts === '1' &&"
      " document.querySelector('li[data-id=\"ledger\"]').dataset.pid === '" + ledger_again.to_string() + "'",
      "({pid: document.querySelector('li[data-id=\"ledger\"]').dataset.pid,"
      "  text: document.querySelector('li[data-id=\"ledger\"]').textContent})");
  CHECK(restarted.value("pid", "") == ledger_again.to_string());
  CHECK(restarted.value("text", "").find("restarts 1") != std::string::npos);
  save(browser.screenshot_png(), "dashboard-after-restart.png");

  n.block_on(sup.stop());
  n.block_on(admin.stop());
}
