// The floor for scripts/bench-erps: the erps echo of erps_echo_server
// (echo_frames.hpp) on bare epoll, one thread, no Asio. Level-triggered,
// one read per readiness (no read that is known to return EAGAIN), into a
// buffer the thread shares: an idle connection holds its descriptor and
// two empty strings, nothing else.
//
//   epoll_echo_server [--port N] [--threads 1] [--dom]   prints {"event":"ready","port":N}
#include "echo_frames.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

namespace {

struct connection {
  explicit connection(int descriptor) : fd(descriptor) {}
  int fd;
  bool writing = false;    // waiting for EPOLLOUT
  std::string unread;      // the start of a frame a read cut short
  std::string unsent;      // replies the socket would not take yet
};

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "epoll_echo_server: %s: %s\n", what, std::strerror(errno));
  std::exit(1);
}

void close_connection(int ep, connection* c) {
  ::epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, nullptr);
  ::close(c->fd);
  delete c;
}

/// Writes what it can of `bytes`; keeps the rest in c->unsent and waits
/// for EPOLLOUT. False when the connection failed.
bool send_or_keep(int ep, connection* c, const char* bytes, std::size_t size) {
  std::size_t sent = 0;
  while (sent < size) {
    const ssize_t n = ::send(c->fd, bytes + sent, size - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<std::size_t>(n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      break;
    } else {
      return false;
    }
  }
  if (sent == size) return true;
  c->unsent.append(bytes + sent, size - sent);
  if (!c->writing) {
    epoll_event ev{.events = EPOLLIN | EPOLLOUT, .data = {.ptr = c}};
    if (::epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) != 0) return false;
    c->writing = true;
  }
  return true;
}

bool flush(int ep, connection* c) {
  std::string pending;
  pending.swap(c->unsent);
  if (!send_or_keep(ep, c, pending.data(), pending.size())) return false;
  if (c->unsent.empty() && c->writing) {
    epoll_event ev{.events = EPOLLIN, .data = {.ptr = c}};
    if (::epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) != 0) return false;
    c->writing = false;
  }
  return true;
}

/// One read, the frames it completed answered. False: close.
bool on_readable(int ep, connection* c, std::vector<char>& in, std::string& out, bool dom) {
  const std::size_t carried = c->unread.size();
  if (in.size() < carried + 16 * 1024) in.resize(carried + 16 * 1024);
  std::memcpy(in.data(), c->unread.data(), carried);
  const ssize_t n = ::recv(c->fd, in.data() + carried, in.size() - carried, 0);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return true;
  if (n <= 0) return false;
  const std::size_t filled = carried + static_cast<std::size_t>(n);
  out.clear();
  const long used = echo_frames::consume(in, filled, out, dom);
  if (used < 0) return false;
  c->unread.assign(in.data() + used, filled - static_cast<std::size_t>(used));
  if (c->unread.empty()) std::string().swap(c->unread); // hold nothing while idle
  if (out.empty()) return true;
  if (c->writing) { // replies queue behind what is already waiting
    c->unsent += out;
    return true;
  }
  return send_or_keep(ep, c, out.data(), out.size());
}

} // namespace

int main(int argc, char** argv) {
  unsigned short port = 0;
  bool dom = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--port" && i + 1 < argc) port = static_cast<unsigned short>(std::stoul(argv[++i]));
    else if (arg == "--threads" && i + 1 < argc && std::string(argv[i + 1]) == "1") ++i;
    else if (arg == "--dom") dom = true;
    else {
      std::cerr << "usage: epoll_echo_server [--port N] [--threads 1] [--dom]\n";
      return 2;
    }
  }
  const int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (listener < 0) fail("socket");
  const int one = 1;
  ::setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) fail("bind");
  if (::listen(listener, 1024) != 0) fail("listen");
  socklen_t len = sizeof addr;
  ::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len);

  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  ::sigprocmask(SIG_BLOCK, &stop_signals, nullptr);
  const int signals = ::signalfd(-1, &stop_signals, SFD_NONBLOCK | SFD_CLOEXEC);
  const int ep = ::epoll_create1(EPOLL_CLOEXEC);
  if (signals < 0 || ep < 0) fail("epoll");
  epoll_event ev{.events = EPOLLIN, .data = {.ptr = nullptr}};
  ::epoll_ctl(ep, EPOLL_CTL_ADD, listener, &ev);
  int signal_tag = 0;
  ev.data.ptr = &signal_tag;
  ::epoll_ctl(ep, EPOLL_CTL_ADD, signals, &ev);
  std::cout << "{\"event\":\"ready\",\"port\":" << ntohs(addr.sin_port) << "}" << std::endl;

  std::vector<char> in(64 * 1024); // shared by every connection: reads go here
  std::string out;
  std::vector<epoll_event> events(256);
  for (;;) {
    const int ready = ::epoll_wait(ep, events.data(), static_cast<int>(events.size()), -1);
    if (ready < 0) {
      if (errno == EINTR) continue;
      fail("epoll_wait");
    }
    for (int i = 0; i < ready; ++i) {
      void* tag = events[i].data.ptr;
      if (tag == &signal_tag) return 0;
      if (tag == nullptr) { // the listener
        for (int k = 0; k < 64; ++k) {
          const int fd = ::accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (fd < 0) break;
          ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          auto* c = new connection(fd);
          epoll_event cev{.events = EPOLLIN, .data = {.ptr = c}};
          if (::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev) != 0) {
            ::close(fd);
            delete c;
          }
        }
        continue;
      }
      auto* c = static_cast<connection*>(tag);
      bool ok = true;
      if (events[i].events & EPOLLOUT) ok = flush(ep, c);
      if (ok && (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) ok = on_readable(ep, c, in, out, dom);
      if (!ok) close_connection(ep, c);
    }
  }
}
