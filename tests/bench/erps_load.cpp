// A load client for erps servers that is not grove: plain sockets and one
// epoll loop on one thread, so what it measures is the server, not a grove
// client (scripts/bench-erps drives grove_echo_daemon and the hand-written
// erps_echo_server with it). Frames are written by hand: a 96-byte header
// ("erps", length, type, version 0.4.0), a JSON payload [id, request].
//
//   erps_load --port N --connections C --in-flight P [--size BYTES] [--seconds S] [--warmup S]
//       calls: C connections with P calls in flight each; a reply is
//       answered by the next call. Prints calls/s and latency percentiles.
//   erps_load --port N --connect-rate --connections C [--seconds S]
//       new connections: C at a time, each connects, makes one call, closes.
//   erps_load --port N --idle COUNT [--seconds S]
//       COUNT connections, one call each, then held idle for S seconds
//       (keepalives every 5 s); prints {"event":"idle",...} once all are open.
//
// Every run is bounded by --seconds (plus warm-up) and stops by itself.
#include "load_args.hpp"

#include <arpa/inet.h>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <vector>
#include <algorithm>

namespace {

using clock_type = std::chrono::steady_clock;

constexpr std::size_t header_size = 96;
constexpr std::size_t keepalive_size = 9;

[[noreturn]] void fail(const std::string& why) {
  std::fprintf(stderr, "erps_load: %s\n", why.c_str());
  std::exit(1);
}

std::string call_frame(std::uint64_t id, const std::string& value) {
  std::string frame(header_size, '\0');
  std::memcpy(frame.data(), "erps", 4);
  frame[8] = 4;  // call
  frame[10] = 4; // version 0.4.0
  frame.append("[").append(std::to_string(id)).append(",{\"op\":\"echo\",\"value\":\"").append(value).append("\"}]");
  const auto n = static_cast<std::uint32_t>(frame.size() - header_size);
  for (int i = 0; i < 4; ++i) frame[static_cast<std::size_t>(4 + i)] = static_cast<char>((n >> (24 - 8 * i)) & 0xff);
  return frame;
}

int open_connection(std::uint16_t port, bool wait_connected) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | (wait_connected ? 0 : SOCK_NONBLOCK), 0);
  if (fd < 0) fail(std::string("socket: ") + std::strerror(errno));
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  ::inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 && errno != EINPROGRESS) {
    fail(std::string("connect to 127.0.0.1:") + std::to_string(port) + ": " + std::strerror(errno));
  }
  if (wait_connected) ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  return fd;
}

struct connection {
  int fd = -1;
  std::string in;
  std::string out;
  std::size_t out_at = 0;
  std::deque<clock_type::time_point> sent; // calls in flight, in order
  bool want_write = false;
};

/// Takes whole frames from c.in; returns the number of replies (errors fail).
template <class OnReply>
std::size_t take_frames(connection& c, OnReply on_reply) {
  std::size_t at = 0, replies = 0;
  for (;;) {
    const std::size_t left = c.in.size() - at;
    if (left < keepalive_size) break;
    const char* h = c.in.data() + at;
    if (std::memcmp(h, "erps", 4) != 0) fail("the server sent bytes that are not an erps frame");
    const std::uint32_t length = (std::uint32_t(std::uint8_t(h[4])) << 24) | (std::uint32_t(std::uint8_t(h[5])) << 16) |
                                 (std::uint32_t(std::uint8_t(h[6])) << 8) | std::uint32_t(std::uint8_t(h[7]));
    if (length == 0 && h[8] == 0) {
      at += keepalive_size;
      continue;
    }
    if (left < header_size + length) break;
    if (h[8] == 1) fail("the server answered with an error frame: " + std::string(h + header_size, length));
    if (h[8] == 2) {
      ++replies;
      on_reply();
    }
    at += header_size + length;
  }
  c.in.erase(0, at);
  return replies;
}

bool read_into(connection& c) {
  char buf[64 * 1024];
  for (;;) {
    const ssize_t n = ::recv(c.fd, buf, sizeof buf, 0);
    if (n > 0) {
      c.in.append(buf, static_cast<std::size_t>(n));
      if (static_cast<std::size_t>(n) < sizeof buf) return true;
      continue;
    }
    if (n == 0) return false;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
    if (errno == EINTR) continue;
    return false;
  }
}

