#include <grove/core/detail/runtime.hpp>
#include <grove/core/gen_server.hpp>

#include <functional>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <vector>

namespace grove::detail {

namespace {

using clock = std::chrono::steady_clock;

/// The caller's side of one call (or start): holds the suspended caller
/// until the slot completes, then resumes it on its own executor.
///
/// On a node worker the deadline sits in the worker's deadline_list; a caller
/// on a foreign executor (a user's own io_context) gets an io timer instead.
/// Owned by the pending operation until wake(), then by the handler that
/// resumes the caller.
class call_waiter final : public reply_waiter, public deadline_list::entry {
public:
  using handler_type = asio::any_completion_handler<void()>;

  call_waiter(handler_type handler, asio::any_io_executor executor, reply_slot_base& slot)
      : handler_(std::move(handler)), executor_(std::move(executor)), slot_(&slot) {}

  void arm(duration timeout) {
    const auto now = clock::now();
    // A timeout past the clock's range is as good as infinity (and must not
    // overflow the deadline).
    const bool finite = timeout != infinity && timeout < clock::time_point::max() - now;
    if (finite) deadline = now + timeout;
    if (this_worker) {
      worker_ = this_worker;
      worker_->deadlines->insert(*this);
    } else if (finite) {
      timer_.emplace(executor_, deadline);
      timer_->async_wait([slot = slot_->shared_from_this()](boost::system::error_code ec) {
        if (!ec) slot->fail(errc::timeout);
      });
    }
  }

  void wake(reply_slot_base&) noexcept override {
    asio::post(executor_, [self = std::unique_ptr<call_waiter>(this)]() mutable { self->resume(); });
  }

  void expire() noexcept override { slot_->fail(errc::timeout); }
  void abandon() noexcept override { slot_->fail(errc::node_stopped); }

private:
  void resume() {
    if (worker_ && worker_->deadlines) worker_->deadlines->remove(*this);
    timer_.reset();
    handler_type handler = std::move(handler_);
    std::move(handler)();
  }

