#include <grove/telemetry/metrics.hpp>

#include <grove/core/error.hpp>
#include <grove/telemetry/detail/cells.hpp>

#include <algorithm>
#include <atomic>
#include <bit>
#include <charconv>
#include <cmath>
#include <limits>
#include <map>
#include <shared_mutex>
#include <typeindex>

namespace grove::telemetry {

std::string_view to_string(metric_type t) noexcept {
  switch (t) {
  case metric_type::counter:
    return "counter";
  case metric_type::gauge:
    return "gauge";
  case metric_type::histogram:
    return "histogram";
  }
  return "untyped";
}

namespace detail {

/// One labelled series: its cells (and a gauge's shared value).
struct series_state {
  std::vector<std::string> label_values;
  cell_range cells;
  std::atomic<std::int64_t> shared{0}; // gauges: set()
  std::uint64_t cell_sum(std::uint32_t i) const noexcept { return sum(cells.first + i) - cells.baseline[i]; }
};

struct family_state {
  std::string name;
  std::string help;
  metric_type type = metric_type::counter;
  std::vector<std::string> label_names;
  histogram_options buckets;
  std::mutex* registry_mutex = nullptr;
  std::map<std::vector<std::string>, std::unique_ptr<series_state>> series;

  series_state* find_or_make(std::vector<std::string> values) {
    if (values.size() != label_names.size()) {
      throw grove::error(errc::invalid_argument,
                         "metric " + name + ": " + std::to_string(values.size()) + " label values (expected " +
                             std::to_string(label_names.size()) + ": " + joined_names() + ")");
    }
    std::lock_guard lock(*registry_mutex);
    auto it = series.find(values);
    if (it != series.end()) return it->second.get();
    auto s = std::make_unique<series_state>();
    s->label_values = values;
    s->cells = take_cells(type == metric_type::histogram ? histogram::bucket_count + 1 : 1);
    series_state* raw = s.get();
    series.emplace(std::move(values), std::move(s));
    return raw;
  }

  std::string joined_names() const {
    std::string out;
    for (const auto& n : label_names) out += (out.empty() ? "" : ", ") + n;
    return out.empty() ? "none" : out;
  }

