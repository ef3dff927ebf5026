// grove/supervisor/child_spec.hpp — what a supervisor knows about one child:
// its id, how to start it, when to restart it and how to stop it.
//
//   grove::child_spec cache = grove::server_child<lru_cache>("cache", 1024);
//   cache.restart = grove::restart_type::transient;
//   cache.shutdown = grove::shutdown_policy::timeout(std::chrono::seconds(1));
//
// Specs are values: copy them, store them, compare them. Two specs are equal
// when every field is; two starts are equal when they are copies of one
// start, or start the same server type with equal arguments and options.
#pragma once

#include <grove/supervisor/error.hpp>
#include <grove/core/error.hpp>
#include <grove/core/exit_reason.hpp>
#include <grove/core/gen_server.hpp>
#include <grove/core/pid.hpp>

#include <chrono>
#include <concepts>
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <utility>

namespace grove {

/// When a supervisor restarts a child that ended (OTP's restart types).
enum class restart_type : std::uint8_t {
  permanent, ///< always
  transient, ///< only if it ended abnormally (not normal, shutdown or {shutdown, value})
  temporary, ///< never; its spec is forgotten once it ends
};

/// A worker, or a supervisor (a subtree).
enum class child_type : std::uint8_t { worker, supervisor };

/// How a supervisor stops a child: a shutdown exit and, after a timeout, a
/// kill; a kill at once; or a shutdown exit and as long a wait as it takes
/// (for supervisors, which stop their own children first).
class shutdown_policy {
public:
  enum class kind : std::uint8_t { timeout, brutal_kill, infinity };

  /// Default: timeout(5 s).
  shutdown_policy() = default;
  static shutdown_policy timeout(duration limit) { return shutdown_policy(kind::timeout, limit); }
  static shutdown_policy brutal_kill() { return shutdown_policy(kind::brutal_kill, duration::zero()); }
  static shutdown_policy infinity() { return shutdown_policy(kind::infinity, duration::max()); }

  kind what() const noexcept { return kind_; }
  /// The timeout (kind::timeout only).
  duration limit() const noexcept { return limit_; }

  /// "5000ms", "brutal_kill", "infinity".
  std::string to_string() const;
  friend bool operator==(const shutdown_policy&, const shutdown_policy&) = default;

private:
  shutdown_policy(kind k, duration limit) : kind_(k), limit_(limit) {}

  kind kind_ = kind::timeout;
  duration limit_ = std::chrono::seconds(5);
};

namespace detail {

/// A dynamic supervisor's extra arguments, type-erased: a shared, immutable
/// std::tuple of them.
class extra_arguments {
public:
  extra_arguments() = default;

  template <class... E>
  static extra_arguments of(E... extra) {
    extra_arguments x;
    if constexpr (sizeof...(E) > 0) {
      x.tuple_ = std::make_shared<const std::tuple<E...>>(std::move(extra)...);
      x.type_ = &typeid(std::tuple<E...>);
    }
    return x;
  }

  bool empty() const noexcept { return tuple_ == nullptr; }

  /// The arguments as the types E...; throws grove::error (invalid_argument)
  /// if the supervisor holds others.
  template <class... E>
  const std::tuple<E...>& get() const {
    if constexpr (sizeof...(E) == 0) {
      static const std::tuple<> none;
      return none;
    } else {
      if (!type_ || *type_ != typeid(std::tuple<E...>)) throw_mismatch(typeid(std::tuple<E...>));
      return *static_cast<const std::tuple<E...>*>(tuple_.get());
    }
  }

private:
  [[noreturn]] void throw_mismatch(const std::type_info& wanted) const;

  std::shared_ptr<const void> tuple_;
  const std::type_info* type_ = nullptr;
};

/// One way of starting a child. Runs inside the supervisor's process, so
/// whatever it starts with a link is linked to the supervisor.
class start_impl {
public:
  start_impl() = default;
  start_impl(const start_impl&) = delete;
  start_impl& operator=(const start_impl&) = delete;
  virtual ~start_impl() = default;

