#include "service.hpp"

#include "cluster.hpp"

#include <random>

#include <grove/core/process.hpp>
#include <grove/remote_term/remote_term.hpp>
#include <grove/tenant/manager.hpp>

#include <algorithm>
#include <functional>
#include <limits>

namespace groved {

json error_reply(std::string_view code, std::string message) {
  json e = json::object();
  e["code"] = std::string(code);
  e["message"] = std::move(message);
  json r = json::object();
  r["ok"] = false;
  r["error"] = std::move(e);
  return r;
}

json error_reply(const bad_request& e) {
  json r = error_reply(e.code, e.message);
  for (auto it = e.detail.begin(); it != e.detail.end(); ++it) r["error"][it.key()] = it.value();
  return r;
}

namespace {

json ok() {
  json r = json::object();
  r["ok"] = true;
  return r;
}

const std::string& required_string(const json& request, const char* field, std::size_t max_bytes) {
  auto it = request.find(field);
  if (it == request.end() || !it->is_string() || it->get_ref<const std::string&>().empty() ||
      it->get_ref<const std::string&>().size() > max_bytes) {
    throw bad_request{"bad_request", std::string(field) + ": expected a non-empty string of at most " +
                                         std::to_string(max_bytes) + " bytes"};
  }
  return it->get_ref<const std::string&>();
}

constexpr const char* known_ops =
    "ping, where, get, put, delete, incr, keys, subscribe, unsubscribe, stats, tenant.install, tenant.update, tenant.uninstall, "
    "tenant.get, tenant.list";

} // namespace

// --- store -------------------------------------------------------------------

store::store(std::string t, const tenant_limits& limits, std::string path)
    : tenant(std::move(t)), shards(limits.shards == 0 ? 1 : limits.shards), data_path(std::move(path)),
      max_keys(limits.max_keys), max_key_bytes(limits.max_key_bytes), max_subscriptions(limits.max_subscriptions),
      initial_(shards) {
  for (std::size_t i = 0; i < shards; ++i) shard_names_.push_back("groved.shard." + tenant + "/" + std::to_string(i));
}

void store::set_limits(const tenant_limits& l) noexcept {
  max_keys.store(l.max_keys, std::memory_order_relaxed);
  max_key_bytes.store(l.max_key_bytes, std::memory_order_relaxed);
  max_subscriptions.store(l.max_subscriptions, std::memory_order_relaxed);
}

std::size_t store::shard_of(std::string_view key) const noexcept { return std::hash<std::string_view>{}(key) % shards; }

std::string store::topic_group(std::string_view topic) const {
  std::string g = "groved.topic.";
  g += tenant;
  g += '/';
  g += topic;
  return g;
}

void store::set_initial(json data) {
  std::vector<json> parts(shards, json::object());
  for (auto it = data.begin(); it != data.end(); ++it) parts[shard_of(it.key())][it.key()] = std::move(it.value());
  std::lock_guard lock(mutex_);
  for (std::size_t i = 0; i < shards; ++i) initial_[i] = std::move(parts[i]);
}

std::optional<json> store::take_initial(std::size_t index) {
  std::lock_guard lock(mutex_);
  std::optional<json> part = std::move(initial_[index]);
  initial_[index].reset();
  return part;
}

// --- service_state ----------------------------------------------------------

service_state::service_state(grove::registry& r, const config& c, logger l, std::size_t default_shards)
    : registry(&r), defaults{c.max_keys, c.max_key_bytes, c.max_subscriptions, default_shards},
      max_reply_bytes(c.max_payload / 2), chaos_ops(c.debug_chaos_ops), log(l), data_path(c.data_path),
      max_depth(c.max_depth), durability(c.durability), durability_interval(c.durability_interval),
      default_tenant(c.default_tenant), max_tenants(c.max_tenants),
      cluster(c.cluster_etcd.empty() ? nullptr : std::make_shared<cluster_view>(c)) {}

std::string service_state::store_path(const std::string& tenant) const {
  if (data_path.empty()) return {};
  if (tenant == default_tenant) return data_path;
  return data_path + ".tenants/" + tenant + ".json";
}

std::string service_state::tenants_file() const { return data_path.empty() ? std::string() : data_path + ".tenants.db"; }

std::shared_ptr<store> service_state::find_store(std::string_view tenant) const {
  std::lock_guard lock(mutex_);
  auto it = stores_.find(tenant);
  return it == stores_.end() ? nullptr : it->second;
}

void service_state::add_store(std::shared_ptr<store> s) {
  std::lock_guard lock(mutex_);
  // The tenant's clients' subscriptions outlive its stores: count on in the
  // counter its earlier stores used.
  auto& count = subscription_counts_[s->tenant];
  if (count) {
    s->subscriptions = count;
  } else {
    count = s->subscriptions;
  }
  std::shared_ptr<store>& slot = stores_[s->tenant];
  // Left by a tenant process that was killed: sessions holding it look again.
  if (slot) slot->open.store(false, std::memory_order_release);
  slot = std::move(s);
}

void service_state::remove_store(const std::shared_ptr<store>& s) {
  s->open.store(false, std::memory_order_release);
  std::lock_guard lock(mutex_);
  auto it = stores_.find(s->tenant);
  if (it != stores_.end() && it->second == s) stores_.erase(it);
}

std::vector<std::shared_ptr<store>> service_state::stores() const {
  std::lock_guard lock(mutex_);
  std::vector<std::shared_ptr<store>> out;
  for (const auto& [id, s] : stores_) out.push_back(s);
  return out;
}

std::int64_t service_state::total_keys() const {
  std::lock_guard lock(mutex_);
  std::int64_t n = 0;
  for (const auto& [id, s] : stores_) n += s->keys.load(std::memory_order_relaxed);
  return n;
}

void service_state::set_daemon(std::size_t slot, grove::erps::daemon d) {
  std::lock_guard lock(mutex_);
  daemons_[slot] = std::move(d);
}

std::vector<grove::erps::daemon> service_state::daemons() const {
  std::lock_guard lock(mutex_);
  return daemons_;
}

// --- shard ------------------------------------------------------------------

shard::shard(std::shared_ptr<service_state> state, std::shared_ptr<store> st, std::size_t index)
    : state_(std::move(state)), store_(std::move(st)), index_(index) {}

void shard::load(json part) {
  data_.reserve(part.size());
  for (auto it = part.begin(); it != part.end(); ++it) data_.emplace(it.key(), std::move(it.value()));
}

grove::awaitable<grove::action> shard::init() {
  this_process().set_label("groved store " + store_->tenant + " shard " + std::to_string(index_));
  if (std::optional<json> part = store_->take_initial(index_)) {
    load(std::move(*part)); // the loaded keys were counted when the store was read
    co_return grove::action{};
  }
  if (!store_->wal) {
    state_->log.log(log_level::warning, "shard_started_empty",
                    {{"tenant", store_->tenant},
                     {"shard", index_},
                     {"msg", "a store shard restarted after a failure; the keys it held are lost"}});
    co_return grove::action{};
  }
  // Restarted after a crash: the disk holds every write it acknowledged.
  // What its last incarnation queued is written first, so nothing it logged
  // is missed (and a failure of those writes, reported to the dead
  // incarnation, is cleared after); other shards keep appending, so a
  // cut-short record at the end of the newest file is theirs and ends the
  // reading.
  store_->wal->flush();
  store_->wal->reset(index_);
  std::function<bool(std::string_view)> mine = [this](std::string_view key) { return store_->shard_of(key) == index_; };
  recovered_store r;
  if (store_->data) {
    r = co_await store_->data->recover(state_->max_depth, mine);
  } else {
    r = recover_store(store_->data_path, state_->max_depth, true, mine);
  }
  const std::size_t count = r.data.size();
  load(std::move(r.data));
  store_->keys.fetch_add(static_cast<std::int64_t>(count), std::memory_order_relaxed);
  state_->log.log(log_level::warning, "shard_recovered",
                  {{"tenant", store_->tenant},
                   {"shard", index_},
                   {"keys", count},
                   {"records", r.replay.records},
                   {"msg", "a store shard restarted after a failure and read its keys back from the snapshot and the log"}});
  co_return grove::action{};
}

void shard::terminate(const grove::exit_reason&) {
  // Waiting callers learn that their call got no reply (their from handles go).
  store_->keys.fetch_sub(static_cast<std::int64_t>(data_.size()), std::memory_order_relaxed);
}

void shard::handle_cast(store_op op) {
  json result;
  std::optional<change> changed;
  push_list pushes;
  try {
    result = apply(op, changed, pushes);
  } catch (const bad_request& e) {
    result = error_reply(e.code, e.message);
  }
  waiting w;
  w.reply = std::move(op.reply);
  w.result = std::move(result);
  w.pushes = std::move(pushes);
  if (!w.reply) w.cast_key = op.key;
  if (changed && store_->wal) {
    w.lsn = store_->wal->append(index_, this_process().self(), changed->key, changed->now);
    if (w.lsn == 0) {
      // The log refuses this shard's writes: as if the write never happened.
      restore(*changed);
      w.pushes.clear();
      w.result = error_reply("storage_error", "the write was not stored: " + store_->wal->error(index_));
    } else if (store_->wal->mode() != durability::none) {
      w.undo = std::move(changed);
      waiting_.push_back(std::move(w));
      return;
    }
  }
  if (!waiting_.empty()) {
    waiting_.push_back(std::move(w)); // behind the writes it may have seen
    return;
  }
  finish(w);
}

void shard::finish(waiting& w) {
  for (auto& [to, event] : w.pushes) {
    grove::send(to, topic_event{std::move(event)});
    state_->pushes.fetch_add(1, std::memory_order_relaxed);
  }
  if (w.keys_reply) {
    w.keys_reply.reply(std::move(w.keys));
    return;
  }
  if (w.reply) {
    w.reply.reply(std::move(w.result));
  } else if (!w.result.value("ok", false)) {
    // A cast has nobody to answer; say what went wrong in the log.
    state_->errors.fetch_add(1, std::memory_order_relaxed);
    state_->log.log(log_level::warning, "cast_failed",
                    {{"tenant", store_->tenant}, {"key", w.cast_key}, {"msg", w.result["error"]["message"].get<std::string>()}});
  }
}

void shard::restore(change& c) {
  auto it = data_.find(c.key);
  if (c.previous) {
    if (it == data_.end()) {
      data_.emplace(c.key, std::move(*c.previous));
      store_->keys.fetch_add(1, std::memory_order_relaxed);
    } else {
      it->second = std::move(*c.previous);
    }
  } else if (it != data_.end()) {
    data_.erase(it);
    store_->keys.fetch_sub(1, std::memory_order_relaxed);
  }
}

void shard::fail_waiting(const std::string& why) {
  for (auto it = waiting_.rbegin(); it != waiting_.rend(); ++it) {
    if (it->undo) restore(*it->undo);
  }
  const std::string message = "the write was not stored: " + why;
  state_->log.log(log_level::error, "writes_refused",
                  {{"tenant", store_->tenant}, {"shard", index_}, {"waiting", waiting_.size()}, {"msg", "undone and answered with storage_error: " + why}});
  for (auto& w : waiting_) {
    w.pushes.clear();
    if (w.keys_reply) {
      // A listing that may have shown an undone key: the caller gets no reply and an error.
      w.keys_reply = {};
      continue;
    }
    w.result = error_reply("storage_error", w.undo ? message : "an earlier write failed to be stored: " + why);
    finish(w);
  }
  waiting_.clear();
  store_->wal->reset(index_);
}

void shard::handle_info(grove::message m) {
  auto* done = m.get_if<wal_done>();
  if (!done) return;
  if (!done->error.empty()) {
    fail_waiting(done->error);
    return;
  }
  while (!waiting_.empty() && waiting_.front().lsn <= done->upto) {
    waiting w = std::move(waiting_.front());
    waiting_.pop_front();
    finish(w);
  }
}

json shard::apply(store_op& op, std::optional<change>& changed, push_list& pushes) {
  switch (op.what) {
    case store_op::kind::get: {
      auto it = data_.find(op.key);
      if (it == data_.end()) throw bad_request{"not_found", "no key '" + op.key + "'"};
      json r = ok();
      r["value"] = it->second;
      return r;
    }
    case store_op::kind::put: {
      auto it = data_.find(op.key);
      const bool created = it == data_.end();
      std::optional<json> previous;
      if (created) {
        if (store_->keys.fetch_add(1, std::memory_order_relaxed) >= static_cast<std::int64_t>(store_->max_keys.load(std::memory_order_relaxed))) {
          store_->keys.fetch_sub(1, std::memory_order_relaxed);
          throw bad_request{"store_full", "the store holds max_keys (" + std::to_string(store_->max_keys.load(std::memory_order_relaxed)) +
                                              ") keys; delete some first"};
        }
        it = data_.emplace(op.key, std::move(op.value)).first;
      } else {
        previous = std::move(it->second);
        it->second = std::move(op.value);
      }
      changed = change{op.key, std::move(previous), &it->second};
      publish(op.key, "put", &it->second, pushes);
      json r = ok();
      r["created"] = created;
      return r;
    }
    case store_op::kind::erase: {
      auto it = data_.find(op.key);
      const bool deleted = it != data_.end();
      if (deleted) {
        changed = change{op.key, std::move(it->second), nullptr};
        data_.erase(it);
        store_->keys.fetch_sub(1, std::memory_order_relaxed);
        publish(op.key, "delete", nullptr, pushes);
      }
      json r = ok();
      r["deleted"] = deleted;
      return r;
    }
    case store_op::kind::incr: {
      auto it = data_.find(op.key);
      std::int64_t now = 0;
      if (it != data_.end()) {
        if (!it->second.is_number_integer()) {
          throw bad_request{"wrong_type", "key '" + op.key + "' holds " + std::string(it->second.type_name()) +
                                              ", not an integer"};
        }
        const std::int64_t before = it->second.is_number_unsigned()
                                        ? static_cast<std::int64_t>(std::min<std::uint64_t>(
                                              it->second.get<std::uint64_t>(),
                                              static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())))
                                        : it->second.get<std::int64_t>();
        if (__builtin_add_overflow(before, op.by, &now)) {
          throw bad_request{"overflow", "incr of key '" + op.key + "' by " + std::to_string(op.by) +
                                            " leaves the 64-bit signed range"};
        }
        changed = change{op.key, std::move(it->second), nullptr};
        it->second = now;
      } else {
        if (store_->keys.fetch_add(1, std::memory_order_relaxed) >= static_cast<std::int64_t>(store_->max_keys.load(std::memory_order_relaxed))) {
          store_->keys.fetch_sub(1, std::memory_order_relaxed);
          throw bad_request{"store_full", "the store holds max_keys (" + std::to_string(store_->max_keys.load(std::memory_order_relaxed)) +
                                              ") keys; delete some first"};
        }
        now = op.by;
        it = data_.emplace(op.key, json(now)).first;
        changed = change{op.key, std::nullopt, nullptr};
      }
      changed->now = &it->second;
      publish(op.key, "incr", &it->second, pushes);
      json r = ok();
      r["value"] = now;
      return r;
    }
  }
  throw bad_request{"bad_request", "unknown store operation"};
}

