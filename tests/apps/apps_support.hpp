// Running the apps as real processes in tests: groved started on port 0,
// grovectl and grove-bench driven through pipes. Every wait is bounded and
// waits for an event (a line of output, an exit), never a fixed sleep.
#pragma once

#include <nlohmann/json.hpp>

#include "../temp_dir.hpp"

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace apps_test {

using json = nlohmann::json;
using namespace std::chrono_literals;

/// Paths from the environment meson sets (GROVED, GROVECTL, GROVE_BENCH).
std::string groved_path();
std::string grovectl_path();
std::string grove_bench_path();
std::string certs_dir();

/// A fresh empty directory; removed by the destructor.
using temp_dir = test_support::temp_dir;

/// One child process with its stdin, stdout and stderr on pipes. Output is
/// collected by reader threads, so a chatty child never blocks.
class child {
public:
  explicit child(std::vector<std::string> argv, bool keep_stdin = false);
  ~child(); // kills it if still running
  child(const child&) = delete;
  child& operator=(const child&) = delete;

  pid_t pid() const noexcept { return pid_; }
  void write_stdin(const std::string& text);
  void close_stdin();
  void signal(int number);

  /// Waits until stdout (or stderr) holds `needle`; false after `timeout`.
  bool wait_stdout(const std::string& needle, std::chrono::milliseconds timeout = 30s);
  bool wait_stderr(const std::string& needle, std::chrono::milliseconds timeout = 30s);
  /// Waits until stderr holds `needle` at least `count` times.
  bool wait_stderr_count(const std::string& needle, std::size_t count, std::chrono::milliseconds timeout = 30s);
  /// Waits for the exit; the exit code, 128 + signal if killed, nullopt after `timeout`.
  std::optional<int> wait(std::chrono::milliseconds timeout = 60s);

  std::string out() const;
  std::string err() const;
  /// After the exit: waits for the readers to take the last output.
  void finish_output();

private:
  struct state;
  std::shared_ptr<state> state_;
  pid_t pid_ = -1;
  int stdin_fd_ = -1;
  std::vector<std::thread> threads_;
};

struct result {
  int status = -1; // exit code; 128 + signal if killed; -1 if it did not end in time (it was killed)
  std::string out;
  std::string err;
};

/// Runs a program to completion, `input` on its stdin.
result run(const std::vector<std::string>& argv, const std::string& input = {}, std::chrono::milliseconds timeout = 60s);

/// groved on 127.0.0.1, both listeners on port 0, logging JSON lines.
class groved {
public:
  /// `launcher` comes first on the command line (e.g. prlimit --fsize=N --).
  explicit groved(std::vector<std::string> extra = {}, std::vector<std::string> launcher = {});
  /// A groved that died of a sanitizer report or a crash (exit 66, SIGABRT,
  /// SIGSEGV, SIGBUS) fails the test with the end of its stderr, where the
  /// report is; otherwise it is killed if still running.
  ~groved();
  groved(groved&&) = default;
  groved& operator=(groved&&) = default;
  /// Sends SIGTERM and waits; the exit code.
  int stop(int signal_number = 15);

  std::uint16_t tcp_port() const noexcept { return tcp_; }
  std::uint16_t tls_port() const noexcept { return tls_; }
  /// The admin endpoint's port (with --admin.enabled=true --admin.port=0); 0 if off.
  std::uint16_t admin_port() const noexcept { return admin_; }
  child& process() noexcept { return *process_; }
  /// grovectl's flags to reach the plain TCP listener.
  std::vector<std::string> tcp() const;
  /// ... and the TLS listener with the test client certificate.
  std::vector<std::string> tls() const;

private:
  std::unique_ptr<child> process_;
  std::uint16_t tcp_ = 0;
  std::uint16_t tls_ = 0;
  std::uint16_t admin_ = 0;
};

/// grovectl FLAGS... script, with `lines` on stdin.
result script(const std::vector<std::string>& flags, const std::vector<json>& lines,
              std::chrono::milliseconds timeout = 60s);
/// grovectl FLAGS... ARGS...
result grovectl(const std::vector<std::string>& flags, const std::vector<std::string>& args);

/// stdout's JSON lines.
std::vector<json> json_lines(const std::string& text);

/// An erps frame as a hostile client writes it by hand: type 4 call, 8
/// cast; version 0.4.0, no identifier, unsigned.
std::string erps_frame(std::uint8_t type, const std::string& payload);

/// A plain TCP connection to 127.0.0.1:port speaking raw bytes (for input
/// grovectl would never send). Reads are bounded.
class raw_connection {
public:
  explicit raw_connection(std::uint16_t port);
  ~raw_connection();
  raw_connection(const raw_connection&) = delete;
  raw_connection& operator=(const raw_connection&) = delete;

  /// false once the peer has closed (or reset) the connection.
  bool send(const std::string& bytes);
  struct frame {
    std::uint8_t type = 0;
    std::string payload;
  };
  /// The next frame that is not a keepalive; nullopt on timeout or close.
  std::optional<frame> next_frame(std::chrono::milliseconds timeout = 10s);
  /// Whether the peer closes the connection within `timeout` (what it sends
  /// first is read and dropped).
  bool closed_within(std::chrono::milliseconds timeout);

private:
  bool fill(std::chrono::steady_clock::time_point deadline);
  int fd_ = -1;
  bool closed_ = false;
  std::string buffer_;
};

} // namespace apps_test
