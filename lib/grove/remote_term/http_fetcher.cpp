#include <grove/remote_term/http_fetcher.hpp>

#include <grove/core/detail/deadline.hpp>
#include <grove/erps/detail/transport.hpp>
#include <grove/remote_term/detail/http_rules.hpp>
#include <grove/remote_term/error.hpp>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdlib>
#include <ctime>
#include <functional>
#include <mutex>

namespace grove {

namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;

// --- URLs ---------------------------------------------------------------------

struct http_url {
  bool tls = false;
  std::string host{};   // without brackets
  std::uint16_t port = 0;
  std::string target{}; // path and query, starting with '/'

  std::string origin() const {
    const bool v6 = host.find(':') != std::string::npos;
    std::string out = (tls ? "https://" : "http://") + (v6 ? "[" + host + "]" : host);
    if (port != (tls ? 443 : 80)) out += ":" + std::to_string(port);
    return out;
  }
  /// The Host header: the host, and the port unless it is the scheme's.
  std::string host_header() const {
    const bool v6 = host.find(':') != std::string::npos;
    std::string out = v6 ? "[" + host + "]" : host;
    if (port != (tls ? 443 : 80)) out += ":" + std::to_string(port);
    return out;
  }
  /// For logs and errors: no query (it may carry a token or a signature).
  std::string text() const { return origin() + target.substr(0, target.find('?')); }
};

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

/// Parses an absolute http(s) URL; the reason names what is wrong.
http_url parse_url(std::string_view text) {
  const auto bad = [&](const std::string& why) -> grove::error {
    return grove::error(errc::invalid_argument, "\"" + std::string(text) + "\": " + why +
                                                    " (expected http://host[:port]/path or https://...)");
  };
  const std::size_t colon = text.find("://");
  if (colon == std::string_view::npos) throw bad("no scheme");
  http_url url;
  const std::string scheme = lower(text.substr(0, colon));
  if (scheme == "https") url.tls = true;
  else if (scheme != "http") throw bad("scheme " + scheme + " is not http or https");
  std::string_view rest = text.substr(colon + 3);
  const std::size_t path_at = rest.find_first_of("/?#");
  std::string_view authority = rest.substr(0, path_at);
  std::string_view path = path_at == std::string_view::npos ? std::string_view() : rest.substr(path_at);
  if (const std::size_t hash = path.find('#'); hash != std::string_view::npos) path = path.substr(0, hash);
  if (authority.find('@') != std::string_view::npos) throw bad("user info in the URL (give credentials as a header)");
  std::string_view port_text;
  if (!authority.empty() && authority.front() == '[') {
    const std::size_t close = authority.find(']');
    if (close == std::string_view::npos) throw bad("an IPv6 address without its ']'");
    url.host = std::string(authority.substr(1, close - 1));
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') throw bad("text after the IPv6 address");
      port_text = after.substr(1);
    }
  } else {
    const std::size_t c = authority.find(':');
    url.host = std::string(authority.substr(0, c));
    if (c != std::string_view::npos) port_text = authority.substr(c + 1);
  }
  if (url.host.empty()) throw bad("no host");
  for (char ch : url.host) {
    if (std::isspace(static_cast<unsigned char>(ch)) || std::iscntrl(static_cast<unsigned char>(ch))) {
      throw bad("a space or control character in the host");
    }
  }
  url.port = url.tls ? 443 : 80;
  if (!port_text.empty()) {
    unsigned value = 0;
    const auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), value);
    if (ec != std::errc() || end != port_text.data() + port_text.size() || value == 0 || value > 65535) {
      throw bad("port \"" + std::string(port_text) + "\" is not 1 to 65535");
    }
    url.port = static_cast<std::uint16_t>(value);
  }
  url.target = path.empty() ? "/" : (path.front() == '?' ? "/" + std::string(path) : std::string(path));
  for (char ch : url.target) {
    if (static_cast<unsigned char>(ch) <= 0x20 || ch == 0x7F) throw bad("a space or control character in the path");
  }
  return url;
}

