// Internal: an in-memory byte stream standing in for a socket, so a
// daemon's whole request path (link, session, server) can be driven without
// the kernel: the daemon fuzz target adopts one per input
// (detail::adopt_connection). The daemon's side runs on the executor it is
// made for; the peer's side may be used from any thread.
#pragma once

#include <grove/erps/detail/link.hpp>

#include <boost/asio/any_io_executor.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace grove::erps::detail {

struct memory_pipe;

/// The far end of an in-memory connection: what a client would do with a socket.
class memory_peer {
public:
  explicit memory_peer(std::shared_ptr<memory_pipe> pipe) : pipe_(std::move(pipe)) {}

  /// Bytes to the daemon's side (in order; never blocks).
  void write(std::string bytes);
  /// End of stream, as a client closing its socket.
  void close();
  /// Waits at most `timeout` until what the daemon wrote satisfies `enough`,
  /// or the daemon closed its side; returns all it wrote so far (and keeps it).
  std::string wait_for(std::chrono::milliseconds timeout, const std::function<bool(std::string_view)>& enough) const;
  /// Whether the daemon's side has closed the connection.
  bool closed_by_daemon() const;

private:
  std::shared_ptr<memory_pipe> pipe_;
};

struct memory_connection {
  std::unique_ptr<transport> daemon_side;
  memory_peer peer;
};

/// A connected pair; the daemon's side belongs to `executor` (a worker's).
memory_connection make_memory_connection(asio::any_io_executor executor);

} // namespace grove::erps::detail
