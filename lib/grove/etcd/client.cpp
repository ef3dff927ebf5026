#include <grove/etcd/client.hpp>

#include <grove/core/detail/deadline.hpp>
#include <grove/erps/detail/transport.hpp>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <nlohmann/json.hpp>

#include <poll.h>

#include <algorithm>
#include <charconv>
#include <functional>
#include <mutex>

namespace grove::etcd {

const std::error_category& etcd_category() noexcept {
  static constexpr const char* messages[] = {
      // in the order of errc
      "no etcd endpoint could be reached",
      "the etcd request took too long",
      "the write's connection broke after it was sent: it may have been applied",
      "the revision was compacted",
      "the lease does not exist",
      "etcd refused the request",
      "the etcd endpoint's answer could not be read",
  };
  return grove::detail::table_category_of<errc::bad_response>("grove.etcd", messages);
}

namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;
using json = nlohmann::json;
using transport = erps::detail::transport;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

// --- endpoints, encoding ----------------------------------------------------

struct endpoint {
  bool tls = false;
  std::string host{}; // without brackets
  std::uint16_t port = 0;
  std::string text{}; // as given
};

endpoint parse_endpoint(const std::string& text, std::size_t index) {
  const auto bad = [&](const std::string& why) {
    return grove::error(grove::errc::invalid_argument, "client_options.endpoints[" + std::to_string(index) + "] \"" + text +
                                                           "\": " + why + " (expected http://host:port or https://host:port)");
  };
  endpoint e;
  e.text = text;
  std::string_view rest = text;
  if (rest.starts_with("https://")) {
    e.tls = true;
    rest.remove_prefix(8);
  } else if (rest.starts_with("http://")) {
    rest.remove_prefix(7);
  } else {
    throw bad("no http:// or https:// scheme");
  }
  if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  if (rest.find('/') != std::string_view::npos) throw bad("a path (the gateway's paths are fixed)");
  std::string_view port_text;
  if (rest.starts_with("[")) {
    const std::size_t close = rest.find(']');
    if (close == std::string_view::npos) throw bad("an IPv6 address without its ']'");
    e.host = std::string(rest.substr(1, close - 1));
    rest.remove_prefix(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') throw bad("text after the IPv6 address");
      port_text = rest.substr(1);
    }
  } else {
    const std::size_t colon = rest.find(':');
    e.host = std::string(rest.substr(0, colon));
    if (colon != std::string_view::npos) port_text = rest.substr(colon + 1);
  }
  if (e.host.empty()) throw bad("no host");
  if (port_text.empty()) throw bad("no port");
  unsigned value = 0;
  const auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), value);
  if (ec != std::errc() || end != port_text.data() + port_text.size() || value == 0 || value > 65535) {
    throw bad("port \"" + std::string(port_text) + "\" is not 1 to 65535");
  }
  e.port = static_cast<std::uint16_t>(value);
  return e;
}

