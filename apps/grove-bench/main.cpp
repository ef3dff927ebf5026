// grove-bench: a load generator for erps daemons, built on grove's client
// API (like redis-benchmark for grove). grove-bench --help says how.
#include "../common/cli.hpp"

#include <grove/core/process.hpp>

#include <sys/resource.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <thread>

namespace {

using grove::erps::json;
using namespace grove::cli;
using clock_type = std::chrono::steady_clock;

const char* usage =
    "usage: grove-bench [FLAGS] [LOAD]           calls against a daemon; prints calls/s and latency\n"
    "       grove-bench [FLAGS] --idle N [--hold S]  opens N idle connections and holds them\n"
    "\n"
    "LOAD\n"
    "  -c, --connections N  connections (default 1)\n"
    "  -p, --in-flight N    calls in flight per connection (default 1)\n"
    "  -s, --size BYTES     payload bytes per request (default 48)\n"
    "  -d, --duration S     seconds measured (default 10, at most 3600)\n"
    "  -w, --warmup S       seconds run before measuring (default 1)\n"
    "  -n, --requests N     stop after N calls in all (default: no limit; the duration still bounds it)\n"
    "  --op OP              ping (the payload comes back; the default), put, get or incr (groved's ops)\n"
    "  --same-key KEY       one key for every call (default: one key per call slot)\n"
    "  --threads N          client worker threads (default 2)\n"
    "  --idle N             open N connections, make one call on each, and hold them idle\n"
    "  --hold S             with --idle: seconds to hold them (default 30, at most 3600)\n"
    "  --keep-going         ride out failures: a failed call is counted by kind (disconnected,\n"
    "                       timeout, remote, error_reply, other) and the slot goes on; dropped\n"
    "                       connections are made again and calls wait for them. The report adds\n"
    "                       the longest gap without a reply and the reconnects; the exit code is\n"
    "                       0 unless no call succeeded at all\n"
    "\n"
    "FLAGS (the daemon)\n";

// Latencies in a log-linear histogram: exact below 128 ns, then 64 steps
// per power of two (1.6 % resolution), so memory is fixed however long it runs.
class histogram {
public:
  void record(std::uint64_t ns) {
    ++counts_[index(ns)];
    ++total_;
  }
  void merge(const histogram& other) {
    for (std::size_t i = 0; i < counts_.size(); ++i) counts_[i] += other.counts_[i];
    total_ += other.total_;
  }
  std::uint64_t total() const noexcept { return total_; }
  // The smallest recorded value v with at least q of the samples <= v (upper bound of its bucket).
  std::uint64_t quantile(double q) const {
    if (total_ == 0) return 0;
    const auto wanted = static_cast<std::uint64_t>(q * static_cast<double>(total_) + 0.5);
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < counts_.size(); ++i) {
      seen += counts_[i];
      if (seen >= std::max<std::uint64_t>(wanted, 1)) return upper(i);
    }
    return upper(counts_.size() - 1);
  }

private:
  static std::size_t index(std::uint64_t v) {
    if (v < 128) return static_cast<std::size_t>(v);
    const int e = 63 - std::countl_zero(v); // >= 7
    const std::uint64_t mantissa = (v >> (e - 6)) & 63;
    return 128 + static_cast<std::size_t>(e - 7) * 64 + static_cast<std::size_t>(mantissa);
  }
  static std::uint64_t upper(std::size_t i) {
    if (i < 128) return i;
    const std::size_t e = (i - 128) / 64 + 7;
    const std::uint64_t mantissa = (i - 128) % 64;
    return ((64 + mantissa + 1) << (e - 6)) - 1;
  }
  std::array<std::uint64_t, 128 + 57 * 64> counts_{};
  std::uint64_t total_ = 0;
};

struct load {
  std::uint64_t connections = 1;
  std::uint64_t in_flight = 1;
  std::uint64_t size = 48;
  std::uint64_t duration_s = 10;
  std::uint64_t warmup_s = 1;
  std::uint64_t requests = 0;
  std::string op = "ping";
  std::string key;
  std::uint64_t threads = 2;
  std::uint64_t idle = 0;
  std::uint64_t hold_s = 30;
  bool keep_going = false;
};

// Why calls failed, counted by kind.
enum class failure_kind : std::uint8_t { disconnected, timeout, remote, error_reply, other };
constexpr std::array<const char*, 5> failure_kind_names{"disconnected", "timeout", "remote", "error_reply", "other"};

