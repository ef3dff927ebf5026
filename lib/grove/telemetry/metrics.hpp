// grove/telemetry/metrics.hpp — counters, gauges and histograms with
// labels, cheap enough for a hot path, exposed in Prometheus's text format.
//
//   grove::telemetry::metric_registry metrics;
//   auto calls = metrics.make_counter("myservice_calls_total", "Calls served.", {"method"});
//   grove::telemetry::counter get_calls = calls.with({"get"});   // look a series up once...
//   get_calls.inc();                                             // ...then count: no lock, no shared cache line
//   auto latency = metrics.make_histogram("myservice_call_seconds", "Call latency.", {},
//                                         grove::telemetry::histogram_options::nanoseconds_as_seconds());
//   latency.with({}).observe(elapsed_ns);
//   std::string text = metrics.prometheus_text();                // what /metrics serves (format 0.0.4)
//
// The rules:
// - A series handle (counter, gauge, histogram) is a small value: copy it
//   freely, keep it in the object that counts. Recording through it is a
//   load and a store to a cell only the calling thread writes (each
//   thread has its own shard of every series); a scrape sums the shards.
//   Finding a series with with() takes the registry's lock: do it once.
// - make_*() with a name already made returns that family if the type and
//   label names match, and throws errc::invalid_argument naming the metric
//   otherwise; a bad metric or label name, or a wrong number of label
//   values, throws the same, naming what was expected.
// - A default-constructed handle records nowhere (harmlessly).
// - Handles must not outlive their registry. A registry is an object the
//   user owns; two registries in one program are independent.
// - Counters only go up (inc takes an unsigned count). A gauge is set()
//   (one shared value) or moved with add() (sharded, for values changed
//   on a hot path, such as things alive); its value is the two together.
// - Histograms record unsigned integers (nanoseconds, bytes) in log-linear
//   buckets: exact up to 4, then four buckets per power of two (at most
//   25 % wide). The exposition shows cumulative buckets at the powers of
//   two the options name, scaled (nanoseconds shown as seconds), with
//   _sum and _count.
#pragma once

#include <grove/telemetry/detail/cells.hpp>

#include <bit>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <typeinfo>
#include <vector>

namespace grove::telemetry {

enum class metric_type : std::uint8_t { counter, gauge, histogram };
std::string_view to_string(metric_type t) noexcept;

namespace detail {
struct series_state;
struct family_state;
} // namespace detail

/// One counter series.
class counter {
public:
  counter() = default;
  /// Adds `n` (default 1). Inline: no call into the library.
  void inc(std::uint64_t n = 1) const noexcept { detail::add(cell_, n); }
  /// The total so far, over every thread (a scrape's sum; not for hot paths).
  std::uint64_t value() const noexcept;

private:
  friend class counter_family;
  explicit counter(detail::series_state* s) noexcept;
  detail::series_state* series_ = nullptr;
  std::uint32_t cell_ = 0;
};

/// One gauge series.
class gauge {
public:
  gauge() = default;
  /// Sets the shared value (one atomic store; for values set now and then).
  void set(std::int64_t value) const noexcept;
  /// Moves the value by `delta` on this thread's shard (hot paths).
  void add(std::int64_t delta) const noexcept { detail::add(cell_, static_cast<std::uint64_t>(delta)); }
  void sub(std::int64_t delta) const noexcept { add(-delta); }
  /// The shared value plus every thread's additions.
  std::int64_t value() const noexcept;

private:
  friend class gauge_family;
  explicit gauge(detail::series_state* s) noexcept;
  detail::series_state* series_ = nullptr;
  std::uint32_t cell_ = 0;
};

/// Which buckets a histogram shows, and in what unit.
struct histogram_options {
  double unit_scale = 1.0;  ///< exposition value = recorded value x this (1e-9: nanoseconds shown as seconds) (default 1)
  int min_exponent = 0;     ///< lowest bucket shown: le = 2^min_exponent x unit_scale (default 0)
  int max_exponent = 32;    ///< highest bucket shown before +Inf: 2^max_exponent (default 32; at most 63)

  /// Durations recorded in nanoseconds, shown in seconds from about 1 us
  /// (2^10 ns) to about 34 s (2^35 ns).
  static histogram_options nanoseconds_as_seconds() { return {1e-9, 10, 35}; }
  /// Sizes in bytes, shown from 1 B to 1 GiB.
  static histogram_options bytes() { return {1.0, 0, 30}; }
};

/// One histogram series.
class histogram {
public:
  histogram() = default;
  /// Records `value` (in the recorded unit: nanoseconds, bytes, ...).
  void observe(std::uint64_t value) const noexcept {
    detail::add(first_cell_ + bucket_of(value), 1);
    detail::add(first_cell_ + bucket_count, value);
  }
  /// Observations so far, and their sum (recorded units).
  std::uint64_t count() const noexcept;
  std::uint64_t sum() const noexcept;
  /// The upper bound of the bucket holding the q-th quantile (0 to 1) of
  /// what was recorded; 0 when empty.
  std::uint64_t quantile(double q) const;

