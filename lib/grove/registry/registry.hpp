// grove/registry/registry.hpp — process names: unique names, groups
// (a process at most once per key), watchers, and addressing a server by its name. The
// interface every backend implements; local_registry.hpp is the one for a
// single machine.
//
//   grove::local_registry names(node);
//   auto counter = co_await grove::start_link<counter_server>(names, "counter/1", 0);  // or the one already running
//   co_await grove::via<counter_server>(names, "counter/1").call(get{});                // resolved when sent
//   co_await grove::start_child<session>(names, "session/42", sessions, peer);         // named, supervised
//
// This header depends on core alone; the starts through a name (start_link,
// start_child, registered) are in registry/supervised.hpp.
//
// A registry is an object the user creates and passes; several live side by
// side in one program.
//
// What a backend must guarantee (a distributed one, e.g. on etcd, included):
//  - One holder per unique name at a time. A registration is owned by a
//    process and lives as long as its owner: locally the process itself, in
//    a cluster a lease its node keeps alive. When the owner ends (or its
//    lease expires) every name and group membership it held goes, and the
//    watchers hear of it.
//  - claim() / settle_claim() are linearisable per name: of concurrent
//    claims one is granted, the others wait and then see the settled holder
//    (or are granted in turn if the start failed). That is what makes
//    register-or-get starts race-free.
//  - A holder that is known to have ended is never returned (whereis checks
//    liveness; a cluster backend returns only names whose lease is live).
//  - Lookups (whereis, members) never block on the network: they read local
//    state, which a distributed backend keeps current from its watch stream.
//    Operations that may need the network are awaitable.
//  - Watchers get registered/unregistered (joined/left) events in the order
//    the registry applied them.
#pragma once

#include <grove/core/gen_server.hpp>
#include <grove/registry/error.hpp>

#include <any>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace grove {

/// A member of a group: a process and the value it joined with.
struct group_member {
  pid process{};
  std::any value{};
};

/// What a watcher receives (as a plain message) when a watched name or
/// group key changes.
struct registry_event {
  enum class kind : std::uint8_t { registered, unregistered, joined, left };
  kind what{};
  std::string key{};
  pid process{};
};

/// The answer to claim(): either the caller may start the name's process
/// (granted), or `holder` already holds it.
struct name_claim {
  bool granted = false;
  pid holder{};
};

class registry {
public:
  explicit registry(grove::node& n) noexcept : node_(&n) {}
  virtual ~registry() = default;
  registry(const registry&) = delete;
  registry& operator=(const registry&) = delete;

  /// The node this registry's processes are started on.
  grove::node& node() const noexcept { return *node_; }

  // The operations whose owner defaults to the calling process are
  // non-virtual and call a protected do_ function (Core Guidelines C.140:
  // a default argument belongs to one declaration, not to every override).

  // -- unique names --------------------------------------------------------
  /// Registers `owner` (default: the calling process) under `name`. Throws
  /// grove::error: registry_errc::already_registered (another live process
  /// holds it), noproc (the owner is not alive), invalid_argument (empty
  /// name). Registering a name the owner already holds is a no-op.
  awaitable<void> register_name(std::string name, pid owner = grove::self()) {
    return do_register_name(std::move(name), owner);
  }
  /// Removes `name` if `owner` holds it; false otherwise.
  awaitable<bool> unregister_name(std::string name, pid owner = grove::self()) {
    return do_unregister_name(std::move(name), owner);
  }
  /// The live holder of `name`, or the null pid. Any thread; lock-free locally.
  virtual pid whereis(std::string_view name) const = 0;
  /// Registered names (a snapshot) and how many there are.
  virtual std::vector<std::string> names() const = 0;
  virtual std::size_t count() const = 0;

  // -- groups -----------------------------------------------------------------
  /// Adds `member` (default: the calling process) to the group `key` with
  /// `value`. A process is in a group at most once: joining again replaces
  /// its value (where Elixir's duplicate Registry would add a second entry).
  awaitable<void> join(std::string key, std::any value = {}, pid member = grove::self()) {
    return do_join(std::move(key), std::move(value), member);
  }
  /// Removes `member` from `key`; false if it was not in it.
  awaitable<bool> leave(std::string key, pid member = grove::self()) { return do_leave(std::move(key), member); }
  /// The group's members, in the order they joined (a snapshot). Any thread.
  virtual std::vector<group_member> members(std::string_view key) const = 0;
  /// Calls f(member) for each member without copying the group. Any
  /// thread; f must not block.
  virtual void for_each_member(std::string_view key, const std::function<void(const group_member&)>& f) const = 0;