  /// Starts the child; a null pid means "ignore" (OTP's `ignore`: nothing
  /// was started and that is fine). Throws on failure.
  virtual awaitable<pid> start(node& n, const extra_arguments& extra) const = 0;
  /// Same start as `other` (default: the same object).
  virtual bool equals(const start_impl& other) const noexcept { return this == &other; }
};

inline awaitable<pid> to_pid(awaitable<pid> a) { return a; }

inline awaitable<pid> to_pid(pid p) { co_return p; }

template <class S>
awaitable<pid> to_pid(awaitable<server_ref<S>> a) {
  server_ref<S> ref = co_await std::move(a);
  co_return ref.id();
}

template <class T>
struct is_server_ref : std::false_type {};
template <class S>
struct is_server_ref<server_ref<S>> : std::true_type {};

template <class F>
concept start_function =
    std::copy_constructible<F> && std::invocable<const F&, node&> &&
    (std::same_as<std::invoke_result_t<const F&, node&>, pid> ||
     std::same_as<std::invoke_result_t<const F&, node&>, awaitable<pid>> ||
     (is_awaitable<std::invoke_result_t<const F&, node&>>::value &&
      is_server_ref<typename awaited<std::invoke_result_t<const F&, node&>>::type>::value));

template <class F>
class function_start final : public start_impl {
public:
  explicit function_start(F f) : f_(std::move(f)) {}
  awaitable<pid> start(node& n, const extra_arguments&) const override { return to_pid(f_(n)); }

private:
  F f_;
};

/// start<S>(node, options, extra..., args...), linked to the supervisor.
template <class S, class Extra, class... Args>
class server_start;

template <class S, class... Extra, class... Args>
class server_start<S, std::tuple<Extra...>, Args...> final : public start_impl {
public:
  server_start(start_options options, Args... args) : options_(options), args_(std::move(args)...) {
    options_.link = true; // a supervised child is linked to its supervisor
  }

  awaitable<pid> start(node& n, const extra_arguments& extra) const override {
    auto all = std::tuple_cat(extra.get<Extra...>(), args_);
    return std::apply([&](const auto&... a) { return start_untyped<S>(n, options_, a...); }, all);
  }

  bool equals(const start_impl& other) const noexcept override {
    if (this == &other) return true;
    auto* o = dynamic_cast<const server_start*>(&other);
    if constexpr ((std::equality_comparable<Args> && ...)) {
      return o && o->options_ == options_ && o->args_ == args_;
    } else {
      return false;
    }
  }

private:
  start_options options_;
  std::tuple<Args...> args_;
};

} // namespace detail

/// How to start a child: a value holding a start function. Built from any
/// copyable function `F(grove::node&)` returning a pid (spawn), or
/// awaitable<pid> or awaitable<server_ref<S>> (start): it runs inside the
/// supervisor, so start with a link (the supervisor links the child in any
/// case); a null pid means "ignore". Or built with server<S>(...):
///
///   .start = [](grove::node& n) { return grove::spawn(n, my_loop, {.link = true}); }
class child_start {
public:
  /// Empty: a spec with it is rejected (errc::invalid_argument).
  child_start() = default;

  template <class F>
    // The same_as test first: it short-circuits the copy_constructible check
    // inside start_function, which would otherwise recurse into this very
    // constructor for F = child_start (clang rejects that).
    requires(!std::same_as<std::decay_t<F>, child_start>) && detail::start_function<std::decay_t<F>>
  child_start(F f) // NOLINT: a plain function converts, as in `.start = my_start`
      : impl_(std::make_shared<const detail::function_start<std::decay_t<F>>>(std::move(f))) {}

  /// Starts a gen_server S constructed from `args` (the supervisor links it).
  template <class S, class... Args>
    requires std::derived_from<S, gen_server> && std::constructible_from<S, Args...> &&
             (std::copy_constructible<Args> && ...)
  static child_start server(start_options options, Args... args) {
    return child_start(
        std::make_shared<const detail::server_start<S, std::tuple<>, Args...>>(options, std::move(args)...));
  }

  explicit child_start(std::shared_ptr<const detail::start_impl> impl) noexcept : impl_(std::move(impl)) {}

  explicit operator bool() const noexcept { return impl_ != nullptr; }
  /// Library-internal: the supervisor runs this.
  awaitable<pid> operator()(node& n, const detail::extra_arguments& extra = {}) const;

