// grove/tenant/tenant.hpp — a tenant: one customer's process, with the
// lifecycle a tenant_manager drives (install, run, update, uninstall).
//
//   struct shop_state { int orders = 0; };
//   struct count_orders { using reply_type = int; };
//
//   class shop : public grove::tenant<shop_state> {
//   public:
//     grove::tenant_result<shop_state> handle_install(const grove::tenant_info& t) {
//       if (!t.config.contains("plan")) return grove::tenant_error("config.plan: missing");
//       return grove::tenant_ok(shop_state{});
//     }
//     grove::tenant_reply<shop_state> handle_run(const grove::tenant_info&, shop_state&) { return grove::tenant_ok(); }
//     int handle_call(count_orders) { return state().orders; }   // any gen_server handler
//   };
//
// A tenant is a gen_server: its handle_call / handle_cast / handle_info /
// handle_continue / terminate are a gen_server's, with every return path
// (reply, noreply, stop, continue_with, idle timeouts), and callers reach
// it through tenant_manager::whereis(id). What OTP passes them as
// (Tenant, State) is here info() and state(): the record's view and the
// tenant's state, owned by this process and never shared with another.
//
// Lifecycle callbacks (each may also be a coroutine returning awaitable<...>):
//   handle_install(const tenant_info&)                         -> tenant_result<State>   (required)
//   handle_run(const tenant_info&, State&)                     -> tenant_reply<State>    (default ok)
//   handle_update(const tenant_update&, const tenant_info&, State&) -> tenant_result<State> (default ok)
//   handle_uninstall(const tenant_info&, State&)               -> tenant_result<State>   (default ok)
// where a tenant_result is
//   grove::tenant_ok()            done; the state stays as it is (it may have been changed in place)
//   grove::tenant_ok(new_state)   done; the state becomes new_state
//   grove::tenant_error(reason)   failed (an install's process then ends; an
//                                 update or uninstall leaves everything as it was)
//   grove::tenant_async(job)      the work goes on in `job`, a function
//                                 returning a tenant_reply (or an awaitable of
//                                 one), run in a process of its own linked to
//                                 this one: the tenant keeps serving calls
//                                 with its current state meanwhile. A job
//                                 must not touch the tenant's members: give
//                                 it copies. A job that throws or outlives
//                                 tenant_manager_options::job_timeout is an
//                                 error result.
// and a tenant_reply is the same without async. handle_run runs after a
// successful install and each time the process of a running tenant starts
// again (a restart, or the manager's warm-up); its error puts the tenant in
// error_occurred, and the process keeps serving calls.
//
// A lifecycle callback that throws ends the tenant's process as any handler
// does; the operation fails with that reason and the manager restarts the
// tenant if it was running. A tenant's constructor and init must not call
// its manager (the manager waits for them to finish).
//
// persist(json) hands the manager a snapshot to store with the record; when
// the process starts again, state() is read back from it (by the tenant's
// restore(const nlohmann::json&) if it has one, else by nlohmann's
// from_json for State) before handle_run.
#pragma once

#include <grove/core/gen_server.hpp>
#include <grove/tenant/record.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <concepts>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

// The coroutines below are header templates instantiated with the user's
// tenant and state types, which often live in an anonymous namespace; g++
// then warns that each coroutine frame "has a field whose type uses the
// anonymous namespace". The frame is private to its instantiation, in the
// user's own translation unit: nothing is shared across units.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wsubobject-linkage"
#endif

