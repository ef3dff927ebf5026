// Internal: a deadline on one I/O operation. If the armed time passes
// first, `on_expire` runs (it closes the socket or stream, failing the
// pending operation) and expired() says why the operation failed. Meant
// for one coroutine on one worker: no locking. The HTTP fetcher and the
// admin endpoint bound each read and write with it.
#pragma once

#include <grove/core/process.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/steady_timer.hpp>

#include <cstdint>
#include <functional>
#include <memory>

namespace grove::detail {

class deadline {
public:
  explicit deadline(const boost::asio::any_io_executor& ex) : timer_(ex), state_(std::make_shared<shared>()) {}
  deadline(const deadline&) = delete;
  deadline& operator=(const deadline&) = delete;
  ~deadline() { disarm(); }

  void arm(duration d, std::function<void()> on_expire) {
    const std::uint64_t generation = ++state_->generation;
    state_->on_expire = std::move(on_expire);
    timer_.expires_after(d);
    timer_.async_wait([s = state_, generation](const boost::system::error_code& ec) {
      if (ec || s->generation != generation || !s->on_expire) return;
      s->expired = true;
      auto f = std::move(s->on_expire);
      s->on_expire = nullptr;
      f();
    });
  }
  void disarm() {
    ++state_->generation;
    state_->on_expire = nullptr;
    timer_.cancel();
  }
  bool expired() const noexcept { return state_->expired; }

private:
  struct shared {
    std::uint64_t generation = 0;
    std::function<void()> on_expire;
    bool expired = false;
  };
  boost::asio::steady_timer timer_;
  std::shared_ptr<shared> state_;
};

} // namespace grove::detail