// Key "a/b/c" is under topics "a", "a/b" and "a/b/c". The pushes are built
// now (the value as it is) and sent when the write is stored.
void shard::publish(const std::string& key, const char* event, const json* value, push_list& out) {
  std::string group;
  for (std::size_t end = 0;; ++end) {
    end = key.find('/', end);
    const std::string_view topic = std::string_view(key).substr(0, end == std::string::npos ? key.size() : end);
    if (!topic.empty()) {
      group = store_->topic_group(topic);
      // Built once per topic, on its first subscriber, and shared by all of them.
      std::shared_ptr<const json> built;
      state_->registry->for_each_member(group, [&](const grove::group_member& member) {
        if (!built) {
          json e = json::object();
          e["topic"] = std::string(topic);
          e["event"] = event;
          e["key"] = key;
          if (value) e["value"] = *value;
          built = std::make_shared<const json>(std::move(e));
        }
        out.emplace_back(member.process, built);
      });
    }
    if (end == std::string::npos) break;
  }
}

grove::call_result<std::vector<std::string>> shard::handle_call(keys_request r,
                                                                 grove::from<std::vector<std::string>> reply) {
  std::vector<std::string> out;
  for (const auto& [key, value] : data_) {
    if (key.compare(0, r.prefix.size(), r.prefix) == 0) out.push_back(key);
  }
  std::sort(out.begin(), out.end());
  if (out.size() > r.limit) out.resize(r.limit);
  if (waiting_.empty()) return out;
  waiting w;
  w.keys_reply = std::move(reply);
  w.keys = std::move(out);
  waiting_.push_back(std::move(w));
  return grove::noreply;
}