namespace grove {

/// What a tenant knows of its record.
struct tenant_info {
  std::string id{};
  nlohmann::json config = nlohmann::json::object();
  nlohmann::json capabilities = nlohmann::json::array();
};

/// What an update asks for: the new config and capabilities.
struct tenant_update {
  nlohmann::json config = nlohmann::json::object();
  nlohmann::json capabilities = nlohmann::json::array();
};

struct tenant_ok_t {
  explicit tenant_ok_t() = default;
};
template <class S>
struct tenant_ok_with {
  S state;
};
struct tenant_error_t {
  std::string reason;
};
template <class F>
struct tenant_async_t {
  F job;
};

/// Done; the state stays as it is.
inline tenant_ok_t tenant_ok() { return tenant_ok_t{}; }
/// Done; the state becomes `state`.
template <class S>
tenant_ok_with<std::decay_t<S>> tenant_ok(S&& state) {
  return {std::forward<S>(state)};
}
/// Failed with `reason` (an empty reason reads "error").
inline tenant_error_t tenant_error(std::string reason) {
  if (reason.empty()) reason = "error";
  return {std::move(reason)};
}
/// The work goes on in `job` (see the header's comment).
template <class F>
tenant_async_t<std::decay_t<F>> tenant_async(F&& job) {
  return {std::forward<F>(job)};
}

/// ok, ok with a new state, or an error: what handle_run and a job return.
template <class State>
class tenant_reply {
public:
  tenant_reply(tenant_ok_t) noexcept {} // NOLINT: `return grove::tenant_ok();`
  template <class S>
    requires std::constructible_from<State, S&&>
  tenant_reply(tenant_ok_with<S> ok) : state_(std::in_place, std::move(ok.state)) {} // NOLINT
  tenant_reply(tenant_error_t e) : error_(std::move(e.reason)), failed_(true) {}     // NOLINT

  bool ok() const noexcept { return !failed_; }
  const std::string& error() const noexcept { return error_; }
  /// The new state, if the reply carries one.
  std::optional<State>& state() noexcept { return state_; }

private:
  std::optional<State> state_;
  std::string error_;
  bool failed_ = false;
};

namespace detail {

template <class State>
class tenant_job {
public:
  virtual ~tenant_job() = default;
  virtual awaitable<tenant_reply<State>> run() = 0;
};

template <class F, class State>
concept tenant_job_function =
    std::move_constructible<F> && std::invocable<F&> &&
    (std::convertible_to<std::invoke_result_t<F&>, tenant_reply<State>> ||
     (is_awaitable<std::invoke_result_t<F&>>::value &&
      std::convertible_to<typename awaited<std::invoke_result_t<F&>>::type, tenant_reply<State>>));

template <class State, class F>
class tenant_job_impl final : public tenant_job<State> {
public:
  explicit tenant_job_impl(F f) : f_(std::move(f)) {}
  awaitable<tenant_reply<State>> run() override {
    if constexpr (is_awaitable<std::invoke_result_t<F&>>::value) {
      auto value = co_await f_();
      co_return tenant_reply<State>(std::move(value));
    } else {
      co_return tenant_reply<State>(f_());
    }
  }

private:
  F f_;
};

} // namespace detail

/// What handle_install, handle_update and handle_uninstall return: a
/// tenant_reply, or async(job).
template <class State>
class tenant_result {
public:
  tenant_result(tenant_ok_t ok) noexcept : reply_(ok) {} // NOLINT
  template <class S>
    requires std::constructible_from<State, S&&>
  tenant_result(tenant_ok_with<S> ok) : reply_(std::move(ok)) {}       // NOLINT
  tenant_result(tenant_error_t e) : reply_(std::move(e)) {}            // NOLINT
  tenant_result(tenant_reply<State> r) : reply_(std::move(r)) {}       // NOLINT
  template <class F>
    requires detail::tenant_job_function<F, State>
  tenant_result(tenant_async_t<F> a) // NOLINT
      : reply_(tenant_ok_t{}), job_(std::make_unique<detail::tenant_job_impl<State, F>>(std::move(a.job))) {}

