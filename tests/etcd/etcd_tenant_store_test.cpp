// etcd_tenant_store against a real etcd: the tenant store contract
// (tests/tenant/store_contract.hpp), then what only this store does:
// reopening on the prefix, fencing a second writer, refusing a prefix
// that is not a tenant store.
#include <grove/etcd/etcd_tenant_store.hpp>

#include <grove/tenant/error.hpp>

#include "../tenant/store_contract.hpp"
#include "etcd_server.hpp"

#include <doctest/doctest.h>

#include <memory>
#include <string>

namespace {
namespace etcd = grove::etcd;

/// A store on an etcd of its own (the contract's Kind: open() gives an empty one).
struct etcd_kind {
  test_support::etcd_server server;
  etcd::client client{etcd::client_options{.endpoints = {server.url()}}};
  grove::node node{{.threads = 1}};
  std::unique_ptr<grove::tenant_store> open() { return std::make_unique<grove::etcd_tenant_store>(node, client); }
};

std::error_code code_of(auto&& f) {
  try {
    f();
  } catch (const grove::error& e) {
    return e.code();
  }
  return {};
}

} // namespace

GROVE_STORE_CONTRACT(etcd_kind);

TEST_CASE("a store opened again on the prefix finds every record and event, and sequences go on") {
  etcd_kind kind;
  std::vector<std::uint64_t> first;
  const grove::tenant_record committed = record("acme", 1);
  {
    auto store = kind.open();
    first = store->commit(put(committed, {event("acme", grove::tenant_event_kind::install, 1)}));
  }
  auto again = kind.open();
  const auto got = again->load();
  REQUIRE(got.records.size() == 1);
  CHECK(got.records[0] == committed);
  REQUIRE(got.outbox.size() == 1);
  CHECK(got.outbox[0].sequence == first[0]);
  const auto next = again->commit(put(record("acme", 2), {event("acme", grove::tenant_event_kind::update, 2)}));
  REQUIRE(next.size() == 1);
  CHECK(next[0] > first[0]);
  CHECK(again->describe() == "etcd grove/tenants/");
}

TEST_CASE("a second writer on the prefix fences the first: its next commit fails and applies nothing") {
  etcd_kind kind;
  auto old_owner = kind.open();
  (void)old_owner->load();
  old_owner->commit(put(record("t", 1)));
  auto new_owner = kind.open(); // a node taking the tenants over
  (void)new_owner->load();
  new_owner->commit(put(record("t", 2)));
  std::string text;
  const std::error_code late = code_of([&] {
    try {
      old_owner->commit(put(record("t", 99), {event("t", grove::tenant_event_kind::update, 99)}));
    } catch (const grove::error& e) {
      text = e.what();
      throw;
    }
  });
  CHECK(late == grove::tenant_errc::store_failed);
  CHECK(text.find("another writer") != std::string::npos);
  CHECK(code_of([&] { old_owner->acknowledge({1}); }) == grove::tenant_errc::store_failed);
  const auto got = new_owner->load();
  REQUIRE(got.records.size() == 1);
  CHECK(got.records[0].generation == 2); // the fenced write left nothing
  CHECK(got.outbox.empty());
  new_owner->commit(put(record("t", 3))); // the new owner carries on
}

TEST_CASE("a prefix that holds something else is refused and left as it was") {
  etcd_kind kind;
  kind.node.block_on(kind.client.put("grove/tenants/other", "not ours"));
  std::string text;
  const std::error_code refused = code_of([&] {
    try {
      kind.open();
    } catch (const grove::error& e) {
      text = e.what();
      throw;
    }
  });
  CHECK(refused == grove::tenant_errc::store_refused);
  CHECK(text.find("grove/tenants/other") != std::string::npos);
  const auto left = kind.node.block_on(kind.client.get("grove/tenants/", {.prefix = true}));
  REQUIRE(left.kvs.size() == 1); // no schema key written
  CHECK(left.kvs[0].value == "not ours");

  kind.node.block_on(kind.client.put("grove/v2/schema", "grove tenant store 2"));
  grove::etcd_tenant_store_options newer;
  newer.prefix = "grove/v2/";
  CHECK(code_of([&] { grove::etcd_tenant_store s(kind.node, kind.client, newer); }) == grove::tenant_errc::store_refused);
}

TEST_CASE("a store whose etcd cannot be reached is refused, naming it") {
  const std::string dead = "http://127.0.0.1:" + std::to_string(test_support::free_port());
  etcd::client c({.endpoints = {dead}, .request_timeout = std::chrono::seconds(2)});
  grove::node node{{.threads = 1}};
  std::string text;
  const std::error_code refused = code_of([&] {
    try {
      grove::etcd_tenant_store s(node, c);
    } catch (const grove::error& e) {
      text = e.what();
      throw;
    }
  });
  CHECK(refused == grove::tenant_errc::store_refused);
  CHECK(text.find(dead) != std::string::npos);
}
