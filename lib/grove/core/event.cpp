#include <grove/core/detail/runtime.hpp>
#include <grove/core/event.hpp>
#include <grove/core/node.hpp>

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <exception>

namespace grove {
namespace {

std::string timestamp_now() {
  const auto now = std::chrono::system_clock::now();
  const std::time_t t = std::chrono::system_clock::to_time_t(now);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
  return buffer;
}

void append_quoted(std::string& out, std::string_view v) {
  bool bare = !v.empty();
  for (unsigned char c : v) {
    if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c >= 0x7f) {
      bare = false;
      break;
    }
  }
  if (bare) {
    out += v;
    return;
  }
  out += '"';
  for (unsigned char c : v) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c < ' ') {
      char esc[8];
      std::snprintf(esc, sizeof esc, "\\u%04x", c);
      out += esc;
    } else {
      out += static_cast<char>(c);
    }
  }
  out += '"';
}

void deliver(const event_sink& sink, const event& e) noexcept {
  try {
    sink(e);
  } catch (const std::exception& ex) {
    static std::atomic<bool> said{false};
    if (!said.exchange(true)) std::fprintf(stderr, "grove: the event sink threw (%s); its events are dropped\n", ex.what());
  } catch (...) {
    static std::atomic<bool> said{false};
    if (!said.exchange(true)) std::fprintf(stderr, "grove: the event sink threw; its events are dropped\n");
  }
}

} // namespace

std::string log_timestamp() { return timestamp_now(); }
void append_logfmt_value(std::string& out, std::string_view value) { append_quoted(out, value); }

std::string_view to_string(event_level level) noexcept {
  switch (level) {
  case event_level::debug: return "debug";
  case event_level::info: return "info";
  case event_level::warning: return "warning";
  case event_level::error: return "error";
  }
  return "info";
}

std::string_view event::field(std::string_view key) const noexcept {
  for (const event_field& f : fields) {
    if (f.key == key) return f.value;
  }
  return {};
}

std::string to_logfmt(const event& e) {
  std::string line;
  line.reserve(96);
  line += "ts=";
  line += log_timestamp();
  line += " level=";
  line += to_string(e.level);
  line += " layer=";
  append_logfmt_value(line, e.layer);
  line += " event=";
  append_logfmt_value(line, e.name);
  for (const event_field& f : e.fields) {
    line += ' ';
    line += f.key;
    line += '=';
    append_logfmt_value(line, f.value);
  }
  return line;
}

void logfmt_to_stderr(const event& e) {
  std::string line = to_logfmt(e);
  line += '\n';
  write_log_line(line);
}

void write_log_line(std::string_view line) noexcept {
  const char* at = line.data();
  std::size_t left = line.size();
  while (left > 0) {
    const ssize_t n = ::write(STDERR_FILENO, at, left);
    if (n <= 0) break;
    at += n;
    left -= static_cast<std::size_t>(n);
  }
}

void emit(node& n, const event& e) {
  const node_options& o = n.state().options;
  if (!o.events || e.level < o.min_event_level) return;
  deliver(o.events, e);
}

void emit(const event& e) {
  if (detail::worker* w = detail::this_worker) {
    const node_options& o = w->owner.options;
    if (!o.events || e.level < o.min_event_level) return;
    deliver(o.events, e);
    return;
  }
  if (e.level >= event_level::info) deliver(logfmt_to_stderr, e);
}

} // namespace grove