  bool async() const noexcept { return job_ != nullptr; }
  tenant_reply<State>& reply() noexcept { return reply_; }
  std::unique_ptr<detail::tenant_job<State>>& job() noexcept { return job_; }

private:
  tenant_reply<State> reply_;
  std::unique_ptr<detail::tenant_job<State>> job_;
};

namespace detail {

/// Which lifecycle step a command asks a tenant's process for.
enum class tenant_step : std::uint8_t {
  install,   ///< handle_install, then handle_run if it succeeded
  run,       ///< restore the snapshot, then handle_run (a restart of a running tenant)
  restore,   ///< restore the snapshot only (a restart of an error_occurred tenant)
  update,    ///< handle_update
  uninstall, ///< handle_uninstall, then end
};

/// Manager -> tenant.
struct tenant_command {
  std::uint64_t op = 0;
  tenant_step step = tenant_step::run;
  tenant_info info{};
  tenant_update update{};                 ///< update only
  std::optional<nlohmann::json> snapshot{}; ///< run / restore / an update of a fresh process
  bool run_after = false;                 ///< update of a fresh process: handle_run after an ok
  pid manager{};
  duration job_timeout{};
};

/// Tenant -> manager.
struct tenant_report {
  std::string id{};
  std::uint64_t op = 0;
  tenant_step step = tenant_step::run;
  bool async_started = false; ///< the callback returned async; the final report follows
  bool ok = true;
  std::string error{};
  pid process{};
};

struct tenant_job_timeout {
  std::uint64_t op = 0;
};

template <class State>
struct tenant_job_done {
  std::uint64_t op = 0;
  tenant_reply<State> reply;
};

template <class S>
struct tenant_access;

/// The part of every tenant that does not depend on its state type.
class tenant_core {
public:
  tenant_core() = default;
  tenant_core(const tenant_core&) = delete;
  tenant_core& operator=(const tenant_core&) = delete;

  /// This tenant's id, config and capabilities (as of its last install or
  /// update).
  const tenant_info& info() const noexcept { return info_; }

  /// Stores `snapshot` with this tenant's record (committed when this
  /// returns); after a restart the state is read back from it. From this
  /// tenant's handlers only. Throws grove::error: tenant_not_found (the
  /// tenant is being removed), store_failed, noproc (no manager).
  awaitable<void> persist(nlohmann::json snapshot, duration timeout = infinity);

protected:
  ~tenant_core();

private:
  template <class S>
  friend struct tenant_access;

  void report(const pid& self, std::uint64_t op, tenant_step step, bool async_started, bool ok,
              std::string error) const;
  void forget_job(process& self) noexcept;

  tenant_info info_{};
  pid manager_{};
  pid job_{};
  pid last_job_{};
  std::uint64_t job_op_ = 0;
  tenant_step job_step_ = tenant_step::install;
  bool job_run_after_ = false;
  tenant_update job_update_{};
  timer_ref job_timer_{};
};

} // namespace detail

/// Base of a tenant type whose state is a State (default-constructible).
template <class State = nlohmann::json>
class tenant : public gen_server, public detail::tenant_core {
public:
  using state_type = State;

  State& state() noexcept { return state_; }
  const State& state() const noexcept { return state_; }

private:
  State state_{};
};

namespace detail {

template <class S>
concept tenant_type = std::derived_from<S, gen_server> && std::derived_from<S, tenant_core> &&
                      requires { typename S::state_type; };

template <class T>
struct tenant_callback_result {
  using type = T;
};
template <class T>
struct tenant_callback_result<awaitable<T>> {
  using type = T;
};

template <class Out, class F>
awaitable<Out> await_callback(F f) {
  if constexpr (is_awaitable<std::invoke_result_t<F&>>::value) {
    auto value = co_await f();
    co_return Out(std::move(value));
  } else {
    co_return Out(f());
  }
}

template <class S>
struct tenant_access {
  using State = typename S::state_type;

  static awaitable<tenant_result<State>> install(S& s) {
    static_assert(requires(S& t, const tenant_info& i) { t.handle_install(i); },
                  "a tenant needs handle_install(const grove::tenant_info&)");
    return await_callback<tenant_result<State>>([&]() -> decltype(auto) { return s.handle_install(s.info_); });
  }

  static awaitable<tenant_reply<State>> run(S& s) {
    if constexpr (requires(S& t, const tenant_info& i, State& st) { t.handle_run(i, st); }) {
      return await_callback<tenant_reply<State>>([&]() -> decltype(auto) { return s.handle_run(s.info_, s.state()); });
    } else {
      return ready(tenant_reply<State>(tenant_ok()));
    }
  }

