// Test support: headless Chromium driven over the DevTools protocol on a
// pipe (--remote-debugging-pipe: commands on its fd 3, answers and events
// on its fd 4, each message a JSON text ended by a NUL byte). No WebSocket,
// no port: the test owns both ends. Every wait is bounded.
#pragma once

#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

namespace test_support {

class headless_browser {
public:
  /// Starts Chromium with a fresh profile under `profile_dir` and opens one
  /// blank page.
  explicit headless_browser(const std::filesystem::path& profile_dir) {
    int commands[2], answers[2];
    if (::pipe2(commands, O_CLOEXEC) != 0 || ::pipe2(answers, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
    std::vector<std::string> argv{"chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                                  "--disable-extensions", "--remote-debugging-pipe", "--window-size=1280,900",
                                  "--user-data-dir=" + profile_dir.string(), "about:blank"};
    // Built before fork: until exec the child may call only async-signal-safe
    // functions (no malloc: another thread may have held its lock at the fork).
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
      ::setpgid(0, 0);
      // dup2 clears close-on-exec on the copies: fds 3 and 4 survive exec.
      if (::dup2(commands[0], 3) < 0 || ::dup2(answers[1], 4) < 0) ::_exit(126);
      const int null = ::open("/dev/null", O_WRONLY);
      if (null >= 0) ::dup2(null, STDERR_FILENO); // Chromium's own chatter
      ::execvp(args[0], args.data());
      ::_exit(127);
    }
    ::setpgid(pid_, pid_);
    ::close(commands[0]);
    ::close(answers[1]);
    to_ = commands[1];
    from_ = answers[0];
    const nlohmann::json target = command("Target.createTarget", {{"url", "about:blank"}});
    const nlohmann::json attached =
        command("Target.attachToTarget", {{"targetId", target.at("targetId")}, {"flatten", true}});
    session_ = attached.at("sessionId").get<std::string>();
    command("Page.enable", nlohmann::json::object(), session_);
  }
  headless_browser(const headless_browser&) = delete;
  headless_browser& operator=(const headless_browser&) = delete;
  ~headless_browser() {
    if (to_ >= 0) ::close(to_);
    if (from_ >= 0) ::close(from_);
    if (pid_ > 0) {
      ::kill(-pid_, SIGKILL);
      int status = 0;
      ::waitpid(pid_, &status, 0);
    }
  }

  /// Opens `url` in the page and waits for its load event.
  void navigate(const std::string& url) {
    seen_load_ = false;
    command("Page.navigate", {{"url", url}}, session_);
    const auto until = clock::now() + timeout_;
    while (!seen_load_) read_message(until);
  }

  /// Evaluates `expression` in the page; a promise is awaited. Returns its
  /// value (JSON). Throws if it threw, or no answer came within the timeout.
  nlohmann::json evaluate(const std::string& expression) {
    const nlohmann::json r = command(
        "Runtime.evaluate", {{"expression", expression}, {"awaitPromise", true}, {"returnByValue", true}}, session_);
    if (r.contains("exceptionDetails")) throw std::runtime_error("page: " + r["exceptionDetails"].dump());
    return r.at("result").value("value", nlohmann::json());
  }

  /// Waits (on the page's own DOM mutations, no polling) until
  /// `condition` (a JavaScript expression) is truthy, then returns
  /// `result` (another expression) evaluated at that moment.
  nlohmann::json when(const std::string& condition, const std::string& result) {
    const std::string js = "new Promise((resolve) => {"
                           "  const ok = () => { try { return !!(" + condition + "); } catch (e) { return false; } };"
                           "  const done = () => resolve(" + result + ");"
                           "  if (ok()) return done();"
                           "  new MutationObserver((m, o) => { if (ok()) { o.disconnect(); done(); } })"
                           "    .observe(document, {subtree: true, childList: true, characterData: true, attributes: true});"
                           "})";
    return evaluate(js);
  }

  /// A PNG of the page as it is now.
  std::string screenshot_png() {
    const nlohmann::json r = command("Page.captureScreenshot", {{"format", "png"}}, session_);
    return decode_base64(r.at("data").get<std::string>());
  }

private:
  using clock = std::chrono::steady_clock;

  nlohmann::json command(const std::string& method, nlohmann::json params, const std::string& session = {}) {
    const int id = ++last_id_;
    nlohmann::json m{{"id", id}, {"method", method}, {"params", std::move(params)}};
    if (!session.empty()) m["sessionId"] = session;
    std::string bytes = m.dump();
    bytes.push_back('\0');
    for (std::size_t at = 0; at < bytes.size();) {
      const ssize_t n = ::write(to_, bytes.data() + at, bytes.size() - at);
      if (n <= 0) throw std::runtime_error("chromium: the command pipe closed");
      at += static_cast<std::size_t>(n);
    }
    const auto until = clock::now() + timeout_;
    for (;;) {
      nlohmann::json answer = read_message(until);
      if (answer.value("id", 0) != id) continue;
      if (answer.contains("error")) throw std::runtime_error(method + ": " + answer["error"].dump());
      return answer.value("result", nlohmann::json::object());
    }
  }

  nlohmann::json read_message(clock::time_point until) {
    for (;;) {
      if (const auto end = buffer_.find('\0'); end != std::string::npos) {
        nlohmann::json m = nlohmann::json::parse(buffer_.substr(0, end));
        buffer_.erase(0, end + 1);
        if (m.value("method", "") == "Page.loadEventFired") seen_load_ = true;
        return m;
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - clock::now());
      if (left.count() <= 0) throw std::runtime_error("chromium: no answer within the timeout");
      pollfd p{from_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      char chunk[65536];
      const ssize_t n = ::read(from_, chunk, sizeof chunk);
      if (n <= 0) throw std::runtime_error("chromium: the answer pipe closed (did it start?)");
      buffer_.append(chunk, static_cast<std::size_t>(n));
    }
  }

  static std::string decode_base64(const std::string& in) {
    std::string out;
    unsigned value = 0;
    int bits = -8;
    for (unsigned char c : in) {
      int d;
      if (c >= 'A' && c <= 'Z') d = c - 'A';
      else if (c >= 'a' && c <= 'z') d = c - 'a' + 26;
      else if (c >= '0' && c <= '9') d = c - '0' + 52;
      else if (c == '+') d = 62;
      else if (c == '/') d = 63;
      else continue; // padding, line breaks
      value = (value << 6) | static_cast<unsigned>(d);
      bits += 6;
      if (bits >= 0) {
        out.push_back(static_cast<char>((value >> bits) & 0xFF));
        bits -= 8;
      }
    }
    return out;
  }

  pid_t pid_ = -1;
  int to_ = -1, from_ = -1;
  int last_id_ = 0;
  std::string session_;
  std::string buffer_;
  bool seen_load_ = false;
  std::chrono::seconds timeout_{30};
};

} // namespace test_support
