// groved's tree as parts: which parts a configuration starts, in which
// order, with which stop and reload steps; and the tenants part run in
// process, its stores following the tenants' lifecycle.
#include "tenants.hpp"
#include "tree.hpp"

#include "../temp_dir.hpp"

#include <grove/core/node.hpp>
#include <grove/registry/local_registry.hpp>
#include <grove/supervisor/supervisor.hpp>
#include <grove/telemetry/metrics.hpp>

#include <doctest/doctest.h>

#include <filesystem>
#include <string>
#include <vector>

namespace {

groved::logger quiet() { return groved::logger(groved::log_level::error, groved::log_format::json); }

groved::config test_config() {
  groved::config c = groved::default_config();
  c.tcp = {true, "127.0.0.1", 0};
  c.tls.enabled = false;
  return c;
}

std::vector<std::string> names_of(const std::vector<groved::part>& parts) {
  std::vector<std::string> out;
  for (const auto& p : parts) out.push_back(p.name);
  return out;
}

} // namespace

TEST_CASE("the tree names its parts in start order, as the configuration enables them") {
  grove::node n({.threads = 1});
  grove::local_registry names(n);
  grove::telemetry::metric_registry metrics;
  groved::config c = test_config();
  auto state = std::make_shared<groved::service_state>(names, c, quiet(), 1);
  CHECK(names_of(groved::tree(c, state, nullptr)) == std::vector<std::string>{"tenants", "tcp"});

  test_support::temp_dir dir;
  c.tls.enabled = true;
  c.admin = {true, "127.0.0.1", 0};
  c.access_policy = dir.file("access.json");
  c.data_path = dir.file("store.json");
  state = std::make_shared<groved::service_state>(names, c, quiet(), 1);
  const std::vector<groved::part> all = groved::tree(c, state, &metrics);
  REQUIRE(names_of(all) == std::vector<std::string>{"access", "tenants", "tcp", "tls", "admin"});
  // Each child's id is its part's name; the steps are the parts' own.
  for (const auto& p : all) CHECK(p.child.id == p.name);
  CHECK(all[0].reload);          // access: read the policy again
  CHECK(all[1].persist);         // tenants: the snapshots (with a data_path)
  CHECK_FALSE(all[1].drain);
  CHECK(all[2].drain);           // tcp
  CHECK_FALSE(all[2].reload);
  CHECK(all[3].drain);           // tls
  CHECK(all[3].reload);          // tls: the certificates
  CHECK(all[4].describe);        // admin: its port in the ready line
  // The admin part needs the node's metric registry.
  CHECK_THROWS_AS(groved::tree(c, state, nullptr), std::invalid_argument);
}

TEST_CASE("the tenants part: the default tenant's store opens before the listeners start; installs and uninstalls open and close stores") {
  test_support::temp_dir dir;
  grove::node n({.threads = 2});
  grove::local_registry names(n);
  groved::config c = test_config();
  c.data_path = dir.file("store.json");
  auto state = std::make_shared<groved::service_state>(names, c, quiet(), 2);
  std::vector<groved::part> parts = groved::tree(c, state, nullptr);
  grove::supervisor_options o;
  o.strategy = grove::restart_strategy::rest_for_one;
  grove::supervisor top = n.block_on(grove::supervisor::start(n, groved::child_specs(parts), o));
  // Started: the default tenant's store is open and its record durable.
  auto def = state->find_store("default");
  REQUIRE(def);
  CHECK(def->open.load());
  CHECK(def->shards == 2);
  CHECK(def->wal);
  CHECK(std::filesystem::exists(c.data_path + ".tenants.db"));
  REQUIRE(state->daemons()[groved::tcp_slot]);

  const grove::detail::tenant_manager_base& m = *state->tenants;
  // (No doctest macro inside a coroutine: g++ 12 miscompiles them there.)
  auto settle = [&](grove::awaitable<grove::tenant_op> started) {
    return n.block_on([&](grove::node&) -> grove::awaitable<grove::tenant_outcome> {
      grove::tenant_op op = co_await std::move(started);
      grove::tenant_outcome done = co_await op.done();
      co_return done;
    });
  };
  nlohmann::json limits = {{"max_keys", 7}, {"shards", 3}};
  const grove::tenant_outcome installed = settle(m.install("shop", limits));
  INFO(installed.error);
  CHECK(installed.ok);
  // The install answers once handle_install is done; the store opens in handle_run.
  const std::string why = n.block_on([&](grove::node&) -> grove::awaitable<std::string> {
    groved::store_status s;
    std::string w = co_await grove::server_ref<groved::store_tenant>(m.whereis_pid("shop")).call(s);
    co_return w;
  });
  CHECK(why.empty());
  std::shared_ptr<groved::store> shop = state->find_store("shop");
  REQUIRE(shop);
  CHECK(shop->shards == 3);
  CHECK(shop->max_keys.load() == 7);
  CHECK(shop->data_path == c.data_path + ".tenants/shop.json");
  CHECK(shop->topic_group("news") == "groved.topic.shop/news");
  CHECK(shop->shard_name(2) == "groved.shard.shop/2");
  CHECK(names.whereis(shop->shard_name(2)));

  CHECK(settle(m.uninstall("shop")).ok);
  CHECK_FALSE(shop->open.load());
  CHECK_FALSE(state->find_store("shop"));
  CHECK_FALSE(names.whereis(shop->shard_name(0)));
  CHECK_FALSE(std::filesystem::exists(c.data_path + ".tenants/shop.json.wal"));
  // The default tenant stays.
  const grove::tenant_outcome kept = settle(m.uninstall("default"));
  CHECK_FALSE(kept.ok);
  CHECK(kept.error.find("cannot be uninstalled") != std::string::npos);
  n.block_on(top.stop());
  CHECK_FALSE(state->find_store("default")); // its process closed it as it stopped
}

TEST_CASE("a tenant's subscription count carries over to the store that replaces its store") {
  grove::node n({.threads = 1});
  grove::local_registry names(n);
  groved::service_state state(names, test_config(), quiet(), 1);
  const groved::tenant_limits limits{.max_keys = 10, .max_key_bytes = 64, .max_subscriptions = 4, .shards = 1};
  auto first = std::make_shared<groved::store>("shop", limits, "");
  state.add_store(first);
  first->subscriptions->fetch_add(2); // two clients subscribed through it
  // The tenant's process restarted: a new store for the same tenant. The
  // clients keep their subscriptions (groups are named by tenant and topic).
  auto second = std::make_shared<groved::store>("shop", limits, "");
  state.add_store(second);
  CHECK_FALSE(first->open.load());
  CHECK(second->subscriptions->load() == 2);
  second->subscriptions->fetch_sub(1); // one client unsubscribes through the new store
  first->subscriptions->fetch_sub(1);  // one ends while it still holds the old one
  CHECK(second->subscriptions->load() == 0);
  // Another tenant counts on its own.
  auto other = std::make_shared<groved::store>("news", limits, "");
  state.add_store(other);
  other->subscriptions->fetch_add(1);
  CHECK(second->subscriptions->load() == 0);
  // Stopped and started again: still the tenant's one counter.
  state.remove_store(other);
  auto again = std::make_shared<groved::store>("news", limits, "");
  state.add_store(again);
  CHECK(again->subscriptions->load() == 1);
}