grove::call_result<json> shard::handle_call(dump_request, grove::from<json> reply) {
  json data = json::object();
  for (const auto& [key, value] : data_) data[key] = value;
  json out = json::object();
  out["data"] = std::move(data);
  if (waiting_.empty()) return out;
  waiting w;
  w.reply = std::move(reply);
  w.result = std::move(out);
  waiting_.push_back(std::move(w));
  return grove::noreply;
}

// --- session ----------------------------------------------------------------

session::session(std::shared_ptr<service_state> state, bool tls) : state_(std::move(state)), tls_(tls) {}

// The certificate's alternative names, then its subject (access.hpp); read
// once the TLS handshake is over, which a request proves.
void session::identify() {
  if (!identities_.empty()) return;
  identities_ = peer_alt_names();
  if (const std::string subject = peer_subject(); !subject.empty()) identities_.push_back("subject:" + subject);
  if (identities_.empty()) identities_.push_back(tls_ ? "anonymous" : "tcp");
}

void session::refuse(std::string code, std::string why) {
  if (!refused_) {
    state_->log.log(log_level::warning, "access_refused",
                    {{"peer", peer()}, {"identities", identities_}, {"msg", why + "; closing"}});
  }
  refused_ = true;
  throw bad_request{std::move(code), std::move(why)};
}