constexpr char b64_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string base64(std::string_view in) {
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 3 <= in.size(); i += 3) {
    const auto n = (std::uint32_t(std::uint8_t(in[i])) << 16) | (std::uint32_t(std::uint8_t(in[i + 1])) << 8) |
                   std::uint8_t(in[i + 2]);
    out += b64_alphabet[n >> 18];
    out += b64_alphabet[(n >> 12) & 63];
    out += b64_alphabet[(n >> 6) & 63];
    out += b64_alphabet[n & 63];
  }
  if (const std::size_t left = in.size() - i; left > 0) {
    std::uint32_t n = std::uint32_t(std::uint8_t(in[i])) << 16;
    if (left == 2) n |= std::uint32_t(std::uint8_t(in[i + 1])) << 8;
    out += b64_alphabet[n >> 18];
    out += b64_alphabet[(n >> 12) & 63];
    out += left == 2 ? b64_alphabet[(n >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::string unbase64(std::string_view in) {
  const auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  if (in.size() % 4 != 0) throw grove::error(errc::bad_response, "base64 text of a length not a multiple of 4");
  std::string out;
  out.reserve(in.size() / 4 * 3);
  for (std::size_t i = 0; i < in.size(); i += 4) {
    int v[4];
    int pad = 0;
    for (int k = 0; k < 4; ++k) {
      const char c = in[i + k];
      if (c == '=' && i + 4 == in.size() && k >= 2) {
        v[k] = 0;
        ++pad;
        continue;
      }
      v[k] = pad ? -1 : value(c);
      if (v[k] < 0) throw grove::error(errc::bad_response, "a character that is not base64");
    }
    const std::uint32_t n = (std::uint32_t(v[0]) << 18) | (std::uint32_t(v[1]) << 12) | (std::uint32_t(v[2]) << 6) | v[3];
    out += char(n >> 16);
    if (pad < 2) out += char((n >> 8) & 255);
    if (pad < 1) out += char(n & 255);
  }
  return out;
}

/// The gateway writes int64 fields as strings, omits zeros, and accepts
/// either form.
std::int64_t int_field(const json& j, const char* name) {
  const auto it = j.find(name);
  if (it == j.end() || it->is_null()) return 0;
  if (it->is_number_integer()) return it->get<std::int64_t>();
  if (it->is_string()) {
    const std::string& s = it->get_ref<const std::string&>();
    std::int64_t v = 0;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec == std::errc() && end == s.data() + s.size()) return v;
  }
  throw grove::error(errc::bad_response, std::string("field \"") + name + "\" is not an integer");
}

std::string bytes_field(const json& j, const char* name) {
  const auto it = j.find(name);
  if (it == j.end() || it->is_null()) return {};
  if (!it->is_string()) throw grove::error(errc::bad_response, std::string("field \"") + name + "\" is not base64 text");
  return unbase64(it->get_ref<const std::string&>());
}

bool bool_field(const json& j, const char* name) {
  const auto it = j.find(name);
  return it != j.end() && it->is_boolean() && it->get<bool>();
}

const json& array_field(const json& j, const char* name) {
  static const json empty = json::array();
  const auto it = j.find(name);
  if (it == j.end() || it->is_null()) return empty;
  if (!it->is_array()) throw grove::error(errc::bad_response, std::string("field \"") + name + "\" is not a list");
  return *it;
}

std::int64_t header_revision(const json& j) {
  const auto it = j.find("header");
  return it == j.end() || !it->is_object() ? 0 : int_field(*it, "revision");
}

key_value kv_of(const json& j) {
  if (!j.is_object()) throw grove::error(errc::bad_response, "a key-value that is not an object");
  key_value kv;
  kv.key = bytes_field(j, "key");
  kv.value = bytes_field(j, "value");
  kv.create_revision = int_field(j, "create_revision");
  kv.mod_revision = int_field(j, "mod_revision");
  kv.version = int_field(j, "version");
  kv.lease = int_field(j, "lease");
  return kv;
}

/// The end of the range of every key that starts with `key` (etcd's
/// prefix rule: the key with its last byte below 0xff incremented, the
/// bytes after it dropped; "\0" for all keys).
std::string prefix_end(std::string key) {
  while (!key.empty()) {
    if (static_cast<unsigned char>(key.back()) < 0xff) {
      key.back() = static_cast<char>(static_cast<unsigned char>(key.back()) + 1);
      return key;
    }
    key.pop_back();
  }
  return std::string(1, '\0');
}

void set_range(json& body, const std::string& key, bool prefix, std::string_view range_end) {
  // The key "" with prefix is every key: key "\0", range_end "\0".
  body["key"] = base64(key.empty() && prefix ? std::string(1, '\0') : key);
  if (prefix) {
    body["range_end"] = base64(prefix_end(key));
  } else if (!range_end.empty()) {
    body["range_end"] = base64(range_end);
  }
}

get_result get_result_of(const json& j) {
  get_result r;
  r.revision = header_revision(j);
  for (const json& kv : array_field(j, "kvs")) r.kvs.push_back(kv_of(kv));
  r.count = int_field(j, "count");
  r.more = bool_field(j, "more");
  return r;
}

put_result put_result_of(const json& j) {
  put_result r;
  r.revision = header_revision(j);
  if (const auto it = j.find("prev_kv"); it != j.end() && it->is_object()) r.prev = kv_of(*it);
  return r;
}

erase_result erase_result_of(const json& j) {
  erase_result r;
  r.revision = header_revision(j);
  r.deleted = int_field(j, "deleted");
  for (const json& kv : array_field(j, "prev_kvs")) r.prev_kvs.push_back(kv_of(kv));
  return r;
}

std::string ms_text(duration d) {
  return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(d).count()) + " ms";
}

} // namespace

// --- connections ---------------------------------------------------------------

struct client::shared {
  client_options options;
  std::vector<endpoint> endpoints;
  std::shared_ptr<erps::detail::tls_context> tls;

  struct idle {
    std::unique_ptr<transport> stream;
    int fd = -1;
    const void* context = nullptr; // the io_context its socket is on
    std::size_t endpoint = 0;
  };
  mutable std::mutex mutex;
  std::size_t preferred = 0;      // under mutex
  std::vector<idle> pool;         // under mutex
};

