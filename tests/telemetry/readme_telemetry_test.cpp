#include <grove/telemetry/events.hpp>
#include <grove/telemetry/metrics.hpp>

#include "../readme_check.hpp"

#include <doctest/doctest.h>

#include <string>

namespace {

// --- README example begins
/// A service's metrics: calls counted by method, and their latency fed
/// from span events by a handler; returns what /metrics would serve.
std::string serve_and_scrape() {
  grove::telemetry::metric_registry metrics;
  grove::telemetry::event_hub hub;
  auto calls = metrics.make_counter("shop_calls_total", "Calls served, by method.", {"method"});
  const grove::telemetry::histogram latency =
      metrics.make_histogram("shop_call_seconds", "Call latency.", {},
                             grove::telemetry::histogram_options::nanoseconds_as_seconds())
          .with({});
  hub.attach("shop-latency", {"shop.call.stop"},
             [latency](std::string_view, grove::telemetry::measurements m, grove::telemetry::metadata) {
               latency.observe(static_cast<std::uint64_t>(m[0].value)); // "duration", in ns
             });
  const grove::telemetry::counter gets = calls.with({"get"}); // look the series up once
  for (int i = 0; i < 3; ++i) {
    grove::telemetry::span_scope span(hub, "shop.call");
    gets.inc(); // no lock, no shared cache line
    span.stop();
  }
  return metrics.prometheus_text();
}
// --- README example ends

} // namespace

TEST_CASE("the_readme_example_counts_three_calls_and_their_latencies") {
  const std::string text = serve_and_scrape();
  CHECK(text.find("shop_calls_total{method=\"get\"} 3\n") != std::string::npos);
  CHECK(text.find("shop_call_seconds_count 3\n") != std::string::npos);
  CHECK(readme_check::readme_holds_example_of("tests/telemetry/readme_telemetry_test.cpp"));
}
