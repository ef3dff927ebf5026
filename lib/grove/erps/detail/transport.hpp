// Internal: the transports a link runs over, and TLS contexts (OpenSSL
// stays out of this header; tls.cpp has it).
#pragma once

#include <grove/erps/detail/link.hpp>
#include <grove/erps/tls.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <memory>
#include <string>

namespace grove::erps::detail {

std::unique_ptr<transport> make_tcp_transport(asio::ip::tcp::socket socket);

/// "127.0.0.1:51234" / "[::1]:51234".
std::string endpoint_text(const asio::ip::tcp::endpoint& e);

/// A transport over an Asio stream whose lowest layer is a TCP socket:
/// Nagle off, the peer's address kept for logs.
template <class Stream>
class stream_transport : public transport {
public:
  template <class... A>
  explicit stream_transport(A&&... args) : stream_(std::forward<A>(args)...) {
    boost::system::error_code ignored;
    stream_.lowest_layer().set_option(asio::ip::tcp::no_delay(true), ignored);
    auto remote = stream_.lowest_layer().remote_endpoint(ignored);
    if (!ignored) peer_ = endpoint_text(remote);
  }

  asio::any_io_executor executor() override { return stream_.get_executor(); }

  asio::awaitable<std::pair<boost::system::error_code, std::size_t>> read_some(asio::mutable_buffer into) override {
    auto [error, n] = co_await stream_.async_read_some(into, asio::as_tuple(asio::use_awaitable));
    co_return std::pair{error, n};
  }

  asio::awaitable<std::pair<boost::system::error_code, std::size_t>> write(asio::const_buffer bytes) override {
    auto [error, n] = co_await asio::async_write(stream_, bytes, asio::as_tuple(asio::use_awaitable));
    co_return std::pair{error, n};
  }

  void close() noexcept override {
    boost::system::error_code ignored;
    stream_.lowest_layer().shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
    stream_.lowest_layer().close(ignored);
  }

  std::string peer() const override { return peer_; }

protected:
  Stream stream_;
  std::string peer_;
};

/// A loaded TLS configuration (an OpenSSL SSL_CTX). Immutable once made; a
/// reload makes a new one, and each connection keeps the one it began with.
class tls_context {
public:
  /// Throw std::invalid_argument naming the option and the file.
  static std::shared_ptr<tls_context> server(const tls_server_options& options);
  static std::shared_ptr<tls_context> client(const tls_client_options& options);
  virtual ~tls_context() = default;
  virtual std::unique_ptr<transport> wrap(asio::ip::tcp::socket socket, const std::string& server_name) = 0;
  virtual duration handshake_timeout() const noexcept = 0;
};

/// An outbound connection, as the HTTP fetcher and the etcd client make
/// them: resolves `host` (unless it is an address), connects to the first
/// address that answers and, with `tls`, shakes hands (checking
/// `verify_name` when not empty), each step within `step_timeout`.
struct dialed {
  std::unique_ptr<transport> stream; ///< null on failure
  int fd = -1;                       ///< the socket's descriptor (for a liveness poll)
  std::string error{};               ///< which step failed and why ("connect took over <timeout_name> (N ms)",
                                     ///< "cannot connect: ...", "TLS handshake failed: ... (OpenSSL's reason)")
  bool timed_out = false;            ///< the failed step ran out of time
};
/// (Parameters by value: the caller's temporaries may not outlive its co_await.)
asio::awaitable<dialed> dial(std::string host, std::uint16_t port, tls_context* tls, std::string verify_name,
                             duration step_timeout, std::string timeout_name);

} // namespace grove::erps::detail
