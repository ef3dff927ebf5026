#include <grove/core/detail/node_metrics.hpp>
#include <grove/core/detail/runtime.hpp>
#include <grove/core/cpus.hpp>
#include <grove/core/error.hpp>
#include <grove/core/node.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <cstdio>
#include <ctime>
#include <exception>
#include <pthread.h>
#include <random>

namespace grove::detail {

namespace {
/// A creation number for a node started without one: random, so a node
/// restarted under the same id is told apart from its earlier life.
std::uint32_t draw_creation() {
  std::random_device rd;
  std::uint32_t c = 0;
  while (c == 0) c = rd() ^ static_cast<std::uint32_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  return c;
}

std::size_t worker_count(const node_options& options) {
  if (options.threads > 0) return options.threads;
  return available_cpus();
}
} // namespace

worker::worker(node_state& n, std::uint32_t i) : owner(n), index(i) {}

void worker::start() {
  guard_.emplace(io->get_executor());
  thread_ = std::thread([this] {
    this_worker = this;
    clockid_t clock{};
    if (pthread_getcpuclockid(pthread_self(), &clock) == 0) cpu_clock_.store(static_cast<int>(clock), std::memory_order_relaxed);
    // A handler that throws must not end the worker: grove's own handlers do
    // not throw, but a user's posted function might.
    for (;;) {
      try {
        io->run();
        break;
      } catch (const std::exception& e) {
        handler_threw(e.what());
      } catch (...) {
        handler_threw("unknown exception");
      }
    }
    this_worker = nullptr;
  });
}

std::uint64_t worker::busy_nanoseconds() const noexcept {
  const int clock = cpu_clock_.load(std::memory_order_relaxed);
  timespec ts{};
  if (clock == -1 || clock_gettime(static_cast<clockid_t>(clock), &ts) != 0) return 0;
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<std::uint64_t>(ts.tv_nsec);
}

void worker::handler_threw(const char* what) {
  grove::emit(event{.level = event_level::error,
                    .layer = "core",
                    .name = "handler_threw",
                    .fields = {{"node", std::to_string(owner.id)}, {"worker", std::to_string(index)}, {"what", what}}});
}

void worker::drain_ready() {
  // A resumption that throws leaves through io->run() (the worker loop
  // reports it); the drain is queued again so what remains still runs.
  struct requeue {
    worker* w;
    bool done = false;
    ~requeue() {
      if (!done) asio::post(*w->io, [w = w] { w->drain_ready(); });
    }
  } again{this};
  for (int i = 0; i < ready_budget; ++i) {
    if (ready->poll_one() == 0) {
      drain_queued_ = false;
      again.done = true;
      return;
    }
  }
  // Budget spent with more ready: `io` polls its reactor, then this runs on.
}

void worker::join() {
  guard_.reset();
  io->stop();
  if (thread_.joinable()) thread_.join();
}

void worker::process_list::push(process_state* p) noexcept {
  p->prev_ = nullptr;
  p->next_ = head_;
  if (head_) head_->prev_ = p;
  head_ = p;
}

void worker::process_list::erase(process_state* p) noexcept {
  (p->prev_ ? p->prev_->next_ : head_) = p->next_;
  if (p->next_) p->next_->prev_ = p->prev_;
  p->prev_ = p->next_ = nullptr;
}

std::vector<process_state*> worker::process_list::snapshot() const {
  std::vector<process_state*> all;
  for (process_state* p = head_; p; p = p->next_) all.push_back(p);
  return all;
}

void worker::teardown_release() {
  deadlines->abandon_all();
  for (process_state* p : processes.snapshot()) p->release_for_teardown();
}

void worker::teardown_processes() {
  for (process_state* p : processes.snapshot()) {
    processes.erase(p);
    delete p;
  }
  deadlines.reset();
}

void worker::teardown_io() {
  // Pending resumptions hold coroutine frames whose I/O objects belong to
  // `io`: destroyed first.
  ready_guard_.reset();
  ready.reset();
  io.reset();
}

void deadline_list::insert(entry& e) {
  entry* after = tail_;
  while (after && after->deadline > e.deadline) after = after->prev;
  e.prev = after;
  e.next = after ? after->next : head_;
  (e.next ? e.next->prev : tail_) = &e;
  (after ? after->next : head_) = &e;
  e.linked = true;
  if (e.deadline != clock::time_point::max() && e.deadline < armed_for_) arm(e.deadline);
}

void deadline_list::remove(entry& e) noexcept {
  if (!e.linked) return;
  (e.prev ? e.prev->next : head_) = e.next;
  (e.next ? e.next->prev : tail_) = e.prev;
  e.prev = e.next = nullptr;
  e.linked = false;
}

void deadline_list::abandon_all() noexcept {
  while (head_) {
    entry& e = *head_;
    remove(e);
    e.abandon();
  }
}

void deadline_list::arm(clock::time_point at) {
  armed_for_ = at;
  timer_.expires_at(at);
  timer_.async_wait([this](boost::system::error_code ec) { on_timer(ec); });
}

void deadline_list::on_timer(boost::system::error_code ec) {
  if (ec) return; // re-armed for an earlier deadline, or torn down
  armed_for_ = clock::time_point::max();
  const auto now = clock::now();
  while (head_ && head_->deadline <= now) {
    entry& e = *head_;
    remove(e);
    e.expire();
  }
  if (head_ && head_->deadline != clock::time_point::max()) arm(head_->deadline);
}

node_state::node_state(node_options opts)
    : options(std::move(opts)), id(options.id != 0 ? options.id : node_directory::next_free_id()),
      creation(options.creation != 0 ? options.creation : draw_creation()) {
  const std::size_t n = worker_count(options);
  workers_.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    workers_.push_back(std::make_unique<worker>(*this, static_cast<std::uint32_t>(i)));
  }
  node_directory::add(*this); // throws if the identity is taken; nothing started yet
  try {
    if (options.metrics) metrics = std::make_unique<node_metrics>(*this, *options.metrics);
    for (auto& w : workers_) w->start();
  } catch (...) {
    if (metrics) metrics->stop_collecting();
    node_directory::remove(*this);
    for (auto& w : workers_) w->join();
    throw;
  }
}

