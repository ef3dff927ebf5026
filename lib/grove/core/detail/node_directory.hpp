// Internal (not installed): the nodes alive in this program, found by the
// identity a pid carries (node id, creation). A pid holds no pointer, so
// every operation through a pid whose node is not on this thread resolves
// it here: readers pin an epoch and never lock; a node leaves the directory
// before its teardown, and leaving waits until no reader can still hold it.
#pragma once

#include <cstdint>

namespace grove::detail {

class node_state;

namespace node_directory {

/// Lists `n` under (n.id, n.creation). Throws grove::error
/// (invalid_argument) when a live node already has that identity.
void add(node_state& n);
/// Unlists `n`; returns once no reader can still see it. Idempotent.
void remove(node_state& n) noexcept;
/// The node with that identity, or nullptr. The caller holds an
/// epoch_guard for as long as it uses the result.
node_state* find(std::uint32_t id, std::uint32_t creation) noexcept;
/// A node id no live node of this program uses (1, 2, ... as nodes start).
std::uint32_t next_free_id();

} // namespace node_directory
} // namespace grove::detail
