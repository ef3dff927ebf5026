#include "logger.hpp"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <string>

namespace groved {
namespace {

const char* level_name(log_level l) {
  switch (l) {
    case log_level::debug: return "debug";
    case log_level::info: return "info";
    case log_level::warning: return "warning";
    case log_level::error: return "error";
  }
  return "info";
}

std::string timestamp() {
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

// logfmt: bare when the value has no space, quote, '=' or control byte;
// otherwise a JSON string (same escapes).
void append_logfmt_value(std::string& out, const nlohmann::json& value) {
  if (!value.is_string()) {
    out += value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    return;
  }
  const auto& s = value.get_ref<const std::string&>();
  bool bare = !s.empty();
  for (unsigned char c : s) {
    if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c >= 0x7f) {
      bare = false;
      break;
    }
  }
  if (bare) {
    out += s;
  } else {
    out += value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }
}

log_level from_erps(grove::erps::log_level l) {
  switch (l) {
    case grove::erps::log_level::debug: return log_level::debug;
    case grove::erps::log_level::info: return log_level::info;
    case grove::erps::log_level::warning: return log_level::warning;
    case grove::erps::log_level::error: return log_level::error;
  }
  return log_level::info;
}

} // namespace

void logger::log(log_level level, std::string_view event, std::initializer_list<field> fields) const {
  if (!enabled(level)) return;
  std::string line;
  line.reserve(128);
  if (format_ == log_format::json) {
    nlohmann::json record = nlohmann::json::object();
    record["ts"] = timestamp();
    record["level"] = level_name(level);
    record["event"] = std::string(event);
    for (const auto& [key, value] : fields) record[std::string(key)] = value;
    line = record.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  } else {
    line += "ts=";
    line += timestamp();
    line += " level=";
    line += level_name(level);
    line += " event=";
    line += event;
    for (const auto& [key, value] : fields) {
      line += ' ';
      line += key;
      line += '=';
      append_logfmt_value(line, value);
    }
  }
  line += '\n';
  // One write per line, so lines from different threads never interleave.
  const char* at = line.data();
  std::size_t left = line.size();
  while (left > 0) {
    const ssize_t n = ::write(STDERR_FILENO, at, left);
    if (n <= 0) break;
    at += n;
    left -= static_cast<std::size_t>(n);
  }
}

grove::erps::log_function logger::erps_log(std::string listener) const {
  logger copy = *this;
  return [copy, listener = std::move(listener)](const grove::erps::log_record& r) {
    const log_level level = from_erps(r.level);
    if (!copy.enabled(level)) return;
    const std::string text(r.text);
    if (listener.empty()) {
      if (r.peer.empty()) {
        copy.log(level, r.event, {{"msg", text}});
      } else {
        copy.log(level, r.event, {{"peer", std::string(r.peer)}, {"msg", text}});
      }
    } else if (r.peer.empty()) {
      copy.log(level, r.event, {{"listener", listener}, {"msg", text}});
    } else {
      copy.log(level, r.event, {{"listener", listener}, {"peer", std::string(r.peer)}, {"msg", text}});
    }
  };
}

} // namespace groved
