// grove/registry/registry.hpp — process names: unique names, groups
// (duplicate keys), watchers, and addressing a server by its name. The
// interface every backend implements; local_registry.hpp is the one for a
// single machine.
//
//   grove::local_registry names(node);
//   auto counter = co_await grove::start_link<counter_server>(names, "counter/1", 0);  // or the one already running
//   co_await grove::via<counter_server>(names, "counter/1").call(get{});                // resolved when sent
//   co_await grove::start_child<session>(names, "session/42", sessions, peer);         // named, supervised
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

#include <grove/registry/error.hpp>
#include <grove/core/gen_server.hpp>
#include <grove/supervisor/child_spec.hpp>
#include <grove/supervisor/dynamic_supervisor.hpp>

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

  // -- unique names --------------------------------------------------------
  /// Registers `owner` (default: the calling process) under `name`. Throws
  /// grove::error: already_registered (another live process holds it),
  /// noproc (the owner is not alive), invalid_argument (empty name).
  /// Registering a name the owner already holds is a no-op.
  virtual awaitable<void> register_name(std::string name, pid owner = grove::self()) = 0;
  /// Removes `name` if `owner` holds it; false otherwise.
  virtual awaitable<bool> unregister_name(std::string name, pid owner = grove::self()) = 0;
  /// The live holder of `name`, or the null pid. Any thread; lock-free locally.
  virtual pid whereis(std::string_view name) const = 0;
  /// Registered names (a snapshot) and how many there are.
  virtual std::vector<std::string> names() const = 0;
  virtual std::size_t count() const = 0;

  // -- groups (duplicate keys) ---------------------------------------------
  /// Adds `member` (default: the calling process) to the group `key` with
  /// `value`; a member joining again replaces its value.
  virtual awaitable<void> join(std::string key, std::any value = {}, pid member = grove::self()) = 0;
  /// Removes `member` from `key`; false if it was not in it.
  virtual awaitable<bool> leave(std::string key, pid member = grove::self()) = 0;
  /// The group's members, in the order they joined (a snapshot). Any thread.
  virtual std::vector<group_member> members(std::string_view key) const = 0;
  /// Calls f(member) for each member without copying the group. Any
  /// thread; f must not block.
  virtual void for_each_member(std::string_view key, const std::function<void(const group_member&)>& f) const = 0;

  // -- watching ---------------------------------------------------------------
  /// `watcher` (default: the calling process) gets a registry_event message
  /// whenever `key` is registered or unregistered (a name) or a member
  /// joins or leaves (a group), until it unwatches or ends.
  virtual awaitable<void> watch(std::string key, pid watcher = grove::self()) = 0;
  virtual awaitable<void> unwatch(std::string key, pid watcher = grove::self()) = 0;

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

namespace detail {

/// Claims `name`, runs `start` if granted, settles. A claim held by a live
/// other process: returns it (register-or-get) or, with `fail_if_taken`,
/// throws already_registered (a supervised child's start).
awaitable<pid> start_registered(registry& r, std::string name, child_start start, node& n, extra_arguments extra,
                                bool fail_if_taken);

/// start_child(registry, name, sup, ...): the holder if there is a live one,
/// else sup.start_child(spec) — and the holder after all if that start lost
/// a race for the name.
awaitable<pid> start_registered_child(registry& r, std::string name, const dynamic_supervisor_base& sup,
                                      child_spec spec);

/// A child start that registers what it starts (and re-registers on every restart).
class registered_start final : public start_impl {
public:
  registered_start(registry& r, std::string name, child_start inner)
      : registry_(&r), name_(std::move(name)), inner_(std::move(inner)) {}
  awaitable<pid> start(node& n, const extra_arguments& extra) const override {
    return start_registered(*registry_, name_, inner_, n, extra, true);
  }
  bool equals(const start_impl& other) const noexcept override {
    auto* o = dynamic_cast<const registered_start*>(&other);
    return o && o->registry_ == registry_ && o->name_ == name_ && o->inner_ == inner_;
  }

private:
  registry* registry_;
  std::string name_;
  child_start inner_;
};

} // namespace detail

/// `spec` with its process registered under `name` on every start and
/// restart (a restarted child is found under its name again). A start
/// fails with already_registered while another live process holds the name.
inline child_spec registered(registry& r, std::string name, child_spec spec) {
  spec.start = child_start(std::make_shared<const detail::registered_start>(r, std::move(name), std::move(spec.start)));
  return spec;
}

/// Starts S(args...) linked to the caller and registered under `name` — or,
/// if a live process already holds the name, returns that one (no second
/// process is started; concurrent starts of one name all get the same).
template <class S, class... Args>
  requires std::derived_from<S, gen_server> && std::constructible_from<S, Args...> &&
           (std::copy_constructible<Args> && ...)
awaitable<server_ref<S>> start_link(registry& r, std::string name, Args... args) {
  start_options options;
  options.link = true;
  child_start start([options, args...](grove::node& n) { return detail::start_untyped<S>(n, options, args...); });
  return detail::as_handle<server_ref<S>>(
      detail::start_registered(r, std::move(name), std::move(start), r.node(), {}, false));
}

/// Starts S(extra..., args...) under the dynamic supervisor `sup`,
/// registered under `name` (and re-registered when `sup` restarts it) — or
/// returns the live process already holding the name.
template <class S, class... Extra, class... Args>
  requires std::derived_from<S, gen_server> && std::constructible_from<S, Extra..., Args...> &&
           (std::copy_constructible<Args> && ...)
awaitable<server_ref<S>> start_child(registry& r, std::string name, const dynamic_supervisor_of<Extra...>& sup,
                                     Args... args) {
  child_spec spec;
  spec.id = name;
  spec.start = child_start(std::make_shared<const detail::server_start<S, std::tuple<Extra...>, Args...>>(
      start_options{}, std::move(args)...));
  child_spec named = registered(r, name, std::move(spec));
  return detail::as_handle<server_ref<S>>(detail::start_registered_child(r, std::move(name), sup, std::move(named)));
}

} // namespace grove
