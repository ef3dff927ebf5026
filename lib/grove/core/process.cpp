#include <grove/core/detail/node_metrics.hpp>
#include <grove/core/detail/process_executor.hpp>
#include <grove/core/detail/remote.hpp>
#include <grove/core/detail/runtime.hpp>
#include <grove/core/error.hpp>
#include <grove/core/gen_server.hpp>
#include <grove/core/node.hpp>
#include <grove/core/process.hpp>

#include <boost/asio/async_result.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <cstdio>
#include <exception>

namespace grove::detail {

thread_local current_context this_process_context;
thread_local worker* this_worker = nullptr;

namespace {
// Monitor and timer ids are unique across every node of the program, so a
// monitor set from one node on a process of another cannot collide.
std::atomic<std::uint64_t> next_ref_id{1};

std::uint64_t new_ref_id() noexcept { return next_ref_id.fetch_add(1, std::memory_order_relaxed); }

std::atomic<remote_router*> installed_router{nullptr};

/// Always posted, even to a process on this worker: an exit can end the
/// target, whose own exit signals end the next, and so on; posting unrolls a
/// cascade down a long chain of links through the queue, not the stack.
void send_exit_signal(const pid& target, const pid& from, const exit_reason& reason, bool from_link) {
  if (remote_router* r = remote_router_for(target)) {
    r->exit_signal(target, from, reason, from_link);
    return;
  }
  on_owner<true>(target, [from, reason, from_link](process_state* t) {
    if (t) t->on_exit_signal(from, reason, from_link);
  });
}

void send_down(const pid& watcher, const monitor_ref& ref, const exit_reason& reason) {
  if (remote_router* r = remote_router_for(watcher)) {
    r->down(watcher, ref, reason);
    return;
  }
  on_owner(watcher, [ref, reason](process_state* w) {
    if (w) w->on_down(ref, reason);
  });
}

/// Ends the local monitor `id` of ref.target (a process of this node or another).
void end_monitor_at_target(const pid& watcher, const monitor_ref& ref) {
  if (remote_router* r = remote_router_for(ref.target)) {
    r->demonitor(watcher, ref);
    return;
  }
  on_owner(ref.target, [id = ref.id](process_state* t) {
    if (t) t->on_demonitor(id);
  });
}

void fail_call(envelope& env, errc code, const exit_reason& reason = {}) {
  if (env.reply) env.reply->fail(code, reason);
}
} // namespace

// -- process_table -------------------------------------------------------------

process_table::~process_table() {
  for (auto& chunk : chunks_) delete[] chunk.load(std::memory_order_relaxed);
}

std::pair<std::uint32_t, process_table::slot*> process_table::acquire() {
  std::lock_guard lock(mutex_);
  std::uint32_t index;
  if (!free_.empty()) {
    index = free_.back();
    free_.pop_back();
  } else {
    if (next_ >= chunk_size * max_chunks) {
      throw grove::error(errc::invalid_argument, "too many processes on one worker (limit 16777216)");
    }
    index = next_++;
    auto& chunk = chunks_[index >> chunk_bits];
    if (!chunk.load(std::memory_order_relaxed)) chunk.store(new slot[chunk_size], std::memory_order_release);
  }
  return {index, at(index)};
}

void process_table::release(std::uint32_t index) noexcept {
  slot* s = at(index);
  if (!s) return; // cannot happen: the index came from acquire()
  s->serial.store(0, std::memory_order_release);
  s->queue_length.store(0, std::memory_order_relaxed);
  s->proc = nullptr;
  std::lock_guard lock(mutex_);
  free_.push_back(index);
}

// -- process_state -------------------------------------------------------------

process_state::process_state(worker& w, pid self_pid, const spawn_options& options)
    : owner(w), self(self_pid), trap_exit(options.trap_exit), child_placement(w.owner.options.child_placement), slot_(w.table.at(self_pid.slot())),
      mailbox_options_(options.mailbox) {}

process_state::~process_state() {
  if (!dead_) {
    dead_ = true;
    owner.table.release(self.slot());
    owner.owner.process_died();
  }
  owner.owner.process_finished();
}

void process_state::release_for_teardown() noexcept {
  waiter_.reset();
  receiver_.reset();
  wait_timer_.reset();
  for (std::size_t i = head_; i < mailbox_.size(); ++i) fail_call(mailbox_[i], errc::node_stopped);
  mailbox_.clear();
  head_ = 0;
  for (auto& slot : pending_replies_) slot->fail(errc::node_stopped);
  pending_replies_.clear();
}

bool process_state::push_allowed(envelope& env) {
  const std::size_t capacity = mailbox_options_.capacity;
  if (capacity == 0 || mailbox_size() < capacity) return true;
  if (mailbox_options_.overflow == overflow_policy::reject) {
    fail_call(env, errc::mailbox_full);
    return false;
  }
  envelope oldest = pop();
  fail_call(oldest, errc::mailbox_full);
  return true;
}

void process_state::deliver(envelope env) {
  if (dead_) {
    fail_call(env, errc::noproc);
    return;
  }
  if (!push_allowed(env)) return;
  if (head_ == mailbox_.size()) {
    mailbox_.clear();
    head_ = 0;
  }
  if (mailbox_.capacity() == 0) owner.reuse_mailbox(mailbox_);
  mailbox_.push_back(std::move(env));
  publish_length();
  note_depth();
  if (waiter_) {
    complete_wait({}, true);
  } else if (receiver_) {
    try_complete_receive();
  }
}

envelope process_state::pop() {
  envelope env = std::move(mailbox_[head_++]);
  if (head_ == mailbox_.size()) {
    mailbox_.clear();
    head_ = 0;
    owner.recycle_mailbox(mailbox_);
  } else if (head_ >= 64 && head_ * 2 >= mailbox_.size()) {
    mailbox_.erase(mailbox_.begin(), mailbox_.begin() + static_cast<std::ptrdiff_t>(head_));
    head_ = 0;
  }
  publish_length();
  return env;
}

void process_state::complete_wait(boost::system::error_code ec, bool got_mail) {
  wait_handler handler = std::move(*waiter_);
  waiter_.reset();
  ++wait_generation_;
  if (wait_timer_) wait_timer_->cancel();
  // Only the process's own coroutine waits for its mail: resume it on the
  // process executor.
  resume([h = std::move(handler), ec, got_mail]() mutable { std::move(h)(ec, got_mail); });
}

void process_state::complete_receive(boost::system::error_code ec, message m) {
  receive_handler handler = std::move(*receiver_);
  receiver_.reset();
  resume([h = std::move(handler), ec, m = std::move(m)]() mutable { std::move(h)(ec, std::move(m)); });
}

template <class F>
void process_state::resume(F&& f) {
  // Only the process's own coroutine waits for its mail: it is resumed on
  // the process executor (from the worker's ready queue: see execute()).
  asio::post(process_executor(owner.io->get_executor(), slot_, self.serial()), std::forward<F>(f));
}

std::optional<message> process_state::take_info() {
  while (has_mail()) {
    envelope env = pop();
    if (env.kind == envelope_kind::info) return std::move(env.body);
    fail_call(env, errc::wrong_server);
  }
  return std::nullopt;
}

void process_state::try_complete_receive() {
  if (auto m = take_info()) complete_receive({}, std::move(*m));
}

void process_state::async_receive(receive_handler handler) {
  receiver_.emplace(std::move(handler));
  if (dead_) {
    complete_receive(asio::error::operation_aborted, {});
    return;
  }
  try_complete_receive();
}

void process_state::async_wait_mail(std::optional<std::chrono::steady_clock::duration> timeout, wait_handler handler) {
  waiter_.emplace(std::move(handler));
  if (dead_) {
    complete_wait(asio::error::operation_aborted, false);
    return;
  }
  if (has_mail()) {
    complete_wait({}, true);
    return;
  }
  if (timeout) {
    if (!wait_timer_) wait_timer_ = std::make_unique<asio::steady_timer>(*owner.io);
    wait_timer_->expires_after(*timeout);
    wait_timer_->async_wait([this, generation = wait_generation_](boost::system::error_code ec) {
      // A stale expiry (the wait already ended) must not end a later wait.
      if (ec || generation != wait_generation_ || !waiter_) return;
      complete_wait({}, false);
    });
  }
}

void process_state::on_exit_signal(const pid& from, const exit_reason& reason, bool from_link) {
  if (dead_) return;
  if (from_link && (!relations_ || !relations_->links.erase(from))) return; // unlinked meanwhile
  if (reason.what() == exit_reason::kind::kill && !from_link) {
    die(exit_reason::killed());
    return;
  }
  if (trap_exit) {
    deliver(envelope{.body = exit_message{from, reason}});
    return;
  }
  if (reason.is_normal()) return;
  die(reason);
}

void process_state::on_down(const monitor_ref& ref, const exit_reason& reason) {
  if (dead_ || !relations_ || !relations_->monitors.erase(ref.id)) return; // demonitored meanwhile
  deliver(envelope{.body = down_message{ref, ref.target, reason}});
}

void set_kind(process& p, const char* kind) noexcept { p.state().kind = kind; }

process_info process_state::info() const {
  process_info i;
  i.id = self;
  i.parent = parent;
  i.label = label;
  i.kind = kind;
  i.mailbox_size = mailbox_size();
  if (relations_) {
    i.links = relations_->links.size();
    i.monitors = relations_->monitors.size();
  }
  i.trap_exit = trap_exit;
  return i;
}

bool process_state::stopped_by_parent() const noexcept {
  if (!parent || !same_node(parent, self) || !relations_ || !relations_->links.contains(parent)) {
    return false;
  }
  return owner.owner.worker_at(parent.worker()).table.alive(parent);
}

void process_state::link(const pid& other) {
  if (other == self || !rel().links.insert(other)) return;
  if (remote_router* r = remote_router_for(other)) {
    r->link(self, other);
    return;
  }
  on_owner(other, [me = self, other](process_state* o) {
    if (o) {
      o->on_link(me);
    } else {
      send_exit_signal(me, other, exit_reason::noproc(), true);
    }
  });
}

void process_state::unlink(const pid& other) {
  if (!relations_ || !relations_->links.erase(other)) return;
  if (remote_router* r = remote_router_for(other)) {
    r->unlink(self, other);
    return;
  }
  on_owner(other, [me = self](process_state* o) {
    if (o) o->on_unlink(me);
  });
}

monitor_ref process_state::monitor(const pid& target) {
  monitor_ref ref{target, new_ref_id()};
  rel().monitors.insert(ref.id, target);
  if (remote_router* r = remote_router_for(target)) {
    r->monitor(self, ref);
    return ref;
  }
  on_owner(target, [me = self, ref](process_state* t) {
    if (t) {
      t->on_monitor(ref.id, me);
    } else {
      send_down(me, ref, exit_reason::noproc());
    }
  });
  return ref;
}

bool process_state::demonitor(const monitor_ref& ref) {
  bool active = relations_ && relations_->monitors.erase(ref.id);
  if (active) end_monitor_at_target(self, ref);
  bool removed = remove_queued([&](const envelope& env) {
    auto* down = env.body.get_if<down_message>();
    return down && down->ref == ref;
  });
  return active || removed;
}

void process_state::track_reply(std::shared_ptr<reply_slot_base> slot) {
  // Deferred replies may complete on any thread; completed ones are swept
  // out whenever the list doubles, so it stays proportional to the calls
  // really waiting.
  if (pending_replies_.size() >= pending_compact_at_) {
    std::erase_if(pending_replies_, [](const auto& s) { return s->completed(); });
    pending_compact_at_ = static_cast<std::uint32_t>(std::max<std::size_t>(8, pending_replies_.size() * 2));
  }
  pending_replies_.push_back(std::move(slot));
}

void process_state::untrack_reply(const reply_slot_base* slot) noexcept {
  if (!pending_replies_.empty() && pending_replies_.back().get() == slot) pending_replies_.pop_back();
}

void process_state::die(exit_reason reason, bool coroutine_running) {
  if (dead_) return;
  dead_ = true;
  reason_ = reason;
  owner.table.release(self.slot());
  owner.owner.process_died();
  if (owner.owner.metrics) owner.owner.metrics->exited(reason_);

  for (std::size_t i = head_; i < mailbox_.size(); ++i) fail_call(mailbox_[i], errc::exited, reason);
  mailbox_.clear();
  head_ = 0;
  for (auto& slot : pending_replies_) slot->fail(errc::exited, reason);
  pending_replies_.clear();
  if (relations_) {
    // Taken out first: a signal to ourselves must find nothing to change.
    std::unique_ptr<relations> r = std::move(relations_);
    r->links.for_each([&](const pid& other) { send_exit_signal(other, self, reason, true); });
    r->monitored_by.for_each(
        [&](std::uint64_t id, const pid& watcher) { send_down(watcher, monitor_ref{self, id}, reason); });
    r->monitors.for_each([&](std::uint64_t id, const pid& target) { end_monitor_at_target(self, monitor_ref{target, id}); });
  }

  if (waiter_) complete_wait(asio::error::operation_aborted, false);
  if (receiver_) complete_receive(asio::error::operation_aborted, {});
  wait_timer_.reset();
  if (!coroutine_running) return;
  const current_context& running = this_process_context;
  if (running.slot == slot_ && running.serial == self.serial()) {
    // Killed by its own hand (exit(self(), kill)) while running: cancel once
    // it next suspends, not under its own feet. (Posted before anything that
    // could delete this state, so it runs first.)
    asio::post(*owner.io, [this] { cancel.emit(asio::cancellation_type::terminal); });
  } else {
    cancel.emit(asio::cancellation_type::terminal);
  }
}

// -- spawning --------------------------------------------------------------------

namespace {

void finished(process_state* p) {
  worker& w = p->owner;
  // Deleted from a fresh handler: the entry frame (run_process) that called us
  // still refers to the cancellation signal inside *p until it unwinds.
  asio::post(*w.io, [&w, p] {
    w.processes.erase(p);
    delete p;
  });
}

} // namespace

exit_reason reason_of(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    return exit_reason::error(ex.what());
  } catch (...) {
    return exit_reason::error("unknown exception");
  }
}

