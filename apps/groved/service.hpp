// groved's service: the tenants' stores (sharded key-value processes) and
// the erps session process that serves one client.
//
// Every client works in one tenant's keyspace: the tenant its identity maps
// to in the access policy, or tenants.default without a policy (and for a
// policy entry that names no tenant). Keys, counters, topics, `keys` and
// `stats` are that tenant's only.
//
// Requests are JSON objects with an "op"; every reply is an object with
// "ok": true and the result, or "ok": false and "error": {"code", "message"}.
//   {"op":"ping"[,"data":any]}            -> {"ok":true,"pong":true[,"data":any]}
//   {"op":"where"}                        -> {"ok":true,"tenant":T[,"node":N]} (clustered: the node serving
//                                            the client's tenant is this one; else the error `moved`)
//   {"op":"get","key":K}                  -> {"ok":true,"value":V} | not_found
//   {"op":"put","key":K,"value":V}        -> {"ok":true,"created":bool}
//   {"op":"delete","key":K}               -> {"ok":true,"deleted":bool}
//   {"op":"incr","key":K[,"by":N]}        -> {"ok":true,"value":N'}   (a missing key counts from 0)
//   {"op":"keys"[,"prefix":P][,"limit":L]}-> {"ok":true,"keys":[...sorted],"truncated":bool}
//                                            (cut at `limit` keys, and to fit half of max_payload)
//   {"op":"subscribe","topic":T}          -> {"ok":true,"topic":T}
//   {"op":"unsubscribe","topic":T}        -> {"ok":true,"topic":T,"was_subscribed":bool}
//   {"op":"stats"}                        -> {"ok":true,"tenant":T,"keys":N,...} (the tenant's figures;
//                                            the daemon's too, "connections":N,..., for an admin)
// Admin only (role admin, or any client without an access policy):
//   {"op":"tenant.install","tenant":ID[,"config":{limits}]} -> {"ok":true,"tenant":RECORD}
//   {"op":"tenant.update","tenant":ID,"config":{limits}}    -> {"ok":true,"tenant":RECORD}
//   {"op":"tenant.uninstall","tenant":ID}  -> {"ok":true,"tenant":ID} (its keys are deleted, its clients closed)
//   {"op":"tenant.get","tenant":ID}        -> {"ok":true,"tenant":RECORD}
//   {"op":"tenant.list"}                   -> {"ok":true,"tenants":[RECORD...]}
//   where limits are max_keys, max_key_bytes, max_subscriptions (positive
//   integers; groved's options are the defaults) and shards (at install only),
//   and RECORD is {"id","state","config","generation","last_error","keys"}.
//   {"op":"debug.kill_sessions"[,"count":N]} -> {"ok":true,"killed":N}  (only with debug.chaos_ops: kills
//                                            N random other client sessions, as a crash would)
//   {"op":"debug.kill_shard","shard":I}   -> {"ok":true,"killed":I}  (only with debug.chaos_ops: kills a
//                                            store shard; it restarts and reads its keys back from disk)
// With a data_path, a write that could not be stored in the log is undone
// and answered {"ok":false,"error":{"code":"storage_error",...}}.
// Clustered (cluster.hpp), a request for a tenant another node serves is
// answered {"ok":false,"error":{"code":"moved","message","tenant","node",
// "tcp":"HOST:PORT","tls":"HOST:PORT"}} and the connection closed after it
// (a cast is dropped and logged, and the connection kept, so that the
// client's next call hears of the move).
// A subscriber to topic T gets a push for every put, delete or incr of key
// T or of a key under it ("T/..."):
//   {"topic":T,"event":"put"|"delete"|"incr","key":K[,"value":V]}
#pragma once

#include "access.hpp"
#include "logger.hpp"
#include "wal.hpp"

#include <grove/erps/daemon.hpp>
#include <grove/erps/server.hpp>
#include <grove/registry/registry.hpp>

#include <atomic>
#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace grove {
template <class T>
class remote_term;
namespace detail {
class tenant_manager_base;
} // namespace detail
} // namespace grove

