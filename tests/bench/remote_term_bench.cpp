// remote_term benchmarks: get() on 1 and 2 threads beside a plain
// std::atomic<T*> load of a value that never changes (the floor: no
// reclamation at all), and get() while the refresher republishes the value
// about a thousand times a second. Then the HTTP fetcher against
// tests/remote_term/http_server.py (Python's http.server, on 127.0.0.1): one
// refresh answered 304, over HTTP and HTTPS (a resumed TLS session each
// time), and one refresh downloading 1 MiB. Python answers slowly, so the
// wall time per refresh is mostly the server's; `grove_cpu_us` is this
// process's CPU per refresh (the fetcher, the term and the node).
// Run: scripts/bench micro   (or build-release/tests/bench/remote_term_bench)
#include <grove/core/node.hpp>
#include <grove/remote_term/remote_term.hpp>

#include <grove/remote_term/http_fetcher.hpp>

#include "../child_process.hpp"
#include "../temp_dir.hpp"

#include <benchmark/benchmark.h>

#include <sys/resource.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

namespace {

/// A term holding a small JSON object, loaded once; with `interval` it is
/// republished (a new version each time) at that pace.
class counting_fetcher final : public grove::term_fetcher {
public:
  std::string describe() const override { return "counting"; }
  grove::awaitable<grove::fetched> fetch(const std::string&, const grove::fetch_limits&) override {
    const std::string n = std::to_string(++count_);
    co_return grove::fetched{.bytes = R"({"plan": "gold", "limit": )" + n + "}", .version = n};
  }

private:
  std::uint64_t count_ = 0;
};

struct term_fixture {
  explicit term_fixture(std::optional<grove::duration> interval) : term(options(interval)) {
    node.block_on(term.start(node));
    node.block_on(term.await_first_load());
  }
  static grove::remote_term_options<nlohmann::json> options(std::optional<grove::duration> interval) {
    grove::remote_term_options<nlohmann::json> o;
    o.name = "bench";
    o.fetcher = std::make_shared<counting_fetcher>();
    o.interval = interval;
    o.jitter = 0;
    return o;
  }
  grove::node node{{.threads = 1, .events = nullptr}};
  grove::remote_term<nlohmann::json> term;
};

term_fixture& still_term() {
  static auto* f = new term_fixture(std::nullopt); // shared by every thread of every run
  return *f;
}

term_fixture& republished_term() {
  static auto* f = new term_fixture(std::chrono::milliseconds(1)); // ~1 kHz
  return *f;
}

/// Hands the reader's result on in a register, so that a loop pays for
/// having the value's address as a real reader would (DoNotOptimize may
/// name the pointer's memory instead, and skip loading it).
inline void use_pointer(const void* p) { asm volatile("" : : "r"(p) : "memory"); }

/// The read loop of both get() benchmarks: one copy of the code, so that
/// they cannot differ by where the compiler happened to place a loop.
[[gnu::noinline]] void read_loop(const grove::remote_term<nlohmann::json>& term, benchmark::State& state) {
  for (auto _ : state) {
    auto v = term.get();
    use_pointer(v.get());
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_get(benchmark::State& state) { read_loop(still_term().term, state); }

void BM_get_republished_1khz(benchmark::State& state) { read_loop(republished_term().term, state); }

void BM_share(benchmark::State& state) {
  auto& term = still_term().term;
  for (auto _ : state) benchmark::DoNotOptimize(term.share());
  state.SetItemsProcessed(state.iterations());
}

const nlohmann::json plain_value{{"plan", "gold"}};
std::atomic<const nlohmann::json*> plain_pointer{&plain_value};

void BM_atomic_pointer_load(benchmark::State& state) {
  for (auto _ : state) use_pointer(plain_pointer.load(std::memory_order_acquire));
  state.SetItemsProcessed(state.iterations());
}

// -- HTTP ------------------------------------------------------------------------------

std::string source_path(const char* a, const char* b, const char* c = nullptr) {
  std::filesystem::path p = std::filesystem::path(GROVE_SOURCE_ROOT) / a / b;
  if (c) p /= c;
  return p.string();
}

struct http_server {
  explicit http_server(bool tls)
      : process(tls ? std::vector<std::string>{"python3", source_path("tests", "remote_term", "http_server.py"), "--root",
                                               files.path(), "--cert", source_path("certs", "server.pem"), "--key",
                                               source_path("certs", "server.key")}
                    : std::vector<std::string>{"python3", source_path("tests", "remote_term", "http_server.py"), "--root",
                                               files.path()}) {
    const std::string line = process.read_line();
    port = line.substr(5);
    scheme = tls ? "https" : "http";
    std::ofstream(files.file("flags.json")) << R"({"plan": "gold", "limit": 10})";
  }
  std::string url(const std::string& path) const { return scheme + "://127.0.0.1:" + port + path; }
  test_support::temp_dir files{"grove-bench-http"};
  test_support::child_process process;
  std::string port, scheme;
};

double cpu_seconds() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

/// Refreshes a term on `url` per iteration; `expect` is every refresh's
/// outcome after the first load.
void refresh_loop(benchmark::State& state, const http_server& server, const std::string& path, bool bytes_only,
                  grove::term_status expect) {
  grove::node node{{.threads = 1, .events = nullptr}};
  grove::remote_term_options<nlohmann::json> o;
  o.name = "bench_http";
  grove::http_fetcher_options http; // (named: g++ 12 -O3 warns falsely on the nested braced form)
  http.url = server.url(path);
  http.tls.ca_file = source_path("certs", "ca.pem");
  o.fetcher = grove::http_fetcher(std::move(http));
  if (bytes_only) o.deserialize = [](std::string_view b) { return nlohmann::json(b.size()); };
  grove::remote_term<nlohmann::json> term(std::move(o));
  node.block_on(term.start(node));
  if (node.block_on(term.first_attempt()).status != grove::term_status::updated) {
    state.SkipWithError("the first load failed");
    return;
  }
  const double cpu_before = cpu_seconds();
  for (auto _ : state) {
    const grove::term_outcome out = node.block_on(term.refresh());
    if (out.status != expect) {
      state.SkipWithError(("unexpected outcome: " + out.reason).c_str());
      break;
    }
  }
  state.counters["grove_cpu_us"] =
      benchmark::Counter((cpu_seconds() - cpu_before) * 1e6 / static_cast<double>(state.iterations()));
  node.block_on(term.stop());
}

void BM_http_refresh_304(benchmark::State& state) {
  http_server server(false);
  refresh_loop(state, server, "/files/flags.json", false, grove::term_status::not_modified);
}

void BM_https_refresh_304(benchmark::State& state) {
  http_server server(true);
  refresh_loop(state, server, "/files/flags.json", false, grove::term_status::not_modified);
}

void BM_http_download_1mib(benchmark::State& state) {
  http_server server(false);
  // No validator on /big: each refresh downloads the MiB and hashes it
  // (the same bytes: not modified).
  refresh_loop(state, server, "/big/1048576", true, grove::term_status::not_modified);
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * 1048576);
}

} // namespace

BENCHMARK(BM_http_refresh_304)->UseRealTime()->Unit(benchmark::kMicrosecond)->MinTime(2.0);
BENCHMARK(BM_https_refresh_304)->UseRealTime()->Unit(benchmark::kMicrosecond)->MinTime(2.0);
BENCHMARK(BM_http_download_1mib)->UseRealTime()->Unit(benchmark::kMicrosecond)->MinTime(2.0);
BENCHMARK(BM_get)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_atomic_pointer_load)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_share)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_get_republished_1khz)->Threads(1)->Threads(2)->UseRealTime();

BENCHMARK_MAIN();