/// The body's coroutine ended (returned or threw): the process ends with it.
/// An error reason from a process still alive is its own failure (an exit
/// signal would have ended it already): that one gets a crash report.
void body_finished(process_state* p, exit_reason reason) {
  if (!p->dead() && reason.what() == exit_reason::kind::error) {
    grove::emit(event{.level = event_level::error,
                      .layer = "core",
                      .name = "process_crashed",
                      .fields = {{"pid", p->self.to_string()}, {"reason", reason.to_string()}}});
  }
  p->die(std::move(reason), false);
  finished(p);
}

namespace {

/// The bottom frame of a process's coroutine stack: runs the body and ends
/// the process with it. In place of co_spawn, whose entry frame keeps three
/// more executors (the spawn's and the handler's work guards, a copy for the
/// handler), the completion handler and a result slot for as long as the
/// process lives (488 bytes per process; this frame is about 340, and a
/// gen_server's loop runs in it instead of in a frame of its own).
/// The steps are co_spawn's: start through a dispatch (inline when spawned
/// from the process's own worker, posted otherwise), and never end the
/// process from inside the spawn that started it. The worker's own work
/// guard keeps its io_context running, so no per-process one is needed.
process_entry run_process(process_state* p, [[maybe_unused]] std::unique_ptr<body_base> body,
                        body_base::coroutine run) {
  (void)co_await asio::dispatch(asio::use_awaitable);
  (co_await asio::detail::awaitable_thread_has_context_switched{}) = false;
  exit_reason reason = exit_reason::normal();
  try {
    if (auto* plain = std::get_if<awaitable<void>>(&run)) {
      co_await std::move(*plain);
    } else if (auto* returning = std::get_if<awaitable<exit_reason>>(&run)) {
      reason = co_await std::move(*returning);
    }
  } catch (...) {
    reason = reason_of(std::current_exception());
  }
  if (!(co_await asio::detail::awaitable_thread_has_context_switched{})) {
    (void)co_await asio::post(asio::use_awaitable);
  }
  body_finished(p, std::move(reason));
}

void launch(worker& w, std::unique_ptr<process_state> state, std::unique_ptr<body_base> body) {
  process_state* p = state.release();
  w.processes.push(p);
  if (p->dead()) { // killed before it ever ran
    finished(p);
    return;
  }
  asio::any_io_executor ex(process_executor(w.io->get_executor(), w.table.at(p->self.slot()), p->self.serial()));
  body_base::coroutine run = body->run(p->handle);
  // The process's cancellation signal feeds the coroutine's cancellation
  // state directly (exit signals and kills cancel what it awaits).
  asio::cancellation_slot slot = p->cancel.slot();
  process_entry entry = std::holds_alternative<server_run>(run)
                            ? run_server_process(p, std::move(body), std::get<server_run>(std::move(run)))
                            : run_process(p, std::move(body), std::move(run));
  asio::detail::awaitable_thread<asio::any_io_executor>(std::move(entry), ex, slot, asio::cancellation_state(slot))
      .launch();
}

} // namespace

