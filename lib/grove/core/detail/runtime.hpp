// Internal (not installed): the node's workers, the process table and the
// per-process state. Everything in process_state is touched only on the
// thread of the worker that owns the process, except where a member says so.
#pragma once

#include <grove/core/detail/envelope.hpp>
#include <grove/core/detail/epoch.hpp>
#include <grove/core/detail/node_directory.hpp>
#include <grove/core/detail/relation_map.hpp>
#include <grove/core/exit_reason.hpp>
#include <grove/core/node.hpp>
#include <grove/core/pid.hpp>
#include <grove/core/process.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/system/error_code.hpp>

#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace grove::detail {

namespace asio = boost::asio;

class process_state;
class worker;

/// Maps (slot, serial) to a live process. Slots live in chunks that never
/// move, so `alive()` is a lock-free read from any thread; a slot's serial is
/// zero while it is free and serials are never reused, so a stale pid never
/// matches a newer process in the same slot.
class process_table {
public:
  struct slot {
    std::atomic<std::uint64_t> serial{0};
    std::atomic<std::size_t> queue_length{0}; // readable from any thread
    process_state* proc = nullptr;            // owner thread only, valid while serial matches
  };

  process_table() = default;
  process_table(const process_table&) = delete;
  process_table& operator=(const process_table&) = delete;
  ~process_table();

  /// Any thread. Returns the slot index and the slot, still unpublished.
  std::pair<std::uint32_t, slot*> acquire();
  /// Makes the process findable. Any thread, once per acquire().
  static void publish(slot& s, process_state* p, std::uint64_t serial) noexcept {
    s.proc = p;
    s.serial.store(serial, std::memory_order_release);
  }
  /// Owner thread: the process is gone; the slot may be reused.
  void release(std::uint32_t index) noexcept;
  /// Any thread: undo an acquire() whose process never started.
  void abandon(std::uint32_t index) noexcept { release(index); }

  slot* at(std::uint32_t index) const noexcept {
    slot* chunk = chunks_[index >> chunk_bits].load(std::memory_order_acquire);
    return chunk ? chunk + (index & (chunk_size - 1)) : nullptr;
  }

  /// Owner thread.
  process_state* find(const pid& p) const noexcept {
    slot* s = at(p.slot());
    return s && s->serial.load(std::memory_order_acquire) == p.serial() ? s->proc : nullptr;
  }

  /// Any thread.
  bool alive(const pid& p) const noexcept {
    slot* s = at(p.slot());
    return s && s->serial.load(std::memory_order_acquire) == p.serial();
  }

private:
  static constexpr std::uint32_t chunk_bits = 12;
  static constexpr std::uint32_t chunk_size = 1u << chunk_bits;
  static constexpr std::uint32_t max_chunks = 4096; // 16 M processes per worker

  std::array<std::atomic<slot*>, max_chunks> chunks_{};
  std::mutex mutex_; // guards free_ and next_: spawn and exit, never a send
  std::vector<std::uint32_t> free_;
  std::uint32_t next_ = 0;
};

/// The thread-local "which process is running here", set by the process
/// executor around everything it runs.
struct current_context {
  process_table::slot* slot = nullptr;
  std::uint64_t serial = 0;
};
extern thread_local current_context this_process_context;
extern thread_local worker* this_worker;

/// The process running on this thread, or nullptr.
inline process_state* current_process() noexcept {
  auto& c = this_process_context;
  if (c.slot && c.slot->serial.load(std::memory_order_relaxed) == c.serial) return c.slot->proc;
  return nullptr;
}

/// Deadlines of the calls waiting on one worker, earliest first, behind a
/// single io timer: a call costs a list link, not a timer. Every waiting call
/// of the worker is in it (an infinite one at the end), so teardown can end
/// them all. Owner thread only.
class deadline_list {
public:
  using clock = std::chrono::steady_clock;

