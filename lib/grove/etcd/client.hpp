// grove/etcd/client.hpp — an asynchronous etcd v3 client, on the node's
// executors: keys (get, put, erase), transactions, leases and watches,
// through etcd's gRPC JSON gateway over HTTP/1.1 (Boost.Beast's parser).
//
//   grove::etcd::client etcd({.endpoints = {"http://127.0.0.1:2379", "http://127.0.0.1:22379"}});
//   co_await etcd.put("config/plan", "gold");
//   auto got = co_await etcd.get("config/", {.prefix = true});
//   auto lease = co_await etcd.grant_lease(10);                       // seconds
//   auto claimed = co_await etcd.txn({.when = {grove::etcd::compare::absent("names/a")},
//                                     .then = {grove::etcd::txn_op::put("names/a", "node-1", lease.id)}});
//   auto w = co_await etcd.watch("config/", {.prefix = true});
//   for (const auto& e : co_await w.next()) use(e.type, e.kv.key, e.kv.value);
//
// Why the gateway and not gRPC: the gateway is part of every etcd v3
// server (Debian's too), the wire is JSON grove already parses, and the
// client needs nothing beyond Boost and OpenSSL, which grove links anyway;
// gRPC C++ would add a second RPC stack, its own threads and a code
// generator to the build, for a handful of calls that are not on any hot
// path (lookups answer from a watch-fed cache, not from etcd).
//
// Endpoints. A request goes to the endpoint that answered last, and on to
// the next in order when that one cannot be reached. Failing over is safe
// for every request until its bytes are sent; after that, only reads
// (get, keep_alive_once, watches) move on: a put, erase, transaction,
// grant or revoke whose connection broke before its answer came throws
// errc::outcome_unknown (it may have been applied), and the caller
// decides. Connections are kept open (HTTP keep-alive, up to
// max_idle_connections per endpoint) and checked for a close from the
// server before each reuse.
//
// Watches. A watch resumes after a disconnect, an etcd restart or a
// failover from the revision after the last one it delivered: no event is
// lost or delivered twice, in revision order, and all of one revision's
// events (one transaction's) come in one batch. If that revision was
// compacted meanwhile, next() throws errc::compacted naming the compact
// revision. Between rounds over the endpoints it waits by the reconnect
// backoff.
//
// TLS. An https endpoint is verified against tls.ca_file (required), and
// the client certificate (tls.certificate_file, tls.private_key_file) is
// sent for etcd's --client-cert-auth; erps's TLS client policy applies.
//
// Errors are grove::error: etcd::errc (category "grove.etcd") with a text
// naming the endpoint and the reason, or grove::errc::invalid_argument for
// a bad option (naming it) at construction.
#pragma once

#include <grove/core/backoff.hpp>
#include <grove/core/error.hpp>
#include <grove/core/process.hpp>
#include <grove/core/server_types.hpp>
#include <grove/erps/tls.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace grove::etcd {

enum class errc {
  unavailable = 1, ///< no endpoint could be reached (each one's reason in the text)
  timeout,         ///< the request (or a watch's next()) took longer than allowed
  outcome_unknown, ///< a write's connection broke after it was sent: it may or may not have been applied
  compacted,       ///< a watch or a read at a revision etcd has compacted away
  lease_not_found, ///< the lease does not exist (expired or revoked)
  rejected,        ///< etcd refused the request (its gRPC code and message in the text)
  bad_response,    ///< the endpoint's answer was not what the gateway sends
};

const std::error_category& etcd_category() noexcept;
inline std::error_code make_error_code(errc e) noexcept { return {static_cast<int>(e), etcd_category()}; }

