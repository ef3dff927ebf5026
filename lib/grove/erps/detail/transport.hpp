// Internal: the transports a link runs over, and TLS contexts (OpenSSL
// stays out of this header; tls.cpp has it).
#pragma once

#include <grove/erps/detail/link.hpp>
#include <grove/erps/tls.hpp>

#include <boost/asio/ip/tcp.hpp>

#include <memory>
#include <string>

namespace grove::erps::detail {

std::unique_ptr<transport> make_tcp_transport(asio::ip::tcp::socket socket);

/// "127.0.0.1:51234" / "[::1]:51234".
std::string endpoint_text(const asio::ip::tcp::endpoint& e);

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

} // namespace grove::erps::detail
