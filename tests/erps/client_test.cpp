// The client against peers that misbehave: a server that never speaks,
// a link that drops with calls in flight, casts made while disconnected.
#include <grove/erps/client.hpp>

#include "erps_support.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <doctest/doctest.h>

using namespace erps_test;
using grove::erps::frame_type;
using erps_daemon = grove::erps::daemon;

namespace {

/// A TCP listener on 127.0.0.1:0 that accepts one connection (blocking,
/// bounded by poll) and then does only what the test says.
class raw_listener {
public:
  raw_listener() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    ::inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(::listen(fd_, 4) == 0);
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
  }
  ~raw_listener() {
    if (peer_ >= 0) ::close(peer_);
    ::close(fd_);
  }
  std::uint16_t port() const noexcept { return port_; }

  bool accept(std::chrono::milliseconds limit = 10s) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(limit.count())) <= 0) return false;
    peer_ = ::accept(fd_, nullptr, nullptr);
    return peer_ >= 0;
  }

  /// The next frame the client sends (keepalives included), bounded.
  std::optional<grove::erps::frame_type> read_frame(std::chrono::milliseconds limit = 10s) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    for (;;) {
      if (auto f = decoder_.next()) return f.header.type;
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left <= 0ms) return std::nullopt;
      pollfd p{peer_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return std::nullopt;
      auto space = decoder_.prepare();
      auto n = ::recv(peer_, space.data(), space.size(), 0);
      if (n <= 0) return std::nullopt;
      decoder_.commit(static_cast<std::size_t>(n));
    }
  }

  void close_peer() {
    ::close(peer_);
    peer_ = -1;
  }

private:
  int fd_ = -1;
  int peer_ = -1;
  std::uint16_t port_ = 0;
  grove::erps::frame_decoder decoder_;
};

grove::erps::client_options options_for(std::uint16_t port, std::shared_ptr<event_log> states) {
  grove::erps::client_options o;
  o.port = port;
  o.link.log = nullptr;
  o.connection.backoff = grove::backoff_policy::constant(20ms);
  o.connection.on_event = record_states(states);
  return o;
}

} // namespace

TEST_CASE("the client sends keepalives at its interval and drops a server that never speaks") {
  grove::node node{{.threads = 2}};
  raw_listener silent;
  auto states = std::make_shared<event_log>();
  auto o = options_for(silent.port(), states);
  o.link.keepalive_interval = 30ms;
  o.link.keepalive_timeout = 300ms;
  auto c = node.block_on(grove::erps::client::start(node, o));
  REQUIRE(c);
  REQUIRE(silent.accept());
  auto f = silent.read_frame();
  REQUIRE(f);
  CHECK(*f == grove::erps::frame_type::keepalive);
  CHECK(states->wait_for([](const auto& v) {
    for (const auto& s : v) {
      if (s.rfind("disconnected: peer silent for 300 ms (keepalive timeout)", 0) == 0) return true;
    }
    return false;
  }));
}

TEST_CASE("calls in flight fail with disconnected when the link drops") {
  grove::node node{{.threads = 2}};
  raw_listener server;
  auto states = std::make_shared<event_log>();
  auto c = node.block_on(grove::erps::client::start(node, options_for(server.port(), states)));
  REQUIRE(server.accept());
  struct caller {
    grove::erps::client_ref c;
    std::shared_ptr<event_log> log;
    grove::awaitable<void> operator()(grove::process&) {
      try {
        json request = json{{"op", "echo"}, {"value", "lost"}};
        co_await c.call(request, 20s);
        log->add("replied");
      } catch (const grove::error& e) {
        log->add(e.code() == grove::connection_errc::disconnected ? "disconnected" : std::string("other: ") + e.what());
      }
    }
  };
  auto log = std::make_shared<event_log>();
  grove::spawn(node, caller{c, log});
  auto f = server.read_frame();
  REQUIRE(f);
  CHECK(*f == frame_type::call);
  server.close_peer(); // the link drops with the call in flight
  CHECK(log->wait_count("disconnected", 1));
  CHECK(log->events() == std::vector<std::string>{"disconnected"});
}

