#include <grove/etcd/etcd_registry.hpp>

#include <grove/core/pid_text.hpp>
#include <grove/core/event.hpp>
#include <grove/core/gen_server.hpp>
#include <grove/etcd/lease_keeper.hpp>
#include <grove/registry/detail/name_table.hpp>
#include <grove/registry/detail/registry_book.hpp>
#include <grove/registry/detail/requests.hpp>
#include <grove/registry/error.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <deque>
#include <map>
#include <set>
#include <unordered_map>

namespace grove {

namespace {

using group_snapshot = std::shared_ptr<const std::vector<group_member>>;

/// A name as the cache holds it: a holder, or a claim being settled.
struct name_entry {
  pid holder{};         ///< null while claimed
  std::string endpoint; ///< the holder's node's, as it advertised it
  std::string raw;      ///< the value in etcd (what a conditional delete compares)
};

// -- pids and keys as text ------------------------------------------------------------

/// A group key inside an etcd key: '/' and '%' escaped, so that the member
/// is what follows the last '/'.
std::string escape_key(std::string_view key) {
  std::string out;
  out.reserve(key.size());
  for (char c : key) {
    if (c == '%') {
      out += "%25";
    } else if (c == '/') {
      out += "%2F";
    } else {
      out += c;
    }
  }
  return out;
}

std::string unescape_key(std::string_view key) {
  std::string out;
  out.reserve(key.size());
  for (std::size_t i = 0; i < key.size(); ++i) {
    if (key.substr(i, 3) == "%25") {
      out += '%';
      i += 2;
    } else if (key.substr(i, 3) == "%2F") {
      out += '/';
      i += 2;
    } else {
      out += key[i];
    }
  }
  return out;
}

/// A group member's value as stored: {"type": "none" | "string" | "json", "value": ...}.
std::optional<nlohmann::json> value_to_json(const std::any& v) {
  if (!v.has_value()) return nlohmann::json{{"type", "none"}};
  if (const auto* s = std::any_cast<std::string>(&v)) return nlohmann::json{{"type", "string"}, {"value", *s}};
  if (const auto* j = std::any_cast<nlohmann::json>(&v)) return nlohmann::json{{"type", "json"}, {"value", *j}};
  return std::nullopt;
}

std::any value_from_json(const nlohmann::json& j) {
  const std::string type = j.value("type", "none");
  if (type == "string" && j.contains("value") && j["value"].is_string()) return j["value"].get<std::string>();
  if (type == "json" && j.contains("value")) return j["value"];
  return {};
}

} // namespace

struct etcd_registry::tables {
  detail::name_table<name_entry> names{64};
  detail::name_table<group_snapshot> groups{64};
  detail::name_table<std::string> meta{8};
  detail::name_table<std::string> nodes{8}; // node id (decimal) -> the endpoint it advertised
  std::atomic<std::int64_t> revision{0};
  std::uint32_t node_id = 0, creation = 0;

  bool local(const pid& p) const noexcept { return p.node_id() == node_id && p.creation() == creation; }
  /// A holder whoever asks may be given: alive if local, its node's lease
  /// vouching for it if not.
  bool live(const pid& p) const noexcept { return p && (!local(p) || alive(p)); }
};

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

/// What the watch process hands the registry's process: one revision's
/// events, or that the watch ended (a compaction passed it).
struct watch_batch {
  std::vector<etcd::event> events;
  std::int64_t revision = 0;
};
struct watch_lost {
  std::string reason;
};
/// Try the reload again (the last one could not reach etcd).
struct reload_again {};
/// Try taking a new lease again (the last try could not reach etcd).
struct renew_lease {};

/// Reads the watch and forwards what it gets, from `after` + 1 on.
awaitable<void> watch_loop(etcd::client etcd, std::string prefix, std::int64_t after, pid server) {
  etcd::watch_options o;
  o.prefix = true;
  o.start_revision = after + 1;
  etcd::watch w = co_await etcd.watch(prefix, o);
  for (;;) {
    std::vector<etcd::event> events;
    try {
      events = co_await w.next();
    } catch (const grove::error& e) {
      send(server, watch_lost{e.what()});
      co_return;
    }
    const std::int64_t revision = events.empty() ? w.revision() : events.back().kv.mod_revision;
    send(server, watch_batch{std::move(events), revision});
  }
}

constexpr const char* renewing_text = "this node's etcd lease ended and a new one is being taken; try again";

struct registry_config {
  etcd::client etcd;
  etcd_registry_options options;
  std::shared_ptr<etcd_registry::tables> tables;
};

/// Applies every change this node makes (through etcd) and every change
/// the watch brings (to the cache), one at a time; monitors owners.
class registry_server : public gen_server {
public:
  explicit registry_server(registry_config c)
      : etcd_(std::move(c.etcd)), options_(std::move(c.options)), tables_(std::move(c.tables)) {}

