// The payload example of README.md (a store that keeps what clients put as
// the text it came as), compiled and run.
#include <grove/erps/daemon.hpp>
#include <grove/erps/payloads.hpp>

#include <grove/core/node.hpp>

#include "../readme_check.hpp"

#include <doctest/doctest.h>

#include <map>
#include <string>

namespace readme {

// --- README example begins
using grove::erps::payload;

// Keeps {"op":"put","key":K,"value":V} and answers {"op":"get","key":K}
// with V, byte for byte. Only "op" and "key" are parsed; V never is.
class blob_store : public grove::erps::payload_server {
public:
  payload handle_call(grove::erps::payload_call c) {
    const std::string op = c.request.find("op").value_or(payload()).value().get<std::string>();
    const std::string key = c.request.find("key").value_or(payload()).value().get<std::string>();
    if (op == "put") {
      blobs_[key] = c.request.find("value").value_or(payload());
      return grove::erps::json(true);
    }
    auto it = blobs_.find(key);
    return it == blobs_.end() ? payload() : it->second;
  }

private:
  std::map<std::string, payload> blobs_;
};

grove::awaitable<std::string> round_trip(grove::node& node) {
  grove::erps::daemon_options serve; // (named: see "g++ 12 and coroutines")
  auto daemon = co_await grove::erps::daemon::start<blob_store>(node, serve);
  grove::erps::payload_client_options connect;
  connect.port = daemon.port();
  auto client = co_await grove::erps::payload_client::start(node, connect);

  payload put = payload::parse(R"({"op":"put","key":"a","value":{ "kept" : [1, 2.50] }})");
  payload get = payload::parse(R"({"op":"get","key":"a"})");
  co_await client.call(put);
  payload got = co_await client.call(get);
  co_await daemon.shutdown(std::chrono::seconds(5));
  co_return std::string(got.text()); // { "kept" : [1, 2.50] }, as it was sent
}
// --- README example ends

} // namespace readme

TEST_CASE("the README's payload example runs: a value stored and handed back as its text") {
  grove::node node{{.threads = 2}};
  CHECK(node.block_on(readme::round_trip(node)) == R"({ "kept" : [1, 2.50] })");
}

TEST_CASE("README.md shows the payload example verbatim") {
  CHECK(readme_check::readme_holds_example_of("tests/erps/readme_payload_test.cpp"));
}