  static awaitable<tenant_result<State>> update(S& s, const tenant_update& u) {
    if constexpr (requires(S& t, const tenant_update& uu, const tenant_info& i, State& st) {
                    t.handle_update(uu, i, st);
                  }) {
      return await_callback<tenant_result<State>>(
          [&]() -> decltype(auto) { return s.handle_update(u, s.info_, s.state()); });
    } else {
      return ready_result(tenant_result<State>(tenant_ok()));
    }
  }

  static awaitable<tenant_result<State>> uninstall(S& s) {
    if constexpr (requires(S& t, const tenant_info& i, State& st) { t.handle_uninstall(i, st); }) {
      return await_callback<tenant_result<State>>(
          [&]() -> decltype(auto) { return s.handle_uninstall(s.info_, s.state()); });
    } else {
      return ready_result(tenant_result<State>(tenant_ok()));
    }
  }

  static awaitable<tenant_reply<State>> ready(tenant_reply<State> r) { co_return r; }
  static awaitable<tenant_result<State>> ready_result(tenant_result<State> r) { co_return r; }

  static void restore(S& s, const std::optional<nlohmann::json>& snapshot) {
    if (!snapshot) return;
    if constexpr (requires(S& t, const nlohmann::json& j) { t.restore(j); }) {
      s.restore(*snapshot);
    } else if constexpr (std::is_same_v<State, nlohmann::json>) {
      s.state() = *snapshot;
    } else if constexpr (requires(const nlohmann::json& j, State& st) { nlohmann::adl_serializer<State>::from_json(j, st); }) {
      s.state() = snapshot->template get<State>();
    }
  }

  /// The job's own process: runs it, and sends its reply (or its failure)
  /// to the tenant.
  struct job_body {
    std::unique_ptr<tenant_job<State>> job;
    pid tenant;
    std::uint64_t op;

    awaitable<void> operator()(process&) {
      std::optional<tenant_reply<State>> reply;
      std::string failure;
      try {
        reply.emplace(co_await job->run());
      } catch (const std::exception& e) {
        failure = std::string("the job threw: ") + e.what();
      } catch (...) {
        failure = "the job threw a non-standard exception";
      }
      if (!reply) reply.emplace(tenant_error(std::move(failure)));
      grove::send(tenant, tenant_job_done<State>{op, std::move(*reply)});
    }
  };

  /// A callback's result: finish now, or start its job.
  static awaitable<action> settle(S& s, tenant_step step, std::uint64_t op, tenant_result<State> result,
                                  duration job_timeout, bool run_after, tenant_update update) {
    if (result.async()) {
      process& self = s.this_process();
      s.job_op_ = op;
      s.job_step_ = step;
      s.job_run_after_ = run_after;
      s.job_update_ = std::move(update);
      s.job_ = grove::spawn(self.node(), job_body{std::move(result.job()), self.self(), op}, spawn_options{.link = true});
      if (job_timeout != infinity) s.job_timer_ = grove::send_after(self.self(), job_timeout, tenant_job_timeout{op});
      s.report(self.self(), op, step, true, true, {});
      co_return action{};
    }
    action next = co_await finish(s, step, op, std::move(result.reply()), run_after, std::move(update));
    co_return next;
  }

  /// A step's final reply: apply it, report it, and go on as it says.
  static awaitable<action> finish(S& s, tenant_step step, std::uint64_t op, tenant_reply<State> reply, bool run_after,
                                  tenant_update update) {
    const pid self = s.self();
    if (!reply.ok()) {
      s.report(self, op, step, false, false, reply.error());
      if (step == tenant_step::install) co_return grove::stop(exit_reason::normal()); // the install failed: no tenant
      co_return action{};
    }
    if (reply.state()) s.state() = std::move(*reply.state());
    if (step == tenant_step::update) {
      s.info_.config = std::move(update.config);
      s.info_.capabilities = std::move(update.capabilities);
    }
    s.report(self, op, step, false, true, {});
    if (step == tenant_step::uninstall) co_return grove::stop(exit_reason::normal());
    if (step == tenant_step::install || run_after) co_await run_and_report(s, op);
    co_return action{};
  }

