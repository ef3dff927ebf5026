#include <grove/admin/admin_server.hpp>
#include <grove/admin/tree.hpp>
#include <grove/erps/server.hpp>
#include <grove/supervisor/supervisor.hpp>

#include <grove/core/error.hpp>
#include <grove/core/node.hpp>
#include <grove/core/testing.hpp>
#include <grove/telemetry/metrics.hpp>

#include "../child_process.hpp"
#include "../temp_dir.hpp"

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include <sys/socket.h>
#include <sys/time.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <condition_variable>
#include <mutex>
#include <fstream>
#include <string>

using namespace std::chrono_literals;

namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

struct response {
  int status = 0; ///< 0: the server closed the connection first
  std::string headers;
  std::string body;
  std::string header(std::string name) const {
    std::string lower_headers = headers;
    std::transform(lower_headers.begin(), lower_headers.end(), lower_headers.begin(), [](unsigned char c) { return std::tolower(c); });
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
    const auto at = lower_headers.find("\r\n" + name + ": ");
    if (at == std::string::npos) return {};
    const auto from = at + 4 + name.size();
    return headers.substr(from, headers.find("\r\n", from) - from);
  }
};

/// A blocking HTTP client on its own socket, from the test's thread; every
/// read gives up after 10 s (SO_RCVTIMEO), so no test waits for ever.
class raw_client {
public:
  explicit raw_client(std::uint16_t port) {
    socket_.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
    timeval limit{10, 0};
    ::setsockopt(socket_.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
  }
  void send(const std::string& bytes) { asio::write(socket_, asio::buffer(bytes)); }

  /// The next response (its body unless `head`); status 0 if the server
  /// closed the connection instead.
  response read(bool head = false) {
    response r;
    std::size_t end;
    while ((end = buffer_.find("\r\n\r\n")) == std::string::npos) {
      if (!fill()) return r;
    }
    r.headers = buffer_.substr(0, end + 2);
    buffer_.erase(0, end + 4);
    r.status = std::stoi(r.headers.substr(9, 3));
    const std::size_t length = head ? 0 : std::stoul(r.header("Content-Length"));
    while (buffer_.size() < length) {
      if (!fill()) return response{};
    }
    r.body = buffer_.substr(0, length);
    buffer_.erase(0, length);
    return r;
  }
  response get(const std::string& path) {
    send("GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    return read();
  }
  /// Everything up to and including `delimiter` (empty if the server
  /// closed the connection first).
  std::string read_through(const std::string& delimiter) {
    std::size_t end;
    while ((end = buffer_.find(delimiter)) == std::string::npos) {
      if (!fill()) return {};
    }
    std::string out = buffer_.substr(0, end + delimiter.size());
    buffer_.erase(0, end + delimiter.size());
    return out;
  }
  /// Whether the server closed the connection (reads until it does).
  bool closed_by_server() {
    while (fill()) {
    }
    return eof_;
  }

private:
  bool fill() {
    char chunk[4096];
    boost::system::error_code ec;
    const std::size_t n = socket_.read_some(asio::buffer(chunk), ec);
    if (ec == asio::error::eof || ec == asio::error::connection_reset) eof_ = true;
    if (ec) return false;
    buffer_.append(chunk, n);
    return true;
  }
  asio::io_context io_;
  tcp::socket socket_{io_};
  std::string buffer_;
  bool eof_ = false;
};

struct fixture {
  explicit fixture(grove::admin::admin_options o) : admin(std::move(o)) { n.block_on(admin.start(n)); }
  ~fixture() { n.block_on(admin.stop()); }
  grove::node n{{.threads = 2, .events = nullptr}};
  grove::admin::admin_server admin;
};

} // namespace

TEST_CASE("healthz, readyz and metrics answer; HEAD has no body; one connection serves several requests") {
  grove::telemetry::metric_registry metrics;
  metrics.make_counter("test_requests_total", "Requests.").with({}).inc(7);
  fixture f({.metrics = &metrics});
  REQUIRE(f.admin.port() != 0);
  raw_client c(f.admin.port());
  const response health = c.get("/healthz");
  CHECK(health.status == 200);
  CHECK(health.body == "ok\n");
  const response ready = c.get("/readyz");
  CHECK(ready.status == 200);
  CHECK(ready.body == "ready\n");
  const response scraped = c.get("/metrics?debug=1");
  CHECK(scraped.status == 200);
  CHECK(scraped.header("Content-Type") == "text/plain; version=0.0.4; charset=utf-8");
  CHECK(scraped.body.find("test_requests_total 7\n") != std::string::npos);
  c.send("HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  const response head = c.read(true);
  CHECK(head.status == 200);
  CHECK(std::stoul(head.header("Content-Length")) == scraped.body.size());
  CHECK(c.get("/healthz").status == 200); // still the same connection: nothing was left unread
  CHECK(f.admin.requests_served() == 5);

  // What /metrics serves is valid Prometheus text.
  test_support::temp_dir dir("grove-admin");
  std::ofstream(dir.file("metrics.txt")) << scraped.body;
  CHECK(test_support::child_process::run({"sh", "-c", "promtool check metrics < '" + dir.file("metrics.txt") + "'"}) == 0);
}

TEST_CASE("readyz answers 503 with the reason the check gives; healthz stays 200") {
  bool ready = false;
  fixture f({.ready = [&] { return grove::admin::readiness{ready, "listener tcp is not up"}; }});
  raw_client c(f.admin.port());
  const response not_yet = c.get("/readyz");
  CHECK(not_yet.status == 503);
  CHECK(not_yet.body == "listener tcp is not up\n");
  CHECK(c.get("/healthz").status == 200);
  ready = true;
  CHECK(c.get("/readyz").status == 200);
  CHECK(c.get("/metrics").status == 404); // no registry given
}

namespace {
class plain_server : public grove::erps::server {};
} // namespace

TEST_CASE("readyz is 503 naming a watched daemon that stopped listening or a watched supervisor that is down") {
  grove::node n{{.threads = 2, .events = nullptr}};
  grove::erps::daemon_options serve;
  serve.link.log = nullptr;
  const grove::erps::daemon d = n.block_on(grove::erps::daemon::start<plain_server>(n, serve));
  const grove::supervisor sup = n.block_on(grove::supervisor::start(n, {}, {.report = nullptr}));
  grove::admin::admin_server admin({.daemons = {d}, .supervisors = {sup.id()}});
  n.block_on(admin.start(n));
  raw_client c(admin.port());
  CHECK(c.get("/readyz").status == 200);
  n.block_on(d.shutdown(5s));
  const response no_daemon = c.get("/readyz");
  CHECK(no_daemon.status == 503);
  CHECK(no_daemon.body == "the erps daemon on 127.0.0.1:" + std::to_string(d.port()) + " is not listening\n");
  grove::admin::admin_server second({.supervisors = {sup.id()}});
  n.block_on(second.start(n));
  raw_client c2(second.port());
  CHECK(c2.get("/readyz").status == 200);
  (void)n.block_on(sup.stop());
  const response no_supervisor = c2.get("/readyz");
  CHECK(no_supervisor.status == 503);
  CHECK(no_supervisor.body == "the supervisor " + sup.id().to_string() + " is down\n");
  CHECK(c2.get("/healthz").status == 200);
  n.block_on(second.stop());
  n.block_on(admin.stop());
}

TEST_CASE("bad requests get their status and lose only their own connection") {
  fixture f({.max_request_bytes = 1024, .request_timeout = 300ms});
  const std::uint16_t port = f.admin.port();

  raw_client lost(port);
  const response nowhere = lost.get("/nowhere");
  CHECK(nowhere.status == 404);
  lost.send("POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}");
  const response post = lost.read();
  CHECK(post.status == 405);
  CHECK(post.header("Allow") == "GET, HEAD");
  CHECK(lost.get("/healthz").status == 200); // 404 and 405 keep the connection

  raw_client big(port);
  big.send("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: " + std::string(4000, 'a') + "\r\n\r\n");
  const response too_large = big.read();
  CHECK(too_large.status == 413);
  CHECK(too_large.header("Connection") == "close");
  CHECK(big.closed_by_server());

  raw_client garbage(port);
  garbage.send("HELLO THERE\x01\r\n\r\n");
  CHECK(garbage.read().status == 400);
  CHECK(garbage.closed_by_server());

  raw_client slow(port);
  slow.send("GET /healthz HTTP/1.1\r\nHo"); // and nothing more
  CHECK(slow.closed_by_server());           // after request_timeout

  raw_client after(port); // the server goes on
  CHECK(after.get("/healthz").status == 200);
}

TEST_CASE("connections over max_connections get 503 and are closed") {
  fixture f({.max_connections = 1});
  raw_client first(f.admin.port());
  CHECK(first.get("/healthz").status == 200); // accepted and open
  raw_client second(f.admin.port());
  const response busy = second.read();
  CHECK(busy.status == 503);
  CHECK(busy.body == "too many admin connections\n");
  CHECK(second.closed_by_server());
  CHECK(first.get("/healthz").status == 200);
}

TEST_CASE("start refuses an address it cannot listen on, naming it; bad options name the option") {
  fixture f({});
  grove::admin::admin_server clash({.port = f.admin.port()});
  grove::node n{{.threads = 1, .events = nullptr}};
  const auto started = n.block_on(grove::testing::capture(clash.start(n)));
  REQUIRE_FALSE(started);
  CHECK(started.what().find("admin_server: cannot listen on 127.0.0.1:" + std::to_string(f.admin.port())) !=
        std::string::npos);
  CHECK_THROWS_WITH_AS(grove::admin::admin_server({.address = "localhost"}),
                       doctest::Contains("admin_options.address: \"localhost\" (expected an IPv4 or IPv6 address"),
                       grove::error);
  CHECK_THROWS_WITH_AS(grove::admin::admin_server({.max_connections = 0}),
                       doctest::Contains("admin_options.max_connections: 0"), grove::error);
}

TEST_CASE("a real Prometheus server scrapes /metrics and answers queries with grove's values") {
  grove::telemetry::metric_registry metrics;
  const grove::telemetry::counter calls = metrics.make_counter("test_calls_total", "Calls.", {"kind"}).with({"call"});
  for (int i = 0; i < 42; ++i) calls.inc();
  // Each scrape asks this collector: the test waits for scrapes as events.
  std::mutex mutex;
  std::condition_variable scraped;
  int scrapes = 0;
  metrics.add_collector("test_scrapes", "Scrapes seen.", grove::telemetry::metric_type::counter, {}, [&] {
    std::lock_guard lock(mutex);
    ++scrapes;
    scraped.notify_all();
    return std::vector<grove::telemetry::sample>{{{}, static_cast<double>(scrapes)}};
  });
  fixture f({.metrics = &metrics});

  // Prometheus on a free loopback port, scraping the admin endpoint every second.
  std::uint16_t web_port = 0;
  {
    asio::io_context io;
    tcp::acceptor probe(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    web_port = probe.local_endpoint().port();
  }
  test_support::temp_dir dir("grove-prometheus");
  std::ofstream(dir.file("prometheus.yml")) << "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                                               "scrape_configs:\n  - job_name: grove\n    static_configs:\n"
                                               "      - targets: ['127.0.0.1:"
                                            << f.admin.port() << "']\n";
  test_support::child_process prometheus(
      {"sh", "-c",
       "exec prometheus --config.file='" + dir.file("prometheus.yml") + "' --storage.tsdb.path='" + dir.file("data") +
           "' --web.listen-address=127.0.0.1:" + std::to_string(web_port) + " 2>&1"});
  prometheus.wait_for("Server is ready to receive web requests");
  {
    // Two scrapes: the first one's samples are in the database once the second begins.
    std::unique_lock lock(mutex);
    REQUIRE(scraped.wait_for(lock, 60s, [&] { return scrapes >= 2; }));
  }
  test_support::child_process query(
      {"curl", "-sS", "--max-time", "30", "-w", "\\n",
       "http://127.0.0.1:" + std::to_string(web_port) + "/api/v1/query?query=test_calls_total%7Bkind%3D%22call%22%7D"});
  const std::string answer = query.read_line();
  CHECK(answer.find("\"status\":\"success\"") != std::string::npos);
  CHECK(answer.find("\"job\":\"grove\"") != std::string::npos);
  CHECK(answer.find("\"42\"]") != std::string::npos); // the value, as Prometheus writes it
}

TEST_CASE("with a bearer token, a request without it or with another gets 401") {
  fixture f({.bearer_token = "s3cret"});
  raw_client c(f.admin.port());
  const response none = c.get("/healthz");
  CHECK(none.status == 401);
  CHECK(none.header("WWW-Authenticate").starts_with("Bearer"));
  c.send("GET /healthz HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3creT\r\n\r\n");
  CHECK(c.read().status == 401);
  c.send("GET /healthz HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\n\r\n");
  CHECK(c.read().status == 200);
}

TEST_CASE("over TLS: mutual by default, one-way when asked; curl checks the server with the test CA") {
  const auto cert = [](const std::string& name) {
    return (std::filesystem::path(GROVE_SOURCE_ROOT) / "certs" / name).string();
  };
  grove::erps::tls_server_options tls{.certificate_file = cert("server.pem"), .private_key_file = cert("server.key"),
                                      .ca_file = cert("ca.pem")};
  fixture mutual({.tls = tls});
  const std::string url = "https://127.0.0.1:" + std::to_string(mutual.admin.port()) + "/healthz";
  test_support::child_process with_cert({"curl", "-sS", "--max-time", "30", "-w", "\\n", "--cacert", cert("ca.pem"), "--cert",
                                         cert("client.pem"), "--key", cert("client.key"), url});
  CHECK(with_cert.read_line() == "ok");
  // (Bounded: a test must not wait for ever on a program it runs.)
  CHECK(test_support::child_process::run({"curl", "-s", "--max-time", "30", "-o", "/dev/null", "--cacert", cert("ca.pem"), url}) != 0);
  raw_client plain(mutual.admin.port()); // plain HTTP to a TLS port: closed, the server goes on
  plain.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(plain.closed_by_server());

  tls.require_client_certificate = false;
  fixture one_way({.tls = tls});
  test_support::child_process anyone({"curl", "-sS", "--max-time", "30", "-w", "\\n", "--cacert", cert("ca.pem"),
                                      "https://127.0.0.1:" + std::to_string(one_way.admin.port()) + "/healthz"});
  CHECK(anyone.read_line() == "ok");

  grove::admin::admin_server broken({.tls = grove::erps::tls_server_options{.certificate_file = "/nonexistent.pem"}});
  grove::node n{{.threads = 1, .events = nullptr}};
  const auto started = n.block_on(grove::testing::capture(broken.start(n)));
  REQUIRE_FALSE(started);
  CHECK(started.what().find("admin_server: tls.certificate_file \"/nonexistent.pem\": cannot read the file") !=
        std::string::npos);
}

namespace {

class idle_worker : public grove::gen_server {};

/// The first process in `nodes` (a /tree children array) whose `key` is `value`.
const nlohmann::json* find_in(const nlohmann::json& nodes, const std::string& key, const std::string& value) {
  for (const auto& p : nodes) {
    if (p.contains(key) && p[key].is_string() && p[key] == value) return &p;
    if (const nlohmann::json* deeper = find_in(p["children"], key, value)) return deeper;
  }
  return nullptr;
}

} // namespace

TEST_CASE("/tree shows a supervisor's strategy, its children's ids, pids and restart counts, live") {
  fixture f({});
  std::vector<grove::child_spec> children{grove::server_child<idle_worker>("alpha"),
                                          grove::server_child<idle_worker>("beta")};
  grove::supervisor_options so{.strategy = grove::restart_strategy::one_for_one, .max_restarts = 5, .report = nullptr};
  const grove::supervisor sup = f.n.block_on(grove::supervisor::start(f.n, children, so));
  const grove::pid alpha = f.n.block_on(sup.child_pid("alpha"));
  raw_client c(f.admin.port());
  const response first = c.get("/tree");
  REQUIRE(first.status == 200);
  CHECK(first.header("Content-Type") == "application/json");
  const nlohmann::json tree = nlohmann::json::parse(first.body);
  CHECK(tree["node"] == f.n.id());
  CHECK(tree["processes"].get<std::size_t>() == f.n.process_count());
  const nlohmann::json* s = find_in(tree["roots"], "pid", sup.id().to_string());
  REQUIRE(s != nullptr);
  CHECK((*s)["kind"] == "supervisor");
  CHECK((*s)["supervisor"]["strategy"] == "one_for_one");
  CHECK((*s)["supervisor"]["max_restarts"] == 5);
  REQUIRE((*s)["children"].size() == 2);
  CHECK((*s)["children"][0]["id"] == "alpha");
  CHECK((*s)["children"][0]["pid"] == alpha.to_string());
  CHECK((*s)["children"][0]["kind"] == "gen_server");
  CHECK((*s)["children"][0]["restarts"] == 0);
  CHECK((*s)["children"][1]["id"] == "beta");

  // Kill alpha: the supervisor restarts it, and the next /tree shows that.
  f.n.block_on([alpha](grove::process& self) -> grove::awaitable<void> {
    self.monitor(alpha);
    grove::exit(alpha, grove::exit_reason::kill());
    (void)co_await self.receive(); // its down message
  });
  const grove::pid alpha_again = f.n.block_on(sup.child_pid("alpha")); // answered after the restart
  REQUIRE(alpha_again);
  CHECK(alpha_again != alpha);
  const nlohmann::json after = nlohmann::json::parse(c.get("/tree").body);
  const nlohmann::json* s2 = find_in(after["roots"], "pid", sup.id().to_string());
  REQUIRE(s2 != nullptr);
  CHECK((*s2)["supervisor"]["restarts"] == 1);
  CHECK((*s2)["children"][0]["pid"] == alpha_again.to_string());
  CHECK((*s2)["children"][0]["restarts"] == 1);
  CHECK((*s2)["children"][1]["restarts"] == 0);
  f.n.block_on(sup.stop());
}

TEST_CASE("/tree shows at most tree_max_children under one parent and counts the rest") {
  fixture f({.tree_max_children = 3});
  std::vector<grove::child_spec> children;
  for (int i = 0; i < 5; ++i) children.push_back(grove::server_child<idle_worker>("w" + std::to_string(i)));
  const grove::supervisor sup = f.n.block_on(grove::supervisor::start(f.n, children, {.report = nullptr}));
  const nlohmann::json tree = f.n.block_on(grove::admin::process_tree(f.n, 3));
  const nlohmann::json* s = find_in(tree["roots"], "pid", sup.id().to_string());
  REQUIRE(s != nullptr);
  CHECK((*s)["children"].size() == 3);
  CHECK((*s)["more_children"] == 2);
  f.n.block_on(sup.stop());
}

TEST_CASE("/events streams a snapshot at once, then one per interval; a token may come in the query") {
  grove::telemetry::metric_registry metrics;
  metrics.make_counter("test_things_total", "Things.", {"kind"}).with({"a"}).inc(2);
  metrics.make_counter("test_things_total", "Things.", {"kind"}).with({"b"}).inc(3);
  fixture f({.metrics = &metrics, .bearer_token = "s3cret", .dashboard_interval = 100ms});
  {
    raw_client refused(f.admin.port());
    CHECK(refused.get("/events?access_token=wrong").status == 401);
    CHECK(refused.get("/tree").status == 401);
    CHECK(refused.get("/tree?access_token=s3cret").status == 200);
  }
  raw_client c(f.admin.port());
  c.send("GET /events?access_token=s3cret HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
  const std::string head = c.read_through("\r\n\r\n");
  CHECK(head.find("200 OK") != std::string::npos);
  CHECK(head.find("Content-Type: text/event-stream") != std::string::npos);
  for (int i = 0; i < 2; ++i) {
    const std::string event = c.read_through("\n\n");
    REQUIRE(event.rfind("event: snapshot\ndata: ", 0) == 0);
    const nlohmann::json data = nlohmann::json::parse(event.substr(event.find("data: ") + 6));
    CHECK(data["tree"]["node"] == f.n.id());
    CHECK(data["tree"]["roots"].is_array());
    CHECK(data["metrics"]["test_things_total"] == 5.0); // the family's series summed
    CHECK(data["at"].get<std::int64_t>() > 0);
  }
}

TEST_CASE("/ serves the dashboard page: HTML with its script inline, no external assets") {
  fixture f({});
  raw_client c(f.admin.port());
  const response page = c.get("/");
  REQUIRE(page.status == 200);
  CHECK(page.header("Content-Type") == "text/html; charset=utf-8");
  CHECK(page.body.find("<script>") != std::string::npos);
  CHECK(page.body.find("EventSource(") != std::string::npos);
  CHECK(page.body.find("src=") == std::string::npos);
  CHECK(page.body.find("http://") == std::string::npos);
  CHECK(page.body.find("https://") == std::string::npos);
  CHECK(c.get("/tree").status == 200);
}
