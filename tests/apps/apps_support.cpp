#include "apps_support.hpp"

#include <csignal>

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <sstream>
#include <stdexcept>

extern char** environ;

namespace apps_test {
namespace {

std::string from_env(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) throw std::runtime_error(std::string(name) + " is not set (meson test sets it)");
  return v;
}

} // namespace

std::string groved_path() { return from_env("GROVED"); }
std::string grovectl_path() { return from_env("GROVECTL"); }
std::string grove_bench_path() { return from_env("GROVE_BENCH"); }
std::string certs_dir() { return std::string(GROVE_SOURCE_ROOT) + "/certs"; }

struct child::state {
  std::mutex mutex;
  std::condition_variable changed;
  std::string out;
  std::string err;
  std::optional<int> status;
};

child::child(std::vector<std::string> argv, bool keep_stdin) : state_(std::make_shared<state>()) {
  int in[2], out[2], err[2];
  if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) {
    throw std::runtime_error("pipe2 failed");
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in[0], 0);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  posix_spawn_file_actions_adddup2(&actions, err[1], 2);
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  const int rc = ::posix_spawnp(&pid_, args[0], &actions, nullptr, args.data(), environ); // (PATH for curl, promtool)
  posix_spawn_file_actions_destroy(&actions);
  ::close(in[0]);
  ::close(out[1]);
  ::close(err[1]);
  if (rc != 0) {
    ::close(in[1]);
    ::close(out[0]);
    ::close(err[0]);
    throw std::runtime_error("cannot start " + argv[0] + ": " + std::strerror(rc));
  }
  stdin_fd_ = in[1];
  if (!keep_stdin) close_stdin();
  auto reader = [s = state_](int fd, bool is_err) {
    char buffer[4096];
    for (;;) {
      const ssize_t n = ::read(fd, buffer, sizeof buffer);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      std::lock_guard lock(s->mutex);
      (is_err ? s->err : s->out).append(buffer, static_cast<std::size_t>(n));
      s->changed.notify_all();
    }
    ::close(fd);
  };
  threads_.emplace_back(reader, out[0], false);
  threads_.emplace_back(reader, err[0], true);
  threads_.emplace_back([s = state_, p = pid_] {
    int status = 0;
    while (::waitpid(p, &status, 0) < 0 && errno == EINTR) {
    }
    std::lock_guard lock(s->mutex);
    s->status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    s->changed.notify_all();
  });
}

child::~child() {
  close_stdin();
  {
    std::lock_guard lock(state_->mutex);
    if (!state_->status) ::kill(pid_, SIGKILL);
  }
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
}

void child::finish_output() {
  // The readers end at EOF, once the child (and so its end of each pipe) is gone.
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
}