  static awaitable<void> run_and_report(S& s, std::uint64_t op) {
    tenant_reply<State> reply = co_await run(s);
    if (reply.ok() && reply.state()) s.state() = std::move(*reply.state());
    s.report(s.self(), op, tenant_step::run, false, reply.ok(), reply.error());
  }

  static awaitable<action> on_command(S& s, tenant_command c) {
    s.manager_ = c.manager;
    s.info_ = std::move(c.info);
    switch (c.step) {
    case tenant_step::restore:
      restore(s, c.snapshot);
      co_return action{};
    case tenant_step::run:
      restore(s, c.snapshot);
      co_await run_and_report(s, c.op);
      co_return action{};
    case tenant_step::install: {
      // (Each result is named before the next co_await: g++ 12 mishandles
      // temporaries inside a co_await expression.)
      tenant_result<State> r = co_await install(s);
      tenant_update none;
      action next = co_await settle(s, c.step, c.op, std::move(r), c.job_timeout, false, std::move(none));
      co_return next;
    }
    case tenant_step::update: {
      restore(s, c.snapshot);
      tenant_result<State> r = co_await update(s, c.update);
      action next = co_await settle(s, c.step, c.op, std::move(r), c.job_timeout, c.run_after, std::move(c.update));
      co_return next;
    }
    case tenant_step::uninstall: {
      tenant_result<State> r = co_await uninstall(s);
      tenant_update none;
      action next = co_await settle(s, c.step, c.op, std::move(r), c.job_timeout, false, std::move(none));
      co_return next;
    }
    }
    co_return action{};
  }

  /// The running job, or the one that just finished (its exit may still be queued).
  static bool is_job(const S& s, const pid& p) noexcept { return p && (p == s.job_ || p == s.last_job_); }

  static awaitable<action> on_job_done(S& s, tenant_job_done<State> done) {
    if (done.op != s.job_op_ || !s.job_) co_return action{}; // a job this tenant gave up on
    s.forget_job(s.this_process());
    action next = co_await finish(s, s.job_step_, done.op, std::move(done.reply), s.job_run_after_,
                                  std::move(s.job_update_));
    co_return next;
  }

  static awaitable<action> on_job_timeout(S& s, tenant_job_timeout t) {
    if (t.op != s.job_op_ || !s.job_) co_return action{};
    s.forget_job(s.this_process());
    tenant_reply<State> timed_out(tenant_error("the job timed out"));
    action next = co_await finish(s, s.job_step_, t.op, std::move(timed_out), s.job_run_after_,
                                  std::move(s.job_update_));
    co_return next;
  }
};

/// The tenant layer's hooks into its servers' loops: the manager's commands
/// and the jobs' results are theirs; every other message goes to the
/// tenant's own handle_info.
template <class S>
  requires tenant_type<S>
struct server_extension<S> {
  static constexpr bool enabled = true;

  static handler_outcome info(gen_server& base, message&& m) {
    S& s = static_cast<S&>(base);
    using State = typename S::state_type;
    if (auto* c = m.get_if<tenant_command>()) return tenant_access<S>::on_command(s, std::move(*c));
    if (auto* d = m.get_if<tenant_job_done<State>>()) return tenant_access<S>::on_job_done(s, std::move(*d));
    if (auto* t = m.get_if<tenant_job_timeout>()) return tenant_access<S>::on_job_timeout(s, *t);
    // A job's own exit (tenants trap exits, so that a stop runs terminate):
    // its result, or its failure, arrives as tenant_job_done.
    if (auto* x = m.get_if<exit_message>(); x && tenant_access<S>::is_job(s, x->from)) return action{};
    return hook_info<S>(base, std::move(m));
  }

  static handler_outcome directive(gen_server&, action&&) {
    throw grove::error(errc::bad_directive, "a tenant's handler returned a directive of another layer");
  }
};

} // namespace detail

} // namespace grove

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
