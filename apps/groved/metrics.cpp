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
