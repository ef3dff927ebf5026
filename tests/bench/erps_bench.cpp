// erps benchmarks: frame encode and decode against copying the same bytes,
// HMAC signing, and a call round trip over loopback through grove's daemon
// and client against a hand-written Asio erps echo (header read, payload
// read, reply frame written back; no JSON) in the same binary.
// Run: scripts/bench micro   (or build-release/tests/bench/erps_bench)
#include <grove/core/node.hpp>
#include <grove/erps/client.hpp>
#include <grove/erps/json_codec.hpp>
#include <grove/erps/daemon.hpp>
#include <grove/erps/etf.hpp>
#include <grove/erps/frame.hpp>
#include <grove/erps/term.hpp>

#include <benchmark/benchmark.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using grove::erps::frame_type;
using grove::erps::json;

std::string payload_of(std::size_t size) { return std::string(size, 'p'); }

// --- payload codecs: ETF beside JSON ---------------------------------------------
// A small call ({7, #{op => put, key => <<"k">>, value => 42}} and its JSON
// twin [7,{"op":"put","key":"k","value":42}]), and a call carrying a 16 KiB
// binary (a 16 KiB string in JSON).

grove::erps::term etf_call(std::size_t blob) {
  using grove::erps::term;
  std::vector<std::pair<term, term>> m{{term::atom("op"), term::atom("put")}, {term::atom("key"), term::binary("k")}};
  if (blob == 0) m.emplace_back(term::atom("value"), term::integer(std::int64_t{42}));
  else m.emplace_back(term::atom("value"), term::binary(std::string(blob, 'v')));
  return term::tuple({term::integer(std::int64_t{7}), term::map(std::move(m))});
}

json json_request(std::size_t blob) {
  json r{{"op", "put"}, {"key", "k"}};
  if (blob == 0) r["value"] = 42;
  else r["value"] = std::string(blob, 'v');
  return r;
}

void etf_encode(benchmark::State& state) {
  const grove::erps::term t = etf_call(static_cast<std::size_t>(state.range(0)));
  std::string out;
  for (auto _ : state) {
    out.clear();
    grove::erps::etf::encode_into(out, t);
    benchmark::DoNotOptimize(out.data());
  }
}
BENCHMARK(etf_encode)->Arg(0)->Arg(16 * 1024);

void etf_decode(benchmark::State& state) {
  const std::string bytes = grove::erps::etf::encode(etf_call(static_cast<std::size_t>(state.range(0))));
  for (auto _ : state) {
    grove::erps::term t = grove::erps::etf::decode(bytes);
    benchmark::DoNotOptimize(&t);
  }
}
BENCHMARK(etf_decode)->Arg(0)->Arg(16 * 1024);

void json_encode(benchmark::State& state) {
  const json request = json_request(static_cast<std::size_t>(state.range(0)));
  const auto& codec = grove::erps::json_codec();
  std::string out;
  for (auto _ : state) {
    out.clear();
    codec.write_call(out, 7, request);
    benchmark::DoNotOptimize(out.data());
  }
}
BENCHMARK(json_encode)->Arg(0)->Arg(16 * 1024);

void json_decode(benchmark::State& state) {
  const auto& codec = grove::erps::json_codec();
  std::string bytes;
  codec.write_call(bytes, 7, json_request(static_cast<std::size_t>(state.range(0))));
  for (auto _ : state) {
    auto call = codec.read_call(bytes, {});
    benchmark::DoNotOptimize(&call);
  }
}
BENCHMARK(json_decode)->Arg(0)->Arg(16 * 1024);

// --- frames ---------------------------------------------------------------

void frame_encode(benchmark::State& state) {
  const std::string payload = payload_of(static_cast<std::size_t>(state.range(0)));
  grove::erps::frame_writer writer{{0, 4, 0}, "bench", std::nullopt};
  for (auto _ : state) {
    std::string frame = writer.frame(frame_type::call, payload);
    benchmark::DoNotOptimize(frame.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * (payload.size() + 96)));
}
BENCHMARK(frame_encode)->Arg(64)->Arg(16 * 1024);