  struct entry {
    entry* prev = nullptr;
    entry* next = nullptr;
    clock::time_point deadline = clock::time_point::max();
    bool linked = false;
    /// The deadline passed (it has been unlinked already).
    virtual void expire() noexcept = 0;
    /// The node is being torn down (unlinked already).
    virtual void abandon() noexcept = 0;

  protected:
    ~entry() = default;
  };

  explicit deadline_list(asio::io_context& io) : timer_(io) {}

  void insert(entry& e);
  void remove(entry& e) noexcept;
  void abandon_all() noexcept;

private:
  void arm(clock::time_point at);
  void on_timer(boost::system::error_code ec);

  entry* head_ = nullptr;
  entry* tail_ = nullptr;
  asio::steady_timer timer_;
  clock::time_point armed_for_ = clock::time_point::max();
};

class worker {
public:
  worker(node_state& n, std::uint32_t index);
  worker(const worker&) = delete;
  worker& operator=(const worker&) = delete;

  void start();
  void join();
  void handler_threw(const char* what);

  /// Once every worker's thread has stopped, in three passes over all
  /// workers: end waiting calls and release what processes hold (every
  /// io_context still exists), delete the processes, destroy the io_contexts.
  void teardown_release();
  void teardown_processes();
  void teardown_io();

  node_state& owner;
  const std::uint32_t index;
  process_table table;
  std::unique_ptr<asio::io_context> io = std::make_unique<asio::io_context>(1);
  /// Where a process's coroutine is resumed from when its mail (or a reply)
  /// arrives on this worker's own thread: a second io_context that owns no
  /// I/O object, so it has no reactor, drained by one handler on `io` that
  /// runs up to ready_budget resumptions before it lets `io` poll its
  /// reactor again. Posted straight to `io`, each resumption was followed by
  /// an epoll_wait(0) (Asio polls the reactor between handlers whenever one
  /// is queued): two system calls per local call round trip. Only this
  /// worker's thread posts to it and runs it (process_executor::execute
  /// sends it nothing else), so its scheduler takes no lock: a mutex
  /// lock and unlock on every post and every poll_one was 8 % of a local
  /// call's CPU.
  std::unique_ptr<asio::io_context> ready = std::make_unique<asio::io_context>(BOOST_ASIO_CONCURRENCY_HINT_UNSAFE);
  static constexpr int ready_budget = 128;
  /// After a resumption was posted to `ready`: queues the drain on `io`
  /// unless one is queued. Owner thread only.
  void queue_drain() {
    if (!drain_queued_) {
      drain_queued_ = true;
      asio::post(*io, [this] { drain_ready(); });
    }
  }
  std::optional<deadline_list> deadlines{std::in_place, *io};
  /// Every process whose coroutine has not finished; owner thread only.
  /// Intrusive (process_state::prev_/next_): no allocation per spawn.
  class process_list {
  public:
    void push(process_state* p) noexcept;
    void erase(process_state* p) noexcept;
    std::vector<process_state*> snapshot() const;
    bool empty() const noexcept { return head_ == nullptr; }

  private:
    process_state* head_ = nullptr;
  };
  process_list processes;
  /// An emptied mailbox's storage goes back here and the next mailbox
  /// that gets mail takes it: an idle process holds no mailbox storage (an
  /// envelope is 112 bytes), and one that takes and handles a message at a
  /// time passes one buffer back and forth without the allocator. Owner
  /// thread only.
  void recycle_mailbox(std::vector<envelope>& m) noexcept {
    if (m.capacity() <= spare_mailbox_capacity && spare_mailboxes_.size() < spare_mailboxes_.capacity()) {
      spare_mailboxes_.push_back(std::move(m));
    } else {
      std::vector<envelope>().swap(m);
    }
  }
  void reuse_mailbox(std::vector<envelope>& m) noexcept {
    if (spare_mailboxes_.empty()) return;
    m = std::move(spare_mailboxes_.back());
    spare_mailboxes_.pop_back();
  }
  /// The deepest mailbox seen on this worker (written by its thread,
  /// read by a scrape).
  std::atomic<std::size_t> mailbox_high_water{0};
  /// The CPU time this worker's thread has used, in nanoseconds (any
  /// thread, while the worker runs); 0 when it cannot be read.
  std::uint64_t busy_nanoseconds() const noexcept;

private:
  void drain_ready();

  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> guard_;
  /// Keeps `ready` from stopping when it runs out of handlers (a stopped
  /// io_context's poll_one runs nothing until restarted).
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> ready_guard_{std::in_place,
                                                                                        ready->get_executor()};
  bool drain_queued_ = false; // owner thread only
  static constexpr std::size_t spare_mailbox_capacity = 8;
  std::vector<std::vector<envelope>> spare_mailboxes_ = [] {
    std::vector<std::vector<envelope>> v;
    v.reserve(64);
    return v;
  }();
  std::thread thread_;
  std::atomic<int> cpu_clock_{-1}; // clockid_t of the thread, -1 until it runs
};

