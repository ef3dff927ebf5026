// Call round trips between two nodes over grove/dist (not part of `meson
// test`): forks itself as node 2 (an echo gen_server), then C callers on
// node 1 each call it in a loop for S seconds, one call in flight each.
// Prints one JSON line per caller count. Loopback, plain TCP with a cookie.
//
//   dist_calls [--seconds S] [--threads T] [--callers C[,C...]]
#include <grove/core/node.hpp>
#include <grove/dist/dist.hpp>

#include <nlohmann/json.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

namespace {

struct echo {
  using reply_type = std::string;
  std::string text;
};
void to_json(nlohmann::json& j, const echo& e) { j = e.text; }
void from_json(const nlohmann::json& j, echo& e) { e.text = j.get<std::string>(); }

class echo_server : public grove::gen_server {
public:
  std::string handle_call(echo e) { return std::move(e.text); }
};

struct done {
  std::uint64_t calls = 0;
  std::vector<std::uint32_t> micros;
};

constexpr const char* cookie = "dist-bench";

int run_peer(int out_fd) {
  grove::node node({.threads = 1, .id = 2});
  grove::dist::options o;
  o.cookie = cookie;
  auto [d, server] = node.block_on([&]() -> grove::awaitable<std::pair<std::shared_ptr<grove::dist::instance>, grove::pid>> {
    auto d = co_await grove::dist::start(node, o);
    auto s = co_await grove::start<echo_server>(node);
    co_return std::make_pair(d, s.id());
  }());
  const std::string line = nlohmann::json{{"port", d->port()}, {"server", server}}.dump() + "\n";
  if (::write(out_fd, line.data(), line.size()) < 0) return 1;
  ::close(out_fd);
  for (;;) ::pause();
}

} // namespace

int main(int argc, char** argv) {
  grove::dist::register_call<echo_server, echo>("bench.echo");
  int seconds = 3;
  std::size_t threads = 1;
  std::vector<int> callers{1, 16};
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--seconds") {
      seconds = std::clamp(std::atoi(argv[i + 1]), 1, 60);
    } else if (flag == "--threads") {
      threads = static_cast<std::size_t>(std::clamp(std::atoi(argv[i + 1]), 1, 64));
    } else if (flag == "--callers") {
      callers.clear();
      std::stringstream list(argv[i + 1]);
      for (std::string c; std::getline(list, c, ',');) callers.push_back(std::clamp(std::atoi(c.c_str()), 1, 1024));
    } else {
      std::fprintf(stderr, "usage: dist_calls [--seconds S] [--threads T] [--callers C[,C...]]\n");
      return 2;
    }
  }
  int fds[2];
  if (::pipe(fds) != 0) return 1;
  const pid_t child = ::fork();
  if (child == 0) {
    ::close(fds[0]);
    return run_peer(fds[1]);
  }
  ::close(fds[1]);
  std::string text;
  char buffer[512];
  for (ssize_t n; text.find('\n') == std::string::npos && (n = ::read(fds[0], buffer, sizeof buffer)) > 0;) text.append(buffer, std::size_t(n));
  ::close(fds[0]);
  const auto peer = nlohmann::json::parse(text.substr(0, text.find('\n')));
  const auto port = peer.at("port").get<std::uint16_t>();
  const grove::pid server = peer.at("server").get<grove::pid>();
  {
    grove::node node({.threads = threads, .id = 1});
    grove::dist::options o;
    o.cookie = cookie;
    auto d = node.block_on(grove::dist::start(node, o));
    node.block_on(d->connect("127.0.0.1", port));
    const std::string payload(48, 'x');
    for (int count : callers) {
      node.block_on([&](grove::process& self) -> grove::awaitable<void> {
        const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
        for (int c = 0; c < count; ++c) {
          grove::spawn(node, [&, me = self.self()](grove::process&) -> grove::awaitable<void> {
            grove::server_ref<echo_server> remote(server);
            done result;
            result.micros.reserve(1 << 16);
            while (std::chrono::steady_clock::now() < until) {
              const auto start = std::chrono::steady_clock::now();
              echo request{payload};
              std::string reply = co_await remote.call(std::move(request));
              result.micros.push_back(static_cast<std::uint32_t>(
                  std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start).count()));
              ++result.calls;
            }
            grove::send(me, std::move(result));
          });
        }
        std::uint64_t calls = 0;
        std::vector<std::uint32_t> micros;
        for (int c = 0; c < count; ++c) {
          auto m = co_await self.receive_for(std::chrono::seconds(seconds + 30));
          if (!m) break;
          if (auto* r = m->get_if<done>()) {
            calls += r->calls;
            micros.insert(micros.end(), r->micros.begin(), r->micros.end());
          }
        }
        std::sort(micros.begin(), micros.end());
        auto at = [&](double q) { return micros.empty() ? 0u : micros[std::size_t(q * double(micros.size() - 1))]; };
        std::cout << nlohmann::json{{"callers", count},
                                    {"threads", threads},
                                    {"calls_per_second", calls / std::uint64_t(seconds)},
                                    {"p50_us", at(0.5)},
                                    {"p99_us", at(0.99)}}
                         .dump()
                  << std::endl;
      });
    }
    d->stop();
  }
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  return 0;
}
