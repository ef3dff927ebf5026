// groved: grove's sample daemon. A key-value store with counters and topics,
// served over erps (plain TCP and mutual TLS), built only from grove's
// public API. groved --help lists the options; service.hpp the requests.
//
// The supervision tree (rest_for_one: if the tenants fail, the listeners
// restart after them):
//   groved
//   ├── tenants          the tenant manager (tenants.hpp)
//   │   └── tenant ID    one process per tenant, owning its store
//   │       └── shard-0..N  its shards, registered as groved.shard.ID/I
//   ├── tcp              erps daemon: listener + a dynamic supervisor with one
//   └── tls              session process per client
#include "config.hpp"
#include "logger.hpp"
#include "metrics.hpp"
#include "service.hpp"
#include "tenants.hpp"
#include "tree.hpp"

#include <grove/admin/admin_server.hpp>
#include <grove/core/node.hpp>
#include <grove/core/process.hpp>
#include <grove/erps/daemon.hpp>
#include <grove/registry/local_registry.hpp>
#include <grove/remote_term/http_fetcher.hpp>
#include <grove/remote_term/remote_term.hpp>
#include <grove/supervisor/supervisor.hpp>

#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <sys/resource.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <iostream>
#include <memory>
#include <optional>

namespace groved {
namespace {

/// The admin endpoint's options: /readyz is ready while the root
/// supervisor is up and every enabled listener is up.
grove::admin::admin_options admin_options_for(const config& c, const grove::telemetry::metric_registry& metrics,
                                              std::shared_ptr<service_state> state, grove::pid top) {
  grove::admin::admin_options o;
  o.address = c.admin.address;
  o.port = c.admin.port;
  o.metrics = &metrics;
  o.supervisors = {top};
  o.ready = [state, tcp = c.tcp.enabled, tls = c.tls.enabled] {
    const auto daemons = state->daemons();
    if (tcp && !daemons[tcp_slot]) return grove::admin::readiness{false, "the tcp listener is not up"};
    if (tls && !daemons[tls_slot]) return grove::admin::readiness{false, "the tls listener is not up"};
    return grove::admin::readiness{};
  };
  return o;
}

struct signal_received {
  int number;
};

const char* signal_name(int n) {
  switch (n) {
    case SIGINT: return "SIGINT";
    case SIGTERM: return "SIGTERM";
    case SIGHUP: return "SIGHUP";
  }
  return "signal";
}

// Forwards each signal to the main process as a message.
struct signal_watcher {
  std::shared_ptr<boost::asio::signal_set> signals;
  grove::pid main;

  grove::awaitable<void> operator()(grove::process&) {
    for (;;) {
      boost::system::error_code ec;
      int number = co_await signals->async_wait(
          boost::asio::redirect_error(boost::asio::use_awaitable, ec));
      if (ec) co_return; // cancelled: groved is stopping
      grove::send(main, signal_received{number});
    }
  }
};

// Waits until every monitored process in `refs` has ended, at most `limit`;
// true if they all did.
grove::awaitable<bool> await_down(grove::process& self, std::vector<grove::monitor_ref> refs, grove::duration limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!refs.empty()) {
    const auto left = deadline - std::chrono::steady_clock::now();
    if (left <= grove::duration::zero()) co_return false;
    std::optional<grove::message> m = co_await self.receive_for(std::chrono::duration_cast<grove::duration>(left));
    if (!m) co_return false;
    if (auto* d = m->get_if<grove::down_message>()) std::erase(refs, d->ref);
  }
  co_return true;
}

struct drain_one {
  grove::erps::daemon daemon;
  grove::duration deadline;
  grove::awaitable<void> operator()(grove::process&) const { co_await daemon.shutdown(deadline); }
};

// Drains both listeners at once: each gets the whole deadline.
grove::awaitable<void> drain_listeners(grove::process& self, const std::vector<grove::erps::daemon>& daemons,
                                       grove::duration deadline) {
  std::vector<grove::monitor_ref> drains;
  for (const auto& d : daemons) {
    if (!d) continue;
    grove::pid helper = grove::spawn(self.node(), drain_one{d, deadline});
    drains.push_back(self.monitor(helper));
  }
  co_await await_down(self, std::move(drains), deadline + std::chrono::seconds(30));
}

// Tells the sessions of a new access policy (a process of its own: the
// listing waits on the listeners' supervisors).
struct session_notifier {
  std::shared_ptr<service_state> state;
  grove::awaitable<void> operator()(grove::process&) const { co_await notify_sessions(state); }
};

struct groved_main {
  const config* settings;
  const logger* log;
  std::shared_ptr<boost::asio::signal_set> signals;
  grove::telemetry::metric_registry* metrics; // the node's, when the admin endpoint is on

