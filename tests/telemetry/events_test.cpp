#include <grove/telemetry/events.hpp>

#include <grove/core/error.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace grove::telemetry;

/// A sink that keeps what it is told.
struct reports {
  grove::event_sink sink() {
    return [this](const grove::event& e) {
      std::lock_guard lock(mutex);
      seen.push_back(grove::to_logfmt(e));
    };
  }
  std::vector<std::string> all() {
    std::lock_guard lock(mutex);
    return seen;
  }
  std::mutex mutex;
  std::vector<std::string> seen;
};

} // namespace

TEST_CASE("an event reaches every handler attached to its name, in attach order, with its measurements and metadata") {
  event_hub hub(nullptr);
  std::vector<std::string> calls;
  hub.attach("first", {"app.call.stop", "app.call.start"}, [&](std::string_view event, measurements m, metadata md) {
    calls.push_back("first " + std::string(event) + " " + std::to_string(static_cast<int>(m[0].value)) + " " +
                    std::string(md[0].value));
  });
  hub.attach("second", {"app.call.stop"}, [&](std::string_view event, measurements, metadata) {
    calls.push_back("second " + std::string(event));
  });
  const measurement m[] = {{"duration", 42}};
  const tag md[] = {{"method", "get"}};
  hub.execute("app.call.stop", m, md);
  hub.execute("app.other", m, md); // no handler: nothing
  REQUIRE(calls.size() == 2);
  CHECK(calls[0] == "first app.call.stop 42 get");
  CHECK(calls[1] == "second app.call.stop");
  CHECK(hub.has_handlers("app.call.start"));
  CHECK_FALSE(hub.has_handlers("app.other"));
  CHECK(hub.handler_ids() == std::vector<std::string>{"first", "second"});

  CHECK(hub.detach("first"));
  CHECK_FALSE(hub.detach("first"));
  calls.clear();
  hub.execute("app.call.stop", m, md);
  CHECK(calls == std::vector<std::string>{"second app.call.stop"});
  CHECK_FALSE(hub.has_handlers("app.call.start"));
}

TEST_CASE("a handler that throws is detached and reported once; the emitter and the other handlers go on") {
  reports r;
  event_hub hub(r.sink());
  int good = 0;
  hub.attach("broken", {"app.tick"}, [](std::string_view, measurements, metadata) { throw std::runtime_error("boom"); });
  hub.attach("good", {"app.tick"}, [&](std::string_view, measurements, metadata) { ++good; });
  CHECK_NOTHROW(hub.execute("app.tick"));
  CHECK_NOTHROW(hub.execute("app.tick"));
  CHECK(good == 2);
  CHECK(hub.handler_ids() == std::vector<std::string>{"good"});
  const auto seen = r.all();
  REQUIRE(seen.size() == 1);
  CHECK(seen[0].find("level=warning layer=telemetry event=handler_detached id=broken event=app.tick reason=boom") !=
        std::string::npos);
}

TEST_CASE("handlers attached and detached while two threads emit: the steady handler counts every event") {
  event_hub hub(nullptr);
  std::atomic<std::uint64_t> steady{0}, churn{0};
  hub.attach("steady", {"app.event"}, [&](std::string_view, measurements, metadata) { steady.fetch_add(1, std::memory_order_relaxed); });
  // Each thread emits at least per_thread events, and goes on until the
  // churn has run min_cycles times: the two always overlap, however the
  // threads are scheduled.
  constexpr int per_thread = 100'000;
  constexpr int min_cycles = 1'000;
  std::atomic<int> running{2};
  std::atomic<bool> churned{false};
  std::atomic<std::uint64_t> emitted{0};
  auto emit = [&] {
    for (int i = 0; i < per_thread || !churned.load(); ++i) {
      hub.execute("app.event");
      emitted.fetch_add(1, std::memory_order_relaxed);
    }
    running.fetch_sub(1);
  };
  std::thread a(emit), b(emit);
  int cycles = 0, lost = 0;
  while (running.load() > 0) { // attach and detach as long as they emit
    hub.attach("churn", {"app.event"}, [&](std::string_view, measurements, metadata) { churn.fetch_add(1, std::memory_order_relaxed); });
    if (!hub.detach("churn")) ++lost;
    if (++cycles == min_cycles) churned = true;
  }
  CHECK(lost == 0);
  a.join();
  b.join();
  CHECK(emitted.load() >= 2 * per_thread);
  CHECK(steady.load() == emitted.load());
  CHECK(churn.load() <= emitted.load());
  CHECK(cycles >= min_cycles);
  CHECK(hub.handler_ids() == std::vector<std::string>{"steady"});
}

TEST_CASE("a span emits start, then stop with its duration, or exception when unwound without stop") {
  event_hub hub(nullptr);
  std::vector<std::string> seen;
  std::vector<double> durations;
  hub.attach("spans", {"app.job.start", "app.job.stop", "app.job.exception"},
             [&](std::string_view event, measurements m, metadata md) {
               seen.push_back(std::string(event) + " " + std::string(md[0].value));
               if (event != "app.job.start") durations.push_back(m[0].value);
               if (event == "app.job.stop") CHECK(m[1].name == "items");
             });
  const tag md[] = {{"job", "nightly"}};
  {
    span_scope s(hub, "app.job", md);
    const measurement items[] = {{"items", 3}};
    s.stop(items);
    s.stop(); // once only
  }
  try {
    span_scope s(hub, "app.job", md);
    throw std::runtime_error("failed");
  } catch (const std::runtime_error&) {
  }
  CHECK(seen == std::vector<std::string>{"app.job.start nightly", "app.job.stop nightly", "app.job.start nightly",
                                         "app.job.exception nightly"});
  REQUIRE(durations.size() == 2);
  CHECK(durations[0] >= 0);
}

TEST_CASE("attach refuses a taken id, no events, and an empty handler") {
  event_hub hub(nullptr);
  hub.attach("h", {"a"}, [](std::string_view, measurements, metadata) {});
  CHECK_THROWS_WITH_AS(hub.attach("h", {"b"}, [](std::string_view, measurements, metadata) {}),
                       doctest::Contains("telemetry attach \"h\": the id is attached already"), grove::error);
  CHECK_THROWS_WITH_AS(hub.attach("g", {}, [](std::string_view, measurements, metadata) {}),
                       doctest::Contains("events: empty"), grove::error);
  CHECK_THROWS_WITH_AS(hub.attach("g", {"a"}, nullptr), doctest::Contains("handler: empty"), grove::error);
}