  awaitable<action> init() {
    if (options_.lease_ttl_seconds < 1) {
      co_return stop(exit_reason::error("etcd_registry_options.lease_ttl_seconds: " +
                                        std::to_string(options_.lease_ttl_seconds) + " (expected at least 1)"));
    }
    if (std::optional<std::string> conflict = co_await take_lease()) co_return stop(exit_reason::error(*conflict));
    co_await reload();
    co_return action{};
  }

  // -- names ----------------------------------------------------------------------

  awaitable<call_result<std::error_code>> handle_call(register_request r, from<std::error_code> f) {
    if (r.name.empty()) co_return refuse(f, errc::invalid_argument, "a registered name must not be empty");
    if (!tables_->local(r.owner)) {
      co_return refuse(f, errc::invalid_argument,
                       "cannot register '" + r.name + "' to " + r.owner.to_string() +
                           ": not a process of this registry's node");
    }
    if (!alive(r.owner)) co_return refuse(f, errc::noproc, "cannot register '" + r.name + "' to " + r.owner.to_string());
    const std::optional<name_entry> now = tables_->names.find(r.name);
    if (now && now->holder == r.owner) co_return std::error_code{}; // the holder again: a no-op
    if (lease_ == 0) co_return refuse(f, etcd::errc::lease_not_found, renewing_text);
    if (now && (!now->holder || tables_->live(now->holder))) {
      co_return refuse(f, registry_errc::already_registered, held_text(r.name, *now));
    }
    try {
      // Arguments named, not built in the co_await: g++ 12 destroys some
      // temporaries there twice.
      const std::string value = holder_value(r.owner);
      std::optional<std::string> expected;
      if (now) expected = now->raw;
      const write_outcome w = co_await put_name(r.name, value, expected);
      if (!w.written) co_return refuse(f, registry_errc::already_registered, held_text(r.name, w.current));
      book_.owner(this_process(), r.owner).names.insert(r.name);
      after(w.revision, [f] { f.reply(std::error_code{}); });
      co_return noreply;
    } catch (const grove::error& e) {
      co_return refuse(f, e.code(), e.what());
    }
  }

  awaitable<call_result<bool>> handle_call(unregister_request r, from<bool> f) {
    const std::optional<name_entry> now = tables_->names.find(r.name);
    if (!now || now->holder != r.owner) co_return false;
    try {
      const std::string key = name_key(r.name);
      const std::int64_t revision = co_await erase_if_value(key, now->raw);
      book_.release(this_process(), r.owner, &owned::names, r.name);
      if (revision == 0) co_return false;
      after(revision, [f] { f.reply(true); });
      co_return noreply;
    } catch (const grove::error& e) {
      co_return refuse(f, e.code(), e.what());
    }
  }

  // -- groups ---------------------------------------------------------------------

  awaitable<call_result<std::error_code>> handle_call(join_request r, from<std::error_code> f) {
    if (!tables_->local(r.member)) {
      co_return refuse(f, errc::invalid_argument,
                       "cannot join " + r.member.to_string() + " to '" + r.key + "': not a process of this registry's node");
    }
    if (!alive(r.member)) co_return refuse(f, errc::noproc, "cannot join " + r.member.to_string() + " to '" + r.key + "'");
    std::optional<nlohmann::json> value = value_to_json(r.value);
    if (!value) {
      co_return refuse(f, errc::invalid_argument,
                       "cannot join " + r.member.to_string() + " to '" + r.key +
                           "': an etcd_registry group value must be empty, a std::string or an nlohmann::json");
    }
    (*value)["pid"] = pid_text(r.member);
    if (lease_ == 0) co_return refuse(f, etcd::errc::lease_not_found, renewing_text);
    try {
      const std::string key = member_key(r.key, r.member);
      const std::string text = value->dump();
      const etcd::put_result put = co_await put_again_if_unknown(key, text, lease_);
      book_.owner(this_process(), r.member).groups.insert(r.key);
      my_members_[key] = text;
      after(put.revision, [f] { f.reply(std::error_code{}); });
      co_return noreply;
    } catch (const grove::error& e) {
      co_return refuse(f, e.code(), e.what());
    }
  }

  awaitable<call_result<bool>> handle_call(leave_request r, from<bool> f) {
    if (!tables_->local(r.member)) co_return false;
    try {
      const std::string key = member_key(r.key, r.member);
      const etcd::erase_result gone = co_await etcd_.erase(key);
      book_.release(this_process(), r.member, &owned::groups, r.key);
      my_members_.erase(key);
      if (gone.deleted == 0) co_return false;
      after(gone.revision, [f] { f.reply(true); });
      co_return noreply;
    } catch (const grove::error& e) {
      co_return refuse(f, e.code(), e.what());
    }
  }

  // -- watchers and metadata ----------------------------------------------------------

  call_result<std::error_code> handle_call(watch_request r, from<std::error_code> f) {
    if (!book_.watch(this_process(), r.key, r.watcher, r.on)) {
      return refuse(f, errc::noproc, "cannot watch '" + r.key + "' for " + r.watcher.to_string());
    }
    return std::error_code{};
  }