struct node_metrics;

class node_state {
public:
  explicit node_state(node_options options);
  ~node_state();

  worker& pick_worker(const std::optional<std::size_t>& requested);
  worker& worker_at(std::uint32_t index) const { return *workers_[index]; }
  std::size_t size() const noexcept { return workers_.size(); }

  std::uint64_t next_serial() noexcept { return serial_.fetch_add(1, std::memory_order_relaxed); }
  std::uint64_t next_ref() noexcept { return refs_.fetch_add(1, std::memory_order_relaxed); }

  /// Called on spawn (live and running) and as each process dies / finishes.
  void process_started() noexcept;
  void process_died() noexcept;
  void process_finished() noexcept;

  bool stopping() const noexcept { return stopping_.load(std::memory_order_acquire); }
  void shutdown();
  /// An event of the node itself, from a thread that is not its worker.
  void emit_here(const event& e) const;

  const node_options options;
  const std::uint32_t id;       // options.id, or the next free one
  const std::uint32_t creation; // options.creation, or drawn at random
  /// Whether `p` names a process of this node (or did).
  bool holds(const pid& p) const noexcept { return p.node_id() == id && p.creation() == creation; }
  grove::node* public_node = nullptr;
  std::atomic<std::size_t> live{0};    // processes not yet dead
  std::atomic<std::size_t> running{0}; // process coroutines not yet finished
  /// grove's built-in metrics of this node, when options.metrics is set.
  std::unique_ptr<node_metrics> metrics;

private:
  /// A process the shutdown reaches, and the time it asked for.
  struct root {
    pid process;
    std::optional<duration> shutdown_timeout;
  };
  std::vector<root> gather(bool roots_only);
  void signal(const std::vector<root>& targets, const exit_reason& reason);
  bool alive_here(const pid& p) const noexcept;
  std::vector<root> signal_roots();
  void let_roots_stop(std::vector<root>& roots);
  void kill_the_rest();
  void wait_for_unwinding();
  void stop_workers();
  void wait_until(const std::atomic<std::size_t>& counter, std::chrono::steady_clock::duration limit);

  std::vector<std::unique_ptr<worker>> workers_;
  std::atomic<std::size_t> round_robin_{0};
  std::atomic<std::uint64_t> serial_{1};
  std::atomic<std::uint64_t> refs_{1};
  std::atomic<bool> stopping_{false};
  std::mutex shutdown_mutex_;
  std::condition_variable shutdown_cv_;
  bool shut_down_ = false;
};

/// Calls `fn(node_state*)` with the node `p` names, or nullptr when that
/// node is gone (or never was). From the node's own workers this is a
/// comparison; elsewhere a lock-free lookup under an epoch pin, held while
/// `fn` runs, so `fn` must not block.
template <class F>
decltype(auto) with_node(const pid& p, F&& fn) {
  if (worker* here = this_worker; here && here->owner.holds(p)) return fn(&here->owner);
  epoch_guard pin;
  return fn(node_directory::find(p.node_id(), p.creation()));
}