pid spawn(node& n, std::unique_ptr<body_base> body, const spawn_options& options, monitor_ref* monitor) {
  node_state& ns = n.state();
  if (ns.stopping()) throw grove::error(errc::node_stopped);
  process_state* caller = current_process();
  if (options.link && !caller) {
    throw grove::error(errc::not_in_process, "spawn_options::link needs a calling process to link to");
  }
  if (monitor && !caller) throw grove::error(errc::not_in_process, "spawn_monitor needs a calling process to watch");
  worker& w = !options.worker && caller && &caller->owner.owner == &ns && caller->child_placement == placement::with_starter
                  ? caller->owner
                  : ns.pick_worker(options.worker);
  auto [index, slot] = w.table.acquire();
  pid p(ns.id, ns.creation, w.index, index, ns.next_serial());
  std::unique_ptr<process_state> state;
  try {
    state = std::make_unique<process_state>(w, p, options);
  } catch (...) {
    w.table.abandon(index);
    throw;
  }
  if (caller) state->parent = caller->self;
  if (options.link) {
    state->on_link(caller->self);
    caller->on_link(p);
  }
  if (monitor) {
    *monitor = monitor_ref{p, new_ref_id()};
    state->on_monitor(monitor->id, caller->self);
    caller->adopt_monitor(*monitor);
  }
  ns.process_started();
  process_table::publish(*slot, state.get(), p.serial());
  // Always posted, even from the same worker: the child starts after spawn()
  // returned, never nested inside its parent's step (a process that spawns
  // its successor as it starts would otherwise recurse without bound).
  asio::post(*w.io, [&w, st = std::move(state), b = std::move(body)]() mutable {
    launch(w, std::move(st), std::move(b));
  });
  return p;
}

