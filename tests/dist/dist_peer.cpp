// A second node for the dist tests, in a process of its own: starts node
// ID (argv[1]) with dist on 127.0.0.1, a free port, and the cookie argv[2]
// ("tls": mutual TLS with the certificates in argv[3]), runs
// dist_test::service, and prints one line:
// {"port":P,"node":ID,"creation":C,"service":"PID"}. With an etcd URL
// (argv[4]) it also joins an etcd_registry there (its dist port as its
// endpoint; other nodes found through it, dist::options::resolve) and
// registers the service as "svc" first. Then serves until killed.
#include "dist_types.hpp"

#include <grove/core/node.hpp>
#include <grove/etcd/etcd_registry.hpp>

#include <nlohmann/json.hpp>

#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <memory>
#include <optional>
#include <string>

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: dist_peer NODE_ID COOKIE|tls [CERTS_DIR [ETCD_URL]]\n");
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
  const std::string etcd_url = argc > 4 ? argv[4] : "";
  auto registry = std::make_shared<std::unique_ptr<grove::etcd_registry>>();
  if (!etcd_url.empty()) {
    d.resolve = [registry](std::uint32_t id) { return *registry ? (*registry)->node_endpoint(id) : std::string(); };
  }
  std::optional<grove::etcd::client> etcd;
  if (!etcd_url.empty()) etcd.emplace(grove::etcd::client_options{.endpoints = {etcd_url}});
  auto [dist, service] = node.block_on([&]() -> grove::awaitable<std::pair<std::shared_ptr<grove::dist::instance>, grove::pid>> {
    auto dist = co_await grove::dist::start(node, d);
    auto s = co_await grove::start<dist_test::service>(node);
    if (!etcd_url.empty()) {
      grove::etcd_registry_options ro;
      ro.endpoint = "127.0.0.1:" + std::to_string(dist->port());
      *registry = co_await grove::etcd_registry::open(node, *etcd, ro);
      std::string name = "svc";
      co_await (*registry)->register_name(std::move(name), s.id());
    }
    co_return std::make_pair(dist, s.id());
  }());
  nlohmann::json line{{"port", dist->port()}, {"node", node.id()}, {"creation", node.creation()}, {"service", service}};
  std::cout << line.dump() << std::endl;
  // Until the test kills it.
  for (;;) ::pause();
}