  // -- watching ---------------------------------------------------------------
  /// `watcher` (default: the calling process) gets a registry_event message
  /// whenever `key` is registered or unregistered (a name) or a member
  /// joins or leaves (a group), until it unwatches or ends.
  awaitable<void> watch(std::string key, pid watcher = grove::self()) { return do_watch(std::move(key), watcher); }
  awaitable<void> unwatch(std::string key, pid watcher = grove::self()) { return do_unwatch(std::move(key), watcher); }

  // -- metadata of the registry itself ------------------------------------------
  virtual awaitable<void> put_meta(std::string key, std::string value) = 0;
  virtual std::optional<std::string> meta(std::string_view key) const = 0;

  // -- register-or-get (what start_link / start_child / registered use) ---------
  /// Asks to start the process for `name`. Granted: the caller starts it
  /// and must settle_claim (a caller that ends first releases the claim).
  /// Not granted: `holder` holds it. Concurrent claims of one name wait for
  /// the first to settle.
  virtual awaitable<name_claim> claim(std::string name) = 0;
  /// Ends a granted claim: registers `started` under the name, or (null)
  /// gives the claim up.
  virtual awaitable<void> settle_claim(std::string name, pid started) = 0;

protected:
  virtual awaitable<void> do_register_name(std::string name, pid owner) = 0;
  virtual awaitable<bool> do_unregister_name(std::string name, pid owner) = 0;
  virtual awaitable<void> do_join(std::string key, std::any value, pid member) = 0;
  virtual awaitable<bool> do_leave(std::string key, pid member) = 0;
  virtual awaitable<void> do_watch(std::string key, pid watcher) = 0;
  virtual awaitable<void> do_unwatch(std::string key, pid watcher) = 0;

private:
  grove::node* node_;
};

/// A server addressed by name: call and cast resolve the name when they are
/// sent, so a restarted server is found under its name again. A call to a
/// name nobody holds fails with errc::noproc; a cast to it is dropped.
template <class S>
class via_ref {
public:
  via_ref(const registry& r, std::string name) : registry_(&r), name_(std::move(name)) {}

  template <class Req>
    requires handles_call<S, Req>
  awaitable<detail::reply_of<Req>> call(Req request, duration timeout = default_call_timeout) const {
    return resolve().call(std::move(request), timeout);
  }
  template <class Req>
    requires handles_call<S, Req>
  awaitable<detail::reply_of<Req>> call(Req request, call_options options) const {
    return resolve().call(std::move(request), options);
  }
  template <class Req>
    requires handles_cast<S, Req>
  void cast(Req request) const {
    resolve().cast(std::move(request));
  }

  /// The server holding the name now (null if none).
  server_ref<S> resolve() const { return server_ref<S>(registry_->whereis(name_)); }
  const std::string& name() const noexcept { return name_; }

private:
  const registry* registry_;
  std::string name_;
};

template <class S>
via_ref<S> via(const registry& r, std::string name) {
  return via_ref<S>(r, std::move(name));
}

/// Sends `m` to the holder of `name`; false (and dropped) if nobody holds it.
bool send(const registry& r, std::string_view name, message m);

/// Calls f(member) for each live member of group `key` (Elixir's
/// Registry.dispatch): any thread, lock-free, in join order; f must not block.
template <class F>
void dispatch(const registry& r, std::string_view key, F&& f) {
  r.for_each_member(key, std::forward<F>(f));
}

/// Sends a copy of `m` to every member of group `key` (dispatch's commonest
/// use); returns how many it reached.
template <class T>
std::size_t multi_send(const registry& r, std::string_view key, const T& m) {
  std::size_t sent = 0;
  r.for_each_member(key, [&](const group_member& member) {
    send(member.process, m);
    ++sent;
  });
  return sent;
}

} // namespace grove