/// Where a redirect's Location points, from the URL that answered.
http_url follow(const http_url& from, std::string_view location) {
  if (location.find("://") != std::string_view::npos) return parse_url(location);
  if (location.starts_with("//")) return parse_url(std::string(from.tls ? "https:" : "http:") + std::string(location));
  http_url to = from;
  if (location.starts_with("/")) {
    to.target = std::string(location);
  } else {
    const std::string path = from.target.substr(0, from.target.find('?'));
    to.target = path.substr(0, path.rfind('/') + 1) + std::string(location);
  }
  // Checked as a whole URL (spaces, control characters).
  return parse_url(to.origin() + to.target);
}

bool header_text_ok(std::string_view s) {
  return std::none_of(s.begin(), s.end(), [](char c) { return c == '\r' || c == '\n' || c == '\0'; });
}

std::string ms_text(duration d) {
  return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(d).count()) + " ms";
}

// --- one exchange ---------------------------------------------------------------

/// What a GET came back with (the body only for a 2xx, or a short error body).
struct response {
  unsigned status = 0;
  std::string reason{};
  std::string etag{}, last_modified{}, date{}, cache_control{}, age{}, location{}, content_encoding{};
  std::string body{};
};

/// An HTTP date (IMF-fixdate, RFC 7231 7.1.1.1: "Sun, 06 Nov 1994 08:49:37
/// GMT") as seconds since the epoch; nullopt for any other text.
std::optional<std::int64_t> http_date_seconds(const std::string& text) {
  std::tm t{};
  const char* end = ::strptime(text.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &t);
  if (end == nullptr || *end != '\0') return std::nullopt;
  return static_cast<std::int64_t>(::timegm(&t));
}

/// RFC 7232 2.2.2: a Last-Modified is a strong validator only when the
/// response's Date is at least one second after it. Otherwise the
/// representation may change again within that second and keep its
/// Last-Modified, and an If-Modified-Since would be answered 304 for it.
/// Without a Date (or with one that does not parse), the server is taken
/// at its word.
bool last_modified_is_strong(const response& r) {
  const std::optional<std::int64_t> modified = http_date_seconds(r.last_modified);
  const std::optional<std::int64_t> date = http_date_seconds(r.date);
  if (!modified || !date) return true;
  return *date - *modified >= 1;
}

/// What the fetcher sends beside the GET line.
struct request_headers {
  std::vector<std::pair<std::string, std::string>> fields;
};

/// Adds the headers an S3 request signs (called per request, redirects too).
using request_signer = std::function<void(const http_url&, request_headers&)>;

struct http_config {
  http_url url;
  std::string describe;   // "http https://host/path" / "s3 s3://bucket/key at ..."
  std::vector<std::pair<std::string, std::string>> headers;
  int max_redirects = 5;
  bool conditional = true;
  bool accept_gzip = true;
  std::optional<duration> cache_control_floor;
  duration io_timeout{};
  erps::tls_client_options tls;
  std::string user_agent;
  request_signer signer;
};

std::string s3_error_code(std::string_view body) {
  const std::size_t open = body.find("<Code>");
  if (open == std::string_view::npos) return {};
  const std::size_t from = open + 6;
  const std::size_t close = body.find("</Code>", from);
  if (close == std::string_view::npos || close - from > 64) return {};
  return std::string(body.substr(from, close - from));
}

class http_source final : public term_fetcher {
public:
  explicit http_source(http_config config) : config_(std::move(config)) {
    if (config_.url.tls) tls_context(); // a bad CA or certificate file is refused now, not at the first attempt
  }

  std::string describe() const override { return config_.describe; }