  awaitable<call_result<bool>> handle_call(meta_request r, from<bool> f) {
    try {
      const std::string key = options_.prefix + "meta/" + r.key;
      const etcd::put_result put = co_await put_again_if_unknown(key, r.value, 0);
      after(put.revision, [f] { f.reply(true); });
      co_return noreply;
    } catch (const grove::error& e) {
      co_return refuse(f, e.code(), e.what());
    }
  }

  // -- claims ---------------------------------------------------------------------

  awaitable<call_result<name_claim>> handle_call(claim_request r, from<name_claim> f) {
    if (r.name.empty()) co_return refuse(f, errc::invalid_argument, "a claimed name must not be empty");
    if (lease_ == 0) co_return refuse(f, etcd::errc::lease_not_found, renewing_text);
    try {
      co_await try_claim(r.name, f);
    } catch (const grove::error& e) {
      f.fail(e.code(), e.what());
    }
    co_return noreply;
  }

  awaitable<call_result<bool>> handle_call(settle_request r, from<bool> f) {
    auto it = claims_.find(r.name);
    if (it == claims_.end() || it->second.claimant != f.caller()) co_return false;
    if (lease_ == 0) co_return refuse(f, etcd::errc::lease_not_found, renewing_text);
    const std::string claimed = it->second.value;
    const pid claimant = it->second.claimant;
    claims_.erase(it);
    try {
      std::int64_t revision = 0;
      if (r.started && tables_->local(r.started) && alive(r.started)) {
        const std::string value = holder_value(r.started);
        const std::optional<std::string> expected = claimed;
        const write_outcome w = co_await put_name(r.name, value, expected);
        if (w.written) book_.owner(this_process(), r.started).names.insert(r.name);
        revision = w.revision;
      } else {
        const std::string key = name_key(r.name);
        revision = co_await erase_if_value(key, claimed);
      }
      if (claimant) book_.release(this_process(), claimant, &owned::claims, r.name);
      if (revision == 0) co_return true; // the claim was gone already (its key deleted meanwhile)
      after(revision, [f] { f.reply(true); });
      co_return noreply;
    } catch (const grove::error& e) {
      co_return refuse(f, e.code(), e.what());
    }
  }

  // -- what arrives as messages ---------------------------------------------------------

  awaitable<action> handle_info(message m) {
    if (auto* b = m.get_if<watch_batch>()) {
      co_await apply(b->events);
      advance(b->revision);
    } else if (auto* d = m.get_if<down_message>()) {
      co_await owner_ended(d->process);
    } else if (auto* lost = m.get_if<watch_lost>()) {
      grove::emit(event{.level = event_level::warning,
                        .layer = "registry",
                        .name = "etcd_watch_lost",
                        .fields = {{"registry", self().to_string()}, {"reason", lost->reason}}});
      co_await resync();
    } else if (m.is<reload_again>()) {
      co_await resync();
    } else if (m.is<renew_lease>()) {
      if (lease_ == 0) {
        if (std::optional<exit_reason> end = co_await recover_lease("renewal retried")) co_return stop(*end);
      }
    } else if (auto* x = m.get_if<exit_message>()) {
      if (keeper_ && x->from == keeper_.id()) {
        if (std::optional<exit_reason> end = co_await recover_lease(x->reason.to_string())) co_return stop(*end);
      }
      if (x->from == watcher_ && !x->reason.is_clean()) {
        co_await resync(); // the watch process failed: start over from a fresh load
      }
    }
    co_return action{};
  }

  /// Starts a lease keeper (linked) and writes this node's key on its
  /// lease. The text of a conflict (another live registry has this node
  /// id), or nothing.
  awaitable<std::optional<std::string>> take_lease() {
    etcd::lease_keeper_options lo;
    lo.ttl_seconds = options_.lease_ttl_seconds;
    start_options so;
    so.link = true;
    so.worker = self().worker();
    so.trap_exit = true; // a shutdown from here runs its terminate: the lease is revoked
    keeper_ = co_await start<etcd::lease_keeper>(node(), so, etcd_, lo);
    const etcd::lease l = co_await keeper_.call(etcd::held_lease{});
    // This node's key: one registry per node id on this prefix.
    const std::string node_key = options_.prefix + "nodes/" + std::to_string(tables_->node_id);
    nlohmann::json me{{"creation", tables_->creation}, {"endpoint", options_.endpoint}};
    etcd::txn_request t;
    t.when.push_back(etcd::compare::absent(node_key));
    t.then.push_back(etcd::txn_op::put(node_key, me.dump(), l.id));
    t.otherwise.push_back(etcd::txn_op::get(node_key));
    const etcd::txn_result r = co_await etcd_.txn(std::move(t));
    if (!r.succeeded) {
      std::string held = "?";
      if (const auto* g = std::get_if<etcd::get_result>(&r.responses.at(0)); g && !g->kvs.empty()) held = g->kvs[0].value;
      co_return "node id " + std::to_string(tables_->node_id) + " is already in the cluster under " + options_.prefix +
          " (" + held + "): give each node its own node_options::id";
    }
    lease_ = l.id;
    co_return std::nullopt;
  }

