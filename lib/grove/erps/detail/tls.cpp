// TLS for erps links: OpenSSL contexts and the TLS transport. The one file
// of the erps layer that includes Boost.Asio's SSL headers.
#include <grove/erps/error.hpp>
#include <grove/erps/detail/transport.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include <arpa/inet.h>

#include <array>
#include <cstring>
#include <fstream>
#include <mutex>
#include <optional>
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
  if (file.empty()) throw grove::error(errc::invalid_argument, option + " is empty: expected the path of a PEM file");
  std::ifstream in(file);
  if (!in) throw grove::error(errc::invalid_argument, option + " \"" + file + "\": cannot read the file (expected a PEM file)");
}

template <class F>
void load(const std::string& option, const std::string& file, F&& f) {
  require_readable(option, file);
  try {
    f();
  } catch (const boost::system::system_error& e) {
    throw grove::error(errc::invalid_argument, option + " \"" + file + "\": " + openssl_reason(e) + " (expected a PEM file)");
  }
}

// --- policy -----------------------------------------------------------------

// TLS 1.2: forward secrecy (ECDHE) and AEAD only; CBC suites (LUCKY13) and
// static RSA key exchange are never offered. ChaCha20 first for clients
// without AES hardware is left to the server's order below.
constexpr const char* default_tls12_ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

struct tls_policy {
  tls_version min_version;
  const std::string& tls12_ciphers;
  const std::string& tls13_ciphersuites;
};