  /// The bucket a value falls in, and a bucket's inclusive bounds (exposed
  /// for tests and dashboards).
  static constexpr std::uint32_t bucket_of(std::uint64_t value) noexcept {
    if (value == 0) return 0;
    const std::uint64_t u = value - 1;
    if (u < 4) return static_cast<std::uint32_t>(1 + u);
    const int e = 63 - std::countl_zero(u); // >= 2
    return static_cast<std::uint32_t>(1 + 4 + (e - 2) * 4 + ((u >> (e - 2)) & 3));
  }
  static std::uint64_t bucket_upper(std::uint32_t bucket) noexcept;
  static constexpr std::uint32_t bucket_count = 1 + 4 + 62 * 4; ///< 0, 1..4, then 4 per power of two up to 2^64

private:
  friend class histogram_family;
  explicit histogram(detail::series_state* s) noexcept;
  detail::series_state* series_ = nullptr;
  std::uint32_t first_cell_ = 0; ///< bucket cells, then the sum
};

/// The series of one metric, by label values (in the family's label order).
class counter_family {
public:
  counter with(std::initializer_list<std::string_view> label_values) const;
  counter with(const std::vector<std::string>& label_values) const;

private:
  friend class metric_registry;
  explicit counter_family(detail::family_state* f) noexcept : family_(f) {}
  detail::family_state* family_;
};

class gauge_family {
public:
  gauge with(std::initializer_list<std::string_view> label_values) const;
  gauge with(const std::vector<std::string>& label_values) const;

private:
  friend class metric_registry;
  explicit gauge_family(detail::family_state* f) noexcept : family_(f) {}
  detail::family_state* family_;
};

class histogram_family {
public:
  histogram with(std::initializer_list<std::string_view> label_values) const;
  histogram with(const std::vector<std::string>& label_values) const;

private:
  friend class metric_registry;
  explicit histogram_family(detail::family_state* f) noexcept : family_(f) {}
  detail::family_state* family_;
};

/// A value computed when scraped (a collector's answer).
struct sample {
  std::vector<std::string> label_values{};
  double value = 0;
};

/// The metrics of a service: families by name, and collectors asked for
/// their values at each scrape. Thread-safe.
class metric_registry {
public:
  metric_registry();
  ~metric_registry();
  metric_registry(const metric_registry&) = delete;
  metric_registry& operator=(const metric_registry&) = delete;

  counter_family make_counter(std::string name, std::string help, std::vector<std::string> label_names = {});
  gauge_family make_gauge(std::string name, std::string help, std::vector<std::string> label_names = {});
  histogram_family make_histogram(std::string name, std::string help, std::vector<std::string> label_names = {},
                                  histogram_options options = {});

  /// A counter or gauge family whose samples `collect` returns at each
  /// scrape (called without the registry's lock, on the scraping thread).
  /// Several collectors may give one name (one per node, per daemon) when
  /// their type and label names agree: their samples are shown as one
  /// family, so their label values must tell them apart. Returns an id for
  /// remove_collector.
  std::uint64_t add_collector(std::string name, std::string help, metric_type type, std::vector<std::string> label_names,
                              std::function<std::vector<sample>()> collect);
  /// Removes a collector and waits for a scrape that is running it to end,
  /// so what it reads may be destroyed once this returns. Must not be
  /// called from a collector.
  void remove_collector(std::uint64_t id);

  /// The object of type T made for this registry: made from it on first
  /// use (T(metric_registry&)), then the same one for the registry's life.
  /// grove's layers keep their metric families this way, so every node,
  /// daemon or term on one registry shares them.
  template <class T>
  T& part() {
    return *static_cast<T*>(part_of(typeid(T), [](metric_registry& r) -> std::shared_ptr<void> {
      return std::make_shared<T>(r);
    }));
  }

  /// Every family in the Prometheus text format 0.0.4, sorted by name,
  /// series sorted by label values.
  std::string prometheus_text() const;

private:
  void* part_of(const std::type_info& type, std::shared_ptr<void> (*make)(metric_registry&));

  struct impl;
  std::unique_ptr<impl> impl_;
};

/// A collector that is removed when this goes out of scope (move-only):
/// keep it beside what the collector reads.
class scoped_collector {
public:
  scoped_collector() = default;
  scoped_collector(metric_registry& r, std::string name, std::string help, metric_type type,
                   std::vector<std::string> label_names, std::function<std::vector<sample>()> collect)
      : registry_(&r), id_(r.add_collector(std::move(name), std::move(help), type, std::move(label_names), std::move(collect))) {}
  scoped_collector(scoped_collector&& other) noexcept : registry_(other.registry_), id_(other.id_) { other.registry_ = nullptr; }
  scoped_collector& operator=(scoped_collector&& other) noexcept {
    if (this != &other) {
      reset();
      registry_ = other.registry_;
      id_ = other.id_;
      other.registry_ = nullptr;
    }
    return *this;
  }
  ~scoped_collector() { reset(); }
  /// Removes the collector now (waits for a scrape running it).
  void reset() noexcept {
    if (registry_) registry_->remove_collector(id_);
    registry_ = nullptr;
  }

private:
  metric_registry* registry_ = nullptr;
  std::uint64_t id_ = 0;
};

/// The Content-Type of prometheus_text().
inline constexpr std::string_view prometheus_content_type = "text/plain; version=0.0.4; charset=utf-8";

} // namespace grove::telemetry
