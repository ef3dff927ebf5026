#include "tenants.hpp"

#include "snapshot.hpp"
#include "tree.hpp"
#include "cluster.hpp"

#include <grove/core/process.hpp>
#include <grove/etcd/etcd_tenant_store.hpp>
#include <grove/registry/supervised.hpp>

#include <algorithm>
#include <filesystem>
#include <stdexcept>
#include <system_error>

namespace groved {
namespace {

std::size_t limit_field(const json& config, const char* field, std::size_t fallback, std::size_t most) {
  auto it = config.find(field);
  if (it == config.end()) return fallback;
  // Any integer JSON holds (a parsed 7 is unsigned, one built in C++ signed).
  const bool in_range = it->is_number_integer() && it->get<std::int64_t>() >= 1 &&
                        static_cast<std::uint64_t>(it->get<std::int64_t>()) <= most;
  if (!in_range) {
    throw bad_request{"bad_request",
                      std::string("config.") + field + ": expected an integer from 1 to " + std::to_string(most)};
  }
  return it->get<std::size_t>();
}

json ok_reply() {
  json r = json::object();
  r["ok"] = true;
  return r;
}

// Tells the sessions that tenants changed (an uninstalled tenant's clients
// are closed); a process of its own, as the listing waits on the listeners'
// supervisors.
struct tenants_changed_notifier {
  std::shared_ptr<service_state> state;
  grove::awaitable<void> operator()(grove::process&) const { co_await notify_sessions(state); }
};

// What a recovery found, logged; the store's keys handed to its shards; its
// log for this run opened (`o` says where it goes). Throws wal_error.
void open_log(service_state& state, store& st, recovered_store& r, const std::string& where, write_ahead_log::options o) {
  for (const auto& at : r.replay.torn_at) {
    state.log.log(log_level::warning, "wal_torn_record",
                  {{"tenant", st.tenant},
                   {"at", at},
                   {"msg", "a record cut short by a crash was dropped (it had not been acknowledged)"}});
  }
  state.log.log(log_level::info, r.snapshot_found ? "snapshot_loaded" : "snapshot_absent",
                {{"tenant", st.tenant},
                 {"path", where},
                 {"keys", r.data.size()},
                 {"log_files", r.replay.files},
                 {"log_records", r.replay.records},
                 {"msg", r.snapshot_found || r.replay.records > 0 ? "store loaded" : "starting empty"}});
  st.keys = static_cast<std::int64_t>(r.data.size());
  st.set_initial(std::move(r.data));
  o.generation = r.next_generation;
  o.mode = durability_from(state.durability).value_or(durability::always);
  o.batch_interval = state.durability_interval;
  o.shards = st.shards;
  st.wal = std::make_shared<write_ahead_log>(o, state.log);
}

// The snapshot, then the log from its generation on; then this run's log.
// Throws std::runtime_error saying why (and logs it, as the daemon did
// before tenants: snapshot_unreadable, wal_unreadable).
void load_store(service_state& state, store& st) {
  recovered_store r;
  try {
    r = recover_store(st.data_path, state.max_depth, false);
  } catch (const snapshot_error& e) {
    state.log.log(log_level::error, "snapshot_unreadable",
                  {{"tenant", st.tenant},
                   {"path", st.data_path},
                   {"msg", std::string(e.what()) + "; not starting, so it is not overwritten"}});
    throw std::runtime_error(e.what());
  } catch (const wal_error& e) {
    state.log.log(log_level::error, "wal_unreadable",
                  {{"tenant", st.tenant}, {"path", wal_directory(st.data_path)}, {"msg", e.what()}});
    throw std::runtime_error(e.what());
  }
  write_ahead_log::options o;
  o.directory = wal_directory(st.data_path);
  try {
    open_log(state, st, r, st.data_path, std::move(o));
  } catch (const wal_error& e) {
    state.log.log(log_level::error, "wal_unusable", {{"tenant", st.tenant}, {"msg", e.what()}});
    throw std::runtime_error(e.what());
  }
  // Left by a crash between a snapshot and the removal of what it holds.
  st.wal->remove_before(r.snapshot_generation);
}

// A clustered tenant's store: its snapshot and log from etcd (wherever they
// were written: this node, or the one it took the tenant over from), then
// this run's log, going to etcd too. Throws std::runtime_error saying why.
grove::awaitable<void> load_cluster_store(service_state& state, store& st) {
  recovered_store r;
  std::string failure;
  try {
    r = co_await st.data->recover(state.max_depth, {});
  } catch (const std::exception& e) {
    failure = std::string("its data in etcd (") + st.data->prefix() + ") cannot be read: " + e.what();
  }
  if (!failure.empty()) {
    state.log.log(log_level::error, "tenant_data_unreadable", {{"tenant", st.tenant}, {"msg", failure}});
    throw std::runtime_error(failure);
  }
  write_ahead_log::options o;
  o.remote = st.data;
  open_log(state, st, r, "etcd " + st.data->prefix(), std::move(o));
}

// A new log generation, then every shard's keys (each once its waiting
// writes are stored), written as the snapshot holding the older
// generations, which are then removed.
grove::awaitable<bool> write_store_snapshot(service_state& state, store& st) {
  const std::uint64_t next = st.wal->generation() + 1;
  std::string failure;
  std::size_t count = 0;
  try {
    st.wal->rotate(next);
    json data = json::object();
    for (std::size_t i = 0; i < st.shards; ++i) {
      grove::pid p = state.registry->whereis(st.shard_name(i));
      if (!p) throw snapshot_error("shard " + std::to_string(i) + " is not running");
      json part = co_await grove::server_ref<shard>(p).call(dump_request{}, std::chrono::seconds(60));
      if (!part.contains("data")) {
        throw snapshot_error("shard " + std::to_string(i) + ": " + part["error"].value("message", std::string("failed")));
      }
      for (auto it = part["data"].begin(); it != part["data"].end(); ++it) data[it.key()] = std::move(it.value());
    }
    if (st.data) {
      co_await st.data->write_snapshot(data, next);
    } else {
      write_snapshot(st.data_path, data, next);
      st.wal->remove_before(next);
    }
    count = data.size();
  } catch (const std::exception& e) {
    failure = e.what();
  }
  if (!failure.empty()) {
    state.log.log(log_level::error, "snapshot_failed",
                  {{"tenant", st.tenant},
                   {"path", st.data ? "etcd " + st.data->prefix() : st.data_path},
                   {"msg", failure + "; the log still holds every write"}});
    co_return false;
  }
  state.log.log(log_level::info, "snapshot_written",
                {{"tenant", st.tenant},
                 {"path", st.data ? "etcd " + st.data->prefix() : st.data_path},
                 {"keys", count},
                 {"wal_generation", next}});
  co_return true;
}

std::string tenant_field(const json& request) {
  auto it = request.find("tenant");
  if (it == request.end() || !it->is_string() || !is_tenant_id(it->get_ref<const std::string&>())) {
    throw bad_request{"bad_request", "tenant: expected " + std::string(tenant_id_form)};
  }
  return it->get<std::string>();
}

// A refusal of the manager, as a reply code.
bad_request manager_refusal(const grove::error& e) {
  const std::error_code c = e.code();
  if (c == grove::tenant_errc::already_exists) return {"already_exists", e.what()};
  if (c == grove::tenant_errc::tenant_not_found) return {"not_found", e.what()};
  if (c == grove::tenant_errc::busy) return {"busy", e.what()};
  if (c == grove::tenant_errc::too_many_tenants) return {"too_many_tenants", e.what()};
  return {"tenant_failed", e.what()};
}

// Waits until tenant `id`'s process has run: "" when its store is open.
grove::awaitable<std::string> await_store(const grove::detail::tenant_manager_base& m, const std::string& id) {
  const grove::pid p = m.whereis_pid(id);
  if (!p) co_return "its process is not running";
  store_status s;
  std::string why = co_await grove::server_ref<store_tenant>(p).call(s, std::chrono::seconds(120));
  co_return why;
}

grove::awaitable<grove::pid> start_tenants(grove::child_start inner, std::shared_ptr<tenant_manager_t> manager,
                                           std::shared_ptr<service_state> state, grove::node& n) {
  const grove::pid subtree = co_await inner(n);
  const std::string& id = state->default_tenant;
  if (state->cluster) {
    // One node of the cluster serves the default tenant: the first to place
    // it. The others send its clients there.
    const std::string holder = co_await state->cluster->claim(id);
    if (!holder.empty()) {
      state->log.log(log_level::info, "default_tenant_elsewhere",
                     {{"tenant", id}, {"node", holder}, {"msg", "the default tenant is served by another node"}});
      adopt_orphans(state);
      co_return subtree;
    }
  }
  if (!manager->fetch(id)) {
    grove::tenant_op op = co_await manager->install(id);
    grove::tenant_outcome done = co_await op.done();
    if (!done.ok) throw std::runtime_error("tenants.default: the install of tenant '" + id + "' failed: " + done.error);
    state->log.log(log_level::info, "tenant_installed", {{"tenant", id}, {"msg", "the default tenant (tenants.default)"}});
  }
  const std::string why = co_await await_store(*manager, id);
  if (!why.empty()) throw std::runtime_error("tenant '" + id + "' (tenants.default): " + why);
  // Its store failed to open on an earlier start and opens now (the file was
  // mended): the record says running again.
  if (std::optional<grove::tenant_record> r = manager->fetch(id); r && r->state == grove::tenant_state::error_occurred) {
    grove::tenant_op op = co_await manager->update(id, r->config, r->capabilities);
    co_await op.done();
  }
  if (state->cluster) adopt_orphans(state);
  co_return subtree;
}

} // namespace

tenant_limits limits_from(const json& config, const tenant_limits& defaults) {
  if (!config.is_object()) throw bad_request{"bad_request", "config: expected a JSON object of limits"};
  for (auto it = config.begin(); it != config.end(); ++it) {
    if (it.key() != "max_keys" && it.key() != "max_key_bytes" && it.key() != "max_subscriptions" && it.key() != "shards") {
      throw bad_request{"bad_request", "config." + it.key() +
                                           ": unknown (expected max_keys, max_key_bytes, max_subscriptions, shards)"};
    }
  }
  tenant_limits l;
  l.max_keys = limit_field(config, "max_keys", defaults.max_keys, 1'000'000'000);
  l.max_key_bytes = limit_field(config, "max_key_bytes", defaults.max_key_bytes, 65536);
  l.max_subscriptions = limit_field(config, "max_subscriptions", defaults.max_subscriptions, 1'000'000);
  l.shards = limit_field(config, "shards", defaults.shards, 1024);
  return l;
}

json record_json(const grove::tenant_record& r, const service_state& state) {
  json j = json::object();
  j["id"] = r.id;
  j["state"] = std::string(grove::to_string(r.state));
  j["config"] = r.config;
  j["generation"] = r.generation;
  j["last_error"] = r.last_error;
  if (auto st = state.find_store(r.id)) j["keys"] = st->keys.load(std::memory_order_relaxed);
  return j;
}

// --- store_tenant ---------------------------------------------------------------

store_tenant::store_tenant(std::shared_ptr<service_state> state) : state_(std::move(state)) {}

grove::tenant_result<json> store_tenant::handle_install(const grove::tenant_info& t) {
  if (!is_tenant_id(t.id)) return grove::tenant_error("tenant: expected " + std::string(tenant_id_form));
  try {
    limits_from(t.config, state_->defaults);
  } catch (const bad_request& e) {
    return grove::tenant_error(e.message);
  }
  // Left behind by an uninstall cut short by a crash: a new tenant starts empty.
  if (const std::string path = state_->store_path(t.id); !path.empty() && t.id != state_->default_tenant) {
    std::error_code ec;
    std::filesystem::remove(path, ec);
    std::filesystem::remove_all(wal_directory(path), ec);
  }
  return grove::tenant_ok();
}

grove::awaitable<std::string> store_tenant::open(const grove::tenant_info& t) {
  if (store_) co_return std::string();
  tenant_limits limits;
  try {
    limits = limits_from(t.config, state_->defaults);
  } catch (const bad_request& e) {
    co_return e.message;
  }
  if (state_->cluster) {
    // Served by one node only: this one, once its placement is ours.
    std::string holder;
    try {
      holder = co_await state_->cluster->claim(t.id);
    } catch (const std::exception& e) {
      co_return std::string("its placement could not be claimed in etcd: ") + e.what();
    }
    if (!holder.empty()) co_return "it is placed on node '" + holder + "' (cluster.node), which serves it";
  }
  auto st = std::make_shared<store>(t.id, limits, state_->store_path(t.id));
  // A process of this tenant that was killed left its store behind: what its
  // log still queues is written before the files are read.
  if (std::shared_ptr<store> old = state_->find_store(t.id); old && old->wal) old->wal->flush();
  std::string failure;
  if (state_->cluster) {
    // Clustered: the data is in etcd, where any node that takes the tenant over finds it.
    st->data = std::make_shared<tenant_data>(this_process().node(), state_->cluster, t.id);
    try {
      co_await load_cluster_store(*state_, *st);
    } catch (const std::exception& e) {
      failure = e.what();
    }
  } else {
    try {
      if (st->data_path.empty()) {
        st->set_initial(json::object());
      } else {
        std::filesystem::create_directories(std::filesystem::path(st->data_path).parent_path());
        load_store(*state_, *st);
      }
    } catch (const std::exception& e) {
      failure = e.what();
    }
  }
  if (!failure.empty()) co_return failure;

  grove::node& n = this_process().node();
  std::vector<grove::child_spec> shards;
  for (std::size_t i = 0; i < st->shards; ++i) {
    grove::start_options placement;
    placement.worker = i % n.size();
    placement.trap_exit = true;
    if (st->data) placement.init_timeout = std::chrono::seconds(60); // a restarted shard reads its keys from etcd
    grove::child_spec spec;
    spec.id = "shard-" + std::to_string(i);
    spec.start = grove::child_start::server<shard>(placement, state_, st, i);
    shards.push_back(grove::registered(*state_->registry, st->shard_name(i), std::move(spec)));
  }
  grove::supervisor_options o;
  o.strategy = grove::restart_strategy::one_for_one;
  o.max_restarts = 5;
  o.report = [log = state_->log, id = t.id](const grove::supervisor_report& r) {
    log.log(log_level::error, "supervisor_report",
            {{"tenant", id}, {"context", r.context}, {"child", r.child_id}, {"reason", r.reason.to_string()}});
  };
  try {
    shards_ = co_await grove::supervisor::start_link(n, std::move(shards), o);
  } catch (const std::exception& e) {
    failure = std::string("its shards did not start: ") + e.what();
  }
  if (!failure.empty()) co_return failure;
  store_ = st;
  state_->add_store(st);
  co_return std::string();
}

grove::awaitable<void> store_tenant::close() {
  if (!store_) co_return;
  state_->remove_store(store_);
  if (shards_) {
    const grove::pid p = shards_.id();
    this_process().unlink(p);
    try {
      co_await shards_.stop(grove::exit_reason::shutdown(), std::chrono::seconds(30));
    } catch (const grove::error&) {
      // Already gone.
    }
  }
  shards_ = grove::supervisor();
  store_.reset();
}

grove::awaitable<grove::tenant_reply<json>> store_tenant::handle_run(const grove::tenant_info& t, json&) {
  this_process().set_label("groved tenant " + t.id);
  failure_ = co_await open(t);
  if (!failure_.empty()) {
    state_->log.log(log_level::error, "tenant_unavailable", {{"tenant", t.id}, {"msg", failure_}});
    co_return grove::tenant_reply<json>(grove::tenant_error(failure_));
  }
  co_return grove::tenant_reply<json>(grove::tenant_ok());
}

grove::awaitable<grove::tenant_result<json>> store_tenant::handle_update(const grove::tenant_update& u,
                                                                         const grove::tenant_info& t, json&) {
  tenant_limits limits;
  try {
    limits = limits_from(u.config, state_->defaults);
  } catch (const bad_request& e) {
    co_return grove::tenant_result<json>(grove::tenant_error(e.message));
  }
  const tenant_limits before = limits_from(t.config, state_->defaults);
  if (limits.shards != before.shards) {
    co_return grove::tenant_result<json>(grove::tenant_error(
        "config.shards: fixed at install (" + std::to_string(before.shards) + "); keys are placed by it"));
  }
  if (store_) {
    store_->set_limits(limits);
    co_return grove::tenant_result<json>(grove::tenant_ok());
  }
  // Its store did not open before (error_occurred): try again with the new config.
  grove::tenant_info next = t;
  next.config = u.config;
  failure_ = co_await open(next);
  if (!failure_.empty()) co_return grove::tenant_result<json>(grove::tenant_error(failure_));
  co_return grove::tenant_result<json>(grove::tenant_ok());
}

grove::awaitable<grove::tenant_result<json>> store_tenant::handle_uninstall(const grove::tenant_info& t, json&) {
  if (t.id == state_->default_tenant) {
    co_return grove::tenant_result<json>(
        grove::tenant_error("the default tenant (tenants.default) cannot be uninstalled"));
  }
  co_await close();
  if (state_->cluster) {
    try {
      tenant_data data(this_process().node(), state_->cluster, t.id);
      co_await data.erase_all();
    } catch (const std::exception& e) {
      co_return grove::tenant_result<json>(grove::tenant_error(std::string("its data in etcd could not be deleted: ") + e.what()));
    }
  }
  if (const std::string path = state_->store_path(t.id); !path.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(wal_directory(path), ec);
    std::filesystem::remove(path, ec);
    if (ec) {
      state_->log.log(log_level::warning, "tenant_files_left",
                      {{"tenant", t.id}, {"path", path}, {"msg", "could not be removed: " + ec.message()}});
    }
  }
  if (state_->cluster) {
    try {
      co_await state_->cluster->release(t.id);
    } catch (const std::exception& e) {
      // Its placement goes with this node's lease.
      state_->log.log(log_level::warning, "placement_left",
                      {{"tenant", t.id}, {"msg", std::string("its placement could not be dropped: ") + e.what()}});
    }
  }
  state_->log.log(log_level::info, "tenant_uninstalled", {{"tenant", t.id}, {"msg", "its keys were deleted"}});
  co_return grove::tenant_result<json>(grove::tenant_ok());
}

grove::awaitable<std::string> store_tenant::handle_call(store_status) {
  if (store_) co_return std::string();
  if (failure_.empty()) failure_ = co_await open(info());
  co_return failure_.empty() && !store_ ? std::string("its store is not open") : failure_;
}

grove::awaitable<bool> store_tenant::handle_call(snapshot_request) {
  if (!store_ || !store_->wal) co_return true;
  const bool written = co_await write_store_snapshot(*state_, *store_);
  co_return written;
}

grove::action store_tenant::handle_info(grove::message m) {
  if (auto* e = m.get_if<grove::exit_message>(); e && shards_ && e->from == shards_.id()) {
    // Its shards gave up: the tenant's process ends, and the manager starts it again.
    return grove::stop(grove::exit_reason::error("its store's shards failed: " + e->reason.to_string()));
  }
  return {};
}

grove::awaitable<void> store_tenant::terminate(const grove::exit_reason&) { co_await close(); }

// --- the manager ------------------------------------------------------------------

namespace {

// A clustered groved's tenant records: an etcd_tenant_store under
// P tenants/NODE/, made at the manager's first load, on the manager's own
// thread (its constructor waits for etcd, which a node worker must not).
class cluster_tenant_store final : public grove::tenant_store {
public:
  cluster_tenant_store(grove::node& n, grove::etcd::client etcd, std::string prefix)
      : node_(n), etcd_(std::move(etcd)), prefix_(std::move(prefix)) {}
  grove::tenant_store_contents load() override { return inner().load(); }
  std::vector<std::uint64_t> commit(grove::tenant_change change) override { return inner().commit(std::move(change)); }
  void acknowledge(const std::vector<std::uint64_t>& sequences) override { inner().acknowledge(sequences); }
  std::string describe() const override { return "etcd " + prefix_; }
  bool may_block() const noexcept override { return true; }

private:
  grove::etcd_tenant_store& inner() {
    if (!inner_) {
      grove::etcd_tenant_store_options o;
      o.prefix = prefix_;
      inner_ = std::make_unique<grove::etcd_tenant_store>(node_, etcd_, std::move(o));
    }
    return *inner_;
  }

  grove::node& node_;
  grove::etcd::client etcd_;
  std::string prefix_;
  std::unique_ptr<grove::etcd_tenant_store> inner_;
};

} // namespace

std::shared_ptr<tenant_manager_t> make_tenant_manager(const std::shared_ptr<service_state>& state) {
  grove::tenant_manager_options o;
  if (state->cluster) {
    o.store = std::make_shared<cluster_tenant_store>(state->registry->node(), state->cluster->etcd(),
                                                     state->cluster->tenants_prefix());
  } else {
    o.store_file = state->tenants_file(); // empty: in memory
  }
  if (state->max_tenants > 0) o.max_tenants = state->max_tenants;
  o.name = "groved";
  auto m = std::make_shared<tenant_manager_t>(std::move(o), state);
  state->tenants = m.get();
  return m;
}

grove::awaitable<bool> snapshot_tenants(std::shared_ptr<service_state> state) {
  bool all = true;
  if (!state->tenants) co_return all;
  for (const auto& st : state->stores()) {
    if (!st->wal) continue;
    const grove::pid p = state->tenants->whereis_pid(st->tenant);
    if (!p) continue;
    bool written = false;
    try {
      snapshot_request r;
      written = co_await grove::server_ref<store_tenant>(p).call(r, std::chrono::seconds(120));
    } catch (const grove::error& e) {
      state->log.log(log_level::error, "snapshot_failed",
                     {{"tenant", st->tenant}, {"msg", std::string(e.what()) + "; the log still holds every write"}});
    }
    all = all && written;
  }
  co_return all;
}

// --- the part -------------------------------------------------------------------

namespace {

struct snapshot_tick {};

// Writes every tenant's snapshot each snapshot_interval_ms.
class snapshot_timer : public grove::gen_server {
public:
  snapshot_timer(std::shared_ptr<service_state> state, std::chrono::milliseconds every)
      : state_(std::move(state)), every_(every) {}

  void init() {
    this_process().set_label("groved snapshot timer");
    grove::send_after(self(), every_, snapshot_tick{});
  }
  grove::awaitable<void> handle_info(grove::message m) {
    if (!m.get_if<snapshot_tick>()) co_return;
    co_await snapshot_tenants(state_);
    grove::send_after(self(), every_, snapshot_tick{});
  }

private:
  std::shared_ptr<service_state> state_;
  std::chrono::milliseconds every_;
};

} // namespace

part tenants_part(const config& c, const std::shared_ptr<service_state>& state) {
  std::shared_ptr<tenant_manager_t> manager = make_tenant_manager(state);
  grove::child_spec subtree = manager->child_spec("manager");
  grove::child_start inner = subtree.start;
  subtree.start = [inner, manager, state](grove::node& n) { return start_tenants(inner, manager, state, n); };
  std::vector<grove::child_spec> children{std::move(subtree)};
  const bool persisted = !c.data_path.empty() || state->cluster; // clustered: snapshots go to etcd
  if (persisted && c.snapshot_interval.count() > 0) {
    children.push_back(grove::child_spec{
        .id = "snapshots", .start = grove::child_start::server<snapshot_timer>(grove::start_options{}, state, c.snapshot_interval)});
  }
  grove::supervisor_options o;
  o.strategy = grove::restart_strategy::rest_for_one;
  o.max_restarts = 5;
  o.report = [log = state->log](const grove::supervisor_report& r) {
    log.log(log_level::error, "supervisor_report",
            {{"context", r.context}, {"child", r.child_id}, {"reason", r.reason.to_string()}});
  };
  part p;
  p.name = "tenants";
  p.child = grove::supervisor_child("tenants", std::move(children), o);
  if (persisted) {
    p.persist = [state]() -> grove::awaitable<bool> { return snapshot_tenants(state); };
  }
  return p;
}

// --- the tenant.* ops (a session's) -------------------------------------------------

grove::awaitable<void> session::unplace(const std::string& id) {
  try {
    co_await state_->cluster->release(id);
  } catch (const std::exception& e) {
    state_->log.log(log_level::warning, "placement_left",
                    {{"tenant", id}, {"msg", std::string("a failed install's placement could not be dropped: ") + e.what()}});
  }
}

grove::awaitable<json> session::tenant_admin(const std::string& op, const json& request) {
  if (!state_->tenants) throw bad_request{"unavailable", "the tenant manager is not running"};
  const grove::detail::tenant_manager_base& m = *state_->tenants;
  if (op == "tenant.list") {
    std::vector<grove::tenant_record> records = m.list();
    std::sort(records.begin(), records.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
    json list = json::array();
    for (const auto& r : records) list.push_back(record_json(r, *state_));
    json r = ok_reply();
    r["tenants"] = std::move(list);
    if (state_->cluster) {
      // This node's records above; where every tenant of the cluster is served here.
      json placements = json::object();
      for (const auto& [tenant, node] : state_->cluster->placements()) placements[tenant] = node;
      r["cluster"] = {{"node", state_->cluster->node()}, {"placements", std::move(placements)}};
    }
    co_return r;
  }
  const std::string id = tenant_field(request);
  bool claimed = false; // this install placed the tenant here
  if (state_->cluster && !m.fetch(id)) {
    // Another node's tenant is that node's to change; a new one is placed
    // here before its record is written, so no two nodes install it.
    std::optional<std::string> node = state_->cluster->placed_on(id);
    if (op == "tenant.install") {
      std::string holder;
      try {
        holder = co_await state_->cluster->claim(id);
      } catch (const grove::error& e) {
        throw bad_request{"unavailable", "tenant '" + id + "' could not be placed (etcd): " + e.what()};
      }
      if (!holder.empty()) node = holder;
      claimed = holder.empty();
    }
    if (node && *node != state_->cluster->node()) throw moved(*state_->cluster, id, *node);
  }
  if (op == "tenant.get") {
    std::optional<grove::tenant_record> record = m.fetch(id);
    if (!record) throw bad_request{"not_found", "no tenant '" + id + "'"};
    json r = ok_reply();
    r["tenant"] = record_json(*record, *state_);
    co_return r;
  }
  const bool install = op == "tenant.install";
  if (!install && op != "tenant.update" && op != "tenant.uninstall") {
    throw bad_request{"unknown_op", "unknown op '" + op +
                                        "'; the tenant ops are tenant.install, tenant.update, tenant.uninstall, "
                                        "tenant.get, tenant.list"};
  }
  json config = json::object();
  if (op != "tenant.uninstall") {
    if (auto c = request.find("config"); c != request.end()) config = *c;
    else if (!install) throw bad_request{"bad_request", "config: required for tenant.update (a JSON object of limits)"};
    limits_from(config, state_->defaults); // the reply names a bad field
  }
  if (op == "tenant.uninstall" && id == state_->default_tenant) {
    throw bad_request{"forbidden", "the default tenant (tenants.default) cannot be uninstalled"};
  }
  std::optional<grove::tenant_op> started;
  std::optional<bad_request> refused;
  try {
    if (install) started.emplace(co_await m.install(id, config));
    else if (op == "tenant.update") started.emplace(co_await m.update(id, config));
    else started.emplace(co_await m.uninstall(id));
  } catch (const grove::error& e) {
    refused = manager_refusal(e);
  }
  if (refused && claimed) co_await unplace(id);
  if (refused) throw *refused;
  grove::tenant_outcome outcome = co_await started->done(std::chrono::minutes(2));
  if (!outcome.ok && claimed && !m.fetch(id)) co_await unplace(id);
  if (!outcome.ok) throw bad_request{"tenant_failed", op + " of '" + id + "' failed: " + outcome.error};
  json r = ok_reply();
  if (op == "tenant.uninstall") {
    grove::spawn(this_process().node(), tenants_changed_notifier{state_});
    r["tenant"] = id;
    co_return r;
  }
  // The record says running once its store is open (or error_occurred, saying why not).
  co_await await_store(m, id);
  std::optional<grove::tenant_record> record = m.fetch(id);
  if (!record) throw bad_request{"not_found", "tenant '" + id + "' was uninstalled meanwhile"};
  r["tenant"] = record_json(*record, *state_);
  state_->log.log(log_level::info, install ? "tenant_installed" : "tenant_updated",
                  {{"tenant", id}, {"peer", peer()}, {"config", config}});
  co_return r;
}

} // namespace groved
