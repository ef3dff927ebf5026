#include <grove/registry/local_registry.hpp>

#include <grove/core/event.hpp>
#include <grove/core/node.hpp>
#include <grove/registry/detail/name_table.hpp>
#include <grove/registry/detail/registry_book.hpp>
#include <grove/registry/detail/requests.hpp>

#include <algorithm>
#include <deque>
#include <set>
#include <unordered_map>

namespace grove {

using group_snapshot = std::shared_ptr<const std::vector<group_member>>;

struct local_registry::tables {
  explicit tables(std::size_t buckets) : names(buckets), groups(buckets) {}
  detail::name_table<pid> names;
  detail::name_table<group_snapshot> groups;
  detail::name_table<std::string> meta{8};
  // Built-in metrics (default handles record nowhere when the node has no registry).
  telemetry::counter claims_granted, claims_held, claims_queued;
};

namespace {
struct registry_families {
  explicit registry_families(telemetry::metric_registry& r)
      : claims(r.make_counter("grove_registry_claims_total",
                              "Name claims (register-or-start), by outcome: granted, held (by a live process), "
                              "queued (behind another claim).",
                              {"node", "registry", "outcome"})) {}
  telemetry::counter_family claims;
};
} // namespace

namespace {

// The requests (registry/detail/requests.hpp).
using detail::claim_request;
using detail::join_request;
using detail::leave_request;
using detail::meta_request;
using detail::register_request;
using detail::settle_request;
using detail::unregister_request;
using detail::watch_request;

/// Applies every change, one at a time, and monitors every process that
/// owns something in the registry (a name, a membership, a watch, a claim).
class registry_server : public gen_server {
public:
  explicit registry_server(std::shared_ptr<local_registry::tables> t) : tables_(std::move(t)) {}

  std::error_code handle_call(register_request r) {
    if (r.name.empty()) return errc::invalid_argument;
    if (!alive(r.owner)) return errc::noproc;
    if (pending_.contains(r.name)) return registry_errc::already_registered; // being started under a claim
    if (auto holder = tables_->names.find(r.name); holder && alive(*holder)) {
      return *holder == r.owner ? std::error_code{} : make_error_code(registry_errc::already_registered); // the holder again: a no-op
    }
    add_name(r.name, r.owner); // free, or held by a process whose exit is not handled yet
    return {};
  }

  bool handle_call(unregister_request r) {
    if (!tables_->names.erase_if(r.name, [&](const pid& holder) { return holder == r.owner; })) return false;
    book_.notify(r.name, registry_event::kind::unregistered, r.owner);
    book_.release(this_process(), r.owner, &owned::names, r.name);
    return true;
  }

  std::error_code handle_call(join_request r) {
    if (!alive(r.member)) return errc::noproc;
    auto next = std::make_shared<std::vector<group_member>>();
    if (auto current = tables_->groups.find(r.key)) *next = **current;
    auto same = [&](const group_member& m) { return m.process == r.member; };
    if (auto it = std::find_if(next->begin(), next->end(), same); it != next->end()) {
      it->value = std::move(r.value);
    } else {
      next->push_back(group_member{r.member, std::move(r.value)});
    }
    tables_->groups.insert_or_assign(r.key, group_snapshot(std::move(next)));
    book_.owner(this_process(), r.member).groups.insert(r.key);
    book_.notify(r.key, registry_event::kind::joined, r.member);
    return {};
  }

  bool handle_call(leave_request r) {
    if (!remove_member(r.key, r.member)) return false;
    book_.release(this_process(), r.member, &owned::groups, r.key);
    return true;
  }

  std::error_code handle_call(watch_request r) {
    if (!book_.watch(this_process(), r.key, r.watcher, r.on)) return errc::noproc;
    return {};
  }

  call_result<name_claim> handle_call(claim_request r, from<name_claim> f) {
    if (auto holder = tables_->names.find(r.name); holder && alive(*holder)) {
      tables_->claims_held.inc();
      return name_claim{false, *holder};
    }
    if (auto it = pending_.find(r.name); it != pending_.end()) {
      tables_->claims_queued.inc();
      it->second.waiting.push_back(f); // answered when the claim before it settles
      return noreply;
    }
    tables_->claims_granted.inc();
    grant(r.name, f.caller());
    return name_claim{true, pid{}};
  }

  bool handle_call(settle_request r, from<bool> f) {
    auto it = pending_.find(r.name);
    if (it == pending_.end() || it->second.claimant != f.caller()) return false;
    settle(r.name, r.started);
    return true;
  }

