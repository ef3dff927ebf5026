// Internal: what a link (one connection's reader, writer and heartbeat)
// tells the process that owns it. Plain messages in the owner's mailbox.
#pragma once

#include <grove/erps/frame.hpp>

#include <cstdint>
#include <string>

namespace grove::erps::detail {

/// Bytes a link_frame's payload has to spare past its end (its capacity):
/// room for a JSON reader that reads ahead to read it in place.
inline constexpr std::size_t payload_padding = 64;

/// A call, cast, reply, push or error frame that passed the link's checks.
struct link_frame {
  std::uint64_t link = 0;
  frame_type type = frame_type::call;
  std::string payload;
};

/// The link is closed (by the peer, an error, a timeout, or us); `reason`
/// says which in one line. The last message a link sends.
struct link_down {
  std::uint64_t link = 0;
  std::string reason;
  bool error = false; ///< the peer broke the protocol or timed out (not a clean close)
};

/// A deferred reply to a remote call is ready (sent by the from<json>'s
/// completion, from whichever thread answered).
struct remote_reply_ready {
  std::uint64_t sequence = 0;
};

} // namespace grove::erps::detail