namespace groved {

using json = nlohmann::json;

class cluster_view; // cluster.hpp
class tenant_data;  // cluster.hpp

/// Sent to every session when a new access policy is published: a client
/// the policy no longer names is closed.
struct policy_changed {};

/// A tenant's limits: its record's config over groved's defaults
/// (tenants.hpp parses and checks them).
struct tenant_limits {
  std::size_t max_keys = 0;
  std::size_t max_key_bytes = 0;
  std::size_t max_subscriptions = 0;
  std::size_t shards = 1; // fixed once installed (keys are placed by hash)
};

/// One tenant's store: its shard processes, its snapshot and write-ahead
/// log, its limits and counters. Built by the tenant's process when it runs
/// (tenants.hpp) and shared with its shards and with the sessions of its
/// clients; `open` goes false when the tenant stops or is uninstalled, and a
/// session holding it looks the tenant up again.
class store : public std::enable_shared_from_this<store> {
public:
  store(std::string tenant, const tenant_limits& limits, std::string data_path);

  const std::string tenant;
  const std::size_t shards;
  const std::string data_path;         // the snapshot; empty: nothing persisted (unless clustered)
  std::shared_ptr<write_ahead_log> wal; // set before the shards start when data_path or data is
  std::shared_ptr<tenant_data> data;    // clustered: the log and snapshots in etcd (cluster.hpp)

  std::atomic<std::size_t> max_keys;
  std::atomic<std::size_t> max_key_bytes;
  std::atomic<std::size_t> max_subscriptions;
  std::atomic<std::int64_t> keys{0};
  /// Subscriptions to this tenant's topics, over its clients. One counter
  /// per tenant, handed on by service_state::add_store to the store that
  /// replaces this one: a client keeps its subscriptions when its tenant's
  /// store is replaced (the tenant's process restarted), so the count must too.
  std::shared_ptr<std::atomic<std::int64_t>> subscriptions = std::make_shared<std::atomic<std::int64_t>>(0);
  std::atomic<bool> open{true};

  void set_limits(const tenant_limits& l) noexcept;
  std::size_t shard_of(std::string_view key) const noexcept;
  /// The shard's registered name (groved.shard.TENANT/I), built once: it is
  /// looked up on every key operation. Tenant ids hold no '/', so no two
  /// tenants' names meet.
  const std::string& shard_name(std::size_t index) const noexcept { return shard_names_[index]; }
  /// The registry group of a topic's subscribers: groved.topic.TENANT/TOPIC.
  std::string topic_group(std::string_view topic) const;

  /// Loaded from the snapshot and the log: each shard takes its part once,
  /// at its first start (a shard restarted after a crash reads its keys
  /// from the disk again, or starts empty when nothing is persisted).
  void set_initial(json data);
  std::optional<json> take_initial(std::size_t shard);

private:
  std::vector<std::string> shard_names_;
  std::mutex mutex_;
  std::vector<std::optional<json>> initial_;
};

/// What every shard and session of one daemon share. Counters are atomic;
/// the daemon handles are written by the tree's start functions.
struct service_state {
  service_state(grove::registry& r, const config& c, logger l, std::size_t default_shards);

  grove::registry* registry;
  tenant_limits defaults;      // a tenant's limits where its config says nothing
  std::size_t max_reply_bytes; // a keys reply stops (truncated) before this
  bool chaos_ops;              // debug.kill_sessions is served (tests only)
  logger log;
  std::string data_path;       // the default tenant's snapshot; empty: nothing persisted
  std::uint32_t max_depth;
  std::string durability;
  std::chrono::milliseconds durability_interval;
  std::string default_tenant;  // tenants.default
  std::size_t max_tenants;     // tenants.max; 0: no limit
  // The access policy (access.policy), owned by main and outliving the
  // tree; null: every client is served with every op, in the default tenant.
  const grove::remote_term<access_policy>* access = nullptr;
  // The tenant manager (tenants.hpp), set by the tree before it starts.
  const grove::detail::tenant_manager_base* tenants = nullptr;
  // The cluster (cluster.hpp) with cluster.etcd; null for a groved alone.
  std::shared_ptr<cluster_view> cluster;

  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();