  bool handle_call(meta_request r) {
    tables_->meta.insert_or_assign(std::move(r.key), std::move(r.value));
    return true;
  }

  void handle_info(message m) {
    if (auto* d = m.get_if<down_message>()) owner_ended(d->process);
  }

private:
  using owned = detail::registry_book::owned;
  struct pending_claim {
    pid claimant;
    std::deque<from<name_claim>> waiting;
  };

  void add_name(const std::string& name, const pid& holder) {
    tables_->names.insert_or_assign(name, holder);
    book_.owner(this_process(), holder).names.insert(name);
    book_.notify(name, registry_event::kind::registered, holder);
  }

  bool remove_member(const std::string& key, const pid& member) {
    bool removed = false;
    tables_->groups.update(key, [&](const group_snapshot& current) -> std::optional<group_snapshot> {
      auto next = std::make_shared<std::vector<group_member>>();
      for (const auto& m : *current) {
        if (m.process == member) {
          removed = true;
        } else {
          next->push_back(m);
        }
      }
      if (!removed) return current;
      if (next->empty()) return std::nullopt;
      return group_snapshot(std::move(next));
    });
    if (removed) book_.notify(key, registry_event::kind::left, member);
    return removed;
  }

  void grant(const std::string& name, const pid& claimant) {
    pending_[name].claimant = claimant;
    // A claimant outside any process (main, a test) cannot be watched: its
    // claim lasts until it settles.
    if (claimant) book_.owner(this_process(), claimant).claims.insert(name);
  }

  /// Ends the claim on `name`: registers `started`, or passes the claim on
  /// to the next caller still waiting.
  void settle(const std::string& name, const pid& started) {
    auto it = pending_.find(name);
    const pid claimant = it->second.claimant;
    std::deque<from<name_claim>> waiting = std::move(it->second.waiting);
    pending_.erase(it);
    if (started && alive(started)) {
      add_name(name, started);
      for (auto& w : waiting) w.reply(name_claim{false, started});
    } else {
      while (!waiting.empty()) {
        from<name_claim> next = waiting.front();
        waiting.pop_front();
        if (next.caller() && !alive(next.caller())) continue;
        if (next.reply(name_claim{true, pid{}})) {
          grant(name, next.caller());
          pending_[name].waiting = std::move(waiting);
          break;
        }
      }
    }
    if (claimant) book_.release(this_process(), claimant, &owned::claims, name);
  }

  void owner_ended(const pid& p) {
    std::optional<owned> gone = book_.ended(p);
    if (!gone) return;
    grove::emit(event{.level = event_level::debug,
                      .layer = "registry",
                      .name = "owner_down",
                      .fields = {{"registry", self().to_string()},
                                 {"owner", p.to_string()},
                                 {"names", std::to_string(gone->names.size())},
                                 {"groups", std::to_string(gone->groups.size())}}});
    for (const auto& name : gone->names) {
      if (tables_->names.erase_if(name, [&](const pid& holder) { return holder == p; })) {
        book_.notify(name, registry_event::kind::unregistered, p);
      }
    }
    for (const auto& key : gone->groups) remove_member(key, p);
    for (const auto& name : gone->claims) {
      if (auto c = pending_.find(name); c != pending_.end() && c->second.claimant == p) settle(name, pid{});
    }
  }