void deliver_envelope(const pid& to, envelope env) {
  if (remote_router* r = remote_router_for(to)) {
    r->deliver(to, std::move(env));
    return;
  }
  on_owner(to, [env = std::move(env)](process_state* t) mutable {
    if (t) {
      t->deliver(std::move(env));
    } else if (env.reply) {
      env.reply->fail(errc::noproc);
    }
  });
}

// -- other nodes (grove/dist) --------------------------------------------------------

remote_router* remote_router_for(const pid& p) noexcept {
  remote_router* r = installed_router.load(std::memory_order_acquire);
  return r && r->handles(p) ? r : nullptr;
}

void set_remote_router(remote_router* r) noexcept { installed_router.store(r, std::memory_order_release); }

std::uint64_t new_monitor_id() noexcept { return new_ref_id(); }

bool node_in_program(const pid& p) noexcept {
  return with_node(p, [](node_state* n) { return n != nullptr; });
}

void link_from_remote(const pid& to, const pid& from) {
  on_owner(to, [to, from](process_state* t) {
    if (t) {
      t->on_link(from);
    } else {
      send_exit_signal(from, to, exit_reason::noproc(), true);
    }
  });
}

void unlink_from_remote(const pid& to, const pid& from) {
  on_owner(to, [from](process_state* t) {
    if (t) t->on_unlink(from);
  });
}

