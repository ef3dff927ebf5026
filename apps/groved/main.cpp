// groved: grove's sample daemon. A key-value store with counters and topics,
// served over erps (plain TCP and mutual TLS), built only from grove's
// public API. groved --help lists the options; service.hpp the requests.
//
// main parses the configuration, starts the parts tree.hpp names under
// one supervisor, and turns signals into the parts' reload (SIGHUP) and
// stop steps (SIGTERM, SIGINT): drain every part, let each keep what it
// must, stop the tree.
#include "config.hpp"
#include "logger.hpp"
#include "part.hpp"
#include "service.hpp"
#include "tree.hpp"

#include <grove/core/node.hpp>
#include <grove/core/process.hpp>
#include <grove/registry/local_registry.hpp>
#include <grove/supervisor/supervisor.hpp>
#include <grove/telemetry/metrics.hpp>

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
#include <functional>
#include <optional>

namespace groved {
namespace {

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
  std::function<grove::awaitable<void>(grove::duration)> drain;
  grove::duration deadline;
  grove::awaitable<void> operator()(grove::process&) const { co_await drain(deadline); }
};

// Drains every part that takes work at once: each gets the whole deadline.
grove::awaitable<void> drain_parts(grove::process& self, const std::vector<part>& parts, grove::duration deadline) {
  std::vector<grove::monitor_ref> drains;
  for (const part& p : parts) {
    if (!p.drain) continue;
    grove::pid helper = grove::spawn(self.node(), drain_one{p.drain, deadline});
    drains.push_back(self.monitor(helper));
  }
  co_await await_down(self, std::move(drains), deadline + std::chrono::seconds(30));
}

struct groved_main {
  const config* settings;
  const logger* log;
  std::shared_ptr<boost::asio::signal_set> signals;
  grove::telemetry::metric_registry* metrics; // the node's, when the admin endpoint is on

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

    // The parts (tree.hpp), started in order under one supervisor; each
    // part's own start waits for what the next ones need (the access
    // policy's first load, the default tenant's store).
    std::vector<part> parts;
    grove::supervisor top;
    std::string failure;
    try {
      parts = tree(c, state, c.admin.enabled ? metrics : nullptr);
      grove::supervisor_options top_options;
      top_options.strategy = grove::restart_strategy::rest_for_one;
      top_options.max_restarts = 3;
      top_options.report = [l = *log](const grove::supervisor_report& r) {
        l.log(log_level::error, "supervisor_report",
              {{"context", r.context}, {"child", r.child_id}, {"reason", r.reason.to_string()}});
      };
      top = co_await grove::supervisor::start(n, child_specs(parts), top_options);
    } catch (const std::exception& e) {
      failure = e.what();
    }
    if (!failure.empty()) {
      log->log(log_level::error, "start_failed", {{"msg", failure}});
      co_return 1;
    }
    grove::monitor_ref top_down = self.monitor(top.id());

    json ready = json::object();
    ready["event"] = "ready";
    ready["pid"] = static_cast<std::int64_t>(::getpid());
    for (const part& p : parts) {
      if (p.describe) p.describe(ready);
    }
    log->log(log_level::info, "ready", {{"workers", n.size()}, {"shards", shards}, {"pid", ::getpid()}});
    // stdout carries exactly this one line, for scripts and tests.
    std::cout << ready.dump() << std::endl;

    int status = 0;
    for (;;) {
      grove::message m = co_await self.receive();
      if (auto* d = m.get_if<grove::down_message>(); d && d->ref == top_down) {
        log->log(log_level::error, "tree_failed",
                 {{"reason", d->reason.to_string()}, {"msg", "the supervision tree gave up; stopping"}});
        co_return 1;
      }
      auto* s = m.get_if<signal_received>();
      if (!s) continue;
      if (s->number == SIGHUP) {
        bool any = false;
        for (const part& p : parts) {
          if (!p.reload) continue;
          any = true;
          co_await p.reload();
        }
        if (!any) log->log(log_level::info, "sighup_ignored", {{"msg", "no part reloads anything (no TLS listener or access policy)"}});
        continue;
      }
      log->log(log_level::info, "stopping",
               {{"signal", signal_name(s->number)}, {"deadline_ms", c.shutdown_timeout.count()}});
      break;
    }

    // 1. Stop taking work; let clients' calls in flight finish (or be cut at the deadline).
    co_await drain_parts(self, parts, c.shutdown_timeout);
    // 2. Everything acknowledged is in the stores now: keep it.
    for (const part& p : parts) {
      if (p.persist && !co_await p.persist()) status = 1;
    }
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