/// Runs `fn(process_state*)` on the thread that owns `target`, with nullptr
/// when the target is gone. Inline when already there (a same-thread send
/// takes no lock) unless `always_post`; posted otherwise.
template <bool always_post = false, class F>
void on_owner(const pid& target, F&& fn) {
  worker* owner = with_node(target, [&](node_state* n) -> worker* {
    if (!n || target.worker() >= n->size()) return nullptr;
    worker& w = n->worker_at(target.worker());
    if (always_post || this_worker != &w) {
      // Posted under the pin: the node cannot be torn down meanwhile.
      asio::post(*w.io, [&w, target, f = std::forward<F>(fn)]() mutable { f(w.table.find(target)); });
    }
    return &w;
  });
  if (!owner) {
    fn(static_cast<process_state*>(nullptr));
  } else if (!always_post && this_worker == owner) {
    fn(owner->table.find(target));
  }
}

class process_state {
public:
  process_state(worker& w, pid self, const spawn_options& options);
  process_state(const process_state&) = delete;
  process_state& operator=(const process_state&) = delete;
  ~process_state();

  // -- mailbox ---------------------------------------------------------------
  void deliver(envelope env);
  bool has_mail() const noexcept { return head_ < mailbox_.size(); }
  envelope pop();
  std::size_t mailbox_size() const noexcept { return mailbox_.size() - head_; }
  /// Removes the first queued envelope matching `pred`; true if one was.
  template <class Pred>
  bool remove_queued(Pred pred) {
    for (std::size_t i = head_; i < mailbox_.size(); ++i) {
      if (pred(mailbox_[i])) {
        mailbox_.erase(mailbox_.begin() + static_cast<std::ptrdiff_t>(i));
        publish_length();
        return true;
      }
    }
    return false;
  }

  /// Waits until the mailbox is not empty (true) or `timeout` passed (false).
  using wait_handler = asio::any_completion_handler<void(boost::system::error_code, bool)>;
  void async_wait_mail(std::optional<std::chrono::steady_clock::duration> timeout, wait_handler handler);

  /// Waits for the next plain message (process::receive). The operation
  /// itself, not a coroutine around a wait: one frame less per idle process.
  using receive_handler = asio::any_completion_handler<void(boost::system::error_code, message)>;
  void async_receive(receive_handler handler);
  /// The next plain message, answering stray calls with errc::wrong_server.
  std::optional<message> take_info();

  // -- signals ---------------------------------------------------------------
  void on_exit_signal(const pid& from, const exit_reason& reason, bool from_link);
  void on_link(const pid& from) { rel().links.insert(from); }
  void on_unlink(const pid& from) {
    if (relations_) relations_->links.erase(from);
  }
  void on_monitor(std::uint64_t id, const pid& watcher) { rel().monitored_by.insert(id, watcher); }
  void on_demonitor(std::uint64_t id) {
    if (relations_) relations_->monitored_by.erase(id);
  }
  void on_down(const monitor_ref& ref, const exit_reason& reason);

  /// Linked to a live parent on the same node: that parent (a supervisor,
  /// say) stops it, so a node shutdown leaves it to the parent.
  bool stopped_by_parent() const noexcept;

  void link(const pid& other);
  void unlink(const pid& other);
  monitor_ref monitor(const pid& target);
  bool demonitor(const monitor_ref& ref);
  /// Records a monitor this process holds whose target already knows of it
  /// (spawn_monitor sets both sides before the target runs).
  void adopt_monitor(const monitor_ref& ref) { rel().monitors.insert(ref.id, ref.target); }

  /// Ends the process: unpublishes it, fails calls waiting on it, notifies
  /// links and monitors, and (unless it already finished) cancels its
  /// coroutine. Idempotent.
  void die(exit_reason reason, bool coroutine_running = true);
  bool dead() const noexcept { return dead_; }
  const exit_reason& reason() const noexcept { return reason_; }