  handler_type handler_;
  asio::any_io_executor executor_;
  reply_slot_base* slot_; // alive: the suspended caller holds it
  worker* worker_ = nullptr;
  std::optional<asio::steady_timer> timer_;
};

/// Suspends until `slot` completes; `send` runs once the waiter is in place.
/// Not a coroutine of its own (nor is await_call): the awaitable is Asio's
/// initiation, so a call costs one coroutine frame less per layer.
template <class Send>
awaitable<void> wait_for_slot(std::shared_ptr<reply_slot_base> slot, duration timeout, Send send) {
  return asio::async_initiate<const asio::use_awaitable_t<>&, void()>(
      [slot = std::move(slot), timeout, send = std::move(send)](auto handler) mutable {
        auto cancel_slot = asio::get_associated_cancellation_slot(handler);
        if (cancel_slot.is_connected()) {
          cancel_slot.assign([weak = std::weak_ptr<reply_slot_base>(slot)](asio::cancellation_type) {
            if (auto s = weak.lock()) s->fail(errc::cancelled);
          });
        }
        asio::any_io_executor executor = asio::get_associated_executor(handler);
        auto* waiter = new call_waiter(call_waiter::handler_type(std::move(handler)), std::move(executor), *slot);
        waiter->arm(timeout);
        slot->set_waiter(waiter);
        send();
      },
      asio::use_awaitable);
}

} // namespace

awaitable<void> await_call(pid target, envelope env, duration timeout) {
  process_state* me = current_process();
  if (me && me->self == target) throw grove::error(errc::calling_self);
  std::shared_ptr<reply_slot_base> slot = env.reply;
  slot->set_caller(me ? me->self : pid{});
  return wait_for_slot(std::move(slot), timeout,
                       [target, env = std::move(env)]() mutable { deliver_envelope(target, std::move(env)); });
}

awaitable<void> await_reply(std::shared_ptr<reply_slot_base> slot, duration timeout) {
  return wait_for_slot(std::move(slot), timeout, [] {});
}

namespace {
/// Waits until `target` has ended or `timeout` passed, and returns the slot
/// that says which: no one ever sets it, and the target's death fails it
/// with the exit reason, as it fails the calls the target was handling.
/// `then(target, slot)` runs on the target's thread once the wait is in place.
using end_hook = std::function<void(process_state&, const std::shared_ptr<reply_slot<pid>>&)>;
awaitable<std::shared_ptr<reply_slot<pid>>> wait_for_end(pid target, duration timeout, end_hook then) {
  auto slot = std::make_shared<reply_slot<pid>>();
  co_await wait_for_slot(slot, timeout, [&] {
    on_owner(target, [slot, then = std::move(then)](process_state* t) {
      if (!t) {
        slot->fail(errc::noproc);
        return;
      }
      t->track_reply(slot);
      then(*t, slot);
    });
  });
  co_return slot;
}
} // namespace

awaitable<std::optional<exit_reason>> await_exit(pid target, duration timeout, std::optional<exit_reason> signal) {
  const pid me = grove::self();
  // A named hook, not a temporary inside the co_await: g++ 12 destroys
  // such temporaries twice.
  end_hook then = [me, signal = std::move(signal)](process_state& t, const auto&) {
    if (signal) t.on_exit_signal(me, *signal, false);
  };
  auto slot = co_await wait_for_end(target, timeout, std::move(then));
  const std::error_code& e = slot->error();
  if (e == errc::exited) co_return slot->reason();
  if (e == errc::noproc) co_return exit_reason::noproc();
  if (e != errc::timeout) slot->rethrow_error();
  co_return std::nullopt;
}

awaitable<exit_reason> stop_process(pid target, exit_reason reason, duration timeout) {
  const pid me = grove::self();
  if (me && me == target) {
    throw grove::error(errc::calling_self, "grove::stop: a process cannot wait for its own end; return "
                                           "grove::stop(reason) from a handler instead");
  }
  end_hook then = [me, reason = std::move(reason)](process_state& t, const auto& s) {
    if (t.serves) {
      // Queued behind what it was sent before, as OTP's system message; a
      // full bounded mailbox fails the stop with mailbox_full.
      t.deliver(envelope{.body = exit_message{me, reason}, .reply = s, .kind = envelope_kind::system});
    } else {
      t.on_exit_signal(me, reason, false);
    }
  };
  auto slot = co_await wait_for_end(target, timeout, std::move(then));
  const std::error_code& e = slot->error();
  if (e == errc::exited) co_return slot->reason();
  if (e == errc::timeout) {
    throw grove::error(errc::timeout, "grove::stop: " + target.to_string() + " did not end within the timeout");
  }
  slot->rethrow_error();
  co_return exit_reason::noproc(); // not reached: the slot completed with an error
}

awaitable<pid> await_start(std::shared_ptr<reply_slot<pid>> started, pid p, duration timeout) {
  co_await wait_for_slot(started, timeout, [] {});
  try {
    co_return started->take();
  } catch (const grove::error& e) {
    if (e.code() == errc::timeout) grove::exit(p, exit_reason::kill());
    throw;
  }
}

void bind(gen_server& server, process& self) {
  server.self_ = self.self();
  server.process_ = &self;
  if (std::string_view(self.state().kind) == "process") self.state().kind = "gen_server";
}

spawn_options to_spawn_options(const start_options& options) {
  spawn_options s;
  s.worker = options.worker;
  s.link = options.link;
  s.trap_exit = options.trap_exit;
  s.mailbox = options.mailbox;
  return s;
}

namespace {

/// How many messages a server handles back to back before letting the other
/// processes of its worker run.
constexpr int fairness_budget = 64;

} // namespace

namespace {

/// A start failed (constructor, init): as OTP's proc_lib, the starter gets
/// the error as a return value, not also as an exit signal; and the process
/// ends before start() returns, so a failed start leaves nothing alive.
void end_failed_start(process& self, reply_slot<pid>& started, const exit_reason& reason) {
  process_state& state = self.state();
  if (state.parent) self.unlink(state.parent);
  state.die(reason);
  started.fail(errc::start_failed, reason);
}

/// init returned ignore(): as OTP, the starter gets a null pid and the
/// process ends normally (unlinked first, so not even a trapping parent
/// hears of it).
void end_ignored_start(process& self, reply_slot<pid>& started) {
  process_state& state = self.state();
  if (state.parent) self.unlink(state.parent);
  state.die(exit_reason::normal());
  started.set(pid{});
}

/// The gen_server loop as a state machine: init, then one message at a time,
/// then terminate. advance() runs synchronously as far as it can; run_server
/// (below) only waits for what it says it needs. Keeping all state here, not
/// in coroutine locals, keeps an idle server's coroutine frame small (g++
/// gives every local and every co_await temporary of a coroutine its own
/// slot in the frame).
} // namespace

class server_loop {
public:
  enum class need { mail, handler, yield, finished };

  server_loop(process& self, gen_server& server, const server_hooks& hooks, std::shared_ptr<reply_slot<pid>> started,
              handler_outcome init, std::optional<duration> idle_timeout)
      : self_(self), state_(self.state()), server_(server), hooks_(hooks), started_(std::move(started)),
        idle_timeout_(idle_timeout) {
    take(std::move(init));
  }

