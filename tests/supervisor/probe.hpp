// Test helpers for the supervision tests: a gen_server child that writes its
// starts and stops into an event log the test thread waits on.
#pragma once

#include <grove/core/error.hpp>
#include <grove/core/gen_server.hpp>
#include <grove/core/node.hpp>
#include <grove/core/process.hpp>
#include <grove/supervisor/child_spec.hpp>

#include "../event_log.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace probe {

using namespace std::chrono_literals;

using test_support::event_log;

using log_ptr = std::shared_ptr<event_log>;

struct name_request {
  using reply_type = std::string;
};
struct stop_with {
  grove::exit_reason reason;
};

/// How a probe behaves. Shared counters let a test make later starts fail.
struct behaviour {
  bool trap_exit = true;                                  // terminate runs (and logs) when its supervisor stops it
  std::shared_ptr<std::atomic<int>> failing_starts{};      // while > 0, init fails (and decrements it)
  bool ignore_shutdown = false;                           // trap exits and never stop on a shutdown
  friend bool operator==(const behaviour&, const behaviour&) = default;
};

/// A child that logs "start:NAME" from init and "stop:NAME" from terminate.
class worker : public grove::gen_server {
public:
  worker(std::string name, log_ptr log, behaviour b = {}) : name_(std::move(name)), log_(std::move(log)), b_(b) {}

  grove::action init() {
    if (b_.failing_starts && b_.failing_starts->load() > 0) {
      b_.failing_starts->fetch_sub(1);
      log_->add("refused:" + name_);
      return grove::stop(grove::exit_reason::error("refused to start"));
    }
    if (b_.trap_exit) this_process().trap_exit(true);
    log_->add("start:" + name_);
    return {};
  }

  std::string handle_call(name_request) { return name_; }
  grove::action handle_cast(stop_with s) { return grove::stop(s.reason); }
  void terminate(const grove::exit_reason& r) { log_->add("stop:" + name_ + ":" + r.to_string()); }

private:
  std::string name_;
  log_ptr log_;
  behaviour b_;
};

/// A plain process child that traps exits and ignores every shutdown; only
/// a kill ends it.
inline grove::child_start stubborn_start(log_ptr log, std::string name) {
  return grove::child_start([log, name](grove::node& n) {
    grove::spawn_options o;
    o.link = true;
    o.trap_exit = true;
    return grove::spawn(n, [log, name](grove::process& self) -> grove::awaitable<void> {
      log->add("start:" + name);
      for (;;) {
        grove::message m = co_await self.receive();
        if (auto* e = m.get_if<grove::exit_message>()) log->add("ignored:" + name + ":" + e->reason.to_string());
      }
    }, o);
  });
}

/// A report hook that records "context:child_id:reason".
inline std::function<void(const grove::supervisor_report&)> record_reports(log_ptr log) {
  return [log](const grove::supervisor_report& r) {
    log->add("report:" + r.context + ":" + r.child_id + ":" + r.reason.to_string());
  };
}

/// A node for these tests: two workers, crash reports silenced.
inline grove::node_options quiet() {
  grove::node_options o;
  o.threads = 2;
  o.events = nullptr;
  return o;
}

/// Logs "down:TAG:REASON" when `target` ends; returns once it watches.
inline bool watch(grove::node& n, grove::pid target, const log_ptr& log, std::string tag) {
  std::promise<void> watching;
  auto ready = watching.get_future();
  grove::spawn(n, [target, log, tag, &watching](grove::process& self) -> grove::awaitable<void> {
    const grove::monitor_ref ref = self.monitor(target);
    watching.set_value();
    for (;;) {
      grove::message m = co_await self.receive();
      if (auto* d = m.get_if<grove::down_message>(); d && d->ref == ref) {
        log->add("down:" + tag + ":" + d->reason.to_string());
        co_return;
      }
    }
  });
  return ready.wait_for(20s) == std::future_status::ready;
}

/// The code of the grove::error `f` throws (empty if it throws none).
template <class F>
std::error_code error_of(F&& f) {
  try {
    f();
  } catch (const grove::error& e) {
    return e.code();
  }
  return {};
}

/// The events in `v` that start with `prefix`, in order.
inline std::vector<std::string> only(const std::vector<std::string>& v, const std::string& prefix) {
  std::vector<std::string> out;
  for (const auto& e : v) {
    if (e.rfind(prefix, 0) == 0) out.push_back(e);
  }
  return out;
}

} // namespace probe