void child::write_stdin(const std::string& text) {
  const char* at = text.data();
  std::size_t left = text.size();
  while (left > 0 && stdin_fd_ >= 0) {
    const ssize_t n = ::write(stdin_fd_, at, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    at += n;
    left -= static_cast<std::size_t>(n);
  }
}

void child::close_stdin() {
  if (stdin_fd_ >= 0) ::close(stdin_fd_);
  stdin_fd_ = -1;
}

void child::signal(int number) { ::kill(pid_, number); }

bool child::wait_stdout(const std::string& needle, std::chrono::milliseconds timeout) {
  std::unique_lock lock(state_->mutex);
  return state_->changed.wait_for(lock, timeout, [&] {
    return state_->out.find(needle) != std::string::npos || state_->status.has_value();
  }) && state_->out.find(needle) != std::string::npos;
}

bool child::wait_stderr(const std::string& needle, std::chrono::milliseconds timeout) {
  std::unique_lock lock(state_->mutex);
  return state_->changed.wait_for(lock, timeout, [&] {
    return state_->err.find(needle) != std::string::npos || state_->status.has_value();
  }) && state_->err.find(needle) != std::string::npos;
}

bool child::wait_stderr_count(const std::string& needle, std::size_t count, std::chrono::milliseconds timeout) {
  auto seen = [&] {
    std::size_t n = 0;
    for (std::size_t at = 0; (at = state_->err.find(needle, at)) != std::string::npos; at += needle.size()) ++n;
    return n >= count;
  };
  std::unique_lock lock(state_->mutex);
  return state_->changed.wait_for(lock, timeout, [&] { return seen() || state_->status.has_value(); }) && seen();
}

std::optional<int> child::wait(std::chrono::milliseconds timeout) {
  std::unique_lock lock(state_->mutex);
  state_->changed.wait_for(lock, timeout, [&] { return state_->status.has_value(); });
  return state_->status;
}

std::string child::out() const {
  std::lock_guard lock(state_->mutex);
  return state_->out;
}

std::string child::err() const {
  std::lock_guard lock(state_->mutex);
  return state_->err;
}

result run(const std::vector<std::string>& argv, const std::string& input, std::chrono::milliseconds timeout) {
  result r;
  {
    child c(argv, true);
    c.write_stdin(input);
    c.close_stdin();
    std::optional<int> status = c.wait(timeout);
    if (!status) {
      c.signal(SIGKILL);
      c.wait(10s);
    }
    r.status = status.value_or(-1);
    c.finish_output();
    r.out = c.out();
    r.err = c.err();
  }
  return r;
}

groved::groved(std::vector<std::string> extra, std::vector<std::string> launcher) {
  std::vector<std::string> argv = std::move(launcher);
  for (std::string a : {groved_path(), std::string("--tcp.port=0"), std::string("--tls.port=0"),
                        std::string("--log.format=json"), std::string("--workers=2")}) {
    argv.push_back(std::move(a));
  }
  argv.insert(argv.end(), extra.begin(), extra.end());
  process_ = std::make_unique<child>(argv);
  if (!process_->wait_stdout("\n", 60s)) {
    FAIL("groved did not get ready; stderr:\n" << process_->err());
  }
  json ready = json::parse(process_->out().substr(0, process_->out().find('\n')));
  if (ready.contains("tcp")) tcp_ = ready["tcp"]["port"].get<std::uint16_t>();
  if (ready.contains("tls")) tls_ = ready["tls"]["port"].get<std::uint16_t>();
  if (ready.contains("admin")) admin_ = ready["admin"]["port"].get<std::uint16_t>();
}

groved::~groved() {
  if (!process_) return;
  const std::optional<int> status = process_->wait(std::chrono::milliseconds(0));
  if (status && (*status == 66 || *status == 128 + SIGABRT || *status == 128 + SIGSEGV || *status == 128 + SIGBUS)) {
    process_->finish_output();
    const std::string err = process_->err();
    FAIL_CHECK("groved died with status " << *status << "; the end of its stderr:\n"
                                          << err.substr(err.size() > 12000 ? err.size() - 12000 : 0));
  }
}

int groved::stop(int signal_number) {
  process_->signal(signal_number);
  std::optional<int> status = process_->wait(60s);
  if (!status) {
    // A hang: where each of its threads is, for whoever reads the failure.
    const result stacks = run({"gdb", "-p", std::to_string(process_->pid()), "-batch", "-ex", "thread apply all bt"}, {}, 60s);
    FAIL("groved did not stop within 60 s; its threads (gdb, status " << stacks.status << "):\n"
                                                                      << stacks.out << stacks.err << "\nstderr:\n"
                                                                      << process_->err());
  }
  return *status;
}

std::vector<std::string> groved::tcp() const { return {"--port", std::to_string(tcp_)}; }

std::vector<std::string> groved::tls() const {
  return {"--port", std::to_string(tls_), "--ca", certs_dir() + "/ca.pem", "--cert", certs_dir() + "/client.pem",
          "--key", certs_dir() + "/client.key"};
}

result script(const std::vector<std::string>& flags, const std::vector<json>& lines, std::chrono::milliseconds timeout) {
  std::vector<std::string> argv{grovectl_path()};
  argv.insert(argv.end(), flags.begin(), flags.end());
  argv.push_back("script");
  std::string input;
  for (const auto& l : lines) input += l.dump() + "\n";
  return run(argv, input, timeout);
}

result grovectl(const std::vector<std::string>& flags, const std::vector<std::string>& args) {
  std::vector<std::string> argv{grovectl_path()};
  argv.insert(argv.end(), flags.begin(), flags.end());
  argv.insert(argv.end(), args.begin(), args.end());
  return run(argv);
}

std::vector<json> json_lines(const std::string& text) {
  std::vector<json> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    json v = json::parse(line, nullptr, false);
    if (!v.is_discarded()) out.push_back(std::move(v));
  }
  return out;
}

std::string erps_frame(std::uint8_t type, const std::string& payload) {
  std::string frame(96, '\0');
  frame.replace(0, 4, "erps");
  const auto n = static_cast<std::uint32_t>(payload.size());
  for (int i = 0; i < 4; ++i) frame[4 + i] = static_cast<char>((n >> (24 - 8 * i)) & 0xff);
  frame[8] = static_cast<char>(type);
  frame[10] = 4; // version 0.4.0
  return frame + payload;
}

raw_connection::raw_connection(std::uint16_t port) {
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) throw std::runtime_error("socket failed");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  ::inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd_);
    throw std::runtime_error("connect to 127.0.0.1:" + std::to_string(port) + " failed");
  }
}

raw_connection::~raw_connection() { ::close(fd_); }

bool raw_connection::send(const std::string& bytes) {
  std::size_t at = 0;
  while (at < bytes.size()) {
    const auto n = ::send(fd_, bytes.data() + at, bytes.size() - at, MSG_NOSIGNAL);
    if (n <= 0) return false;
    at += static_cast<std::size_t>(n);
  }
  return true;
}

bool raw_connection::fill(std::chrono::steady_clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
  if (left <= 0ms || closed_) return false;
  pollfd p{fd_, POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
  char chunk[65536];
  const auto n = ::recv(fd_, chunk, sizeof chunk, 0);
  if (n <= 0) {
    closed_ = true;
    return false;
  }
  buffer_.append(chunk, static_cast<std::size_t>(n));
  return true;
}

std::optional<raw_connection::frame> raw_connection::next_frame(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (buffer_.size() >= 9 && buffer_[8] == 0) { // a keepalive
      buffer_.erase(0, 9);
      continue;
    }
    if (buffer_.size() >= 96) {
      std::uint32_t n = 0;
      for (int i = 0; i < 4; ++i) n = (n << 8) | static_cast<unsigned char>(buffer_[4 + i]);
      if (buffer_.size() >= 96 + std::size_t{n}) {
        frame f{static_cast<std::uint8_t>(buffer_[8]), buffer_.substr(96, n)};
        buffer_.erase(0, 96 + std::size_t{n});
        return f;
      }
    }
    if (!fill(deadline)) return std::nullopt;
  }
}

bool raw_connection::closed_within(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!closed_) {
    buffer_.clear();
    if (!fill(deadline)) break;
  }
  return closed_;
}

} // namespace apps_test