  need advance() {
    for (;;) {
      if (phase_ == phase::finished) return need::finished;
      if (pending_) return need::handler;
      if (state_.dead()) { // killed or ended by an untrapped exit signal: OTP runs no terminate
        if (phase_ == phase::init) started_->fail(errc::start_failed, state_.reason());
        reason_ = state_.reason();
        phase_ = phase::finished;
        continue;
      }
      try {
        if (phase_ == phase::terminating) {
          if (terminate_called_) {
            phase_ = phase::finished;
            continue;
          }
          terminate_called_ = true;
          take(hooks_.terminate(server_, reason_));
          continue;
        }
        // phase::running
        if (next_.stops()) {
          begin_terminate(next_.reason());
          continue;
        }
        if (next_.has_step()) { // (one test on the common path)
          run_step();
          continue;
        }
        if (timed_out_) {
          timed_out_ = false;
          take(hooks_.info(server_, timeout_message{}));
          continue;
        }
        if (hooks_.gate && release_kept_call()) continue;
        if (!state_.has_mail()) return need::mail;
        if (--budget_ == 0) {
          budget_ = fairness_budget;
          return need::yield;
        }
        handle(state_.pop());
      } catch (const std::exception& e) {
        failed(e.what());
      }
    }
  }

  std::optional<duration> wait_timeout() const { return step_timeout_ ? step_timeout_ : idle_timeout_; }

  void mail_arrived(bool got) {
    budget_ = fairness_budget;
    if (!got) timed_out_ = true;
    step_timeout_.reset(); // an idle timeout holds for one wait only
  }

  awaitable<action> take_pending() {
    awaitable<action> a = std::move(*pending_);
    pending_.reset();
    return a;
  }

  void handler_done(action a) { settle(std::move(a)); }

  void failed(const char* what) {
    pending_.reset();
    current_call_.reset();
    if (phase_ == phase::init) {
      fail_start(exit_reason::error(what));
    } else if (phase_ == phase::running) {
      begin_terminate(exit_reason::error(what));
    } else if (phase_ == phase::terminating) {
      reason_ = exit_reason::error(what); // terminate itself failed
      phase_ = phase::finished;
    }
  }

  const exit_reason& reason() const noexcept { return reason_; }

private:
  enum class phase { init, running, terminating, finished };

  /// The action's continue_with, directive or (misplaced) ignore.
  [[gnu::noinline]] void run_step() {
    if (next_.ignores()) {
      next_.clear();
      throw grove::error(errc::bad_directive, "ignore() was returned by a handler; only init may return it");
    }
    if (next_.has_directive()) {
      action a = std::move(next_);
      next_.clear();
      if (!hooks_.directive) {
        throw grove::error(errc::bad_directive, "a handler returned a directive this server type has no extension for");
      }
      take(hooks_.directive(server_, std::move(a)));
      return;
    }
    if (!hooks_.continue_) {
      throw grove::error(errc::bad_directive,
                         "continue_with() was returned but the server has no handle_continue(grove::message)");
    }
    take(hooks_.continue_(server_, next_.take_continue()));
  }

  void handle(envelope env) {
    switch (env.kind) {
    case envelope_kind::call:
      if (env.server_tag != hooks_.tag) {
        env.reply->fail(errc::wrong_server);
        return;
      }
      state_.track_reply(env.reply);
      if (hooks_.gate && !admitted(env)) return;
      dispatch_call(env);
      return;
    case envelope_kind::cast:
      if (env.server_tag != hooks_.tag) return; // dropped, as a cast to a dead process
      take(env.dispatch(server_, env));
      return;
    case envelope_kind::system: // grove::stop: terminate runs, trapping or not (OTP's gen_server:stop)
      begin_terminate(env.body.get_if<exit_message>()->reason);
      return;
    case envelope_kind::info:
      if (state_.trap_exit && from_parent(env.body)) {
        begin_terminate(env.body.get_if<exit_message>()->reason);
        return;
      }
      take(hooks_.info(server_, std::move(env.body)));
      return;
    }
  }

  /// The call gate's verdict on a call (tracked already). One it answered
  /// at once leaves the tracking list at once.
  [[gnu::noinline]] bool admitted(envelope& env) {
    const reply_slot_base* slot = env.reply.get(); // kept alive by the tracking list if the gate moves env away
    if (hooks_.gate->admit(server_, env)) return true;
    if (slot->completed()) state_.untrack_reply(slot);
    return false;
  }

  /// Dispatches a call the gate kept and now lets through, unless its caller
  /// gave up while it waited. (Tracked since it first arrived.)
  [[gnu::noinline]] bool release_kept_call() {
    envelope env;
    if (!hooks_.gate->release(server_, env)) return false;
    if (!env.reply->completed()) dispatch_call(env);
    return true;
  }