std::string session::identity_list() const {
  std::string names;
  for (const auto& id : identities_) names += (names.empty() ? "" : ", ") + id;
  return names;
}

// On every request: one lock-free read of the policy and one lookup per
// identity; nothing is copied unless the client is refused.
void session::check_access(std::string_view op) {
  if (!state_->access) {
    role_ = role::admin;
    if (tenant_.empty()) tenant_ = state_->default_tenant;
    return;
  }
  identify();
  const auto policy = state_->access->get(); // holds what m points into
  std::optional<access_match> m = policy ? match(*policy, identities_) : std::nullopt;
  if (!m) refuse("forbidden", "this client (" + identity_list() + ") is not in groved's access policy");
  role_ = m->granted;
  const std::string_view tenant = m->tenant.empty() ? std::string_view(state_->default_tenant) : m->tenant;
  if (tenant_.empty()) {
    tenant_ = tenant;
  } else if (tenant != tenant_) {
    refuse("forbidden", "the access policy moved " + std::string(m->identity) + " from tenant '" + tenant_ + "' to '" +
                            std::string(tenant) + "'; connect again");
  }
  if (const role needed = required_role(op); m->granted < needed) {
    throw bad_request{"forbidden", "op '" + std::string(op) + "' needs role " + std::string(to_string(needed)) + "; " +
                                       std::string(m->identity) + " has role " + std::string(to_string(m->granted))};
  }
}

