// grove and a real BEAM erps peer (tests/erps/erps_peer.escript: erps
// framing and term_to_binary over gen_tcp), with the ETF codec: an Erlang
// client of a grove daemon, and a grove client of an Erlang server.
#include <grove/core/node.hpp>
#include <grove/erps/client.hpp>
#include <grove/erps/daemon.hpp>
#include <grove/erps/etf.hpp>
#include <grove/erps/term_json.hpp>
#include <grove/erps/server.hpp>
#include <grove/erps/terms.hpp>

#include "../child_process.hpp"

#include <doctest/doctest.h>

#include <filesystem>
#include <mutex>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using grove::erps::json;
using grove::erps::term;

namespace {

const std::filesystem::path peer_script = std::filesystem::path(GROVE_SOURCE_ROOT) / "tests/erps/erps_peer.escript";

/// Echoes a call; "last_cast" answers the last cast, "push" pushes "pushed" first.
class echo_for_erlang : public grove::erps::server {
public:
  json handle_call(grove::erps::call c) {
    if (c.request == "last_cast") return last_cast_;
    if (c.request == "push") {
      push("pushed");
      return "ok";
    }
    return c.request;
  }
  void handle_cast(grove::erps::cast c) { last_cast_ = c.request; }

private:
  json last_cast_;
};

/// The same, written against terms: nothing crosses a mapping, so
/// whatever an Erlang peer sends comes back =:= itself.
class term_echo : public grove::erps::term_server {
public:
  term handle_call(grove::erps::term_call c) {
    if (c.request.is_atom("last_cast") || c.request == term::binary("last_cast")) return last_cast_;
    if (c.request.is_atom("push")) {
      push(term::tuple({term::atom("pushed"), last_cast_}));
      return term::atom("ok");
    }
    return std::move(c.request);
  }
  void handle_cast(grove::erps::term_cast c) { last_cast_ = std::move(c.request); }

private:
  term last_cast_;
};

const std::filesystem::path cert_dir = std::filesystem::path(GROVE_SOURCE_ROOT) / "certs";

grove::erps::tls_server_options server_tls() {
  grove::erps::tls_server_options t;
  t.certificate_file = (cert_dir / "server.pem").string();
  t.private_key_file = (cert_dir / "server.key").string();
  t.ca_file = (cert_dir / "ca.pem").string();
  return t;
}

grove::erps::tls_client_options client_tls() {
  grove::erps::tls_client_options t;
  t.ca_file = (cert_dir / "ca.pem").string();
  t.certificate_file = (cert_dir / "client.pem").string();
  t.private_key_file = (cert_dir / "client.key").string();
  t.server_name = "localhost";
  return t;
}

std::vector<std::string> steps_until_done(test_support::child_process& erl) {
  std::vector<std::string> steps;
  for (std::string line = erl.read_line(60s); line != "done"; line = erl.read_line(60s)) steps.push_back(line);
  return steps;
}

const std::vector<std::string> term_steps{
    "ok echo 301", "ok echo 302", "ok echo 303", "ok echo 304", "ok echo 305", "ok echo 306",
    "ok echo 307", "ok echo 308", "ok echo 309", "ok echo 310", "ok echo 311", "ok echo 312",
    "ok echo 313", "ok echo 314", "ok echo 315", "ok cast_then_call", "ok push_frame", "ok reply_after_push"};

/// Options for a client of V values that talks ETF to the Erlang server
/// announced on `port`, keeping each push it gets in `pushes`.
template <class V>
grove::erps::basic_client_options<V> etf_client_options(std::uint16_t port, std::mutex& m, std::vector<V>& pushes) {
  grove::erps::basic_client_options<V> o;
  o.port = port;
  o.link.codec = &grove::erps::etf::etf_codec();
  o.link.log = nullptr;
  o.connection.on_event = nullptr;
  o.on_push = [&m, &pushes](const V& p) {
    std::lock_guard lock(m);
    pushes.push_back(p);
  };
  return o;
}

std::uint16_t announced_port(const std::string& line) {
  REQUIRE(line.rfind("port ", 0) == 0);
  return static_cast<std::uint16_t>(std::stoi(line.substr(5)));
}

} // namespace

