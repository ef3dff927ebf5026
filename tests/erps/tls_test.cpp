// TLS: mutual by default, one-way as an option, refusals of bad client
// certificates, plain TCP on the TLS port, reload without a restart, and
// the real OpenSSL client (openssl s_client) against the daemon.
#include <grove/erps/tls.hpp>

#include "erps_support.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <spawn.h>
#include <sys/wait.h>

using namespace erps_test;
using grove::erps::frame_type;
using erps_daemon = grove::erps::daemon;

extern char** environ;

namespace {

// (A path join, not string concatenation: g++ 12 warns falsely about
// array bounds in the latter.)
std::string cert(const std::string& name) { return (std::filesystem::path(GROVE_SOURCE_ROOT) / "certs" / name).string(); }

grove::erps::tls_server_options server_tls() {
  return {.certificate_file = cert("server.pem"), .private_key_file = cert("server.key"), .ca_file = cert("ca.pem")};
}

grove::erps::tls_client_options client_tls(const std::string& who = "client") {
  return {.ca_file = cert("ca.pem"), .certificate_file = cert(who + ".pem"), .private_key_file = cert(who + ".key")};
}

struct rig {
  std::shared_ptr<event_log> logs = std::make_shared<event_log>();
  std::shared_ptr<event_log> client_logs = std::make_shared<event_log>();
  grove::node node{{.threads = 2}};
  erps_daemon server;

  explicit rig(grove::erps::daemon_options options = {}) {
    if (!options.tls) options.tls = server_tls();
    options.link.log = capture(logs);
    server = node.block_on(start_test_daemon(node, options, json(), std::shared_ptr<event_log>()));
  }

  grove::erps::client_ref connect(std::optional<grove::erps::tls_client_options> tls,
                                  std::function<void(grove::erps::client_options&)> adjust = {}) {
    grove::erps::client_options o;
    o.port = server.port();
    o.tls = std::move(tls);
    o.link.log = capture(client_logs);
    o.connection.backoff = grove::backoff_policy::constant(50ms);
    if (adjust) adjust(o);
    return node.block_on(grove::erps::client::start(node, std::move(o)));
  }

  json call(const grove::erps::client_ref& c, json request) {
    return node.block_on(c.call(std::move(request), 10s));
  }
};

json echo(json v) { return json{{"op", "echo"}, {"value", std::move(v)}}; }

/// openssl s_client with its stdin and stdout on pipes; killed when done.
class s_client {
public:
  explicit s_client(std::vector<std::string> args) {
    int in[2], out[2];
    REQUIRE(::pipe(in) == 0);
    REQUIRE(::pipe(out) == 0);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, in[0], 0);
    posix_spawn_file_actions_adddup2(&actions, out[1], 1);
    posix_spawn_file_actions_adddup2(&actions, out[1], 2);
    posix_spawn_file_actions_addclose(&actions, in[1]);
    posix_spawn_file_actions_addclose(&actions, out[0]);
    std::vector<char*> argv;
    args.insert(args.begin(), {"openssl", "s_client"});
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    REQUIRE(::posix_spawnp(&pid_, "openssl", &actions, nullptr, argv.data(), environ) == 0);
    posix_spawn_file_actions_destroy(&actions);
    ::close(in[0]);
    ::close(out[1]);
    stdin_ = in[1];
    stdout_ = out[0];
  }
  ~s_client() {
    ::close(stdin_);
    ::close(stdout_);
    ::kill(pid_, SIGTERM);
    int status = 0;
    ::waitpid(pid_, &status, 0);
  }

  void write(const std::string& bytes) { REQUIRE(::write(stdin_, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size())); }

  /// Reads its output until `done(output)` or EOF, at most `limit`.
  std::string read_until(const std::function<bool(const std::string&)>& done, std::chrono::milliseconds limit = 15s) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!done(output_)) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left <= 0ms) break;
      pollfd p{stdout_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
      char buffer[4096];
      auto n = ::read(stdout_, buffer, sizeof buffer);
      if (n <= 0) break;
      output_.append(buffer, static_cast<std::size_t>(n));
    }
    return output_;
  }

private:
  pid_t pid_ = 0;
  int stdin_ = -1;
  int stdout_ = -1;
  std::string output_;
};

} // namespace

