// grove/erps/tls.hpp — TLS settings for the erps daemon and client (OpenSSL
// through Boost.Asio; this header does not pull either in). The daemon
// requires and verifies a client certificate unless told otherwise (mutual
// TLS, as erps does).
//
// The policy, on both sides: TLS 1.2 is the floor; TLS 1.2 negotiates only
// ECDHE key exchange with an AEAD cipher (AES-GCM, ChaCha20-Poly1305), in
// the server's order of preference; TLS 1.3 takes OpenSSL's suites (all
// AEAD); renegotiation is refused. The options below can only tighten it.
// Sessions resume: the daemon issues tickets under a key it rotates (see
// ticket_key_lifetime), and a client offers its last session when it
// reconnects, so a reconnect costs no full handshake. A reload_tls() starts
// a new ticket key, so no session from before it resumes: a changed CA
// applies to every client at once.
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
#include <cstdint>
#include <string>

namespace grove::erps {

enum class tls_version : std::uint8_t { tls1_2, tls1_3 };

struct tls_server_options {
  std::string certificate_file{};        ///< PEM certificate chain, server certificate first (required)
  std::string private_key_file{};        ///< PEM private key of that certificate (required)
  std::string ca_file{};                 ///< PEM CA certificates that sign accepted client certificates (required when mutual)
  bool require_client_certificate = true; ///< mutual TLS: refuse a client without a valid certificate (default true)
  std::chrono::steady_clock::duration handshake_timeout = std::chrono::seconds(10); ///< a handshake taking longer is dropped, however steadily its bytes come (default 10 s)
  tls_version min_version = tls_version::tls1_2; ///< lowest protocol accepted (default TLS 1.2; tls1_3 refuses 1.2)
  std::string tls12_ciphers{};       ///< OpenSSL cipher list for TLS 1.2, to narrow the default (ECDHE with AES-GCM or ChaCha20-Poly1305); a list naming anything else is refused (default: that set)
  std::string tls13_ciphersuites{};  ///< OpenSSL TLS 1.3 suite list, e.g. "TLS_AES_256_GCM_SHA384" (default OpenSSL's)
  bool session_tickets = true;       ///< let clients resume sessions by ticket (default true)
  std::chrono::seconds ticket_key_lifetime = std::chrono::hours(12); ///< a ticket key seals new tickets this long, then only opens them (renewing) as long again (default 12 h)
};

struct tls_client_options {
  std::string ca_file{};          ///< PEM CA certificates that sign the server's certificate (required unless verify_server is false)
  std::string certificate_file{}; ///< PEM client certificate chain, for mutual TLS (default none)
  std::string private_key_file{}; ///< PEM private key of the client certificate (default none)
  std::string server_name{};      ///< name checked against the server certificate and sent as SNI (default: the host connected to)
  bool verify_server = true;      ///< verify the server's certificate and name (default true; false only for tests)
  std::chrono::steady_clock::duration handshake_timeout = std::chrono::seconds(10); ///< (default 10 s)
  tls_version min_version = tls_version::tls1_2; ///< lowest protocol offered (default TLS 1.2)
  std::string tls12_ciphers{};       ///< as tls_server_options::tls12_ciphers (default: ECDHE with AES-GCM or ChaCha20-Poly1305)
  std::string tls13_ciphersuites{};  ///< as tls_server_options::tls13_ciphersuites (default OpenSSL's)
  bool resume_sessions = true;       ///< offer the last session on a reconnect, to skip the full handshake (default true)
};

} // namespace grove::erps