  std::atomic<std::uint64_t> calls{0};
  std::atomic<std::uint64_t> casts{0};
  std::atomic<std::uint64_t> errors{0};
  std::atomic<std::uint64_t> pushes{0};
  std::atomic<std::int64_t> subscriptions{0}; // over all clients

  /// Where tenant `id` keeps its snapshot (and its log, beside it): the
  /// default tenant at data_path, as before tenants; another one at
  /// DATA_PATH.tenants/ID.json. Empty without a data_path.
  std::string store_path(const std::string& tenant) const;
  /// The tenant records' SQLite file (DATA_PATH.tenants.db); empty without a data_path.
  std::string tenants_file() const;

  /// The open stores, by tenant.
  std::shared_ptr<store> find_store(std::string_view tenant) const;
  void add_store(std::shared_ptr<store> s);
  void remove_store(const std::shared_ptr<store>& s);
  std::vector<std::shared_ptr<store>> stores() const;
  std::int64_t total_keys() const;

  void set_daemon(std::size_t slot, grove::erps::daemon d);
  std::vector<grove::erps::daemon> daemons() const;

private:
  mutable std::mutex mutex_;
  std::map<std::string, std::shared_ptr<store>, std::less<>> stores_;
  // Each tenant's subscription counter, kept across its stores (store::subscriptions).
  std::map<std::string, std::shared_ptr<std::atomic<std::int64_t>>, std::less<>> subscription_counts_;
  std::vector<grove::erps::daemon> daemons_{2};
};

/// An operation on one key, sent to the key's shard; the shard answers
/// through `reply` (empty for a cast).
struct store_op {
  enum class kind : std::uint8_t { get, put, erase, incr };
  store_op(kind w, std::string k, json v, std::int64_t b, grove::from<json> r)
      : what(w), key(std::move(k)), value(std::move(v)), by(b), reply(std::move(r)) {}
  kind what;
  std::string key;
  json value;
  std::int64_t by;
  grove::from<json> reply;
};

/// The keys of one shard under a prefix, sorted, at most `limit`.
struct keys_request {
  using reply_type = std::vector<std::string>;
  keys_request(std::string p, std::size_t l) : prefix(std::move(p)), limit(l) {}
  std::string prefix;
  std::size_t limit;
};

/// Everything one shard holds once its pending writes are stored, for the
/// snapshot: {"data":{key: value, ...}}, or {"error":"..."} when one of them
/// failed.
struct dump_request {
  using reply_type = json;
};

/// A push for a topic's subscribers, built once and shared.
struct topic_event {
  std::shared_ptr<const json> value;
};

/// One shard of the store: a process owning its keys, so every operation on
/// a key (incr included) is atomic without a lock.
///
/// With a write-ahead log, a write is applied at once (the next operation
/// sees it) and logged; its reply and its pushes wait until the log says it
/// is stored (durability always and batch), and so does every reply after
/// it, so nobody learns of a write that could still be lost. A failed log
/// write undoes the shard's waiting writes, newest first, and answers each
/// with storage_error.
class shard : public grove::gen_server {
public:
  shard(std::shared_ptr<service_state> state, std::shared_ptr<store> store, std::size_t index);

  grove::awaitable<grove::action> init();
  void handle_cast(store_op op);
  grove::call_result<std::vector<std::string>> handle_call(keys_request r, grove::from<std::vector<std::string>> reply);
  grove::call_result<json> handle_call(dump_request, grove::from<json> reply);
  void handle_info(grove::message m);
  void terminate(const grove::exit_reason& reason);

private:
  using push_list = std::vector<std::pair<grove::pid, std::shared_ptr<const json>>>;
  // A change to one key, as it can be undone.
  struct change {
    std::string key;
    std::optional<json> previous; // nullopt: the key was absent
    const json* now = nullptr;    // the key's value after it; null: deleted
  };
  // A reply (and the pushes of a write) waiting for the log.
  struct waiting {
    std::uint64_t lsn = 0; // 0: no write of its own, only behind earlier ones
    std::optional<change> undo;
    grove::from<json> reply;
    json result;
    push_list pushes;
    grove::from<std::vector<std::string>> keys_reply;
    std::vector<std::string> keys;
    std::string cast_key; // a cast's key, to log a failure nobody else hears of
  };

