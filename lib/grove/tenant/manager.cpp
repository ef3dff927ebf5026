#include <grove/tenant/manager.hpp>

#include <grove/core/detail/runtime.hpp>
#include <grove/core/event.hpp>
#include <grove/registry/detail/name_table.hpp>
#include <grove/supervisor/supervisor.hpp>
#include <grove/telemetry/metrics.hpp>
#include <grove/tenant/sqlite_store.hpp>

#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>

#include <algorithm>
#include <array>
#include <deque>
#include <mutex>
#include <unordered_map>
#include <utility>

namespace grove {

namespace asio = boost::asio;

// -- the sink and the op handle ------------------------------------------------

awaitable<void> tenant_event_sink::operator()(const tenant_event& e) const {
  if (plain_) {
    plain_(e);
    co_return;
  }
  co_await coroutine_(e);
}

awaitable<tenant_outcome> tenant_op::done(duration timeout) {
  if (!done_) throw grove::error(errc::invalid_argument, "tenant_op::done: awaited twice, or an empty op");
  std::shared_ptr<detail::reply_slot<tenant_outcome>> slot = std::move(done_);
  co_await detail::await_reply(slot, timeout);
  co_return slot->take();
}

namespace detail {

namespace {

using steady = std::chrono::steady_clock;

/// What the lock-free table holds per tenant.
struct tenant_view {
  tenant_record record;
  pid process;
};

tenant_clock::time_point now_us() {
  return std::chrono::time_point_cast<std::chrono::microseconds>(tenant_clock::now());
}

// Requests to the manager's process.
struct install_request {
  using reply_type = tenant_op;
  std::string id;
  nlohmann::json config;
  nlohmann::json capabilities;
};
struct update_request {
  using reply_type = tenant_op;
  std::string id;
  nlohmann::json config;
  nlohmann::json capabilities;
};
struct uninstall_request {
  using reply_type = tenant_op;
  std::string id;
};
struct persist_request {
  using reply_type = bool;
  std::string id;
  nlohmann::json snapshot;
};
struct restart_due {
  std::string id;
  std::uint64_t generation = 0;
};
struct relay_batch {
  std::vector<tenant_event> events;
};

} // namespace

struct tenant_manager_shared {
  tenant_manager_shared(tenant_manager_options o, tenant_starter s)
      : options(std::move(o)), start_tenant(std::move(s)) {
    store = options.store;
    if (!store && options.store_file.empty()) store = std::make_shared<memory_tenant_store>();
  }

  /// Opens store_file the first time the subtree starts. Throws
  /// store_refused (naming the file) and leaves the file as it was.
  void open_store() {
    std::lock_guard lock(mutex);
    if (!store) store = std::make_shared<sqlite_tenant_store>(options.store_file);
  }

  tenant_manager_options options;
  tenant_starter start_tenant;
  std::shared_ptr<tenant_store> store;
  name_table<std::shared_ptr<const tenant_view>> table{1024};
  /// The store's calls run here, off the node's workers: a commit waits for
  /// the disk, and the processes sharing the manager's worker must not.
  /// One thread: the store contract's "one thread at a time".
  asio::thread_pool store_thread{1};

  std::mutex mutex;
  pid root;     // the subtree's supervisor
  pid tenants;  // the dynamic supervisor of tenant processes
  pid manager;  // the manager's process

  /// Built-in metrics, when the node has a registry: set by the manager's
  /// process as it starts. Last member: removed before what it reads.
  telemetry::counter_family* events_family = nullptr;
  telemetry::scoped_collector states_collector;

  pid get(pid tenant_manager_shared::*which) {
    std::lock_guard lock(mutex);
    return this->*which;
  }
  void set(pid tenant_manager_shared::*which, pid value) {
    std::lock_guard lock(mutex);
    this->*which = value;
  }

  /// Runs f() on the store's thread; the calling process waits without
  /// blocking its worker. Through a reply slot, not co_spawn: a kill of the
  /// waiting process fails the slot (it unwinds at once) and the store call,
  /// which never blocks forever, finishes on its own; co_spawn's
  /// cancellation handler could outlive the state it signals.
  template <class F>
  awaitable<std::invoke_result_t<F&>> on_store(F f) {
    using R = std::invoke_result_t<F&>;
    if (!store->may_block()) co_return f(); // the memory store: no thread hop
    auto slot = std::make_shared<reply_slot<R>>();
    asio::post(store_thread, [slot, f = std::move(f), what = store->describe()]() mutable {
      try {
        slot->set(f());
      } catch (const grove::error& e) {
        slot->fail(e.code(), exit_reason::error(e.what()));
      } catch (const std::exception& e) {
        slot->fail(tenant_errc::store_failed, exit_reason::error("tenant store " + what + ": " + e.what()));
      }
    });
    co_await await_reply(slot, infinity);
    co_return slot->take();
  }
};

namespace {

// -- the event relay -------------------------------------------------------------

/// Delivers the outbox to the sink in sequence order (so in order per
/// tenant), one event at a time; a failing event is retried with backoff and
/// holds the ones behind it. Delivered events are acknowledged to the store
/// in batches: a crash before that re-delivers them (at least once).
struct relay_body {
  std::shared_ptr<tenant_manager_shared> shared;