void apply_policy(ssl::context& ctx, const tls_policy& p) {
  SSL_CTX* native = ctx.native_handle();
  ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                  ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 | ssl::context::single_dh_use |
                  ssl::context::no_compression);
  SSL_CTX_set_options(native, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  // OpenSSL frees a connection's record buffers while it has nothing to
  // read or write (an idle connection then holds none) and takes them again
  // for the next record.
  SSL_CTX_set_mode(native, SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_min_proto_version(native, p.min_version == tls_version::tls1_3 ? TLS1_3_VERSION : TLS1_2_VERSION);
  const std::string& list = p.tls12_ciphers.empty() ? std::string(default_tls12_ciphers) : p.tls12_ciphers;
  if (SSL_CTX_set_cipher_list(native, list.c_str()) != 1) {
    throw grove::error(errc::invalid_argument, "tls.tls12_ciphers \"" + list + "\": no cipher OpenSSL knows (expected an OpenSSL cipher list)");
  }
  // A list may narrow the policy, never widen it.
  STACK_OF(SSL_CIPHER)* chosen = SSL_CTX_get_ciphers(native);
  for (int i = 0; i < sk_SSL_CIPHER_num(chosen); ++i) {
    const SSL_CIPHER* c = sk_SSL_CIPHER_value(chosen, i);
    if (SSL_CIPHER_get_kx_nid(c) == NID_kx_any) continue; // a TLS 1.3 suite (its key exchange is negotiated apart)
    if (SSL_CIPHER_is_aead(c) != 1 || SSL_CIPHER_get_kx_nid(c) != NID_kx_ecdhe) {
      throw grove::error(errc::invalid_argument, "tls.tls12_ciphers names " + std::string(SSL_CIPHER_get_name(c)) +
                                  ": expected only ECDHE suites with AES-GCM or ChaCha20-Poly1305");
    }
  }
  if (!p.tls13_ciphersuites.empty() && SSL_CTX_set_ciphersuites(native, p.tls13_ciphersuites.c_str()) != 1) {
    throw grove::error(errc::invalid_argument, "tls.tls13_ciphersuites \"" + p.tls13_ciphersuites +
                                "\": expected OpenSSL TLS 1.3 suite names, e.g. TLS_AES_256_GCM_SHA384");
  }
}

// --- sessions -----------------------------------------------------------------

// Where a callback OpenSSL makes finds grove's state for an SSL_CTX (Asio
// keeps the context's app data for its own callbacks).
int context_index() {
  static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

// Session ticket keys: the current one seals new tickets; after
// `lifetime` it is replaced and kept one more lifetime to open (and renew)
// the tickets it sealed. Keys live in memory only: a restart, or a reload,
// starts afresh. Callbacks come from every worker thread, so a mutex
// guards the keys (a handshake is far costlier than the lock).
class ticket_keys {
public:
  explicit ticket_keys(std::chrono::seconds lifetime) : lifetime_(lifetime) { current_ = make_key(); }

  // OpenSSL's ticket key callback: 1 done (or: ticket opened), 2 opened with
  // the old key (issue a new ticket), 0 unknown key (full handshake), -1 error.
  int seal(unsigned char* name, unsigned char* iv, EVP_CIPHER_CTX* cipher, EVP_MAC_CTX* mac) {
    std::lock_guard lock(mutex_);
    rotate_if_due();
    if (RAND_bytes(iv, EVP_CIPHER_get_iv_length(EVP_aes_256_cbc())) != 1) return -1;
    std::memcpy(name, current_.name.data(), current_.name.size());
    return use(current_, iv, cipher, mac, true) ? 1 : -1;
  }

  int open(const unsigned char* name, const unsigned char* iv, EVP_CIPHER_CTX* cipher, EVP_MAC_CTX* mac) {
    std::lock_guard lock(mutex_);
    rotate_if_due();
    if (std::memcmp(name, current_.name.data(), current_.name.size()) == 0) {
      return use(current_, iv, cipher, mac, false) ? 1 : -1;
    }
    if (previous_ && std::memcmp(name, previous_->name.data(), previous_->name.size()) == 0) {
      return use(*previous_, iv, cipher, mac, false) ? 2 : -1;
    }
    return 0;
  }

private:
  struct key {
    std::array<unsigned char, 16> name{};
    std::array<unsigned char, 32> aes{};
    std::array<unsigned char, 32> hmac{};
    std::chrono::steady_clock::time_point created{};
  };

  static key make_key() {
    key k;
    if (RAND_bytes(k.name.data(), static_cast<int>(k.name.size())) != 1 ||
        RAND_bytes(k.aes.data(), static_cast<int>(k.aes.size())) != 1 ||
        RAND_bytes(k.hmac.data(), static_cast<int>(k.hmac.size())) != 1) {
      throw grove::error(erps_errc::tls, "OpenSSL could not generate a session ticket key");
    }
    k.created = std::chrono::steady_clock::now();
    return k;
  }

  void rotate_if_due() {
    const auto now = std::chrono::steady_clock::now();
    if (previous_ && now - previous_->created >= 2 * lifetime_) previous_.reset();
    if (now - current_.created < lifetime_) return;
    try {
      key next = make_key();
      previous_ = current_;
      current_ = next;
    } catch (const grove::error&) {
      // Keep sealing with the key we have; the next handshake tries again.
    }
  }

  static bool use(key& k, const unsigned char* iv, EVP_CIPHER_CTX* cipher, EVP_MAC_CTX* mac, bool sealing) {
    char digest[] = "SHA256";
    const OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, k.hmac.data(), k.hmac.size()),
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
        OSSL_PARAM_construct_end(),
    };
    const int ok = sealing ? EVP_EncryptInit_ex(cipher, EVP_aes_256_cbc(), nullptr, k.aes.data(), iv)
                           : EVP_DecryptInit_ex(cipher, EVP_aes_256_cbc(), nullptr, k.aes.data(), iv);
    return ok == 1 && EVP_MAC_CTX_set_params(mac, params) == 1;
  }

  std::mutex mutex_;
  std::chrono::seconds lifetime_;
  key current_;
  std::optional<key> previous_;
};

// A client's last session, offered on its next connect.
class session_store {
public:
  session_store() = default;
  session_store(const session_store&) = delete;
  session_store& operator=(const session_store&) = delete;
  ~session_store() {
    if (last_ != nullptr) SSL_SESSION_free(last_);
  }
  void keep(SSL_SESSION* s) { // takes the reference OpenSSL hands over
    std::lock_guard lock(mutex_);
    if (last_ != nullptr) SSL_SESSION_free(last_);
    last_ = s;
  }
  void offer(SSL* ssl) {
    std::lock_guard lock(mutex_);
    if (last_ != nullptr) SSL_set_session(ssl, last_);
  }

private:
  std::mutex mutex_;
  SSL_SESSION* last_ = nullptr;
};

// An SSL_CTX with what its callbacks use: connections hold it, so it lives
// as long as the last SSL made from it.
struct shared_context {
  explicit shared_context(ssl::context::method m) : context(m) {}
  ssl::context context;
  std::optional<ticket_keys> tickets; // server, with session tickets
  session_store sessions;             // client
  bool resume = false;                // client: offer sessions
};

int ticket_callback(SSL* ssl, unsigned char* name, unsigned char* iv, EVP_CIPHER_CTX* cipher, EVP_MAC_CTX* mac,
                    int sealing) {
  auto* shared = static_cast<shared_context*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), context_index()));
  if (shared == nullptr || !shared->tickets) return -1;
  return sealing != 0 ? shared->tickets->seal(name, iv, cipher, mac) : shared->tickets->open(name, iv, cipher, mac);
}

