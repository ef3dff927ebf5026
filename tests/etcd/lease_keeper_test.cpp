// The lease keeper against a real etcd.
#include <grove/etcd/lease_keeper.hpp>

#include <grove/core/node.hpp>

#include "etcd_server.hpp"

#include <doctest/doctest.h>

#include <string>

namespace {
using namespace std::chrono_literals;
using grove::awaitable;
namespace etcd = grove::etcd;
} // namespace

TEST_CASE("a lease keeper keeps its lease past the TTL, and revokes it when stopped") {
  test_support::etcd_server server;
  etcd::client c({.endpoints = {server.url()}});
  grove::node node{{.threads = 1}};
  node.block_on([&](grove::process& self) -> awaitable<void> {
    const etcd::lease_keeper_options options{.ttl_seconds = 2};
    auto keeper = co_await grove::start<etcd::lease_keeper>(self.node(), c, options);
    const etcd::lease l = co_await keeper.call(etcd::held_lease{});
    CHECK(l.id != 0);
    co_await c.put("alive", "1", {.lease = l.id});
    etcd::watch w = co_await c.watch("alive");
    // Three TTLs and more: an unrenewed lease would have taken the key.
    bool quiet = false;
    try {
      co_await w.next(std::chrono::seconds(3 * l.ttl + 1));
    } catch (const grove::error& e) {
      quiet = e.code() == etcd::errc::timeout;
    }
    CHECK(quiet);
    co_await grove::stop(keeper);
    const auto events = co_await w.next(10s); // revoked at once, not at the TTL
    REQUIRE(events.size() == 1);
    CHECK(events[0].type == etcd::event_type::erase);
    CHECK(events[0].kv.key == "alive");
  });
}

TEST_CASE("a keeper whose lease was revoked stops with an error naming the lease") {
  test_support::etcd_server server;
  etcd::client c({.endpoints = {server.url()}});
  grove::node node{{.threads = 1}};
  node.block_on([&](grove::process& self) -> awaitable<void> {
    const etcd::lease_keeper_options options{.ttl_seconds = 3};
    auto [keeper, monitor] = co_await grove::start_monitor<etcd::lease_keeper>(self.node(), c, options);
    const etcd::lease l = co_await keeper.call(etcd::held_lease{});
    co_await c.revoke_lease(l.id);
    const std::optional<grove::message> m = co_await self.receive_for(10s); // its next renewal finds it gone
    REQUIRE(m.has_value());
    const auto* down = m->get_if<grove::down_message>();
    REQUIRE(down != nullptr);
    CHECK(down->reason.what() == grove::exit_reason::kind::error);
    CHECK(down->reason.detail().find("etcd lease " + std::to_string(l.id) + " lost") != std::string::npos);
  });
}

TEST_CASE("a keeper cannot start without etcd, and says why") {
  const std::string dead = "http://127.0.0.1:" + std::to_string(test_support::free_port());
  etcd::client c({.endpoints = {dead}, .request_timeout = 2s});
  grove::node node{{.threads = 1}};
  std::error_code code;
  std::string text;
  node.block_on([&](grove::process& self) -> awaitable<void> {
    try {
      co_await grove::start<etcd::lease_keeper>(self.node(), c, etcd::lease_keeper_options{});
    } catch (const grove::error& e) {
      code = e.code();
      text = e.what();
    }
  });
  CHECK(code);
  CHECK(text.find(dead) != std::string::npos);
}