namespace {

using shared_state = client::shared;

/// One open connection to one endpoint.
struct connection {
  std::unique_ptr<transport> stream;
  int fd = -1;
  std::size_t endpoint = 0;
  bool reused = false;
};

const void* context_of(const asio::any_io_executor& ex) { return &asio::query(ex, asio::execution::context); }

/// Every client's shared state, so that an io_context that goes away can
/// take its pooled connections with it.
std::mutex all_clients_mutex;
std::vector<std::weak_ptr<shared_state>>& all_clients() {
  static auto* all = new std::vector<std::weak_ptr<shared_state>>; // (never destroyed: io_contexts may outlive statics)
  return *all;
}

/// Lives in each io_context that holds pooled connections; when the
/// context shuts down (its node stops), closes them while their reactor
/// still exists (services shut down newest first, so before the socket
/// service this one was made after).
class pool_service final : public asio::execution_context::service {
public:
  using key_type = pool_service;
  static inline asio::execution_context::id id;
  explicit pool_service(asio::execution_context& context) : service(context) {}

private:
  void shutdown() override {
    std::vector<std::shared_ptr<shared_state>> clients;
    {
      std::lock_guard lock(all_clients_mutex);
      auto& all = all_clients();
      std::erase_if(all, [](const std::weak_ptr<shared_state>& w) { return w.expired(); });
      for (const auto& w : all) {
        if (auto c = w.lock()) clients.push_back(std::move(c));
      }
    }
    const void* mine = &context();
    for (const auto& c : clients) {
      std::vector<std::unique_ptr<transport>> closing;
      {
        std::lock_guard lock(c->mutex);
        for (auto it = c->pool.begin(); it != c->pool.end();) {
          if (it->context == mine) {
            closing.push_back(std::move(it->stream));
            it = c->pool.erase(it);
          } else {
            ++it;
          }
        }
      }
      for (auto& t : closing) t->close();
    }
  }
};

/// True when the server closed (or wrote to) an idle connection: it cannot
/// carry a request.
bool went_stale(int fd) {
  pollfd p{fd, POLLIN | POLLRDHUP, 0};
  return ::poll(&p, 1, 0) != 0;
}

std::optional<connection> take_idle(shared_state& s, std::size_t endpoint, const void* context) {
  std::lock_guard lock(s.mutex);
  for (std::size_t i = s.pool.size(); i-- > 0;) {
    auto& c = s.pool[i];
    if (c.endpoint != endpoint || c.context != context) continue;
    shared_state::idle found = std::move(c);
    s.pool.erase(s.pool.begin() + static_cast<std::ptrdiff_t>(i));
    if (went_stale(found.fd)) {
      found.stream->close();
      continue;
    }
    return connection{std::move(found.stream), found.fd, endpoint, true};
  }
  return std::nullopt;
}

void give_back(shared_state& s, connection c, const asio::any_io_executor& executor) {
  const void* context = context_of(executor);
  // Its context closes what it pooled when it goes (made once per context).
  asio::use_service<pool_service>(asio::query(executor, asio::execution::context));
  std::lock_guard lock(s.mutex);
  const auto same = std::count_if(s.pool.begin(), s.pool.end(), [&](const shared_state::idle& i) {
    return i.endpoint == c.endpoint && i.context == context;
  });
  if (static_cast<std::size_t>(same) >= s.options.max_idle_connections) {
    c.stream->close();
    return;
  }
  s.pool.push_back({std::move(c.stream), c.fd, context, c.endpoint});
}

/// Why one attempt at one endpoint failed, and whether the request may
/// have reached etcd.
struct failure {
  std::string reason;
  bool sent = false;
  bool timed_out = false;
};

/// Connects to endpoint `index`, each step within `within`.
awaitable<connection> open_connection(shared_state& s, std::size_t index, duration within) {
  const endpoint& e = s.endpoints[index];
  std::string name;
  if (e.tls && s.options.tls.verify_server) name = s.options.tls.server_name.empty() ? e.host : s.options.tls.server_name;
  erps::detail::dialed d =
      co_await erps::detail::dial(e.host, e.port, e.tls ? s.tls.get() : nullptr, std::move(name), within, "request_timeout");
  if (!d.stream) throw failure{std::move(d.error), false, d.timed_out};
  co_return connection{std::move(d.stream), d.fd, index, false};
}

std::string request_text(const endpoint& e, std::string_view path, const std::string& body) {
  const bool v6 = e.host.find(':') != std::string::npos;
  std::string text = "POST ";
  text += path;
  text += " HTTP/1.1\r\nHost: ";
  text += v6 ? "[" + e.host + "]" : e.host;
  text += ":" + std::to_string(e.port);
  text += "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n";
  text += body;
  return text;
}

/// Raises the error a non-200 answer carries: the gateway's JSON
/// {"error", "code", "message"} (gRPC codes).
[[noreturn]] void raise_status(const endpoint& e, unsigned status, const std::string& body) {
  std::string message;
  std::int64_t code = -1;
  try {
    const json j = json::parse(body);
    if (j.is_object()) {
      if (auto it = j.find("message"); it != j.end() && it->is_string()) message = it->get<std::string>();
      if (auto it = j.find("code"); it != j.end() && it->is_number_integer()) code = it->get<std::int64_t>();
    }
  } catch (const json::exception&) {
  }
  if (message.empty()) message = body.substr(0, 200);
  const std::string where = e.text + ": ";
  if (message.find("lease not found") != std::string::npos) throw grove::error(errc::lease_not_found, where + message);
  if (message.find("compacted") != std::string::npos) throw grove::error(errc::compacted, where + message);
  throw grove::error(errc::rejected,
                     where + "status " + std::to_string(status) + (code >= 0 ? ", gRPC code " + std::to_string(code) : "") +
                         ": " + message);
}

/// gRPC's Unavailable: the member cannot serve now (no leader, stopping);
/// another may.
bool unavailable_status(const std::string& body) {
  try {
    const json j = json::parse(body);
    return j.is_object() && j.value("code", -1) == 14;
  } catch (const json::exception&) {
    return false;
  }
}

/// One request at one endpoint: the answer's JSON, or a failure (thrown)
/// that lets the caller try the next endpoint; etcd's own refusals are
/// thrown as grove::error.
awaitable<json> exchange(shared_state& s, std::size_t index, std::string_view path, const std::string& body) {
  const endpoint& e = s.endpoints[index];
  const auto executor = co_await asio::this_coro::executor;
  const void* context = context_of(executor);
  grove::detail::deadline limit(executor);
  const auto started = std::chrono::steady_clock::now();
  std::optional<connection> c = take_idle(s, index, context);
  if (!c) c = co_await open_connection(s, index, s.options.request_timeout);
  const duration left = s.options.request_timeout - (std::chrono::steady_clock::now() - started);
  transport* raw = c->stream.get();
  limit.arm(std::max<duration>(left, duration::zero()), [raw] { raw->close(); });
  struct closer { // unless the connection goes back to the pool
    std::optional<connection>& c;
    ~closer() {
      if (c && c->stream) c->stream->close();
    }
  } close_at_end{c};

  const std::string text = request_text(e, path, body);
  auto written = co_await c->stream->write(asio::buffer(text));
  if (std::get<0>(written)) {
    // Nothing of an answer came: on a reused connection the server may
    // have closed it as we wrote; either way the request may have arrived.
    throw failure{limit.expired() ? "sending took over request_timeout" : "sending: " + std::get<0>(written).message(),
                  true, limit.expired()};
  }
  http::response_parser<http::string_body> parser;
  parser.body_limit(s.options.max_response_bytes);
  parser.header_limit(64 * 1024);
  parser.eager(true);
  boost::beast::flat_buffer buffer;
  while (!parser.is_done()) {
    auto space = buffer.prepare(16 * 1024);
    // (std::get, not a structured binding of a co_await: clang 14 miscompiles that.)
    const auto read = co_await c->stream->read_some(space);
    const boost::system::error_code error = std::get<0>(read);
    const std::size_t n = std::get<1>(read);
    if (error || n == 0) {
      if (limit.expired()) throw failure{"no answer within request_timeout (" + ms_text(s.options.request_timeout) + ")", true, true};
      throw failure{"the connection closed before the answer's end" + (error ? ": " + error.message() : std::string()), true,
                    false};
    }
    buffer.commit(n);
    boost::system::error_code ec;
    while (buffer.size() > 0 && !parser.is_done()) {
      const std::size_t used = parser.put(buffer.data(), ec);
      buffer.consume(used);
      if (ec == http::error::need_more) {
        ec = {};
        break;
      }
      if (ec) {
        limit.disarm();
        throw grove::error(errc::bad_response, e.text + ": " + ec.message());
      }
      if (used == 0) break;
    }
  }
  limit.disarm();
  const unsigned status = parser.get().result_int();
  std::string answer = std::move(parser.get().body());
  const bool keep = parser.keep_alive() && buffer.size() == 0;
  if (status != 200) {
    if (status == 503 || unavailable_status(answer)) {
      // Unavailable: refused before it was applied (no leader, stopping),
      // except a request that timed out inside etcd, which may have been.
      const bool maybe_applied = answer.find("request timed out") != std::string::npos;
      throw failure{"unavailable (status " + std::to_string(status) + "): " + answer.substr(0, 200), maybe_applied, false};
    }
    if (keep) give_back(s, std::move(*c), executor);
    raise_status(e, status, answer);
  }
  json reply;
  try {
    // A stream's answer (keep-alive) is one line per message: the first.
    const std::size_t nl = answer.find('\n');
    reply = json::parse(nl == std::string::npos ? answer : answer.substr(0, nl));
  } catch (const json::exception& x) {
    throw grove::error(errc::bad_response, e.text + ": the answer is not JSON: " + x.what());
  }
  if (!reply.is_object()) throw grove::error(errc::bad_response, e.text + ": the answer is not a JSON object");
  if (keep) give_back(s, std::move(*c), executor);
  co_return reply;
}

/// A request over the endpoints, from the preferred one: the next one
/// while none answered, as far as the request allows (see client.hpp).
awaitable<json> request(std::shared_ptr<shared_state> s, std::string_view path, json body, bool read_only) {
  const std::string text = body.dump();
  std::size_t first;
  {
    std::lock_guard lock(s->mutex);
    first = s->preferred;
  }
  std::string reasons;
  bool any_timeout = false;
  const std::size_t n = s->endpoints.size();
  for (std::size_t k = 0; k < n; ++k) {
    const std::size_t index = (first + k) % n;
    std::optional<failure> failed;
    try {
      json reply = co_await exchange(*s, index, path, text);
      std::lock_guard lock(s->mutex);
      s->preferred = index;
      co_return reply;
    } catch (failure& f) {
      failed = std::move(f);
    }
    const std::string where = s->endpoints[index].text;
    if (failed->sent && !read_only) {
      if (failed->timed_out) {
        throw grove::error(errc::timeout, where + ": " + failed->reason + "; the write may or may not have been applied");
      }
      throw grove::error(errc::outcome_unknown, where + ": " + failed->reason);
    }
    any_timeout = any_timeout || failed->timed_out;
    if (!reasons.empty()) reasons += "; ";
    reasons += where + ": " + failed->reason;
  }
  if (any_timeout && n == 1) throw grove::error(errc::timeout, reasons);
  throw grove::error(errc::unavailable, reasons);
}

json op_request(const txn_op& op) {
  json body = json::object();
  switch (op.what) {
  case txn_op::kind::get:
    set_range(body, op.key, op.prefix, {});
    return json{{"request_range", std::move(body)}};
  case txn_op::kind::put:
    body["key"] = base64(op.key);
    body["value"] = base64(op.value);
    if (op.lease != 0) body["lease"] = std::to_string(op.lease);
    return json{{"request_put", std::move(body)}};
  case txn_op::kind::erase:
    set_range(body, op.key, op.prefix, {});
    return json{{"request_delete_range", std::move(body)}};
  }
  return body;
}

json compare_request(const compare& c) {
  json j = json::object();
  j["key"] = base64(c.key);
  static constexpr const char* results[] = {"EQUAL", "NOT_EQUAL", "GREATER", "LESS"};
  j["result"] = results[static_cast<int>(c.is)];
  switch (c.what) {
  case compare::target::version:
    j["target"] = "VERSION";
    j["version"] = std::to_string(c.number);
    break;
  case compare::target::create_revision:
    j["target"] = "CREATE";
    j["create_revision"] = std::to_string(c.number);
    break;
  case compare::target::mod_revision:
    j["target"] = "MOD";
    j["mod_revision"] = std::to_string(c.number);
    break;
  case compare::target::value:
    j["target"] = "VALUE";
    j["value"] = base64(c.value);
    break;
  case compare::target::lease:
    j["target"] = "LEASE";
    j["lease"] = std::to_string(c.number);
    break;
  }
  return j;
}

} // namespace