  awaitable<void> operator()(process& self) {
    self.set_label("tenant events " + shared->options.name);
    std::deque<tenant_event> queue;
    std::vector<std::uint64_t> delivered;
    backoff_policy backoff = shared->options.sink_backoff;
    backoff_random random;
    std::optional<steady::time_point> retry_at;
    auto take = [&](message& m) {
      if (auto* b = m.get_if<relay_batch>()) {
        for (tenant_event& e : b->events) queue.push_back(std::move(e));
      }
    };
    for (;;) {
      if (queue.empty() || delivered.size() >= 64) {
        if (!delivered.empty()) {
          std::vector<std::uint64_t> batch = std::move(delivered);
          delivered.clear();
          tenant_store* store = shared->store.get();
          auto acknowledge = [store, batch = std::move(batch)] {
            store->acknowledge(batch);
            return true;
          };
          co_await shared->on_store(std::move(acknowledge));
        }
        if (queue.empty()) {
          message m = co_await self.receive();
          take(m);
          continue;
        }
      }
      if (retry_at) {
        const auto now = steady::now();
        if (now < *retry_at) {
          if (std::optional<message> m = co_await self.receive_for(*retry_at - now)) take(*m);
          continue;
        }
        retry_at.reset();
      }
      std::string failure;
      try {
        co_await shared->options.event_sink(queue.front());
      } catch (const std::exception& e) {
        failure = e.what();
        if (failure.empty()) failure = "the sink threw";
      } catch (...) {
        failure = "the sink threw a non-standard exception";
      }
      if (failure.empty()) {
        delivered.push_back(queue.front().sequence);
        queue.pop_front();
        backoff.reset();
        continue;
      }
      const duration delay = backoff.next(random);
      retry_at = steady::now() + delay;
      grove::emit(event{.level = event_level::warning,
                        .layer = "tenant",
                        .name = "sink_failed",
                        .fields = {{"tenant", queue.front().tenant},
                                   {"sequence", std::to_string(queue.front().sequence)},
                                   {"error", std::move(failure)},
                                   {"retry_in_ms", std::to_string(
                                                       std::chrono::duration_cast<std::chrono::milliseconds>(delay).count())}}});
    }
  }
};

// -- the manager's process -------------------------------------------------------

class manager_server : public gen_server {
public:
  explicit manager_server(std::shared_ptr<tenant_manager_shared> shared) : shared_(std::move(shared)) {}

  awaitable<void> init();

  awaitable<call_result<tenant_op>> handle_call(install_request r, from<tenant_op> caller);
  awaitable<call_result<tenant_op>> handle_call(update_request r, from<tenant_op> caller);
  awaitable<call_result<tenant_op>> handle_call(uninstall_request r, from<tenant_op> caller);
  awaitable<call_result<bool>> handle_call(persist_request r, from<bool> caller);
  awaitable<action> handle_info(message m);
  void terminate(const exit_reason&);

private:
  struct pending_op {
    std::uint64_t id = 0;
    tenant_event_kind kind = tenant_event_kind::install;
    from<tenant_op> caller;                               // answered once the callback decided
    std::shared_ptr<reply_slot<tenant_outcome>> done;     // completed with the final result
    tenant_state before = tenant_state::running;          // where a failed update / uninstall returns
    tenant_update update;
    std::string error;                                    // a failed install's reason, until its process ended
    bool answered = false;
  };

  struct entry {
    tenant_record record;
    pid process;
    monitor_ref monitor;
    std::optional<pending_op> op;
    bool ending = false; // its process ends by design: an uninstall, or an install that failed
    std::deque<steady::time_point> restarts;
    backoff_policy backoff;
    std::uint64_t restart_generation = 0;
    bool restart_pending = false;
  };

  // Store and table.
  awaitable<void> commit(tenant_change change);
  void count(const std::vector<tenant_event>& events) const; // built-in metrics
  std::string node_label_;
  tenant_event make_event(const entry& e, tenant_event_kind kind, bool ok, std::string error) const;
  void publish(const entry& e);
  void unpublish(const std::string& id);

  // Processes.
  awaitable<bool> start_process(entry& e, std::string& failure);
  void command(entry& e, tenant_step step, std::uint64_t op, bool run_after = false);
  awaitable<void> restart_or_give_up(std::string id, exit_reason reason);

  // Operations.
  pending_op new_op(tenant_event_kind kind, from<tenant_op> caller, const entry& e);
  void complete(entry& e, bool ok, std::string error);
  awaitable<void> on_report(detail::tenant_report r);
  awaitable<void> on_down(const down_message& d);
  awaitable<void> on_restart_due(const restart_due& r);
  awaitable<void> remove(std::string id, tenant_event_kind kind, bool ok, std::string error);

  entry* find(const std::string& id) {
    auto it = entries_.find(id);
    return it == entries_.end() ? nullptr : &it->second;
  }

