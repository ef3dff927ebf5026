// Internal (not installed): the nodes alive in this program, found by the
// identity a pid carries (node id, creation). A pid holds no pointer, so
// every operation through a pid whose node is not on this thread resolves
// it here: readers pin an epoch and never lock; a node leaves the directory
// before its teardown, and leaving waits until no reader can still hold it.
#pragma once

#include <atomic>
#include <cstdint>
#include <vector>

namespace grove::detail {

class node_state;

namespace node_directory {

/// Lists `n` under (n.id, n.creation). Throws grove::error
/// (invalid_argument) when a live node already has that identity.
void add(node_state& n);
/// Unlists `n`; returns once no reader can still see it. Idempotent.
void remove(node_state& n) noexcept;
struct entry {
  std::uint32_t id;
  std::uint32_t creation;
  node_state* node;
};
/// The nodes listed now: copy on write, a handful of entries.
struct listing {
  std::vector<entry> entries;
};
extern std::atomic<const listing*> current_listing;

/// The node with that identity, or nullptr. The caller holds an
/// epoch_guard for as long as it uses the result.
inline node_state* find(std::uint32_t id, std::uint32_t creation) noexcept {
  for (const entry& e : current_listing.load(std::memory_order_acquire)->entries) {
    if (e.id == id && e.creation == creation) return e.node;
  }
  return nullptr;
}
/// A node id no live node of this program uses (1, 2, ... as nodes start).
std::uint32_t next_free_id();

} // namespace node_directory
} // namespace grove::detail