// --- client ----------------------------------------------------------------------

client::client(client_options options) : shared_(std::make_shared<shared>()) {
  if (options.endpoints.empty()) {
    throw grove::error(grove::errc::invalid_argument,
                       "client_options.endpoints: empty (expected one or more http://host:port or https://host:port)");
  }
  bool any_tls = false;
  for (std::size_t i = 0; i < options.endpoints.size(); ++i) {
    shared_->endpoints.push_back(parse_endpoint(options.endpoints[i], i));
    any_tls = any_tls || shared_->endpoints.back().tls;
  }
  if (options.request_timeout <= duration::zero()) {
    throw grove::error(grove::errc::invalid_argument, "client_options.request_timeout: not positive (expected a duration > 0)");
  }
  if (options.max_response_bytes < 1024) {
    throw grove::error(grove::errc::invalid_argument, "client_options.max_response_bytes: " +
                                                          std::to_string(options.max_response_bytes) +
                                                          " (expected at least 1024)");
  }
  if (any_tls) {
    if (options.tls.ca_file.empty() && options.tls.verify_server) {
      throw grove::error(grove::errc::invalid_argument,
                         "client_options.tls.ca_file: empty, with an https endpoint (expected the PEM CA file that signs "
                         "etcd's certificate)");
    }
    try {
      shared_->tls = erps::detail::tls_context::client(options.tls);
    } catch (const std::exception& e) {
      throw grove::error(grove::errc::invalid_argument, std::string("client_options.tls: ") + e.what());
    }
  }
  shared_->options = std::move(options);
  std::lock_guard lock(all_clients_mutex);
  auto& all = all_clients();
  std::erase_if(all, [](const std::weak_ptr<shared>& w) { return w.expired(); });
  all.push_back(shared_);
}

