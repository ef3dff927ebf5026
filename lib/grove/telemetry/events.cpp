#include <grove/telemetry/events.hpp>

#include <grove/core/detail/epoch.hpp>
#include <grove/core/error.hpp>

#include <algorithm>
#include <mutex>
#include <unordered_map>

namespace grove::telemetry {

namespace {

struct attached {
  std::string id;
  handler call;
};

struct text_hash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

/// What execute() reads: immutable once published.
struct table {
  std::unordered_map<std::string, std::vector<std::shared_ptr<const attached>>, text_hash, std::equal_to<>> by_event;
  std::vector<std::pair<std::shared_ptr<const attached>, std::vector<std::string>>> in_order; // for rebuilds
};

} // namespace

struct event_hub::impl {
  explicit impl(event_sink r) : report(std::move(r)) {}
  ~impl() { delete current.load(std::memory_order_relaxed); }

  event_sink report;
  std::atomic<const table*> current{new table};
  std::mutex writer;
  grove::detail::retired_list retired;

  /// Publishes `next` (under the writer lock); the old table is freed once
  /// no execute() can still read it.
  void publish(table* next) {
    const table* old = current.exchange(next, std::memory_order_acq_rel);
    retired.retire(const_cast<table*>(old), [](void* p) { delete static_cast<table*>(p); });
    retired.collect();
  }

  static table* rebuilt(std::vector<std::pair<std::shared_ptr<const attached>, std::vector<std::string>>> entries) {
    auto* t = new table;
    t->in_order = std::move(entries);
    for (const auto& [a, events] : t->in_order) {
      for (const auto& e : events) t->by_event[e].push_back(a);
    }
    return t;
  }

  bool remove(std::string_view id) {
    std::lock_guard lock(writer);
    const table* now = current.load(std::memory_order_acquire);
    auto entries = now->in_order;
    const auto it = std::find_if(entries.begin(), entries.end(), [&](const auto& e) { return e.first->id == id; });
    if (it == entries.end()) return false;
    entries.erase(it);
    publish(rebuilt(std::move(entries)));
    return true;
  }

  void failed(const attached& a, std::string_view event, const std::string& why) {
    if (!remove(a.id)) return; // another thread's failure detached it first
    if (!report) return;
    grove::event e;
    e.level = event_level::warning;
    e.layer = "telemetry";
    e.name = "handler_detached";
    e.fields.push_back({"id", a.id});
    e.fields.push_back({"event", std::string(event)});
    e.fields.push_back({"reason", why});
    try {
      report(e);
    } catch (...) {
      // The sink's own failure changes nothing for the emitter.
    }
  }
};

event_hub::event_hub(event_sink report) : impl_(std::make_unique<impl>(std::move(report))) {}
event_hub::~event_hub() = default;

void event_hub::attach(std::string id, std::vector<std::string> events, handler h) {
  if (!h) throw grove::error(errc::invalid_argument, "telemetry attach \"" + id + "\": handler: empty");
  if (events.empty()) throw grove::error(errc::invalid_argument, "telemetry attach \"" + id + "\": events: empty (expected event names)");
  std::lock_guard lock(impl_->writer);
  const table* now = impl_->current.load(std::memory_order_acquire);
  for (const auto& [a, names] : now->in_order) {
    if (a->id == id) throw grove::error(errc::invalid_argument, "telemetry attach \"" + id + "\": the id is attached already");
  }
  auto entries = now->in_order;
  entries.emplace_back(std::make_shared<const attached>(attached{std::move(id), std::move(h)}), std::move(events));
  impl_->publish(impl::rebuilt(std::move(entries)));
}

bool event_hub::detach(std::string_view id) { return impl_->remove(id); }

std::vector<std::string> event_hub::handler_ids() const {
  grove::detail::epoch_guard pin;
  const table* now = impl_->current.load(std::memory_order_acquire);
  std::vector<std::string> ids;
  for (const auto& [a, names] : now->in_order) ids.push_back(a->id);
  return ids;
}

bool event_hub::has_handlers(std::string_view event) const noexcept {
  grove::detail::epoch_guard pin;
  const table* now = impl_->current.load(std::memory_order_acquire);
  return now->by_event.find(event) != now->by_event.end();
}

void event_hub::execute(std::string_view event, measurements m, metadata md) const {
  grove::detail::epoch_guard pin;
  const table* now = impl_->current.load(std::memory_order_acquire);
  const auto it = now->by_event.find(event);
  if (it == now->by_event.end()) return;
  for (const auto& a : it->second) {
    try {
      a->call(event, m, md);
    } catch (const std::exception& e) {
      impl_->failed(*a, event, e.what());
    } catch (...) {
      impl_->failed(*a, event, "a non-standard exception");
    }
  }
}

span_scope::span_scope(const event_hub& hub, std::string prefix, metadata md)
    : hub_(hub), prefix_(std::move(prefix)), metadata_(md), started_(std::chrono::steady_clock::now()) {
  const measurement at[] = {
      {"monotonic_time", static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(started_.time_since_epoch()).count())}};
  hub_.execute(prefix_ + ".start", at, metadata_);
}

span_scope::~span_scope() {
  if (!done_) emit(".exception", {});
}

void span_scope::stop(measurements extra) {
  if (done_) return;
  emit(".stop", extra);
}

void span_scope::emit(const char* suffix, measurements extra) {
  done_ = true;
  const double took =
      static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - started_).count());
  std::vector<measurement> all;
  all.reserve(extra.size() + 1);
  all.push_back({"duration", took});
  all.insert(all.end(), extra.begin(), extra.end());
  try {
    hub_.execute(prefix_ + suffix, all, metadata_);
  } catch (...) {
    // (execute does not throw for handlers; only allocation could.)
  }
}

} // namespace grove::telemetry