struct client_options {
  std::vector<std::string> endpoints{}; ///< "http://host:port" or "https://host:port", tried in order (required)
  erps::tls_client_options tls{};       ///< https endpoints: CA (required), client certificate and key for mutual TLS
  duration request_timeout = std::chrono::seconds(5); ///< one request at one endpoint: connect, send, answer (default 5 s)
  backoff_policy reconnect = backoff_policy::exponential(
      {.initial = std::chrono::milliseconds(100), .max = std::chrono::seconds(5)}); ///< a watch's wait between rounds
                                                   ///< over the endpoints (each watch its own, reset once reconnected)
  std::size_t max_idle_connections = 4;            ///< kept open per endpoint for later requests (default 4)
  std::size_t max_response_bytes = 64u << 20;      ///< a larger answer is refused (bad_response) (default 64 MiB)
};

/// A key and its value, with etcd's bookkeeping.
struct key_value {
  std::string key{};
  std::string value{};
  std::int64_t create_revision = 0;
  std::int64_t mod_revision = 0;
  std::int64_t version = 0; ///< writes since it was created (0: absent)
  std::int64_t lease = 0;   ///< the lease it is attached to (0: none)
  friend bool operator==(const key_value&, const key_value&) = default;
};

// The option structs hold nothing to destroy (range_end is a view, read
// before the call returns): g++ 12 destroys a braced temporary of a type
// that has a destructor twice when it sits in a co_await expression, and
// `co_await etcd.get("k", {.prefix = true})` is how these are meant to be
// written. For the same reason, pass txn() a named txn_request.

struct get_options {
  bool prefix = false;          ///< every key starting with the key (the key "" with prefix: all keys)
  std::string_view range_end{}; ///< [key, range_end) instead (ignored with prefix; read before get() returns)
  std::int64_t limit = 0;       ///< at most this many (0: all)
  std::int64_t revision = 0;    ///< as of this revision (0: the latest)
  bool keys_only = false;       ///< values left empty
  bool count_only = false;      ///< only the count
  bool serializable = false;    ///< answered by the member reached, without the leader (may be stale)
};

struct get_result {
  std::int64_t revision = 0;    ///< the store's revision when it answered
  std::vector<key_value> kvs{};
  std::int64_t count = 0;       ///< keys in the range (more than kvs.size() with a limit)
  bool more = false;            ///< the limit cut the answer short
};

struct put_options {
  std::int64_t lease = 0;       ///< attach to this lease (0: none)
  bool prev_kv = false;         ///< return the key's previous value
};

struct put_result {
  std::int64_t revision = 0;
  std::optional<key_value> prev{}; ///< with prev_kv, when the key existed
};

struct erase_options {
  bool prefix = false;
  std::string_view range_end{}; ///< (read before erase() returns)
  bool prev_kv = false;         ///< return what was erased
};

struct erase_result {
  std::int64_t revision = 0;
  std::int64_t deleted = 0;
  std::vector<key_value> prev_kvs{};
};

/// One condition of a transaction, on one key.
struct compare {
  enum class target { version, create_revision, mod_revision, value, lease };
  enum class result { equal, not_equal, greater, less };
  std::string key{};
  target what = target::version;
  result is = result::equal;
  std::int64_t number = 0;      ///< for every target but value
  std::string value{};          ///< for target::value

  /// The key does not exist.
  static compare absent(std::string key) { return {std::move(key), target::version, result::equal, 0, {}}; }
  /// The key exists with this value.
  static compare value_is(std::string key, std::string value) {
    return {std::move(key), target::value, result::equal, 0, std::move(value)};
  }
  /// The key was last written at this revision (0: it does not exist).
  static compare mod_revision_is(std::string key, std::int64_t revision) {
    return {std::move(key), target::mod_revision, result::equal, revision, {}};
  }
};

/// One operation of a transaction's branch.
struct txn_op {
  enum class kind { get, put, erase };
  kind what = kind::get;
  std::string key{};
  std::string value{};          ///< put
  std::int64_t lease = 0;       ///< put
  bool prefix = false;          ///< get, erase

  static txn_op get(std::string key, bool prefix = false) { return {kind::get, std::move(key), {}, 0, prefix}; }
  static txn_op put(std::string key, std::string value, std::int64_t lease = 0) {
    return {kind::put, std::move(key), std::move(value), lease, false};
  }
  static txn_op erase(std::string key, bool prefix = false) { return {kind::erase, std::move(key), {}, 0, prefix}; }
};