std::string client::current_endpoint() const {
  std::lock_guard lock(shared_->mutex);
  return shared_->endpoints[shared_->preferred].text;
}

// Each request is a plain function that builds its JSON and returns the
// awaitable of a coroutine taking only that: g++ 12 mishandles a braced
// temporary (`{.prefix = true}`) passed by value to a coroutine, which is
// how these options are meant to be written.

namespace {

template <class R, class Convert>
awaitable<R> call_as(std::shared_ptr<shared_state> s, const char* path, json body, bool read_only, Convert convert) {
  co_return convert(co_await request(std::move(s), path, std::move(body), read_only));
}

txn_result txn_result_of(const json& reply, const std::vector<txn_op::kind>& then, const std::vector<txn_op::kind>& otherwise) {
  txn_result r;
  r.succeeded = bool_field(reply, "succeeded");
  r.revision = header_revision(reply);
  const std::vector<txn_op::kind>& ran = r.succeeded ? then : otherwise;
  const json& responses = array_field(reply, "responses");
  if (responses.size() != ran.size()) {
    throw grove::error(errc::bad_response, "a transaction answered " + std::to_string(responses.size()) +
                                               " operations of " + std::to_string(ran.size()));
  }
  for (std::size_t i = 0; i < ran.size(); ++i) {
    const json& one = responses[i];
    switch (ran[i]) {
    case txn_op::kind::get:
      r.responses.emplace_back(get_result_of(one.value("response_range", json::object())));
      break;
    case txn_op::kind::put:
      r.responses.emplace_back(put_result_of(one.value("response_put", json::object())));
      break;
    case txn_op::kind::erase:
      r.responses.emplace_back(erase_result_of(one.value("response_delete_range", json::object())));
      break;
    }
  }
  return r;
}

} // namespace

awaitable<get_result> client::get(std::string key, get_options options) const {
  json body = json::object();
  set_range(body, key, options.prefix, options.range_end);
  if (options.limit != 0) body["limit"] = std::to_string(options.limit);
  if (options.revision != 0) body["revision"] = std::to_string(options.revision);
  if (options.keys_only) body["keys_only"] = true;
  if (options.count_only) body["count_only"] = true;
  if (options.serializable) body["serializable"] = true;
  return call_as<get_result>(shared_, "/v3/kv/range", std::move(body), true, get_result_of);
}

awaitable<put_result> client::put(std::string key, std::string value, put_options options) const {
  json body = json::object();
  body["key"] = base64(key);
  body["value"] = base64(value);
  if (options.lease != 0) body["lease"] = std::to_string(options.lease);
  if (options.prev_kv) body["prev_kv"] = true;
  return call_as<put_result>(shared_, "/v3/kv/put", std::move(body), false, put_result_of);
}

