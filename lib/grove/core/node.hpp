// grove/core/node.hpp — the runtime: worker threads, one io_context each.
//
//   grove::node node{{.threads = 2}};
//   auto ref = node.block_on(grove::start<counter>(node));       // an awaitable
//   int n = node.block_on(ref.call(get{}));
//   node.block_on([](grove::node& nd) -> grove::awaitable<void> { // a coroutine needing the node
//     auto r = co_await grove::start<counter>(nd);
//   });
//   node.block_on([](grove::process& self) -> grove::awaitable<void> { // a process: receive, link, ...
//     co_await self.receive();
//   });
//   // ~node(): shuts down (supervision trees top-down), then threads join.
//
// A node owns its workers (default: one per CPU the process may use, see
// cpus.hpp); every process lives on exactly one of them. Several nodes can
// live in one program, each with its own identity (id and creation, as its
// pids carry).
#pragma once

#include <grove/core/error.hpp>
#include <grove/core/event.hpp>
#include <grove/core/process.hpp>

#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <concepts>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <type_traits>
#include <variant>
#include <vector>

namespace boost::asio {
class io_context;
}

namespace grove::telemetry {
class metric_registry;
}

namespace grove {

namespace detail {
/// The hand-over from a worker to the thread blocked in node::block_on.
/// (Not std::promise: its set_exception keeps a reference to the exception
/// after publishing it, so the exception could be freed on the worker while
/// the waiter still reads it.)
template <class T>
class blocking_result {
public:
  template <class... V>
  void set_value(V&&... v) {
    std::lock_guard lock(mutex_);
    value_.emplace(std::forward<V>(v)...);
    cv_.notify_one();
  }
  void set_exception(std::exception_ptr e) {
    std::lock_guard lock(mutex_);
    error_ = std::move(e);
    cv_.notify_one();
  }
  T get() {
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [this] { return value_.has_value() || error_ != nullptr; });
    if (error_) {
      std::exception_ptr e = std::move(error_);
      lock.unlock();
      std::rethrow_exception(std::move(e));
    }
    if constexpr (!std::is_void_v<T>) return std::move(*value_);
  }

private:
  std::mutex mutex_;
  std::condition_variable cv_;
  std::optional<std::conditional_t<std::is_void_v<T>, std::monostate, T>> value_;
  std::exception_ptr error_;
};
} // namespace detail

struct node_options {
  /// Where a process started by another runs when its options name no
  /// worker (process::set_child_placement can change it per starter).
  /// Default with_starter.
  placement child_placement = placement::with_starter;
  std::size_t threads = 0; ///< worker threads, one io_context each; 0 = available_cpus(): the CPUs in the affinity mask, lowered to the cgroup CPU quota (default)
  std::chrono::milliseconds shutdown_grace{5000}; ///< how long shutdown gives a root that set no shutdown timeout of its own (a supervisor takes as long as its children's policies), and then what is left, before killing it (default 5 s)
  /// Where every layer's events go (see event.hpp): a process that failed
  /// by its own hand is "core"/"process_crashed" (fields pid, reason), a
  /// supervisor's report, a connection's state change, an erps link's log.
  /// Called on the thread where the event happened; must not block.
  /// Default: logfmt_to_stderr; nullptr: silent.
  event_sink events = logfmt_to_stderr;
  /// Events below this level are not handed to the sink (default info).
  event_level min_event_level = event_level::info;
  /// The node's id, carried by its pids: unique among the nodes of a
  /// cluster. 0 = the next free number in this program (default: 1, 2, ...).
  std::uint32_t id = 0;
  /// Tells two lives of one node id apart, so a pid from before a restart
  /// names no process after it. 0 = drawn at random (default).
  std::uint32_t creation = 0;
  /// Where grove's built-in metrics go (the README's table: processes,
  /// supervisors, connections, registries, erps daemons, remote terms,
  /// tenants of this node), labelled with the node's id. It must outlive
  /// the node. Default: none (no metric is recorded).
  telemetry::metric_registry* metrics = nullptr;
};

class node {
public:
  explicit node(node_options options = {});
  /// Shuts down (see shutdown()).
  ~node();
  node(const node&) = delete;
  node& operator=(const node&) = delete;