failure_kind kind_of(const std::exception& e) {
  if (auto* g = dynamic_cast<const grove::error*>(&e)) {
    if (g->code() == grove::connection_errc::disconnected) return failure_kind::disconnected;
    if (g->code() == grove::errc::timeout) return failure_kind::timeout;
    if (g->code() == grove::erps_errc::remote) return failure_kind::remote;
  }
  return failure_kind::other;
}

// What every call slot shares.
struct run_state {
  clock_type::time_point measure_from;
  clock_type::time_point measure_until;
  std::atomic<std::int64_t> budget{0}; // calls left when --requests is set
  bool limited = false;
  std::atomic<std::uint64_t> errors{0};
  std::array<std::atomic<std::uint64_t>, failure_kind_names.size()> errors_by_kind{};
  std::atomic<std::uint64_t> ok{0};
  bool keep_going = false;
  // The longest time without a reply, over all slots (ns since the start).
  clock_type::time_point start;
  std::atomic<std::int64_t> last_reply_ns{0};
  std::atomic<std::int64_t> longest_gap_ns{0};

  void failed(failure_kind kind) {
    errors.fetch_add(1, std::memory_order_relaxed);
    errors_by_kind[static_cast<std::size_t>(kind)].fetch_add(1, std::memory_order_relaxed);
  }
  void replied(clock_type::time_point at) {
    const std::int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(at - start).count();
    const std::int64_t gap = now - last_reply_ns.exchange(now, std::memory_order_relaxed);
    std::int64_t longest = longest_gap_ns.load(std::memory_order_relaxed);
    while (gap > longest && !longest_gap_ns.compare_exchange_weak(longest, gap, std::memory_order_relaxed)) {
    }
  }
  std::mutex mutex;
  std::condition_variable done;
  std::size_t running = 0;
  histogram latencies; // merged as slots finish
  std::string first_error;
};

struct slot_body {
  grove::erps::client_ref client;
  json request;
  std::shared_ptr<run_state> state;

  grove::awaitable<void> operator()(grove::process&) {
    histogram mine;
    std::string error;
    std::uint64_t ok = 0;
    for (;;) {
      if (state->limited && state->budget.fetch_sub(1, std::memory_order_relaxed) <= 0) break;
      const auto started = clock_type::now();
      if (started >= state->measure_until) break;
      try {
        json reply = co_await client.call(request, std::chrono::seconds(30));
        const auto finished = clock_type::now();
        state->replied(finished);
        if (reply.is_object() && reply.contains("ok") && reply["ok"] == false) {
          state->failed(failure_kind::error_reply);
          if (error.empty()) error = "error reply: " + reply.dump();
          continue;
        }
        ++ok;
        if (started >= state->measure_from && finished <= state->measure_until) {
          mine.record(static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(finished - started).count()));
        }
      } catch (const std::exception& e) {
        state->failed(kind_of(e));
        if (error.empty()) error = e.what();
        if (!state->keep_going) break; // the connection is gone or stuck: this slot stops
      }
    }
    state->ok.fetch_add(ok, std::memory_order_relaxed);
    std::lock_guard lock(state->mutex);
    state->latencies.merge(mine);
    if (state->first_error.empty()) state->first_error = error;
    --state->running;
    state->done.notify_all();
  }
};

std::uint64_t number(const std::string& flag, const std::string& text, std::uint64_t lo, std::uint64_t hi) {
  char* end = nullptr;
  errno = 0;
  const unsigned long long n = std::strtoull(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || errno != 0 || text[0] == '-' || n < lo || n > hi) {
    throw failure(bad_input, flag + ": expected an integer from " + std::to_string(lo) + " to " + std::to_string(hi) +
                                 ", got \"" + text + "\"");
  }
  return n;
}

void raise_file_limit() {
  rlimit r{};
  if (::getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < r.rlim_max) {
    r.rlim_cur = r.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &r);
  }
}

json request_for(const load& l, std::size_t connection, std::size_t slot) {
  const std::string payload(l.size, 'x');
  const std::string key = !l.key.empty() ? l.key : "bench/" + std::to_string(connection) + "/" + std::to_string(slot);
  if (l.op == "ping") return json{{"op", "ping"}, {"data", payload}};
  if (l.op == "put") return json{{"op", "put"}, {"key", key}, {"value", payload}};
  if (l.op == "get") return json{{"op", "get"}, {"key", key}};
  return json{{"op", "incr"}, {"key", key}};
}