  /// The lease ended under a running registry (expired while etcd was
  /// away, or revoked): takes a new one and writes this node's names,
  /// memberships and claims again on it. A name another node took
  /// meanwhile is lost to it (its local holder is told nothing but the
  /// registry's warning, as the name is no longer its). Tried again
  /// after a pause while etcd cannot be reached; writes are refused until
  /// it is done. A conflict on this node's id stops the registry.
  awaitable<std::optional<exit_reason>> recover_lease(const std::string& why) {
    lease_ = 0;
    keeper_ = server_ref<etcd::lease_keeper>();
    grove::emit(event{.level = event_level::warning,
                      .layer = "registry",
                      .name = "etcd_lease_lost",
                      .fields = {{"registry", self().to_string()}, {"reason", why}}});
    try {
      if (std::optional<std::string> conflict = co_await take_lease()) co_return exit_reason::error(*conflict);
      std::vector<std::pair<pid, std::string>> names, memberships;
      book_.for_each_owner([&](const pid& p, const owned& o) {
        for (const auto& n : o.names) names.emplace_back(p, n);
        for (const auto& g : o.groups) memberships.emplace_back(p, g);
      });
      for (const auto& [holder, name] : names) {
        const std::string value = holder_value(holder);
        std::optional<std::string> expected; // absent, or still ours on the dead lease
        const write_outcome first = co_await put_name(name, value, expected);
        if (first.written) continue;
        if (first.current.holder == holder) {
          expected = first.current.raw;
          const write_outcome moved = co_await put_name(name, value, expected);
          if (moved.written) continue;
        }
        book_.release(this_process(), holder, &owned::names, name);
        grove::emit(event{.level = event_level::warning,
                          .layer = "registry",
                          .name = "etcd_name_lost",
                          .fields = {{"registry", self().to_string()}, {"name", name}, {"holder", holder.to_string()},
                                     {"now", first.current.holder.to_string()}}});
      }
      for (const auto& [member, key] : memberships) {
        const std::string k = member_key(key, member);
        auto value = my_members_.find(k);
        if (value == my_members_.end()) continue;
        (void)co_await put_again_if_unknown(k, value->second, lease_);
      }
      for (const auto& [name, c] : claims_) {
        const std::optional<std::string> expected;
        (void)co_await put_name(name, c.value, expected); // lost to another claim: its settle finds it gone
      }
      recover_delay_ = std::chrono::milliseconds(100);
    } catch (const grove::error& e) {
      lease_ = 0;
      grove::emit(event{.level = event_level::warning,
                        .layer = "registry",
                        .name = "etcd_lease_renewal_failed",
                        .fields = {{"registry", self().to_string()}, {"reason", e.what()}}});
      send_after(self(), recover_delay_, message(renew_lease{}));
      recover_delay_ = std::min<duration>(recover_delay_ * 2, std::chrono::seconds(5));
    }
    co_return std::nullopt;
  }

  awaitable<void> terminate(const exit_reason&) {
    if (keeper_ && alive(keeper_.id())) {
      // A clean stop of the keeper revokes the lease: this node's keys go now.
      const exit_reason clean = exit_reason::normal();
      try {
        (void)co_await grove::stop(keeper_, clean, std::chrono::seconds(5));
      } catch (const grove::error&) {
        // It ended meanwhile (its lease is gone, or it stopped): nothing to revoke.
      }
    }
  }

private:
  using owned = detail::registry_book::owned;
  struct my_claim {
    pid claimant;
    std::string value;
  };
  struct write_outcome {
    bool written = false;
    std::int64_t revision = 0;
    name_entry current{}; ///< when not written: who holds it
  };

  template <class R>
  call_result<R> refuse(const from<R>& f, std::error_code code, std::string text) {
    f.fail(code, std::move(text));
    return noreply;
  }

  std::string name_key(std::string_view name) const { return options_.prefix + "names/" + std::string(name); }
  std::string member_key(std::string_view key, const pid& p) const {
    return options_.prefix + "groups/" + escape_key(key) + "/" + pid_text(p);
  }
  std::string holder_value(const pid& p) const {
    return nlohmann::json{{"pid", pid_text(p)}, {"endpoint", options_.endpoint}}.dump();
  }
  std::string held_text(const std::string& name, const name_entry& e) const {
    if (!e.holder) return "'" + name + "' is being claimed";
    return "'" + name + "' is held by " + e.holder.to_string();
  }

  static name_entry parse_name(const std::string& raw) {
    name_entry e;
    e.raw = raw;
    nlohmann::json j = nlohmann::json::parse(raw, nullptr, false);
    if (j.is_object()) {
      if (j.contains("pid") && j["pid"].is_string()) e.holder = parse_pid(j["pid"].get<std::string>()).value_or(pid{});
      if (j.contains("endpoint") && j["endpoint"].is_string()) e.endpoint = j["endpoint"].get<std::string>();
    }
    return e;
  }