TEST_CASE("a killed server's caller gets an error for its call; casts made while down arrive later") {
  auto events = std::make_shared<event_log>();
  grove::node node{{.threads = 2}};
  grove::erps::daemon_options d;
  d.link.log = nullptr;
  auto server = node.block_on(start_test_daemon(node, d, json(), events));
  auto states = std::make_shared<event_log>();
  auto c = node.block_on(grove::erps::client::start(node, options_for(server.port(), states)));

  struct caller {
    grove::erps::client_ref c;
    std::shared_ptr<event_log> log;
    grove::awaitable<void> operator()(grove::process&) {
      try {
        json request = json{{"op", "hold"}, {"value", "lost"}};
        co_await c.call(request, 20s);
        log->add("replied");
      } catch (const grove::error& e) {
        log->add(e.what());
      }
    }
  };
  auto log = std::make_shared<event_log>();
  grove::spawn(node, caller{c, log});
  REQUIRE(events->wait_count("held \"lost\"", 1));
  auto children = node.block_on(server.supervisor().which_children());
  REQUIRE(children.size() == 1);
  grove::exit(children[0].process, grove::exit_reason::kill());
  CHECK(log->wait_for([](const auto& v) {
    return v.size() == 1 && v[0].find("the server stopped before it replied") != std::string::npos;
  }));

  // While the client is down, a cast is kept and sent on the next link,
  // before anything else.
  node.block_on(server.shutdown(2s));
  REQUIRE(states->wait_for([](const auto& v) { return !v.empty() && v.back().rfind("backing_off", 0) == 0; }));
  c.cast(json{{"op", "put"}, {"key", "k"}, {"value", "kept"}});
  d.port = server.port();
  auto again = node.block_on(start_test_daemon(node, d, json(), events));
  CHECK(node.block_on(c.call(json{{"op", "get"}, {"key", "k"}}, waiting())) == "kept");
}

TEST_CASE("bad client options name the option") {
  grove::erps::client_options no_port;
  CHECK_THROWS_WITH_AS(no_port.validate(), "client_options.port: 0: expected the daemon's port (1-65535)", grove::error);
  grove::erps::client_options bad_keepalive;
  bad_keepalive.port = 1;
  bad_keepalive.link.keepalive_timeout = 1s;
  bad_keepalive.link.keepalive_interval = 2s;
  CHECK_THROWS_WITH_AS(bad_keepalive.validate(), "client_options.link.keepalive_timeout: expected longer than keepalive_interval",
                       grove::error);
  grove::erps::client_options bad_tls;
  bad_tls.port = 1;
  bad_tls.tls = grove::erps::tls_client_options{.ca_file = "/nonexistent/ca.pem"};
  grove::node node{{.threads = 1}};
  CHECK_THROWS_WITH_AS(node.block_on(grove::erps::client::start(node, bad_tls)),
                       doctest::Contains("tls.ca_file \"/nonexistent/ca.pem\": cannot read the file"), grove::error);
}

TEST_CASE("setup calls go first on every link, so per-connection state comes back after a reconnect") {
  daemon_rig r({});
  auto answers = std::make_shared<event_log>();
  grove::erps::client_options o;
  o.setup_calls = [] {
    return std::vector<json>{json{{"op", "put"}, {"key", "session"}, {"value", "restored"}}, json{{"op", "nonsense"}}};
  };
  o.on_setup_reply = [answers](const grove::erps::setup_reply& a) {
    answers->add("link " + std::to_string(a.link) + " " + a.request.value("op", "") + ": " +
                 (a.reply ? a.reply->dump() : "refused: " + a.error));
  };
  o.connection.backoff = grove::backoff_policy::constant(10ms);
  auto c = r.connect(o);
  // Each connection has its own server; the setup put reached this one before this call.
  CHECK(r.node.block_on(c.call(json{{"op", "get"}, {"key", "session"}}, waiting())) == "restored");
  CHECK(r.node.block_on(c.call(json{{"op", "close"}}, waiting())) == true);
  REQUIRE(answers->wait_count("link 2 put: true", 1));
  CHECK(r.node.block_on(c.call(json{{"op", "get"}, {"key", "session"}}, waiting())) == "restored");
  REQUIRE(answers->wait_count(R"(link 2 nonsense: {"error":"unknown op"})", 1));
  CHECK(answers->events() == std::vector<std::string>{"link 1 put: true", R"(link 1 nonsense: {"error":"unknown op"})",
                                                      "link 2 put: true", R"(link 2 nonsense: {"error":"unknown op"})"});
}
