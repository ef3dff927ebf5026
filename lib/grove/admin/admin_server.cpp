#include <grove/admin/admin_server.hpp>
#include <grove/admin/detail/dashboard.hpp>
#include <grove/admin/tree.hpp>

#include <grove/core/detail/deadline.hpp>
#include <grove/core/error.hpp>
#include <grove/core/gen_server.hpp>
#include <grove/erps/detail/transport.hpp>
#include <grove/telemetry/metrics.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include <atomic>
#include <charconv>
#include <chrono>
#include <map>
#include <mutex>
#include <set>

namespace grove::admin {

namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

using request_parser = http::request_parser<http::string_body>;
using erps::detail::transport;

struct reply {
  unsigned status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body{};
  std::string allow{};   // 405
  bool close = false;    // after this reply
  bool authenticate = false; // 401: WWW-Authenticate
};

const char* reason_of(unsigned status) {
  switch (status) {
  case 200: return "OK";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 413: return "Content Too Large";
  case 503: return "Service Unavailable";
  default: return "Error";
  }
}

std::string wire(const reply& r, bool head) {
  std::string out = "HTTP/1.1 " + std::to_string(r.status) + " " + reason_of(r.status) + "\r\n";
  out += "Content-Type: " + r.content_type + "\r\n";
  out += "Content-Length: " + std::to_string(r.body.size()) + "\r\n";
  out += "Cache-Control: no-store\r\n";
  if (!r.allow.empty()) out += "Allow: " + r.allow + "\r\n";
  if (r.authenticate) out += "WWW-Authenticate: Bearer realm=\"grove admin\"\r\n";
  out += r.close ? "Connection: close\r\n\r\n" : "Connection: keep-alive\r\n\r\n";
  if (!head) out += r.body;
  return out;
}

enum class read_outcome { request, closed, timed_out, too_large, malformed };

/// The value of query parameter `name` in `target` (no percent-decoding:
/// the dashboard passes the token as it was given).
std::string_view query_value(std::string_view target, std::string_view name) {
  const std::size_t q = target.find('?');
  if (q == std::string_view::npos) return {};
  std::string_view rest = target.substr(q + 1);
  while (!rest.empty()) {
    const std::size_t amp = rest.find('&');
    const std::string_view pair = rest.substr(0, amp);
    if (pair.size() > name.size() && pair.substr(0, name.size()) == name && pair[name.size()] == '=') {
      return pair.substr(name.size() + 1);
    }
    if (amp == std::string_view::npos) break;
    rest = rest.substr(amp + 1);
  }
  return {};
}

/// Each family's series summed (histograms by _count and _sum), from the
/// exposition text: what the dashboard turns into rates.
nlohmann::json metric_totals(const std::string& text) {
  std::map<std::string, double, std::less<>> sums;
  std::size_t at = 0;
  while (at < text.size()) {
    std::size_t end = text.find('\n', at);
    if (end == std::string::npos) end = text.size();
    const std::string_view line(text.data() + at, end - at);
    at = end + 1;
    if (line.empty() || line.front() == '#') continue;
    const std::size_t name_end = line.find_first_of("{ ");
    const std::size_t value_at = line.rfind(' ');
    if (name_end == std::string_view::npos || value_at == std::string_view::npos) continue;
    const std::string_view name = line.substr(0, name_end);
    if (name.ends_with("_bucket")) continue;
    double value = 0;
    const std::string_view number = line.substr(value_at + 1);
    if (std::from_chars(number.data(), number.data() + number.size(), value).ec != std::errc()) continue;
    sums[std::string(name)] += value;
  }
  nlohmann::json out = nlohmann::json::object();
  for (const auto& [name, value] : sums) out[name] = value;
  return out;
}

std::int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

} // namespace

struct admin_server::state {
  explicit state(admin_options o) : options(std::move(o)) {}
  admin_options options;
  std::atomic<std::uint16_t> port{0};
  std::atomic<std::uint64_t> served{0};
  std::atomic<std::size_t> open{0};
  std::shared_ptr<erps::detail::tls_context> tls; // when options.tls
  std::mutex mutex;
  std::set<pid> connections;
  node* owner = nullptr; // set by start()

  static std::string_view path_of(const request_parser::value_type& req) {
    std::string_view target = req.target();
    return target.substr(0, target.find('?'));
  }

