#include <grove/erps/daemon.hpp>

#include <grove/erps/detail/link.hpp>
#include <grove/erps/detail/metrics.hpp>
#include <grove/erps/detail/session.hpp>
#include <grove/erps/detail/transport.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <atomic>
#include <optional>
#include <stdexcept>
#include <unordered_map>

namespace grove::erps {

namespace detail {

namespace {
using tcp = asio::ip::tcp;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
} // namespace

class daemon_state {
public:
  std::shared_ptr<link_counters> counters = std::make_shared<link_counters>();
  std::atomic<std::uint16_t> port{0};
  std::string address;
  dynamic_supervisor supervisor;
  bool has_tls = false;
};

std::shared_ptr<daemon_state> make_daemon_state(const daemon_options& options) {
  auto state = std::make_shared<daemon_state>();
  state->address = options.bind_address;
  state->has_tls = options.tls.has_value();
  return state;
}

// (Named, not anonymous: coroutine templates from headers are instantiated
// over these types, and g++ warns about frames with internal-linkage members.)
inline namespace daemon_impl {

struct accepted_connection {
  tcp::socket socket;
  std::size_t worker;
};

// A connection made by the caller (detail::adopt_connection), served as if
// it had been accepted.
struct adopted_connection {
  std::unique_ptr<transport> stream;
  std::size_t worker;
};

struct reload_request {
  using reply_type = std::string; // empty: done; else why not
};

struct shutdown_request {
  using reply_type = bool;
  duration deadline;
};

struct shutdown_deadline {};

// The acceptor, shared by the listener and its accept loop (which may
// outlive the listener by one completion).
struct acceptor_holder {
  explicit acceptor_holder(asio::io_context& io) : acceptor(io), retry(io) {}
  tcp::acceptor acceptor;
  asio::steady_timer retry;
  std::size_t next_worker = 0;
};

/// A session supervisor's reports as the daemon's log records (none when
/// the log is off).
std::function<void(const supervisor_report&)> supervisor_log(const log_function& log) {
  if (!log) return nullptr;
  return [log](const supervisor_report& r) {
    const std::string text = "connection " + (r.child ? r.child.to_string() : r.child_id) + ": " + r.reason.to_string();
    log(log_record{log_level::warning, r.context, {}, text});
  };
}

link_config make_link_config(const daemon_options& o, const std::shared_ptr<link_counters>& counters) {
  link_config c = detail::make_link_config(o.link);
  c.server = true;
  // A server's frames carry version 0.0.0 and no identifier, as erps's
  // server's do: only a client's are checked.
  c.writer = frame_writer{protocol_version{0, 0, 0}, std::string(), o.link.signing};
  c.versions = version_requirement::parse(o.version_requirement);
  c.idle_timeout = o.idle_timeout;
  if (o.tls) c.handshake_timeout = o.tls->handshake_timeout;
  c.max_calls_in_flight = o.max_calls_in_flight;
  c.batch_frames = true; // a session takes a read's calls in one message
  c.counters = counters;
  return c;
}

class listener : public gen_server {
public:
  listener(daemon_options options, session_factory factory, std::shared_ptr<daemon_state> state,
           std::shared_ptr<tls_context> tls)
      : options_(std::move(options)),
        factory_(std::move(factory)),
        state_(std::move(state)),
        tls_(std::move(tls)),
        config_(make_link_config(options_, state_->counters)) {}

  ~listener() override { close_acceptor(); }

  awaitable<action> init() {
    node& n = this_process().node();
    if (options_.supervisor) {
      supervisor_ = *options_.supervisor;
    } else {
      dynamic_supervisor_options sup;
      sup.max_children = std::nullopt;
      // The daemon's own supervisor reports through the daemon's log, so
      // link.log = nullptr silences both.
      sup.report = supervisor_log(options_.link.log);
      supervisor_ = co_await dynamic_supervisor::start_link(n, sup);
      own_supervisor_ = true;
    }
    state_->supervisor = supervisor_;
    acceptor_ = std::make_shared<acceptor_holder>(n.context(self().worker()));
    const tcp::endpoint where(asio::ip::make_address(options_.bind_address), options_.port);
    boost::system::error_code error;
    tcp::acceptor& a = acceptor_->acceptor;
    a.open(where.protocol(), error);
    if (!error) a.set_option(tcp::acceptor::reuse_address(true), error);
    if (!error) a.bind(where, error);
    if (!error) a.listen(options_.backlog, error);
    if (error) {
      co_return stop(exit_reason::error("cannot listen on " + endpoint_text(where) + ": " + error.message()));
    }
    state_->port.store(a.local_endpoint().port(), std::memory_order_release);
    const std::string where_text = endpoint_text(a.local_endpoint());
    this_process().set_label("erps listener " + where_text + (tls_ ? " (TLS)" : " (TCP)"));
    if (telemetry::metric_registry* r = n.metrics()) {
      const std::string name = options_.name.empty() ? where_text : options_.name;
      const std::string node_id = std::to_string(n.id());
      config_.metrics = std::make_shared<const daemon_series>(*r, node_id, name);
      shared_config_.reset(); // the links from here on see the metrics
      collectors_.emplace(*r, node_id, name, state_->counters);
    }
    log(log_level::info, "listening", "listening on " + where_text + (tls_ ? " (TLS)" : " (TCP)"));
    asio::co_spawn(a.get_executor(), accept_loop(acceptor_, self(), &n, options_.link.log), asio::detached);
    co_return action{};
  }

  awaitable<action> handle_info(message m) {
    if (auto* a = m.get_if<accepted_connection>()) {
      state_->counters->accepted.fetch_add(1, std::memory_order_relaxed);
      if (shutting_down_) co_return action{};
      const auto open = state_->counters->connections.load(std::memory_order_relaxed);
      if (options_.max_connections != 0 && open >= static_cast<std::int64_t>(options_.max_connections)) {
        refuse(std::move(a->socket), open);
        co_return action{};
      }
      co_await start_session(wrap(std::move(a->socket)), a->worker);
      co_return action{};
    }
    if (auto* a = m.get_if<adopted_connection>()) {
      if (!shutting_down_) co_await start_session(std::move(a->stream), a->worker);
    } else if (auto* down = m.get_if<down_message>()) {
      sessions_.erase(down->process);
      if (shutting_down_ && sessions_.empty()) co_return co_await finish();
    } else if (m.is<shutdown_deadline>() && shutting_down_) {
      if (!sessions_.empty()) {
        log(log_level::warning, "shutdown_deadline",
            std::to_string(sessions_.size()) + " connection(s) still busy at the shutdown deadline: killed");
        for (auto& [p, monitor] : sessions_) grove::exit(p, exit_reason::kill());
      }
      co_return co_await finish();
    }
    co_return action{};
  }

  std::string handle_call(reload_request) {
    if (!options_.tls) return "this daemon has no TLS to reload";
    try {
      tls_ = tls_context::server(*options_.tls);
    } catch (const std::exception& e) {
      log(log_level::error, "tls_reload_failed", std::string(e.what()) + " (the previous certificate stays in use)");
      return e.what();
    }
    log(log_level::info, "tls_reloaded", "TLS certificate, key and CA reloaded; new connections use them");
    return {};
  }

  awaitable<call_result<bool>> handle_call(shutdown_request request, from<bool> caller) {
    waiting_.push_back(caller);
    if (shutting_down_) co_return grove::call_result<bool>(grove::noreply);
    shutting_down_ = true;
    close_acceptor();
    log(log_level::info, "draining",
        "shutting down: " + std::to_string(sessions_.size()) + " connection(s) finish their calls in flight");
    for (auto& [p, monitor] : sessions_) grove::send(p, drain{});
    grove::send_after(self(), request.deadline, shutdown_deadline{});
    if (sessions_.empty()) {
      action next = co_await finish();
      co_return grove::call_result<bool>(grove::noreply, std::move(next));
    }
    co_return grove::call_result<bool>(grove::noreply);
  }

  void terminate(const exit_reason&) {
    close_acceptor();
    if (own_supervisor_ && supervisor_) grove::exit(supervisor_.id(), exit_reason::shutdown());
  }

private:
  void log(log_level level, std::string_view event, const std::string& text) const {
    if (options_.link.log) options_.link.log(log_record{level, event, {}, text});
  }

  void close_acceptor() noexcept {
    if (!acceptor_) return;
    boost::system::error_code ignored;
    acceptor_->acceptor.close(ignored);
    acceptor_->retry.cancel();
  }

  std::unique_ptr<transport> wrap(tcp::socket socket) {
    if (tls_) return tls_->wrap(std::move(socket), {});
    return make_tcp_transport(std::move(socket));
  }

  awaitable<void> start_session(std::unique_ptr<transport> stream, std::size_t worker) {
    auto pending = std::make_shared<pending_session>();
    pending->stream = std::move(stream);
    if (!shared_config_) shared_config_ = std::make_shared<const link_config>(config_);
    pending->config = shared_config_;
    pending->link_id = ++links_;
    const std::string peer = pending->stream->peer();
    child_spec spec;
    spec.start = factory_(pending, worker);
    spec.restart = restart_type::temporary;
    std::string failure;
    try {
      pid p = co_await supervisor_.start_child(std::move(spec));
      if (p) sessions_.emplace(p, this_process().monitor(p));
    } catch (const std::exception& e) {
      failure = e.what();
    }
    if (!failure.empty()) {
      if (options_.link.log) {
        options_.link.log(log_record{log_level::error, "session_start_failed", peer, "the connection's server did not start: " + failure});
      }
    }
  }

  // Over max_connections: an error frame, then a clean close (after the TLS
  // handshake, on a TLS port), bounded by the handshake timeout and linger.
  void refuse(tcp::socket socket, std::int64_t open) {
    state_->counters->refused.fetch_add(1, std::memory_order_relaxed);
    auto c = std::make_shared<link_config>(config_);
    c->counters = nullptr;
    auto l = std::make_shared<link>(wrap(std::move(socket)), std::move(c), pid{}, 0);
    const std::string reason = "too many connections: " + std::to_string(open) + " open (max_connections " +
                               std::to_string(options_.max_connections) + ")";
    l->log(log_level::warning, "connection_refused", reason);
    // The link runs on its socket's worker, not necessarily ours.
    asio::post(l->stream().executor(), [l, reason] {
      l->start();
      l->send_error(reason);
      l->close_after_flush(reason, true);
    });
  }

  awaitable<action> finish() {
    if (finished_) co_return stop();
    finished_ = true;
    if (own_supervisor_ && supervisor_) {
      this_process().unlink(supervisor_.id()); // its end must not end us before we reply
      co_await grove::detail::await_exit(supervisor_.id(), std::chrono::seconds(10), exit_reason::shutdown());
    }
    for (auto& waiting : waiting_) waiting.reply(true);
    waiting_.clear();
    log(log_level::info, "stopped", "the daemon stopped");
    co_return stop();
  }

  static awaitable<void> accept_loop(std::shared_ptr<acceptor_holder> holder, pid owner, node* n, log_function log) {
    for (;;) {
      const std::size_t worker = holder->next_worker++ % n->size();
      auto [error, socket] = co_await holder->acceptor.async_accept(n->context(worker), use_tuple);
      if (!holder->acceptor.is_open() || error == asio::error::operation_aborted) co_return;
      if (error) {
        // Out of file descriptors, say: not a reason to stop accepting, nor
        // to spin. Try again shortly.
        if (log) log(log_record{log_level::error, "accept_failed", {}, "accept failed: " + error.message()});
        holder->retry.expires_after(std::chrono::milliseconds(100));
        co_await holder->retry.async_wait(use_tuple);
        continue;
      }
      grove::send(owner, accepted_connection{std::move(socket), worker});
    }
  }

  daemon_options options_;
  session_factory factory_;
  std::shared_ptr<daemon_state> state_;
  std::shared_ptr<tls_context> tls_;
  link_config config_;
  std::shared_ptr<const link_config> shared_config_; // what sessions' links share (made from config_ when first needed)
  std::shared_ptr<acceptor_holder> acceptor_;
  dynamic_supervisor supervisor_;
  bool own_supervisor_ = false;
  std::unordered_map<pid, monitor_ref> sessions_;
  std::vector<from<bool>> waiting_;
  std::uint64_t links_ = 0;
  bool shutting_down_ = false;
  bool finished_ = false;
  std::optional<daemon_collectors> collectors_; // while it runs
};

} // namespace daemon_impl

void adopt_connection(const daemon& d, std::unique_ptr<transport> stream, std::size_t worker) {
  grove::send(d.id(), adopted_connection{std::move(stream), worker});
}

awaitable<pid> start_daemon(node& n, daemon_options options, session_factory factory,
                            std::shared_ptr<daemon_state> state, bool link) {
  std::shared_ptr<tls_context> tls;
  if (options.tls) tls = tls_context::server(*options.tls);
  start_options start;
  start.link = link;
  start.worker = options.worker;
  start.init_timeout = std::chrono::seconds(15);
  return grove::detail::start_untyped<listener>(n, start, std::move(options), std::move(factory), std::move(state),
                                                std::move(tls));
}

} // namespace detail

void daemon_options::validate() const {
  constexpr std::string_view at = "daemon_options";
  boost::system::error_code error;
  boost::asio::ip::make_address(bind_address, error);
  if (error) {
    detail::bad_option(at, "bind_address", "\"" + bind_address + "\": expected an IPv4 or IPv6 address, e.g. 127.0.0.1 or ::1");
  }
  if (backlog <= 0) detail::bad_option(at, "backlog", std::to_string(backlog) + ": expected a positive number");
  link.validate(at);
  try {
    version_requirement::parse(version_requirement);
  } catch (const grove::error& e) {
    detail::bad_option(at, "version_requirement", e.what());
  }
  if (idle_timeout && *idle_timeout <= duration::zero()) detail::bad_option(at, "idle_timeout", "expected a positive duration");
  if (name.size() > 128 || name.find_first_of("\n\r\"\\") != std::string::npos) {
    detail::bad_option(at, "name", "expected at most 128 characters, without quotes, backslashes or line breaks");
  }
}

awaitable<daemon> daemon::start_impl(node& n, daemon_options options, detail::session_factory factory, bool link) {
  options.validate();
  auto state = detail::make_daemon_state(options);
  daemon d;
  d.state_ = state;
  d.listener_ = co_await detail::start_daemon(n, std::move(options), std::move(factory), state, link);
  co_return d;
}

std::uint16_t daemon::port() const noexcept { return state_ ? state_->port.load(std::memory_order_acquire) : 0; }

const std::string& daemon::address() const noexcept {
  static const std::string none;
  return state_ ? state_->address : none;
}

dynamic_supervisor daemon::supervisor() const noexcept { return state_ ? state_->supervisor : dynamic_supervisor(); }

daemon_stats daemon::stats() const noexcept {
  daemon_stats s;
  if (!state_) return s;
  const auto& c = *state_->counters;
  s.connections = c.connections.load(std::memory_order_relaxed);
  s.queued_bytes = c.queued_bytes.load(std::memory_order_relaxed);
  s.parked = c.parked.load(std::memory_order_relaxed);
  s.accepted = c.accepted.load(std::memory_order_relaxed);
  s.refused = c.refused.load(std::memory_order_relaxed);
  s.frames_in = c.frames_in.load(std::memory_order_relaxed);
  s.keepalives_in = c.keepalives_in.load(std::memory_order_relaxed);
  s.rejected_frames = c.rejected_frames.load(std::memory_order_relaxed);
  s.tls_handshakes = c.tls_handshakes.load(std::memory_order_relaxed);
  s.tls_resumed = c.tls_resumed.load(std::memory_order_relaxed);
  return s;
}

awaitable<void> daemon::reload_tls() const {
  if (!state_ || !state_->has_tls) throw grove::error(errc::invalid_argument, "reload_tls: this daemon has no TLS");
  std::string problem = co_await server_ref<detail::listener>(listener_).call(detail::reload_request{});
  if (!problem.empty()) throw grove::error(errc::invalid_argument, problem);
}

awaitable<void> daemon::shutdown(duration deadline) const {
  if (!listener_) co_return;
  try {
    detail::shutdown_request request{deadline};
    co_await server_ref<detail::listener>(listener_).call(request, deadline + std::chrono::seconds(15));
  } catch (const grove::error&) {
    // Already gone (noproc, exited): it has ended, which is what was asked.
  }
  co_await grove::detail::await_exit(listener_, std::chrono::seconds(5));
}

} // namespace grove::erps