bool flush(connection& c) {
  while (c.out_at < c.out.size()) {
    const ssize_t n = ::send(c.fd, c.out.data() + c.out_at, c.out.size() - c.out_at, MSG_NOSIGNAL);
    if (n > 0) {
      c.out_at += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    if (n < 0 && errno == EINTR) continue;
    return false;
  }
  c.out.clear();
  c.out_at = 0;
  return true;
}

void set_interest(int ep, connection& c, std::size_t index, bool write) {
  if (write == c.want_write) return;
  c.want_write = write;
  epoll_event e{};
  e.events = write ? static_cast<std::uint32_t>(EPOLLIN | EPOLLOUT) : static_cast<std::uint32_t>(EPOLLIN);
  e.data.u64 = index;
  ::epoll_ctl(ep, EPOLL_CTL_MOD, c.fd, &e);
}

double percentile(std::vector<std::uint32_t>& v, double p) {
  if (v.empty()) return 0;
  const auto k = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return v[k];
}

int run_calls(std::uint16_t port, int connections, int in_flight, std::size_t size, double seconds, double warmup) {
  const std::string value(size, 'x');
  const int ep = ::epoll_create1(EPOLL_CLOEXEC);
  std::vector<connection> conns(static_cast<std::size_t>(connections));
  std::uint64_t next_id = 1;
  for (std::size_t i = 0; i < conns.size(); ++i) {
    conns[i].fd = open_connection(port, true);
    epoll_event e{};
    e.events = EPOLLIN;
    e.data.u64 = i;
    ::epoll_ctl(ep, EPOLL_CTL_ADD, conns[i].fd, &e);
  }
  const auto start = clock_type::now();
  const auto measure_from = start + std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(warmup));
  const auto stop_at = measure_from + std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(seconds));
  std::vector<std::uint32_t> latencies;
  latencies.reserve(1 << 20);
  std::uint64_t counted = 0, replies = 0;
  for (std::size_t i = 0; i < conns.size(); ++i) {
    for (int k = 0; k < in_flight; ++k) {
      conns[i].out += call_frame(next_id++, value);
      conns[i].sent.push_back(clock_type::now());
    }
    if (!flush(conns[i])) fail("the server closed a connection");
    set_interest(ep, conns[i], i, !conns[i].out.empty());
  }
  std::vector<epoll_event> events(256);
  bool stopping = false;
  std::size_t outstanding = static_cast<std::size_t>(connections) * static_cast<std::size_t>(in_flight);
  const auto give_up = stop_at + std::chrono::seconds(10);
  while (outstanding > 0) {
    const auto now = clock_type::now();
    if (now >= stop_at) stopping = true;
    if (now >= give_up) fail("calls still unanswered 10 s after the run ended");
    const int n = ::epoll_wait(ep, events.data(), static_cast<int>(events.size()), 100);
    for (int j = 0; j < n; ++j) {
      const std::size_t i = events[static_cast<std::size_t>(j)].data.u64;
      connection& c = conns[i];
      if (events[static_cast<std::size_t>(j)].events & EPOLLOUT) {
        if (!flush(c)) fail("the server closed a connection");
      }
      if (events[static_cast<std::size_t>(j)].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        if (!read_into(c)) fail("the server closed a connection");
        const auto got = clock_type::now();
        take_frames(c, [&] {
          if (c.sent.empty()) fail("a reply to no call");
          const auto sent = c.sent.front();
          c.sent.pop_front();
          --outstanding;
          ++replies;
          if (sent >= measure_from && got <= stop_at) {
            ++counted;
            latencies.push_back(static_cast<std::uint32_t>(
                std::chrono::duration_cast<std::chrono::microseconds>(got - sent).count()));
          }
          if (!stopping) {
            c.out += call_frame(next_id++, value);
            c.sent.push_back(got);
            ++outstanding;
          }
        });
        if (!flush(c)) fail("the server closed a connection");
      }
      set_interest(ep, c, i, !c.out.empty());
    }
  }
  for (auto& c : conns) ::close(c.fd);
  std::printf("{\"mode\":\"calls\",\"connections\":%d,\"in_flight\":%d,\"size\":%zu,\"calls_per_second\":%.0f,"
              "\"p50_us\":%.0f,\"p99_us\":%.0f,\"p999_us\":%.0f,\"replies\":%llu}\n",
              connections, in_flight, size, static_cast<double>(counted) / seconds, percentile(latencies, 0.5),
              percentile(latencies, 0.99), percentile(latencies, 0.999), static_cast<unsigned long long>(replies));
  return 0;
}