  awaitable<reply> route(const request_parser::value_type& req) const {
    const std::string_view target = path_of(req);
    const bool known = target == "/" || target == "/metrics" || target == "/healthz" || target == "/readyz" ||
                       target == "/tree" || target == "/events";
    if (!known) co_return reply{.status = 404, .body = "no such path: " + std::string(target) + "\n"};
    if (req.method() != http::verb::get && req.method() != http::verb::head) {
      co_return reply{.status = 405, .body = "only GET and HEAD\n", .allow = "GET, HEAD"};
    }
    if (target == "/") {
      co_return reply{.content_type = "text/html; charset=utf-8", .body = std::string(detail::dashboard_html())};
    }
    if (target == "/tree") {
      nlohmann::json tree = co_await process_tree(*owner, options.tree_max_children);
      co_return reply{.content_type = "application/json", .body = tree.dump() + "\n"};
    }
    co_return plain_route(target);
  }

  reply plain_route(std::string_view target) const {
    if (target == "/healthz") return reply{.body = "ok\n"};
    if (target == "/readyz") {
      readiness r;
      for (const erps::daemon& d : options.daemons) {
        if (!d || !alive(d.id()) || d.port() == 0) {
          r = readiness{false, "the erps daemon on " + d.address() + ":" + std::to_string(d.port()) + " is not listening"};
          break;
        }
      }
      for (const pid& s : options.supervisors) {
        if (r.ready && !alive(s)) r = readiness{false, "the supervisor " + s.to_string() + " is down"};
      }
      if (r.ready && options.ready) {
        try {
          r = options.ready();
        } catch (const std::exception& e) {
          r = readiness{false, std::string("the readiness check failed: ") + e.what()};
        }
      }
      if (r.ready) return reply{.body = "ready\n"};
      return reply{.status = 503, .body = (r.reason.empty() ? "not ready" : r.reason) + "\n"};
    }
    if (!options.metrics) return reply{.status = 404, .body = "no metrics registry on this endpoint\n"};
    return reply{.content_type = std::string(telemetry::prometheus_content_type), .body = options.metrics->prometheus_text()};
  }

  /// Reads one request into `parser`: waits idle_timeout for its first
  /// byte (none buffered yet), then request_timeout for the rest.
  awaitable<read_outcome> read_request(transport& stream, boost::beast::flat_buffer& buffer, request_parser& parser) {
    grove::detail::deadline limit(stream.executor());
    bool started = buffer.size() > 0;
    const auto close = [&stream] { stream.close(); };
    limit.arm(started ? options.request_timeout : options.idle_timeout, close);
    for (;;) {
      while (buffer.size() > 0 && !parser.is_done()) {
        boost::system::error_code ec;
        const std::size_t used = parser.put(buffer.data(), ec);
        buffer.consume(used);
        if (ec == http::error::need_more) break;
        if (ec == http::error::header_limit || ec == http::error::body_limit) co_return read_outcome::too_large;
        if (ec) co_return read_outcome::malformed;
        if (used == 0) break;
      }
      if (parser.is_done()) co_return read_outcome::request;
      if (buffer.size() >= options.max_request_bytes * 2 + 4096) co_return read_outcome::too_large; // (a parser stuck on one token)
      auto got = co_await stream.read_some(buffer.prepare(4096));
      buffer.commit(std::get<1>(got));
      if (std::get<0>(got)) co_return limit.expired() ? read_outcome::timed_out : read_outcome::closed;
      if (!started && std::get<1>(got) > 0) {
        started = true;
        limit.arm(options.request_timeout, close);
      }
    }
  }

  awaitable<bool> send(transport& stream, const std::string& bytes) {
    grove::detail::deadline limit(stream.executor());
    limit.arm(options.request_timeout, [&stream] { stream.close(); });
    auto written = co_await stream.write(asio::buffer(bytes));
    co_return !std::get<0>(written);
  }

  /// The connection's stream: TLS after its handshake (within the TLS
  /// options' handshake_timeout), or plain TCP; null if the handshake failed.
  awaitable<std::unique_ptr<transport>> open_stream(tcp::socket socket) {
    if (!tls) co_return erps::detail::make_tcp_transport(std::move(socket));
    std::unique_ptr<transport> stream = tls->wrap(std::move(socket), std::string());
    grove::detail::deadline limit(stream->executor());
    transport* raw = stream.get();
    limit.arm(tls->handshake_timeout(), [raw] { raw->close(); });
    const boost::system::error_code failed = co_await stream->handshake();
    if (failed) co_return nullptr;
    co_return stream;
  }