  awaitable<fetched> fetch(const std::string& known_version, const fetch_limits& limits) override {
    request_headers conditions;
    if (config_.conditional && !known_version.empty()) {
      // An ETag alone: If-Modified-Since beside it would let a store that
      // weighs both (S3 does; so does s3rver) answer 304 to an object
      // replaced within the second of the last one.
      if (known_version.starts_with("\"") || known_version.starts_with("W/\"")) {
        conditions.fields.emplace_back("If-None-Match", known_version);
      } else if (known_version.starts_with(last_modified_prefix)) {
        conditions.fields.emplace_back("If-Modified-Since", known_version.substr(last_modified_prefix.size()));
      }
    }
    http_url url = config_.url;
    for (int hops = 0;; ++hops) {
      response r = co_await exchange(url, conditions, limits);
      if (r.status == 301 || r.status == 302 || r.status == 303 || r.status == 307 || r.status == 308) {
        if (hops >= config_.max_redirects) {
          fail(remote_term_errc::fetch_failed, url, "status " + std::to_string(r.status) + ": more than max_redirects (" +
                                                        std::to_string(config_.max_redirects) + ") redirects");
        }
        if (r.location.empty()) fail(remote_term_errc::fetch_failed, url, "status " + std::to_string(r.status) + " without a Location");
        http_url next;
        try {
          next = follow(url, r.location);
        } catch (const grove::error& e) {
          fail(remote_term_errc::fetch_failed, url, "redirect to " + std::string(e.what()));
        }
        if (url.tls && !next.tls) fail(remote_term_errc::fetch_failed, url, "redirect from https to http refused: " + next.text());
        url = std::move(next);
        continue;
      }
      fetched out;
      out.refresh_after = refresh_after(r);
      if (r.status == 304) {
        if (conditions.fields.empty()) fail(remote_term_errc::fetch_failed, url, "status 304 to a request without a condition");
        out.modified = false;
        co_return out;
      }
      if (r.status < 200 || r.status >= 300) {
        std::string why = "status " + std::to_string(r.status) + (r.reason.empty() ? "" : " " + r.reason);
        if (const std::string code = s3_error_code(r.body); !code.empty()) why += " (" + code + ")";
        fail(remote_term_errc::fetch_failed, url, why);
      }
      if (!r.content_encoding.empty() && lower(r.content_encoding) != "identity" &&
          !(config_.accept_gzip && lower(r.content_encoding) == "gzip")) {
        fail(remote_term_errc::fetch_failed, url, "Content-Encoding " + r.content_encoding + " (expected none or gzip)");
      }
      if (!r.etag.empty()) {
        out.version = r.etag;
      } else if (!r.last_modified.empty() && last_modified_is_strong(r)) {
        out.version = std::string(last_modified_prefix) + r.last_modified;
      } else {
        // No validator, or a Last-Modified too close to the response to
        // trust: the next GET is unconditional, and the same bytes again
        // are not a change.
        out.version = "sha256:" + detail::sha256_hex(r.body);
      }
      if (out.version == known_version) {
        out.modified = false; // a server that ignores conditions: the same bytes again
        out.version.clear();
        co_return out;
      }
      out.bytes = std::move(r.body);
      co_return out;
    }
  }

private:
  static constexpr std::string_view last_modified_prefix = "last-modified ";

  [[noreturn]] void fail(remote_term_errc code, const http_url& url, const std::string& why) const {
    const std::string where = url.text() == config_.url.text() ? "" : " (at " + url.text() + ")";
    throw grove::error(code, config_.describe + where + ": " + why);
  }

  std::optional<duration> refresh_after(const response& r) const {
    if (!config_.cache_control_floor || r.cache_control.empty()) return std::nullopt;
    const auto fresh = detail::cache_max_age(r.cache_control, r.age);
    if (!fresh) return std::nullopt;
    return std::max<duration>(*fresh, *config_.cache_control_floor);
  }

  std::shared_ptr<erps::detail::tls_context> tls_context() {
    std::lock_guard lock(mutex_);
    if (!tls_) {
      erps::tls_client_options o = config_.tls;
      if (o.ca_file.empty()) o.ca_file = system_ca_bundle;
      try {
        tls_ = erps::detail::tls_context::client(o);
      } catch (const grove::error& e) {
        throw grove::error(errc::invalid_argument, config_.describe + ": " + e.what());
      }
    }
    return tls_;
  }

  awaitable<std::unique_ptr<erps::detail::transport>> connect(const http_url& url) {
    std::shared_ptr<erps::detail::tls_context> tls = url.tls ? tls_context() : nullptr;
    std::string name;
    if (url.tls && config_.tls.verify_server) name = config_.tls.server_name.empty() ? url.host : config_.tls.server_name;
    erps::detail::dialed d =
        co_await erps::detail::dial(url.host, url.port, tls.get(), std::move(name), config_.io_timeout, "io_timeout");
    if (!d.stream) fail(remote_term_errc::fetch_failed, url, d.error);
    co_return std::move(d.stream);
  }

