// A clustered groved's tenant data in etcd (cluster.hpp's tenant_data): the
// log's rounds and snapshots, fenced by the tenant's placement, and read
// back by whichever node serves the tenant next. Against a real etcd.
#include "cluster.hpp"

#include "../etcd/etcd_server.hpp"

#include <grove/core/node.hpp>

#include <doctest/doctest.h>

#include <string>

namespace {

using json = nlohmann::json;

std::shared_ptr<groved::cluster_view> view_of(const test_support::etcd_server& etcd, const std::string& node) {
  groved::config c = groved::default_config();
  c.cluster_etcd = {etcd.url()};
  c.cluster_node = node;
  return std::make_shared<groved::cluster_view>(c);
}

// A node's view holding a lease of its own.
std::shared_ptr<groved::cluster_view> joined(grove::node& n, const test_support::etcd_server& etcd, const std::string& node) {
  auto view = view_of(etcd, node);
  view->set_lease(n.block_on(view->etcd().grant_lease(30)).id);
  return view;
}

std::string records(const std::vector<std::pair<std::string, json>>& puts) {
  std::string out;
  for (const auto& [key, value] : puts) groved::encode_record(out, key, &value);
  return out;
}

std::size_t keys_under(grove::node& n, const groved::cluster_view& view, const std::string& prefix) {
  grove::etcd::get_options o;
  o.prefix = true;
  o.count_only = true;
  return static_cast<std::size_t>(n.block_on(view.etcd().get(prefix, o)).count);
}

// An etcd, a node, and tenant "shop" placed on node "a" of it.
struct placed_tenant {
  test_support::etcd_server etcd;
  grove::node n{{.threads = 2}};
  std::shared_ptr<groved::cluster_view> a = joined(n, etcd, "a");
  bool claimed = n.block_on(a->claim("shop")).empty();
  groved::tenant_data data{n, a, "shop"};
  bool broken = false;
};

} // namespace

TEST_CASE_FIXTURE(placed_tenant, "a tenant's log goes to etcd only while its placement is this node's, and comes back whole") {
  REQUIRE(claimed);
  CHECK(data.store(records({{"k", 1}, {"n", "x"}}), 1, broken).empty());
  // A round larger than one etcd value is stored in parts and read back as one.
  const std::string big(2 * 1024 * 1024 + 17, 'v');
  CHECK(data.store(records({{"big", big}, {"k", 2}}), 1, broken).empty());
  CHECK(keys_under(n, *a, data.prefix() + "log/") == 1 + 3);

  groved::recovered_store r = n.block_on(data.recover(128, {}));
  CHECK(r.data == json{{"k", 2}, {"n", "x"}, {"big", big}});
  CHECK(r.next_generation == 2);
  CHECK_FALSE(r.snapshot_found);

  // Another node took the tenant over (this node's lease ended): nothing
  // this node writes lands, and it is told so; nothing was half written.
  REQUIRE(n.block_on(a->etcd().put(a->placement_key("shop"), "b")).revision > 0);
  const std::string failure = data.store(records({{"k", 3}, {"big", big}}), 1, broken);
  CHECK(failure.find("no longer placed on this node") != std::string::npos);
  CHECK_FALSE(broken);
  CHECK(keys_under(n, *a, data.prefix() + "log/") == 4);
  auto b = joined(n, etcd, "b");
  REQUIRE(n.block_on(b->claim("shop")).empty()); // b's now, under b's lease
  groved::tenant_data taken(n, b, "shop");
  r = n.block_on(taken.recover(128, {}));
  CHECK(r.data["k"] == 2);
  // The same placement under another lease of this node (an earlier life's) fences too.
  auto b_later = joined(n, etcd, "b");
  groved::tenant_data stale(n, b_later, "shop");
  CHECK_FALSE(stale.store(records({{"k", 4}}), 2, broken).empty());
  CHECK(n.block_on(taken.recover(128, {})).data["k"] == 2);
}

TEST_CASE_FIXTURE(placed_tenant, "a snapshot in parts holds the generations before it, which go; recovery starts from it") {
  REQUIRE(claimed);
  CHECK(data.store(records({{"old", 1}}), 1, broken).empty());
  json state = json::object();
  for (int i = 0; i < 3000; ++i) state["key" + std::to_string(i)] = std::string(500, 'a' + i % 26); // ~1.5 MB: parts
  state["old"] = 1;
  n.block_on(data.write_snapshot(state, 2));
  CHECK(keys_under(n, *a, data.prefix() + "snap/") >= 3); // two parts or more, and their count
  CHECK(keys_under(n, *a, data.prefix() + "log/") == 0);  // generation 1 is in the snapshot
  CHECK(data.store(records({{"after", true}}), 2, broken).empty());
  // A snapshot begun but not finished (no count) is not read.
  REQUIRE(n.block_on(a->etcd().put(data.prefix() + "snap/0000000000000003/00000000", "{\"torn")).revision > 0);

  groved::recovered_store r = n.block_on(data.recover(128, {}));
  CHECK(r.snapshot_found);
  CHECK(r.snapshot_generation == 2);
  CHECK(r.next_generation == 3);
  json expected = state;
  expected["after"] = true;
  CHECK(r.data == expected);
  // A shard's part only.
  r = n.block_on(data.recover(128, [](std::string_view key) { return key == "after" || key == "key7"; }));
  CHECK(r.data == json{{"after", true}, {"key7", state["key7"]}});

  n.block_on(data.erase_all());
  CHECK(keys_under(n, *a, data.prefix()) == 0);
  CHECK(n.block_on(data.recover(128, {})).data.empty());
}