void monitor_from_remote(const pid& target, std::uint64_t id, const pid& watcher) {
  on_owner(target, [target, id, watcher](process_state* t) {
    if (t) {
      t->on_monitor(id, watcher);
    } else {
      send_down(watcher, monitor_ref{target, id}, exit_reason::noproc());
    }
  });
}

void demonitor_from_remote(const pid& target, std::uint64_t id) {
  on_owner(target, [id](process_state* t) {
    if (t) t->on_demonitor(id);
  });
}

void exit_signal_to_local(const pid& to, const pid& from, const exit_reason& reason, bool from_link) {
  send_exit_signal(to, from, reason, from_link);
}

void down_to_local(const pid& watcher, const monitor_ref& ref, const exit_reason& reason) {
  send_down(watcher, ref, reason);
}

// -- timers ------------------------------------------------------------------------

awaitable<bool> wait_for_mail(process_state& state, std::optional<std::chrono::steady_clock::duration> timeout) {
  return asio::async_initiate<const asio::use_awaitable_t<>&, void(boost::system::error_code, bool)>(
      [&state, timeout](auto handler) { state.async_wait_mail(timeout, std::move(handler)); }, asio::use_awaitable);
}

struct timer_state {
  static constexpr std::uint8_t armed = 0, fired = 1, cancelled = 2;
  std::atomic<std::uint8_t> state{armed};
  std::uint64_t id = new_ref_id();
  pid target;
  message body;
  // The io timer is owned by its own handler, never by a timer_ref a user
  // may keep past the node's life; this only lets cancel stop it early.
  std::weak_ptr<asio::steady_timer> timer;
};

} // namespace grove::detail

