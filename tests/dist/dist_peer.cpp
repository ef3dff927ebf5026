// A second node for the dist tests, in a process of its own: starts node
// ID (argv[1]) with dist on 127.0.0.1, a free port, and the cookie argv[2]
// ("tls": mutual TLS with certs/ instead), runs dist_test::service, and
// prints one line: {"port":P,"node":ID,"creation":C,"service":"PID"}.
// Then serves until killed.
#include "dist_types.hpp"

#include <grove/core/node.hpp>

#include <nlohmann/json.hpp>

#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <string>

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: dist_peer NODE_ID COOKIE|tls [CERTS_DIR]\n");
    return 2;
  }
  dist_test::register_types();
  grove::node_options o;
  o.threads = 2;
  o.id = static_cast<std::uint32_t>(std::stoul(argv[1]));
  grove::node node(o);
  grove::dist::options d;
  const std::string secret = argv[2];
  if (secret == "tls") {
    dist_test::use_test_tls(d, argc > 3 ? argv[3] : "certs");
  } else {
    d.cookie = secret;
  }
  auto [dist, service] = node.block_on([&]() -> grove::awaitable<std::pair<std::shared_ptr<grove::dist::instance>, grove::pid>> {
    auto dist = co_await grove::dist::start(node, d);
    auto s = co_await grove::start<dist_test::service>(node);
    co_return std::make_pair(dist, s.id());
  }());
  nlohmann::json line{{"port", dist->port()}, {"node", node.id()}, {"creation", node.creation()}, {"service", service}};
  std::cout << line.dump() << std::endl;
  // Until the test kills it.
  for (;;) ::pause();
}