int idle_mode(grove::node& n, const endpoint& e, const load& l) {
  std::vector<std::shared_ptr<connected_client>> open;
  open.reserve(l.idle);
  for (std::uint64_t i = 0; i < l.idle; ++i) {
    open.push_back(connected_client::open(n, e, {}));
    // One round trip each, so every connection is served (and its server process started).
    try {
      n.block_on(open.back()->ref().call(json{{"op", "ping"}}, std::chrono::seconds(30)));
    } catch (const std::exception& ex) {
      open.back()->rethrow(ex);
    }
  }
  std::cout << json{{"event", "idle"}, {"connections", l.idle}, {"hold_s", l.hold_s}}.dump() << std::endl;
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  timespec hold{static_cast<time_t>(l.hold_s), 0};
  siginfo_t info;
  ::sigtimedwait(&set, &info, &hold); // the hold ends early on Ctrl-C / SIGTERM
  return ok;
}

int load_mode(grove::node& n, const endpoint& e, const load& l) {
  if (l.op != "ping" && l.op != "put" && l.op != "get" && l.op != "incr") {
    throw failure(bad_input, "--op: expected ping, put, get or incr, got \"" + l.op + "\"");
  }
  std::vector<std::shared_ptr<connected_client>> clients;
  for (std::uint64_t i = 0; i < l.connections; ++i) {
    clients.push_back(connected_client::open(n, e, {.ride_out_drops = l.keep_going}));
  }
  if (l.op == "get") { // every key read must exist
    for (std::size_t c = 0; c < clients.size(); ++c) {
      for (std::size_t s = 0; s < l.in_flight; ++s) {
        const std::string key = !l.key.empty() ? l.key : "bench/" + std::to_string(c) + "/" + std::to_string(s);
        json put{{"op", "put"}, {"key", key}, {"value", std::string(l.size, 'x')}};
        try {
          n.block_on(clients[c]->ref().call(put, std::chrono::seconds(30)));
        } catch (const std::exception& ex) {
          clients[c]->rethrow(ex);
        }
      }
    }
  }
  auto state = std::make_shared<run_state>();
  const auto start = clock_type::now();
  state->start = start;
  state->keep_going = l.keep_going;
  state->measure_from = start + std::chrono::seconds(l.warmup_s);
  state->measure_until = state->measure_from + std::chrono::seconds(l.duration_s);
  state->limited = l.requests > 0;
  state->budget = static_cast<std::int64_t>(l.requests);
  state->running = clients.size() * l.in_flight;
  for (std::size_t c = 0; c < clients.size(); ++c) {
    for (std::size_t s = 0; s < l.in_flight; ++s) {
      grove::spawn(n, slot_body{clients[c]->ref(), request_for(l, c, s), state});
    }
  }
  std::unique_lock lock(state->mutex);
  if (l.warmup_s > 0) {
    state->done.wait_until(lock, state->measure_from, [&] { return state->running == 0; });
    if (state->running > 0) std::cerr << "grove-bench: warm-up done, measuring for " << l.duration_s << " s\n";
  }
  state->done.wait_until(lock, state->measure_until + std::chrono::seconds(35), [&] { return state->running == 0; });
  const double seconds = std::chrono::duration<double>(std::min(clock_type::now(), state->measure_until) -
                                                        std::max(start, state->measure_from)).count();
  const histogram& h = state->latencies;
  const double rate = seconds > 0 ? static_cast<double>(h.total()) / seconds : 0;
  auto us = [&](double q) { return static_cast<double>(h.quantile(q)) / 1000.0; };
  const std::string transport = e.tls ? "tls" : "tcp";
  std::printf("%s %s:%u, %llu connection(s) x %llu in flight, %s with %llu-byte payload, %.1f s measured\n",
              transport.c_str(), e.host.c_str(), e.port != 0 ? e.port : (e.tls ? 7401u : 7400u),
              static_cast<unsigned long long>(l.connections), static_cast<unsigned long long>(l.in_flight), l.op.c_str(),
              static_cast<unsigned long long>(l.size), seconds);
  std::printf("%12s %10s %10s %10s %10s %10s\n", "calls/s", "p50 us", "p90 us", "p99 us", "p99.9 us", "errors");
  std::printf("%12.0f %10.1f %10.1f %10.1f %10.1f %10llu\n", rate, us(0.5), us(0.9), us(0.99), us(0.999),
              static_cast<unsigned long long>(state->errors.load()));
  json summary{{"transport", transport},
               {"connections", l.connections},
               {"in_flight", l.in_flight},
               {"op", l.op},
               {"size", l.size},
               {"seconds", seconds},
               {"calls", h.total()},
               {"ok", state->ok.load()},
               {"errors", state->errors.load()},
               {"calls_per_s", rate},
               {"p50_us", us(0.5)},
               {"p90_us", us(0.9)},
               {"p99_us", us(0.99)},
               {"p999_us", us(0.999)}};
  if (!state->first_error.empty()) summary["first_error"] = state->first_error;
  if (l.keep_going) {
    json kinds = json::object();
    for (std::size_t k = 0; k < failure_kind_names.size(); ++k) kinds[failure_kind_names[k]] = state->errors_by_kind[k].load();
    std::uint64_t reconnects = 0;
    for (const auto& c : clients) reconnects += c->reconnects();
    const double gap_ms = static_cast<double>(state->longest_gap_ns.load()) / 1e6;
    summary["errors_by_kind"] = kinds;
    summary["longest_gap_ms"] = gap_ms;
    summary["reconnects"] = reconnects;
    std::printf("longest gap without a reply: %.1f ms; reconnects: %llu; errors by kind: %s\n", gap_ms,
                static_cast<unsigned long long>(reconnects), kinds.dump().c_str());
  }
  std::cout << summary.dump() << std::endl;
  if (l.keep_going) {
    if (state->ok.load() == 0) {
      std::cerr << "grove-bench: no call succeeded; the first failure: " << state->first_error << '\n';
      return remote_error;
    }
    return ok;
  }
  if (state->errors.load() > 0) {
    std::cerr << "grove-bench: " << state->errors.load() << " call(s) failed; the first: " << state->first_error << '\n';
    return remote_error;
  }
  return ok;
}

