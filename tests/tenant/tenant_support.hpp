// Test support for the tenant manager: a tenant type whose every lifecycle
// answer is chosen by its config, a gate that holds async jobs until the
// test opens it, and an event sink that records what it got.
#pragma once

#include <grove/tenant/manager.hpp>

#include <grove/core/process.hpp>

#include "../gate.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

namespace test_support {

using json = nlohmann::json;

// -- a log a process can wait on ---------------------------------------------------

/// What a log tells its subscriber.
struct logged {
  std::string text;
};

/// A thread-safe list of what happened. A test's process subscribes and
/// waits for an entry without blocking its worker (which may be the one the
/// awaited work runs on): each add() also sends `logged` to the subscriber.
class event_log {
public:
  void add(std::string e) {
    grove::pid to;
    {
      std::lock_guard lock(mutex_);
      events_.push_back(e);
      to = subscriber_;
    }
    if (to) grove::send(to, logged{std::move(e)});
  }
  std::vector<std::string> events() const {
    std::lock_guard lock(mutex_);
    return events_;
  }
  std::size_t count(const std::string& e) const {
    std::lock_guard lock(mutex_);
    return static_cast<std::size_t>(std::count(events_.begin(), events_.end(), e));
  }
  /// Waits (at most 20 s) until `e` was added at least `n` times; false if
  /// it never was. From the subscribing process `self`.
  grove::awaitable<bool> wait_count(grove::process& self, const char* text, std::size_t n = 1) {
    const std::string e(text); // a literal, not a std::string temporary: g++ 12 mishandles those in co_await
    {
      std::lock_guard lock(mutex_);
      subscriber_ = self.self();
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (count(e) < n) {
      const auto now = std::chrono::steady_clock::now();
      if (now >= deadline) co_return false;
      (void)co_await self.receive_for(deadline - now); // a logged entry, or the deadline
    }
    co_return true;
  }

private:
  mutable std::mutex mutex_;
  std::vector<std::string> events_;
  grove::pid subscriber_;
};

// -- the tenant --------------------------------------------------------------------

struct get_state {
  using reply_type = json;
};
struct set_n {
  int n = 0;
};
struct crash {};
struct save {
  using reply_type = bool;
};
struct stop_normally {
  using reply_type = bool;
};

/// What each callback does is read from the config: "install", "run",
/// "uninstall" in the tenant's config, "update" in the update's config;
/// each "ok" (default), "error", "async", "async_error", "gated" (async,
/// waits for the gate), "throw" (a job that throws).
class shop : public grove::tenant<json> {
public:
  shop(std::shared_ptr<event_log> log, grove::server_ref<gate> g) : log_(std::move(log)), gate_(g) {
    log_->add("construct");
  }

  grove::tenant_result<json> handle_install(const grove::tenant_info& t) {
    log_->add("install " + t.id);
    return behave(t.config.value("install", "ok"), json{{"n", 0}});
  }

  grove::tenant_reply<json> handle_run(const grove::tenant_info& t, json& s) {
    log_->add("run " + t.id + " " + s.dump());
    if (t.config.value("run", "ok") == "error") return grove::tenant_error("run refused");
    return grove::tenant_ok();
  }

  grove::tenant_result<json> handle_update(const grove::tenant_update& u, const grove::tenant_info& t, json& s) {
    log_->add("update " + t.id);
    json next = s;
    next["updated"] = true;
    return behave(u.config.value("update", "ok"), std::move(next));
  }

  grove::tenant_result<json> handle_uninstall(const grove::tenant_info& t, json& s) {
    log_->add("uninstall " + t.id);
    return behave(t.config.value("uninstall", "ok"), s);
  }

  json handle_call(get_state) { return state(); }
  void handle_cast(set_n c) { state()["n"] = c.n; }
  void handle_cast(crash) { throw std::runtime_error("crash on request"); }
  grove::awaitable<bool> handle_call(save) {
    json snapshot = state();
    co_await persist(std::move(snapshot));
    co_return true;
  }
  grove::call_result<bool> handle_call(stop_normally) { return {true, grove::stop()}; }

  void terminate(const grove::exit_reason& r) { log_->add("terminate " + info().id + " " + r.to_string()); }

private:
  grove::tenant_result<json> behave(const std::string& how, json next) {
    if (how == "error") return grove::tenant_error(info().id + " refused");
    if (how == "async") {
      return grove::tenant_async([next, log = log_, id = info().id] {
        log->add("job " + id);
        return grove::tenant_ok(next);
      });
    }
    if (how == "async_error") {
      return grove::tenant_async([]() -> grove::tenant_reply<json> { return grove::tenant_error("the job failed"); });
    }
    if (how == "gated") {
      return grove::tenant_async([next, g = gate_, log = log_, id = info().id]() -> grove::awaitable<grove::tenant_reply<json>> {
        log->add("job waits " + id);
        co_await g.call(pass{}, grove::infinity);
        co_return grove::tenant_ok(next);
      });
    }
    if (how == "throw") {
      return grove::tenant_async([]() -> grove::tenant_reply<json> { throw std::runtime_error("the job exploded"); });
    }
    return grove::tenant_ok(std::move(next));
  }

  std::shared_ptr<event_log> log_;
  grove::server_ref<gate> gate_;
};

/// "install acme ok", "update acme error: why", ... as the sink got them;
/// it throws the first `failures` times it is called.
struct recording_sink {
  std::shared_ptr<event_log> log = std::make_shared<event_log>();
  std::shared_ptr<std::atomic<int>> failures = std::make_shared<std::atomic<int>>(0);
  std::shared_ptr<std::atomic<int>> calls = std::make_shared<std::atomic<int>>(0);

  grove::tenant_event_sink sink() const {
    return [log = log, failures = failures, calls = calls](const grove::tenant_event& e) {
      calls->fetch_add(1);
      if (failures->load() > 0) {
        failures->fetch_sub(1);
        throw std::runtime_error("the control plane is down");
      }
      log->add(describe(e));
    };
  }

  static std::string describe(const grove::tenant_event& e) {
    std::string s = std::string(grove::to_string(e.kind)) + " " + e.tenant + (e.ok ? " ok" : " error");
    return s;
  }
};

inline grove::tenant_manager_options fast_options(std::shared_ptr<grove::tenant_store> store = {},
                                                  grove::tenant_event_sink sink = {}) {
  grove::tenant_manager_options o;
  o.store = std::move(store);
  o.event_sink = std::move(sink);
  o.restart_backoff = grove::backoff_policy::constant(std::chrono::milliseconds(1));
  o.sink_backoff = grove::backoff_policy::constant(std::chrono::milliseconds(1));
  return o;
}

} // namespace test_support