awaitable<erase_result> client::erase(std::string key, erase_options options) const {
  json body = json::object();
  set_range(body, key, options.prefix, options.range_end);
  if (options.prev_kv) body["prev_kv"] = true;
  return call_as<erase_result>(shared_, "/v3/kv/deleterange", std::move(body), false, erase_result_of);
}

awaitable<txn_result> client::txn(txn_request t) const {
  json body = json::object();
  body["compare"] = json::array();
  for (const compare& c : t.when) body["compare"].push_back(compare_request(c));
  body["success"] = json::array();
  for (const txn_op& op : t.then) body["success"].push_back(op_request(op));
  body["failure"] = json::array();
  for (const txn_op& op : t.otherwise) body["failure"].push_back(op_request(op));
  std::vector<txn_op::kind> then, otherwise;
  for (const txn_op& op : t.then) then.push_back(op.what);
  for (const txn_op& op : t.otherwise) otherwise.push_back(op.what);
  const auto reads = [](const std::vector<txn_op::kind>& ops) {
    return std::all_of(ops.begin(), ops.end(), [](txn_op::kind k) { return k == txn_op::kind::get; });
  };
  const bool read_only = reads(then) && reads(otherwise);
  return call_as<txn_result>(shared_, "/v3/kv/txn", std::move(body), read_only,
                             [then = std::move(then), otherwise = std::move(otherwise)](const json& reply) {
                               return txn_result_of(reply, then, otherwise);
                             });
}

awaitable<void> client::compact(std::int64_t revision) const {
  json body = json::object();
  body["revision"] = std::to_string(revision);
  body["physical"] = true;
  return call_as<void>(shared_, "/v3/kv/compaction", std::move(body), false, [](const json&) {});
}

awaitable<lease> client::grant_lease(std::int64_t ttl_seconds, std::int64_t id) const {
  if (ttl_seconds <= 0) {
    throw grove::error(grove::errc::invalid_argument, "grant_lease: ttl_seconds " + std::to_string(ttl_seconds) +
                                                          " (expected at least 1)");
  }
  json body = json::object();
  body["TTL"] = std::to_string(ttl_seconds);
  if (id != 0) body["ID"] = std::to_string(id);
  return call_as<lease>(shared_, "/v3/lease/grant", std::move(body), false, [](const json& reply) {
    if (auto it = reply.find("error"); it != reply.end() && it->is_string() && !it->get<std::string>().empty()) {
      throw grove::error(errc::rejected, "grant_lease: " + it->get<std::string>());
    }
    lease l{int_field(reply, "ID"), int_field(reply, "TTL")};
    if (l.id == 0) throw grove::error(errc::bad_response, "grant_lease: an answer without a lease ID");
    return l;
  });
}

awaitable<std::int64_t> client::keep_alive_once(std::int64_t id) const {
  json body = json::object();
  body["ID"] = std::to_string(id);
  return call_as<std::int64_t>(shared_, "/v3/lease/keepalive", std::move(body), true, [id](const json& reply) {
    const std::int64_t ttl = int_field(reply.value("result", json::object()), "TTL");
    if (ttl <= 0) throw grove::error(errc::lease_not_found, "keep_alive_once: lease " + std::to_string(id) + " is gone");
    return ttl;
  });
}

awaitable<void> client::revoke_lease(std::int64_t id) const {
  json body = json::object();
  body["ID"] = std::to_string(id);
  return call_as<void>(shared_, "/v3/lease/revoke", std::move(body), false, [](const json&) {});
}

// --- watches -------------------------------------------------------------------

struct watch::state {
  std::shared_ptr<client::shared> shared;
  std::string key;
  watch_options options;
  std::string range_end;        // options.range_end's copy (the view then points here)
  std::int64_t last = 0;        // the last revision delivered (or started after)
  std::optional<connection> stream;
  std::optional<http::response_parser<http::string_body>> parser;
  boost::beast::flat_buffer buffer;
  std::string lines;            // the stream's bytes not yet taken as messages
  std::size_t lines_from = 0;   // the endpoint they came from
  bool streaming = false;       // the stream's answer was 200: `lines` are watch messages
  bool created = false;         // etcd confirmed this stream's watch
  std::size_t next_endpoint = 0;
  backoff_policy backoff;       // this watch's own: back to its first delay once a stream is made
  backoff_random random;
  /// The parser's chunk callback (it keeps a reference): appends to lines.
  std::function<std::size_t(std::uint64_t, boost::beast::string_view, boost::system::error_code&)> on_chunk =
      [this](std::uint64_t, boost::beast::string_view data, boost::system::error_code&) {
        lines.append(data.data(), data.size());
        return data.size();
      };

  /// The revision the next (re)connection starts at.
  std::int64_t start_revision() const {
    if (last > 0) return last + 1;
    return options.start_revision;
  }

  /// Closes the stream. With keep_whole, the whole messages read stay to
  /// be delivered (a stream the server ended); a partial one never can be.
  void drop(bool keep_whole = false) {
    if (stream && stream->stream) stream->stream->close();
    stream.reset();
    parser.reset();
    buffer.clear();
    if (keep_whole && streaming) {
      lines.erase(lines.rfind('\n') == std::string::npos ? 0 : lines.rfind('\n') + 1);
    } else {
      lines.clear();
      streaming = false;
    }
    created = false;
  }

