// Internal: the session layer of an erps server — its link to the client,
// the remote calls not answered yet, and draining on shutdown.
#pragma once

#include <grove/erps/detail/link.hpp>
#include <grove/erps/server.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace grove::erps::detail {

/// What the daemon prepares for a session before its process exists: the
/// accepted connection and the link settings.
struct pending_session {
  std::unique_ptr<transport> stream;
  std::shared_ptr<const link_config> config;
  std::uint64_t link_id = 0;
};

/// A session, whatever its server's values: what the server and the
/// gen_server loop reach it through.
class session_base {
public:
  virtual ~session_base() = default;
  virtual grove::detail::handler_outcome on_message(server_base& s, message&& m, const session_dispatch& d) = 0;
  virtual const std::shared_ptr<link>& channel() const noexcept = 0;
  /// Reads no more calls; closes once every remote call taken is answered
  /// and sent (a daemon's drain, or the server's close_connection).
  virtual void finish_then_close(std::string reason) = 0;
  virtual std::size_t pending() const noexcept = 0;
};

/// The session of a server of V values: the link's codec seen as a codec
/// of V (codec_for<V>) reads its calls and writes its replies.
template <class V>
class session final : public session_base {
public:
  session(std::shared_ptr<link> l, pid self, const basic_codec<V>& codec);
  ~session() override;

  grove::detail::handler_outcome on_message(server_base& s, message&& m, const session_dispatch& d) override;
  const std::shared_ptr<link>& channel() const noexcept override { return link_; }
  void finish_then_close(std::string reason) override;
  std::size_t pending() const noexcept override { return pending_.size() + (current_ ? 1 : 0); }
  /// Sends a push frame; see basic_server::push.
  bool push(const V& value);

private:
  struct pending_call {
    V id;
    std::shared_ptr<grove::detail::reply_slot<V>> slot;
    std::chrono::steady_clock::time_point arrived{}; // when metrics are on
  };

  /// One frame from the client.
  grove::detail::handler_outcome on_frame(server_base& s, link_frame& f, const session_dispatch& d);
  /// Handles the frames held_ keeps, in order, until one's handler returns
  /// more than "go on" (a stop, a continue, a timeout, or a coroutine):
  /// that outcome is returned and the rest wait for a frames_held message.
  grove::detail::handler_outcome run_held(server_base& s, const session_dispatch& d);
  void notice_held();
  /// A batch's frames are to be handled: now, or after those held already.
  grove::detail::handler_outcome take_frames(server_base& s, std::vector<link_frame>&& frames, const session_dispatch& d);
  // `payload` is the frame's, given up: the codec may keep its bytes.
  grove::detail::handler_outcome on_call(server_base& s, std::string& payload, const session_dispatch& d);
  grove::detail::handler_outcome on_cast(server_base& s, std::string& payload, const session_dispatch& d);
  /// After the handler of call `sequence` returned: reply now if it did,
  /// else wait for its from<V>.
  void settle(std::uint64_t sequence);
  void reply(std::uint64_t sequence);
  void send_reply(pending_call& call);
  void send_error(const V* id, std::string_view text);
  void maybe_finish_drain();
  /// The slot for the next call: one given back on this thread, or a new one.
  static std::shared_ptr<grove::detail::reply_slot<V>> take_slot();
  /// A slot whose call was answered and sent: kept for the next call on
  /// this thread, whichever session makes it, when nothing else holds it
  /// (no allocation per call for a server that answers from handle_call,
  /// and none held by an idle session).
  static void recycle(std::shared_ptr<grove::detail::reply_slot<V>> slot) noexcept;
  static awaitable<action> settle_later(session* s, awaitable<action> handler, std::uint64_t sequence);

  std::shared_ptr<link> link_;
  pid self_;
  const basic_codec<V>* codec_;
  std::uint64_t sequence_ = 0;
  std::unordered_map<std::uint64_t, pending_call> pending_;
  std::optional<pending_call> current_; // the call whose handler is running
  /// Frames of a batch not handled yet (a handler's outcome came between):
  /// handled before any frame that comes after. Null when there are none.
  struct held_frames {
    std::vector<link_frame> frames;
    std::size_t next = 0;
    std::optional<link_down> down; // the link closed after them: handled once they are
  };
  std::unique_ptr<held_frames> held_;
  bool held_notice_sent_ = false; // a frames_held message is on its way to us
  bool draining_ = false;
  std::string close_reason_;
};

} // namespace grove::erps::detail