TEST_CASE("mutual TLS: a client with a certificate from the CA is served and seen by its subject") {
  rig r;
  auto c = r.connect(client_tls());
  CHECK(r.call(c, echo("over TLS")) == "over TLS");
  CHECK(r.call(c, json{{"op", "peer_subject"}}) == "/CN=grove test client");
}

TEST_CASE("a client certificate's alternative names reach its server, on a resumed session too") {
  grove::erps::daemon_options o;
  o.tls = server_tls();
  o.idle_timeout = 300ms; // the daemon drops the idle link; the client comes back, resuming
  rig r(o);
  auto states = std::make_shared<event_log>();
  auto b = r.connect(client_tls("tenant-b"), [&](grove::erps::client_options& co) {
    co.connection.on_event = record_states(states);
    co.connection.backoff = grove::backoff_policy::constant(10ms);
  });
  const json names = json::array({"URI:grove://tenant/b", "DNS:b.tenants.grove.test"});
  CHECK(r.call(b, json{{"op", "peer_alt_names"}}) == names);
  CHECK(r.call(b, json{{"op", "peer_subject"}}) == "/CN=grove tenant b");
  REQUIRE(states->wait_for([](const auto& v) { return std::count(v.begin(), v.end(), "connected") >= 2; }));
  CHECK(r.call(b, json{{"op", "peer_alt_names"}}) == names);
  CHECK(r.server.stats().tls_resumed >= 1);
  // Another certificate, another identity; one without alternative names has none.
  auto a = r.connect(client_tls("tenant-a"));
  CHECK(r.call(a, json{{"op", "peer_alt_names"}}) == json::array({"URI:grove://tenant/a"}));
  auto plain = r.connect(client_tls());
  CHECK(r.call(plain, json{{"op", "peer_alt_names"}}) == json::array());
}

TEST_CASE("one-way TLS: a client without a certificate is served when the daemon does not require one") {
  grove::erps::daemon_options o;
  o.tls = server_tls();
  o.tls->require_client_certificate = false;
  rig r(o);
  grove::erps::tls_client_options anonymous{.ca_file = cert("ca.pem")};
  auto c = r.connect(anonymous);
  CHECK(r.call(c, echo("one way")) == "one way");
}

TEST_CASE("TLS without a client certificate is refused by a mutual-TLS daemon; others go on") {
  rig r;
  auto good = r.connect(client_tls());
  REQUIRE(r.call(good, echo(1)) == 1);
  grove::erps::tls_client_options anonymous{.ca_file = cert("ca.pem")};
  auto refused = r.connect(anonymous);
  CHECK(logged(*r.logs, "handshake_failed: TLS handshake failed: peer did not return a certificate"));
  CHECK_THROWS_AS(r.call(refused, echo(2)), grove::error);
  CHECK(r.call(good, echo(3)) == 3);
  CHECK(r.call(r.connect(client_tls()), echo(4)) == 4);
}

TEST_CASE("a client certificate from another CA is refused, saying why") {
  rig r;
  auto refused = r.connect(client_tls("other-client"));
  CHECK(logged(*r.logs, "handshake_failed: TLS handshake failed: certificate verify failed (unable to get local issuer certificate)"));
  CHECK_THROWS_AS(r.call(refused, echo(1)), grove::error);
  CHECK(r.call(r.connect(client_tls()), echo(2)) == 2);
}

TEST_CASE("an expired client certificate is refused, saying so") {
  rig r;
  auto refused = r.connect(client_tls("expired-client"));
  CHECK(logged(*r.logs, "handshake_failed: TLS handshake failed: certificate verify failed (certificate has expired)"));
  CHECK_THROWS_AS(r.call(refused, echo(1)), grove::error);
  CHECK(r.call(r.connect(client_tls()), echo(2)) == 2);
}

TEST_CASE("plain TCP to the TLS port: the handshake fails, that connection closes, others go on") {
  rig r;
  auto good = r.connect(client_tls());
  raw_client plain(r.server.port());
  plain.send(call_frame(1, echo("plain")));
  CHECK(plain.closed_within());
  CHECK(logged(*r.logs, "handshake_failed: TLS handshake failed:"));
  CHECK(r.call(good, echo("still")) == "still");
  CHECK(r.call(r.connect(client_tls()), echo("new")) == "new");
}