  json apply(store_op& op, std::optional<change>& changed, push_list& pushes);
  void publish(const std::string& key, const char* event, const json* value, push_list& out);
  void restore(change& c);
  void finish(waiting& w);
  void fail_waiting(const std::string& why);
  void load(json part);

  std::shared_ptr<service_state> state_;
  std::shared_ptr<store> store_;
  std::size_t index_;
  std::unordered_map<std::string, json> data_;
  std::deque<waiting> waiting_;
};

/// One client's session: checks each request, forwards key operations to
/// their shard (which replies straight to the client's call), answers the
/// rest itself, and pushes topic events to its client.
class session : public grove::erps::server {
public:
  /// `tls`: the session of a TLS listener (its client is named by its certificate).
  explicit session(std::shared_ptr<service_state> state, bool tls = false);

  grove::awaitable<grove::call_result<json>> handle_call(grove::erps::call c, grove::from<json> reply);
  grove::awaitable<void> handle_cast(grove::erps::cast c);
  void handle_info(grove::message m);
  void terminate(const grove::exit_reason& reason);

private:
  grove::awaitable<json> serve(json& request, const grove::from<json>& reply, bool& forwarded);
  grove::awaitable<json> keys(const json& request);
  grove::awaitable<json> kill_sessions(const json& request);
  json kill_shard(const json& request);
  grove::awaitable<json> subscribe(const json& request, bool on);
  json stats();
  grove::awaitable<json> tenant_admin(const std::string& op, const json& request);
  /// Drops the placement a failed tenant.install made (cluster.hpp).
  grove::awaitable<void> unplace(const std::string& id);

  /// Checks the access policy for `op` and settles this client's tenant;
  /// throws bad_request "forbidden".
  void check_access(std::string_view op);
  void identify();
  /// Its identities, comma-separated, for messages.
  std::string identity_list() const;
  /// The store of this client's tenant; throws bad_request (no_tenant,
  /// unavailable) when it is not installed or not running.
  store& tenant_store();
  /// Refuses this client (logged once) and closes its connection after the reply.
  [[noreturn]] void refuse(std::string code, std::string why);

  std::shared_ptr<service_state> state_;
  std::unordered_set<std::string> topics_;
  bool tls_;
  std::vector<std::string> identities_; // what the access policy knows this client by, in order
  bool refused_ = false;                // the policy names none of them: close after the reply
  std::string moved_to_;                // the node its tenant is served by (cluster): close after a call's reply
  role role_ = role::admin;             // what the policy grants (admin without a policy)
  std::string tenant_;                  // whose keys this client reaches (settled at its first request)
  std::shared_ptr<store> store_;        // that tenant's store, while it is open
};

/// Tells every session of every listener that the access policy changed.
grove::awaitable<void> notify_sessions(std::shared_ptr<service_state> state);

/// A request that fails a check: answered with an error, nothing changed.
struct bad_request {
  std::string code;
  std::string message;
  json detail = json::object(); // more fields of the error object (moved: the node and its addresses)
};

/// The error for a tenant served by another node of the cluster: code
/// `moved`, with "tenant", "node" and the node's "tcp" and "tls" addresses
/// (cluster.cpp); `unavailable` while that node's addresses are not known.
bad_request moved(const cluster_view& cluster, std::string_view tenant, const std::string& node);

/// {"ok":false,"error":{"code":code,"message":message}}
json error_reply(std::string_view code, std::string message);
/// The same with the error's detail fields.
json error_reply(const bad_request& e);

} // namespace groved