store& session::tenant_store() {
  if (store_ && store_->open.load(std::memory_order_acquire)) return *store_;
  store_ = state_->find_store(tenant_);
  if (store_) return *store_;
  if (state_->cluster) {
    if (std::optional<std::string> node = state_->cluster->placed_on(tenant_); node && *node != state_->cluster->node()) {
      // Served by another node: this client is sent there, and closed here
      // after the reply (its identity keeps it in this tenant).
      bad_request m = moved(*state_->cluster, tenant_, *node);
      moved_to_ = *node;
      throw m;
    }
  }
  std::optional<grove::tenant_record> record;
  if (state_->tenants) record = state_->tenants->fetch(tenant_);
  if (!record && state_->cluster && state_->cluster->placed_on(tenant_) == state_->cluster->node()) {
    // Placed here, its record not yet: a takeover from a node that died is under way.
    throw bad_request{"unavailable", "tenant '" + tenant_ + "' is being taken over by this node; try again shortly"};
  }
  if (!record) {
    identify();
    refuse("no_tenant", "tenant '" + tenant_ + "' (of " + identity_list() + ") is not installed");
  }
  std::string why = "tenant '" + tenant_ + "' is not running (" + std::string(grove::to_string(record->state));
  if (!record->last_error.empty()) why += ": " + record->last_error;
  throw bad_request{"unavailable", why + "); try again later"};
}

grove::awaitable<void> notify_sessions(std::shared_ptr<service_state> state) {
  for (const auto& d : state->daemons()) {
    if (!d) continue;
    for (const auto& child : co_await d.supervisor().which_children(std::chrono::seconds(5))) {
      if (child.process) grove::send(child.process, policy_changed{});
    }
  }
}

grove::awaitable<grove::call_result<json>> session::handle_call(grove::erps::call c, grove::from<json> reply) {
  state_->calls.fetch_add(1, std::memory_order_relaxed);
  bool forwarded = false;
  json result = co_await serve(c.request, reply, forwarded);
  if (forwarded) co_return grove::call_result<json>(grove::noreply);
  if (!result.value("ok", false)) state_->errors.fetch_add(1, std::memory_order_relaxed);
  if (refused_) close_connection("refused by the access policy"); // after this reply
  // Its tenant is another node's: closed after the reply that says where.
  // (A cast it sent before was dropped, and the connection kept, so that
  // this call could say so.)
  if (!moved_to_.empty()) close_connection("its tenant is served by node '" + moved_to_ + "'");
  co_return grove::call_result<json>(std::move(result));
}

grove::awaitable<void> session::handle_cast(grove::erps::cast c) {
  state_->casts.fetch_add(1, std::memory_order_relaxed);
  bool forwarded = false;
  json result = co_await serve(c.request, grove::from<json>{}, forwarded);
  if (!forwarded && !result.value("ok", false)) {
    state_->errors.fetch_add(1, std::memory_order_relaxed);
    state_->log.log(log_level::warning, "cast_failed",
                    {{"peer", peer()}, {"msg", result["error"]["message"].get<std::string>()}});
  }
  if (refused_) close_connection("refused by the access policy");
}