  /// Writes `value` under the name if the key is absent (or, with
  /// `expected`, holds exactly that). Not written: who holds it now.
  awaitable<write_outcome> put_name(const std::string& name, const std::string& value, std::optional<std::string> expected) {
    const std::string key = name_key(name);
    for (int attempt = 1;; ++attempt) {
      etcd::txn_request t;
      t.when.push_back(expected ? etcd::compare::value_is(key, *expected) : etcd::compare::absent(key));
      t.then.push_back(etcd::txn_op::put(key, value, lease_));
      t.otherwise.push_back(etcd::txn_op::get(key));
      std::optional<etcd::txn_result> r;
      try {
        r = co_await etcd_.txn(std::move(t));
      } catch (const grove::error& e) {
        if (e.code() != etcd::errc::outcome_unknown || attempt == 3) throw;
      }
      if (!r) {
        // Sent, answer lost (the member died): the value says whether it
        // landed, as no other writer writes this one (it names the holder
        // or the claim); if not, the transaction is safe to send again.
        const etcd::get_result now = co_await etcd_.get(key);
        if (!now.kvs.empty() && now.kvs[0].value == value) {
          write_outcome landed;
          landed.written = true;
          landed.revision = now.kvs[0].mod_revision;
          co_return landed;
        }
        continue;
      }
      write_outcome out;
      out.written = r->succeeded;
      out.revision = r->revision;
      if (!r->succeeded) {
        if (const auto* g = std::get_if<etcd::get_result>(&r->responses.at(0)); g && !g->kvs.empty()) {
          out.current = parse_name(g->kvs[0].value);
        }
      }
      co_return out;
    }
  }

  /// Deletes `key` if it holds `value`; the revision of the delete, or 0.
  awaitable<std::int64_t> erase_if_value(const std::string& key, const std::string& value) {
    for (int attempt = 1;; ++attempt) {
      etcd::txn_request t;
      t.when.push_back(etcd::compare::value_is(key, value));
      t.then.push_back(etcd::txn_op::erase(key));
      std::optional<etcd::txn_result> r;
      try {
        r = co_await etcd_.txn(std::move(t));
      } catch (const grove::error& e) {
        if (e.code() != etcd::errc::outcome_unknown || attempt == 3) throw;
      }
      if (r) co_return r->succeeded ? r->revision : 0;
      // Answer lost: gone (or changed) now means done; the read's revision
      // is at or after the delete's.
      const etcd::get_result now = co_await etcd_.get(key);
      if (now.kvs.empty() || now.kvs[0].value != value) co_return now.revision;
    }
  }

  /// A put that may be sent again (it writes the same key and value).
  awaitable<etcd::put_result> put_again_if_unknown(const std::string& key, const std::string& value, std::int64_t lease) {
    etcd::put_options po;
    po.lease = lease;
    for (int attempt = 1;; ++attempt) {
      try {
        co_return co_await etcd_.put(key, value, po);
      } catch (const grove::error& e) {
        if (e.code() != etcd::errc::outcome_unknown || attempt == 3) throw;
      }
    }
  }

  /// Answers `f` now or once the claim on `name` before it settles.
  awaitable<void> try_claim(const std::string& name, const from<name_claim>& f) {
    for (int round = 0; round < 3; ++round) {
      const std::optional<name_entry> now = tables_->names.find(name);
      if (now && now->holder && tables_->live(now->holder)) {
        f.reply(name_claim{false, now->holder});
        co_return;
      }
      if ((now && !now->holder) || claims_.contains(name)) {
        waiting_[name].push_back(f); // answered when that claim settles (apply)
        co_return;
      }
      const std::string value =
          nlohmann::json{{"claim", pid_text(f.caller())}, {"n", ++claim_serial_}, {"endpoint", options_.endpoint}}.dump();
      std::optional<std::string> expected;
      if (now) expected = now->raw;
      const write_outcome w = co_await put_name(name, value, expected);
      if (w.written) {
        claims_[name] = my_claim{f.caller(), value};
        if (f.caller()) book_.owner(this_process(), f.caller()).claims.insert(name);
        if (!f.reply(name_claim{true, pid{}})) co_await give_up_claim(name); // the caller left meanwhile
        co_return;
      }
      if (!w.current.holder) {
        waiting_[name].push_back(f); // another node's claim: wait for it (apply answers)
        co_return;
      }
      if (tables_->live(w.current.holder)) {
        f.reply(name_claim{false, w.current.holder});
        co_return;
      }
      // A local holder that ended, its key not deleted yet: take its place
      // (the next round compares against that value).
      tables_->names.insert_or_assign(name, w.current);
    }
    f.fail(errc::timeout, "claim of '" + name + "': the name kept changing");
  }