  ~family_state() {
    for (auto& [values, s] : series) give_back_cells(s->cells.first, s->cells.count);
  }
};

std::vector<std::string> to_strings(std::initializer_list<std::string_view> values) {
  std::vector<std::string> out;
  out.reserve(values.size());
  for (std::string_view v : values) out.emplace_back(v);
  return out;
}

} // namespace detail

// --- handles ------------------------------------------------------------------------

counter::counter(detail::series_state* s) noexcept : series_(s), cell_(s->cells.first) {}
std::uint64_t counter::value() const noexcept { return series_ ? series_->cell_sum(0) : 0; }

gauge::gauge(detail::series_state* s) noexcept : series_(s), cell_(s->cells.first) {}
void gauge::set(std::int64_t value) const noexcept {
  // The shared value absorbs what the shards hold, so the gauge reads
  // `value` now: later add()s move it from there.
  series_->shared.store(value - static_cast<std::int64_t>(series_->cell_sum(0)), std::memory_order_relaxed);
}
std::int64_t gauge::value() const noexcept {
  if (!series_) return 0;
  return series_->shared.load(std::memory_order_relaxed) + static_cast<std::int64_t>(series_->cell_sum(0));
}

histogram::histogram(detail::series_state* s) noexcept : series_(s), first_cell_(s->cells.first) {}

std::uint64_t histogram::bucket_upper(std::uint32_t bucket) noexcept {
  if (bucket == 0) return 0;
  const std::uint32_t raw = bucket - 1;
  if (raw < 4) return raw + 1;
  const std::uint32_t e = (raw - 4) / 4 + 2;
  const std::uint64_t sub = (raw - 4) % 4;
  if (e == 63 && sub == 3) return std::numeric_limits<std::uint64_t>::max();
  return (5 + sub) << (e - 2);
}

std::uint64_t histogram::count() const noexcept {
  if (!series_) return 0;
  std::vector<std::uint64_t> b(bucket_count);
  detail::sums(first_cell_, bucket_count, b.data());
  std::uint64_t total = 0;
  for (std::uint32_t i = 0; i < bucket_count; ++i) total += b[i] - series_->cells.baseline[i];
  return total;
}

std::uint64_t histogram::sum() const noexcept { return series_ ? series_->cell_sum(bucket_count) : 0; }

std::uint64_t histogram::quantile(double q) const {
  if (!series_) return 0;
  std::vector<std::uint64_t> b(bucket_count);
  detail::sums(first_cell_, bucket_count, b.data());
  std::uint64_t total = 0;
  for (std::uint32_t i = 0; i < bucket_count; ++i) total += (b[i] -= series_->cells.baseline[i]);
  if (total == 0) return 0;
  const auto wanted = std::max<std::uint64_t>(1, static_cast<std::uint64_t>(std::ceil(std::clamp(q, 0.0, 1.0) * static_cast<double>(total))));
  std::uint64_t seen = 0;
  for (std::uint32_t i = 0; i < bucket_count; ++i) {
    seen += b[i];
    if (seen >= wanted) return bucket_upper(i);
  }
  return bucket_upper(bucket_count - 1);
}

counter counter_family::with(std::initializer_list<std::string_view> v) const { return with(detail::to_strings(v)); }
counter counter_family::with(const std::vector<std::string>& v) const { return counter(family_->find_or_make(v)); }
gauge gauge_family::with(std::initializer_list<std::string_view> v) const { return with(detail::to_strings(v)); }
gauge gauge_family::with(const std::vector<std::string>& v) const { return gauge(family_->find_or_make(v)); }
histogram histogram_family::with(std::initializer_list<std::string_view> v) const { return with(detail::to_strings(v)); }
histogram histogram_family::with(const std::vector<std::string>& v) const {
  return histogram(family_->find_or_make(v));
}

// --- the registry -------------------------------------------------------------------

namespace {

bool valid_metric_name(std::string_view n) {
  if (n.empty()) return false;
  for (std::size_t i = 0; i < n.size(); ++i) {
    const char c = n[i];
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' || (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

bool valid_label_name(std::string_view n) {
  if (n.empty() || n.starts_with("__")) return false;
  for (std::size_t i = 0; i < n.size(); ++i) {
    const char c = n[i];
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

void escape_into(std::string& out, std::string_view text, bool quotes) {
  for (char c : text) {
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else if (quotes && c == '"') out += "\\\"";
    else out.push_back(c);
  }
}

void number_into(std::string& out, double v) {
  if (std::isnan(v)) { out += "NaN"; return; }
  if (std::isinf(v)) { out += v > 0 ? "+Inf" : "-Inf"; return; }
  char buf[64];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, ec == std::errc() ? end : buf);
}

/// name{a="x",b="y"[,extra]}
void series_name_into(std::string& out, std::string_view name, const std::vector<std::string>& label_names,
                      const std::vector<std::string>& values, std::string_view extra_name = {},
                      std::string_view extra_value = {}) {
  out += name;
  if (label_names.empty() && extra_name.empty()) return;
  out.push_back('{');
  bool first = true;
  for (std::size_t i = 0; i < label_names.size(); ++i) {
    if (!first) out.push_back(',');
    first = false;
    out += label_names[i];
    out += "=\"";
    escape_into(out, values[i], true);
    out.push_back('"');
  }
  if (!extra_name.empty()) {
    if (!first) out.push_back(',');
    out += extra_name;
    out += "=\"";
    out += extra_value;
    out.push_back('"');
  }
  out.push_back('}');
}

void header_into(std::string& out, std::string_view name, std::string_view help, metric_type type) {
  out += "# HELP ";
  out += name;
  out.push_back(' ');
  escape_into(out, help, false);
  out += "\n# TYPE ";
  out += name;
  out.push_back(' ');
  out += to_string(type);
  out.push_back('\n');
}

struct collector {
  std::uint64_t id = 0;
  std::string name, help;
  metric_type type = metric_type::gauge;
  std::vector<std::string> label_names;
  std::shared_ptr<std::function<std::vector<sample>()>> collect;
};

} // namespace

struct metric_registry::impl {
  mutable std::mutex mutex;
  std::map<std::string, std::unique_ptr<detail::family_state>> families;
  std::map<std::uint64_t, collector> collectors;
  std::uint64_t next_collector = 1;
  /// Held shared while collectors run, exclusively by remove_collector.
  mutable std::shared_mutex collecting;
  std::mutex parts_mutex; // held while a part is made: a part's families take `mutex`
  std::map<std::type_index, std::shared_ptr<void>> parts;

  void check_names(const std::string& name, const std::vector<std::string>& labels, metric_type type) const {
    if (!valid_metric_name(name)) {
      throw grove::error(errc::invalid_argument,
                         "metric \"" + name + "\": not a metric name (expected [a-zA-Z_:][a-zA-Z0-9_:]*)");
    }
    for (std::size_t i = 0; i < labels.size(); ++i) {
      if (!valid_label_name(labels[i]) || (type == metric_type::histogram && labels[i] == "le")) {
        throw grove::error(errc::invalid_argument, "metric " + name + ": label \"" + labels[i] +
                                                       "\" (expected [a-zA-Z_][a-zA-Z0-9_]*, not starting with __" +
                                                       (type == metric_type::histogram ? ", not le" : "") + ")");
      }
      for (std::size_t j = 0; j < i; ++j) {
        if (labels[j] == labels[i]) throw grove::error(errc::invalid_argument, "metric " + name + ": label " + labels[i] + " twice");
      }
    }
  }

  detail::family_state* family(std::string name, std::string help, metric_type type, std::vector<std::string> labels,
                               histogram_options buckets) {
    check_names(name, labels, type);
    std::lock_guard lock(mutex);
    for (const auto& [id, c] : collectors) {
      if (c.name == name) throw grove::error(errc::invalid_argument, "metric " + name + ": already a collector's");
    }
    auto it = families.find(name);
    if (it != families.end()) {
      detail::family_state& f = *it->second;
      if (f.type != type || f.label_names != labels) {
        throw grove::error(errc::invalid_argument, "metric " + name + ": already made as a " +
                                                       std::string(to_string(f.type)) + " with labels (" +
                                                       f.joined_names() + ")");
      }
      return &f;
    }
    auto f = std::make_unique<detail::family_state>();
    f->name = name;
    f->help = std::move(help);
    f->type = type;
    f->label_names = std::move(labels);
    f->buckets = buckets;
    f->registry_mutex = &mutex;
    detail::family_state* raw = f.get();
    families.emplace(std::move(name), std::move(f));
    return raw;
  }

  static void series_into(std::string& out, const detail::family_state& f, const detail::series_state& s) {
    switch (f.type) {
    case metric_type::counter:
      series_name_into(out, f.name, f.label_names, s.label_values);
      out.push_back(' ');
      out += std::to_string(s.cell_sum(0));
      out.push_back('\n');
      return;
    case metric_type::gauge:
      series_name_into(out, f.name, f.label_names, s.label_values);
      out.push_back(' ');
      out += std::to_string(s.shared.load(std::memory_order_relaxed) + static_cast<std::int64_t>(s.cell_sum(0)));
      out.push_back('\n');
      return;
    case metric_type::histogram:
      histogram_into(out, f, s);
      return;
    }
  }

  static void histogram_into(std::string& out, const detail::family_state& f, const detail::series_state& s) {
    std::vector<std::uint64_t> b(histogram::bucket_count + 1);
    detail::sums(s.cells.first, histogram::bucket_count + 1, b.data());
    for (std::size_t i = 0; i < b.size(); ++i) b[i] -= s.cells.baseline[i];
    std::uint64_t total = 0;
    for (std::uint32_t i = 0; i < histogram::bucket_count; ++i) total += b[i];
    const std::string bucket_name = f.name + "_bucket";
    std::uint64_t cumulative = 0;
    std::uint32_t next = 0; // buckets counted so far
    for (int k = f.buckets.min_exponent; k <= f.buckets.max_exponent; ++k) {
      const std::uint64_t bound = std::uint64_t{1} << k;
      while (next < histogram::bucket_count && histogram::bucket_upper(next) <= bound) cumulative += b[next++];
      std::string le;
      number_into(le, static_cast<double>(bound) * f.buckets.unit_scale);
      series_name_into(out, bucket_name, f.label_names, s.label_values, "le", le);
      out.push_back(' ');
      out += std::to_string(cumulative);
      out.push_back('\n');
    }
    series_name_into(out, bucket_name, f.label_names, s.label_values, "le", "+Inf");
    out += ' ' + std::to_string(total) + '\n';
    series_name_into(out, f.name + "_sum", f.label_names, s.label_values);
    out.push_back(' ');
    number_into(out, static_cast<double>(b[histogram::bucket_count]) * f.buckets.unit_scale);
    out.push_back('\n');
    series_name_into(out, f.name + "_count", f.label_names, s.label_values);
    out += ' ' + std::to_string(total) + '\n';
  }
};

metric_registry::metric_registry() : impl_(std::make_unique<impl>()) {}
metric_registry::~metric_registry() = default;

counter_family metric_registry::make_counter(std::string name, std::string help, std::vector<std::string> labels) {
  return counter_family(impl_->family(std::move(name), std::move(help), metric_type::counter, std::move(labels), {}));
}

gauge_family metric_registry::make_gauge(std::string name, std::string help, std::vector<std::string> labels) {
  return gauge_family(impl_->family(std::move(name), std::move(help), metric_type::gauge, std::move(labels), {}));
}

histogram_family metric_registry::make_histogram(std::string name, std::string help, std::vector<std::string> labels,
                                                 histogram_options options) {
  if (options.min_exponent < 0 || options.max_exponent > 63 || options.min_exponent > options.max_exponent) {
    throw grove::error(errc::invalid_argument, "metric " + name + ": histogram_options exponents " +
                                                   std::to_string(options.min_exponent) + ".." +
                                                   std::to_string(options.max_exponent) + " (expected 0 <= min <= max <= 63)");
  }
  if (!(options.unit_scale > 0) || std::isinf(options.unit_scale)) {
    throw grove::error(errc::invalid_argument, "metric " + name + ": histogram_options.unit_scale (expected a positive number)");
  }
  return histogram_family(
      impl_->family(std::move(name), std::move(help), metric_type::histogram, std::move(labels), options));
}

std::uint64_t metric_registry::add_collector(std::string name, std::string help, metric_type type,
                                             std::vector<std::string> labels,
                                             std::function<std::vector<sample>()> collect) {
  if (type == metric_type::histogram) {
    throw grove::error(errc::invalid_argument, "metric " + name + ": a collector gives counters or gauges, not histograms");
  }
  if (!collect) throw grove::error(errc::invalid_argument, "metric " + name + ": collector: empty function");
  impl_->check_names(name, labels, type);
  std::lock_guard lock(impl_->mutex);
  if (impl_->families.count(name) != 0) throw grove::error(errc::invalid_argument, "metric " + name + ": already made");
  for (const auto& [id, c] : impl_->collectors) {
    if (c.name == name && (c.type != type || c.label_names != labels)) {
      throw grove::error(errc::invalid_argument, "metric " + name + ": already a collector's " +
                                                     std::string(to_string(c.type)) + " with other labels or type");
    }
  }
  const std::uint64_t id = impl_->next_collector++;
  impl_->collectors.emplace(
      id, collector{id, std::move(name), std::move(help), type, std::move(labels),
                    std::make_shared<std::function<std::vector<sample>()>>(std::move(collect))});
  return id;
}

void metric_registry::remove_collector(std::uint64_t id) {
  {
    std::lock_guard lock(impl_->mutex);
    impl_->collectors.erase(id);
  }
  // A scrape that copied it may be running it: wait for that scrape.
  std::unique_lock gate(impl_->collecting);
}

void* metric_registry::part_of(const std::type_info& type, std::shared_ptr<void> (*make)(metric_registry&)) {
  std::lock_guard lock(impl_->parts_mutex);
  auto it = impl_->parts.find(std::type_index(type));
  if (it == impl_->parts.end()) it = impl_->parts.emplace(std::type_index(type), make(*this)).first;
  return it->second.get();
}

std::string metric_registry::prometheus_text() const {
  // Families and collectors in one name order; collectors run unlocked.
  std::map<std::string, std::string> blocks;
  std::vector<collector> to_collect;
  // Held from before the collectors are copied until they have run: a
  // collector removed meanwhile is either not copied or waited for.
  std::shared_lock gate(impl_->collecting);
  {
    std::lock_guard lock(impl_->mutex);
    for (const auto& [name, f] : impl_->families) {
      std::string& out = blocks[name];
      header_into(out, f->name, f->help, f->type);
      for (const auto& [values, s] : f->series) impl::series_into(out, *f, *s);
    }
    for (const auto& [id, c] : impl_->collectors) to_collect.push_back(c);
  }
  // Collectors of one name are shown as one family.
  std::map<std::string, std::vector<sample>> collected;
  for (const collector& c : to_collect) {
    std::vector<sample> samples;
    try {
      samples = (*c.collect)();
    } catch (...) {
      continue; // a collector that fails shows nothing this scrape; the rest is served
    }
    std::vector<sample>& all = collected[c.name];
    for (sample& s : samples) {
      if (s.label_values.size() == c.label_names.size()) all.push_back(std::move(s)); // malformed: left out
    }
  }
  gate.unlock();
  for (const collector& c : to_collect) {
    auto found = collected.find(c.name);
    if (found == collected.end()) continue; // shown already, or its collectors failed
    std::vector<sample> samples = std::move(found->second);
    collected.erase(found);
    std::sort(samples.begin(), samples.end(), [](const sample& a, const sample& b) { return a.label_values < b.label_values; });
    std::string& out = blocks[c.name];
    header_into(out, c.name, c.help, c.type);
    for (const sample& s : samples) {
      series_name_into(out, c.name, c.label_names, s.label_values);
      out.push_back(' ');
      number_into(out, s.value);
      out.push_back('\n');
    }
  }
  std::string text;
  for (auto& [name, block] : blocks) text += block;
  return text;
}

} // namespace grove::telemetry
