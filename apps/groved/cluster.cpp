// The cluster part and the cluster view (cluster.hpp).
#include "cluster.hpp"

#include "service.hpp"

#include <grove/core/gen_server.hpp>
#include <grove/etcd/lease_keeper.hpp>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <chrono>
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
  if (holder != node_) {
    if (!holder.empty()) co_return holder;
    co_return co_await claim(std::move(tenant)); // erased between the compare and the get: try again
  }
  grove::etcd::txn_request again;
  again.when.push_back(grove::etcd::compare::value_is(key, node_));
  again.then.push_back(grove::etcd::txn_op::put(key, node_, lease));
  again.otherwise.push_back(grove::etcd::txn_op::get(key));
  grove::etcd::txn_result second = co_await etcd_.txn(std::move(again));
  if (second.succeeded) co_return std::string();
  co_return co_await claim(std::move(tenant)); // it changed hands meanwhile: ask again
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

// --- the part -------------------------------------------------------------------

namespace {

// Keeps the cache: reads the watched range, then follows it from the next
// revision; a compacted watch reads it all again.
grove::awaitable<void> watch_cluster(std::shared_ptr<cluster_view> view) {
  const std::string prefix = view->watched_prefix();
  for (;;) {
    grove::etcd::get_options all;
    all.prefix = true;
    grove::etcd::get_result got = co_await view->etcd().get(prefix, all);
    view->reset(got.kvs);
    grove::etcd::watch_options from;
    from.prefix = true;
    from.start_revision = got.revision + 1;
    grove::etcd::watch w = co_await view->etcd().watch(prefix, from);
    try {
      for (;;) {
        std::vector<grove::etcd::event> events = co_await w.next();
        view->apply(events);
      }
    } catch (const grove::error& e) {
      if (e.code() != grove::etcd::errc::compacted) throw;
    }
  }
}

class cluster_node : public grove::gen_server {
public:
  cluster_node(std::shared_ptr<cluster_view> view, logger log) : view_(std::move(view)), log_(std::move(log)) {}

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
    std::shared_ptr<cluster_view> view = view_;
    grove::spawn_options watcher;
    watcher.link = true;
    grove::spawn(n, [view](grove::process& self) -> grove::awaitable<void> {
      self.set_label("groved cluster watch");
      co_await watch_cluster(view);
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
  std::shared_ptr<cluster_view> view_;
  logger log_;
  grove::pid keeper_;
};

} // namespace

part cluster_part(const config& c, const std::shared_ptr<service_state>& state) {
  part p;
  p.name = "cluster";
  p.child.id = "cluster";
  grove::start_options o;
  o.trap_exit = true;
  o.init_timeout = std::chrono::seconds(c.cluster_lease_ttl_s + 10);
  p.child.start = grove::child_start::server<cluster_node>(o, state->cluster, state->log);
  p.child.shutdown = grove::shutdown_policy::timeout(std::chrono::seconds(10));
  p.describe = [state](json& ready) {
    ready["cluster"] = {{"node", state->cluster->node()}};
  };
  return p;
}

} // namespace groved
