// The cluster part and the cluster view (cluster.hpp).
#include "cluster.hpp"

#include "service.hpp"
#include "snapshot.hpp"

#include <grove/core/gen_server.hpp>
#include <grove/etcd/etcd_tenant_store.hpp>
#include <grove/etcd/lease_keeper.hpp>
#include <grove/tenant/manager.hpp>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <set>
#include <stdexcept>
#include <utility>

namespace groved {

namespace {

using json = nlohmann::json;

grove::etcd::client make_client(const config& c) {
  grove::etcd::client_options o;
  o.endpoints = c.cluster_etcd;
  try {
    return grove::etcd::client(std::move(o));
  } catch (const grove::error& e) {
    throw config_error(std::string("cluster.etcd: ") + e.what());
  }
}

// "HOST:PORT", bracketing an IPv6 host.
std::string host_port(const std::string& host, std::uint16_t port) {
  const bool v6 = host.find(':') != std::string::npos && host.front() != '[';
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

} // namespace

cluster_view::cluster_view(const config& c)
    : node_(c.cluster_node), prefix_(c.cluster_prefix), advertise_(c.cluster_advertise), ttl_(c.cluster_lease_ttl_s),
      etcd_(make_client(c)) {}

std::optional<std::string> cluster_view::placed_on(std::string_view tenant) const {
  std::lock_guard lock(mutex_);
  auto it = placements_.find(tenant);
  if (it == placements_.end()) return std::nullopt;
  return it->second;
}

std::optional<json> cluster_view::addresses(std::string_view node) const {
  std::lock_guard lock(mutex_);
  auto it = nodes_.find(node);
  if (it == nodes_.end()) return std::nullopt;
  return it->second;
}

std::map<std::string, std::string> cluster_view::placements() const {
  std::lock_guard lock(mutex_);
  return {placements_.begin(), placements_.end()};
}

void cluster_view::apply_put(const grove::etcd::key_value& kv) {
  const std::string nodes = prefix_ + "cluster/nodes/";
  const std::string placement = prefix_ + "cluster/placement/";
  if (kv.key.rfind(nodes, 0) == 0) {
    json a = json::parse(kv.value, nullptr, false);
    nodes_[kv.key.substr(nodes.size())] = a.is_object() ? std::move(a) : json::object();
  } else if (kv.key.rfind(placement, 0) == 0) {
    placements_[kv.key.substr(placement.size())] = kv.value;
  }
}

void cluster_view::apply_erase(std::string_view key) {
  const std::string nodes = prefix_ + "cluster/nodes/";
  const std::string placement = prefix_ + "cluster/placement/";
  if (key.substr(0, nodes.size()) == nodes) {
    if (auto it = nodes_.find(key.substr(nodes.size())); it != nodes_.end()) nodes_.erase(it);
  } else if (key.substr(0, placement.size()) == placement) {
    if (auto it = placements_.find(key.substr(placement.size())); it != placements_.end()) placements_.erase(it);
  }
}

void cluster_view::reset(const std::vector<grove::etcd::key_value>& kvs) {
  std::lock_guard lock(mutex_);
  placements_.clear();
  nodes_.clear();
  for (const auto& kv : kvs) apply_put(kv);
}

void cluster_view::apply(const std::vector<grove::etcd::event>& events) {
  std::lock_guard lock(mutex_);
  for (const auto& e : events) {
    if (e.type == grove::etcd::event_type::put) {
      apply_put(e.kv);
    } else {
      apply_erase(e.kv.key);
    }
  }
}

grove::awaitable<std::string> cluster_view::claim(std::string tenant) const {
  const std::string key = placement_key(tenant);
  const std::int64_t lease = this->lease();
  // A few rounds at most: each ends unless the key changed hands between
  // the two steps of the round.
  for (int round = 0; round < 8; ++round) {
    // Absent: ours now. Ours already (an earlier life of this node, or an
    // earlier lease of this one): attached to the lease held now.
    grove::etcd::txn_request first;
    first.when.push_back(grove::etcd::compare::absent(key));
    first.then.push_back(grove::etcd::txn_op::put(key, node_, lease));
    first.otherwise.push_back(grove::etcd::txn_op::get(key));
    grove::etcd::txn_result got = co_await etcd_.txn(std::move(first));
    if (got.succeeded) co_return std::string();
    std::string holder;
    if (!got.responses.empty()) {
      if (const auto* r = std::get_if<grove::etcd::get_result>(&got.responses.front()); r && !r->kvs.empty()) {
        holder = r->kvs.front().value;
      }
    }
    if (holder.empty()) continue; // erased between the compare and the get
    if (holder != node_) co_return holder;
    grove::etcd::txn_request again;
    again.when.push_back(grove::etcd::compare::value_is(key, node_));
    again.then.push_back(grove::etcd::txn_op::put(key, node_, lease));
    grove::etcd::txn_result second = co_await etcd_.txn(std::move(again));
    if (second.succeeded) co_return std::string();
  }
  throw std::runtime_error("the placement of tenant '" + tenant + "' kept changing hands; try again");
}

grove::awaitable<void> cluster_view::release(std::string tenant) const {
  const std::string key = placement_key(tenant);
  grove::etcd::txn_request r;
  r.when.push_back(grove::etcd::compare::value_is(key, node_));
  r.then.push_back(grove::etcd::txn_op::erase(key));
  co_await etcd_.txn(std::move(r));
}

std::string cluster_view::own_addresses_text() const {
  std::lock_guard lock(mutex_);
  return own_.dump();
}

grove::awaitable<bool> cluster_view::claim_name() const {
  const std::string key = node_key(node_);
  grove::etcd::txn_request r;
  r.when.push_back(grove::etcd::compare::absent(key));
  r.then.push_back(grove::etcd::txn_op::put(key, own_addresses_text(), lease()));
  grove::etcd::txn_result got = co_await etcd_.txn(std::move(r));
  co_return got.succeeded;
}

grove::awaitable<void> cluster_view::announce(std::string listener, std::string listener_address, std::uint16_t port) {
  {
    std::lock_guard lock(mutex_);
    own_[listener] = host_port(advertise_.empty() ? listener_address : advertise_, port);
  }
  const std::string key = node_key(node_);
  const std::string value = own_addresses_text();
  grove::etcd::put_options o;
  o.lease = lease();
  co_await etcd_.put(key, value, o);
}

bad_request moved(const cluster_view& cluster, std::string_view tenant, const std::string& node) {
  const std::optional<json> at = cluster.addresses(node);
  std::string where;
  json detail = {{"tenant", std::string(tenant)}, {"node", node}};
  if (at) {
    for (const char* listener : {"tcp", "tls"}) {
      if (auto it = at->find(listener); it != at->end() && it->is_string()) {
        detail[listener] = *it;
        where += (where.empty() ? " at " : ", ") + it->get<std::string>() + " (" + listener + ")";
      }
    }
  }
  if (where.empty()) {
    return bad_request{"unavailable", "tenant '" + std::string(tenant) + "' is served by node '" + node +
                                          "', whose address is not known yet; try again later",
                       std::move(detail)};
  }
  return bad_request{"moved", "tenant '" + std::string(tenant) + "' is served by node '" + node + "'" + where +
                                  "; connect there",
                     std::move(detail)};
}

// --- a tenant's data --------------------------------------------------------------

namespace {

// etcd takes requests of at most 1.5 MiB (--max-request-bytes), and values
// travel as base64 in the gateway's JSON: 768 KiB a value stays under it.
constexpr std::size_t part_bytes = 768 * 1024;

std::string hex_number(std::uint64_t n, int digits) {
  char text[24];
  std::snprintf(text, sizeof text, "%0*llx", digits, static_cast<unsigned long long>(n));
  return text;
}

std::optional<std::uint64_t> parse_hex(std::string_view text) {
  std::uint64_t n = 0;
  if (text.empty() || text.size() > 16) return std::nullopt;
  for (char c : text) {
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (d < 0) return std::nullopt;
    n = n * 16 + static_cast<std::uint64_t>(d);
  }
  return n;
}

} // namespace

tenant_data::tenant_data(grove::node& n, std::shared_ptr<const cluster_view> cluster, std::string tenant)
    : node_(n), cluster_(std::move(cluster)), tenant_(std::move(tenant)), prefix_(cluster_->data_prefix(tenant_)) {}

grove::etcd::txn_request tenant_data::fenced() const {
  const std::string placement = cluster_->placement_key(tenant_);
  grove::etcd::txn_request t;
  t.when.push_back(grove::etcd::compare::value_is(placement, cluster_->node()));
  grove::etcd::compare lease{placement, grove::etcd::compare::target::lease, grove::etcd::compare::result::equal,
                             cluster_->lease(), {}};
  t.when.push_back(std::move(lease));
  return t;
}

grove::awaitable<void> tenant_data::put_fenced(std::string key, std::string value) const {
  // Every key is written once (a log round's, a snapshot part's), so the
  // write can be tried again when etcd's answer was lost (a member died
  // with it): if the key is there with this value, an earlier try landed.
  for (int attempt = 1;; ++attempt) {
    grove::etcd::txn_request t = fenced();
    t.when.push_back(grove::etcd::compare::absent(key));
    t.then.push_back(grove::etcd::txn_op::put(key, value));
    t.otherwise.push_back(grove::etcd::txn_op::get(key));
    std::optional<grove::etcd::txn_result> r;
    try {
      r = co_await cluster_->etcd().txn(std::move(t));
    } catch (const grove::error& e) {
      const bool retry = e.code() == grove::etcd::errc::outcome_unknown || e.code() == grove::etcd::errc::unavailable ||
                         e.code() == grove::etcd::errc::timeout;
      if (!retry || attempt == 3) throw;
    }
    if (!r) continue;
    if (r->succeeded) co_return;
    const auto* got = r->responses.empty() ? nullptr : std::get_if<grove::etcd::get_result>(&r->responses.front());
    if (got && !got->kvs.empty() && got->kvs.front().value == value) co_return; // the try before landed
    throw std::runtime_error("tenant '" + tenant_ + "' is no longer placed on this node under its lease: another node "
                             "serves it now");
  }
}

std::string tenant_data::store(std::string_view records, std::uint64_t generation, bool& broken) {
  if (generation != generation_) {
    generation_ = generation;
    sequence_ = 0;
  }
  std::vector<std::string> written;
  std::string failure;
  try {
    for (std::size_t at = 0; at < records.size(); at += part_bytes) {
      std::string key = prefix_ + "log/" + hex_number(generation, 16) + "/" + hex_number(++sequence_, 16);
      node_.block_on(put_fenced(key, std::string(records.substr(at, part_bytes))));
      written.push_back(std::move(key));
    }
  } catch (const std::exception& e) {
    failure = std::string("cannot store the log in etcd: ") + e.what();
  }
  if (failure.empty()) return failure;
  // Part of a large round went in: take it back, so no record of the round
  // is ever read (it was not acknowledged).
  for (const std::string& key : written) {
    try {
      node_.block_on(cluster_->etcd().erase(key));
    } catch (const std::exception& e) {
      broken = true;
      return failure + "; taking back its first part failed too (" + e.what() + ")";
    }
  }
  return failure;
}

grove::awaitable<recovered_store> tenant_data::recover(std::uint32_t max_depth,
                                                       std::function<bool(std::string_view)> keep) const {
  recovered_store r;
  grove::etcd::get_options all;
  all.prefix = true;
  const std::string snap_prefix = prefix_ + "snap/";
  grove::etcd::get_result snaps = co_await cluster_->etcd().get(snap_prefix, all);
  // generation -> (parts declared, parts by index)
  std::map<std::uint64_t, std::pair<std::optional<std::uint64_t>, std::map<std::uint64_t, std::string>>> found;
  for (auto& kv : snaps.kvs) {
    const std::string_view rest = std::string_view(kv.key).substr(snap_prefix.size());
    const std::size_t slash = rest.find('/');
    const auto generation = parse_hex(rest.substr(0, slash));
    if (!generation || slash == std::string_view::npos) continue;
    const std::string_view part = rest.substr(slash + 1);
    if (part == "parts") {
      found[*generation].first = parse_hex(kv.value);
    } else if (const auto index = parse_hex(part)) {
      found[*generation].second[*index] = std::move(kv.value);
    }
  }
  for (auto it = found.rbegin(); it != found.rend(); ++it) {
    auto& [declared, parts] = it->second;
    if (!declared || parts.size() != *declared || (!parts.empty() && parts.rbegin()->first + 1 != *declared)) continue;
    std::string text;
    for (auto& [index, bytes] : parts) text += bytes;
    loaded_snapshot s = parse_snapshot(text, "etcd " + snap_prefix + hex_number(it->first, 16), max_depth);
    r.snapshot_found = true;
    r.snapshot_generation = it->first;
    r.data = std::move(s.data);
    if (keep) {
      for (auto k = r.data.begin(); k != r.data.end();) {
        if (keep(k.key())) ++k;
        else k = r.data.erase(k);
      }
    }
    break;
  }
  r.next_generation = std::max<std::uint64_t>(1, r.snapshot_generation);
  const std::string log_prefix = prefix_ + "log/";
  grove::etcd::get_result logs = co_await cluster_->etcd().get(log_prefix, all);
  // Keys sort by generation, then sequence: one generation's rounds are
  // read as the stream they were written as.
  std::optional<std::uint64_t> current;
  std::string bytes;
  auto replay = [&](std::uint64_t generation) {
    ++r.replay.files;
    replay_records(bytes, 0, "etcd " + log_prefix + hex_number(generation, 16), false,
                   [&](std::string&& key, std::optional<json>&& value) {
                     if (keep && !keep(key)) return;
                     if (value) r.data[key] = std::move(*value);
                     else r.data.erase(key);
                   },
                   r.replay);
    bytes.clear();
  };
  for (auto& kv : logs.kvs) {
    const std::string_view rest = std::string_view(kv.key).substr(log_prefix.size());
    const auto generation = parse_hex(rest.substr(0, rest.find('/')));
    if (!generation) continue;
    r.next_generation = std::max(r.next_generation, *generation + 1);
    if (*generation < r.snapshot_generation) continue; // held by the snapshot; dropped after it
    if (current && *current != *generation) replay(*current);
    current = *generation;
    bytes += kv.value;
  }
  if (current) replay(*current);
  co_return r;
}

grove::awaitable<void> tenant_data::write_snapshot(const json& data, std::uint64_t generation) const {
  const std::string text = snapshot_text(data, generation);
  const std::string at = prefix_ + "snap/" + hex_number(generation, 16) + "/";
  std::uint64_t parts = 0;
  for (std::size_t from = 0; from < text.size(); from += part_bytes) {
    std::string key = at + hex_number(parts++, 8);
    std::string part = text.substr(from, part_bytes);
    co_await put_fenced(std::move(key), std::move(part));
  }
  std::string count_key = at + "parts";
  std::string count = hex_number(parts, 8);
  co_await put_fenced(std::move(count_key), std::move(count));
  // Whole: what it holds goes (a failure here leaves only what the next
  // snapshot drops).
  const std::string snap_from = prefix_ + "snap/";
  const std::string snap_to = prefix_ + "snap/" + hex_number(generation, 16);
  const std::string log_from = prefix_ + "log/";
  const std::string log_to = prefix_ + "log/" + hex_number(generation, 16);
  grove::etcd::erase_options older;
  older.range_end = snap_to;
  co_await cluster_->etcd().erase(snap_from, older);
  older.range_end = log_to;
  co_await cluster_->etcd().erase(log_from, older);
}

grove::awaitable<void> tenant_data::erase_all() const {
  grove::etcd::txn_request t = fenced();
  t.then.push_back(grove::etcd::txn_op::erase(prefix_, true));
  grove::etcd::txn_result r = co_await cluster_->etcd().txn(std::move(t));
  if (!r.succeeded) {
    throw std::runtime_error("tenant '" + tenant_ + "' is no longer placed on this node: its data is another node's now");
  }
}

// --- the part -------------------------------------------------------------------

namespace {

std::int64_t millis_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t).count();
}

// Failover: node `from` is gone (its lease ended: killed, cut off, or
// stopped), and with it its placement of `tenant`. Every surviving node
// tries; the one whose claim lands moves the tenant's record out of the
// dead node's store (in a transaction that holds only while that node is
// still gone) and installs it here, where its process reads its data from
// etcd and serves it.
grove::awaitable<void> take_over(std::shared_ptr<service_state> state, std::string tenant, std::string from) {
  const cluster_view& cluster = *state->cluster;
  const auto started = std::chrono::steady_clock::now();
  const std::string holder = co_await cluster.claim(tenant);
  if (!holder.empty()) co_return; // another node was first
  const std::string record_key = grove::etcd_tenant_store::record_key(cluster.tenants_prefix(from), tenant);
  grove::etcd::get_result got = co_await cluster.etcd().get(record_key);
  if (got.kvs.empty()) {
    // Uninstalled as its node went: nothing to serve.
    co_await cluster.release(tenant);
    co_return;
  }
  const grove::tenant_record record = grove::etcd_tenant_store::parse_record(tenant, got.kvs.front().value);
  grove::etcd::txn_request move;
  move.when.push_back(grove::etcd::compare::absent(cluster.node_key(from)));
  move.then.push_back(grove::etcd::txn_op::erase(record_key));
  grove::etcd::txn_result moved_out = co_await cluster.etcd().txn(std::move(move));
  if (!moved_out.succeeded) {
    // Its node is back (restarted within the moment): it keeps its tenant.
    co_await cluster.release(tenant);
    co_return;
  }
  const grove::detail::tenant_manager_base& manager = *state->tenants;
  std::string failure;
  try {
    std::optional<grove::tenant_op> op;
    if (manager.fetch(tenant)) {
      op.emplace(co_await manager.update(tenant, record.config)); // a record of an earlier stay here
    } else {
      op.emplace(co_await manager.install(tenant, record.config));
    }
    grove::tenant_outcome done = co_await op->done(std::chrono::minutes(2));
    if (!done.ok) failure = done.error;
  } catch (const std::exception& e) {
    failure = e.what();
  }
  if (!failure.empty() && !manager.fetch(tenant)) {
    // Not installed here: its record goes back where it was and its
    // placement is let go, so the next node to look takes it (orphans).
    std::string back = got.kvs.front().value;
    grove::etcd::put_result restored = co_await cluster.etcd().put(record_key, back);
    (void)restored;
    co_await cluster.release(tenant);
  }
  if (!failure.empty()) {
    state->log.log(log_level::error, "takeover_failed",
                   {{"tenant", tenant}, {"from", from}, {"msg", "it could not be started here: " + failure}});
    co_return;
  }
  state->log.log(log_level::warning, "tenant_taken_over",
                 {{"tenant", tenant},
                  {"from", from},
                  {"ms", millis_since(started)},
                  {"msg", "its node is gone; this node serves it now, with its data from etcd"}});
}

// take_over in a process of its own.
void start_takeover(const std::shared_ptr<service_state>& state, grove::node& n, std::string tenant, std::string from) {
  grove::spawn(n, [state, tenant = std::move(tenant), from = std::move(from)](grove::process& self) -> grove::awaitable<void> {
    self.set_label("groved takeover " + tenant);
    try {
      co_await take_over(state, tenant, from);
    } catch (const std::exception& e) {
      state->log.log(log_level::error, "takeover_failed", {{"tenant", tenant}, {"from", from}, {"msg", e.what()}});
    }
  });
}

// Tenants whose node went while no node watched (or whose takeover did not
// finish): a record in a store of a node that is gone, and no placement.
grove::awaitable<void> find_orphans(std::shared_ptr<service_state> state) {
  const cluster_view& cluster = *state->cluster;
  // Every node's records: P tenants/NODE/records/TENANT.
  const std::string stores = cluster.all_tenants_prefix();
  grove::etcd::get_options keys;
  keys.prefix = true;
  keys.keys_only = true;
  grove::etcd::get_result got = co_await cluster.etcd().get(stores, keys);
  // Who is alive and what is placed, as etcd says now (the cache may not be loaded yet).
  const std::string watched = cluster.watched_prefix();
  grove::etcd::get_result now = co_await cluster.etcd().get(watched, keys);
  const std::string nodes_at = cluster.node_key("");
  const std::string placed_at = cluster.placement_key("");
  std::set<std::string, std::less<>> alive, placed;
  for (const auto& kv : now.kvs) {
    if (kv.key.rfind(nodes_at, 0) == 0) alive.insert(kv.key.substr(nodes_at.size()));
    if (kv.key.rfind(placed_at, 0) == 0) placed.insert(kv.key.substr(placed_at.size()));
  }
  grove::node& n = state->registry->node();
  for (const auto& kv : got.kvs) {
    const std::string_view rest = std::string_view(kv.key).substr(stores.size());
    const std::size_t slash = rest.find('/');
    if (slash == std::string_view::npos || rest.substr(slash + 1, 8) != "records/") continue;
    std::string node(rest.substr(0, slash));
    std::string tenant(rest.substr(slash + 9));
    // A record of a node that is gone, of a tenant nobody serves.
    if (node == cluster.node() || alive.count(node) != 0) continue;
    if (placed.count(tenant) != 0) {
      // Served by another node already (installed there anew while this
      // one was gone): the gone node's record is stale; it goes, while
      // that node is still gone.
      grove::etcd::txn_request drop;
      drop.when.push_back(grove::etcd::compare::absent(cluster.node_key(node)));
      drop.then.push_back(grove::etcd::txn_op::erase(std::string(kv.key)));
      co_await cluster.etcd().txn(std::move(drop));
      continue;
    }
    state->log.log(log_level::warning, "node_gone",
                   {{"node", node}, {"tenant", tenant}, {"msg", "its node is gone and nobody serves it; taking it over"}});
    start_takeover(state, n, std::move(tenant), std::move(node));
  }
}

// The tenants a batch of events orphans: placements erased together with
// their node's name (its lease ended), other than this node's.
std::vector<std::pair<std::string, std::string>> orphans(const cluster_view& view,
                                                         const std::vector<grove::etcd::event>& events) {
  const std::string nodes = view.node_key("");
  const std::string placements = view.placement_key("");
  std::vector<std::string> gone;
  for (const auto& e : events) {
    if (e.type == grove::etcd::event_type::erase && e.kv.key.rfind(nodes, 0) == 0) gone.push_back(e.kv.key.substr(nodes.size()));
  }
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& e : events) {
    if (e.type != grove::etcd::event_type::erase || !e.prev || e.kv.key.rfind(placements, 0) != 0) continue;
    const std::string& holder = e.prev->value;
    if (holder == view.node() || std::find(gone.begin(), gone.end(), holder) == gone.end()) continue;
    out.emplace_back(e.kv.key.substr(placements.size()), holder);
  }
  return out;
}

