// The baseline for grove-bench: an erps echo server written by hand on bare
// Asio (and Asio's OpenSSL stream), with none of grove's processes,
// supervision or JSON. A call's payload [id, request] comes back as the
// reply [request, id]; keepalives are answered; casts are dropped. Frames
// are parsed in place from large reads and the replies to one read go out
// in one write, as a careful hand-written server would do it
// (echo_frames.hpp). With --dom, each payload is parsed into an
// nlohmann::json and the reply serialised from one.
//
//   erps_echo_server [--port N] [--threads N] [--tls] [--dom]   prints {"event":"ready","port":N}
#include "echo_frames.hpp"

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

bool dom = false; // --dom: parse each payload into an nlohmann::json

template <class Stream>
asio::awaitable<void> serve(Stream stream) {
  std::vector<char> in(16 * 1024); // grows for a larger frame
  std::size_t filled = 0;
  std::string out;
  try {
    for (;;) {
      if (filled == in.size()) in.resize(in.size() * 2);
      filled += co_await stream.async_read_some(asio::buffer(in.data() + filled, in.size() - filled), asio::use_awaitable);
      out.clear();
      const long at = echo_frames::consume(in, filled, out, dom);
      if (at < 0) co_return; // out of step: close
      std::memmove(in.data(), in.data() + at, filled - static_cast<std::size_t>(at));
      filled -= static_cast<std::size_t>(at);
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
    else if (arg == "--dom") dom = true;
    else {
      std::cerr << "usage: erps_echo_server [--port N] [--threads N] [--tls] [--dom]\n";
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
