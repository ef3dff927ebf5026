#include "service.hpp"

#include <random>

#include <grove/core/process.hpp>

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

namespace {

json ok() {
  json r = json::object();
  r["ok"] = true;
  return r;
}

// A request that fails a check: answered with an error, nothing changed.
struct bad_request {
  std::string code;
  std::string message;
};

const std::string& required_string(const json& request, const char* field, std::size_t max_bytes) {
  auto it = request.find(field);
  if (it == request.end() || !it->is_string() || it->get_ref<const std::string&>().empty() ||
      it->get_ref<const std::string&>().size() > max_bytes) {
    throw bad_request{"bad_request", std::string(field) + ": expected a non-empty string of at most " +
                                         std::to_string(max_bytes) + " bytes"};
  }
  return it->get_ref<const std::string&>();
}

constexpr const char* known_ops = "ping, get, put, delete, incr, keys, subscribe, unsubscribe, stats";

} // namespace

// --- service_state ----------------------------------------------------------

service_state::service_state(grove::registry& r, const config& c, logger l, std::size_t shard_count)
    : registry(&r), shards(shard_count), max_keys(c.max_keys), max_key_bytes(c.max_key_bytes),
      max_subscriptions(c.max_subscriptions), max_reply_bytes(c.max_payload / 2), chaos_ops(c.debug_chaos_ops), log(l),
      initial_(shard_count) {
  for (std::size_t i = 0; i < shard_count; ++i) shard_names_.push_back(shard_name(i));
}

std::size_t service_state::shard_of(std::string_view key) const noexcept {
  return std::hash<std::string_view>{}(key) % shards;
}

std::string service_state::shard_name(std::size_t index) { return "groved.shard." + std::to_string(index); }

std::string service_state::topic_group(std::string_view topic) {
  std::string g = "groved.topic.";
  g += topic;
  return g;
}

void service_state::set_initial(json data) {
  std::vector<json> parts(shards, json::object());
  for (auto it = data.begin(); it != data.end(); ++it) parts[shard_of(it.key())][it.key()] = std::move(it.value());
  std::lock_guard lock(mutex_);
  for (std::size_t i = 0; i < shards; ++i) initial_[i] = std::move(parts[i]);
}

std::optional<json> service_state::take_initial(std::size_t index) {
  std::lock_guard lock(mutex_);
  std::optional<json> part = std::move(initial_[index]);
  initial_[index].reset();
  return part;
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

shard::shard(std::shared_ptr<service_state> state, std::size_t index) : state_(std::move(state)), index_(index) {}

void shard::init() {
  this_process().set_label("groved store shard " + std::to_string(index_));
  if (std::optional<json> part = state_->take_initial(index_)) {
    data_.reserve(part->size());
    for (auto it = part->begin(); it != part->end(); ++it) data_.emplace(it.key(), std::move(it.value()));
    // The loaded keys were counted when the snapshot was read.
  } else {
    state_->log.log(log_level::warning, "shard_started_empty",
                    {{"shard", index_}, {"msg", "a store shard restarted after a failure; the keys it held are lost"}});
  }
}

void shard::terminate(const grove::exit_reason&) {
  state_->keys.fetch_sub(static_cast<std::int64_t>(data_.size()), std::memory_order_relaxed);
}

void shard::handle_cast(store_op op) {
  json result;
  try {
    result = apply(op);
  } catch (const bad_request& e) {
    result = error_reply(e.code, e.message);
  }
  if (op.reply) {
    op.reply.reply(std::move(result));
  } else if (!result.value("ok", false)) {
    // A cast has nobody to answer; say what went wrong in the log.
    state_->errors.fetch_add(1, std::memory_order_relaxed);
    state_->log.log(log_level::warning, "cast_failed",
                    {{"key", op.key}, {"msg", result["error"]["message"].get<std::string>()}});
  }
}

json shard::apply(store_op& op) {
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
      if (created) {
        if (state_->keys.fetch_add(1, std::memory_order_relaxed) >= static_cast<std::int64_t>(state_->max_keys)) {
          state_->keys.fetch_sub(1, std::memory_order_relaxed);
          throw bad_request{"store_full", "the store holds max_keys (" + std::to_string(state_->max_keys) +
                                              ") keys; delete some first"};
        }
        it = data_.emplace(op.key, std::move(op.value)).first;
      } else {
        it->second = std::move(op.value);
      }
      publish(op.key, "put", &it->second);
      json r = ok();
      r["created"] = created;
      return r;
    }
    case store_op::kind::erase: {
      const bool deleted = data_.erase(op.key) > 0;
      if (deleted) {
        state_->keys.fetch_sub(1, std::memory_order_relaxed);
        publish(op.key, "delete", nullptr);
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
        it->second = now;
      } else {
        if (state_->keys.fetch_add(1, std::memory_order_relaxed) >= static_cast<std::int64_t>(state_->max_keys)) {
          state_->keys.fetch_sub(1, std::memory_order_relaxed);
          throw bad_request{"store_full", "the store holds max_keys (" + std::to_string(state_->max_keys) +
                                              ") keys; delete some first"};
        }
        now = op.by;
        it = data_.emplace(op.key, json(now)).first;
      }
      publish(op.key, "incr", &it->second);
      json r = ok();
      r["value"] = now;
      return r;
    }
  }
  throw bad_request{"bad_request", "unknown store operation"};
}