int new_session_callback(SSL* ssl, SSL_SESSION* session) {
  auto* shared = static_cast<shared_context*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), context_index()));
  if (shared == nullptr || !shared->resume) return 0;
  shared->sessions.keep(session);
  return 1; // we keep the reference
}

void enable_server_sessions(shared_context& shared, const tls_server_options& o) {
  SSL_CTX* native = shared.context.native_handle();
  // Sessions of this daemon's clients only (and required for resumption
  // when client certificates are verified).
  static constexpr unsigned char id_context[] = "grove-erps";
  SSL_CTX_set_session_id_context(native, id_context, sizeof id_context - 1);
  if (!o.session_tickets) {
    SSL_CTX_set_options(native, SSL_OP_NO_TICKET);
    SSL_CTX_set_num_tickets(native, 0);
    return;
  }
  shared.tickets.emplace(o.ticket_key_lifetime);
  SSL_CTX_set_ex_data(native, context_index(), &shared);
  SSL_CTX_set_tlsext_ticket_key_evp_cb(native, ticket_callback);
  SSL_CTX_set_timeout(native, static_cast<long>(o.ticket_key_lifetime.count()));
}

void enable_client_sessions(shared_context& shared, const tls_client_options& o) {
  if (!o.resume_sessions) return;
  SSL_CTX* native = shared.context.native_handle();
  shared.resume = true;
  SSL_CTX_set_ex_data(native, context_index(), &shared);
  SSL_CTX_set_session_cache_mode(native, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  SSL_CTX_sess_set_new_cb(native, new_session_callback);
}

std::string subject_of(SSL* ssl) {
  X509* cert = SSL_get1_peer_certificate(ssl);
  if (cert == nullptr) return {};
  char line[512];
  X509_NAME_oneline(X509_get_subject_name(cert), line, sizeof line);
  X509_free(cert);
  return line;
}

// The peer certificate's subject alternative names, each as "DNS:name",
// "URI:uri", "email:address" or "IP:address" (other kinds are left out,
// and so is a name with a NUL in it: it could only be a forgery).
std::vector<std::string> alt_names_of(SSL* ssl) {
  X509* cert = SSL_get1_peer_certificate(ssl);
  if (cert == nullptr) return {};
  std::vector<std::string> out;
  auto* names = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  auto text = [](const ASN1_STRING* s) {
    return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)), static_cast<std::size_t>(ASN1_STRING_length(s)));
  };
  for (int i = 0; names != nullptr && i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* n = sk_GENERAL_NAME_value(names, i);
    std::string name;
    switch (n->type) {
      case GEN_DNS: name = "DNS:" + text(n->d.dNSName); break;
      case GEN_URI: name = "URI:" + text(n->d.uniformResourceIdentifier); break;
      case GEN_EMAIL: name = "email:" + text(n->d.rfc822Name); break;
      case GEN_IPADD: {
        const std::string raw = text(n->d.iPAddress);
        char printed[INET6_ADDRSTRLEN] = {};
        const int family = raw.size() == 4 ? AF_INET : raw.size() == 16 ? AF_INET6 : 0;
        if (family != 0 && ::inet_ntop(family, raw.data(), printed, sizeof printed) != nullptr) name = std::string("IP:") + printed;
        break;
      }
      default: break;
    }
    if (!name.empty() && name.find('\0') == std::string::npos) out.push_back(std::move(name));
  }
  GENERAL_NAMES_free(names);
  X509_free(cert);
  return out;
}

