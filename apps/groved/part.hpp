// One part of groved: a child of its root supervisor, built from its own
// section of the configuration, with what it does when groved reloads
// (SIGHUP) and when it stops. main() starts the parts tree.hpp names, in
// that order, under one rest_for_one supervisor, and knows nothing else
// about any of them: a new part is written as a function returning a
// part, and named in tree().
#pragma once

#include <grove/core/process.hpp>
#include <grove/supervisor/child_spec.hpp>

#include <nlohmann/json.hpp>

#include <functional>
#include <string>

namespace groved {

struct part {
  /// The child's id, and the section of the configuration it reads.
  std::string name;
  /// How it starts under the root supervisor (linked to it).
  grove::child_spec child;
  /// SIGHUP: read what it reads from outside again (files, a policy).
  std::function<grove::awaitable<void>()> reload{};
  /// The first step of a graceful stop, all parts at once: stop taking new
  /// work and finish what is in flight, within `deadline` (listeners).
  std::function<grove::awaitable<void>(grove::duration deadline)> drain{};
  /// The second step, part by part once every drain is over: keep what
  /// must outlive the stop (the tenants' snapshots). False: it failed
  /// (logged), and groved exits 1.
  std::function<grove::awaitable<bool>()> persist{};
  /// Adds what a script needs to reach it to groved's ready line (a port).
  std::function<void(nlohmann::json& ready)> describe{};
};

} // namespace groved
