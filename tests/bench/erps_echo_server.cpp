// The baseline for grove-bench: an erps echo server written by hand on bare
// Asio (and Asio's OpenSSL stream), with none of grove's processes,
// supervision or JSON. A call's payload [id, request] comes back as the
// reply [request, id]; keepalives are answered; casts are dropped. Frames
// are parsed in place from large reads and the replies to one read go out
// in one write, as a careful hand-written server would do it.
//
//   erps_echo_server [--port N] [--threads N] [--tls]   prints {"event":"ready","port":N}
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <cstring>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#ifndef GROVE_SOURCE_ROOT
#define GROVE_SOURCE_ROOT "."
#endif

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

constexpr std::size_t header_size = 96;
constexpr std::size_t keepalive_size = 9;

std::uint32_t length_of(const char* h) {
  return (std::uint32_t(std::uint8_t(h[4])) << 24) | (std::uint32_t(std::uint8_t(h[5])) << 16) |
         (std::uint32_t(std::uint8_t(h[6])) << 8) | std::uint32_t(std::uint8_t(h[7]));
}

void put_length(char* h, std::uint32_t n) {
  h[4] = static_cast<char>(n >> 24);
  h[5] = static_cast<char>(n >> 16);
  h[6] = static_cast<char>(n >> 8);
  h[7] = static_cast<char>(n);
}

// [id,request] -> [request,id]: the id is the first element (a number or a
// string), so only it is scanned; the request is copied as bytes.
bool append_reply(std::string& out, const char* header, std::string_view payload) {
  if (payload.size() < 5 || payload.front() != '[' || payload.back() != ']') return false;
  std::size_t end = 1;
  if (payload[1] == '"') {
    for (end = 2; end < payload.size() && payload[end] != '"'; ++end) {
      if (payload[end] == '\\') ++end;
    }
    ++end;
  } else {
    while (end < payload.size() && payload[end] != ',') ++end;
  }
  if (end >= payload.size() || payload[end] != ',') return false;
  const std::string_view id = payload.substr(1, end - 1);
  const std::string_view request = payload.substr(end + 1, payload.size() - end - 2);
  const std::size_t length = request.size() + id.size() + 3;
  const std::size_t at = out.size();
  out.append(header, header_size);
  out[at + 8] = 2; // reply
  put_length(out.data() + at, static_cast<std::uint32_t>(length));
  out += '[';
  out += request;
  out += ',';
  out += id;
  out += ']';
  return true;
}

template <class Stream>
asio::awaitable<void> serve(Stream stream) {
  std::vector<char> in(16 * 1024); // grows for a larger frame
  std::size_t filled = 0;
  std::string out;
  try {
    for (;;) {
      if (filled == in.size()) in.resize(in.size() * 2);
      filled += co_await stream.async_read_some(asio::buffer(in.data() + filled, in.size() - filled), asio::use_awaitable);
      std::size_t at = 0;
      out.clear();
      for (;;) {
        const std::size_t left = filled - at;
        if (left < keepalive_size) break;
        const char* h = in.data() + at;
        if (std::memcmp(h, "erps", 4) != 0) co_return; // out of step: close
        const std::uint32_t length = length_of(h);
        if (length == 0 && h[8] == 0) { // keepalive
          out.append(h, keepalive_size);
          at += keepalive_size;
          continue;
        }
        if (left < header_size || left - header_size < length) {
          if (header_size + length > in.size()) in.resize(header_size + length);
          break;
        }
        if (h[8] == 4 && !append_reply(out, h, std::string_view(h + header_size, length))) co_return;
        at += header_size + length;
      }
      std::memmove(in.data(), in.data() + at, filled - at);
      filled -= at;
      if (!out.empty()) co_await asio::async_write(stream, asio::buffer(out), asio::use_awaitable);
    }
  } catch (const std::exception&) {
    // The client went away.
  }
}

asio::awaitable<void> accept(tcp::acceptor& acceptor, asio::ssl::context* tls) {
  for (;;) {
    tcp::socket s = co_await acceptor.async_accept(asio::use_awaitable);
    s.set_option(tcp::no_delay(true));
    auto ex = s.get_executor();
    if (tls) {
      asio::co_spawn(ex, [](tcp::socket socket, asio::ssl::context& ctx) -> asio::awaitable<void> {
        asio::ssl::stream<tcp::socket> stream(std::move(socket), ctx);
        try {
          co_await stream.async_handshake(asio::ssl::stream_base::server, asio::use_awaitable);
        } catch (const std::exception&) {
          co_return;
        }
        co_await serve(std::move(stream));
      }(std::move(s), *tls), asio::detached);
    } else {
      asio::co_spawn(ex, serve(std::move(s)), asio::detached);
    }
  }
}

} // namespace

int main(int argc, char** argv) {
  unsigned short port = 0;
  unsigned threads = 2;
  bool tls = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--port" && i + 1 < argc) port = static_cast<unsigned short>(std::stoul(argv[++i]));
    else if (arg == "--threads" && i + 1 < argc) threads = static_cast<unsigned>(std::stoul(argv[++i]));
    else if (arg == "--tls") tls = true;
    else {
      std::cerr << "usage: erps_echo_server [--port N] [--threads N] [--tls]\n";
      return 2;
    }
  }
  asio::io_context io(static_cast<int>(threads));
  asio::ssl::context ctx(asio::ssl::context::tls_server);
  if (tls) {
    const std::string certs = std::string(GROVE_SOURCE_ROOT) + "/certs/";
    ctx.set_options(asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1 | asio::ssl::context::no_sslv3);
    ctx.use_certificate_chain_file(certs + "server.pem");
    ctx.use_private_key_file(certs + "server.key", asio::ssl::context::pem);
    ctx.load_verify_file(certs + "ca.pem");
    ctx.set_verify_mode(asio::ssl::verify_peer | asio::ssl::verify_fail_if_no_peer_cert);
  }
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  acceptor.listen(1024);
  asio::co_spawn(io, accept(acceptor, tls ? &ctx : nullptr), asio::detached);
  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](auto, int) { io.stop(); });
  std::cout << "{\"event\":\"ready\",\"port\":" << acceptor.local_endpoint().port() << "}" << std::endl;
  std::vector<std::thread> pool;
  for (unsigned i = 1; i < threads; ++i) pool.emplace_back([&] { io.run(); });
  io.run();
  for (auto& t : pool) t.join();
}
