// grove/core/pid_text.hpp — a pid as text with every part, the form pids
// cross the wire in (grove/dist) and sit in etcd in (etcd_registry):
// "node.creation.worker.slot.serial".
#pragma once

#include <grove/core/pid.hpp>

#include <optional>
#include <string>
#include <string_view>

namespace grove {

std::string pid_text(const pid& p);
/// The pid `text` spells, or nullopt for anything else.
std::optional<pid> parse_pid(std::string_view text) noexcept;

} // namespace grove
