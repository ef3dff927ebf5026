#include <grove/core/detail/runtime.hpp>
#include <grove/core/gen_server.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

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
    const bool finite = timeout != infinity;
    if (finite) deadline = clock::now() + timeout;
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
template <class Send>
awaitable<void> wait_for_slot(std::shared_ptr<reply_slot_base> slot, duration timeout, Send send) {
  co_await asio::async_initiate<const asio::use_awaitable_t<>&, void()>(
      [&](auto handler) {
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

void deliver_envelope(const pid& to, envelope env) {
  on_owner(to, [env = std::move(env)](process_state* t) mutable {
    if (t) {
      t->deliver(std::move(env));
    } else if (env.reply) {
      env.reply->fail(errc::noproc);
    }
  });
}

awaitable<void> await_call(pid target, envelope env, duration timeout) {
  process_state* me = current_process();
  if (me && me->self == target) throw grove::error(errc::calling_self);
  std::shared_ptr<reply_slot_base> slot = env.reply;
  slot->set_caller(me ? me->self : pid{});
  co_await wait_for_slot(slot, timeout, [&] { deliver_envelope(target, std::move(env)); });
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

awaitable<bool> wait_mail(process_state& state, std::optional<duration> timeout) {
  return asio::async_initiate<const asio::use_awaitable_t<>&, void(boost::system::error_code, bool)>(
      [&state, timeout](auto handler) { state.async_wait_mail(timeout, std::move(handler)); }, asio::use_awaitable);
}

awaitable<void> yield_now() {
  co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
}

/// OTP: a trapping gen_server stops (running terminate) on an exit signal
/// from its parent; here the node's shutdown counts as the parent's.
bool from_parent(const process_state& state, const message& m) {
  auto* e = m.get_if<exit_message>();
  return e && (!e->from || e->from == state.parent);
}

// Note: never `x = o.ready() ? o.take_ready() : co_await o.take_pending();`
// g++ 12 miscompiles a co_await in one branch of `?:` (it awaits regardless).

/// How many messages a server handles back to back before letting the other
/// processes of its worker run.
constexpr int fairness_budget = 64;

} // namespace

awaitable<exit_reason> run_server(process& self, gen_server& server, const server_hooks& hooks, action next,
                                  std::optional<duration> idle_timeout) {
  process_state& state = self.state();
  state.server = &server;
  exit_reason reason;
  bool stopped = false;
  int budget = fairness_budget;
  try {
    for (;;) {
      if (next.stops()) {
        reason = next.reason();
        break;
      }
      if (next.continues()) {
        if (!hooks.continue_) {
          throw std::logic_error("continue_with() was returned but the server has no handle_continue(grove::message)");
        }
        handler_outcome o = hooks.continue_(server, next.take_continue());
        if (o.ready()) {
          next = o.take_ready();
        } else {
          next = co_await o.take_pending();
        }
        continue;
      }
      const std::optional<duration> timeout = next.idle_timeout() ? next.idle_timeout() : idle_timeout;
      if (!state.has_mail() || --budget == 0) {
        budget = fairness_budget;
        if (state.has_mail()) {
          co_await yield_now();
        } else if (!co_await wait_mail(state, timeout)) {
          handler_outcome o = hooks.info(server, timeout_message{});
          if (o.ready()) {
            next = o.take_ready();
          } else {
            next = co_await o.take_pending();
          }
          continue;
        }
        if (!state.has_mail()) { // woken for nothing (a stale wake): wait again
          next = action{};
          continue;
        }
      }
      envelope env = state.pop();
      switch (env.kind) {
      case envelope_kind::call: {
        if (env.server_tag != hooks.tag) {
          env.reply->fail(errc::wrong_server);
          next = action{};
          break;
        }
        state.track_reply(env.reply);
        handler_outcome o = env.dispatch(server, env);
        if (o.ready()) {
          next = o.take_ready();
        } else {
          next = co_await o.take_pending();
        }
        if (env.reply->completed()) state.untrack_reply(env.reply.get());
        break;
      }
      case envelope_kind::cast: {
        if (env.server_tag != hooks.tag) {
          next = action{}; // a cast to the wrong type is dropped, as a cast to a dead process
          break;
        }
        handler_outcome o = env.dispatch(server, env);
        if (o.ready()) {
          next = o.take_ready();
        } else {
          next = co_await o.take_pending();
        }
        break;
      }
      case envelope_kind::info: {
        if (state.trap_exit && from_parent(state, env.body)) {
          reason = env.body.get_if<exit_message>()->reason;
          stopped = true;
          break;
        }
        handler_outcome o = hooks.info(server, std::move(env.body));
        if (o.ready()) {
          next = o.take_ready();
        } else {
          next = co_await o.take_pending();
        }
        break;
      }
      }
      if (stopped) break;
    }
  } catch (const std::exception& e) {
    reason = exit_reason::error(e.what());
  }
  // Killed (or ended by an untrapped exit signal) while in a handler: OTP
  // runs no terminate then; the process is already gone.
  if (state.dead()) co_return state.reason();
  try {
    handler_outcome o = hooks.terminate(server, reason);
    if (!o.ready()) co_await o.take_pending();
  } catch (const std::exception& e) {
    reason = exit_reason::error(e.what());
  }
  state.server = nullptr;
  co_return reason;
}

awaitable<exit_reason> server_main_untyped(process& self, gen_server* server, const server_hooks& hooks,
                                           std::shared_ptr<reply_slot<pid>> started, handler_outcome init,
                                           std::optional<duration> idle_timeout) {
  action first;
  std::optional<exit_reason> failed;
  try {
    if (init.ready()) {
      first = init.take_ready();
    } else {
      first = co_await init.take_pending();
    }
    if (first.stops()) failed = first.reason();
  } catch (const std::exception& e) {
    failed = exit_reason::error(e.what());
  }
  if (failed) {
    // As OTP's proc_lib: the starter gets the error as a return value, not
    // also as an exit signal.
    if (self.state().parent) self.unlink(self.state().parent);
    started->fail(errc::start_failed, *failed);
    co_return *failed;
  }
  started->set(self.self());
  co_return co_await run_server(self, *server, hooks, std::move(first), idle_timeout);
}

} // namespace grove::detail
