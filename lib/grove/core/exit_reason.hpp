// grove/core/exit_reason.hpp — why a process ended, as OTP names it.
//
//   grove::exit_reason r = grove::exit_reason::shutdown("config reloaded");
//   if (r.is_normal()) { ... }   // normal exits do not propagate over links
//   std::cout << r;              // prints {shutdown, config reloaded}
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>

namespace grove {

/// A value type (copyable, comparable) describing how a process ended or why
/// it is being asked to end.
class exit_reason {
public:
  enum class kind : std::uint8_t {
    normal,   ///< the process finished its work
    shutdown, ///< asked to stop by its owner (optionally with a value)
    kill,     ///< the untrappable signal; the victim ends with `killed`
    killed,   ///< the reason a process ends with after `kill`
    error,    ///< a handler threw; detail() is the exception's text
    noproc,   ///< reported for a process that was already gone
    noconnection, ///< the link to the other process's node went down (grove/dist)
  };

  /// Default: normal.
  exit_reason() noexcept = default;

  static exit_reason normal() { return exit_reason(kind::normal, {}); }
  static exit_reason shutdown() { return exit_reason(kind::shutdown, {}); }
  /// OTP's `{shutdown, Value}`: a clean stop that carries a value.
  static exit_reason shutdown(std::string value) { return exit_reason(kind::shutdown, std::move(value)); }
  static exit_reason kill() { return exit_reason(kind::kill, {}); }
  static exit_reason killed() { return exit_reason(kind::killed, {}); }
  static exit_reason error(std::string what) { return exit_reason(kind::error, std::move(what)); }
  static exit_reason noproc() { return exit_reason(kind::noproc, {}); }
  /// A monitor or link to a process of another node whose link dropped
  /// (Erlang's `noconnection`).
  static exit_reason noconnection() { return exit_reason(kind::noconnection, {}); }

  kind what() const noexcept { return kind_; }
  /// The shutdown value or the exception text; empty otherwise.
  const std::string& detail() const noexcept { return detail_; }

  /// Only `normal` does not travel over links.
  bool is_normal() const noexcept { return kind_ == kind::normal; }
  /// normal, shutdown and {shutdown, value}: the exits a supervisor does not
  /// count as failures for transient children.
  bool is_clean() const noexcept { return kind_ == kind::normal || kind_ == kind::shutdown; }

  /// "normal", "shutdown", "{shutdown, value}", "kill", "killed",
  /// "{error, text}", "noproc", "noconnection".
  std::string to_string() const;

  friend bool operator==(const exit_reason&, const exit_reason&) = default;

private:
  exit_reason(kind k, std::string d) : kind_(k), detail_(std::move(d)) {}

  kind kind_ = kind::normal;
  std::string detail_;
};

std::ostream& operator<<(std::ostream& os, const exit_reason& reason);

} // namespace grove
