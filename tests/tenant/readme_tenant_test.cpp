#include <grove/core/node.hpp>
#include <grove/tenant/manager.hpp>

#include "../readme_check.hpp"
#include "../temp_dir.hpp"

#include <doctest/doctest.h>

#include <filesystem>
#include <string>
#include <utility>

namespace {

// --- README example begins
struct orders_state {
  int orders = 0;
};
void to_json(nlohmann::json& j, const orders_state& s) { j = {{"orders", s.orders}}; }
void from_json(const nlohmann::json& j, orders_state& s) { s.orders = j.at("orders").get<int>(); }

struct place_order {
  using reply_type = int;
};

/// One shop per customer: its install checks the config; its orders are its state.
class shop : public grove::tenant<orders_state> {
public:
  grove::tenant_result<orders_state> handle_install(const grove::tenant_info& t) {
    if (!t.config.contains("plan")) return grove::tenant_error("config.plan: missing");
    return grove::tenant_ok(orders_state{});
  }
  grove::awaitable<int> handle_call(place_order) {
    ++state().orders;
    nlohmann::json snapshot = state();
    co_await persist(std::move(snapshot)); // read back into state() after a restart
    co_return state().orders;
  }
};

/// Runs the shops on `file`: installs "acme" the first time, places an
/// order, and returns how many "acme" has placed over every run.
grove::awaitable<int> run_shops(grove::node& node, std::filesystem::path file) {
  grove::tenant_manager_options options;
  options.store_file = std::move(file); // SQLite, created if missing
  grove::tenant_manager<shop> shops(std::move(options));
  co_await shops.start(node); // warm-up: every stored tenant runs again
  if (!shops.fetch("acme")) {
    nlohmann::json config{{"plan", "gold"}};
    grove::tenant_op op = co_await shops.install("acme", config);
    grove::tenant_outcome done = co_await op.done(); // the final result, sync or async
    if (!done.ok) throw std::runtime_error(done.error);
  }
  int orders = co_await shops.whereis("acme").call(place_order{});
  co_await shops.stop();
  co_return orders;
}
// --- README example ends

} // namespace

TEST_CASE("the_readme_example_installs_a_shop_and_finds_it_after_a_restart") {
  test_support::temp_dir dir("grove-tenant-readme");
  const std::string file = dir.file("shops.db");
  {
    grove::node node{{.threads = 2}};
    CHECK(node.block_on(run_shops(node, file)) == 1);
  }
  grove::node node{{.threads = 2}};
  CHECK(node.block_on(run_shops(node, file)) == 2); // the same tenant, its state back
  CHECK(readme_check::readme_holds_example_of("tests/tenant/readme_tenant_test.cpp"));
}
