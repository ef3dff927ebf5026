// The erps example of README.md (daemon + server + client), compiled and run.
#include <grove/erps/client.hpp>
#include <grove/erps/daemon.hpp>
#include <grove/erps/server.hpp>

#include <grove/core/node.hpp>

#include "../readme_check.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <string>
#include <vector>

namespace readme {

std::atomic<int> pushes_seen{0};

// --- README example begins
using grove::erps::json;

// The daemon runs one of these for each client connection.
class notes : public grove::erps::server {
public:
  explicit notes(std::string greeting) : greeting_(std::move(greeting)) {}

  json handle_call(grove::erps::call c) {
    const std::string op = c.request.at("op");
    if (op == "hello") return greeting_;
    if (op == "add") {
      notes_.push_back(c.request.at("text"));
      push(json{{"added", notes_.size()}}); // a push frame to this client
      return notes_.size();
    }
    return json{{"error", "unknown op " + op}};
  }

private:
  std::string greeting_;
  std::vector<json> notes_;
};

grove::awaitable<json> demo(grove::node& node) {
  grove::erps::daemon_options serve; // 127.0.0.1, a free port, plain TCP
  auto daemon = co_await grove::erps::daemon::start<notes>(node, serve, std::string("hi"));

  grove::erps::client_options connect;
  connect.port = daemon.port();
  connect.on_push = [](const json&) { ++pushes_seen; }; // runs in the client's process
  auto client = co_await grove::erps::client::start(node, connect);

  json hello = json{{"op", "hello"}};
  json add = json{{"op", "add"}, {"text", "buy milk"}};
  json greeting = co_await client.call(hello); // "hi"
  json count = co_await client.call(add);      // 1
  co_await daemon.shutdown(std::chrono::seconds(5)); // finishes calls in flight, then closes
  co_return json::array({greeting, count});
}
// --- README example ends

} // namespace readme

TEST_CASE("the README's erps example runs: a daemon, its per-client server, a client") {
  grove::node node{{.threads = 2}};
  CHECK(node.block_on(readme::demo(node)) == grove::erps::json::array({"hi", 1}));
  CHECK(readme::pushes_seen.load() == 1);
}

TEST_CASE("README.md shows the erps example verbatim") {
  CHECK(readme_check::readme_holds_example_of("tests/erps/readme_erps_test.cpp"));
}