class tls_transport final : public stream_transport<ssl::stream<asio::ip::tcp::socket>> {
public:
  tls_transport(asio::ip::tcp::socket socket, std::shared_ptr<shared_context> ctx, ssl::stream_base::handshake_type role,
                const std::string& server_name)
      : stream_transport(std::move(socket), ctx->context), context_(std::move(ctx)), role_(role) {
    if (role == ssl::stream_base::client && context_->resume) context_->sessions.offer(stream_.native_handle());
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
      alt_names_ = alt_names_of(stream_.native_handle());
      handshake_done_ = true;
    }
    co_return error;
  }

  void close() noexcept override {
    // A link closes without TLS's close_notify (it closes the socket at
    // once). OpenSSL would take that for a truncated connection and mark
    // the session not resumable; after a completed handshake it is not one.
    if (handshake_done_) SSL_set_shutdown(stream_.native_handle(), SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    stream_transport::close();
  }

  asio::awaitable<std::pair<boost::system::error_code, std::size_t>> read_some(asio::mutable_buffer into) override {
    auto result = co_await stream_transport::read_some(into);
    // A peer that closes TCP without TLS's close_notify: for us, an end of stream.
    if (result.first == ssl::error::stream_truncated) result.first = asio::error::eof;
    co_return result;
  }

  std::string peer_subject() const override { return subject_; }
  std::vector<std::string> peer_alt_names() const override { return alt_names_; }
  std::string handshake_detail() const override { return verify_error_; }
  bool encrypted() const noexcept override { return true; }
  bool resumed() const override { return SSL_session_reused(const_cast<tls_transport*>(this)->stream_.native_handle()) == 1; }

private:
  // Keeps the context and what its callbacks use for as long as the
  // connection lives, across reloads.
  std::shared_ptr<shared_context> context_;
  ssl::stream_base::handshake_type role_;
  std::string subject_;
  std::vector<std::string> alt_names_;
  std::string verify_error_;
  bool handshake_done_ = false;
};

class openssl_context final : public tls_context {
public:
  openssl_context(std::shared_ptr<shared_context> ctx, ssl::stream_base::handshake_type role, duration handshake_timeout)
      : context_(std::move(ctx)), role_(role), handshake_timeout_(handshake_timeout) {}

  std::unique_ptr<transport> wrap(asio::ip::tcp::socket socket, const std::string& server_name) override {
    return std::make_unique<tls_transport>(std::move(socket), context_, role_, server_name);
  }
  duration handshake_timeout() const noexcept override { return handshake_timeout_; }

private:
  std::shared_ptr<shared_context> context_;
  ssl::stream_base::handshake_type role_;
  duration handshake_timeout_;
};

void check_timeout(const std::string& option, duration d) {
  if (d <= duration::zero()) throw grove::error(errc::invalid_argument, option + " must be positive");
}

} // namespace

std::shared_ptr<tls_context> tls_context::server(const tls_server_options& o) {
  check_timeout("tls.handshake_timeout", o.handshake_timeout);
  if (o.session_tickets && o.ticket_key_lifetime <= std::chrono::seconds::zero()) {
    throw grove::error(errc::invalid_argument, "tls.ticket_key_lifetime must be positive");
  }
  auto shared = std::make_shared<shared_context>(ssl::context::tls_server);
  ssl::context* ctx = &shared->context;
  apply_policy(*ctx, {o.min_version, o.tls12_ciphers, o.tls13_ciphersuites});
  load("tls.certificate_file", o.certificate_file, [&] { ctx->use_certificate_chain_file(o.certificate_file); });
  load("tls.private_key_file", o.private_key_file, [&] { ctx->use_private_key_file(o.private_key_file, ssl::context::pem); });
  if (SSL_CTX_check_private_key(ctx->native_handle()) != 1) {
    throw grove::error(errc::invalid_argument, "tls.private_key_file \"" + o.private_key_file + "\" does not match tls.certificate_file \"" +
                                o.certificate_file + "\"");
  }
  if (o.require_client_certificate) {
    if (o.ca_file.empty()) {
      throw grove::error(errc::invalid_argument, 
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
  enable_server_sessions(*shared, o);
  return std::make_shared<openssl_context>(std::move(shared), ssl::stream_base::server, o.handshake_timeout);
}

std::shared_ptr<tls_context> tls_context::client(const tls_client_options& o) {
  check_timeout("tls.handshake_timeout", o.handshake_timeout);
  auto shared = std::make_shared<shared_context>(ssl::context::tls_client);
  ssl::context* ctx = &shared->context;
  apply_policy(*ctx, {o.min_version, o.tls12_ciphers, o.tls13_ciphersuites});
  if (o.verify_server) {
    if (o.ca_file.empty()) {
      throw grove::error(errc::invalid_argument, "tls.ca_file is empty: expected the CA that signs the server's certificate (or set "
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
      throw grove::error(errc::invalid_argument, "tls.private_key_file \"" + o.private_key_file +
                                  "\" does not match tls.certificate_file \"" + o.certificate_file + "\"");
    }
  }
  enable_client_sessions(*shared, o);
  return std::make_shared<openssl_context>(std::move(shared), ssl::stream_base::client, o.handshake_timeout);
}

} // namespace grove::erps::detail