  awaitable<void> give_up_claim(const std::string& name) {
    auto it = claims_.find(name);
    if (it == claims_.end()) co_return;
    const my_claim c = it->second;
    claims_.erase(it);
    if (c.claimant) book_.release(this_process(), c.claimant, &owned::claims, name);
    try {
      const std::string key = name_key(name);
      (void)co_await erase_if_value(key, c.value);
    } catch (const grove::error&) {
      // The lease still ends it.
    }
  }

  awaitable<void> owner_ended(const pid& p) {
    std::optional<owned> ended = book_.ended(p);
    if (!ended) co_return;
    const owned gone = std::move(*ended);
    for (const auto& name : gone.claims) {
      if (auto c = claims_.find(name); c != claims_.end() && c->second.claimant == p) co_await give_up_claim(name);
    }
    try {
      for (const auto& name : gone.names) {
        const std::optional<name_entry> now = tables_->names.find(name);
        if (!now || now->holder != p) continue;
        const std::string key = name_key(name);
        (void)co_await erase_if_value(key, now->raw);
      }
      for (const auto& group : gone.groups) {
        const std::string key = member_key(group, p);
        my_members_.erase(key);
        (void)co_await etcd_.erase(key);
      }
    } catch (const grove::error& e) {
      // etcd unreachable: the keys stay until it answers again or the
      // lease ends; whereis() already skips the ended holder.
      grove::emit(event{.level = event_level::warning,
                        .layer = "registry",
                        .name = "etcd_cleanup_failed",
                        .fields = {{"registry", self().to_string()}, {"owner", p.to_string()}, {"reason", e.what()}}});
    }
  }

  /// Calls `then` once the cache reflects `revision`.
  void after(std::int64_t revision, std::function<void()> then) {
    if (tables_->revision.load(std::memory_order_relaxed) >= revision) {
      then();
    } else {
      waiting_revisions_.emplace(revision, std::move(then));
    }
  }

  void advance(std::int64_t revision) {
    if (revision > tables_->revision.load(std::memory_order_relaxed)) {
      tables_->revision.store(revision, std::memory_order_release);
    }
    const std::int64_t now = tables_->revision.load(std::memory_order_relaxed);
    while (!waiting_revisions_.empty() && waiting_revisions_.begin()->first <= now) {
      auto then = std::move(waiting_revisions_.begin()->second);
      waiting_revisions_.erase(waiting_revisions_.begin());
      then();
    }
  }

  // -- the cache ------------------------------------------------------------------

  awaitable<void> apply(const std::vector<etcd::event>& events) {
    for (const etcd::event& e : events) co_await apply_one(e.type == etcd::event_type::put, e.kv);
  }

  awaitable<void> apply_one(bool put, const etcd::key_value& kv) {
    if (!kv.key.starts_with(options_.prefix)) co_return;
    // What the cache holds, key by key, for a reload to diff against.
    if (put) {
      known_[kv.key] = kv.mod_revision;
    } else {
      known_.erase(kv.key);
    }
    const std::string_view rest = std::string_view(kv.key).substr(options_.prefix.size());
    if (rest.starts_with("names/")) {
      const std::string name(rest.substr(6));
      std::optional<std::string> value;
      if (put) value = kv.value;
      co_await apply_name(name, value);
    } else if (rest.starts_with("groups/")) {
      const std::string_view tail = rest.substr(7);
      const std::size_t slash = tail.rfind('/');
      if (slash == std::string_view::npos) co_return;
      const std::optional<pid> member = parse_pid(tail.substr(slash + 1));
      if (!member) co_return;
      std::optional<std::string> value;
      if (put) value = kv.value;
      apply_member(unescape_key(tail.substr(0, slash)), *member, kv.create_revision, value);
    } else if (rest.starts_with("nodes/")) {
      const std::string id(rest.substr(6));
      if (put) {
        const nlohmann::json j = nlohmann::json::parse(kv.value, nullptr, false);
        std::string endpoint;
        if (j.is_object() && j.contains("endpoint") && j["endpoint"].is_string()) endpoint = j["endpoint"].get<std::string>();
        tables_->nodes.insert_or_assign(id, std::move(endpoint));
      } else {
        tables_->nodes.erase(id);
      }
    } else if (rest.starts_with("meta/")) {
      const std::string key(rest.substr(5));
      if (put) {
        tables_->meta.insert_or_assign(key, kv.value);
      } else {
        tables_->meta.erase(key);
      }
    }
  }

  awaitable<void> apply_name(const std::string& name, std::optional<std::string> value) {
    const std::optional<name_entry> before = tables_->names.find(name);
    const pid was = before ? before->holder : pid{};
    pid is{};
    if (value) {
      name_entry e = parse_name(*value);
      is = e.holder;
      tables_->names.insert_or_assign(name, std::move(e));
    } else {
      tables_->names.erase(name);
    }
    if (was && was != is) book_.notify(name, registry_event::kind::unregistered, was);
    if (is && is != was) book_.notify(name, registry_event::kind::registered, is);
    // Claims waiting on this name: a holder answers them; a name gone
    // free lets the first claim again (the rest wait on its claim).
    auto w = waiting_.find(name);
    if (w == waiting_.end() || (value && !is)) co_return;
    std::deque<from<name_claim>> waiters = std::move(w->second);
    waiting_.erase(w);
    for (auto& f : waiters) {
      if (is) {
        f.reply(name_claim{false, is});
      } else if (!f.caller() || alive(f.caller())) {
        try {
          co_await try_claim(name, f);
        } catch (const grove::error& e) {
          f.fail(e.code(), e.what());
        }
      }
    }
  }