// Keeps the cache: reads the watched range, then follows it from the next
// revision; a compacted watch reads it all again. Starts a takeover for
// each tenant a dead node leaves.
// Reads the watched range into the cache; the revision it was read at.
grove::awaitable<std::int64_t> load_cache(cluster_view& view) {
  grove::etcd::get_options all;
  all.prefix = true;
  const std::string prefix = view.watched_prefix();
  grove::etcd::get_result got = co_await view.etcd().get(prefix, all);
  view.reset(got.kvs);
  co_return got.revision;
}

grove::awaitable<void> watch_cluster(std::shared_ptr<service_state> state, grove::node& n, std::int64_t loaded_at) {
  std::shared_ptr<cluster_view> view = state->cluster;
  const std::string prefix = view->watched_prefix();
  for (;;) {
    if (loaded_at == 0) loaded_at = co_await load_cache(*view);
    grove::etcd::watch_options from;
    from.prefix = true;
    from.start_revision = loaded_at + 1;
    loaded_at = 0; // (a compacted watch reads the range again)
    from.prev_kv = true;
    grove::etcd::watch w = co_await view->etcd().watch(prefix, from);
    try {
      for (;;) {
        std::vector<grove::etcd::event> events = co_await w.next();
        view->apply(events);
        for (auto& [tenant, node] : orphans(*view, events)) {
          state->log.log(log_level::warning, "node_gone",
                         {{"node", node}, {"tenant", tenant}, {"msg", "its lease ended; taking its tenant over"}});
          start_takeover(state, n, tenant, node);
        }
      }
    } catch (const grove::error& e) {
      if (e.code() != grove::etcd::errc::compacted) throw;
    }
  }
}