  /// Whether the request carries the bearer token (when one is set),
  /// compared in constant time.
  bool authorized(const request_parser::value_type& req) const {
    if (options.bearer_token.empty()) return true;
    const std::string_view header = req[http::field::authorization];
    if (header.starts_with("Bearer ") && same_secret(header.substr(7), options.bearer_token)) return true;
    const std::string_view query = query_value(req.target(), "access_token");
    return !query.empty() && same_secret(query, options.bearer_token);
  }

  /// Compared in constant time (for a given length).
  static bool same_secret(std::string_view given, std::string_view expected) {
    if (given.size() != expected.size()) return false;
    unsigned char differ = 0;
    for (std::size_t i = 0; i < given.size(); ++i) differ |= static_cast<unsigned char>(given[i] ^ expected[i]);
    return differ == 0;
  }

  /// One server-sent event "snapshot" (see /events).
  awaitable<std::string> snapshot_event() const {
    nlohmann::json tree = co_await process_tree(*owner, options.tree_max_children);
    nlohmann::json data = nlohmann::json::object();
    data["tree"] = std::move(tree);
    data["at"] = unix_ms();
    data["metrics"] = options.metrics ? metric_totals(options.metrics->prometheus_text()) : nlohmann::json::object();
    co_return "event: snapshot\ndata: " + data.dump() + "\n\n";
  }

  /// /events: the stream's headers, then a snapshot now and every
  /// dashboard_interval, until the client goes away (a write fails or
  /// stalls past request_timeout) or the server stops.
  awaitable<void> stream_events(transport& io, bool head) {
    const std::string headers =
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n";
    const bool started = co_await send(io, headers);
    if (!started || head) co_return;
    asio::steady_timer timer(io.executor());
    for (;;) {
      const std::string event = co_await snapshot_event();
      const bool sent = co_await send(io, event);
      if (!sent) co_return;
      timer.expires_after(options.dashboard_interval);
      auto waited = co_await timer.async_wait(use_tuple);
      if (std::get<0>(waited)) co_return;
    }
  }

  /// One connection: requests in turn until either side closes.
  awaitable<void> serve(tcp::socket socket, bool over_limit) {
    std::unique_ptr<transport> stream = co_await open_stream(std::move(socket));
    if (!stream) co_return; // a failed TLS handshake: nothing to answer over
    transport& io = *stream;
    if (over_limit) {
      // (Named: g++ 12 frees a braced temporary inside a co_await twice.)
      const std::string busy = wire(reply{.status = 503, .body = "too many admin connections\n", .close = true}, false);
      (void)co_await send(io, busy);
      co_return;
    }
    boost::beast::flat_buffer buffer;
    for (;;) {
      request_parser parser;
      parser.header_limit(static_cast<std::uint32_t>(options.max_request_bytes));
      parser.body_limit(options.max_request_bytes);
      const read_outcome got = co_await read_request(io, buffer, parser);
      if (got == read_outcome::closed || got == read_outcome::timed_out) co_return;
      reply r;
      bool head = false;
      if (got == read_outcome::too_large) {
        r = reply{.status = 413, .body = "request over max_request_bytes (" + std::to_string(options.max_request_bytes) + ")\n", .close = true};
      } else if (got == read_outcome::malformed) {
        r = reply{.status = 400, .body = "not an HTTP/1.1 request\n", .close = true};
      } else if (!authorized(parser.get())) {
        r = reply{.status = 401, .body = "a bearer token is required\n", .authenticate = true};
      } else if (path_of(parser.get()) == "/events" &&
                 (parser.get().method() == http::verb::get || parser.get().method() == http::verb::head)) {
        served.fetch_add(1, std::memory_order_relaxed);
        co_await stream_events(io, parser.get().method() == http::verb::head);
        co_return;
      } else {
        r = co_await route(parser.get());
        head = parser.get().method() == http::verb::head;
        r.close = r.close || !parser.get().keep_alive();
      }
      served.fetch_add(1, std::memory_order_relaxed);
      const std::string bytes = wire(r, head);
      const bool sent = co_await send(io, bytes);
      if (!sent || r.close) co_return;
    }
  }
};

admin_server::admin_server(admin_options o) {
  const auto bad = [](const std::string& what) { return grove::error(errc::invalid_argument, "admin_options." + what); };
  boost::system::error_code not_address;
  asio::ip::make_address(o.address, not_address);
  if (not_address) throw bad("address: \"" + o.address + "\" (expected an IPv4 or IPv6 address, e.g. 127.0.0.1)");
  if (o.max_request_bytes < 256) throw bad("max_request_bytes: " + std::to_string(o.max_request_bytes) + " (expected at least 256)");
  if (o.request_timeout <= duration::zero()) throw bad("request_timeout: not positive (expected a positive duration)");
  if (o.idle_timeout <= duration::zero()) throw bad("idle_timeout: not positive (expected a positive duration)");
  if (o.max_connections == 0) throw bad("max_connections: 0 (expected at least 1)");
  if (o.tree_max_children == 0) throw bad("tree_max_children: 0 (expected at least 1)");
  if (o.dashboard_interval < std::chrono::milliseconds(50)) {
    throw bad("dashboard_interval: under 50 ms (expected a duration of at least 50 ms)");
  }
  state_ = std::make_shared<state>(std::move(o));
}