  /// Reads the stream, (re)connecting as needed, until events come (or,
  /// with until_created, until etcd confirms the watch; then none).
  awaitable<std::vector<event>> run(duration timeout, bool until_created);
};

watch::watch(std::unique_ptr<state> s) : state_(std::move(s)) {}
watch::watch(watch&&) noexcept = default;
watch& watch::operator=(watch&&) noexcept = default;
watch::~watch() {
  if (state_) state_->drop();
}

std::int64_t watch::revision() const noexcept { return state_ ? state_->last : 0; }

namespace {
awaitable<etcd::watch> started(std::unique_ptr<watch::state> s, duration within) {
  co_await s->run(within, true);
  co_return etcd::watch(std::move(s));
}
} // namespace

awaitable<etcd::watch> client::watch(std::string key, watch_options options) const {
  auto s = std::make_unique<watch::state>();
  s->shared = shared_;
  s->key = std::move(key);
  s->options = options;
  s->backoff = shared_->options.reconnect;
  s->range_end = std::string(options.range_end);
  s->options.range_end = s->range_end;
  {
    std::lock_guard lock(shared_->mutex);
    s->next_endpoint = shared_->preferred;
  }
  const duration within = shared_->options.request_timeout * static_cast<std::int64_t>(shared_->endpoints.size());
  return started(std::move(s), within);
}

namespace {

/// One message of a watch stream. Returns the events to deliver (maybe
/// none); throws for a cancelled watch.
std::vector<event> watch_message(watch::state& w, const endpoint& e, std::string_view line);

} // namespace

awaitable<std::vector<event>> watch::next(duration timeout) {
  if (!state_) throw grove::error(grove::errc::invalid_argument, "watch::next on a moved-from watch");
  return state_->run(timeout, false);
}

awaitable<std::vector<event>> watch::state::run(duration timeout, bool until_created) {
  state& w = *this;
  shared_state& s = *w.shared;
  const auto executor = co_await asio::this_coro::executor;
  const bool bounded = timeout != infinity && timeout < std::chrono::hours(24 * 365);
  const auto until = bounded ? std::chrono::steady_clock::now() + timeout : std::chrono::steady_clock::time_point::max();
  const auto left = [&]() -> duration {
    return bounded ? std::max<duration>(until - std::chrono::steady_clock::now(), duration::zero()) : infinity;
  };
  std::string reasons;    // why endpoints were not reached, this round over them
  std::string last_round; // the same, the round before
  const auto timed_out = [&] {
    const std::string& why = reasons.empty() ? last_round : reasons;
    return grove::error(errc::timeout, "watch on \"" + w.key + "\": " +
                                           (until_created ? "not created within " : "no events within ") + ms_text(timeout) +
                                           (why.empty() ? std::string() : " (not connected: " + why + ")"));
  };
  std::size_t tried = 0; // endpoints tried since the last backoff
  for (;;) {
    // Whole messages already read come first.
    for (std::size_t nl; w.streaming && (nl = w.lines.find('\n')) != std::string::npos;) {
      const std::string line = w.lines.substr(0, nl);
      w.lines.erase(0, nl + 1);
      if (line.empty()) continue;
      std::vector<event> events;
      try {
        events = watch_message(w, s.endpoints[w.lines_from], line);
      } catch (...) {
        w.drop();
        throw;
      }
      if (!events.empty()) co_return events;
      if (until_created && w.created) co_return events;
    }
    if (until_created && w.created) co_return std::vector<event>{};
    if (!w.stream) w.drop(); // every whole message delivered: nothing left of the last stream
    if (bounded && std::chrono::steady_clock::now() >= until) {
      w.drop(); // the next call resumes after the last revision delivered
      throw timed_out();
    }
    if (!w.stream) {
      // (Re)connect: the endpoints in turn, from the one last used; after a
      // whole round without one, the reconnect backoff.
      const std::size_t n = s.endpoints.size();
      if (tried == n && until_created) throw grove::error(errc::unavailable, "watch on \"" + w.key + "\": " + reasons);
      if (tried == n) {
        const duration pause = w.backoff.next(w.random);
        last_round = std::move(reasons);
        reasons.clear();
        if (bounded && pause >= left()) {
          asio::steady_timer rest(executor, left());
          co_await rest.async_wait(use_tuple);
          throw timed_out();
        }
        asio::steady_timer timer(executor, pause);
        co_await timer.async_wait(use_tuple);
        tried = 0;
      }
      const std::size_t index = w.next_endpoint % n;
      ++tried;
      grove::detail::deadline limit(executor);
      const duration within = std::min<duration>(s.options.request_timeout, bounded ? left() : infinity);
      try {
        connection c = co_await open_connection(s, index, within);
        json body = json::object();
        set_range(body, w.key, w.options.prefix, w.options.range_end);
        if (const std::int64_t start = w.start_revision(); start > 0) body["start_revision"] = std::to_string(start);
        if (w.options.prev_kv) body["prev_kv"] = true;
        const std::string text = request_text(s.endpoints[index], "/v3/watch", json{{"create_request", body}}.dump());
        transport* raw = c.stream.get();
        limit.arm(within, [raw] { raw->close(); });
        auto written = co_await c.stream->write(asio::buffer(text));
        limit.disarm();
        if (std::get<0>(written)) throw failure{"sending the watch: " + std::get<0>(written).message(), true, limit.expired()};
        w.stream = std::move(c);
        w.lines_from = index;
        w.parser.emplace();
        w.parser->body_limit(boost::none); // a stream: each message is bounded below
        w.parser->header_limit(64 * 1024);
        w.parser->on_chunk_body(w.on_chunk);
      } catch (failure& f) {
        if (!reasons.empty()) reasons += "; ";
        reasons += s.endpoints[index].text + ": " + f.reason;
        w.next_endpoint = index + 1;
      }
      continue;
    }
    // Read more of the stream, within what is left of the timeout.
    const std::size_t index = w.stream->endpoint;
    const endpoint& e = s.endpoints[index];
    grove::detail::deadline limit(executor);
    transport* raw = w.stream->stream.get();
    if (bounded) limit.arm(left(), [raw] { raw->close(); });
    auto space = w.buffer.prepare(16 * 1024);
    const auto read = co_await raw->read_some(space); // (std::get: see exchange)
    const boost::system::error_code error = std::get<0>(read);
    const std::size_t got = std::get<1>(read);
    limit.disarm();
    if (error || got == 0) {
      const bool expired = limit.expired();
      w.drop(true);
      if (expired) throw timed_out();
      // The stream broke (etcd restarted, the member went away): resume,
      // this endpoint first, then the others.
      w.next_endpoint = index;
      tried = 0;
      continue;
    }
    w.buffer.commit(got);
    boost::system::error_code ec;
    while (w.buffer.size() > 0 && !w.parser->is_done()) {
      const std::size_t used = w.parser->put(w.buffer.data(), ec);
      w.buffer.consume(used);
      if (ec == http::error::need_more) {
        ec = {};
        break;
      }
      if (ec || used == 0) break;
    }
    if (ec) {
      w.drop();
      throw grove::error(errc::bad_response, e.text + ": watch stream: " + ec.message());
    }
    if (!w.parser->is_header_done()) continue;
    const unsigned status = w.parser->get().result_int();
    if (status == 200) {
      w.streaming = true;
      if (w.lines.size() > s.options.max_response_bytes) {
        w.drop();
        throw grove::error(errc::bad_response, e.text + ": a watch message over max_response_bytes");
      }
      if (w.parser->is_done()) {
        // The server ended the stream: what it sent whole is delivered,
        // then the watch resumes after it.
        w.drop(true);
        w.next_endpoint = index;
        tried = 0;
      }
      continue;
    }
    // Refused: the whole (short) answer first.
    if (!w.parser->is_done() && w.lines.size() + w.parser->get().body().size() < 4096) continue;
    const std::string body = w.lines + w.parser->get().body();
    w.drop();
    if (status == 503 || unavailable_status(body)) {
      if (!reasons.empty()) reasons += "; ";
      reasons += e.text + ": unavailable: " + body.substr(0, 200);
      w.next_endpoint = index + 1;
      continue;
    }
    raise_status(e, status, body);
  }
}