class cluster_node : public grove::gen_server {
public:
  explicit cluster_node(std::shared_ptr<service_state> state)
      : state_(state), view_(state->cluster), log_(state->log) {}

  grove::awaitable<grove::action> init() {
    this_process().set_label("groved cluster");
    grove::node& n = this_process().node();
    grove::etcd::lease_keeper_options o;
    o.ttl_seconds = view_->lease_ttl_seconds();
    keeper_ = (co_await grove::start_link<grove::etcd::lease_keeper>(n, view_->etcd(), o)).id();
    grove::etcd::held_lease ask;
    const grove::etcd::lease held = co_await grove::server_ref<grove::etcd::lease_keeper>(keeper_).call(ask);
    view_->set_lease(held.id);
    // A name still held may be this node's own earlier life (killed before
    // its lease ended): wait out one TTL before calling it another groved's.
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(view_->lease_ttl_seconds() + 2);
    bool waited = false;
    while (!co_await view_->claim_name()) {
      if (std::chrono::steady_clock::now() >= give_up) {
        co_return grove::stop(grove::exit_reason::error(
            "cluster.node: '" + view_->node() + "' is held by another running groved (its key " +
            view_->node_key(view_->node()) + " outlived one lease TTL); give each groved its own cluster.node"));
      }
      if (!waited) {
        waited = true;
        log_.log(log_level::warning, "cluster_name_held",
                 {{"node", view_->node()},
                  {"msg", "this node's name is still held (an earlier life's lease?); waiting up to one lease TTL"}});
      }
      boost::asio::steady_timer pause(co_await boost::asio::this_coro::executor, std::chrono::milliseconds(250));
      co_await pause.async_wait(boost::asio::use_awaitable);
    }
    // The cache is whole before the tenants and listeners start: their
    // first requests may look a placement up.
    const std::int64_t loaded_at = co_await load_cache(*view_);
    grove::spawn_options watcher;
    watcher.link = true;
    grove::spawn(n, [state = state_, loaded_at](grove::process& self) -> grove::awaitable<void> {
      self.set_label("groved cluster watch");
      co_await watch_cluster(state, self.node(), loaded_at);
    }, watcher);
    log_.log(log_level::info, "cluster_joined",
             {{"node", view_->node()}, {"lease", std::to_string(held.id)}, {"msg", "joined the cluster"}});
    co_return grove::action{};
  }

