// grove and a real BEAM erps peer (tests/erps/erps_peer.escript: erps
// framing and term_to_binary over gen_tcp), with the ETF codec: an Erlang
// client of a grove daemon, and a grove client of an Erlang server.
#include <grove/core/node.hpp>
#include <grove/erps/client.hpp>
#include <grove/erps/daemon.hpp>
#include <grove/erps/etf.hpp>
#include <grove/erps/term_json.hpp>
#include <grove/erps/server.hpp>

#include "../child_process.hpp"

#include <doctest/doctest.h>

#include <filesystem>
#include <mutex>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using grove::erps::json;

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
  const std::string announced = erl.read_line(60s);
  REQUIRE(announced.rfind("port ", 0) == 0);
  grove::node n{{.threads = 2, .events = nullptr}};
  std::mutex m;
  std::vector<json> pushes;
  grove::erps::client_options o;
  o.port = static_cast<std::uint16_t>(std::stoi(announced.substr(5)));
  o.link.codec = &grove::erps::etf::etf_codec();
  o.link.log = nullptr;
  o.connection.on_event = nullptr;
  o.on_push = [&](const json& p) {
    std::lock_guard lock(m);
    pushes.push_back(p);
  };
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