  void apply_member(const std::string& key, const pid& member, std::int64_t created, std::optional<std::string> value) {
    auto& list = groups_[key];
    auto same = [&](const member_record& m) { return m.member.process == member; };
    auto it = std::find_if(list.begin(), list.end(), same);
    if (value) {
      nlohmann::json j = nlohmann::json::parse(*value, nullptr, false);
      group_member m{member, j.is_object() ? value_from_json(j) : std::any{}};
      if (it != list.end()) {
        it->member = std::move(m);
      } else {
        member_record rec{std::move(m), created};
        list.insert(std::upper_bound(list.begin(), list.end(), rec,
                                     [](const member_record& a, const member_record& b) { return a.created < b.created; }),
                    std::move(rec));
      }
    } else {
      if (it == list.end()) return;
      list.erase(it);
    }
    publish_group(key);
    book_.notify(key, value ? registry_event::kind::joined : registry_event::kind::left, member);
  }

  void publish_group(const std::string& key) {
    auto it = groups_.find(key);
    if (it == groups_.end() || it->second.empty()) {
      if (it != groups_.end()) groups_.erase(it);
      tables_->groups.erase(key);
      return;
    }
    auto snapshot = std::make_shared<std::vector<group_member>>();
    for (const auto& m : it->second) snapshot->push_back(m.member);
    tables_->groups.insert_or_assign(key, group_snapshot(std::move(snapshot)));
  }

  /// reload(), and when etcd cannot be reached, again after a pause (the
  /// cache stays as it was meanwhile; writes still wait for their
  /// revision, which comes once the watch runs again).
  awaitable<void> resync() {
    try {
      co_await reload();
      resync_delay_ = std::chrono::milliseconds(100);
      co_return;
    } catch (const grove::error& e) {
      grove::emit(event{.level = event_level::warning,
                        .layer = "registry",
                        .name = "etcd_reload_failed",
                        .fields = {{"registry", self().to_string()}, {"reason", e.what()}}});
    }
    send_after(self(), resync_delay_, message(reload_again{}));
    resync_delay_ = std::min<duration>(resync_delay_ * 2, std::chrono::seconds(5));
  }

  /// Loads the whole prefix and applies the difference with the cache as
  /// events (the first load, or after the watch lost its place), then
  /// watches from there.
  awaitable<void> reload() {
    if (watcher_) {
      this_process().unlink(watcher_);
      grove::exit(watcher_, exit_reason::kill());
    }
    etcd::get_options o;
    o.prefix = true;
    const etcd::get_result all = co_await etcd_.get(options_.prefix, o);
    std::set<std::string> present;
    for (const etcd::key_value& kv : all.kvs) {
      present.insert(kv.key);
      const auto seen = known_.find(kv.key);
      if (seen == known_.end() || seen->second != kv.mod_revision) co_await apply_one(true, kv);
    }
    std::vector<std::string> vanished;
    for (const auto& [key, revision] : known_) {
      if (!present.contains(key)) vanished.push_back(key);
    }
    for (const auto& key : vanished) {
      etcd::key_value kv;
      kv.key = key;
      co_await apply_one(false, kv);
    }
    advance(all.revision);
    spawn_options so;
    so.worker = self().worker(); // a watch is used on the worker that made it
    so.link = true;
    // Not a coroutine lambda: the arguments live in watch_loop's frame.
    watcher_ = spawn(node(), [etcd = etcd_, prefix = options_.prefix, after = all.revision, server = self()](grove::process&) {
      return watch_loop(etcd, prefix, after, server);
    }, so);
  }

  grove::node& node() { return this_process().node(); }

  struct member_record {
    group_member member;
    std::int64_t created = 0;
  };

  etcd::client etcd_;
  etcd_registry_options options_;
  std::shared_ptr<etcd_registry::tables> tables_;
  server_ref<etcd::lease_keeper> keeper_;
  std::int64_t lease_ = 0;
  pid watcher_;
  detail::registry_book book_;
  std::unordered_map<std::string, my_claim> claims_;
  std::unordered_map<std::string, std::string> my_members_; // this node's member keys and what they hold                           // this node's, not settled yet
  std::unordered_map<std::string, std::deque<from<name_claim>>> waiting_;      // claims behind another claim
  std::multimap<std::int64_t, std::function<void()>> waiting_revisions_;       // replies waiting for the watch
  std::unordered_map<std::string, std::vector<member_record>> groups_;         // in join (creation) order
  std::unordered_map<std::string, std::int64_t> known_;                        // key -> mod_revision, for reloads
  std::uint64_t claim_serial_ = 0;
  duration resync_delay_ = std::chrono::milliseconds(100);
  duration recover_delay_ = std::chrono::milliseconds(100);
};

using server = server_ref<registry_server>;

} // namespace