/// (With g++ 12, a named one: see above.)
struct txn_request {
  std::vector<compare> when{};  ///< all must hold (none: always)
  std::vector<txn_op> then{};   ///< run if they do
  std::vector<txn_op> otherwise{}; ///< run if not
};

struct txn_result {
  bool succeeded = false;       ///< `when` held, `then` ran
  std::int64_t revision = 0;
  /// One per operation of the branch that ran, in order.
  std::vector<std::variant<get_result, put_result, erase_result>> responses{};
};

struct lease {
  std::int64_t id = 0;
  std::int64_t ttl = 0;         ///< seconds
};

enum class event_type { put, erase };

struct event {
  event_type type = event_type::put;
  key_value kv{};               ///< an erase's has the key and its mod_revision (the erase's revision)
  std::optional<key_value> prev{}; ///< with watch_options::prev_kv
};

struct watch_options {
  bool prefix = false;
  std::string_view range_end{}; ///< (copied by watch())
  std::int64_t start_revision = 0; ///< from this revision on (0: changes after the watch starts)
  bool prev_kv = false;
};

class client;

/// A watch's handle (move-only). One consumer: call next() from one
/// coroutine at a time, on the worker that made it. Its connection closes
/// when the handle goes.
class watch {
public:
  watch(watch&&) noexcept;
  watch& operator=(watch&&) noexcept;
  ~watch();

  /// The next events, in revision order (at least one; one revision's all
  /// together), resuming across disconnects and failovers. Throws
  /// errc::timeout when none came within `timeout` (the watch stays
  /// usable: the next call resumes; while no endpoint answers, the text
  /// says why), errc::compacted, errc::rejected (etcd cancelled the watch).
  awaitable<std::vector<event>> next(duration timeout = infinity);
  /// The revision of the last events delivered (before any: the one the
  /// watch started after, once known; else 0).
  std::int64_t revision() const noexcept;

  struct state; ///< (internal)
  explicit watch(std::unique_ptr<state> s); ///< (internal: client::watch makes them)

private:
  std::unique_ptr<state> state_;
};

/// Thread-safe: any process may call it; each request runs on the caller's
/// executor. Copies share the endpoints' connections.
class client {
public:
  /// Throws grove::error(errc::invalid_argument) naming the bad option.
  explicit client(client_options options);

  awaitable<get_result> get(std::string key, get_options options = {}) const;
  awaitable<put_result> put(std::string key, std::string value, put_options options = {}) const;
  awaitable<erase_result> erase(std::string key, erase_options options = {}) const;
  awaitable<txn_result> txn(txn_request request) const;
  /// Drops the history before `revision` (etcd's compaction): reads and
  /// watches from before it fail with errc::compacted afterwards.
  awaitable<void> compact(std::int64_t revision) const;

  /// A lease of `ttl_seconds` (etcd may grant more; `id` 0: etcd picks).
  awaitable<lease> grant_lease(std::int64_t ttl_seconds, std::int64_t id = 0) const;
  /// Renews the lease once; returns its TTL again. Throws lease_not_found.
  awaitable<std::int64_t> keep_alive_once(std::int64_t id) const;
  /// Ends the lease and erases its keys. Throws lease_not_found.
  awaitable<void> revoke_lease(std::int64_t id) const;

  /// Watches `key` (or its range): returns once etcd has created the
  /// watch, so every change after this returns is seen (and, with a
  /// start_revision, every one from there). Throws unavailable when no
  /// endpoint took it (one round over them). The watch's connection lives
  /// on the caller's worker: use and destroy it there, before its node.
  awaitable<etcd::watch> watch(std::string key, watch_options options = {}) const;

  /// The endpoint requests go to first (the last that answered).
  std::string current_endpoint() const;

  struct shared;

private:
  std::shared_ptr<shared> shared_;
};

} // namespace grove::etcd

template <>
struct std::is_error_code_enum<grove::etcd::errc> : std::true_type {};
