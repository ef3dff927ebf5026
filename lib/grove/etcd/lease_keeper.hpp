// grove/etcd/lease_keeper.hpp — a gen_server that holds one etcd lease for
// as long as it runs: what a node attaches its cluster-wide names to.
//
//   auto keeper = co_await grove::start<grove::etcd::lease_keeper>(node, etcd, grove::etcd::lease_keeper_options{.ttl_seconds = 10});
//   grove::etcd::lease l = co_await keeper.call(grove::etcd::held_lease{});
//   co_await etcd.put("names/db", me, {.lease = l.id});      // gone when the lease goes
//
// init() grants the lease (the start fails with etcd's reason if it cannot).
// The keeper renews it every third of its TTL. When a renewal says the lease
// is gone (expired, revoked), or no renewal succeeded within the TTL (etcd
// unreachable: the lease has expired there), the keeper stops with an error
// naming the lease: whoever attached keys to it hears of it through a link,
// a monitor or its supervisor, which restarts it with a new lease. Stopped
// cleanly (normal, shutdown), it revokes the lease, so its keys go at once
// rather than at the TTL.
#pragma once

#include <grove/core/gen_server.hpp>
#include <grove/etcd/client.hpp>

#include <chrono>
#include <cstdint>

namespace grove::etcd {

struct lease_keeper_options {
  std::int64_t ttl_seconds = 10; ///< the lease's TTL, renewed every third of it (default 10; etcd may grant more)
};

/// A call to a keeper: the lease it holds.
struct held_lease {
  using reply_type = lease;
};

class lease_keeper : public gen_server {
public:
  lease_keeper(client etcd, lease_keeper_options options) : etcd_(std::move(etcd)), options_(options) {}

  awaitable<action> init();
  lease handle_call(held_lease) const { return lease_; }
  awaitable<action> handle_info(message m);
  awaitable<void> terminate(const exit_reason& reason);

private:
  struct renew {};
  void renew_in(duration delay);

  client etcd_;
  lease_keeper_options options_;
  lease lease_{};
  std::chrono::steady_clock::time_point renewed_{};
};

} // namespace grove::etcd