  grove::action handle_info(grove::message m) {
    if (auto* e = m.get_if<grove::exit_message>(); e && !e->reason.is_normal()) {
      const std::string who = e->from == keeper_ ? "the lease keeper" : "the cluster watch";
      return grove::stop(grove::exit_reason::error(who + " ended (" + e->reason.to_string() +
                                                   "): this node stops serving its tenants until it holds a lease again"));
    }
    return grove::action{};
  }

  // Stopped cleanly (groved's graceful stop): the lease goes at once, and
  // with it this node's name and placements, instead of at its TTL.
  grove::awaitable<void> terminate(const grove::exit_reason& reason) {
    if (!reason.is_clean()) co_return;
    const std::int64_t lease = view_->lease();
    if (lease == 0) co_return;
    try {
      co_await view_->etcd().revoke_lease(lease);
    } catch (const grove::error& e) {
      log_.log(log_level::warning, "cluster_leave_failed",
               {{"node", view_->node()}, {"msg", std::string("could not revoke the lease: ") + e.what() +
                                                     "; its keys go when it expires"}});
    }
  }

private:
  std::shared_ptr<service_state> state_;
  std::shared_ptr<cluster_view> view_;
  logger log_;
  grove::pid keeper_;
};

} // namespace

void adopt_orphans(const std::shared_ptr<service_state>& state) {
  grove::spawn(state->registry->node(), [state](grove::process& self) -> grove::awaitable<void> {
    self.set_label("groved orphans");
    try {
      co_await find_orphans(state);
    } catch (const std::exception& e) {
      state->log.log(log_level::error, "orphans_unknown",
                     {{"msg", std::string("the tenants of nodes that are gone could not be listed: ") + e.what()}});
    }
  });
}

part cluster_part(const config& c, const std::shared_ptr<service_state>& state) {
  part p;
  p.name = "cluster";
  p.child.id = "cluster";
  grove::start_options o;
  o.trap_exit = true;
  o.init_timeout = std::chrono::seconds(c.cluster_lease_ttl_s + 10);
  p.child.start = grove::child_start::server<cluster_node>(o, state);
  p.child.shutdown = grove::shutdown_policy::timeout(std::chrono::seconds(10));
  p.describe = [state](json& ready) {
    ready["cluster"] = {{"node", state->cluster->node()}};
  };
  return p;
}

} // namespace groved
