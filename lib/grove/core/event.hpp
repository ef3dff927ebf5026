// grove/core/event.hpp — the node's one event sink: every layer reports
// what happens (a process that crashed, a child restarted, a connection
// that dropped, a bad frame) as one structured event, and a library never
// prints on its own.
//
//   grove::node_options o;
//   o.events = [](const grove::event& e) { my_log(e.level, e.layer, e.name, e.fields); };
//   o.min_event_level = grove::event_level::debug;   // default info
//   o.events = nullptr;                              // silence everything
//
// The default sink writes one logfmt line per event on stderr:
//   ts=2026-12-03T11:32:16.042Z level=error layer=core event=process_crashed pid=<1.0.7> reason="{error, boom}"
// A layer's own hook (supervisor_options::report, connection_options::
// on_event, erps link_options::log) is a handler in front of the sink: by
// default it forwards to the node's sink; set to your own function it
// replaces that for the component; nullptr silences just that component.
// The telemetry layer attaches metrics to these same events.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace grove {

class node;

enum class event_level : std::uint8_t { debug, info, warning, error };
std::string_view to_string(event_level level) noexcept;

struct event_field {
  std::string_view key; ///< a string literal (static storage): copies of the event keep it
  std::string value;
};

/// One thing that happened. `layer` and `name` are stable keys
/// ("core"/"process_crashed", "supervisor"/"child_terminated",
/// "connection"/"connected", "registry"/"owner_down", "erps"/"bad_frame");
/// the fields say which process, peer or reason.
struct event {
  event_level level = event_level::info;
  std::string_view layer{}; ///< a string literal (static storage)
  std::string name{};
  std::vector<event_field> fields{};

  /// The value of field `key`, or empty.
  std::string_view field(std::string_view key) const noexcept;
};

using event_sink = std::function<void(const event&)>;

/// `e` as one logfmt line, without the newline (values quoted when they
/// hold a space, a quote or '=').
std::string to_logfmt(const event& e);
/// The default sink: to_logfmt on stderr, one write per line.
void logfmt_to_stderr(const event& e);
/// Pieces of to_logfmt, for a program's own log lines in the same form:
/// now as "2026-12-03T11:32:16.042Z" (UTC, milliseconds), and `value`
/// appended bare, or quoted with \" \\ \n \uXXXX escapes when it holds a
/// space, a quote, '=', a control byte or non-ASCII.
std::string log_timestamp();
void append_logfmt_value(std::string& out, std::string_view value);
/// Writes `line` (newline included) to stderr in one write(2), so lines
/// from different threads never interleave.
void write_log_line(std::string_view line) noexcept;

/// Hands `e` to `n`'s sink if its level is at least the node's
/// min_event_level. Any thread. A sink that throws is reported once on
/// stderr and the event dropped; it never reaches the caller.
void emit(node& n, const event& e);
/// emit() to the node whose worker runs the calling thread; outside any
/// node's worker, to logfmt_to_stderr.
void emit(const event& e);

} // namespace grove