  std::shared_ptr<local_registry::tables> tables_;
  detail::registry_book book_;
  std::unordered_map<std::string, pending_claim> pending_;
};

using server = server_ref<registry_server>;

void throw_if(const std::error_code& e, const std::string& what) {
  if (e) throw grove::error(e, what);
}

} // namespace

local_registry::local_registry(grove::node& n, local_registry_options options)
    : registry(n), tables_(std::make_shared<tables>(options.initial_buckets)) {
  // Spawned, not awaited: the constructor runs anywhere (main, a test, a
  // process), and a request sent before the process runs waits in its mailbox.
  start_options start;
  start.worker = options.worker;
  auto started = std::make_shared<detail::reply_slot<pid>>();
  server_ = detail::spawn_body(n,
                               detail::server_body<registry_server, std::shared_ptr<tables>>{
                                   started, std::tuple<std::shared_ptr<tables>>(tables_), std::nullopt, nullptr},
                               detail::to_spawn_options(start));
  if (telemetry::metric_registry* r = n.metrics()) {
    const std::string node = std::to_string(n.id());
    const std::string name = server_.to_string();
    auto& f = r->part<registry_families>();
    tables_->claims_granted = f.claims.with({node, name, "granted"});
    tables_->claims_held = f.claims.with({node, name, "held"});
    tables_->claims_queued = f.claims.with({node, name, "queued"});
    std::shared_ptr<const tables> t = tables_;
    const std::vector<std::string> labels{"node", "registry"};
    collectors_.emplace_back(*r, "grove_registry_names", "Names registered.", telemetry::metric_type::gauge, labels,
                             [t, node, name] {
                               return std::vector<telemetry::sample>{{{node, name}, static_cast<double>(t->names.size())}};
                             });
    collectors_.emplace_back(*r, "grove_registry_groups", "Groups with at least one member.",
                             telemetry::metric_type::gauge, labels, [t, node, name] {
                               return std::vector<telemetry::sample>{{{node, name}, static_cast<double>(t->groups.size())}};
                             });
  }
}

local_registry::~local_registry() { grove::exit(server_, exit_reason::shutdown()); }

awaitable<void> local_registry::do_register_name(std::string name, pid owner) {
  register_request request{name, owner};
  std::error_code e = co_await server(server_).call(std::move(request));
  if (e == registry_errc::already_registered) {
    throw grove::error(e, "'" + name + "' is held by " + whereis(name).to_string());
  }
  throw_if(e, e == errc::invalid_argument ? "a registered name must not be empty"
                                          : "cannot register '" + name + "' to " + owner.to_string());
}

awaitable<bool> local_registry::do_unregister_name(std::string name, pid owner) {
  unregister_request request{std::move(name), owner};
  co_return co_await server(server_).call(std::move(request));
}

pid local_registry::whereis(std::string_view name) const {
  // One epoch pin for the lookup and the liveness check: each pins by
  // itself, and a nested pin is a counter, not a fence.
  detail::epoch_guard pin;
  pid holder;
  tables_->names.visit(name, [&](const pid& p) { holder = p; });
  return alive(holder) ? holder : pid{};
}

std::vector<std::string> local_registry::names() const {
  detail::epoch_guard pin; // as whereis
  std::vector<std::string> out;
  tables_->names.for_each([&](const std::string& name, const pid& holder) {
    if (alive(holder)) out.push_back(name);
  });
  return out;
}

std::size_t local_registry::count() const { return tables_->names.size(); }

awaitable<void> local_registry::do_join(std::string key, std::any value, pid member) {
  join_request request{key, std::move(value), member};
  throw_if(co_await server(server_).call(std::move(request)), "cannot join " + member.to_string() + " to '" + key + "'");
}

awaitable<bool> local_registry::do_leave(std::string key, pid member) {
  leave_request request{std::move(key), member};
  co_return co_await server(server_).call(std::move(request));
}

std::vector<group_member> local_registry::members(std::string_view key) const {
  detail::epoch_guard pin; // as whereis
  std::vector<group_member> out;
  tables_->groups.visit(key, [&](const group_snapshot& g) { out = *g; });
  std::erase_if(out, [](const group_member& m) { return !alive(m.process); });
  return out;
}

void local_registry::for_each_member(std::string_view key, const std::function<void(const group_member&)>& f) const {
  tables_->groups.visit(key, [&](const group_snapshot& g) {
    for (const auto& m : *g) {
      if (alive(m.process)) f(m);
    }
  });
}

awaitable<void> local_registry::do_watch(std::string key, pid watcher) {
  watch_request request{key, watcher, true};
  throw_if(co_await server(server_).call(std::move(request)), "cannot watch '" + key + "' for " + watcher.to_string());
}

awaitable<void> local_registry::do_unwatch(std::string key, pid watcher) {
  watch_request request{std::move(key), watcher, false};
  co_await server(server_).call(std::move(request));
}

awaitable<void> local_registry::put_meta(std::string key, std::string value) {
  meta_request request{std::move(key), std::move(value)};
  co_await server(server_).call(std::move(request));
}

std::optional<std::string> local_registry::meta(std::string_view key) const { return tables_->meta.find(key); }

awaitable<name_claim> local_registry::claim(std::string name) {
  // No deadline: the claim before this one is bounded by its own start
  // (and released if its claimant ends).
  claim_request request{std::move(name)};
  co_return co_await server(server_).call(std::move(request), infinity);
}

awaitable<void> local_registry::settle_claim(std::string name, pid started) {
  settle_request request{std::move(name), started};
  co_await server(server_).call(std::move(request));
}

} // namespace grove
