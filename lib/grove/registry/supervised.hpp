// grove/registry/supervised.hpp — starting processes through a name:
// register-or-get starts, and supervised children registered under a name
// on every start and restart.
//
//   auto counter = co_await grove::start_link<counter_server>(names, "counter/1", 0);  // or the one already running
//   co_await grove::start_child<session>(names, "session/42", sessions, peer);         // named, supervised
//   auto spec = grove::registered(names, "db", grove::server_child<db>("db"));        // a named child spec
//
// Apart from registry.hpp because these need the supervisor layer; the
// registry interface itself depends on core alone.
#pragma once

#include <grove/registry/registry.hpp>
#include <grove/supervisor/child_spec.hpp>
#include <grove/supervisor/dynamic_supervisor.hpp>

#include <memory>
#include <string>

namespace grove {

namespace detail {

/// Claims `name`, runs `start` if granted, settles. A claim held by a live
/// other process: returns it (register-or-get) or, with `fail_if_taken`,
/// throws registry_errc::already_registered (a supervised child's start).
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
/// fails with registry_errc::already_registered while another live process holds the name.
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
