#include <grove/erps/detail/memory_transport.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <mutex>

namespace grove::erps::detail {

// What both sides share. Bytes towards the daemon are appended on its
// executor (write() posts there), so its reader checks and waits without a
// race; bytes towards the peer go under the mutex, with a condition variable.
struct memory_pipe {
  explicit memory_pipe(asio::any_io_executor ex) : executor(ex), readable(ex) {}
  asio::any_io_executor executor;
  asio::steady_timer readable;  // the daemon's reader waits on it; cancelled when bytes or the end come
  std::string to_daemon;        // touched on the executor only
  bool peer_closed = false;     // touched on the executor only
  mutable std::mutex mutex;
  mutable std::condition_variable changed;
  std::string to_peer;
  bool daemon_closed = false;
};

namespace {

class memory_transport final : public transport {
public:
  explicit memory_transport(std::shared_ptr<memory_pipe> pipe) : pipe_(std::move(pipe)) {}
  ~memory_transport() override { close(); }

  asio::any_io_executor executor() override { return pipe_->executor; }

  asio::awaitable<std::pair<boost::system::error_code, std::size_t>> read_some(asio::mutable_buffer into) override {
    for (;;) {
      if (closed_) co_return std::pair{boost::system::error_code(asio::error::operation_aborted), std::size_t{0}};
      if (!pipe_->to_daemon.empty()) {
        const std::size_t n = std::min(into.size(), pipe_->to_daemon.size());
        std::memcpy(into.data(), pipe_->to_daemon.data(), n);
        pipe_->to_daemon.erase(0, n);
        co_return std::pair{boost::system::error_code{}, n};
      }
      if (pipe_->peer_closed) co_return std::pair{boost::system::error_code(asio::error::eof), std::size_t{0}};
      pipe_->readable.expires_at(asio::steady_timer::time_point::max());
      co_await pipe_->readable.async_wait(asio::as_tuple(asio::use_awaitable));
    }
  }

  asio::awaitable<std::pair<boost::system::error_code, std::size_t>> write(asio::const_buffer bytes) override {
    if (closed_) co_return std::pair{boost::system::error_code(asio::error::operation_aborted), std::size_t{0}};
    {
      std::lock_guard lock(pipe_->mutex);
      pipe_->to_peer.append(static_cast<const char*>(bytes.data()), bytes.size());
    }
    pipe_->changed.notify_all();
    co_return std::pair{boost::system::error_code{}, bytes.size()};
  }

  void close() noexcept override {
    if (closed_) return;
    closed_ = true;
    pipe_->readable.cancel();
    {
      std::lock_guard lock(pipe_->mutex);
      pipe_->daemon_closed = true;
    }
    pipe_->changed.notify_all();
  }

  std::string peer() const override { return "memory"; }

private:
  std::shared_ptr<memory_pipe> pipe_;
  bool closed_ = false;
};

} // namespace

void memory_peer::write(std::string bytes) {
  asio::post(pipe_->executor, [pipe = pipe_, bytes = std::move(bytes)]() mutable {
    pipe->to_daemon += bytes;
    pipe->readable.cancel();
  });
}

void memory_peer::close() {
  asio::post(pipe_->executor, [pipe = pipe_] {
    pipe->peer_closed = true;
    pipe->readable.cancel();
  });
}

std::string memory_peer::wait_for(std::chrono::milliseconds timeout,
                                  const std::function<bool(std::string_view)>& enough) const {
  std::unique_lock lock(pipe_->mutex);
  pipe_->changed.wait_for(lock, timeout, [&] { return pipe_->daemon_closed || enough(pipe_->to_peer); });
  return pipe_->to_peer;
}

bool memory_peer::closed_by_daemon() const {
  std::lock_guard lock(pipe_->mutex);
  return pipe_->daemon_closed;
}

memory_connection make_memory_connection(asio::any_io_executor executor) {
  auto pipe = std::make_shared<memory_pipe>(executor);
  return memory_connection{std::make_unique<memory_transport>(pipe), memory_peer(pipe)};
}

} // namespace grove::erps::detail