  // The access policy as a remote term: read once before anything listens
  // (a policy that cannot be read stops the start), then every
  // access.refresh_ms and on SIGHUP; each new one is sent to the sessions.
  grove::awaitable<std::unique_ptr<grove::remote_term<access_policy>>> start_access(
      grove::node& n, std::shared_ptr<service_state> state) const {
    const config& c = *settings;
    grove::remote_term_options<access_policy> o;
    o.name = "groved.access";
    if (c.access_policy.rfind("http://", 0) == 0 || c.access_policy.rfind("https://", 0) == 0) {
      grove::http_fetcher_options h;
      h.url = c.access_policy;
      o.fetcher = grove::http_fetcher(std::move(h));
    } else {
      o.fetcher = grove::file_fetcher(c.access_policy);
    }
    o.interval = c.access_refresh;
    o.sync_first_load = true;
    o.retry_backoff = grove::backoff_policy::exponential({.initial = std::chrono::seconds(1), .max = c.access_refresh});
    o.max_bytes = 16u << 20;
    o.deserialize = [](std::string_view bytes) { return parse_access_policy(bytes); };
    o.on_span = [&n, state, l = *log](const grove::term_span& span) {
      if (span.what == grove::term_span::phase::stop && span.status == grove::term_status::updated) {
        l.log(log_level::info, "access_policy_loaded", {{"msg", "a new access policy is in force"}});
        grove::spawn(n, session_notifier{state});
      } else if (span.what == grove::term_span::phase::exception) {
        l.log(log_level::error, "access_policy_refused",
              {{"msg", span.error + "; the policy in force stays (if there is one)"}});
      }
    };
    auto term = std::make_unique<grove::remote_term<access_policy>>(std::move(o));
    co_await term->start(n);
    if (!term->loaded()) throw std::runtime_error(term->stats().last_error);
    co_return term;
  }

  grove::awaitable<int> operator()(grove::process& self) {
    grove::node& n = self.node();
    grove::spawn(n, signal_watcher{signals, self.self()}, grove::spawn_options{.worker = 0});
    const int status = co_await run(self);
    boost::asio::post(n.context(0), [s = signals] { s->cancel(); });
    co_return status;
  }

  grove::awaitable<int> run(grove::process& self) {
    const config& c = *settings;
    grove::node& n = self.node();
    const std::size_t shards = c.shards == 0 ? n.size() : c.shards;
    grove::local_registry names(n);
    auto state = std::make_shared<service_state>(names, c, *log, shards);

    std::unique_ptr<grove::remote_term<access_policy>> access;
    if (!c.access_policy.empty()) {
      try {
        access = co_await start_access(n, state);
      } catch (const std::exception& e) {
        log->log(log_level::error, "start_failed", {{"msg", std::string("access.policy: ") + e.what()}});
        co_return 1;
      }
      state->access = access.get();
    }

    grove::supervisor_options top_options;
    top_options.strategy = grove::restart_strategy::rest_for_one;
    top_options.max_restarts = 3;
    top_options.report = [l = *log](const grove::supervisor_report& r) {
      l.log(log_level::error, "supervisor_report",
            {{"context", r.context}, {"child", r.child_id}, {"reason", r.reason.to_string()}});
    };
    grove::supervisor top;
    try {
      top = co_await grove::supervisor::start(n, tree(c, names, state, n.size(), *log), top_options);
    } catch (const std::exception& e) {
      log->log(log_level::error, "start_failed", {{"msg", e.what()}});
      co_return 1;
    }
    grove::monitor_ref top_down = self.monitor(top.id());

    json ready = json::object();
    ready["event"] = "ready";
    ready["pid"] = static_cast<std::int64_t>(::getpid());
    const auto daemons = state->daemons();
    for (std::size_t slot : {tcp_slot, tls_slot}) {
      const auto& d = daemons[slot];
      if (!d) continue;
      ready[slot == tls_slot ? "tls" : "tcp"] = {{"address", d.address()}, {"port", d.port()}};
    }
    std::optional<grove::admin::admin_server> admin;
    if (c.admin.enabled) {
      try {
        admin.emplace(admin_options_for(c, *metrics, state, top.id()));
        add_metrics(*metrics, state);
        co_await admin->start(n);
      } catch (const std::exception& e) {
        log->log(log_level::error, "start_failed", {{"msg", std::string("admin: ") + e.what()}});
        co_return 1;
      }
      ready["admin"] = {{"address", c.admin.address}, {"port", admin->port()}};
    }
    log->log(log_level::info, "ready", {{"workers", n.size()}, {"shards", shards}, {"pid", ::getpid()}});
    // stdout carries exactly this one line, for scripts and tests.
    std::cout << ready.dump() << std::endl;

    int status = 0;
    struct snapshot_tick {};
    if (!c.data_path.empty() && c.snapshot_interval.count() > 0) {
      grove::send_after(self.self(), c.snapshot_interval, snapshot_tick{});
    }
    for (;;) {
      grove::message m = co_await self.receive();
      if (m.get_if<snapshot_tick>()) {
        co_await snapshot_tenants(state);
        grove::send_after(self.self(), c.snapshot_interval, snapshot_tick{});
        continue;
      }
      if (auto* d = m.get_if<grove::down_message>(); d && d->ref == top_down) {
        log->log(log_level::error, "tree_failed",
                 {{"reason", d->reason.to_string()}, {"msg", "the supervision tree gave up; stopping"}});
        co_return 1;
      }
      auto* s = m.get_if<signal_received>();
      if (!s) continue;
      if (s->number == SIGHUP) {
        if (access) access->update(); // the new policy applies once read; a bad one is refused, logged
        const auto tls = state->daemons()[tls_slot];
        if (!tls) {
          if (!access) log->log(log_level::info, "sighup_ignored", {{"msg", "no TLS listener or access policy to reload"}});
          continue;
        }
        try {
          co_await tls.reload_tls();
        } catch (const std::exception&) {
          // The daemon logged tls_reload_failed with the reason; it keeps the old files.
        }
        continue;
      }
      log->log(log_level::info, "stopping",
               {{"signal", signal_name(s->number)}, {"deadline_ms", c.shutdown_timeout.count()}});
      break;
    }

    // 1. Stop accepting; let clients' calls in flight finish (or be cut at the deadline).
    co_await drain_listeners(self, state->daemons(), c.shutdown_timeout);
    if (admin) co_await admin->stop();
    // 2. Everything acknowledged is in the shards now: snapshot it.
    if (!c.data_path.empty() && !co_await snapshot_tenants(state)) status = 1;
    // 3. Stop the tree, last started first.
    self.demonitor(top_down);
    grove::monitor_ref down = self.monitor(top.id());
    grove::exit(top.id(), grove::exit_reason::shutdown());
    std::vector<grove::monitor_ref> tree_down{down};
    const bool stopped = co_await await_down(self, std::move(tree_down), c.shutdown_timeout + std::chrono::seconds(30));
    if (!stopped) {
      log->log(log_level::error, "tree_stop_timeout", {{"msg", "the supervision tree did not stop in time"}});
      status = 1;
    }
    if (access) co_await access->stop(std::chrono::seconds(10));
    log->log(log_level::info, "exit", {{"status", status}});
    co_return status;
  }
};

} // namespace
} // namespace groved

