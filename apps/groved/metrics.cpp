#include "metrics.hpp"

#include <string>
#include <vector>

namespace groved {

using grove::telemetry::metric_type;
using grove::telemetry::sample;


void add_metrics(grove::telemetry::metric_registry& metrics, std::shared_ptr<service_state> state) {
  struct store_metric {
    const char* name;
    const char* help;
    metric_type type;
    double (*read)(const service_state&);
  };
  static constexpr store_metric store_metrics[] = {
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
  metrics.add_collector("groved_keys", "Keys in a tenant's store.", metric_type::gauge, {"tenant"}, [state] {
    std::vector<sample> out;
    for (const auto& st : state->stores()) out.push_back({{st->tenant}, static_cast<double>(st->keys.load())});
    return out;
  });
  // Each tenant's write-ahead log (with a data_path): one read of its counters per metric.
  struct wal_metric {
    const char* name;
    const char* help;
    metric_type type;
    double (*read)(const write_ahead_log&);
  };
  static constexpr wal_metric wal_metrics[] = {
      {"groved_wal_records_total", "Writes stored in a tenant's write-ahead log.", metric_type::counter,
       [](const write_ahead_log& w) { return static_cast<double>(w.stats().records); }},
      {"groved_wal_bytes_total", "Bytes written to a tenant's write-ahead log.", metric_type::counter,
       [](const write_ahead_log& w) { return static_cast<double>(w.stats().bytes); }},
      {"groved_wal_syncs_total",
       "fdatasync calls on a tenant's write-ahead log (one per group of writes with durability always).",
       metric_type::counter, [](const write_ahead_log& w) { return static_cast<double>(w.stats().syncs); }},
      {"groved_wal_write_failures_total", "Rounds of writes the disk refused (answered with storage_error).",
       metric_type::counter, [](const write_ahead_log& w) { return static_cast<double>(w.stats().failures); }},
      {"groved_wal_stalls_total", "Writes that waited because the log's queue was full (the disk fell behind).",
       metric_type::counter, [](const write_ahead_log& w) { return static_cast<double>(w.stats().stalls); }},
      {"groved_wal_generation", "A tenant's write-ahead log's current generation (a snapshot moves it on).",
       metric_type::gauge, [](const write_ahead_log& w) { return static_cast<double>(w.generation()); }},
  };
  if (state->data_path.empty()) return;
  for (const wal_metric& m : wal_metrics) {
    metrics.add_collector(m.name, m.help, m.type, {"tenant"}, [state, read = m.read] {
      std::vector<sample> out;
      for (const auto& st : state->stores()) {
        if (st->wal) out.push_back({{st->tenant}, read(*st->wal)});
      }
      return out;
    });
  }
}

} // namespace groved