  /// Number of workers.
  std::size_t size() const noexcept;
  /// This node's id (node_options::id, or 1, 2, ... in start order), as
  /// printed in pids.
  std::uint32_t id() const noexcept;
  /// This node's creation number (node_options::creation, or random).
  std::uint32_t creation() const noexcept;
  /// Processes alive now.
  std::size_t process_count() const noexcept;
  /// A snapshot of every live process, each taken on its own worker (in no
  /// particular order): what the admin endpoint's /tree is built from.
  awaitable<std::vector<process_info>> processes();
  /// The registry node_options::metrics named, or nullptr.
  telemetry::metric_registry* metrics() const noexcept { return options_metrics_; }

  /// The io_context of worker `index`, for the user's own I/O objects that
  /// should live beside that worker's processes.
  boost::asio::io_context& context(std::size_t index);

  /// Sends a shutdown exit to every root, a process not linked to a live
  /// parent (the parent stops the others: a supervisor stops its children
  /// in reverse start order, each by its shutdown policy); gives each root
  /// its own shutdown timeout (process::set_shutdown_timeout; a supervisor's
  /// lasts as long as its children's policies take) or shutdown_grace, and
  /// kills it at that deadline; kills what remains; waits for coroutines to
  /// unwind; then stops and joins the workers. After it returns no process
  /// of this node is alive and nothing of theirs is left. Idempotent. Must
  /// not be called from one of this node's workers.
  void shutdown();
  bool stopping() const noexcept;

  /// Runs `work` on a worker (outside any process) and blocks the calling
  /// thread until it finishes; returns its value or rethrows its exception.
  /// For main() and tests; must not be called from a worker of this node.
  template <class T>
  T block_on(awaitable<T> work) {
    detail::blocking_result<T> result;
    run_blocking(deliver(std::move(work), &result));
    return result.get();
  }

  /// Runs `work(node)` on a worker (outside any process), for a coroutine
  /// lambda that needs the node: node.block_on([](grove::node& n) ->
  /// awaitable<int> { ... }). As block_on(awaitable).
  template <class F>
    requires std::invocable<F&, node&> && (!std::invocable<F&, process&>)
  auto block_on(F work) {
    using awaited = std::invoke_result_t<F&, node&>;
    using T = typename awaited::value_type;
    check_blocking_allowed();
    // The lambda object lives here, across the wait: a coroutine lambda's
    // captures are read through it for the whole run.
    return block_on<T>(work(*this));
  }

  /// Runs `body` as a process (so it can receive, link, monitor, trap exits)
  /// and blocks until it ends; returns its value or rethrows its exception.
  template <class F>
    requires std::invocable<F&, process&>
  auto block_on(F body) {
    using awaited = std::invoke_result_t<F&, process&>;
    using T = typename awaited::value_type;
    check_blocking_allowed();
    detail::blocking_result<T> result;
    spawn(*this, process_runner<F, T>{std::move(body), &result});
    return result.get();
  }

  detail::node_state& state() noexcept { return *state_; }

private:
  /// Fails the result if the coroutine is destroyed before it finished
  /// (its process was killed, or the node shut down under it).
  template <class T>
  struct unfinished_guard {
    detail::blocking_result<T>* out;
    bool done = false;
    ~unfinished_guard() {
      if (!done) {
        out->set_exception(std::make_exception_ptr(
            grove::error(errc::node_stopped, "block_on: the work was destroyed before it finished")));
      }
    }
  };

  template <class T>
  static awaitable<void> deliver(awaitable<T> work, detail::blocking_result<T>* out) {
    unfinished_guard<T> guard{out};
    std::exception_ptr failure;
    try {
      if constexpr (std::is_void_v<T>) {
        co_await std::move(work);
        out->set_value();
      } else {
        out->set_value(co_await std::move(work));
      }
    } catch (...) {
      failure = std::current_exception();
    }
    guard.done = true;
    // Published outside the catch block and moved: this thread keeps no
    // reference to the exception once the waiting thread can see it.
    if (failure) out->set_exception(std::move(failure));
  }

  template <class F, class T>
  struct process_runner {
    F body;
    detail::blocking_result<T>* out;
    awaitable<void> operator()(process& self) { return deliver(body(self), out); }
  };

  void run_blocking(awaitable<void> work);
  void check_blocking_allowed() const;

  std::unique_ptr<detail::node_state> state_;
  telemetry::metric_registry* options_metrics_ = nullptr;
};

} // namespace grove
