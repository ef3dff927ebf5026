// grove/registry/local_registry.hpp — the registry of one node: names,
// groups and watchers in this process's memory.
//
//   grove::local_registry names(node);                    // an object you own and pass
//   co_await names.register_name("cache");                // the calling process
//   grove::pid cache = names.whereis("cache");            // any thread, lock-free
//
// Lookups (whereis, members, for_each_member, meta) are lock-free reads
// that write nothing shared, so they scale across threads. Every change
// goes through the registry's own process, one at a time, which also
// monitors each owner: when a process ends, its names and memberships go
// and the watchers are told. See registry.hpp for the whole interface.
// A registry may outlive its node: once the node is gone its lookups find
// nothing and its changes fail with noproc.
#pragma once

#include <grove/registry/registry.hpp>
#include <grove/registry/supervised.hpp>
#include <grove/telemetry/metrics.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

namespace grove {

struct local_registry_options {
  std::optional<std::size_t> worker{}; ///< worker the registry's process runs on (default: round-robin)
  std::size_t initial_buckets = 64;    ///< initial hash buckets for names and for groups (default 64; grows)
};

class local_registry final : public registry {
public:
  /// Starts the registry's process on `n`. Throws grove::error
  /// (node_stopped) if the node is shutting down.
  explicit local_registry(grove::node& n, local_registry_options options = {});
  /// Stops the registry's process; registrations end with it.
  ~local_registry() override;

  pid whereis(std::string_view name) const override;
  std::vector<std::string> names() const override;
  /// Registered names; one whose holder just ended counts until the
  /// registry has handled its exit (whereis and names() skip it at once).
  std::size_t count() const override;

  std::vector<group_member> members(std::string_view key) const override;
  void for_each_member(std::string_view key, const std::function<void(const group_member&)>& f) const override;

  awaitable<void> put_meta(std::string key, std::string value) override;
  std::optional<std::string> meta(std::string_view key) const override;

  awaitable<name_claim> claim(std::string name) override;
  awaitable<void> settle_claim(std::string name, pid started) override;


  /// The registry's own process (it applies every change).
  pid process() const noexcept { return server_; }

  struct tables; // the lock-free tables, shared with the registry's process

protected:
  awaitable<void> do_register_name(std::string name, pid owner) override;
  awaitable<bool> do_unregister_name(std::string name, pid owner) override;
  awaitable<void> do_join(std::string key, std::any value, pid member) override;
  awaitable<bool> do_leave(std::string key, pid member) override;
  awaitable<void> do_watch(std::string key, pid watcher) override;
  awaitable<void> do_unwatch(std::string key, pid watcher) override;

private:
  std::shared_ptr<tables> tables_;
  pid server_;
  std::vector<telemetry::scoped_collector> collectors_; // when the node has a metrics registry
};

} // namespace grove
