#include <grove/erps/detail/link.hpp>
#include <grove/erps/detail/metrics.hpp>

namespace grove::erps::detail {

namespace {

using telemetry::metric_type;
using telemetry::sample;

/// The families every daemon on one registry shares.
struct erps_families {
  explicit erps_families(telemetry::metric_registry& r)
      : calls(r.make_counter("grove_erps_calls_total", "Calls received from clients.", {"node", "daemon"})),
        casts(r.make_counter("grove_erps_casts_total", "Casts received from clients.", {"node", "daemon"})),
        pushes(r.make_counter("grove_erps_pushes_total", "Pushes sent to clients.", {"node", "daemon"})),
        bytes_in(r.make_counter("grove_erps_received_bytes_total", "Bytes read from clients.", {"node", "daemon"})),
        bytes_out(r.make_counter("grove_erps_sent_bytes_total", "Bytes written to clients.", {"node", "daemon"})),
        errors(r.make_counter("grove_erps_errors_total",
                              "Warnings and errors on connections, by kind (bad_frame, frame_refused, bad_payload, "
                              "handshake_failed, handshake_timeout, ...).",
                              {"node", "daemon", "kind"})),
        tls_failures(r.make_counter("grove_erps_tls_handshake_failures_total", "TLS handshakes that failed.",
                                    {"node", "daemon"})),
        call_seconds(r.make_histogram("grove_erps_call_duration_seconds",
                                      "From the read that brought a call to its reply being queued.",
                                      {"node", "daemon"}, telemetry::histogram_options::nanoseconds_as_seconds())) {}
  telemetry::counter_family calls, casts, pushes, bytes_in, bytes_out, errors, tls_failures;
  telemetry::histogram_family call_seconds;
};

} // namespace

daemon_series::daemon_series(telemetry::metric_registry& r, std::string node, std::string daemon)
    : errors_(r.part<erps_families>().errors), node_(std::move(node)), daemon_(std::move(daemon)) {
  auto& f = r.part<erps_families>();
  calls = f.calls.with({node_, daemon_});
  casts = f.casts.with({node_, daemon_});
  pushes = f.pushes.with({node_, daemon_});
  bytes_in = f.bytes_in.with({node_, daemon_});
  bytes_out = f.bytes_out.with({node_, daemon_});
  tls_handshake_failures = f.tls_failures.with({node_, daemon_});
  call_seconds = f.call_seconds.with({node_, daemon_});
}

// Errors are rare (each is also a log line): the series is looked up each time.
void daemon_series::error(std::string_view event) const { errors_.with({node_, daemon_, event}).inc(); }

daemon_collectors::daemon_collectors(telemetry::metric_registry& r, const std::string& node, const std::string& daemon,
                                     std::shared_ptr<const link_counters> counters) {
  struct shown {
    const char* name;
    const char* help;
    metric_type type;
    double (*read)(const link_counters&);
  };
  static constexpr shown all[] = {
      {"grove_erps_connections", "Client connections open.", metric_type::gauge,
       [](const link_counters& c) { return static_cast<double>(c.connections.load(std::memory_order_relaxed)); }},
      {"grove_erps_accepted_total", "Connections accepted.", metric_type::counter,
       [](const link_counters& c) { return static_cast<double>(c.accepted.load(std::memory_order_relaxed)); }},
      {"grove_erps_refused_total", "Connections refused for max_connections.", metric_type::counter,
       [](const link_counters& c) { return static_cast<double>(c.refused.load(std::memory_order_relaxed)); }},
      {"grove_erps_frames_in_total", "Frames received, keepalives included.", metric_type::counter,
       [](const link_counters& c) { return static_cast<double>(c.frames_in.load(std::memory_order_relaxed)); }},
      {"grove_erps_rejected_frames_total", "Frames refused (identifier, version, signature).", metric_type::counter,
       [](const link_counters& c) { return static_cast<double>(c.rejected_frames.load(std::memory_order_relaxed)); }},
      {"grove_erps_queued_bytes", "Bytes queued to clients and not yet sent.", metric_type::gauge,
       [](const link_counters& c) { return static_cast<double>(c.queued_bytes.load(std::memory_order_relaxed)); }},
      {"grove_erps_parked_connections", "Idle plain TCP connections parked (holding no coroutine).", metric_type::gauge,
       [](const link_counters& c) { return static_cast<double>(c.parked.load(std::memory_order_relaxed)); }},
      {"grove_erps_tls_handshakes_total", "TLS handshakes completed.", metric_type::counter,
       [](const link_counters& c) { return static_cast<double>(c.tls_handshakes.load(std::memory_order_relaxed)); }},
      {"grove_erps_tls_resumed_total", "TLS handshakes that resumed a session.", metric_type::counter,
       [](const link_counters& c) { return static_cast<double>(c.tls_resumed.load(std::memory_order_relaxed)); }},
  };
  for (const shown& m : all) {
    collectors_.emplace_back(r, m.name, m.help, m.type, std::vector<std::string>{"node", "daemon"},
                             [counters, node, daemon, read = m.read] {
                               return std::vector<sample>{{{node, daemon}, read(*counters)}};
                             });
  }
}

} // namespace grove::erps::detail