void session::handle_info(grove::message m) {
  if (auto* e = m.get_if<topic_event>()) {
    push(*e->value);
    return;
  }
  if (!m.get_if<policy_changed>() || refused_) return;
  // Its tenant was uninstalled: nothing is left to serve this client.
  if (!tenant_.empty() && state_->tenants && !state_->tenants->fetch(tenant_)) {
    refused_ = true;
    state_->log.log(log_level::warning, "tenant_gone",
                    {{"peer", peer()}, {"tenant", tenant_}, {"msg", "the client's tenant was uninstalled; closing"}});
    close_connection("its tenant was uninstalled");
    return;
  }
  if (!state_->access) return;
  // A TLS client still in its handshake is checked at its first request.
  if (identities_.empty() && tls_ && peer_subject().empty()) return;
  identify();
  const auto policy = state_->access->get();
  if (!policy) return;
  const std::optional<access_match> now = match(*policy, identities_);
  const bool moved =
      now && !tenant_.empty() && (now->tenant.empty() ? std::string_view(state_->default_tenant) : now->tenant) != tenant_;
  if (!now || moved) {
    refused_ = true;
    state_->log.log(log_level::warning, "access_revoked",
                    {{"peer", peer()},
                     {"identities", identities_},
                     {"msg", now ? "its tenant changed in the access policy; closing" : "no longer in the access policy; closing"}});
    close_connection(now ? "its tenant changed in the access policy" : "no longer in the access policy");
  }
}

void session::terminate(const grove::exit_reason&) {
  // The registry drops this process's group memberships when it ends.
  state_->subscriptions.fetch_sub(static_cast<std::int64_t>(topics_.size()), std::memory_order_relaxed);
  if (store_) store_->subscriptions->fetch_sub(static_cast<std::int64_t>(topics_.size()), std::memory_order_relaxed);
  topics_.clear();
}

grove::awaitable<json> session::serve(json& request, const grove::from<json>& reply, bool& forwarded) {
  try {
    // Who the client is, and whether its role may run the op, in one check
    // before anything else (a client the policy does not name is refused
    // whatever it sent; a request without an op needs the least role).
    const auto op_it = request.find("op"); // end() for anything but an object
    const bool has_op = op_it != request.end() && op_it->is_string();
    check_access(has_op ? std::string_view(op_it->get_ref<const std::string&>()) : std::string_view("ping"));
    if (!request.is_object()) throw bad_request{"bad_request", "a request is a JSON object with an \"op\""};
    if (!has_op) throw bad_request{"bad_request", "op: expected a string, one of " + std::string(known_ops)};
    const std::string& op = op_it->get_ref<const std::string&>();
    std::optional<store_op::kind> kind;
    if (op == "get") kind = store_op::kind::get;
    else if (op == "put") kind = store_op::kind::put;
    else if (op == "delete") kind = store_op::kind::erase;
    else if (op == "incr") kind = store_op::kind::incr;
    if (kind) {
      store& st = tenant_store();
      std::string key = required_string(request, "key", st.max_key_bytes.load(std::memory_order_relaxed));
      json value;
      std::int64_t by = 1;
      if (*kind == store_op::kind::put) {
        auto v = request.find("value");
        if (v == request.end()) throw bad_request{"bad_request", "value: required for put (any JSON value)"};
        value = std::move(*v);
      } else if (*kind == store_op::kind::incr) {
        if (auto b = request.find("by"); b != request.end()) {
          if (!b->is_number_integer() ||
              (b->is_number_unsigned() &&
               b->get<std::uint64_t>() > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))) {
            throw bad_request{"bad_request", "by: expected a 64-bit signed integer"};
          }
          by = b->get<std::int64_t>();
        }
      }
      const std::size_t index = st.shard_of(key);
      grove::pid target = state_->registry->whereis(st.shard_name(index));
      if (!target) throw bad_request{"unavailable", "the store shard for this key is restarting; try again"};
      grove::server_ref<shard>(target).cast(store_op(*kind, std::move(key), std::move(value), by, reply));
      forwarded = true;
      co_return json();
    }
    if (op == "ping") {
      json r = ok();
      r["pong"] = true;
      if (auto d = request.find("data"); d != request.end()) r["data"] = std::move(*d);
      co_return r;
    }
    if (op == "where") {
      // Which node serves this client's tenant: this one, or `moved` naming it.
      const store& st = tenant_store();
      json r = ok();
      r["tenant"] = st.tenant;
      if (state_->cluster) r["node"] = state_->cluster->node();
      co_return r;
    }
    if (op == "keys") co_return co_await keys(request);
    if (op == "subscribe") co_return co_await subscribe(request, true);
    if (op == "unsubscribe") co_return co_await subscribe(request, false);
    if (op == "stats") co_return stats();
    if (op.rfind("tenant.", 0) == 0) co_return co_await tenant_admin(op, request);
    if (op == "debug.kill_sessions") co_return co_await kill_sessions(request);
    if (op == "debug.kill_shard") co_return kill_shard(request);
    throw bad_request{"unknown_op", "unknown op '" + op + "'; expected one of " + std::string(known_ops)};
  } catch (const bad_request& e) {
    co_return error_reply(e);
  } catch (const grove::error& e) {
    // A shard or the registry did not answer (restarting, or the node is stopping).
    co_return error_reply("unavailable", std::string("the store did not answer: ") + e.what());
  }
}

