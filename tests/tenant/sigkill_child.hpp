// Test support: run work in a forked child, let it confirm progress through
// a pipe, and kill it with SIGKILL once enough was confirmed: what a
// durability test checks against afterwards.
#pragma once

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <functional>
#include <set>
#include <stdexcept>

namespace test_support {

struct killed_child {
  std::set<std::uint32_t> confirmed; ///< every number the child confirmed, including those read after the kill
  bool signalled = false;            ///< the child ended by the signal (not on its own)
};

/// Forks; the child runs work(confirm), where confirm(i) tells the parent
/// "i is done" and returns false once the parent is gone. The parent waits
/// (at most 20 s per confirmation) until `at_least` came, then kills the
/// child with SIGKILL. Call it with no other thread running in this process.
inline killed_child run_and_sigkill(const std::function<void(const std::function<bool(std::uint32_t)>&)>& work,
                                    std::size_t at_least) {
  int pipe_ends[2];
  if (::pipe(pipe_ends) != 0) throw std::runtime_error("pipe failed");
  const pid_t child = ::fork();
  if (child < 0) throw std::runtime_error("fork failed");
  if (child == 0) {
    ::close(pipe_ends[0]);
    try {
      work([fd = pipe_ends[1]](std::uint32_t i) { return ::write(fd, &i, sizeof i) == static_cast<ssize_t>(sizeof i); });
    } catch (...) {
      ::_exit(2);
    }
    ::_exit(0);
  }
  ::close(pipe_ends[1]);
  killed_child out;
  auto read_one = [&](int timeout_ms) {
    pollfd p{pipe_ends[0], POLLIN, 0};
    if (::poll(&p, 1, timeout_ms) <= 0) return false;
    std::uint32_t i = 0;
    if (::read(pipe_ends[0], &i, sizeof i) != static_cast<ssize_t>(sizeof i)) return false;
    out.confirmed.insert(i);
    return true;
  };
  while (out.confirmed.size() < at_least && read_one(20000)) {
  }
  ::kill(child, SIGKILL);
  int status = 0;
  ::waitpid(child, &status, 0);
  while (read_one(0)) { // confirmations still in the pipe
  }
  ::close(pipe_ends[0]);
  out.signalled = WIFSIGNALED(status);
  return out;
}

} // namespace test_support
