// Internal: the seam through which the core hands operations on pids of
// other nodes (not in this program) to grove/dist. Without a router
// installed, or for a node the router has no link to, a pid of an unknown
// node names no process: sends are dropped, calls fail with noproc, links
// and monitors fire with noproc, as before dist existed.
#pragma once

#include <grove/core/detail/envelope.hpp>
#include <grove/core/exit_reason.hpp>
#include <grove/core/pid.hpp>
#include <grove/core/process.hpp>

#include <atomic>
#include <cstdint>

namespace grove::detail {

/// Implemented by grove/dist. Every method is called on the thread of the
/// process doing the operation and must not block; `handles` is asked
/// first, and only pids it said yes to are passed to the others.
class remote_router {
public:
  virtual ~remote_router() = default;
  /// Whether `p`'s node is one this router reaches (a remote node with a
  /// link up). A pid of a node of this program is never remote.
  virtual bool handles(const pid& p) const noexcept = 0;
  /// A send, call or cast: the envelope as the local path would deliver it.
  /// A call's reply slot must be completed (the reply, or an error:
  /// noconnection when the link is down or goes down before the answer).
  virtual void deliver(const pid& to, envelope env) = 0;
  /// An exit signal from `from` (a local process) to `to`.
  virtual void exit_signal(const pid& to, const pid& from, const exit_reason& reason, bool from_link) = 0;
  /// A monitor `ref` (ref.target on another node) held by the local `watcher` fired.
  virtual void down(const pid& watcher, const monitor_ref& ref, const exit_reason& reason) = 0;
  /// Local `from` linked to / unlinked from `to`.
  virtual void link(const pid& from, const pid& to) = 0;
  virtual void unlink(const pid& from, const pid& to) = 0;
  /// Local `watcher` monitors ref.target (ref.id is the watcher's id).
  virtual void monitor(const pid& watcher, const monitor_ref& ref) = 0;
  virtual void demonitor(const pid& watcher, const monitor_ref& ref) = 0;
};

/// The installed router, if `p` is a pid it handles; nullptr otherwise (one
/// relaxed load when no router is installed).
remote_router* remote_router_for(const pid& p) noexcept;
/// Installs `r` (nullptr: uninstalls). At most one per program; the caller
/// keeps it alive until it uninstalled it and no operation can still be in
/// it (dist waits for its node's workers).
void set_remote_router(remote_router* r) noexcept;

// The local side of operations that came from another node, for dist.
// Each runs on (or is posted to) the local process's worker; a local
// process that is gone answers as the local path would (noproc signals
// back through the router).

/// A remote process `from` linked to the local `to`.
void link_from_remote(const pid& to, const pid& from);
void unlink_from_remote(const pid& to, const pid& from);
/// A remote `watcher` monitors the local `target` under `id` (an id of
/// this program: dist maps it to the watcher's).
void monitor_from_remote(const pid& target, std::uint64_t id, const pid& watcher);
void demonitor_from_remote(const pid& target, std::uint64_t id);
/// An exit signal or a monitor's down from a remote process to a local one.
void exit_signal_to_local(const pid& to, const pid& from, const exit_reason& reason, bool from_link);
void down_to_local(const pid& watcher, const monitor_ref& ref, const exit_reason& reason);
/// A send, call or cast to a local process.
void deliver_envelope(const pid& to, envelope env);
/// Whether `p`'s node (id and creation) is one of this program's.
bool node_in_program(const pid& p) noexcept;
/// A fresh id for a monitor, unique in this program.
std::uint64_t new_monitor_id() noexcept;

} // namespace grove::detail