void bare_copy_encode(benchmark::State& state) { // baseline: a header's worth of bytes and the payload copied
  const std::string payload = payload_of(static_cast<std::size_t>(state.range(0)));
  char header[96] = {'e', 'r', 'p', 's'};
  for (auto _ : state) {
    std::string frame;
    frame.reserve(96 + payload.size());
    frame.append(header, 96);
    frame.append(payload);
    benchmark::DoNotOptimize(frame.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * (payload.size() + 96)));
}
BENCHMARK(bare_copy_encode)->Arg(64)->Arg(16 * 1024);

void frame_sign(benchmark::State& state) {
  const std::string payload = payload_of(static_cast<std::size_t>(state.range(0)));
  grove::erps::frame_writer writer{{0, 4, 0}, "bench", grove::erps::signing_key{"k1", "bench secret"}};
  for (auto _ : state) {
    std::string frame = writer.frame(frame_type::call, payload);
    benchmark::DoNotOptimize(frame.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * (payload.size() + 96)));
}
BENCHMARK(frame_sign)->Arg(64)->Arg(16 * 1024);

// A stream of 256 frames, decoded from 16 KiB reads.
std::string stream_of(std::size_t payload_size) {
  grove::erps::frame_writer writer{{0, 4, 0}, "bench", std::nullopt};
  std::string stream;
  for (int i = 0; i < 256; ++i) stream += writer.frame(frame_type::call, payload_of(payload_size));
  return stream;
}

void frame_decode(benchmark::State& state) {
  const std::string stream = stream_of(static_cast<std::size_t>(state.range(0)));
  grove::erps::frame_decoder decoder;
  for (auto _ : state) {
    std::size_t frames = 0;
    for (std::size_t at = 0; at < stream.size(); at += 16 * 1024) {
      decoder.feed(std::string_view(stream).substr(at, 16 * 1024));
      while (auto f = decoder.next()) {
        benchmark::DoNotOptimize(f.payload.data());
        ++frames;
      }
    }
    if (frames != 256) state.SkipWithError("lost frames");
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * stream.size()));
  state.SetItemsProcessed(state.iterations() * 256);
}
BENCHMARK(frame_decode)->Arg(64)->Arg(16 * 1024);

void bare_copy_decode(benchmark::State& state) { // baseline: the same reads copied into a buffer, nothing parsed
  const std::string stream = stream_of(static_cast<std::size_t>(state.range(0)));
  std::vector<char> buffer(64 * 1024);
  for (auto _ : state) {
    for (std::size_t at = 0; at < stream.size(); at += 16 * 1024) {
      const std::size_t n = std::min<std::size_t>(16 * 1024, stream.size() - at);
      std::memcpy(buffer.data(), stream.data() + at, n);
      benchmark::DoNotOptimize(buffer.data());
    }
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * stream.size()));
  state.SetItemsProcessed(state.iterations() * 256);
}
BENCHMARK(bare_copy_decode)->Arg(64)->Arg(16 * 1024);

// --- round trips ----------------------------------------------------------

class echo_server : public grove::erps::server {
public:
  json handle_call(grove::erps::call c) { return std::move(c.request); }
};

grove::awaitable<void> calls(grove::erps::client_ref c, json request, int n) {
  for (int i = 0; i < n; ++i) {
    json reply = co_await c.call(request);
    benchmark::DoNotOptimize(reply);
  }
}

constexpr int calls_per_iteration = 1000;

void grove_call_round_trip(benchmark::State& state) {
  grove::node node{{.threads = 2, .events = nullptr}}; // the client's reconnects at teardown are not news
  grove::erps::daemon_options d;
  d.link.log = nullptr;
  auto daemon = node.block_on(grove::erps::daemon::start<echo_server>(node, d));
  grove::erps::client_options o;
  o.port = daemon.port();
  o.link.log = nullptr;
  auto client = node.block_on(grove::erps::client::start(node, o));
  const json request = json{{"op", "echo"}, {"value", payload_of(static_cast<std::size_t>(state.range(0)))}};
  node.block_on(calls(client, request, 100)); // warm up
  for (auto _ : state) node.block_on(calls(client, request, calls_per_iteration));
  state.SetItemsProcessed(state.iterations() * calls_per_iteration);
  node.block_on(daemon.shutdown(std::chrono::seconds(2)));
}
BENCHMARK(grove_call_round_trip)->Arg(48)->Arg(16 * 1024)->Unit(benchmark::kMillisecond)->UseRealTime();

