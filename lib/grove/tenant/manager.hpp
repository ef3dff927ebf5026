// grove/tenant/manager.hpp — the tenant manager: JetPluginSDK.TenantMan's
// lifecycle (install, run, update, uninstall), concurrent, durable and
// awaitable.
//
//   auto store = std::make_shared<grove::sqlite_tenant_store>("/var/lib/shops/tenants.db");
//   grove::tenant_manager<shop> shops({.store = store, .event_sink = to_control_plane});
//   co_await shops.start(node);                                   // warm-up: every stored tenant is back
//   grove::tenant_op op = co_await shops.install("acme", {{"plan", "gold"}});
//   grove::tenant_outcome done = co_await op.done();             // sync or async, the final result
//   int n = co_await shops.whereis("acme").call(count_orders{}); // the tenant is a gen_server
//
// A manager is an object the user owns (several live side by side) and one
// supervision subtree: a one_for_all supervisor over a dynamic supervisor
// of the tenant processes and the manager's own process, which owns the
// records, commits them through the store and relays events. Run it with
// start(), or put child_spec() under your own supervisor.
//
// Lifecycle (TenantMan's, and where grove differs):
//  - install: an id the manager has, in any state, fails with
//    already_exists. The tenant's process starts and runs handle_install:
//    ok -> running, then handle_run; error -> the process ends and the
//    record is removed; async -> install() returns at once with status
//    async and the record shows `installing` until the job finishes.
//  - update / uninstall of an unknown id: tenant_not_found. Update ok -> new
//    config and capabilities, state running (also out of error_occurred);
//    error -> nothing changes. Uninstall ok -> terminate(normal) runs, the
//    process ends, the record is removed; error -> the tenant runs on
//    unchanged. A tenant whose process is down (it gave up) is uninstalled
//    without handle_uninstall; an update starts its process first (state
//    restored from its snapshot) and runs handle_run after an ok.
//  - While an install, update or uninstall of a tenant is in progress
//    (sync or async), another one of that tenant fails at once with busy:
//    an uninstall does not cancel a running job, it is refused too.
//  - handle_run's error -> error_occurred with the reason; the process keeps
//    serving calls.
//  - Every install / update / uninstall returns a tenant_op once the
//    callback has decided (done, failed, or async); op.done() gives the
//    final result either way. No call here has a timeout unless you give one.
//  - Every change is committed to the store before the call that made it
//    returns (and before op.done() completes), with its event in the
//    store's outbox; the event sink gets each event at least once, in order,
//    retried with backoff while it throws, also across restarts.
//  - A running or error_occurred tenant whose process ends for any reason
//    but its uninstall is started again after a backoff (handle_run for a
//    running one, with its state read back from its last snapshot), up to
//    max_restarts in max_seconds; past that it goes to error_occurred with
//    the reason, its process stays down, and a gave_up event is sent.
//  - Warm-up (start(), and after the subtree restarts): every record is
//    loaded; running tenants start with handle_run, error_occurred ones
//    without; an update or uninstall that was in progress is not resumed:
//    the tenant is normalised to running (as TenantMan does) and its
//    update / uninstall event says it failed; an install in progress is
//    dropped, with a `dropped` event. A store that cannot be read stops the
//    start with store_refused naming the file, and is left untouched.
//  - fetch, whereis, list and count read a lock-free table: they never wait
//    for the store or a process, from any thread.
#pragma once

#include <grove/core/backoff.hpp>
#include <grove/core/gen_server.hpp>
#include <grove/supervisor/child_spec.hpp>
#include <grove/supervisor/dynamic_supervisor.hpp>
#include <grove/tenant/record.hpp>
#include <grove/tenant/store.hpp>
#include <grove/tenant/tenant.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <concepts>
#include <cstddef>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace grove {

