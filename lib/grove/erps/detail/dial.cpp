#include <grove/erps/detail/transport.hpp>

#include <grove/core/detail/deadline.hpp>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/this_coro.hpp>

#include <vector>

namespace grove::erps::detail {

namespace {
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

std::string ms_text(duration d) {
  return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(d).count()) + " ms";
}
} // namespace

asio::awaitable<dialed> dial(std::string host, std::uint16_t port, tls_context* tls, std::string verify_name,
                             duration step_timeout, std::string timeout_name) {
  using tcp = asio::ip::tcp;
  const auto executor = co_await asio::this_coro::executor;
  grove::detail::deadline limit(executor);
  const std::string over = " took over " + timeout_name + " (" + ms_text(step_timeout) + ")";
  dialed out;
  std::vector<tcp::endpoint> targets;
  boost::system::error_code not_address;
  const asio::ip::address address = asio::ip::make_address(host, not_address);
  if (!not_address) { // an address: no resolver (its thread hop costs more than a short exchange)
    targets.emplace_back(address, port);
  } else {
    tcp::resolver resolver(executor);
    limit.arm(step_timeout, [&resolver] { resolver.cancel(); });
    // (std::get, not a structured binding of a co_await: clang 14 miscompiles that.)
    auto resolved = co_await resolver.async_resolve(host, std::to_string(port), use_tuple);
    limit.disarm();
    if (std::get<0>(resolved)) {
      out.timed_out = limit.expired();
      out.error = out.timed_out ? "resolving " + host + over : "cannot resolve " + host + ": " + std::get<0>(resolved).message();
      co_return out;
    }
    for (const auto& entry : std::get<1>(resolved)) targets.push_back(entry.endpoint());
  }
  tcp::socket socket(executor);
  boost::system::error_code error = asio::error::host_not_found;
  for (const tcp::endpoint& target : targets) {
    boost::system::error_code ignored;
    socket.close(ignored);
    limit.arm(step_timeout, [&socket] {
      boost::system::error_code e;
      socket.close(e);
    });
    auto connected = co_await socket.async_connect(target, use_tuple);
    limit.disarm();
    error = std::get<0>(connected);
    if (!error) break;
    if (limit.expired()) {
      out.timed_out = true;
      out.error = "connect" + over;
      co_return out;
    }
  }
  if (error) {
    out.error = "cannot connect: " + error.message();
    co_return out;
  }
  out.fd = socket.native_handle();
  if (!tls) {
    out.stream = make_tcp_transport(std::move(socket));
    co_return out;
  }
  auto stream = tls->wrap(std::move(socket), verify_name);
  transport* raw = stream.get();
  limit.arm(step_timeout, [raw] { raw->close(); });
  const boost::system::error_code handshake = co_await stream->handshake();
  limit.disarm();
  if (handshake) {
    out.timed_out = limit.expired();
    if (out.timed_out) {
      out.error = "TLS handshake" + over;
    } else {
      out.error = "TLS handshake failed: " + handshake.message();
      if (const std::string detail = stream->handshake_detail(); !detail.empty()) out.error += " (" + detail + ")";
    }
    co_return out;
  }
  out.stream = std::move(stream);
  co_return out;
}

} // namespace grove::erps::detail