// For chaos tests: kills `count` other sessions picked at random among
// every listener's, as a crash would. Off unless
// debug.chaos_ops is set.
grove::awaitable<json> session::kill_sessions(const json& request) {
  if (!state_->chaos_ops) {
    throw bad_request{"unknown_op", "debug.kill_sessions is off; start groved with --debug.chaos_ops=true (tests only)"};
  }
  std::size_t count = 1;
  if (auto c = request.find("count"); c != request.end()) {
    if (!c->is_number_unsigned() || c->get<std::uint64_t>() > 100'000) {
      throw bad_request{"bad_request", "count: expected an integer from 0 to 100000"};
    }
    count = c->get<std::size_t>();
  }
  std::vector<grove::pid> sessions;
  for (const auto& d : state_->daemons()) {
    if (!d) continue;
    for (const auto& child : co_await d.supervisor().which_children(std::chrono::seconds(5))) {
      if (child.process && child.process != self()) sessions.push_back(child.process);
    }
  }
  std::shuffle(sessions.begin(), sessions.end(), std::mt19937_64(std::random_device{}()));
  sessions.resize(std::min(count, sessions.size()));
  for (const auto& p : sessions) grove::exit(p, grove::exit_reason::kill());
  state_->log.log(log_level::warning, "sessions_killed", {{"count", sessions.size()}, {"msg", "debug.kill_sessions"}});
  json r = ok();
  r["killed"] = sessions.size();
  co_return r;
}

// For chaos tests: kills one shard of the client's tenant's store, as a
// crash would; its supervisor restarts it and it reads its keys back from
// the disk.
json session::kill_shard(const json& request) {
  if (!state_->chaos_ops) {
    throw bad_request{"unknown_op", "debug.kill_shard is off; start groved with --debug.chaos_ops=true (tests only)"};
  }
  store& st = tenant_store();
  auto s = request.find("shard");
  if (s == request.end() || !s->is_number_unsigned() || s->get<std::uint64_t>() >= st.shards) {
    throw bad_request{"bad_request", "shard: expected an integer from 0 to " + std::to_string(st.shards - 1)};
  }
  const std::size_t index = s->get<std::size_t>();
  const grove::pid target = state_->registry->whereis(st.shard_name(index));
  if (!target) throw bad_request{"unavailable", "shard " + std::to_string(index) + " is restarting"};
  grove::exit(target, grove::exit_reason::kill());
  state_->log.log(log_level::warning, "shard_killed", {{"tenant", st.tenant}, {"shard", index}, {"msg", "debug.kill_shard"}});
  json r = ok();
  r["killed"] = index;
  return r;
}