int run(int argc, char** argv) {
  endpoint e;
  load l;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      std::cout << usage << endpoint_help();
      return ok;
    }
    if (parse_endpoint_flag(argc, argv, i, e)) continue;
    auto value = [&](const char* flag) -> std::string {
      if (i + 1 >= argc) throw failure(bad_input, std::string(flag) + ": expected a value");
      return argv[++i];
    };
    if (arg == "-c" || arg == "--connections") l.connections = number(arg, value("--connections"), 1, 100'000);
    else if (arg == "-p" || arg == "--in-flight") l.in_flight = number(arg, value("--in-flight"), 1, 4096);
    else if (arg == "-s" || arg == "--size") l.size = number(arg, value("--size"), 0, 8u << 20);
    else if (arg == "-d" || arg == "--duration") l.duration_s = number(arg, value("--duration"), 1, 3600);
    else if (arg == "-w" || arg == "--warmup") l.warmup_s = number(arg, value("--warmup"), 0, 600);
    else if (arg == "-n" || arg == "--requests") l.requests = number(arg, value("--requests"), 1, 1'000'000'000'000);
    else if (arg == "--op") l.op = value("--op");
    else if (arg == "--same-key") l.key = value("--same-key");
    else if (arg == "--threads") l.threads = number(arg, value("--threads"), 1, 256);
    else if (arg == "--idle") l.idle = number(arg, value("--idle"), 1, 1'000'000);
    else if (arg == "--hold") l.hold_s = number(arg, value("--hold"), 0, 3600);
    else if (arg == "--keep-going") l.keep_going = true;
    else throw failure(bad_input, "unknown argument " + arg + " (grove-bench --help)");
  }
  if (l.connections * l.in_flight > 1'000'000) throw failure(bad_input, "--connections x --in-flight: at most 1000000");
  // Only the idle hold takes these (with sigtimedwait); blocked before any thread starts.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  if (l.idle > 0) pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  raise_file_limit();
  grove::node n({.threads = l.threads});
  return l.idle > 0 ? idle_mode(n, e, l) : load_mode(n, e, l);
}

} // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const failure& f) {
    std::cerr << "grove-bench: " << f.what() << '\n';
    return f.code;
  } catch (const std::exception& ex) {
    std::cerr << "grove-bench: " << ex.what() << '\n';
    return cannot_connect;
  }
}