int run_connect_rate(std::uint16_t port, int lanes, double seconds) {
  const std::string frame = call_frame(1, "x");
  const int ep = ::epoll_create1(EPOLL_CLOEXEC);
  std::vector<connection> conns(static_cast<std::size_t>(lanes));
  auto open_lane = [&](std::size_t i) {
    connection& c = conns[i];
    c = connection{};
    c.fd = open_connection(port, false);
    c.out = frame;
    c.want_write = true;
    epoll_event e{};
    e.events = EPOLLIN | EPOLLOUT;
    e.data.u64 = i;
    ::epoll_ctl(ep, EPOLL_CTL_ADD, c.fd, &e);
  };
  const auto start = clock_type::now();
  const auto stop_at = start + std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(seconds));
  for (std::size_t i = 0; i < conns.size(); ++i) open_lane(i);
  std::uint64_t done = 0;
  std::size_t open = conns.size();
  std::vector<epoll_event> events(256);
  const auto give_up = stop_at + std::chrono::seconds(10);
  while (open > 0) {
    const auto now = clock_type::now();
    if (now >= give_up) fail("connections still open 10 s after the run ended");
    const int n = ::epoll_wait(ep, events.data(), static_cast<int>(events.size()), 100);
    for (int j = 0; j < n; ++j) {
      const std::size_t i = events[static_cast<std::size_t>(j)].data.u64;
      connection& c = conns[i];
      if (c.fd < 0) continue;
      if (events[static_cast<std::size_t>(j)].events & EPOLLOUT) {
        int err = 0;
        socklen_t len = sizeof err;
        ::getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) fail(std::string("connect: ") + std::strerror(err));
        if (!flush(c)) fail("the server closed a connection before the call");
        set_interest(ep, c, i, !c.out.empty());
      }
      if (events[static_cast<std::size_t>(j)].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        const bool alive = read_into(c);
        if (take_frames(c, [] {}) > 0) {
          ::close(c.fd); // (closing removes it from the epoll set)
          c.fd = -1;
          ++done;
          if (clock_type::now() < stop_at) {
            open_lane(i);
          } else {
            --open;
          }
        } else if (!alive) {
          fail("the server closed a connection before answering");
        }
      }
    }
  }
  const double elapsed = std::chrono::duration<double>(clock_type::now() - start).count();
  std::printf("{\"mode\":\"connect_rate\",\"lanes\":%d,\"connections\":%llu,\"per_second\":%.0f}\n", lanes,
              static_cast<unsigned long long>(done), static_cast<double>(done) / elapsed);
  return 0;
}

int run_idle(std::uint16_t port, int count, double seconds) {
  const std::string frame = call_frame(1, "x");
  std::vector<connection> conns;
  conns.reserve(static_cast<std::size_t>(count));
  for (int i = 0; i < count; ++i) {
    connection c;
    c.fd = open_connection(port, true);
    c.out = frame;
    if (!flush(c) || !c.out.empty()) fail("could not send the first call");
    conns.push_back(std::move(c));
  }
  // Every connection's reply, in a bounded wait each.
  for (auto& c : conns) {
    const int fl = ::fcntl(c.fd, F_GETFL);
    ::fcntl(c.fd, F_SETFL, fl & ~O_NONBLOCK);
    timeval tv{10, 0};
    ::setsockopt(c.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    while (take_frames(c, [] {}) == 0) {
      char buf[4096];
      const ssize_t n = ::recv(c.fd, buf, sizeof buf, 0);
      if (n <= 0) fail("no reply on an idle connection within 10 s");
      c.in.append(buf, static_cast<std::size_t>(n));
    }
  }
  std::printf("{\"event\":\"idle\",\"connections\":%d}\n", count);
  std::fflush(stdout);
  // Held until the deadline, waiting on the sockets themselves: what the
  // server sends (its keepalives) is read and dropped, a close fails the
  // run, and a keepalive goes out every 5 s so the server keeps them.
  const int ep = ::epoll_create1(EPOLL_CLOEXEC);
  for (std::size_t i = 0; i < conns.size(); ++i) {
    ::fcntl(conns[i].fd, F_SETFL, ::fcntl(conns[i].fd, F_GETFL) | O_NONBLOCK);
    epoll_event e{};
    e.events = EPOLLIN;
    e.data.u64 = i;
    ::epoll_ctl(ep, EPOLL_CTL_ADD, conns[i].fd, &e);
  }
  const auto stop_at = clock_type::now() + std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(seconds));
  const std::string keepalive("erps\0\0\0\0\0", keepalive_size);
  auto next_keepalive = clock_type::now() + std::chrono::seconds(5);
  std::vector<epoll_event> events(256);
  for (auto now = clock_type::now(); now < stop_at; now = clock_type::now()) {
    if (now >= next_keepalive) {
      for (auto& c : conns) ::send(c.fd, keepalive.data(), keepalive.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      next_keepalive = now + std::chrono::seconds(5);
    }
    const auto until = std::min(stop_at, next_keepalive);
    const auto wait_ms = std::chrono::duration_cast<std::chrono::milliseconds>(until - now).count() + 1;
    const int n = ::epoll_wait(ep, events.data(), static_cast<int>(events.size()), static_cast<int>(wait_ms));
    for (int j = 0; j < n; ++j) {
      connection& c = conns[events[static_cast<std::size_t>(j)].data.u64];
      if (!read_into(c)) fail("the server closed an idle connection");
      take_frames(c, [] {});
    }
  }
  ::close(ep);
  for (auto& c : conns) ::close(c.fd);
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  const load_args::options o = load_args::parse(argc, argv, "erps_load");
  const auto port = static_cast<std::uint16_t>(o.port);
  if (o.idle > 0) return run_idle(port, static_cast<int>(o.idle), o.seconds);
  if (o.connect_rate) return run_connect_rate(port, static_cast<int>(o.connections), o.seconds);
  return run_calls(port, static_cast<int>(o.connections), static_cast<int>(o.in_flight), static_cast<std::size_t>(o.size),
                   o.seconds, o.warmup);
}