  std::shared_ptr<tenant_manager_shared> shared_;
  dynamic_supervisor tenants_;
  pid relay_;
  std::unordered_map<std::string, entry> entries_;
  std::unordered_map<std::uint64_t, std::string> monitors_; // monitor id -> tenant id
  std::uint64_t next_op_ = 1;
  backoff_random random_;
};

tenant_event manager_server::make_event(const entry& e, tenant_event_kind kind, bool ok, std::string error) const {
  return tenant_event{.tenant = e.record.id,
                      .kind = kind,
                      .ok = ok,
                      .error = std::move(error),
                      .generation = e.record.generation,
                      .at = now_us()};
}

/// Commits `change`; then the table shows it (a put of a tenant this
/// process holds is published, an erase unpublished), and only then its
/// events go to the relay: a sink that heard of a change finds it in fetch().
awaitable<void> manager_server::commit(tenant_change change) {
  count(change.events);
  if (!shared_->options.event_sink) change.events.clear(); // nobody to deliver them to
  if (!change.put && !change.erase && change.events.empty()) co_return;
  tenant_store* store = shared_->store.get();
  std::vector<tenant_event> events = change.events;
  std::optional<std::string> put_id;
  if (change.put) put_id = change.put->id;
  std::optional<std::string> erase_id = change.erase;
  auto work = [store, change = std::move(change)]() mutable { return store->commit(std::move(change)); };
  std::vector<std::uint64_t> sequences = co_await shared_->on_store(std::move(work));
  if (erase_id) unpublish(*erase_id);
  if (put_id) {
    if (const entry* e = find(*put_id)) publish(*e);
  }
  if (events.empty() || !relay_) co_return;
  for (std::size_t i = 0; i < events.size() && i < sequences.size(); ++i) events[i].sequence = sequences[i];
  grove::send(relay_, relay_batch{std::move(events)});
}

void manager_server::publish(const entry& e) {
  shared_->table.insert_or_assign(e.record.id, std::make_shared<const tenant_view>(tenant_view{e.record, e.process}));
}

void manager_server::unpublish(const std::string& id) { shared_->table.erase(id); }

awaitable<bool> manager_server::start_process(entry& e, std::string& failure) {
  const std::string id = e.record.id;
  try {
    const pid p = co_await shared_->start_tenant(tenants_);
    // The entry may not survive the wait's rehash: look it up again.
    entry* again = find(id);
    if (!again) {
      grove::exit(p, exit_reason::shutdown());
      co_return false;
    }
    again->process = p;
    again->monitor = this_process().monitor(p);
    monitors_[again->monitor.id] = id;
    co_return true;
  } catch (const std::exception& ex) {
    failure = ex.what();
  }
  co_return false;
}

void manager_server::command(entry& e, tenant_step step, std::uint64_t op, bool run_after) {
  tenant_command c{.op = op,
                   .step = step,
                   .info = tenant_info{e.record.id, e.record.config, e.record.capabilities},
                   .snapshot = e.record.snapshot,
                   .run_after = run_after,
                   .manager = self(),
                   .job_timeout = shared_->options.job_timeout};
  if (e.op) c.update = e.op->update;
  grove::send(e.process, std::move(c));
}

manager_server::pending_op manager_server::new_op(tenant_event_kind kind, from<tenant_op> caller, const entry& e) {
  pending_op op;
  op.id = next_op_++;
  op.kind = kind;
  op.caller = std::move(caller);
  op.done = std::make_shared<reply_slot<tenant_outcome>>();
  // If this process ends first, the waiter learns why instead of waiting forever.
  if (process_state* me = current_process()) me->track_reply(op.done);
  op.before = e.record.state;
  return op;
}

void manager_server::complete(entry& e, bool ok, std::string error) {
  if (!e.op) return;
  pending_op op = std::move(*e.op);
  e.op.reset();
  const std::uint64_t generation = e.ending ? 0 : e.record.generation;
  if (!op.answered) {
    op.caller.reply(tenant_op(ok ? tenant_op_status::ok : tenant_op_status::error, error, op.done));
  }
  op.done->set(tenant_outcome{.ok = ok, .error = std::move(error), .generation = generation});
}

// -- warm-up -----------------------------------------------------------------------

namespace {
struct tenant_families {
  explicit tenant_families(telemetry::metric_registry& r)
      : events(r.make_counter("grove_tenant_transitions_total",
                              "Lifecycle events of tenants (install, update, uninstall, error_occurred, restarted, "
                              "gave_up, dropped), by outcome (ok, error).",
                              {"node", "manager", "event", "outcome"})) {}
  telemetry::counter_family events;
};
} // namespace

void manager_server::count(const std::vector<tenant_event>& events) const {
  if (!shared_->events_family) return;
  for (const tenant_event& e : events) {
    shared_->events_family->with({node_label_, shared_->options.name, to_string(e.kind), e.ok ? "ok" : "error"}).inc();
  }
}

awaitable<void> manager_server::init() {
  shared_->set(&tenant_manager_shared::manager, self());
  this_process().set_label("tenant manager " + shared_->options.name);
  if (telemetry::metric_registry* r = this_process().node().metrics(); r && !shared_->events_family) {
    node_label_ = std::to_string(this_process().node().id());
    shared_->events_family = &r->part<tenant_families>().events;
    tenant_manager_shared* shared = shared_.get();
    shared_->states_collector = telemetry::scoped_collector(
        *r, "grove_tenants", "Tenants, by lifecycle state.", telemetry::metric_type::gauge, {"node", "manager", "state"},
        [shared, node = node_label_] {
          std::array<std::size_t, 5> by_state{};
          shared->table.for_each([&](const std::string&, const std::shared_ptr<const tenant_view>& v) {
            ++by_state[static_cast<std::size_t>(v->record.state)];
          });
          std::vector<telemetry::sample> out;
          for (std::size_t i = 0; i < by_state.size(); ++i) {
            out.push_back({{node, shared->options.name, std::string(to_string(static_cast<tenant_state>(i)))},
                           static_cast<double>(by_state[i])});
          }
          return out;
        });
  } else if (shared_->events_family) {
    node_label_ = std::to_string(this_process().node().id());
  }
  tenants_ = dynamic_supervisor(shared_->get(&tenant_manager_shared::tenants));
  shared_->table.clear();
  if (shared_->options.event_sink) {
    relay_ = grove::spawn(this_process().node(), relay_body{shared_}, spawn_options{.link = true});
  }
  tenant_store* store = shared_->store.get();
  auto load = [store] { return store->load(); };
  tenant_store_contents contents = co_await shared_->on_store(std::move(load));
  if (relay_ && !contents.outbox.empty()) grove::send(relay_, relay_batch{std::move(contents.outbox)});

  for (tenant_record& r : contents.records) {
    entry e;
    e.record = std::move(r);
    e.backoff = shared_->options.restart_backoff;
    const std::string id = e.record.id;
    switch (e.record.state) {
    case tenant_state::installing: {
      tenant_change c;
      c.erase = id;
      e.record.generation = 0;
      c.events.push_back(make_event(e, tenant_event_kind::dropped, false,
                                    "the install was in progress when the manager stopped; the tenant was dropped"));
      co_await commit(std::move(c));
      continue;
    }
    case tenant_state::updating:
    case tenant_state::uninstalling: {
      const tenant_event_kind kind =
          e.record.state == tenant_state::updating ? tenant_event_kind::update : tenant_event_kind::uninstall;
      e.record.state = tenant_state::running;
      ++e.record.generation;
      e.record.updated_at = now_us();
      tenant_change c;
      c.put = e.record;
      c.events.push_back(make_event(e, kind, false,
                                    std::string("the ") + std::string(to_string(kind)) +
                                        " was in progress when the manager stopped; the tenant runs as before it"));
      co_await commit(std::move(c));
      break;
    }
    case tenant_state::running:
    case tenant_state::error_occurred:
      break;
    }
    entries_.emplace(id, std::move(e));
  }

  // Every record is visible before any process starts.
  for (auto& [id, e] : entries_) publish(e);
  std::vector<std::string> ids;
  ids.reserve(entries_.size());
  for (auto& [id, e] : entries_) ids.push_back(id);
  for (const std::string& id : ids) {
    entry* e = find(id);
    std::string failure;
    if (co_await start_process(*e, failure)) {
      e = find(id);
      command(*e, e->record.state == tenant_state::running ? tenant_step::run : tenant_step::restore, 0);
      publish(*e);
    } else {
      co_await restart_or_give_up(id, exit_reason::error("its start failed: " + failure));
    }
  }
}

// -- operations ----------------------------------------------------------------------

namespace {
/// Fails the caller with `e` and says the call is answered.
call_result<tenant_op> refuse(const from<tenant_op>& caller, const grove::error& e) {
  caller.fail(e.code(), e.what());
  return noreply;
}

void check_payload(const nlohmann::json& config, const nlohmann::json& capabilities) {
  if (!config.is_object()) {
    throw grove::error(errc::invalid_argument,
                       "tenant config: " + std::string(config.type_name()) + " (expected a JSON object)");
  }
  if (!capabilities.is_array()) {
    throw grove::error(errc::invalid_argument,
                       "tenant capabilities: " + std::string(capabilities.type_name()) + " (expected a JSON array)");
  }
}
} // namespace

awaitable<call_result<tenant_op>> manager_server::handle_call(install_request r, from<tenant_op> caller) {
  try {
    check_tenant_id(r.id);
    check_payload(r.config, r.capabilities);
    if (entries_.contains(r.id)) {
      throw grove::error(tenant_errc::already_exists, "tenant " + r.id + ": already exists");
    }
    if (shared_->options.max_tenants && entries_.size() >= *shared_->options.max_tenants) {
      throw grove::error(tenant_errc::too_many_tenants,
                         "tenant " + r.id + ": the manager holds max_tenants (" +
                             std::to_string(*shared_->options.max_tenants) + ") tenants");
    }
  } catch (const grove::error& e) {
    co_return refuse(caller, e);
  }
  entry fresh;
  fresh.record.id = r.id;
  fresh.record.state = tenant_state::installing;
  fresh.record.config = std::move(r.config);
  fresh.record.capabilities = std::move(r.capabilities);
  fresh.record.generation = 1;
  fresh.record.created_at = fresh.record.updated_at = now_us();
  fresh.backoff = shared_->options.restart_backoff;
  fresh.op = new_op(tenant_event_kind::install, caller, fresh);
  entry& e = entries_.emplace(r.id, std::move(fresh)).first->second;
  publish(e);
  std::string failure;
  if (!co_await start_process(e, failure)) {
    entry* gone = find(r.id);
    if (gone) {
      pending_op op = std::move(*gone->op);
      entries_.erase(r.id);
      unpublish(r.id);
      op.done->fail(errc::start_failed, exit_reason::error(failure));
    }
    caller.fail(errc::start_failed, "tenant " + r.id + ": its process did not start: " + failure);
    co_return noreply;
  }
  entry* started = find(r.id);
  command(*started, tenant_step::install, started->op->id);
  publish(*started);
  co_return noreply;
}

awaitable<call_result<tenant_op>> manager_server::handle_call(update_request r, from<tenant_op> caller) {
  entry* e = find(r.id);
  try {
    check_payload(r.config, r.capabilities);
    if (!e) throw grove::error(tenant_errc::tenant_not_found, "tenant " + r.id + ": not found");
    if (e->op || e->ending) throw grove::error(tenant_errc::busy, "tenant " + r.id + ": an operation is in progress");
  } catch (const grove::error& ex) {
    co_return refuse(caller, ex);
  }
  e->op = new_op(tenant_event_kind::update, caller, *e);
  e->op->update = tenant_update{std::move(r.config), std::move(r.capabilities)};
  e->record.state = tenant_state::updating;
  ++e->record.generation;
  bool fresh = false;
  if (!e->process) {
    // Its process is down (it gave up, or waits for a restart): start it for
    // the update, and run it after an ok.
    ++e->restart_generation;
    e->restart_pending = false;
    std::string failure;
    if (!co_await start_process(*e, failure)) {
      e = find(r.id);
      e->record.state = e->op->before;
      ++e->record.generation;
      tenant_change c;
      c.put = e->record;
      c.events.push_back(make_event(*e, tenant_event_kind::update, false, "its process did not start: " + failure));
      co_await commit(std::move(c));
      e = find(r.id);
      complete(*e, false, "its process did not start: " + failure);
      co_return noreply;
    }
    e = find(r.id);
    fresh = true;
  }
  command(*e, tenant_step::update, e->op->id, fresh);
  publish(*e);
  co_return noreply;
}

awaitable<call_result<tenant_op>> manager_server::handle_call(uninstall_request r, from<tenant_op> caller) {
  entry* e = find(r.id);
  try {
    if (!e) throw grove::error(tenant_errc::tenant_not_found, "tenant " + r.id + ": not found");
    if (e->op || e->ending) throw grove::error(tenant_errc::busy, "tenant " + r.id + ": an operation is in progress");
  } catch (const grove::error& ex) {
    co_return refuse(caller, ex);
  }
  e->op = new_op(tenant_event_kind::uninstall, caller, *e);
  if (!e->process) {
    // No process to run handle_uninstall in (it gave up): just forget it.
    e->ending = true;
    co_await remove(r.id, tenant_event_kind::uninstall, true, {});
    co_return noreply;
  }
  e->record.state = tenant_state::uninstalling;
  ++e->record.generation;
  command(*e, tenant_step::uninstall, e->op->id);
  publish(*e);
  co_return noreply;
}

awaitable<call_result<bool>> manager_server::handle_call(persist_request r, from<bool> caller) {
  entry* e = find(r.id);
  if (!e || !e->process || e->process != caller.caller() || e->ending) {
    caller.fail(tenant_errc::tenant_not_found, "tenant " + r.id + ": persist from a process that is not its own");
    co_return noreply;
  }
  e->record.snapshot = std::move(r.snapshot);
  ++e->record.generation;
  e->record.updated_at = now_us();
  tenant_change c;
  c.put = e->record;
  co_await commit(std::move(c));
  co_return true;
}

/// Removes `id` for good: the record is erased in the store with its event,
/// then from memory and the table; its op completes.
awaitable<void> manager_server::remove(std::string id, tenant_event_kind kind, bool ok, std::string error) {
  entry* e = find(id);
  if (!e) co_return;
  const std::uint64_t generation = e->record.generation;
  e->record.generation = 0; // the event says: gone
  tenant_change c;
  c.erase = id;
  c.events.push_back(make_event(*e, kind, ok, error));
  try {
    co_await commit(std::move(c));
  } catch (const grove::error&) {
    if ((e = find(id))) e->record.generation = generation;
    throw;
  }
  e = find(id);
  if (!e) co_return;
  if (e->monitor.id) {
    monitors_.erase(e->monitor.id);
    this_process().demonitor(e->monitor);
  }
  e->ending = true;
  complete(*e, ok, std::move(error));
  entries_.erase(id);
  unpublish(id);
}

awaitable<void> manager_server::on_report(detail::tenant_report r) {
  entry* e = find(r.id);
  if (!e || e->process != r.process) co_return; // from a process that is no longer this tenant's

  if (r.step == tenant_step::run) {
    if (r.ok) co_return;
    e->record.state = tenant_state::error_occurred;
    e->record.last_error = "handle_run: " + r.error;
    ++e->record.generation;
    e->record.updated_at = now_us();
    tenant_change c;
    c.put = e->record;
    c.events.push_back(make_event(*e, tenant_event_kind::error_occurred, false, r.error));
    co_await commit(std::move(c));
    co_return;
  }

  if (!e->op || e->op->id != r.op) co_return;
  pending_op& op = *e->op;

  if (r.async_started) {
    // The record shows the work in progress, durably, before the caller hears "async".
    e->record.updated_at = now_us();
    tenant_change c;
    c.put = e->record;
    co_await commit(std::move(c));
    if (!(e = find(r.id)) || !e->op) co_return;
    e->op->answered = true;
    e->op->caller.reply(tenant_op(tenant_op_status::async, {}, e->op->done));
    co_return;
  }

  switch (op.kind) {
  case tenant_event_kind::install:
    if (!r.ok) {
      // The process ends by itself; the record goes once its down is handled.
      op.error = r.error;
      e->ending = true;
      co_return;
    }
    e->record.state = tenant_state::running;
    break;
  case tenant_event_kind::update:
    if (r.ok) {
      e->record.config = op.update.config;
      e->record.capabilities = op.update.capabilities;
      e->record.state = tenant_state::running;
      e->record.last_error.clear();
    } else {
      e->record.state = op.before;
    }
    break;
  case tenant_event_kind::uninstall:
    if (r.ok) {
      e->ending = true; // the process ends; the record goes once its down is handled
      co_return;
    }
    e->record.state = op.before;
    break;
  default:
    co_return;
  }
  ++e->record.generation;
  e->record.updated_at = now_us();
  tenant_change c;
  c.put = e->record;
  c.events.push_back(make_event(*e, op.kind, r.ok, r.error));
  co_await commit(std::move(c));
  if (!(e = find(r.id))) co_return;
  complete(*e, r.ok, r.error);
}

awaitable<void> manager_server::on_down(const down_message& d) {
  auto m = monitors_.find(d.ref.id);
  if (m == monitors_.end()) co_return;
  const std::string id = m->second;
  monitors_.erase(m);
  entry* e = find(id);
  if (!e || e->process != d.process) co_return;
  e->process = pid{};
  e->monitor = {};

  if (e->ending) {
    const tenant_event_kind kind = e->op ? e->op->kind : tenant_event_kind::uninstall;
    const bool ok = kind == tenant_event_kind::uninstall;
    std::string error = e->op ? e->op->error : std::string{};
    co_await remove(id, kind, ok, std::move(error));
    co_return;
  }

  const std::string why = "the tenant's process ended: " + d.reason.to_string();
  if (e->op) {
    if (e->op->kind == tenant_event_kind::install) {
      co_await remove(id, tenant_event_kind::install, false, why);
      co_return;
    }
    const tenant_event_kind kind = e->op->kind;
    e->record.state = e->op->before;
    ++e->record.generation;
    e->record.updated_at = now_us();
    tenant_change c;
    c.put = e->record;
    c.events.push_back(make_event(*e, kind, false, why));
    co_await commit(std::move(c));
    if (!(e = find(id))) co_return;
    complete(*e, false, why);
  }
  publish(*e);
  co_await restart_or_give_up(id, d.reason);
}

awaitable<void> manager_server::restart_or_give_up(std::string id, exit_reason reason) {
  entry* e = find(id);
  if (!e) co_return;
  const auto now = steady::now();
  const auto window = std::chrono::duration_cast<steady::duration>(shared_->options.max_seconds);
  while (!e->restarts.empty() && now - e->restarts.front() > window) e->restarts.pop_front();
  if (static_cast<int>(e->restarts.size()) >= shared_->options.max_restarts) {
    e->restarts.clear();
    e->restart_pending = false;
    e->record.state = tenant_state::error_occurred;
    e->record.last_error = "gave up after " + std::to_string(shared_->options.max_restarts) + " restarts in " +
                           std::to_string(shared_->options.max_seconds.count()) + " s; the last exit: " +
                           reason.to_string();
    ++e->record.generation;
    e->record.updated_at = now_us();
    tenant_change c;
    c.put = e->record;
    c.events.push_back(make_event(*e, tenant_event_kind::gave_up, false, e->record.last_error));
    co_await commit(std::move(c));
    grove::emit(event{.level = event_level::error,
                      .layer = "tenant",
                      .name = "gave_up",
                      .fields = {{"tenant", id}, {"reason", reason.to_string()}}});
    co_return;
  }
  if (e->restarts.empty()) e->backoff.reset();
  e->restarts.push_back(now);
  const duration delay = e->backoff.next(random_);
  e->restart_pending = true;
  grove::send_after(self(), delay, restart_due{id, ++e->restart_generation});
}

awaitable<void> manager_server::on_restart_due(const restart_due& r) {
  entry* e = find(r.id);
  if (!e || !e->restart_pending || e->restart_generation != r.generation || e->process) co_return;
  e->restart_pending = false;
  std::string failure;
  if (!co_await start_process(*e, failure)) {
    co_await restart_or_give_up(r.id, exit_reason::error("its start failed: " + failure));
    co_return;
  }
  e = find(r.id);
  command(*e, e->record.state == tenant_state::running ? tenant_step::run : tenant_step::restore, 0);
  publish(*e);
  tenant_change c;
  c.events.push_back(make_event(*e, tenant_event_kind::restarted, true, {}));
  co_await commit(std::move(c));
}

awaitable<action> manager_server::handle_info(message m) {
  if (auto* r = m.get_if<detail::tenant_report>()) {
    co_await on_report(std::move(*r));
  } else if (auto* d = m.get_if<down_message>()) {
    co_await on_down(*d);
  } else if (auto* t = m.get_if<restart_due>()) {
    co_await on_restart_due(*t);
  } else if (auto* x = m.get_if<exit_message>()) {
    // The relay or the tenants' supervisor ended: the subtree restarts from the store.
    if (x->from == relay_ || x->from == tenants_.id()) co_return grove::stop(x->reason.is_normal() ? exit_reason::shutdown() : x->reason);
  }
  co_return action{};
}

void manager_server::terminate(const exit_reason&) {
  shared_->set(&tenant_manager_shared::manager, pid{});
}

// -- the subtree ---------------------------------------------------------------------

awaitable<pid> start_tenants_supervisor(node& n, std::shared_ptr<tenant_manager_shared> shared) {
  dynamic_supervisor_options options;
  options.max_children = shared->options.max_tenants;
  dynamic_supervisor sup = co_await dynamic_supervisor::start_link(n, options);
  shared->set(&tenant_manager_shared::tenants, sup.id());
  co_return sup.id();
}

awaitable<pid> start_manager(node& n, std::shared_ptr<tenant_manager_shared> shared) {
  start_options options;
  options.link = true;
  options.trap_exit = true;
  options.worker = shared->options.worker;
  options.init_timeout = shared->options.start_timeout;
  return start_untyped<manager_server>(n, options, std::move(shared));
}

std::vector<child_spec> subtree_children(const std::shared_ptr<tenant_manager_shared>& shared) {
  return {
      child_spec{.id = "tenants",
                 .start = child_start([shared](node& n) { return start_tenants_supervisor(n, shared); }),
                 .type = child_type::supervisor},
      child_spec{.id = "manager",
                 .start = child_start([shared](node& n) { return start_manager(n, shared); }),
                 .shutdown = shutdown_policy::infinity()},
  };
}

supervisor_options subtree_options() {
  supervisor_options o;
  o.strategy = restart_strategy::one_for_all;
  return o;
}

awaitable<pid> start_subtree(node& n, std::shared_ptr<tenant_manager_shared> shared, bool link) {
  shared->open_store();
  std::vector<child_spec> children = subtree_children(shared);
  supervisor_options options = subtree_options();
  supervisor root;
  if (link) {
    root = co_await supervisor::start_link(n, std::move(children), std::move(options));
  } else {
    root = co_await supervisor::start(n, std::move(children), std::move(options));
  }
  shared->set(&tenant_manager_shared::root, root.id());
  co_return root.id();
}

} // namespace

// -- the handle --------------------------------------------------------------------

tenant_manager_base::tenant_manager_base(tenant_manager_options options, tenant_starter starter)
    : shared_(std::make_shared<tenant_manager_shared>(std::move(options), std::move(starter))) {
  if (shared_->options.store && !shared_->options.store_file.empty()) {
    throw grove::error(errc::invalid_argument, "tenant_manager_options.store_file: " +
                                                   shared_->options.store_file.string() +
                                                   " given with a store (expected one of store and store_file)");
  }
  if (shared_->options.max_restarts < 0) {
    throw grove::error(errc::invalid_argument, "tenant_manager_options.max_restarts: " +
                                                   std::to_string(shared_->options.max_restarts) +
                                                   " (expected 0 or more)");
  }
  if (shared_->options.max_seconds.count() <= 0) {
    throw grove::error(errc::invalid_argument, "tenant_manager_options.max_seconds: " +
                                                   std::to_string(shared_->options.max_seconds.count()) +
                                                   " (expected at least 1 s)");
  }
  if (shared_->options.job_timeout <= duration::zero()) {
    throw grove::error(errc::invalid_argument, "tenant_manager_options.job_timeout: not positive (expected a "
                                               "positive duration, or grove::infinity)");
  }
}

awaitable<void> tenant_manager_base::start(node& n) const {
  const pid running = shared_->get(&tenant_manager_shared::root);
  if (running && grove::alive(running)) {
    throw grove::error(errc::invalid_argument, "tenant_manager::start: already running as " + running.to_string());
  }
  co_await start_subtree(n, shared_, false);
}

awaitable<void> tenant_manager_base::stop(duration timeout) const {
  const pid root = shared_->get(&tenant_manager_shared::root);
  if (!root) throw grove::error(errc::noproc, "tenant_manager::stop: not running");
  co_await supervisor(root).stop(exit_reason::shutdown(), timeout);
  shared_->set(&tenant_manager_shared::root, pid{});
}

child_spec tenant_manager_base::child_spec(std::string id) const {
  auto shared = shared_;
  return grove::child_spec{.id = std::move(id),
                           .start = child_start([shared](node& n) { return start_subtree(n, shared, true); }),
                           .type = child_type::supervisor};
}

namespace {
server_ref<manager_server> manager_ref(tenant_manager_shared& shared) {
  const pid p = shared.get(&tenant_manager_shared::manager);
  if (!p) throw grove::error(errc::noproc, "tenant_manager: not running");
  return server_ref<manager_server>(p);
}
} // namespace

awaitable<tenant_op> tenant_manager_base::install(std::string id, nlohmann::json config, nlohmann::json capabilities,
                                                  duration timeout) const {
  install_request r{std::move(id), std::move(config), std::move(capabilities)};
  server_ref<manager_server> manager = manager_ref(*shared_);
  tenant_op op = co_await manager.call(std::move(r), timeout);
  co_return op;
}

awaitable<tenant_op> tenant_manager_base::update(std::string id, nlohmann::json config, nlohmann::json capabilities,
                                                 duration timeout) const {
  update_request r{std::move(id), std::move(config), std::move(capabilities)};
  server_ref<manager_server> manager = manager_ref(*shared_);
  tenant_op op = co_await manager.call(std::move(r), timeout);
  co_return op;
}

awaitable<tenant_op> tenant_manager_base::uninstall(std::string id, duration timeout) const {
  uninstall_request r{std::move(id)};
  server_ref<manager_server> manager = manager_ref(*shared_);
  tenant_op op = co_await manager.call(std::move(r), timeout);
  co_return op;
}

std::optional<tenant_record> tenant_manager_base::fetch(std::string_view id) const {
  std::optional<tenant_record> out;
  shared_->table.visit(id, [&](const std::shared_ptr<const tenant_view>& v) { out = v->record; });
  return out;
}

pid tenant_manager_base::whereis_pid(std::string_view id) const {
  pid out;
  shared_->table.visit(id, [&](const std::shared_ptr<const tenant_view>& v) { out = v->process; });
  return out;
}

std::vector<tenant_record> tenant_manager_base::list(std::optional<tenant_state> filter) const {
  std::vector<tenant_record> out;
  shared_->table.for_each([&](const std::string&, const std::shared_ptr<const tenant_view>& v) {
    if (!filter || v->record.state == *filter) out.push_back(v->record);
  });
  return out;
}

std::size_t tenant_manager_base::count() const noexcept { return shared_->table.size(); }

std::size_t tenant_manager_base::count(tenant_state state) const {
  std::size_t n = 0;
  shared_->table.for_each([&](const std::string&, const std::shared_ptr<const tenant_view>& v) {
    if (v->record.state == state) ++n;
  });
  return n;
}

std::string tenant_manager_base::store_description() const {
  std::lock_guard lock(shared_->mutex);
  return shared_->store ? shared_->store->describe() : "sqlite " + shared_->options.store_file.string() + " (not opened yet)";
}

pid tenant_manager_base::manager_pid() const { return shared_->get(&tenant_manager_shared::manager); }

// -- the tenant's side -----------------------------------------------------------

tenant_core::~tenant_core() {
  if (job_) grove::exit(job_, exit_reason::kill());
}

void tenant_core::report(const pid& self, std::uint64_t op, tenant_step step, bool async_started, bool ok,
                         std::string error) const {
  grove::send(manager_, tenant_report{.id = info_.id,
                                      .op = op,
                                      .step = step,
                                      .async_started = async_started,
                                      .ok = ok,
                                      .error = std::move(error),
                                      .process = self});
}

void tenant_core::forget_job(process& self) noexcept {
  if (job_timer_) grove::cancel_timer(job_timer_);
  job_timer_ = {};
  if (job_) {
    self.unlink(job_);
    grove::exit(job_, exit_reason::kill());
  }
  last_job_ = job_;
  job_ = {};
}

awaitable<void> tenant_core::persist(nlohmann::json snapshot, duration timeout) {
  if (!manager_) throw grove::error(errc::noproc, "tenant::persist: this tenant has no manager yet");
  persist_request r{info_.id, std::move(snapshot)};
  co_await server_ref<manager_server>(manager_).call(std::move(r), timeout);
}

} // namespace detail

} // namespace grove
