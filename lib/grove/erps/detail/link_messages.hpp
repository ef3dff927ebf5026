// Internal: what a link (one connection's reader, writer and heartbeat)
// tells the process that owns it. Plain messages in the owner's mailbox.
#pragma once

#include <grove/erps/frame.hpp>

#include <cstdint>
#include <string>
#include <vector>

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

/// The frames one read brought, in order, when there were several and the
/// link hands them over together (link_config::batch_frames): one message
/// for a read's calls instead of one per call.
struct link_frames {
  std::uint64_t link = 0;
  std::vector<link_frame> frames;
};

/// A vector for a new batch: a spare given back on this thread, or a new
/// one with room for a few frames.
std::vector<link_frame> take_frame_vector();
/// Gives a handled batch's vector back for the next batch on this thread
/// (kept when there is room among the spares; else freed).
void give_back_frame_vector(std::vector<link_frame>&& frames) noexcept;

/// The link is closed (by the peer, an error, a timeout, or us); `reason`
/// says which in one line. The last message a link sends.
struct link_down {
  std::uint64_t link = 0;
  std::string reason;
  bool error = false; ///< the peer broke the protocol or timed out (not a clean close)
};

/// To a session, from itself: frames of a batch are still held (a
/// handler's outcome came between them).
struct frames_held {};

/// A deferred reply to a remote call is ready (sent by the from<json>'s
/// completion, from whichever thread answered).
struct remote_reply_ready {
  std::uint64_t sequence = 0;
};

} // namespace grove::erps::detail
