// grove/erps/link_options.hpp — the wire options both ends of an erps link
// share: what frames carry, what is accepted, keepalives, the send queue,
// the codec and the log. daemon_options and client_options each embed one
// (`options.link`), so a setting means the same on both sides.
//
//   grove::erps::daemon_options d;
//   d.link.identifier = "billing";   // frames must carry it, and ours do
//   d.link.max_payload = 1 << 20;
#pragma once

#include <grove/core/process.hpp>
#include <grove/erps/codec.hpp>
#include <grove/erps/frame.hpp>
#include <grove/erps/log.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace grove::erps {

struct link_options {
  std::string identifier{};                              ///< a client sends it in every frame; a daemon requires it, exactly, in every frame it reads (default empty)
  protocol_version version{0, 4, 0};                     ///< the version a client's frames carry (default 0.4.0); a daemon's frames carry 0.0.0 and no identifier, as erps's server's do
  std::optional<signing_key> signing{};                  ///< sign our frames with this key (default unsigned)
  std::vector<signing_key> verify_keys{};                ///< keys a peer may sign frames with (default none)
  bool require_signed = false;                           ///< refuse unsigned or badly signed frames (default false)
  std::uint32_t max_payload = default_max_payload;       ///< largest payload accepted, in bytes (default 16 MiB)
  std::uint32_t max_depth = default_max_depth;           ///< deepest nesting a payload read may have; deeper is refused (default 128, at most 1024)
  duration keepalive_interval = std::chrono::seconds(5); ///< send a keepalive when nothing else went out for this long (default 5 s)
  duration keepalive_timeout = std::chrono::seconds(20); ///< a peer silent this long is gone (default 20 s)
  duration frame_timeout = std::chrono::seconds(30);     ///< a frame begun must be whole within this, plus its size at min_frame_rate, or the link is dropped (default 30 s)
  std::size_t min_frame_rate = 64 * 1024;                ///< bytes per second a large frame may take on top of frame_timeout (default 64 KiB/s: 16 MiB in 30 s + 256 s; 0: frame_timeout alone)
  std::size_t max_queued_bytes = 64u << 20;              ///< unsent bytes beyond this mean the peer is not reading; the link is closed (default 64 MiB)
  const payload_codec* codec = nullptr;                  ///< payload codec (default json_codec())
  log_function log = log_to_events;                      ///< log records (default: to the node's event sink; nullptr: silent)

  /// Throws grove::error (errc::invalid_argument) naming the option as
  /// `<owner>.link.<field>` and the expected form.
  void validate(std::string_view owner) const;
};

namespace detail {
/// Throws grove::error (errc::invalid_argument) naming `<owner>.link.codec`
/// when the codec (json_codec() when null) has no view of V values, the
/// values a server or client of `owner` is written against. Defined for
/// json and term.
template <class V>
void check_codec_for(const link_options& o, std::string_view owner);
} // namespace detail

} // namespace grove::erps
