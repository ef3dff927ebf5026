// Test support: a real server the test starts as a child process (Python's
// http.server, s3rver), reads its announced port from, and stops. The
// child gets its own process group, so a server's own children stop too.
// Call it with no other thread of the test forking at the same time.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <stdexcept>
#include <string>
#include <vector>

namespace test_support {

class child_process {
public:
  /// Starts argv[0] (looked up in PATH) with stdout on a pipe the test reads.
  explicit child_process(std::vector<std::string> argv) : argv_(std::move(argv)) {
    int ends[2];
    if (::pipe2(ends, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
    // Built before fork: the child of a multithreaded process may call only
    // async-signal-safe functions until exec (a malloc there can deadlock on
    // a lock another thread held at the fork, ASan's allocator's say).
    std::vector<char*> args = exec_args(argv_);
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
      ::setpgid(0, 0);
      ::dup2(ends[1], STDOUT_FILENO);
      ::execvp(args[0], args.data());
      ::_exit(127);
    }
    ::setpgid(pid_, pid_); // (both sides: no race with the first kill)
    ::close(ends[1]);
    out_ = ends[0];
  }
  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;
  ~child_process() { stop(); }

  /// The next line the child writes (without its newline). Throws if none
  /// comes within `timeout` or the child closes its stdout.
  std::string read_line(std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      if (const auto nl = buffer_.find('\n'); nl != std::string::npos) {
        std::string line = buffer_.substr(0, nl);
        buffer_.erase(0, nl + 1);
        return line;
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
      if (left.count() <= 0) throw std::runtime_error(argv_[0] + ": no line within the timeout; read so far: " + buffer_);
      pollfd p{out_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      char chunk[4096];
      const ssize_t n = ::read(out_, chunk, sizeof chunk);
      if (n <= 0) throw std::runtime_error(argv_[0] + ": stdout closed (did it start? is it installed?); read: " + buffer_);
      buffer_.append(chunk, static_cast<std::size_t>(n));
    }
  }

  /// Reads lines until one contains `text`; returns it.
  std::string wait_for(const std::string& text, std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
      std::string line = read_line(std::max(left, std::chrono::milliseconds(1)));
      if (line.find(text) != std::string::npos) return line;
    }
  }

  /// Kills the child's process group (SIGKILL: the servers keep nothing
  /// the test needs) and reaps the child.
  void stop() {
    if (pid_ > 0) {
      ::kill(-pid_, SIGKILL);
      int status = 0;
      ::waitpid(pid_, &status, 0);
      pid_ = -1;
    }
    if (out_ >= 0) ::close(out_);
    out_ = -1;
  }

  /// Runs argv to its end (stdout and stderr as the test's); its exit
  /// status, or -1 if it did not exit normally.
  static int run(std::vector<std::string> argv) {
    std::vector<char*> args = exec_args(argv); // (before fork: see the constructor)
    const pid_t pid = ::fork();
    if (pid < 0) throw std::runtime_error("fork failed");
    if (pid == 0) {
      ::execvp(args[0], args.data());
      ::_exit(127);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

  /// argv as execvp takes it (pointing into `argv`, which must outlive it).
  static std::vector<char*> exec_args(std::vector<std::string>& argv) {
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    return args;
  }

private:
  std::vector<std::string> argv_;
  pid_t pid_ = -1;
  int out_ = -1;
  std::string buffer_;
};

} // namespace test_support