TEST_CASE("an Erlang erps client calls, casts and gets pushes from a grove daemon speaking ETF") {
  grove::node n{{.threads = 2, .events = nullptr}};
  grove::erps::daemon_options serve;
  serve.link.codec = &grove::erps::etf::etf_codec();
  serve.link.log = nullptr;
  const auto d = n.block_on(grove::erps::daemon::start<echo_for_erlang>(n, serve));
  test_support::child_process erl({"escript", peer_script.string(), "client", std::to_string(d.port())});
  std::vector<std::string> steps;
  for (std::string line = erl.read_line(60s); line != "done"; line = erl.read_line(60s)) steps.push_back(line);
  const std::vector<std::string> expected{"ok call_integer",   "ok call_map_atom_keys", "ok cast_then_call",
                                          "ok push_frame",     "ok reply_after_push",   "ok big_integer",
                                          "ok wrong_identifier", "ok still_served"};
  CHECK(steps == expected);
  n.block_on(d.shutdown(5s));
}

TEST_CASE("a grove client speaking ETF calls an Erlang erps server and gets its pushes") {
  test_support::child_process erl({"escript", peer_script.string(), "server"});
  const std::uint16_t port = announced_port(erl.read_line(60s));
  grove::node n{{.threads = 2, .events = nullptr}};
  std::mutex m;
  std::vector<json> pushes;
  const grove::erps::client_options o = etf_client_options(port, m, pushes);
  const auto c = n.block_on(grove::erps::client::start(n, o));
  json question = json{{"op", "get"}, {"keys", {1, 2, 3}}, {"big", 18446744073709551615u}, {"none", nullptr}};
  CHECK(n.block_on(c.call(question)) == question); // through term_to_binary and back
  c.cast(json("hello"));
  json after = "after";
  CHECK(n.block_on(c.call(after)) == "after"); // answered after the cast's push was sent
  {
    std::lock_guard lock(m);
    REQUIRE(pushes.size() == 1);
    CHECK(pushes[0] == json::array({"cast_seen", "hello"})); // {cast_seen, <<"hello">>}
  }
  (void)n.block_on(grove::stop(c.id()));
}

TEST_CASE("a term server gives an Erlang client back exactly what it sent: pids, refs, funs, big integers, atoms") {
  grove::node n{{.threads = 2, .events = nullptr}};
  for (const bool tls : {false, true}) {
    CAPTURE(tls);
    grove::erps::daemon_options serve;
    serve.link.codec = &grove::erps::etf::etf_codec();
    serve.link.log = nullptr;
    if (tls) serve.tls = server_tls();
    const auto d = n.block_on(grove::erps::daemon::start<term_echo>(n, serve));
    std::vector<std::string> args{"escript", peer_script.string(), "terms", std::to_string(d.port())};
    if (tls) args.push_back(cert_dir.string());
    test_support::child_process erl(args);
    CHECK(steps_until_done(erl) == term_steps);
    if (tls) CHECK(d.stats().tls_handshakes == 1);
    n.block_on(d.shutdown(5s));
  }
}

TEST_CASE("a term client calls an Erlang erps server over mutual TLS and gets its pushes as terms") {
  test_support::child_process erl({"escript", peer_script.string(), "server", cert_dir.string()});
  const std::uint16_t port = announced_port(erl.read_line(60s));
  grove::node n{{.threads = 2, .events = nullptr}};
  std::mutex m;
  std::vector<term> pushes;
  grove::erps::term_client_options o = etf_client_options(port, m, pushes);
  o.tls = client_tls();
  const auto c = n.block_on(grove::erps::term_client::start(n, o));
  const term question = term::tuple({term::atom("get"), term::big_integer(true, std::string(12, '\x7f')),
                                     term::list({term::atom("a")}, term::atom("b")), term::bit_binary("\xe0", 3)});
  CHECK(n.block_on(c.call(question)) == question);
  c.cast(term::atom("hello"));
  CHECK(n.block_on(c.call(term::atom("after"))) == term::atom("after"));
  {
    std::lock_guard lock(m);
    REQUIRE(pushes.size() == 1);
    CHECK(pushes[0] == term::tuple({term::atom("cast_seen"), term::atom("hello")}));
  }
  (void)n.block_on(grove::stop(c.id()));
}

TEST_CASE("a term server also serves JSON clients, and a JSON client reaches it through the mapping") {
  grove::node n{{.threads = 2, .events = nullptr}};
  grove::erps::daemon_options serve; // the JSON codec
  serve.link.log = nullptr;
  const auto d = n.block_on(grove::erps::daemon::start<term_echo>(n, serve));
  grove::erps::client_options o;
  o.port = d.port();
  o.link.log = nullptr;
  o.connection.on_event = nullptr;
  const auto c = n.block_on(grove::erps::client::start(n, o));
  const json question = json{{"op", "get"}, {"keys", {1, 2.5, "x", nullptr}}};
  CHECK(n.block_on(c.call(question)) == question);
  c.cast(question);
  CHECK(n.block_on(c.call("last_cast")) == question); // kept as a term (binary keys, nil), mapped back the same
  (void)n.block_on(grove::stop(c.id()));
  n.block_on(d.shutdown(5s));
}