etcd_registry::etcd_registry(grove::node& n, std::shared_ptr<tables> t, pid server)
    : registry(n), tables_(std::move(t)), server_(server) {}

awaitable<std::unique_ptr<etcd_registry>> etcd_registry::open(grove::node& n, etcd::client etcd,
                                                               etcd_registry_options options) {
  if (options.prefix.empty()) {
    throw grove::error(errc::invalid_argument, "etcd_registry_options.prefix: empty (expected a key prefix such as \"grove/\")");
  }
  auto t = std::make_shared<tables>();
  t->node_id = n.id();
  t->creation = n.creation();
  start_options so;
  so.worker = options.worker;
  so.trap_exit = true; // its lease keeper's end, and the watch process's, arrive as messages
  so.init_timeout = options.open_timeout;
  registry_config config{std::move(etcd), std::move(options), t};
  server s = co_await start<registry_server>(n, so, std::move(config));
  co_return std::unique_ptr<etcd_registry>(new etcd_registry(n, std::move(t), s.id()));
}

etcd_registry::~etcd_registry() { grove::exit(server_, exit_reason::shutdown()); }

std::int64_t etcd_registry::revision() const noexcept { return tables_->revision.load(std::memory_order_acquire); }

pid etcd_registry::whereis(std::string_view name) const {
  detail::epoch_guard pin;
  pid holder;
  tables_->names.visit(name, [&](const name_entry& e) { holder = e.holder; });
  return tables_->live(holder) ? holder : pid{};
}

std::string etcd_registry::endpoint_of(std::string_view name) const {
  std::string out;
  tables_->names.visit(name, [&](const name_entry& e) {
    if (e.holder) out = e.endpoint;
  });
  return out;
}

std::string etcd_registry::node_endpoint(std::uint32_t node_id) const {
  return tables_->nodes.find(std::to_string(node_id)).value_or(std::string());
}

std::vector<std::string> etcd_registry::names() const {
  detail::epoch_guard pin;
  std::vector<std::string> out;
  tables_->names.for_each([&](const std::string& name, const name_entry& e) {
    if (tables_->live(e.holder)) out.push_back(name);
  });
  return out;
}

std::size_t etcd_registry::count() const {
  std::size_t n = 0;
  tables_->names.for_each([&](const std::string&, const name_entry& e) { n += e.holder ? 1 : 0; });
  return n;
}

std::vector<group_member> etcd_registry::members(std::string_view key) const {
  detail::epoch_guard pin;
  std::vector<group_member> out;
  tables_->groups.visit(key, [&](const group_snapshot& g) { out = *g; });
  std::erase_if(out, [&](const group_member& m) { return !tables_->live(m.process); });
  return out;
}

void etcd_registry::for_each_member(std::string_view key, const std::function<void(const group_member&)>& f) const {
  tables_->groups.visit(key, [&](const group_snapshot& g) {
    for (const auto& m : *g) {
      if (tables_->live(m.process)) f(m);
    }
  });
}

std::optional<std::string> etcd_registry::meta(std::string_view key) const { return tables_->meta.find(key); }

awaitable<void> etcd_registry::do_register_name(std::string name, pid owner) {
  register_request request{std::move(name), owner};
  co_await server(server_).call(std::move(request), infinity);
}

awaitable<bool> etcd_registry::do_unregister_name(std::string name, pid owner) {
  unregister_request request{std::move(name), owner};
  co_return co_await server(server_).call(std::move(request), infinity);
}

awaitable<void> etcd_registry::do_join(std::string key, std::any value, pid member) {
  join_request request{std::move(key), std::move(value), member};
  co_await server(server_).call(std::move(request), infinity);
}

awaitable<bool> etcd_registry::do_leave(std::string key, pid member) {
  leave_request request{std::move(key), member};
  co_return co_await server(server_).call(std::move(request), infinity);
}

awaitable<void> etcd_registry::do_watch(std::string key, pid watcher) {
  watch_request request{std::move(key), watcher, true};
  co_await server(server_).call(std::move(request));
}

awaitable<void> etcd_registry::do_unwatch(std::string key, pid watcher) {
  watch_request request{std::move(key), watcher, false};
  co_await server(server_).call(std::move(request));
}

awaitable<void> etcd_registry::put_meta(std::string key, std::string value) {
  meta_request request{std::move(key), std::move(value)};
  co_await server(server_).call(std::move(request), infinity);
}

awaitable<name_claim> etcd_registry::claim(std::string name) {
  claim_request request{std::move(name)};
  co_return co_await server(server_).call(std::move(request), infinity);
}

awaitable<void> etcd_registry::settle_claim(std::string name, pid started) {
  settle_request request{std::move(name), started};
  co_await server(server_).call(std::move(request), infinity);
}

} // namespace grove