  std::string request_text(const http_url& url, const request_headers& conditions) const {
    request_headers all;
    all.fields.emplace_back("Host", url.host_header());
    all.fields.emplace_back("User-Agent", config_.user_agent);
    all.fields.emplace_back("Accept", "*/*");
    if (config_.accept_gzip) all.fields.emplace_back("Accept-Encoding", "gzip");
    all.fields.emplace_back("Connection", "close");
    for (const auto& h : config_.headers) all.fields.push_back(h);
    for (const auto& h : conditions.fields) all.fields.push_back(h);
    if (config_.signer) config_.signer(url, all);
    std::string text = "GET " + url.target + " HTTP/1.1\r\n";
    for (const auto& [name, value] : all.fields) text += name + ": " + value + "\r\n";
    text += "\r\n";
    return text;
  }

  /// One GET on a new connection: the status and headers, and the body of
  /// a success (or the first bytes of an error's, for its code).
  awaitable<response> exchange(http_url url, request_headers conditions, fetch_limits limits) {
    std::unique_ptr<erps::detail::transport> stream = co_await connect(url);
    struct closer {
      erps::detail::transport* t;
      ~closer() { t->close(); }
    } close_at_end{stream.get()};
    co_await send(*stream, url, request_text(url, conditions));
    co_return co_await receive(*stream, url, limits);
  }

  awaitable<void> send(erps::detail::transport& stream, http_url url, std::string text) {
    grove::detail::deadline limit(co_await asio::this_coro::executor);
    limit.arm(config_.io_timeout, [&stream] { stream.close(); });
    auto written = co_await stream.write(asio::buffer(text));
    limit.disarm();
    if (!std::get<0>(written)) co_return;
    if (limit.expired()) timed_out(url, "sending the request");
    fail(remote_term_errc::fetch_failed, url, "sending the request: " + std::get<0>(written).message());
  }

  /// Reads the response: the header, then the body when it matters (a
  /// success's, within max_bytes; a short error's).
  awaitable<response> receive(erps::detail::transport& stream, http_url url, fetch_limits limits) {
    http::response_parser<http::string_body> parser;
    parser.body_limit(boost::none); // checked here, once the status says whether the body matters
    parser.header_limit(64 * 1024);
    boost::beast::flat_buffer buffer;
    std::optional<response> r;
    std::size_t body_cap = 0;
    for (;;) {
      parse_buffered(parser, buffer, url);
      if (!r && parser.is_header_done()) {
        r = header_of(parser.get());
        if (r->status >= 200 && r->status < 300) {
          body_cap = limits.max_bytes;
          if (const auto length = parser.content_length(); length && *length > limits.max_bytes) {
            throw grove::error(remote_term_errc::too_large,
                               config_.describe + ": Content-Length " + std::to_string(*length) +
                                   " bytes, over max_bytes (" + std::to_string(limits.max_bytes) + ")");
          }
        } else {
          // An error's body is read only when short: S3 names its error there.
          const auto length = parser.content_length();
          if (r->status < 400 || !length || *length > 4096) co_return std::move(*r);
          body_cap = 4096;
        }
        parser.eager(true);
        continue; // parse the rest of the buffer as body
      }
      if (r && parser.get().body().size() > body_cap) {
        if (r->status >= 400) co_return std::move(*r);
        throw grove::error(remote_term_errc::too_large, config_.describe + ": the body runs past max_bytes (" +
                                                            std::to_string(limits.max_bytes) + "); refused");
      }
      if (parser.is_done()) break;
      const bool more = co_await read_more(stream, buffer, url, r.has_value());
      if (!more) {
        boost::system::error_code ec;
        parser.put_eof(ec);
        if (ec || !parser.is_done()) {
          fail(remote_term_errc::fetch_failed, url,
               r ? "the connection closed before the body's end" : "the connection closed before a response");
        }
        break;
      }
    }
    if (!r) fail(remote_term_errc::fetch_failed, url, "the connection closed before a response");
    r->body = parser.release().body();
    co_return std::move(*r);
  }

