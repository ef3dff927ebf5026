// Test support: a thread-safe event log the test thread can wait on. No
// sleeps: every wait ends on an event or a bounded timeout.
#pragma once

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

namespace test_support {

using namespace std::chrono_literals;

/// Thread-safe list of what happened, in order.
class event_log {
public:
  void add(std::string e) {
    std::lock_guard lock(mutex_);
    events_.push_back(std::move(e));
    cv_.notify_all();
  }

  std::vector<std::string> events() const {
    std::lock_guard lock(mutex_);
    return events_;
  }

  void clear() {
    std::lock_guard lock(mutex_);
    events_.clear();
  }

  /// Waits (bounded) until `pred(events)` holds; false if it never did.
  bool wait_for(const std::function<bool(const std::vector<std::string>&)>& pred,
                std::chrono::milliseconds limit = 20s) const {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, limit, [&] { return pred(events_); });
  }

  /// Waits until `e` has happened at least `n` times.
  bool wait_count(const std::string& e, std::size_t n) const {
    return wait_for([&](const std::vector<std::string>& v) {
      return static_cast<std::size_t>(std::count(v.begin(), v.end(), e)) >= n;
    });
  }

  std::size_t count(const std::string& e) const {
    std::lock_guard lock(mutex_);
    return static_cast<std::size_t>(std::count(events_.begin(), events_.end(), e));
  }

private:
  mutable std::mutex mutex_;
  mutable std::condition_variable cv_;
  std::vector<std::string> events_;
};

} // namespace test_support
