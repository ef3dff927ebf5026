// grove/telemetry/events.hpp — named events with measurements and
// metadata, and the handlers attached to them at run time (Erlang's
// :telemetry).
//
//   grove::telemetry::event_hub hub;
//   hub.attach("count-refreshes", {"grove.remote_term.refresh.stop"},
//              [&](std::string_view event, grove::telemetry::measurements m, grove::telemetry::metadata md) {
//                refreshes.inc();
//              });
//   grove::telemetry::measurement took[] = {{"duration_ns", 1200}};
//   hub.execute("grove.remote_term.refresh.stop", took);       // calls every handler attached to that name
//
// The rules:
// - execute() runs the handlers on the calling thread, in the order they
//   were attached. Finding them is lock-free (an epoch-pinned table): an
//   event with no handler costs a hash lookup.
// - attach() and detach() may run at any time, on any thread, also from
//   inside a handler; an execute() already running finishes with the
//   handlers it found.
// - A handler that throws is detached, and reported once through the
//   hub's sink (an event "telemetry"/"handler_detached" naming its id, the
//   event and the reason). The emitter never sees the exception.
// - Spans: span_scope emits "<prefix>.start", then "<prefix>.stop" with
//   the duration when stopped, or "<prefix>.exception" when it ends
//   without stop() (an exception unwound past it).
#pragma once

#include <grove/core/event.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace grove::telemetry {

struct measurement {
  std::string_view name;
  double value = 0;
};

struct tag {
  std::string_view key;
  std::string_view value;
};

using measurements = std::span<const measurement>;
using metadata = std::span<const tag>;
using handler = std::function<void(std::string_view event, measurements, metadata)>;

class event_hub {
public:
  /// `report` receives a handler's detachment (default: grove's logfmt
  /// line on stderr, as a node's default sink).
  explicit event_hub(event_sink report = logfmt_to_stderr);
  ~event_hub();
  event_hub(const event_hub&) = delete;
  event_hub& operator=(const event_hub&) = delete;

  /// Attaches `h` under `id` to every name in `events`. Throws
  /// errc::invalid_argument if `id` is attached already, or `events` is
  /// empty, or `h` is empty.
  void attach(std::string id, std::vector<std::string> events, handler h);
  /// Detaches the handler `id`; false if there was none.
  bool detach(std::string_view id);
  /// The ids attached, in attach order.
  std::vector<std::string> handler_ids() const;

  /// Calls every handler attached to `event`.
  void execute(std::string_view event, measurements m = {}, metadata md = {}) const;
  /// Whether any handler is attached to `event` (for an emitter that would
  /// build costly metadata).
  bool has_handlers(std::string_view event) const noexcept;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

/// A span: "<prefix>.start" now (measurement "monotonic_time", ns), then
/// "<prefix>.stop" with "duration" (ns) on stop(), or "<prefix>.exception"
/// with "duration" if destroyed without stop(). The metadata goes with
/// each event; it must outlive the span.
class span_scope {
public:
  span_scope(const event_hub& hub, std::string prefix, metadata md = {});
  ~span_scope();
  span_scope(const span_scope&) = delete;
  span_scope& operator=(const span_scope&) = delete;
  /// Emits the stop event (once); `extra` goes beside "duration".
  void stop(measurements extra = {});

private:
  void emit(const char* suffix, measurements extra);
  const event_hub& hub_;
  std::string prefix_;
  metadata metadata_;
  std::chrono::steady_clock::time_point started_;
  bool done_ = false;
};

} // namespace grove::telemetry