  /// Calls taken out of the mailbox and not answered yet; failed with the
  /// exit reason when the process dies.
  void track_reply(std::shared_ptr<reply_slot_base> slot);
  void untrack_reply(const reply_slot_base* slot) noexcept;

  /// What node::processes() reports of it (owner thread).
  process_info info() const;

  worker& owner;
  const pid self;
  bool trap_exit;
  placement child_placement;               // process::set_child_placement
  std::string label;                       // process::set_label
  const char* kind = "process";            // "gen_server", "supervisor", ...: set by the layer that runs it
  bool serves = false; // a gen_server's loop runs here: grove::stop goes to it as a system request
  std::optional<duration> shutdown_timeout; // what a node shutdown gives it as a root (default: shutdown_grace)
  pid parent;
  asio::cancellation_signal cancel;
  grove::process handle{*this}; // what the body gets as `process&`

  /// Before teardown deletes this state: destroys what holds coroutine
  /// frames or io objects, while the io_context still exists.
  void release_for_teardown() noexcept;

private:
  void complete_wait(boost::system::error_code ec, bool got_mail);
  void complete_receive(boost::system::error_code ec, message m);
  void try_complete_receive();
  template <class F>
  void resume(F&& f);
  void publish_length() noexcept { slot_->queue_length.store(mailbox_size(), std::memory_order_relaxed); }
  void note_depth() noexcept {
    const std::size_t depth = mailbox_size();
    if (depth > owner.mailbox_high_water.load(std::memory_order_relaxed)) {
      owner.mailbox_high_water.store(depth, std::memory_order_relaxed); // only this worker's thread writes it
    }
  }
  bool push_allowed(envelope& env);

  /// Links and monitors: most processes have none, so they live behind one
  /// pointer, allocated on first use; most that have some have one or two
  /// (relation_map.hpp).
  struct relations {
    relation_map<pid> links;
    relation_map<std::uint64_t, pid> monitored_by; // ref id -> watcher
    relation_map<std::uint64_t, pid> monitors;     // ref id -> target
  };
  relations& rel() {
    if (!relations_) relations_ = std::make_unique<relations>();
    return *relations_;
  }

  process_table::slot* slot_;
  std::vector<envelope> mailbox_;
  std::size_t head_ = 0;
  mailbox_options mailbox_options_;

  // Never move-assign an any_completion_handler in Boost 1.81: its
  // operator=(&&) wraps the source in a new handler instead of taking it.
  // Hence optional + emplace/reset.
  std::optional<wait_handler> waiter_;
  std::optional<receive_handler> receiver_;
  std::unique_ptr<asio::steady_timer> wait_timer_; // created by the first wait with a timeout
  std::uint64_t wait_generation_ = 0;
  std::unique_ptr<relations> relations_;
  std::vector<std::shared_ptr<reply_slot_base>> pending_replies_;
  std::uint32_t pending_compact_at_ = 8;

  bool dead_ = false;
  exit_reason reason_;

  friend class worker::process_list;
  process_state* prev_ = nullptr;
  process_state* next_ = nullptr;
};


/// Suspends the calling process until its mailbox is not empty (true) or
/// `timeout` passed (false). Throws operation_aborted if it dies meanwhile.
asio::awaitable<bool> wait_for_mail(process_state& state, std::optional<std::chrono::steady_clock::duration> timeout);

/// The bottom frame of a process's coroutine stack, launched without
/// co_spawn (process.cpp says why).
using process_entry = asio::awaitable<asio::detail::awaitable_thread_entry_point, asio::any_io_executor>;
/// A gen_server's bottom frame: the server loop itself (gen_server.cpp).
process_entry run_server_process(process_state* state, std::unique_ptr<body_base> body, server_run loop);
/// What a process that threw `e` out of its body exits with.
exit_reason reason_of(const std::exception_ptr& e);
/// The body's coroutine ended, returning or throwing: the process ends
/// with it. Called from its bottom frame, last.
void body_finished(process_state* p, exit_reason reason);

} // namespace grove::detail