TEST_CASE("a codec with no view of a server's or client's values is refused at start, naming link.codec") {
  // A codec of plain strings: neither JSON nor terms, and no mapping to them.
  class text_codec final : public grove::erps::basic_codec<std::string> {
  public:
    std::string_view name() const noexcept override { return "text"; }
    void write_call(std::string& out, const std::string&, const std::string& r) const override { out += r; }
    void write_reply(std::string& out, const std::string&, const std::string& r) const override { out += r; }
    void write_value(std::string& out, const std::string& v) const override { out += v; }
    void write_error(std::string& out, const std::string*, std::string_view t) const override { out += t; }
    grove::erps::decoded_call<std::string> read_call(std::string_view p, const grove::erps::decode_limits&) const override {
      return {"", std::string(p)};
    }
    grove::erps::decoded_reply<std::string> read_reply(std::string_view p, const grove::erps::decode_limits&) const override {
      return {"", std::string(p)};
    }
    std::string read_value(std::string_view p, const grove::erps::decode_limits&) const override { return std::string(p); }
    grove::erps::decoded_error<std::string> read_error(std::string_view p, const grove::erps::decode_limits&) const override {
      return {std::nullopt, std::string(p)};
    }
    std::optional<std::string> read_call_id(std::string_view) const override { return std::nullopt; }
    std::optional<std::string> read_reply_id(std::string_view) const override { return std::nullopt; }
    std::string make_id(std::uint64_t n) const override { return std::to_string(n); }
    std::optional<std::uint64_t> id_number(const std::string&) const override { return std::nullopt; }
  };
  static const text_codec text;
  grove::node n{{.threads = 1, .events = nullptr}};
  grove::erps::daemon_options serve;
  serve.link.codec = &text;
  CHECK_THROWS_WITH(n.block_on(grove::erps::daemon::start<term_echo>(n, serve)),
                    doctest::Contains("daemon_options.link.codec: the text codec cannot carry Erlang terms"));
  grove::erps::client_options o;
  o.port = 1;
  o.link.codec = &text;
  CHECK_THROWS_WITH(n.block_on(grove::erps::client::start(n, o)),
                    doctest::Contains("client_options.link.codec: the text codec cannot carry JSON values"));
}

TEST_CASE("terms and JSON cross by the documented rules; what has no JSON form is refused by name") {
  using grove::erps::term;
  namespace etf = grove::erps::etf;
  const term t = term::map({{term::atom("op"), term::binary("get")},
                            {term::binary("n"), term::tuple({term::integer(std::int64_t{1}), term::floating(2.5)})},
                            {term::atom("flags"), term::list({term::atom("true"), term::atom("nil"), term::atom("x")})},
                            {term::atom("empty"), term()}});
  CHECK(etf::to_json(t) == json{{"op", "get"}, {"n", {1, 2.5}}, {"flags", {true, nullptr, "x"}}, {"empty", json::array()}});
  CHECK(etf::from_json(json{{"a", {1, "b", nullptr, false}}}) ==
        term::map({{term::binary("a"), term::list({term::integer(std::int64_t{1}), term::binary("b"), term::atom("nil"),
                                                   term::atom("false")})}}));
  CHECK(etf::to_json(term::integer(std::uint64_t{18446744073709551615u})) == json(18446744073709551615u));
  auto refused = [](const term& x) {
    try {
      (void)etf::to_json(x);
    } catch (const grove::erps::codec_error& e) {
      return std::string(e.what());
    }
    return std::string("converted");
  };
  CHECK(refused(term::big_integer(false, std::string(9, '\x01'))).find("past 64 bits") != std::string::npos);
  CHECK(refused(term::binary("\xff")).find("not UTF-8") != std::string::npos);
  CHECK(refused(term::list({term::atom("a")}, term::atom("b"))).find("improper list") != std::string::npos);
  CHECK(refused(term::map({{term::integer(std::int64_t{1}), term()}})).find("map key 1") != std::string::npos);
  CHECK(refused(term::map({{term::atom("k"), term()}, {term::binary("k"), term()}})).find("two keys named \"k\"") != std::string::npos);
  CHECK(refused(term::bit_binary("\x80", 1)).find("bit string") != std::string::npos);
}