namespace grove {

using detail::on_owner;
using detail::process_state;

pid process::self() const noexcept { return state_->self; }

grove::node& process::node() const noexcept { return *state_->owner.owner.public_node; }

awaitable<message> process::receive() {
  return boost::asio::async_initiate<const boost::asio::use_awaitable_t<>&,
                                     void(boost::system::error_code, message)>(
      [state = state_](auto handler) { state->async_receive(std::move(handler)); }, boost::asio::use_awaitable);
}

awaitable<std::optional<message>> process::receive_for(duration timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (auto m = state_->take_info()) co_return m;
    const auto left = deadline - std::chrono::steady_clock::now();
    if (left <= duration::zero()) co_return std::nullopt;
    if (!co_await detail::wait_for_mail(*state_, left)) co_return std::nullopt;
  }
}

void process::trap_exit(bool on) noexcept { state_->trap_exit = on; }
bool process::traps_exit() const noexcept { return state_->trap_exit; }
void process::link(const pid& other) { state_->link(other); }
void process::unlink(const pid& other) { state_->unlink(other); }
monitor_ref process::monitor(const pid& target) { return state_->monitor(target); }
bool process::demonitor(const monitor_ref& ref) { return state_->demonitor(ref); }

bool demonitor(const monitor_ref& ref) {
  process_state* me = detail::current_process();
  return me && me->demonitor(ref);
}
std::size_t process::mailbox_size() const noexcept { return state_->mailbox_size(); }
void process::set_shutdown_timeout(duration limit) noexcept { state_->shutdown_timeout = limit; }
void process::set_child_placement(placement p) noexcept { state_->child_placement = p; }
placement process::child_placement() const noexcept { return state_->child_placement; }
void process::set_label(std::string label) { state_->label = std::move(label); }