  /// Feeds the parser what is buffered (it stops at the header's end
  /// until eager).
  void parse_buffered(http::response_parser<http::string_body>& parser, boost::beast::flat_buffer& buffer,
                      const http_url& url) const {
    while (buffer.size() > 0 && !parser.is_done()) {
      boost::system::error_code ec;
      const std::size_t used = parser.put(buffer.data(), ec);
      buffer.consume(used);
      if (ec == http::error::need_more) return;
      if (ec) fail(remote_term_errc::fetch_failed, url, "bad response: " + ec.message());
      if (used == 0) return;
    }
  }

  static response header_of(const http::response_parser<http::string_body>::value_type& h) {
    response r;
    r.status = h.result_int();
    r.reason = std::string(h.reason());
    r.etag = std::string(h[http::field::etag]);
    r.last_modified = std::string(h[http::field::last_modified]);
    r.date = std::string(h[http::field::date]);
    r.cache_control = std::string(h[http::field::cache_control]);
    r.age = std::string(h[http::field::age]);
    r.location = std::string(h[http::field::location]);
    r.content_encoding = std::string(h[http::field::content_encoding]);
    return r;
  }

  /// Reads what comes next into `buffer`, within io_timeout; false at the
  /// end of the stream.
  awaitable<bool> read_more(erps::detail::transport& stream, boost::beast::flat_buffer& buffer, http_url url,
                            bool header_seen) {
    grove::detail::deadline limit(co_await asio::this_coro::executor);
    const auto space = buffer.prepare(16 * 1024);
    limit.arm(config_.io_timeout, [&stream] { stream.close(); });
    auto got = co_await stream.read_some(space);
    limit.disarm();
    const boost::system::error_code read_error = std::get<0>(got);
    buffer.commit(std::get<1>(got));
    if (read_error == asio::error::eof) co_return false;
    if (read_error) {
      if (limit.expired()) timed_out(url, header_seen ? "reading the body" : "waiting for the response");
      fail(remote_term_errc::fetch_failed, url, "reading the response: " + read_error.message());
    }
    co_return true;
  }

  [[noreturn]] void timed_out(const http_url& url, const char* doing) const {
    fail(remote_term_errc::fetch_failed, url, std::string(doing) + " took over io_timeout (" + ms_text(config_.io_timeout) + ")");
  }

  http_config config_;
  std::mutex mutex_;
  std::shared_ptr<erps::detail::tls_context> tls_;
};

void check_common(const std::string& who, duration io_timeout) {
  if (io_timeout <= duration::zero()) {
    throw grove::error(errc::invalid_argument, who + ": io_timeout: not positive (expected a positive duration)");
  }
}

std::string env_or(const std::string& given, const char* variable) {
  if (!given.empty()) return given;
  const char* value = std::getenv(variable);
  return value != nullptr ? std::string(value) : std::string();
}

/// "20130524T000000Z" for now, UTC.
std::string amz_date_now() {
  const std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm utc{};
  gmtime_r(&now, &utc);
  char text[17];
  std::strftime(text, sizeof text, "%Y%m%dT%H%M%SZ", &utc);
  return text;
}

} // namespace

std::shared_ptr<term_fetcher> http_fetcher(http_fetcher_options o) {
  http_config c;
  try {
    c.url = parse_url(o.url);
  } catch (const grove::error& e) {
    throw grove::error(errc::invalid_argument, std::string("http_fetcher: url: ") + e.what());
  }
  c.describe = "http " + c.url.text();
  if (o.max_redirects < 0) throw grove::error(errc::invalid_argument, "http_fetcher: max_redirects: negative (expected 0 or more)");
  check_common("http_fetcher", o.io_timeout);
  if (o.cache_control_floor && *o.cache_control_floor <= duration::zero()) {
    throw grove::error(errc::invalid_argument,
                       "http_fetcher: cache_control_floor: not positive (expected a positive duration, or unset)");
  }
  for (const auto& [name, value] : o.headers) {
    if (name.empty() || !header_text_ok(name) || name.find(':') != std::string::npos || !header_text_ok(value)) {
      throw grove::error(errc::invalid_argument, "http_fetcher: headers: \"" + name +
                                                     "\" (expected a name without ':' and a value without CR, LF or NUL)");
    }
  }
  if (!header_text_ok(o.user_agent)) {
    throw grove::error(errc::invalid_argument, "http_fetcher: user_agent: a CR, LF or NUL (expected one line)");
  }
  c.headers = std::move(o.headers);
  c.max_redirects = o.max_redirects;
  c.conditional = o.conditional;
  c.accept_gzip = o.accept_gzip;
  c.cache_control_floor = o.cache_control_floor;
  c.io_timeout = o.io_timeout;
  c.tls = std::move(o.tls);
  c.user_agent = std::move(o.user_agent);
  return std::make_shared<http_source>(std::move(c));
}

