#include "logger.hpp"

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

// logfmt: a string as grove writes event values (bare, or quoted with
// escapes); anything else as its JSON text.
void append_logfmt_value(std::string& out, const nlohmann::json& value) {
  if (value.is_string()) {
    grove::append_logfmt_value(out, value.get_ref<const std::string&>());
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
  log(level, event, std::vector<field>(fields));
}

grove::event_sink logger::events() const {
  logger copy = *this;
  return [copy](const grove::event& e) {
    static constexpr log_level levels[] = {log_level::debug, log_level::info, log_level::warning, log_level::error};
    const log_level level = levels[static_cast<std::size_t>(e.level)];
    if (!copy.enabled(level)) return;
    std::vector<field> fields{{"layer", std::string(e.layer)}};
    for (const auto& f : e.fields) fields.emplace_back(f.key, f.value);
    copy.log(level, e.name, fields);
  };
}

void logger::log(log_level level, std::string_view event, const std::vector<field>& fields) const {
  if (!enabled(level)) return;
  std::string line;
  line.reserve(128);
  if (format_ == log_format::json) {
    nlohmann::json record = nlohmann::json::object();
    record["ts"] = grove::log_timestamp();
    record["level"] = level_name(level);
    record["event"] = std::string(event);
    for (const auto& [key, value] : fields) record[std::string(key)] = value;
    line = record.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  } else {
    line += "ts=";
    line += grove::log_timestamp();
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
  grove::write_log_line(line);
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