node_state::~node_state() { shutdown(); }

worker& node_state::pick_worker(const std::optional<std::size_t>& requested) {
  if (requested) {
    if (*requested >= workers_.size()) {
      throw grove::error(errc::invalid_argument, "spawn_options::worker is " + std::to_string(*requested) +
                                                      " but the node has " + std::to_string(workers_.size()) +
                                                      " workers (0 to " + std::to_string(workers_.size() - 1) + ")");
    }
    return *workers_[*requested];
  }
  return *workers_[round_robin_.fetch_add(1, std::memory_order_relaxed) % workers_.size()];
}

void node_state::process_started() noexcept {
  if (metrics) metrics->spawned.inc();
  live.fetch_add(1, std::memory_order_relaxed);
  running.fetch_add(1, std::memory_order_relaxed);
}

void node_state::process_died() noexcept {
  if (live.fetch_sub(1, std::memory_order_acq_rel) == 1 && stopping()) {
    std::lock_guard lock(shutdown_mutex_);
    shutdown_cv_.notify_all();
  }
}

void node_state::process_finished() noexcept {
  if (running.fetch_sub(1, std::memory_order_acq_rel) == 1 && stopping()) {
    std::lock_guard lock(shutdown_mutex_);
    shutdown_cv_.notify_all();
  }
}

void node_state::wait_until(const std::atomic<std::size_t>& counter, std::chrono::steady_clock::duration limit) {
  std::unique_lock lock(shutdown_mutex_);
  shutdown_cv_.wait_for(lock, limit, [&] { return counter.load(std::memory_order_acquire) == 0; });
}

void node_state::shutdown() {
  if (this_worker && &this_worker->owner == this) {
    throw grove::error(errc::invalid_argument, "node::shutdown() called from one of the node's own workers; call it from another thread");
  }
  {
    std::lock_guard lock(shutdown_mutex_);
    if (shut_down_) return;
    shut_down_ = true;
  }
  stopping_.store(true, std::memory_order_release);
  // Named stages, each owning its deadline.
  std::vector<root> roots = signal_roots();
  let_roots_stop(roots);
  kill_the_rest();
  wait_for_unwinding();
  if (metrics) metrics->stop_collecting(); // before the workers' threads end: a scrape reads their clocks
  stop_workers();
}