TEST_CASE("the client checks the server's name and CA") {
  rig r;
  auto wrong_name = r.connect(client_tls(), [](auto& o) { o.tls->server_name = "not-localhost.example"; });
  CHECK(logged(*r.client_logs, "handshake_failed: TLS handshake failed: certificate verify failed (hostname mismatch)"));
  CHECK_THROWS_AS(r.call(wrong_name, echo(1)), grove::error);
  auto by_name = r.connect(client_tls(), [](auto& o) { o.host = "localhost"; });
  CHECK(r.call(by_name, echo("localhost")) == "localhost");
  auto wrong_ca = r.connect(client_tls(), [](auto& o) { o.tls->ca_file = cert("other-ca.pem"); });
  CHECK_THROWS_AS(r.call(wrong_ca, echo(2)), grove::error);
  // (The daemon sends its CA along, which the client does not trust.)
  CHECK(logged(*r.client_logs, "handshake_failed: TLS handshake failed: certificate verify failed (self-signed certificate in certificate chain)"));
}

TEST_CASE("a TLS handshake that never starts is dropped at the handshake timeout") {
  grove::erps::daemon_options o;
  o.tls = server_tls();
  o.tls->handshake_timeout = 200ms;
  rig r(o);
  raw_client silent(r.server.port());
  CHECK(silent.closed_within());
  CHECK(logged(*r.logs, "handshake_timeout: TLS handshake did not finish within 200 ms"));
}