// The baseline: one thread serves, one thread calls, each its own
// io_context; frames are read as header then payload and answered with
// the same payload as a reply frame.
asio::awaitable<void> bare_serve(tcp::socket socket) {
  std::string header(96, '\0');
  std::string payload;
  for (;;) {
    co_await asio::async_read(socket, asio::buffer(header), asio::use_awaitable);
    std::uint32_t length = (std::uint32_t(std::uint8_t(header[4])) << 24) | (std::uint32_t(std::uint8_t(header[5])) << 16) |
                           (std::uint32_t(std::uint8_t(header[6])) << 8) | std::uint32_t(std::uint8_t(header[7]));
    payload.resize(length);
    co_await asio::async_read(socket, asio::buffer(payload), asio::use_awaitable);
    header[8] = 2; // reply
    std::array<asio::const_buffer, 2> out{asio::buffer(header), asio::buffer(payload)};
    co_await asio::async_write(socket, out, asio::use_awaitable);
  }
}

asio::awaitable<void> bare_accept(tcp::acceptor& acceptor) {
  for (;;) {
    tcp::socket s = co_await acceptor.async_accept(asio::use_awaitable);
    s.set_option(tcp::no_delay(true));
    asio::co_spawn(acceptor.get_executor(), bare_serve(std::move(s)), asio::detached);
  }
}

asio::awaitable<void> bare_calls(tcp::socket& socket, const std::string& frame, int n) {
  std::string header(96, '\0');
  std::string payload;
  for (int i = 0; i < n; ++i) {
    co_await asio::async_write(socket, asio::buffer(frame), asio::use_awaitable);
    co_await asio::async_read(socket, asio::buffer(header), asio::use_awaitable);
    payload.resize(frame.size() - 96);
    co_await asio::async_read(socket, asio::buffer(payload), asio::use_awaitable);
  }
}

// Arg 1: 1 = client and server on one thread and io_context (as grove's
// client and session can be, when they share a worker); 2 = each on its own.
void bare_asio_round_trip(benchmark::State& state) {
  const bool one_thread = state.range(1) == 1;
  asio::io_context client_io(1);
  asio::io_context server_io(1);
  asio::io_context& serving = one_thread ? client_io : server_io;
  tcp::acceptor acceptor(serving, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  asio::co_spawn(serving, bare_accept(acceptor), asio::detached);
  std::thread server_thread;
  if (!one_thread) server_thread = std::thread([&] { server_io.run(); });

  tcp::socket socket(client_io);
  socket.connect(acceptor.local_endpoint());
  socket.set_option(tcp::no_delay(true));
  const std::string body = json{{"op", "echo"}, {"value", payload_of(static_cast<std::size_t>(state.range(0)))}}.dump();
  const std::string frame = grove::erps::frame_writer{}.frame(frame_type::call, "[1," + body + "]");
  auto run = [&](int n) {
    bool finished = false;
    std::exception_ptr failure;
    asio::co_spawn(client_io, bare_calls(socket, frame, n), [&](std::exception_ptr e) {
      failure = e;
      finished = true;
    });
    client_io.restart(); // it stops whenever it runs out of work
    while (!finished) client_io.run_one();
    if (failure) std::rethrow_exception(failure);
  };
  run(100);
  for (auto _ : state) run(calls_per_iteration);
  state.SetItemsProcessed(state.iterations() * calls_per_iteration);
  boost::system::error_code ignored;
  socket.close(ignored);
  acceptor.close(ignored);
  server_io.stop();
  if (server_thread.joinable()) server_thread.join();
}
BENCHMARK(bare_asio_round_trip)
    ->Args({48, 1})
    ->Args({48, 2})
    ->Args({16 * 1024, 1})
    ->Args({16 * 1024, 2})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

} // namespace

BENCHMARK_MAIN();