std::vector<node_state::root> node_state::gather(bool roots_only) {
  // Gathered from all workers before any signal is sent, so a parent that
  // ends because of this shutdown cannot make its child look like a root
  // meanwhile. Shared with the posted gatherers: a worker stuck in a user's
  // blocking call must not stop the shutdown (what it did not report is
  // killed later anyway), and its gatherer may run after we moved on.
  struct gathered {
    std::vector<root> found;
    std::size_t left;
  };
  auto g = std::make_shared<gathered>(gathered{{}, workers_.size()});
  for (auto& w : workers_) {
    asio::post(*w->io, [this, wp = w.get(), roots_only, g] {
      std::vector<root> mine;
      for (process_state* p : wp->processes.snapshot()) {
        if (!p->dead() && !(roots_only && p->stopped_by_parent())) mine.push_back({p->self, p->shutdown_timeout});
      }
      std::lock_guard lock(shutdown_mutex_);
      g->found.insert(g->found.end(), mine.begin(), mine.end());
      if (--g->left == 0) shutdown_cv_.notify_all();
    });
  }
  std::unique_lock lock(shutdown_mutex_);
  shutdown_cv_.wait_for(lock, options.shutdown_grace, [&] { return g->left == 0; });
  return g->found;
}

void node_state::signal(const std::vector<root>& targets, const exit_reason& reason) {
  for (const root& r : targets) {
    worker& w = *workers_[r.process.worker()];
    asio::post(*w.io, [&w, p = r.process, reason] {
      if (process_state* s = w.table.find(p)) s->on_exit_signal(pid{}, reason, false);
    });
  }
}

void node_state::emit_here(const event& e) const {
  if (public_node) grove::emit(*public_node, e); // emit applies the sink and its level
}

bool node_state::alive_here(const pid& p) const noexcept {
  return p.worker() < workers_.size() && workers_[p.worker()]->table.alive(p);
}

// Stage 1: the shutdown goes to the roots only. A process linked to a live
// parent is stopped by that parent, so a supervisor stops its children in
// its own order (reverse start order) and by their own policies.
std::vector<node_state::root> node_state::signal_roots() {
  std::vector<root> roots = gather(true);
  signal(roots, exit_reason::shutdown());
  return roots;
}

// Stage 2: each root gets its own shutdown time (process::set_shutdown_timeout;
// a supervisor's is as long as its children's policies take), or else
// shutdown_grace; a root still alive at its deadline is killed then.
void node_state::let_roots_stop(std::vector<root>& roots) {
  using clock = std::chrono::steady_clock;
  const auto started = clock::now();
  auto deadline_of = [&](const root& r) {
    const duration limit = r.shutdown_timeout.value_or(options.shutdown_grace);
    return limit >= clock::time_point::max() - started ? clock::time_point::max() : started + limit;
  };
  std::unique_lock lock(shutdown_mutex_);
  for (;;) {
    std::erase_if(roots, [&](const root& r) { return !alive_here(r.process); });
    if (roots.empty() || live.load(std::memory_order_acquire) == 0) return;
    const auto now = clock::now();
    std::vector<root> overdue;
    auto next = clock::time_point::max();
    for (const root& r : roots) {
      const auto d = deadline_of(r);
      if (d <= now) {
        overdue.push_back(r);
      } else {
        next = std::min(next, d);
      }
    }
    if (!overdue.empty()) {
      lock.unlock();
      signal(overdue, exit_reason::kill());
      lock.lock();
      std::erase_if(roots, [&](const root& r) { return deadline_of(r) <= now; });
      continue;
    }
    // Woken by every process that dies while stopping; re-checked then.
    if (next == clock::time_point::max()) {
      shutdown_cv_.wait(lock);
    } else {
      shutdown_cv_.wait_until(lock, next);
    }
  }
}