admin_server::~admin_server() {
  if (!acceptor_) return;
  grove::exit(acceptor_, exit_reason::kill());
  std::lock_guard lock(state_->mutex);
  for (const pid& p : state_->connections) grove::exit(p, exit_reason::kill());
}

std::uint16_t admin_server::port() const noexcept { return state_->port.load(); }
std::uint64_t admin_server::requests_served() const noexcept { return state_->served.load(); }

awaitable<void> admin_server::start(node& n) {
  if (acceptor_ && alive(acceptor_)) throw grove::error(errc::invalid_argument, "admin_server: started already");
  const admin_options& o = state_->options;
  if (o.tls) {
    try {
      state_->tls = erps::detail::tls_context::server(*o.tls); // the files are read now: a bad one fails start()
    } catch (const grove::error& e) {
      throw grove::error(errc::invalid_argument, std::string("admin_server: ") + e.what());
    }
  }
  const std::size_t worker = o.worker.value_or(0);
  tcp::acceptor acceptor(n.context(worker));
  const tcp::endpoint where(asio::ip::make_address(o.address), o.port);
  boost::system::error_code error;
  acceptor.open(where.protocol(), error);
  if (!error) acceptor.set_option(tcp::acceptor::reuse_address(true), error);
  if (!error) acceptor.bind(where, error);
  if (!error) acceptor.listen(asio::socket_base::max_listen_connections, error);
  if (error) {
    throw grove::error(errc::invalid_argument, "admin_server: cannot listen on " + o.address + ":" +
                                                   std::to_string(o.port) + ": " + error.message());
  }
  state_->port = acceptor.local_endpoint().port();
  state_->owner = &n;
  std::shared_ptr<state> st = state_;
  acceptor_ = grove::spawn(
      n,
      [st, &n, acceptor = std::move(acceptor)](process& self) mutable -> awaitable<void> {
        self.set_label("admin listener " + st->options.address + ":" + std::to_string(st->port.load()) +
                       (st->tls ? " (HTTPS)" : " (HTTP)"));
        for (;;) {
          tcp::socket socket(acceptor.get_executor());
          auto accepted = co_await acceptor.async_accept(socket, use_tuple);
          if (std::get<0>(accepted)) {
            if (std::get<0>(accepted) == asio::error::operation_aborted) co_return;
            continue; // (a connection reset before accept, or out of descriptors: the next accept says)
          }
          const bool over = st->open.fetch_add(1) >= st->options.max_connections;
          // (Same worker: the connection runs only once this coroutine
          // waits again, so it is in the set before it can leave it.)
          const pid conn = grove::spawn(
              n,
              [st, over, s = std::move(socket)](process& me) mutable -> awaitable<void> {
                boost::system::error_code no_peer;
                const tcp::endpoint peer = s.remote_endpoint(no_peer);
                if (!no_peer) me.set_label("admin connection " + peer.address().to_string() + ":" + std::to_string(peer.port()));
                struct leave {
                  std::shared_ptr<state> st;
                  pid me;
                  ~leave() {
                    st->open.fetch_sub(1);
                    std::lock_guard lock(st->mutex);
                    st->connections.erase(me);
                  }
                } at_end{st, me.self()};
                co_await st->serve(std::move(s), over);
              },
              spawn_options{.worker = self.self().worker()});
          std::lock_guard lock(st->mutex);
          st->connections.insert(conn);
        }
      },
      spawn_options{.worker = worker});
  co_return;
}

awaitable<void> admin_server::stop() {
  if (!acceptor_) co_return;
  const pid acceptor = acceptor_;
  acceptor_ = pid{};
  (void)co_await grove::detail::await_exit(acceptor, infinity, exit_reason::kill());
  std::set<pid> open;
  {
    std::lock_guard lock(state_->mutex);
    open = state_->connections;
  }
  for (const pid& p : open) (void)co_await grove::detail::await_exit(p, infinity, exit_reason::kill());
}

} // namespace grove::admin