int main(int argc, char** argv) {
  using namespace groved;
  command_line cl;
  try {
    cl = parse_command_line(argc, argv);
  } catch (const config_error& e) {
    std::cerr << "groved: " << e.what() << '\n';
    return 2;
  }
  if (cl.help) {
    print_help(std::cout);
    return 0;
  }
  if (cl.version) {
    std::cout << "groved " << GROVE_VERSION << '\n';
    return 0;
  }
  if (cl.print_config) {
    std::cout << to_json_text(cl.settings) << '\n';
    return 0;
  }
  const config& c = cl.settings;
  if (c.tls.enabled) {
    for (auto [key, file] : {std::pair{"tls.certificate", &c.tls_certificate}, std::pair{"tls.private_key", &c.tls_private_key},
                             std::pair{"tls.ca", &c.tls_ca}}) {
      if (!file->empty() && ::access(file->c_str(), R_OK) != 0) {
        std::cerr << "groved: " << key << ": cannot read '" << *file << "' (a PEM file; or --tls.enabled=false)\n";
        return 2;
      }
    }
  }
  const logger log(c.level, c.format);
  std::signal(SIGPIPE, SIG_IGN);
  // A file size limit (ulimit -f) makes a write fail with EFBIG, answered
  // as a storage error, instead of killing the daemon.
  std::signal(SIGXFSZ, SIG_IGN);
  // One descriptor per client: take the hard limit (often 1024 soft by default).
  rlimit files{};
  if (::getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &files);
  }

  grove::node_options node_options;
  node_options.threads = c.workers;
  node_options.shutdown_grace = std::chrono::duration_cast<std::chrono::milliseconds>(c.shutdown_timeout) +
                                std::chrono::seconds(5);
  // Every layer's events (a crashed process is event=process_crashed) go
  // through groved's own logger, in its format and at its level.
  node_options.events = log.events();
  node_options.min_event_level = grove::event_level::debug; // the logger filters by its own level
  // grove's built-in metrics are recorded only when something serves them.
  grove::telemetry::metric_registry metrics; // outlives the node
  if (c.admin.enabled) node_options.metrics = &metrics;
  grove::node n(node_options);
  // Installed before anything listens, so a signal during start-up is
  // handled like any other (it stops groved once it is up).
  auto signals = std::make_shared<boost::asio::signal_set>(n.context(0), SIGINT, SIGTERM, SIGHUP);
  return n.block_on(groved_main{&c, &log, signals, &metrics});
}
