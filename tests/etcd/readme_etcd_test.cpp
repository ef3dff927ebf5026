// The README's etcd example, against a real etcd.
#include <grove/etcd/client.hpp>

#include <grove/core/node.hpp>

#include "../readme_check.hpp"
#include "etcd_server.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

namespace {

// --- README example begins
/// Claims `name` for `me` while a 10-second lease lives (renew it with
/// keep_alive_once): returns `me` if the claim won, else the holder.
grove::awaitable<std::string> claim(const grove::etcd::client& etcd, std::string name, std::string me) {
  const grove::etcd::lease lease = co_await etcd.grant_lease(10);
  const grove::etcd::txn_request request{.when = {grove::etcd::compare::absent(name)},
                                         .then = {grove::etcd::txn_op::put(name, me, lease.id)},
                                         .otherwise = {grove::etcd::txn_op::get(name)}};
  const grove::etcd::txn_result r = co_await etcd.txn(request); // named: see "g++ 12 and coroutines"
  if (r.succeeded) co_return me;
  co_return std::get<grove::etcd::get_result>(r.responses[0]).kvs.at(0).value;
}

/// Starts a watch on `prefix`, writes under it, and returns what the watch saw.
grove::awaitable<grove::etcd::event> see_a_write(const grove::etcd::client& etcd, std::string prefix) {
  grove::etcd::watch w = co_await etcd.watch(prefix, {.prefix = true}); // sees every change from here on
  co_await etcd.put(prefix + "x", "1");
  std::vector<grove::etcd::event> events = co_await w.next(std::chrono::seconds(10));
  co_return events.front();
}
// --- README example ends

} // namespace

TEST_CASE("the_readme_example_claims_a_name_once_and_sees_a_write") {
  test_support::etcd_server server;
  grove::etcd::client etcd({.endpoints = {server.url()}});
  grove::node node{{.threads = 1}};
  CHECK(node.block_on(claim(etcd, "names/db", "node-1")) == "node-1");
  CHECK(node.block_on(claim(etcd, "names/db", "node-2")) == "node-1");
  const grove::etcd::event e = node.block_on(see_a_write(etcd, "config/"));
  CHECK(e.type == grove::etcd::event_type::put);
  CHECK(e.kv.key == "config/x");
  CHECK(readme_check::readme_holds_example_of("tests/etcd/readme_etcd_test.cpp"));
}