// Key "a/b/c" is under topics "a", "a/b" and "a/b/c".
void shard::publish(const std::string& key, const char* event, const json* value) {
  std::string group;
  for (std::size_t end = 0;; ++end) {
    end = key.find('/', end);
    const std::string_view topic = std::string_view(key).substr(0, end == std::string::npos ? key.size() : end);
    if (!topic.empty()) {
      group = service_state::topic_group(topic);
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
        grove::send(member.process, topic_event{built});
        state_->pushes.fetch_add(1, std::memory_order_relaxed);
      });
    }
    if (end == std::string::npos) break;
  }
}

std::vector<std::string> shard::handle_call(keys_request r) {
  std::vector<std::string> out;
  for (const auto& [key, value] : data_) {
    if (key.compare(0, r.prefix.size(), r.prefix) == 0) out.push_back(key);
  }
  std::sort(out.begin(), out.end());
  if (out.size() > r.limit) out.resize(r.limit);
  return out;
}

json shard::handle_call(dump_request) {
  json out = json::object();
  for (const auto& [key, value] : data_) out[key] = value;
  return out;
}

// --- session ----------------------------------------------------------------

session::session(std::shared_ptr<service_state> state) : state_(std::move(state)) {}

grove::awaitable<grove::call_result<json>> session::handle_call(grove::erps::call c, grove::from<json> reply) {
  state_->calls.fetch_add(1, std::memory_order_relaxed);
  bool forwarded = false;
  json result = co_await serve(c.request, reply, forwarded);
  if (forwarded) co_return grove::call_result<json>(grove::noreply);
  if (!result.value("ok", false)) state_->errors.fetch_add(1, std::memory_order_relaxed);
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
}

void session::handle_info(grove::message m) {
  if (auto* e = m.get_if<topic_event>()) push(*e->value);
}

void session::terminate(const grove::exit_reason&) {
  // The registry drops this process's group memberships when it ends.
  state_->subscriptions.fetch_sub(static_cast<std::int64_t>(topics_.size()), std::memory_order_relaxed);
  topics_.clear();
}

grove::awaitable<json> session::serve(json& request, const grove::from<json>& reply, bool& forwarded) {
  try {
    if (!request.is_object()) throw bad_request{"bad_request", "a request is a JSON object with an \"op\""};
    auto op_it = request.find("op");
    if (op_it == request.end() || !op_it->is_string()) {
      throw bad_request{"bad_request", "op: expected a string, one of " + std::string(known_ops)};
    }
    const std::string& op = op_it->get_ref<const std::string&>();
    std::optional<store_op::kind> kind;
    if (op == "get") kind = store_op::kind::get;
    else if (op == "put") kind = store_op::kind::put;
    else if (op == "delete") kind = store_op::kind::erase;
    else if (op == "incr") kind = store_op::kind::incr;
    if (kind) {
      std::string key = required_string(request, "key", state_->max_key_bytes);
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
      const std::size_t index = state_->shard_of(key);
      grove::pid target = state_->registry->whereis(state_->name_of_shard(index));
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
    if (op == "keys") co_return co_await keys(request);
    if (op == "subscribe") co_return co_await subscribe(request, true);
    if (op == "unsubscribe") co_return co_await subscribe(request, false);
    if (op == "stats") co_return stats();
    if (op == "debug.kill_sessions") co_return co_await kill_sessions(request);
    throw bad_request{"unknown_op", "unknown op '" + op + "'; expected one of " + std::string(known_ops)};
  } catch (const bad_request& e) {
    co_return error_reply(e.code, e.message);
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

grove::awaitable<json> session::keys(const json& request) {
  std::string prefix;
  if (auto p = request.find("prefix"); p != request.end()) {
    if (!p->is_string() || p->get_ref<const std::string&>().size() > state_->max_key_bytes) {
      throw bad_request{"bad_request",
                        "prefix: expected a string of at most " + std::to_string(state_->max_key_bytes) + " bytes"};
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
  for (std::size_t i = 0; i < state_->shards; ++i) {
    grove::pid target = state_->registry->whereis(state_->name_of_shard(i));
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
  const std::string topic = required_string(request, "topic", state_->max_key_bytes);
  json r = ok();
  r["topic"] = topic;
  if (on) {
    if (!topics_.contains(topic)) {
      if (topics_.size() >= state_->max_subscriptions) {
        throw bad_request{"too_many_subscriptions", "this connection already has max_subscriptions (" +
                                                        std::to_string(state_->max_subscriptions) + ") topics"};
      }
      co_await state_->registry->join(service_state::topic_group(topic));
      topics_.insert(topic);
      state_->subscriptions.fetch_add(1, std::memory_order_relaxed);
    }
  } else {
    const bool was = topics_.erase(topic) > 0;
    if (was) {
      state_->subscriptions.fetch_sub(1, std::memory_order_relaxed);
      co_await state_->registry->leave(service_state::topic_group(topic));
    }
    r["was_subscribed"] = was;
  }
  co_return r;
}

json session::stats() const {
  json r = ok();
  r["keys"] = state_->keys.load(std::memory_order_relaxed);
  r["shards"] = state_->shards;
  r["calls"] = state_->calls.load(std::memory_order_relaxed);
  r["casts"] = state_->casts.load(std::memory_order_relaxed);
  r["errors"] = state_->errors.load(std::memory_order_relaxed);
  r["pushes"] = state_->pushes.load(std::memory_order_relaxed);
  r["uptime_ms"] =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - state_->started).count();
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
  r["subscriptions"] = state_->subscriptions.load(std::memory_order_relaxed);
  return r;
}

} // namespace groved
