// grove/erps/tls.hpp — TLS settings for the erps daemon and client (OpenSSL
// through Boost.Asio; this header does not pull either in). TLS 1.2 is the
// floor. The daemon requires and verifies a client certificate unless told
// otherwise (mutual TLS, as erps does).
//
//   grove::erps::daemon_options d;
//   d.tls = grove::erps::tls_server_options{.certificate_file = "certs/server.pem",
//                                           .private_key_file = "certs/server.key",
//                                           .ca_file = "certs/ca.pem"};
//   grove::erps::client_options c;
//   c.tls = grove::erps::tls_client_options{.ca_file = "certs/ca.pem",
//                                           .certificate_file = "certs/client.pem",
//                                           .private_key_file = "certs/client.key"};
#pragma once

#include <chrono>
#include <string>

namespace grove::erps {

struct tls_server_options {
  std::string certificate_file{};        ///< PEM certificate chain, server certificate first (required)
  std::string private_key_file{};        ///< PEM private key of that certificate (required)
  std::string ca_file{};                 ///< PEM CA certificates that sign accepted client certificates (required when mutual)
  bool require_client_certificate = true; ///< mutual TLS: refuse a client without a valid certificate (default true)
  std::chrono::steady_clock::duration handshake_timeout = std::chrono::seconds(10); ///< a handshake taking longer is dropped (default 10 s)
};

struct tls_client_options {
  std::string ca_file{};          ///< PEM CA certificates that sign the server's certificate (required unless verify_server is false)
  std::string certificate_file{}; ///< PEM client certificate chain, for mutual TLS (default none)
  std::string private_key_file{}; ///< PEM private key of the client certificate (default none)
  std::string server_name{};      ///< name checked against the server certificate and sent as SNI (default: the host connected to)
  bool verify_server = true;      ///< verify the server's certificate and name (default true; false only for tests)
  std::chrono::steady_clock::duration handshake_timeout = std::chrono::seconds(10); ///< (default 10 s)
};

} // namespace grove::erps