  void dispatch_call(envelope& env) {
    current_call_ = env.reply;
    take(env.dispatch(server_, env));
  }

  /// OTP: a trapping gen_server stops (running terminate) on an exit signal
  /// from its parent; the node's shutdown counts as the parent's.
  bool from_parent(const message& m) const {
    auto* e = m.get_if<exit_message>();
    return e && (!e->from || e->from == state_.parent);
  }

  void take(handler_outcome o) {
    if (o.ready()) {
      settle(o.take_ready());
    } else {
      pending_.emplace(o.take_pending());
    }
  }

  void settle(action a) {
    if (current_call_) {
      if (current_call_->completed()) state_.untrack_reply(current_call_.get());
      current_call_.reset();
    }
    switch (phase_) {
    case phase::init:
      if (a.stops()) {
        fail_start(a.reason());
      } else if (a.ignores()) {
        end_ignored_start(self_, *started_);
        started_.reset();
        reason_ = exit_reason::normal();
        phase_ = phase::finished;
      } else {
        started_->set(self_.self());
        started_.reset(); // answered: not kept for the server's whole life
        phase_ = phase::running;
        step_timeout_ = a.idle_timeout();
        next_ = std::move(a);
      }
      break;
    case phase::running:
      step_timeout_ = a.idle_timeout();
      next_ = std::move(a);
      break;
    case phase::terminating: phase_ = phase::finished; break;
    case phase::finished: break;
    }
  }

  void fail_start(exit_reason reason) {
    end_failed_start(self_, *started_, reason);
    started_.reset();
    reason_ = std::move(reason);
    phase_ = phase::finished;
  }

  void begin_terminate(exit_reason reason) {
    reason_ = std::move(reason);
    phase_ = phase::terminating;
  }

  process& self_;
  process_state& state_;
  gen_server& server_;
  const server_hooks& hooks_;
  std::shared_ptr<reply_slot<pid>> started_;
  std::optional<duration> idle_timeout_;

  phase phase_ = phase::init;
  action next_;                          // what the last handler asked for
  std::optional<duration> step_timeout_; // its idle timeout, until the next wait ends
  std::optional<awaitable<action>> pending_;
  std::shared_ptr<reply_slot_base> current_call_; // the call being handled, if any
  exit_reason reason_;
  int budget_ = fairness_budget;
  bool timed_out_ = false;
  bool terminate_called_ = false;
};

void server_loop_deleter::operator()(server_loop* loop) const noexcept { delete loop; }

/// The waiting half of a server, and the bottom frame of its process's
/// coroutine stack (in place of run_process, process.cpp, whose start and
/// end steps it repeats): small on purpose (see server_loop).
process_entry run_server_process(process_state* state, [[maybe_unused]] std::unique_ptr<body_base> body,
                                 server_run loop) {
  (void)co_await asio::dispatch(asio::use_awaitable);
  (co_await asio::detail::awaitable_thread_has_context_switched{}) = false;
  exit_reason reason;
  try {
    for (;;) {
      const server_loop::need need = loop->advance();
      if (need == server_loop::need::finished) break;
      try {
        if (need == server_loop::need::mail) {
          loop->mail_arrived(co_await wait_for_mail(*state, loop->wait_timeout()));
        } else if (need == server_loop::need::handler) {
          loop->handler_done(co_await loop->take_pending());
        } else {
          co_await asio::post(asio::use_awaitable); // let the worker's other processes run
        }
      } catch (const std::exception& e) {
        loop->failed(e.what());
      }
    }
    reason = loop->reason();
  } catch (...) {
    reason = reason_of(std::current_exception());
  }
  loop.reset();
  if (!(co_await asio::detail::awaitable_thread_has_context_switched{})) {
    (void)co_await asio::post(asio::use_awaitable);
  }
  body_finished(state, std::move(reason));
}

namespace {
awaitable<exit_reason> finished_with(exit_reason reason) { co_return reason; }
} // namespace

awaitable<exit_reason> start_failed(process& self, std::shared_ptr<reply_slot<pid>> started, exit_reason reason) {
  end_failed_start(self, *started, reason);
  return finished_with(std::move(reason));
}

server_run server_main_untyped(process& self, gen_server* server, const server_hooks& hooks,
                               std::shared_ptr<reply_slot<pid>> started, handler_outcome init,
                               std::optional<duration> idle_timeout) {
  self.state().serves = true;
  return server_run(new server_loop(self, *server, hooks, std::move(started), std::move(init), idle_timeout));
}

} // namespace grove::detail

namespace grove {

awaitable<exit_reason> stop(const pid& target, exit_reason reason, duration timeout) {
  return detail::stop_process(target, std::move(reason), timeout);
}

} // namespace grove
