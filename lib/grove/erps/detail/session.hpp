// Internal: the session layer of an erps server — its link to the client,
// the remote calls not answered yet, and draining on shutdown.
#pragma once

#include <grove/erps/detail/link.hpp>
#include <grove/erps/server.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

namespace grove::erps::detail {

/// What the daemon prepares for a session before its process exists: the
/// accepted connection and the link settings.
struct pending_session {
  std::unique_ptr<transport> stream;
  link_config config;
  std::uint64_t link_id = 0;
};

class session {
public:
  session(std::shared_ptr<link> l, pid self);
  ~session();

  grove::detail::handler_outcome on_message(server& s, message&& m, const session_dispatch& d);
  const std::shared_ptr<link>& channel() const noexcept { return link_; }
  /// Reads no more calls; closes once every remote call taken is answered
  /// and sent (a daemon's drain, or the server's close_connection).
  void finish_then_close(std::string reason);
  std::size_t pending() const noexcept { return pending_.size(); }

private:
  struct pending_call {
    json id;
    std::shared_ptr<grove::detail::reply_slot<json>> slot;
    std::chrono::steady_clock::time_point arrived{}; // when metrics are on
  };

  grove::detail::handler_outcome on_call(server& s, std::string_view payload, const session_dispatch& d);
  grove::detail::handler_outcome on_cast(server& s, std::string_view payload, const session_dispatch& d);
  /// After the handler of call `sequence` returned: reply now if it did,
  /// else wait for its from<json>.
  void settle(std::uint64_t sequence);
  void reply(std::uint64_t sequence);
  void maybe_finish_drain();
  static awaitable<action> settle_later(session* s, awaitable<action> handler, std::uint64_t sequence);

  std::shared_ptr<link> link_;
  pid self_;
  std::uint64_t sequence_ = 0;
  std::unordered_map<std::uint64_t, pending_call> pending_;
  bool draining_ = false;
  std::string close_reason_;
};

} // namespace grove::erps::detail
