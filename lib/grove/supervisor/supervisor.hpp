// grove/supervisor/supervisor.hpp — OTP's supervisor: starts children in
// order, restarts them by a strategy, gives up (and lets its own supervisor
// decide) when they fail too often, and stops them in reverse order.
//
//   std::vector<grove::child_spec> children{
//       grove::server_child<database>("db", db_config),
//       grove::server_child<cache>("cache", 1024),
//   };
//   grove::supervisor_options options{.strategy = grove::restart_strategy::rest_for_one};
//   grove::supervisor sup = co_await grove::supervisor::start_link(node, children, options);
//   auto kids = co_await sup.which_children();
//
// (A complete tree that compiles and runs: the README's, held by
// tests/supervisor/readme_supervision_test.cpp.)
//
// A supervisor is a process (it traps exits): link to it, monitor it, nest
// it as a child of another (supervisor_child). Its calls wait as long as the
// operation takes (a child's start or shutdown) unless given a timeout, and
// fail with errc::noproc / errc::exited if the supervisor is gone.
//
// Semantics, as OTP's:
//   * one_for_one restarts the child that ended; one_for_all stops all
//     others (reverse start order) and starts them all again in order;
//     rest_for_one does that for the children started after it.
//   * More than max_restarts restarts within max_seconds: the supervisor
//     stops its children and exits with reason shutdown.
//   * A restart that fails to start is retried (each retry is a restart and
//     counts towards the intensity).
//   * Stopping a child: a shutdown exit, then a kill after its shutdown
//     timeout (a child that traps exits gets time to clean up).
#pragma once

#include <grove/core/gen_server.hpp>
#include <grove/supervisor/child_spec.hpp>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace grove {

enum class restart_strategy : std::uint8_t {
  one_for_one,  ///< restart only the child that ended
  one_for_all,  ///< stop all other children, restart them all
  rest_for_one, ///< stop and restart the children started after it, and it
};

struct supervisor_options {
  restart_strategy strategy = restart_strategy::one_for_one; ///< (default one_for_one)
  int max_restarts = 3;                                      ///< restart intensity: at most this many restarts... (default 3)
  std::chrono::seconds max_seconds{5};                       ///< ...within this period (default 5 s); more and the supervisor gives up
  std::optional<std::size_t> worker{};                       ///< worker the supervisor runs on (default: round-robin)
  std::function<void(const supervisor_report&)> report = report_to_events; ///< reports (default: to the node's event sink; nullptr: silent)
};

/// A handle to a running supervisor. A value: copy it freely.
class supervisor {
public:
  supervisor() = default;
  explicit supervisor(pid p) noexcept : pid_(p) {}

  /// Starts a supervisor and its children, in order, and returns once all
  /// have started. If a child fails to start, those started stop in reverse
  /// order and this throws grove::error (start_failed) whose reason() is
  /// {shutdown, {failed_to_start_child, ID, REASON}}. Also throws
  /// invalid_argument for bad options or specs (duplicate ids, no start).
  static awaitable<supervisor> start(node& n, std::vector<child_spec> children, supervisor_options options = {});
  /// start() linked to the calling process.
  static awaitable<supervisor> start_link(node& n, std::vector<child_spec> children, supervisor_options options = {});

  const pid& id() const noexcept { return pid_; }
  explicit operator bool() const noexcept { return static_cast<bool>(pid_); }

  /// Adds and starts a child; returns its pid (null if its start said
  /// "ignore"; the spec is kept). Throws already_started, already_present,
  /// start_failed (nothing is kept), invalid_argument.
  awaitable<pid> start_child(child_spec spec, duration timeout = infinity) const;
  /// Stops a child (its spec stays, except a temporary child's). Throws not_found.
  awaitable<void> terminate_child(std::string id, duration timeout = infinity) const;
  /// Starts a stopped child again. Throws not_found, running, restarting, start_failed.
  awaitable<pid> restart_child(std::string id, duration timeout = infinity) const;
  /// Forgets a stopped child's spec. Throws not_found, running, restarting.
  awaitable<void> delete_child(std::string id, duration timeout = infinity) const;
  /// Every child, in start order.
  awaitable<std::vector<child_info>> which_children(duration timeout = infinity) const;
  awaitable<child_counts> count_children(duration timeout = infinity) const;
  /// Its strategy, intensity, restarts and children (with their restart counts).
  awaitable<supervision_info> describe(duration timeout = infinity) const;
  /// The pid of the child `id`: null while it is stopped or being
  /// restarted. Throws supervisor_errc::not_found if there is no such child.
  awaitable<pid> child_pid(std::string id, duration timeout = infinity) const;

  /// Stops the supervisor from outside and waits until it has ended: its
  /// children stop first, in reverse start order, each by its own shutdown
  /// policy (grove::stop). Returns the reason it ended with; throws noproc
  /// if it is not running, timeout if it has not ended within `timeout`.
  awaitable<exit_reason> stop(exit_reason reason = exit_reason::shutdown(), duration timeout = infinity) const;

  friend bool operator==(const supervisor&, const supervisor&) = default;

private:
  pid pid_;
};

/// A spec for a supervisor as a child of another (type supervisor, shutdown
/// infinity, permanent).
child_spec supervisor_child(std::string id, std::vector<child_spec> children, supervisor_options options = {});

} // namespace grove