std::shared_ptr<term_fetcher> s3_fetcher(s3_fetcher_options o) {
  const auto bad = [](const std::string& what) { return grove::error(errc::invalid_argument, "s3_fetcher: " + what); };
  if (o.bucket.empty()) throw bad("bucket: empty (expected the bucket's name)");
  if (!header_text_ok(o.bucket) || o.bucket.find('/') != std::string::npos) {
    throw bad("bucket: \"" + o.bucket + "\" (expected a bucket name, without '/')");
  }
  if (o.key.empty()) throw bad("key: empty (expected the object's key)");
  check_common("s3_fetcher", o.io_timeout);
  std::string region = env_or(o.region, "AWS_REGION");
  if (region.empty()) region = env_or({}, "AWS_DEFAULT_REGION");
  if (region.empty()) region = "us-east-1";
  detail::sigv4_key key{env_or(o.access_key_id, "AWS_ACCESS_KEY_ID"), env_or(o.secret_access_key, "AWS_SECRET_ACCESS_KEY")};
  if (key.access_key.empty()) throw bad("access_key_id: empty and $AWS_ACCESS_KEY_ID unset (expected the key id)");
  if (key.secret_key.empty()) throw bad("secret_access_key: empty and $AWS_SECRET_ACCESS_KEY unset (expected the secret)");
  const std::string token = env_or(o.session_token, "AWS_SESSION_TOKEN");
  if (!header_text_ok(token) || !header_text_ok(key.access_key)) throw bad("credentials: a CR, LF or NUL");

  const bool custom_endpoint = !o.endpoint.empty();
  const std::string endpoint = custom_endpoint ? o.endpoint : "https://s3." + region + ".amazonaws.com";
  const bool path_style = o.path_style.value_or(custom_endpoint);
  http_config c;
  try {
    c.url = parse_url(endpoint);
  } catch (const grove::error& e) {
    throw bad(std::string("endpoint: ") + e.what());
  }
  if (c.url.target != "/") throw bad("endpoint: \"" + endpoint + "\" has a path (expected scheme, host and port only)");
  const std::string path = "/" + (path_style ? o.bucket + "/" : "") + o.key;
  if (!path_style) c.url.host = o.bucket + "." + c.url.host;
  c.url.target = detail::uri_encode(path, true);
  c.describe = "s3 s3://" + o.bucket + "/" + o.key + (custom_endpoint ? " at " + c.url.origin() : "");
  c.max_redirects = 0; // S3 answers a wrong region with a 301 and no Location: an error, named
  c.conditional = true;
  c.accept_gzip = false; // S3 serves an object's bytes as stored
  c.io_timeout = o.io_timeout;
  c.tls = std::move(o.tls);
  c.user_agent = "grove-remote-term";
  c.signer = [key, region, token, path](const http_url& url, request_headers& h) {
    static constexpr const char* empty_sha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    const std::string date = amz_date_now();
    detail::sigv4_request signing;
    signing.path = path;
    signing.payload_sha256 = empty_sha256;
    signing.headers = {{"host", url.host_header()}, {"x-amz-content-sha256", empty_sha256}, {"x-amz-date", date}};
    if (!token.empty()) signing.headers.emplace_back("x-amz-security-token", token);
    for (std::size_t i = 1; i < signing.headers.size(); ++i) h.fields.push_back(signing.headers[i]);
    h.fields.emplace_back("Authorization", detail::sigv4_authorization(signing, key, region, "s3", date));
  };
  return std::make_shared<http_source>(std::move(c));
}

} // namespace grove
