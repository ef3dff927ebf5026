// grove/core/pid.hpp — process identifiers.
//
//   grove::pid p = grove::spawn(node, body);
//   std::cout << p;                       // <1.0.42>: node 1, worker 0, serial 42
//   std::unordered_set<grove::pid> seen{p};
//
// A pid is a plain value: copy it, compare it, hash it, send it in messages.
// Serials are 64-bit and never reused within a node, so a pid of a process
// that has exited never reaches a process started later. A pid must not be
// used after its node is destroyed.
#pragma once

#include <cstdint>
#include <functional>
#include <iosfwd>
#include <string>

namespace grove {

class node;
namespace detail { class node_state; }

class pid {
public:
  /// The null pid: refers to no process; sends to it are dropped.
  constexpr pid() noexcept = default;

  explicit operator bool() const noexcept { return serial_ != 0; }

  /// Index of the node worker (executor) the process lives on.
  std::uint32_t worker() const noexcept { return worker_; }
  std::uint64_t serial() const noexcept { return serial_; }
  /// The node's number (1 for the first node created in this program).
  std::uint32_t node_id() const noexcept;

  /// "<node.worker.serial>", or "<null>" for the null pid.
  std::string to_string() const;

  friend bool operator==(const pid& a, const pid& b) noexcept {
    return a.serial_ == b.serial_ && a.node_ == b.node_;
  }
  friend auto operator<=>(const pid& a, const pid& b) noexcept {
    if (auto c = a.node_id() <=> b.node_id(); c != 0) return c;
    return a.serial_ <=> b.serial_;
  }

  // Library-internal accessors.
  detail::node_state* node_state() const noexcept { return node_; }
  std::uint32_t slot() const noexcept { return slot_; }
  constexpr pid(detail::node_state* n, std::uint32_t worker, std::uint32_t slot, std::uint64_t serial) noexcept
      : node_(n), worker_(worker), slot_(slot), serial_(serial) {}

private:
  detail::node_state* node_ = nullptr;
  std::uint32_t worker_ = 0;
  std::uint32_t slot_ = 0;
  std::uint64_t serial_ = 0;
};

std::ostream& operator<<(std::ostream& os, const pid& p);

} // namespace grove

template <>
struct std::hash<grove::pid> {
  std::size_t operator()(const grove::pid& p) const noexcept {
    return std::hash<std::uint64_t>{}(p.serial() * 0x9E3779B97F4A7C15ull ^ reinterpret_cast<std::uintptr_t>(p.node_state()));
  }
};