namespace {

std::vector<event> watch_message(watch::state& w, const endpoint& e, std::string_view line) {
  json message;
  try {
    message = json::parse(line);
  } catch (const json::exception& x) {
    throw grove::error(errc::bad_response, e.text + ": a watch message that is not JSON: " + x.what());
  }
  if (auto err = message.find("error"); err != message.end()) {
    const json& body = err->is_object() ? *err : message;
    throw grove::error(errc::rejected, e.text + ": watch: " + body.value("message", err->dump()));
  }
  const json result = message.value("result", json::object());
  if (bool_field(result, "canceled")) {
    if (const std::int64_t compacted = int_field(result, "compact_revision"); compacted > 0) {
      throw grove::error(errc::compacted, e.text + ": watch on \"" + w.key + "\" from revision " +
                                              std::to_string(w.start_revision()) + ": compacted up to revision " +
                                              std::to_string(compacted));
    }
    throw grove::error(errc::rejected, e.text + ": etcd cancelled the watch on \"" + w.key + "\"" +
                                           (result.contains("cancel_reason")
                                                ? ": " + result.value("cancel_reason", std::string())
                                                : std::string()));
  }
  if (bool_field(result, "created")) {
    w.created = true;
    w.backoff.reset(); // reconnected: the next break starts from the first delay again
    // Without a start revision, the watch sees what comes after this one.
    if (w.last == 0 && w.options.start_revision == 0) w.last = header_revision(result);
  }
  std::vector<event> out;
  for (const json& ev : array_field(result, "events")) {
    event x;
    x.type = ev.value("type", std::string("PUT")) == "DELETE" ? event_type::erase : event_type::put;
    x.kv = kv_of(ev.value("kv", json::object()));
    if (auto prev = ev.find("prev_kv"); prev != ev.end() && prev->is_object()) x.prev = kv_of(*prev);
    // A resumed watch starts after the last revision delivered: anything
    // at or before it was delivered already.
    if (x.kv.mod_revision <= w.last) continue;
    out.push_back(std::move(x));
  }
  if (!out.empty()) w.last = std::max(w.last, out.back().kv.mod_revision);
  return out;
}

} // namespace

} // namespace grove::etcd
