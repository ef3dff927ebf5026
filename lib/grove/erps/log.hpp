// grove/erps/log.hpp — what the erps daemon and client report: one record
// per event (a refused frame, a failed handshake, a closed connection),
// handed to a hook; the default passes it to the node's event sink.
//
//   grove::erps::daemon_options options;
//   options.link.log = [](const grove::erps::log_record& r) { my_logger.log(r.level, r.event, r.text); };
#pragma once

#include <cstdint>
#include <functional>
#include <iosfwd>
#include <string>
#include <string_view>

namespace grove::erps {

enum class log_level : std::uint8_t { debug, info, warning, error };
std::string_view to_string(log_level l) noexcept;

struct log_record {
  log_level level = log_level::info;
  std::string_view event{}; ///< a stable key: "bad_frame", "handshake_failed", "connection_closed", ...
  std::string_view peer{};  ///< "127.0.0.1:51234" or "[::1]:51234" (empty when none)
  std::string_view text{};  ///< one human line, naming the bad value
};

using log_function = std::function<void(const log_record&)>;

/// The default hook: the record as an "erps" event (named by its event key;
/// fields peer, msg) to the node's event sink, e.g. `level=warning
/// layer=erps event=bad_frame peer=127.0.0.1:51234 msg="bad magic ..."`.
void log_to_events(const log_record& record);

} // namespace grove::erps
