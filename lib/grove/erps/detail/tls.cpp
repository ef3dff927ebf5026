// TLS for erps links: OpenSSL contexts and the TLS transport. The one file
// of the erps layer that includes Boost.Asio's SSL headers.
#include <grove/erps/detail/transport.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include <fstream>
#include <stdexcept>

namespace grove::erps::detail {

namespace {

namespace ssl = asio::ssl;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

// The last OpenSSL error as text, e.g. "no start line" for a file that is
// not PEM, or "key values mismatch".
std::string openssl_reason(const boost::system::system_error& e) {
  std::string reason = e.code().message();
  return reason.empty() ? e.what() : reason;
}

void require_readable(const std::string& option, const std::string& file) {
  if (file.empty()) throw std::invalid_argument(option + " is empty: expected the path of a PEM file");
  std::ifstream in(file);
  if (!in) throw std::invalid_argument(option + " \"" + file + "\": cannot read the file (expected a PEM file)");
}

template <class F>
void load(const std::string& option, const std::string& file, F&& f) {
  require_readable(option, file);
  try {
    f();
  } catch (const boost::system::system_error& e) {
    throw std::invalid_argument(option + " \"" + file + "\": " + openssl_reason(e) + " (expected a PEM file)");
  }
}

void tls12_floor(ssl::context& ctx) {
  ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                  ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 | ssl::context::single_dh_use);
  SSL_CTX_set_min_proto_version(ctx.native_handle(), TLS1_2_VERSION);
}

std::string subject_of(SSL* ssl) {
  X509* cert = SSL_get1_peer_certificate(ssl);
  if (cert == nullptr) return {};
  char line[512];
  X509_NAME_oneline(X509_get_subject_name(cert), line, sizeof line);
  X509_free(cert);
  return line;
}

class tls_transport final : public stream_transport<ssl::stream<asio::ip::tcp::socket>> {
public:
  tls_transport(asio::ip::tcp::socket socket, std::shared_ptr<ssl::context> ctx, ssl::stream_base::handshake_type role,
                const std::string& server_name)
      : stream_transport(std::move(socket), *ctx), context_(std::move(ctx)), role_(role) {
    if (role == ssl::stream_base::client && !server_name.empty()) {
      SSL* s = stream_.native_handle();
      boost::system::error_code not_address;
      asio::ip::make_address(server_name, not_address);
      if (not_address) {
        SSL_set_tlsext_host_name(s, server_name.c_str());
        SSL_set1_host(s, server_name.c_str());
      } else {
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(s), server_name.c_str());
      }
    }
  }

  asio::awaitable<boost::system::error_code> handshake() override {
    auto [error] = co_await stream_.async_handshake(role_, use_tuple);
    if (error) {
      // Say why a certificate was refused, not only "certificate verify failed".
      long verify = SSL_get_verify_result(stream_.native_handle());
      if (verify != X509_V_OK) verify_error_ = X509_verify_cert_error_string(verify);
    } else {
      subject_ = subject_of(stream_.native_handle());
    }
    co_return error;
  }

  asio::awaitable<std::pair<boost::system::error_code, std::size_t>> read_some(asio::mutable_buffer into) override {
    auto result = co_await stream_transport::read_some(into);
    // A peer that closes TCP without TLS's close_notify: for us, an end of stream.
    if (result.first == ssl::error::stream_truncated) result.first = asio::error::eof;
    co_return result;
  }

  std::string peer_subject() const override { return subject_; }
  std::string handshake_detail() const override { return verify_error_; }

private:
  // The SSL object holds its own reference to the SSL_CTX (SSL_new takes
  // one), so the stream never outlives what it uses; this keeps the Asio
  // context object too, for as long as the connection lives, across reloads.
  std::shared_ptr<ssl::context> context_;
  ssl::stream_base::handshake_type role_;
  std::string subject_;
  std::string verify_error_;
};

class openssl_context final : public tls_context {
public:
  openssl_context(std::shared_ptr<ssl::context> ctx, ssl::stream_base::handshake_type role, duration handshake_timeout)
      : context_(std::move(ctx)), role_(role), handshake_timeout_(handshake_timeout) {}

  std::unique_ptr<transport> wrap(asio::ip::tcp::socket socket, const std::string& server_name) override {
    return std::make_unique<tls_transport>(std::move(socket), context_, role_, server_name);
  }
  duration handshake_timeout() const noexcept override { return handshake_timeout_; }

private:
  std::shared_ptr<ssl::context> context_;
  ssl::stream_base::handshake_type role_;
  duration handshake_timeout_;
};

void check_timeout(const std::string& option, duration d) {
  if (d <= duration::zero()) throw std::invalid_argument(option + " must be positive");
}

} // namespace

std::shared_ptr<tls_context> tls_context::server(const tls_server_options& o) {
  check_timeout("tls.handshake_timeout", o.handshake_timeout);
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
  tls12_floor(*ctx);
  load("tls.certificate_file", o.certificate_file, [&] { ctx->use_certificate_chain_file(o.certificate_file); });
  load("tls.private_key_file", o.private_key_file, [&] { ctx->use_private_key_file(o.private_key_file, ssl::context::pem); });
  if (SSL_CTX_check_private_key(ctx->native_handle()) != 1) {
    throw std::invalid_argument("tls.private_key_file \"" + o.private_key_file + "\" does not match tls.certificate_file \"" +
                                o.certificate_file + "\"");
  }
  if (o.require_client_certificate) {
    if (o.ca_file.empty()) {
      throw std::invalid_argument(
          "tls.ca_file is empty: mutual TLS needs the CA that signs client certificates (or set "
          "require_client_certificate to false for one-way TLS)");
    }
    load("tls.ca_file", o.ca_file, [&] { ctx->load_verify_file(o.ca_file); });
    // Tell clients which CAs we accept.
    if (STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(o.ca_file.c_str())) {
      SSL_CTX_set_client_CA_list(ctx->native_handle(), names);
    }
    ctx->set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
  } else {
    ctx->set_verify_mode(ssl::verify_none);
  }
  return std::make_shared<openssl_context>(std::move(ctx), ssl::stream_base::server, o.handshake_timeout);
}

std::shared_ptr<tls_context> tls_context::client(const tls_client_options& o) {
  check_timeout("tls.handshake_timeout", o.handshake_timeout);
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
  tls12_floor(*ctx);
  if (o.verify_server) {
    if (o.ca_file.empty()) {
      throw std::invalid_argument("tls.ca_file is empty: expected the CA that signs the server's certificate (or set "
                                  "verify_server to false, for tests only)");
    }
    load("tls.ca_file", o.ca_file, [&] { ctx->load_verify_file(o.ca_file); });
    ctx->set_verify_mode(ssl::verify_peer);
  } else {
    ctx->set_verify_mode(ssl::verify_none);
  }
  if (!o.certificate_file.empty() || !o.private_key_file.empty()) {
    load("tls.certificate_file", o.certificate_file, [&] { ctx->use_certificate_chain_file(o.certificate_file); });
    load("tls.private_key_file", o.private_key_file,
         [&] { ctx->use_private_key_file(o.private_key_file, ssl::context::pem); });
    if (SSL_CTX_check_private_key(ctx->native_handle()) != 1) {
      throw std::invalid_argument("tls.private_key_file \"" + o.private_key_file +
                                  "\" does not match tls.certificate_file \"" + o.certificate_file + "\"");
    }
  }
  return std::make_shared<openssl_context>(std::move(ctx), ssl::stream_base::client, o.handshake_timeout);
}

} // namespace grove::erps::detail