void send(const pid& to, message m) { detail::deliver_envelope(to, detail::envelope{.body = std::move(m)}); }

void exit(const pid& target, exit_reason reason) {
  if (detail::remote_router* r = detail::remote_router_for(target)) {
    r->exit_signal(target, self(), reason, false);
    return;
  }
  on_owner(target, [from = self(), reason = std::move(reason)](process_state* t) {
    if (t) t->on_exit_signal(from, reason, false);
  });
}

bool alive(const pid& p) noexcept {
  return detail::with_node(p, [&p](detail::node_state* n) {
    return n && p.worker() < n->size() && n->worker_at(p.worker()).table.alive(p);
  });
}

std::size_t mailbox_size(const pid& p) noexcept {
  return detail::with_node(p, [&p](detail::node_state* n) -> std::size_t {
    if (!n || p.worker() >= n->size()) return 0;
    auto* s = n->worker_at(p.worker()).table.at(p.slot());
    if (!s || s->serial.load(std::memory_order_acquire) != p.serial()) return 0;
    std::size_t length = s->queue_length.load(std::memory_order_relaxed);
    return s->serial.load(std::memory_order_acquire) == p.serial() ? length : 0;
  });
}

pid self() noexcept {
  auto* p = detail::current_process();
  return p ? p->self : pid{};
}

timer_ref send_after(const pid& to, duration delay, message m) {
  auto state = std::make_shared<detail::timer_state>();
  state->target = to;
  state->body = std::move(m);
  if (detail::remote_router_for(to) && detail::this_worker) {
    // A process of another node: the timer runs here, and its message goes
    // through dist when it fires (cancel_timer stops it from firing; the io
    // timer itself ends at its expiry).
    auto timer = std::make_shared<boost::asio::steady_timer>(*detail::this_worker->io, delay);
    state->timer = timer;
    timer->async_wait([state, timer](boost::system::error_code) {
      std::uint8_t expected = detail::timer_state::armed;
      if (!state->state.compare_exchange_strong(expected, detail::timer_state::fired)) return;
      detail::deliver_envelope(state->target, detail::envelope{.body = std::move(state->body), .timer_id = state->id});
    });
    return timer_ref(std::move(state));
  }
  // Armed on the target's worker, where its handler delivers. A target
  // gone by then is nobody to fire at: no io timer, and cancel_timer still
  // says (truly) that the message will never be handled.
  on_owner(to, [state, delay](process_state* t) {
    if (!t) return;
    detail::worker& w = *detail::this_worker;
    auto timer = std::make_shared<boost::asio::steady_timer>(*w.io, delay);
    state->timer = timer;
    timer->async_wait([&w, state, timer](boost::system::error_code) {
      std::uint8_t expected = detail::timer_state::armed;
      if (!state->state.compare_exchange_strong(expected, detail::timer_state::fired)) return;
      if (process_state* t = w.table.find(state->target)) {
        t->deliver(detail::envelope{.body = std::move(state->body), .timer_id = state->id});
      }
    });
  });
  return timer_ref(std::move(state));
}

bool cancel_timer(const timer_ref& timer) {
  const auto& state = timer.state();
  if (!state) return false;
  std::uint8_t expected = detail::timer_state::armed;
  if (state->state.compare_exchange_strong(expected, detail::timer_state::cancelled)) {
    // Frees the io timer now rather than at its expiry; read on the owner
    // thread, where the timer was armed.
    on_owner(state->target, [state](process_state*) {
      if (auto t = state->timer.lock()) t->cancel();
    });
    return true;
  }
  if (expected != detail::timer_state::fired) return false;
  // Fired: from the target's own worker the message can still be taken back.
  detail::worker* here = detail::this_worker;
  if (!here || !here->owner.holds(state->target) || here->index != state->target.worker()) return false;
  process_state* t = here->table.find(state->target);
  return t && t->remove_queued([id = state->id](const detail::envelope& env) { return env.timer_id == id; });
}

} // namespace grove