TEST_CASE("reload_tls: new connections use the new files, open ones keep going, bad files are refused") {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("grove-tls-reload-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  fs::copy_file(cert("ca.pem"), dir / "ca.pem", fs::copy_options::overwrite_existing);
  grove::erps::daemon_options o;
  o.tls = server_tls();
  o.tls->ca_file = (dir / "ca.pem").string();
  rig r(o);
  auto before = r.connect(client_tls());
  REQUIRE(r.call(before, echo(1)) == 1);

  { std::ofstream(dir / "ca.pem") << "not a certificate\n"; }
  CHECK_THROWS_WITH_AS(r.node.block_on(r.server.reload_tls()), doctest::Contains("tls.ca_file"), grove::error);
  CHECK(r.call(r.connect(client_tls()), echo("old files still in use")) == "old files still in use");

  fs::copy_file(cert("other-ca.pem"), dir / "ca.pem", fs::copy_options::overwrite_existing);
  r.node.block_on(r.server.reload_tls());
  CHECK(r.call(r.connect(client_tls("other-client")), echo("new CA")) == "new CA");
  CHECK(r.call(before, echo("open one")) == "open one");
  r.logs->clear();
  auto refused = r.connect(client_tls());
  CHECK(logged(*r.logs, "handshake_failed:"));
  CHECK_THROWS_AS(r.call(refused, echo("old CA")), grove::error);
  fs::remove_all(dir);
}

TEST_CASE("openssl s_client handshakes with a client certificate and gets a reply; without one it is refused") {
  rig r;
  const std::string where = "127.0.0.1:" + std::to_string(r.server.port());
  {
    s_client ok({"-connect", where, "-CAfile", cert("ca.pem"), "-cert", cert("client.pem"), "-key", cert("client.key"),
                 "-verify_return_error", "-quiet"});
    ok.write(call_frame(1, echo("from s_client")));
    std::string out = ok.read_until([](const std::string& o) { return o.find("[\"from s_client\",1]") != std::string::npos; });
    CHECK(out.find("[\"from s_client\",1]") != std::string::npos);
  }
  {
    s_client refused({"-connect", where, "-CAfile", cert("ca.pem"), "-verify_return_error", "-quiet"});
    refused.write(call_frame(2, echo("no certificate")));
    std::string out = refused.read_until([](const std::string&) { return false; }, 10s); // until it exits
    CHECK(out.find("no certificate") == std::string::npos);
    CHECK(out.find("alert") != std::string::npos);
    CHECK(logged(*r.logs, "handshake_failed: TLS handshake failed: peer did not return a certificate"));
  }
  {
    // TLS 1.2 is the floor: s_client offering only TLS 1.1 (its own security
    // level lowered so that it offers it at all) is refused by the daemon.
    r.logs->clear();
    s_client old({"-connect", where, "-CAfile", cert("ca.pem"), "-cert", cert("client.pem"), "-key", cert("client.key"),
                  "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0", "-quiet"});
    old.read_until([](const std::string&) { return false; }, 10s);
    CHECK(logged(*r.logs, "handshake_failed: TLS handshake failed: unsupported protocol"));
  }
  {
    s_client tls12({"-connect", where, "-CAfile", cert("ca.pem"), "-cert", cert("client.pem"), "-key", cert("client.key"),
                    "-tls1_2", "-verify_return_error", "-quiet"});
    tls12.write(call_frame(3, echo("over TLS 1.2")));
    std::string out = tls12.read_until([](const std::string& o) { return o.find("[\"over TLS 1.2\",3]") != std::string::npos; });
    CHECK(out.find("[\"over TLS 1.2\",3]") != std::string::npos);
  }
}

TEST_CASE("a TLS handshake that trickles is dropped at the handshake timeout, however steadily it trickles") {
  grove::erps::daemon_options o;
  o.tls = server_tls();
  o.tls->handshake_timeout = 1s;
  rig r(o);
  raw_client slow(r.server.port());
  // A TLS record header announcing a 512-byte ClientHello, then a byte every 200 ms.
  slow.send(std::string("\x16\x03\x01\x02\x00", 5));
  bool closed = false;
  for (int i = 0; i < 50 && !closed; ++i) {
    closed = slow.closed_within(200ms); // the wait for the close is the pacing
    if (!closed) slow.send(std::string(1, '\x01'));
  }
  CHECK(closed);
  CHECK(logged(*r.logs, "handshake_timeout: TLS handshake did not finish within 1 s"));
  CHECK(r.call(r.connect(client_tls()), echo("others served")) == "others served");
}

namespace {

// s_client's verdict line: "New, TLSv1.2, Cipher is X" / "Reused, ...".
std::vector<std::string> session_lines(const std::string& output) {
  std::vector<std::string> lines;
  std::size_t at = 0;
  while ((at = output.find('\n', at)) != std::string::npos) {
    ++at;
    if (output.compare(at, 5, "New, ") == 0 || output.compare(at, 8, "Reused, ") == 0) {
      lines.push_back(output.substr(at, output.find('\n', at) - at));
    }
  }
  return lines;
}

std::vector<std::string> with_client_certificate(std::vector<std::string> args) {
  for (const std::string& a : {std::string("-CAfile"), cert("ca.pem"), std::string("-cert"), cert("client.pem"),
                               std::string("-key"), cert("client.key")}) {
    args.push_back(a);
  }
  return args;
}

} // namespace

TEST_CASE("TLS 1.2 offers only ECDHE with AEAD ciphers, in the server's order") {
  rig r;
  const std::string where = "127.0.0.1:" + std::to_string(r.server.port());
  {
    s_client cbc(with_client_certificate({"-connect", where, "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA"}));
    const std::string out = cbc.read_until([](const std::string&) { return false; }, 10s); // until it exits
    CHECK(out.find("alert handshake failure") != std::string::npos);
    CHECK(logged(*r.logs, "handshake_failed: TLS handshake failed: no shared cipher"));
  }
  {
    // The client prefers ChaCha20; the server's order puts AES-GCM first.
    s_client ordered(with_client_certificate(
        {"-connect", where, "-tls1_2", "-cipher", "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256"}));
    ordered.write(call_frame(1, echo("ordered")));
    const std::string out = ordered.read_until([](const std::string& o) { return o.find("[\"ordered\",1]") != std::string::npos; });
    CHECK(out.find("Cipher is ECDHE-ECDSA-AES128-GCM-SHA256") != std::string::npos);
  }
}

TEST_CASE("openssl s_client -reconnect resumes its TLS 1.2 session; a TLS 1.3 ticket resumes too") {
  rig r;
  const std::string where = "127.0.0.1:" + std::to_string(r.server.port());
  {
    s_client again(with_client_certificate({"-connect", where, "-tls1_2", "-reconnect"}));
    const std::string out = again.read_until([](const std::string& o) { return session_lines(o).size() >= 6; });
    const auto lines = session_lines(out);
    REQUIRE(lines.size() >= 6);
    CHECK(lines[0].rfind("New, TLSv1.2", 0) == 0);
    for (std::size_t i = 1; i < lines.size(); ++i) CHECK(lines[i].rfind("Reused, TLSv1.2", 0) == 0);
  }
  const std::string session = (std::filesystem::temp_directory_path() / ("grove-tls13-" + std::to_string(::getpid()) + ".pem")).string();
  {
    s_client first(with_client_certificate({"-connect", where, "-tls1_3", "-sess_out", session, "-quiet"}));
    first.write(call_frame(1, echo("first"))); // its reply comes after the tickets
    first.read_until([](const std::string& o) { return o.find("[\"first\",1]") != std::string::npos; });
  }
  {
    s_client second(with_client_certificate({"-connect", where, "-tls1_3", "-sess_in", session}));
    const std::string out = second.read_until([](const std::string& o) { return !session_lines(o).empty(); });
    CHECK(out.find("Reused, TLSv1.3") != std::string::npos);
  }
  std::filesystem::remove(session);
  // The daemon counts a handshake when its own side is done, which may be
  // after s_client has printed its verdict: round trips until it has.
  auto c = r.connect(client_tls());
  for (int i = 0; i < 1000 && r.server.stats().tls_handshakes < 9; ++i) r.call(c, echo(i));
  CHECK(r.server.stats().tls_handshakes >= 9); // s_client's 8, and this client's
  CHECK(r.server.stats().tls_resumed >= 6);
}

TEST_CASE("a grove client that reconnects resumes its session instead of a full handshake") {
  grove::erps::daemon_options o;
  o.tls = server_tls();
  o.idle_timeout = 300ms; // the daemon drops the idle link; the client comes back by itself
  rig r(o);
  auto states = std::make_shared<event_log>();
  auto c = r.connect(client_tls(), [&](grove::erps::client_options& co) {
    co.connection.on_event = record_states(states);
    co.connection.backoff = grove::backoff_policy::constant(10ms);
  });
  REQUIRE(r.call(c, echo(1)) == 1);
  REQUIRE(states->wait_for([](const auto& v) { return std::count(v.begin(), v.end(), "connected") >= 2; }));
  CHECK(r.call(c, echo(2)) == 2);
  const auto stats = r.server.stats();
  CHECK(stats.tls_handshakes >= 2);
  CHECK(stats.tls_resumed >= 1);
  CHECK(stats.tls_resumed == stats.tls_handshakes - 1);
}

TEST_CASE("TLS options can only tighten the policy; what would loosen it is refused, naming the option") {
  auto refused = [](grove::erps::tls_server_options t) -> std::string {
    grove::erps::daemon_options o;
    o.tls = std::move(t);
    try {
      rig r(o);
    } catch (const grove::error& e) {
      return e.what();
    }
    return "accepted";
  };
  auto t = server_tls();
  t.tls12_ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES128-SHA";
  CHECK(refused(t) == "tls.tls12_ciphers names ECDHE-ECDSA-AES128-SHA: expected only ECDHE suites with AES-GCM or "
                      "ChaCha20-Poly1305");
  t = server_tls();
  t.tls12_ciphers = "no-such-cipher";
  CHECK(refused(t).rfind("tls.tls12_ciphers \"no-such-cipher\": no cipher OpenSSL knows", 0) == 0);
  t = server_tls();
  t.tls13_ciphersuites = "TLS_NO_SUCH";
  CHECK(refused(t).rfind("tls.tls13_ciphersuites \"TLS_NO_SUCH\"", 0) == 0);

  t = server_tls();
  t.min_version = grove::erps::tls_version::tls1_3;
  t.tls12_ciphers = "ECDHE-ECDSA-AES256-GCM-SHA384";
  grove::erps::daemon_options o;
  o.tls = t;
  rig r(o);
  const std::string where = "127.0.0.1:" + std::to_string(r.server.port());
  s_client old(with_client_certificate({"-connect", where, "-tls1_2", "-quiet"}));
  old.read_until([](const std::string&) { return false; }, 10s);
  CHECK(logged(*r.logs, "handshake_failed: TLS handshake failed: unsupported protocol"));
  CHECK(r.call(r.connect(client_tls()), echo("1.3 only")) == "1.3 only");
}