/// Where a manager's events go: a function (or a coroutine) that throws
/// when it could not take the event; it is then retried with backoff. It
/// runs in the manager's relay process, one event at a time: a plain
/// function must not block its worker (send to your own process, or use a
/// coroutine for I/O), and a coroutine that never finishes holds every
/// event behind it.
class tenant_event_sink {
public:
  /// No sink: events are neither kept nor delivered.
  tenant_event_sink() = default;
  template <class F>
    requires(!std::same_as<std::decay_t<F>, tenant_event_sink>) && std::copy_constructible<std::decay_t<F>> &&
            (std::same_as<std::invoke_result_t<std::decay_t<F>&, const tenant_event&>, void> ||
             std::same_as<std::invoke_result_t<std::decay_t<F>&, const tenant_event&>, awaitable<void>>)
  tenant_event_sink(F f) { // NOLINT: a lambda converts
    if constexpr (std::same_as<std::invoke_result_t<std::decay_t<F>&, const tenant_event&>, void>) {
      plain_ = std::move(f);
    } else {
      coroutine_ = std::move(f);
    }
  }
  explicit operator bool() const noexcept { return plain_ || coroutine_; }
  /// Delivers one event; throws what the sink threw.
  awaitable<void> operator()(const tenant_event& e) const;

private:
  std::function<void(const tenant_event&)> plain_;
  std::function<awaitable<void>(const tenant_event&)> coroutine_;
};

struct tenant_manager_options {
  std::shared_ptr<tenant_store> store{};       ///< where records live (default: store_file's SQLite store, or a memory_tenant_store of this manager's own)
  std::filesystem::path store_file{};          ///< without `store`: a SQLite file opened (created if missing) when the manager first starts (default none)
  tenant_event_sink event_sink{};              ///< where events go (default: none; events are then not kept)
  duration job_timeout = std::chrono::minutes(5); ///< an async job running longer is an error (default 5 min; grove::infinity: none)
  int max_restarts = 5;                        ///< restarts of one tenant's process... (default 5)
  std::chrono::seconds max_seconds{30};        ///< ...within this period; one more and it gives up (default 30 s)
  backoff_policy restart_backoff = backoff_policy::exponential(
      {.initial = std::chrono::milliseconds(100), .max = std::chrono::seconds(10)}); ///< wait before a restart (default 100 ms, x1.6, at most 10 s)
  backoff_policy sink_backoff = backoff_policy::exponential(
      {.initial = std::chrono::milliseconds(200), .max = std::chrono::seconds(30)}); ///< wait before retrying a failed event (default 200 ms, x1.6, at most 30 s)
  std::optional<std::size_t> max_tenants{};    ///< most tenants at once (default unlimited)
  std::string name = "tenants";                ///< the `manager` label of its metrics, when the node has a registry (default "tenants")
  duration start_timeout = std::chrono::seconds(60); ///< how long warm-up may take before start fails (default 60 s)
  std::optional<std::size_t> worker{};         ///< worker the manager's process runs on (default: round-robin)
};

/// The final result of an install, update or uninstall.
struct tenant_outcome {
  bool ok = true;
  std::string error{};          ///< why not (empty when ok)
  std::uint64_t generation = 0; ///< the record's generation after it (0: the record is gone)
  friend bool operator==(const tenant_outcome&, const tenant_outcome&) = default;
};

enum class tenant_op_status : std::uint8_t {
  ok,    ///< the callback finished and succeeded
  error, ///< it finished and failed (error() says why)
  async, ///< it returned async: the job runs; done() gives its result
};

/// An install, update or uninstall the manager accepted. Move-only.
class tenant_op {
public:
  tenant_op() = default;
  tenant_op(tenant_op_status status, std::string error,
            std::shared_ptr<detail::reply_slot<tenant_outcome>> done) noexcept
      : status_(status), error_(std::move(error)), done_(std::move(done)) {}
  tenant_op(tenant_op&&) noexcept = default;
  tenant_op& operator=(tenant_op&&) noexcept = default;
  tenant_op(const tenant_op&) = delete;
  tenant_op& operator=(const tenant_op&) = delete;

  tenant_op_status status() const noexcept { return status_; }
  bool ok() const noexcept { return status_ == tenant_op_status::ok; }
  bool async() const noexcept { return status_ == tenant_op_status::async; }
  /// Why the callback failed (status error).
  const std::string& error() const noexcept { return error_; }

