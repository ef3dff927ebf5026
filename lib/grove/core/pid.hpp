// grove/core/pid.hpp — process identifiers.
//
//   grove::pid p = grove::spawn(node, body);
//   std::cout << p;                       // <1.0.42>: node 1, worker 0, serial 42
//   std::unordered_set<grove::pid> seen{p};
//
// A pid is plain data, as Erlang's is: the identity of its node (an id, and
// a creation number that differs between two lives of a node with that id),
// the worker the process runs on, its slot there and a serial. Copy it,
// compare it, hash it, send it in messages, write it into a payload. It
// never points into a node: sends, calls, exits and alive() find the node
// through the runtime (at once from the node's own workers), and through a
// pid whose node is gone they are a no-op, fail with noproc, or return
// false. Serials are 64-bit and never reused within a node, so a pid of a
// process that has exited never reaches a process started later.
#pragma once

#include <cstdint>
#include <functional>
#include <iosfwd>
#include <string>

namespace grove {

class pid {
public:
  /// The null pid: refers to no process; sends to it are dropped.
  constexpr pid() noexcept = default;
  /// A pid from its parts (as a codec reads one off the wire). Only parts a
  /// node handed out name a process; any other pid names none.
  constexpr pid(std::uint32_t node_id, std::uint32_t creation, std::uint32_t worker, std::uint32_t slot,
                std::uint64_t serial) noexcept
      : node_(node_id), creation_(creation), worker_(worker), slot_(slot), serial_(serial) {}

  explicit operator bool() const noexcept { return serial_ != 0; }

  /// The node's id (node_options::id; by default 1 for the first node
  /// created in this program, 2 for the next, ...).
  std::uint32_t node_id() const noexcept { return node_; }
  /// The node's creation number: tells two lives of one node id apart.
  std::uint32_t creation() const noexcept { return creation_; }
  /// Index of the node worker (executor) the process lives on.
  std::uint32_t worker() const noexcept { return worker_; }
  /// The process's slot in its worker's table (reused; the serial is not).
  std::uint32_t slot() const noexcept { return slot_; }
  std::uint64_t serial() const noexcept { return serial_; }

  /// Whether `a` and `b` live on the same node (same id and creation).
  friend bool same_node(const pid& a, const pid& b) noexcept {
    return a.node_ == b.node_ && a.creation_ == b.creation_;
  }

  /// "<node.worker.serial>", or "<null>" for the null pid.
  std::string to_string() const;

  friend bool operator==(const pid&, const pid&) noexcept = default;
  friend auto operator<=>(const pid&, const pid&) noexcept = default;

private:
  std::uint32_t node_ = 0;
  std::uint32_t creation_ = 0;
  std::uint32_t worker_ = 0;
  std::uint32_t slot_ = 0;
  std::uint64_t serial_ = 0;
};

std::ostream& operator<<(std::ostream& os, const pid& p);

} // namespace grove

template <>
struct std::hash<grove::pid> {
  std::size_t operator()(const grove::pid& p) const noexcept {
    const std::uint64_t node = (std::uint64_t{p.node_id()} << 32) | p.creation();
    return std::hash<std::uint64_t>{}((p.serial() * 0x9E3779B97F4A7C15ull) ^ (node * 0xC2B2AE3D27D4EB4Full));
  }
};