// Stage 3: whatever is still alive (children of killed roots that trap
// exits, processes a root left behind) is killed; it has shutdown_grace.
void node_state::kill_the_rest() {
  if (live.load() == 0) return;
  signal(gather(false), exit_reason::kill());
  wait_until(live, options.shutdown_grace);
}

// Stage 4: killed coroutines unwind at their next suspension point.
void node_state::wait_for_unwinding() {
  wait_until(running, options.shutdown_grace);
  if (running.load() > 0 || live.load() > 0) {
    emit_here(event{.level = event_level::warning,
                    .layer = "core",
                    .name = "shutdown_incomplete",
                    .fields = {{"node", std::to_string(id)}, {"unfinished", std::to_string(running.load())}}});
  }
}

// Stage 5: join the workers, unlist the node, tear down.
void node_state::stop_workers() {
  for (auto& w : workers_) w->join();
  // From here no pid resolves to this node: a send is a no-op, a call fails
  // with noproc. Returns once no other thread is still posting to a worker.
  node_directory::remove(*this);
  for (auto& w : workers_) w->teardown_release();
  for (auto& w : workers_) w->teardown_processes();
  for (auto& w : workers_) w->teardown_io();
}

} // namespace grove::detail

namespace grove {

node::node(node_options options)
    : state_(std::make_unique<detail::node_state>(options)), options_metrics_(options.metrics) {
  state_->public_node = this;
}

node::~node() {
  try {
    state_->shutdown();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "grove: ~node: %s\n", e.what());
    std::terminate();
  }
}

std::size_t node::size() const noexcept { return state_->size(); }
std::uint32_t node::id() const noexcept { return state_->id; }
std::uint32_t node::creation() const noexcept { return state_->creation; }
std::size_t node::process_count() const noexcept { return state_->live.load(std::memory_order_relaxed); }

awaitable<std::vector<process_info>> node::processes() {
  using found = std::vector<process_info>;
  using handler_type = boost::asio::any_completion_handler<void(found)>;
  return boost::asio::async_initiate<const boost::asio::use_awaitable_t<>&, void(found)>(
      [state = state_.get()](handler_type handler) {
        struct gathering {
          std::mutex mutex;
          found all;
          std::size_t left;
          std::optional<handler_type> handler;
        };
        auto g = std::make_shared<gathering>();
        g->left = state->size();
        g->handler.emplace(std::move(handler));
        for (std::size_t i = 0; i < state->size(); ++i) {
          detail::worker& w = state->worker_at(static_cast<std::uint32_t>(i));
          boost::asio::post(*w.io, [&w, g] {
            found mine;
            for (detail::process_state* p : w.processes.snapshot()) {
              if (!p->dead()) mine.push_back(p->info());
            }
            std::unique_lock lock(g->mutex);
            g->all.insert(g->all.end(), std::make_move_iterator(mine.begin()), std::make_move_iterator(mine.end()));
            if (--g->left != 0) return;
            handler_type h = std::move(*g->handler);
            g->handler.reset();
            found all = std::move(g->all);
            lock.unlock();
            auto ex = boost::asio::get_associated_executor(h);
            boost::asio::dispatch(ex, [h = std::move(h), all = std::move(all)]() mutable { std::move(h)(std::move(all)); });
          });
        }
      },
      boost::asio::use_awaitable);
}
bool node::stopping() const noexcept { return state_->stopping(); }
void node::shutdown() { state_->shutdown(); }

boost::asio::io_context& node::context(std::size_t index) {
  if (index >= state_->size()) {
    throw error(errc::invalid_argument, "node::context(" + std::to_string(index) + "): the node has " +
                                            std::to_string(state_->size()) + " workers");
  }
  return *state_->worker_at(static_cast<std::uint32_t>(index)).io;
}

void node::check_blocking_allowed() const {
  if (detail::this_worker && &detail::this_worker->owner == state_.get()) {
    throw error(errc::invalid_argument, "node::block_on called from one of the node's own workers: it would wait for itself");
  }
  if (state_->stopping()) throw error(errc::node_stopped);
}

void node::run_blocking(awaitable<void> work) {
  check_blocking_allowed();
  boost::asio::co_spawn(*state_->worker_at(0).io, std::move(work), boost::asio::detached);
}

} // namespace grove
