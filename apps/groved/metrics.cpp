#include "metrics.hpp"

#include "tree.hpp"

#include <grove/erps/daemon.hpp>

#include <string>
#include <vector>

namespace groved {

namespace {

using grove::telemetry::metric_type;
using grove::telemetry::sample;

/// One sample per running listener ("tcp", "tls") of what `read` takes from its stats.
template <class Read>
std::vector<sample> per_listener(const std::shared_ptr<service_state>& state, Read read) {
  std::vector<sample> out;
  const auto daemons = state->daemons();
  for (std::size_t slot : {tcp_slot, tls_slot}) {
    if (!daemons[slot]) continue;
    out.push_back(sample{{slot == tls_slot ? "tls" : "tcp"}, static_cast<double>(read(daemons[slot].stats()))});
  }
  return out;
}

} // namespace

void add_metrics(grove::telemetry::metric_registry& metrics, grove::node& n, std::shared_ptr<service_state> state) {
  metrics.add_collector("grove_node_processes", "Processes alive on the node.", metric_type::gauge, {},
                        [&n] { return std::vector<sample>{{{}, static_cast<double>(n.process_count())}}; });
  struct listener_metric {
    const char* name;
    const char* help;
    metric_type type;
    double (*read)(const grove::erps::daemon_stats&);
  };
  static constexpr listener_metric listener_metrics[] = {
      {"grove_erps_connections", "Client connections open.", metric_type::gauge,
       [](const grove::erps::daemon_stats& s) { return static_cast<double>(s.connections); }},
      {"grove_erps_accepted_total", "Connections accepted.", metric_type::counter,
       [](const grove::erps::daemon_stats& s) { return static_cast<double>(s.accepted); }},
      {"grove_erps_refused_total", "Connections refused for max_connections.", metric_type::counter,
       [](const grove::erps::daemon_stats& s) { return static_cast<double>(s.refused); }},
      {"grove_erps_frames_in_total", "Frames received, keepalives included.", metric_type::counter,
       [](const grove::erps::daemon_stats& s) { return static_cast<double>(s.frames_in); }},
      {"grove_erps_rejected_frames_total", "Frames refused (identifier, version, signature).", metric_type::counter,
       [](const grove::erps::daemon_stats& s) { return static_cast<double>(s.rejected_frames); }},
      {"grove_erps_queued_bytes", "Bytes queued to clients and not yet sent.", metric_type::gauge,
       [](const grove::erps::daemon_stats& s) { return static_cast<double>(s.queued_bytes); }},
      {"grove_erps_tls_handshakes_total", "TLS handshakes completed.", metric_type::counter,
       [](const grove::erps::daemon_stats& s) { return static_cast<double>(s.tls_handshakes); }},
      {"grove_erps_tls_resumed_total", "TLS handshakes that resumed a session.", metric_type::counter,
       [](const grove::erps::daemon_stats& s) { return static_cast<double>(s.tls_resumed); }},
  };
  for (const listener_metric& m : listener_metrics) {
    metrics.add_collector(m.name, m.help, m.type, {"listener"},
                          [state, read = m.read] { return per_listener(state, read); });
  }
  struct store_metric {
    const char* name;
    const char* help;
    metric_type type;
    double (*read)(const service_state&);
  };
  static constexpr store_metric store_metrics[] = {
      {"groved_keys", "Keys in the store.", metric_type::gauge,
       [](const service_state& s) { return static_cast<double>(s.keys.load()); }},
      {"groved_calls_total", "Calls served.", metric_type::counter,
       [](const service_state& s) { return static_cast<double>(s.calls.load()); }},
      {"groved_casts_total", "Casts received.", metric_type::counter,
       [](const service_state& s) { return static_cast<double>(s.casts.load()); }},
      {"groved_errors_total", "Calls answered with an error.", metric_type::counter,
       [](const service_state& s) { return static_cast<double>(s.errors.load()); }},
      {"groved_pushes_total", "Pushes sent to subscribers.", metric_type::counter,
       [](const service_state& s) { return static_cast<double>(s.pushes.load()); }},
      {"groved_subscriptions", "Subscriptions held, over all clients.", metric_type::gauge,
       [](const service_state& s) { return static_cast<double>(s.subscriptions.load()); }},
  };
  for (const store_metric& m : store_metrics) {
    metrics.add_collector(m.name, m.help, m.type, {},
                          [state, read = m.read] { return std::vector<sample>{{{}, read(*state)}}; });
  }
}

} // namespace groved