  /// Waits for the final result: at once for a sync callback, when the job
  /// finishes for an async one. Once per op. Throws grove::error: timeout
  /// (the work goes on), exited (the manager ended first; reason() says
  /// why), invalid_argument (awaited twice).
  awaitable<tenant_outcome> done(duration timeout = infinity);

private:
  tenant_op_status status_ = tenant_op_status::ok;
  std::string error_;
  std::shared_ptr<detail::reply_slot<tenant_outcome>> done_;
};

namespace detail {

struct tenant_manager_shared;

/// Starts one tenant process under the dynamic supervisor.
using tenant_starter = std::function<awaitable<pid>(const dynamic_supervisor&)>;

/// What every tenant_manager does, whatever its tenant type.
class tenant_manager_base {
public:
  /// Starts the subtree on `n`, not linked to the caller, and returns once
  /// warm-up is done. Throws grove::error: store_refused (store_file is
  /// damaged or not a tenant store; the text names it; it is left
  /// untouched), start_failed (reason() says why), invalid_argument
  /// (already running).
  awaitable<void> start(node& n) const;
  /// Stops the subtree started by start() (or by child_spec()): tenants are
  /// stopped, terminate runs. Throws noproc if it is not running.
  awaitable<void> stop(duration timeout = infinity) const;
  /// The subtree as a child of your own supervisor (type supervisor).
  grove::child_spec child_spec(std::string id = "tenant_manager") const;

  /// Installs tenant `id`. Throws grove::error: already_exists,
  /// too_many_tenants, bad_tenant_id, invalid_argument (config not an
  /// object, capabilities not an array), start_failed (the tenant's
  /// constructor or init threw), store_failed, noproc (the manager is not
  /// running), timeout (only with a timeout given).
  awaitable<tenant_op> install(std::string id, nlohmann::json config = nlohmann::json::object(),
                               nlohmann::json capabilities = nlohmann::json::array(),
                               duration timeout = infinity) const;
  /// Updates tenant `id`. Throws tenant_not_found, busy, invalid_argument,
  /// store_failed, noproc, timeout.
  awaitable<tenant_op> update(std::string id, nlohmann::json config,
                              nlohmann::json capabilities = nlohmann::json::array(),
                              duration timeout = infinity) const;
  /// Uninstalls tenant `id`. Throws tenant_not_found, busy, store_failed,
  /// noproc, timeout.
  awaitable<tenant_op> uninstall(std::string id, duration timeout = infinity) const;

  /// The record of `id` as last published (lock-free, any thread).
  std::optional<tenant_record> fetch(std::string_view id) const;
  /// The pid of `id`'s process, or null (no such tenant, or its process is
  /// down). Lock-free, any thread.
  pid whereis_pid(std::string_view id) const;
  /// Every record, or those in state `filter`, in no particular order.
  std::vector<tenant_record> list(std::optional<tenant_state> filter = std::nullopt) const;
  /// How many tenants the manager holds (lock-free).
  std::size_t count() const noexcept;
  std::size_t count(tenant_state state) const;
  /// The store, as it describes itself ("memory", "sqlite /path").
  std::string store_description() const;
  /// The manager's process while it runs (null otherwise).
  pid manager_pid() const;

protected:
  tenant_manager_base(tenant_manager_options options, tenant_starter starter);

private:
  std::shared_ptr<tenant_manager_shared> shared_;
};

} // namespace detail

/// A manager of tenants of type T (a grove::tenant<State>), each
/// constructed from `args`.
template <class T>
  requires detail::tenant_type<T>
class tenant_manager : public detail::tenant_manager_base {
public:
  template <class... Args>
    requires std::constructible_from<T, Args...> && (std::copy_constructible<Args> && ...)
  explicit tenant_manager(tenant_manager_options options = {}, Args... args)
      : tenant_manager_base(std::move(options), [args...](const dynamic_supervisor& sup) {
          // temporary: the manager restarts tenants itself (its own intensity, backoff and gave_up)
          // trap_exit: a stop of the subtree runs the tenant's terminate
          return sup.start_child(grove::child_spec{.start = child_start::server<T>(start_options{.trap_exit = true}, args...),
                                            .restart = restart_type::temporary});
        }) {}

  /// Tenant `id`'s server, or a null ref (lock-free, any thread).
  server_ref<T> whereis(std::string_view id) const { return server_ref<T>(whereis_pid(id)); }
};

} // namespace grove
