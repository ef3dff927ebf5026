#include <grove/etcd/lease_keeper.hpp>

#include <algorithm>
#include <string>

namespace grove::etcd {

namespace {
std::string lease_text(const lease& l) { return "etcd lease " + std::to_string(l.id); }
} // namespace

awaitable<action> lease_keeper::init() {
  if (options_.ttl_seconds < 1) {
    co_return stop(exit_reason::error("lease_keeper_options.ttl_seconds: " + std::to_string(options_.ttl_seconds) +
                                      " (expected at least 1)"));
  }
  lease_ = co_await etcd_.grant_lease(options_.ttl_seconds); // throws: the start fails with etcd's reason
  renewed_ = std::chrono::steady_clock::now();
  renew_in(std::chrono::seconds(lease_.ttl) / 3);
  co_return action{};
}

void lease_keeper::renew_in(duration delay) { send_after(self(), delay, message(renew{})); }

awaitable<action> lease_keeper::handle_info(message m) {
  if (!m.is<renew>()) co_return action{};
  const duration ttl = std::chrono::seconds(lease_.ttl);
  try {
    const std::int64_t granted = co_await etcd_.keep_alive_once(lease_.id);
    renewed_ = std::chrono::steady_clock::now();
    renew_in(std::chrono::seconds(granted) / 3);
  } catch (const grove::error& e) {
    if (e.code() == errc::lease_not_found) {
      co_return stop(exit_reason::error(lease_text(lease_) + " lost: " + e.what()));
    }
    const duration since = std::chrono::steady_clock::now() - renewed_;
    if (since >= ttl) {
      co_return stop(exit_reason::error(lease_text(lease_) + " expired: not renewed within its TTL (" +
                                        std::to_string(lease_.ttl) + " s): " + e.what()));
    }
    // etcd unreachable for now: try again soon, while the lease may live.
    renew_in(std::min<duration>(std::chrono::seconds(1), (ttl - since) / 2));
  }
  co_return action{};
}

awaitable<void> lease_keeper::terminate(const exit_reason& reason) {
  if (!reason.is_clean() || lease_.id == 0) co_return;
  try {
    co_await etcd_.revoke_lease(lease_.id); // its keys go now, not at the TTL
  } catch (const grove::error&) {
    // Gone already, or etcd unreachable: the TTL ends it.
  }
}

} // namespace grove::etcd