  friend bool operator==(const child_start& a, const child_start& b) noexcept {
    if (a.impl_ == b.impl_) return true;
    return a.impl_ && b.impl_ && a.impl_->equals(*b.impl_);
  }

private:
  std::shared_ptr<const detail::start_impl> impl_;
};

/// One child of a supervisor (OTP's child spec).
struct child_spec {
  std::string id{};                                ///< unique among its supervisor's children (dynamic: may be empty)
  child_start start{};                             ///< how to start it (required)
  restart_type restart = restart_type::permanent;  ///< when to restart it (default permanent)
  std::optional<shutdown_policy> shutdown{};       ///< how to stop it (default: 5 s for a worker, infinity for a supervisor)
  child_type type = child_type::worker;            ///< worker or supervisor (default worker)

  /// The shutdown in force: the one given, or the default for the type.
  shutdown_policy effective_shutdown() const {
    if (shutdown) return *shutdown;
    return type == child_type::supervisor ? shutdown_policy::infinity() : shutdown_policy{};
  }

  friend bool operator==(const child_spec&, const child_spec&) = default;
};

/// A permanent worker spec for gen_server S constructed from `args`.
template <class S, class... Args>
  requires std::derived_from<S, gen_server> && std::constructible_from<S, Args...> &&
           (std::copy_constructible<Args> && ...)
child_spec server_child(std::string id, Args... args) {
  return child_spec{.id = std::move(id), .start = child_start::server<S>(start_options{}, std::move(args)...)};
}

/// What which_children() says of a child.
enum class child_status : std::uint8_t {
  running,    ///< its process is alive
  restarting, ///< a restart failed; the supervisor is trying again
  stopped,    ///< not running (terminated, ignored, or a transient child that ended cleanly)
};

struct child_info {
  std::string id{};
  pid process{}; ///< null unless running
  child_type type = child_type::worker;
  restart_type restart = restart_type::permanent;
  child_status status = child_status::stopped;
  std::uint64_t restarts = 0; ///< times its supervisor started it again after it ended (or was stopped by a restart)
  friend bool operator==(const child_info&, const child_info&) = default;
};

/// What a supervisor or dynamic supervisor says of itself (describe()):
/// what the admin endpoint's /tree shows.
struct supervision_info {
  std::string strategy{};                    ///< "one_for_one", "one_for_all", "rest_for_one"
  int max_restarts = 0;                      ///< restart intensity...
  std::chrono::seconds max_seconds{};        ///< ...within this period
  std::optional<std::size_t> max_children{}; ///< a dynamic supervisor's bound, if any
  std::uint64_t restarts = 0;                ///< restarts it made since it started
  std::vector<child_info> children{};        ///< in start order
};

/// count_children() (OTP's counts).
struct child_counts {
  std::size_t specs = 0;       ///< children the supervisor knows, running or not
  std::size_t active = 0;      ///< children whose process is alive
  std::size_t supervisors = 0; ///< specs of type supervisor
  std::size_t workers = 0;     ///< specs of type worker
  friend bool operator==(const child_counts&, const child_counts&) = default;
};

/// What a supervisor reports (OTP's supervisor reports): a child that ended
/// abnormally ("child_terminated"), a start that failed ("start_error"), a
/// child that had to be killed or ended oddly while being stopped
/// ("shutdown_error"), too many restarts ("reached_max_restart_intensity").
struct supervisor_report {
  pid supervisor{};
  std::string context{};
  std::string child_id{};
  pid child{};
  exit_reason reason{};
};

/// The default report hook: the report as a "supervisor" event (named by
/// its context; fields supervisor, child_id, child, reason) to the node's
/// event sink, e.g. `level=error layer=supervisor event=child_terminated
/// supervisor=<1.0.3> child_id=db child=<1.1.9> reason="{error, refused}"`.
void report_to_events(const supervisor_report& report);

std::ostream& operator<<(std::ostream& os, restart_type r);
std::ostream& operator<<(std::ostream& os, child_type t);
std::ostream& operator<<(std::ostream& os, child_status s);

} // namespace grove
