// groved's log: one structured line per event on stderr, logfmt or JSON.
//   ts=2026-11-21T12:00:00.123Z level=info event=listening transport=tcp address=127.0.0.1:7400
//   {"ts":"2026-11-21T12:00:00.123Z","level":"info","event":"listening","transport":"tcp",...}
#pragma once

#include "config.hpp"

#include <grove/core/event.hpp>
#include <grove/erps/log.hpp>

#include <nlohmann/json.hpp>

#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace groved {

class logger {
public:
  using field = std::pair<std::string_view, nlohmann::json>;

  logger(log_level least, log_format format) noexcept : least_(least), format_(format) {}

  bool enabled(log_level level) const noexcept { return level >= least_; }
  /// Thread-safe; one write(2) per line.
  void log(log_level level, std::string_view event, std::initializer_list<field> fields = {}) const;
  void log(log_level level, std::string_view event, const std::vector<field>& fields) const;

  /// A node event sink writing through this logger: each grove event as a
  /// line named by the event, with layer=LAYER and its fields.
  grove::event_sink events() const;

  /// An erps log function writing through this logger (event, peer, msg),
  /// with listener=NAME on every line when a name is given.
  grove::erps::log_function erps_log(std::string listener = {}) const;

private:
  log_level least_;
  log_format format_;
};

} // namespace groved