grove::awaitable<json> session::keys(const json& request) {
  std::shared_ptr<store> st = tenant_store().shared_from_this();
  const std::size_t max_key_bytes = st->max_key_bytes.load(std::memory_order_relaxed);
  std::string prefix;
  if (auto p = request.find("prefix"); p != request.end()) {
    if (!p->is_string() || p->get_ref<const std::string&>().size() > max_key_bytes) {
      throw bad_request{"bad_request", "prefix: expected a string of at most " + std::to_string(max_key_bytes) + " bytes"};
    }
    prefix = p->get<std::string>();
  }
  std::size_t limit = 1000;
  if (auto l = request.find("limit"); l != request.end()) {
    if (!l->is_number_unsigned() || l->get<std::uint64_t>() < 1 || l->get<std::uint64_t>() > 100'000) {
      throw bad_request{"bad_request", "limit: expected an integer from 1 to 100000"};
    }
    limit = l->get<std::size_t>();
  }
  std::vector<std::string> all;
  for (std::size_t i = 0; i < st->shards; ++i) {
    grove::pid target = state_->registry->whereis(st->shard_name(i));
    if (!target) throw bad_request{"unavailable", "a store shard is restarting; try again"};
    // One more than asked, to tell whether the answer is cut short.
    keys_request r(prefix, limit + 1);
    std::vector<std::string> part = co_await grove::server_ref<shard>(target).call(std::move(r));
    all.insert(all.end(), std::make_move_iterator(part.begin()), std::make_move_iterator(part.end()));
  }
  std::sort(all.begin(), all.end());
  bool truncated = all.size() > limit;
  if (truncated) all.resize(limit);
  // The reply must fit in a frame the client accepts (max_payload): cut it
  // short by bytes as well as by count.
  std::size_t bytes = 64;
  for (std::size_t i = 0; i < all.size(); ++i) {
    bytes += all[i].size() + 8; // quotes, comma, and room for escapes
    if (bytes > state_->max_reply_bytes) {
      all.resize(i);
      truncated = true;
      break;
    }
  }
  json r = ok();
  r["keys"] = std::move(all);
  r["truncated"] = truncated;
  co_return r;
}

grove::awaitable<json> session::subscribe(const json& request, bool on) {
  std::shared_ptr<store> st = tenant_store().shared_from_this();
  const std::string topic = required_string(request, "topic", st->max_key_bytes.load(std::memory_order_relaxed));
  json r = ok();
  r["topic"] = topic;
  if (on) {
    if (!topics_.contains(topic)) {
      const std::size_t most = st->max_subscriptions.load(std::memory_order_relaxed);
      if (topics_.size() >= most) {
        throw bad_request{"too_many_subscriptions",
                          "this connection already has max_subscriptions (" + std::to_string(most) + ") topics"};
      }
      co_await state_->registry->join(st->topic_group(topic));
      topics_.insert(topic);
      state_->subscriptions.fetch_add(1, std::memory_order_relaxed);
      st->subscriptions->fetch_add(1, std::memory_order_relaxed);
    }
  } else {
    const bool was = topics_.erase(topic) > 0;
    if (was) {
      state_->subscriptions.fetch_sub(1, std::memory_order_relaxed);
      st->subscriptions->fetch_sub(1, std::memory_order_relaxed);
      co_await state_->registry->leave(st->topic_group(topic));
    }
    r["was_subscribed"] = was;
  }
  co_return r;
}

namespace {
json wal_stats(const store& st) {
  const auto w = st.wal->stats();
  return {{"durability", std::string(to_string(st.wal->mode()))},
          {"generation", st.wal->generation()},
          {"records", w.records},
          {"bytes", w.bytes},
          {"syncs", w.syncs},
          {"failures", w.failures},
          {"stalls", w.stalls}};
}
} // namespace

// The client's tenant's figures; an admin also sees the daemon's.
json session::stats() {
  store& st = tenant_store();
  json r = ok();
  r["tenant"] = st.tenant;
  r["keys"] = st.keys.load(std::memory_order_relaxed);
  r["shards"] = st.shards;
  r["subscriptions"] = st.subscriptions->load(std::memory_order_relaxed);
  r["limits"] = {{"max_keys", st.max_keys.load(std::memory_order_relaxed)},
                 {"max_key_bytes", st.max_key_bytes.load(std::memory_order_relaxed)},
                 {"max_subscriptions", st.max_subscriptions.load(std::memory_order_relaxed)}};
  if (st.wal) r["wal"] = wal_stats(st);
  r["uptime_ms"] =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - state_->started).count();
  if (role_ != role::admin) return r;
  r["calls"] = state_->calls.load(std::memory_order_relaxed);
  r["casts"] = state_->casts.load(std::memory_order_relaxed);
  r["errors"] = state_->errors.load(std::memory_order_relaxed);
  r["pushes"] = state_->pushes.load(std::memory_order_relaxed);
  std::int64_t connections = 0;
  std::uint64_t accepted = 0;
  std::uint64_t refused = 0;
  for (const auto& d : state_->daemons()) {
    if (!d) continue;
    const auto s = d.stats();
    connections += s.connections;
    accepted += s.accepted;
    refused += s.refused;
  }
  r["connections"] = connections;
  r["accepted"] = accepted;
  r["refused"] = refused;
  r["daemon"] = {{"keys", state_->total_keys()},
                 {"subscriptions", state_->subscriptions.load(std::memory_order_relaxed)},
                 {"tenants", state_->tenants ? state_->tenants->count() : 1}};
  return r;
}

} // namespace groved
