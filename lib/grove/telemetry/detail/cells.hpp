// Internal: per-thread metric cells. Every thread that records a metric
// owns a shard: chunks of 64-bit cells that only it writes (a load and a
// store, no lock prefix, no cache line shared with another writer). A
// scrape sums a cell over every shard.
//
// One arena for the whole program, as the epoch domain is: a metrics
// registry takes ranges of cell indices from it and gives them back when
// it is destroyed. A shard outlives its thread (a later thread reuses it
// and goes on adding), so a sum never loses what an ended thread counted.
// It holds no user-visible state.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace grove::telemetry::detail {

inline constexpr std::size_t chunk_bits = 12;
inline constexpr std::size_t chunk_cells = std::size_t{1} << chunk_bits; // 4096 cells, 32 KiB
inline constexpr std::size_t max_chunks = 4096;                          // 16 M cells

struct shard {
  std::atomic<std::atomic<std::uint64_t>*> chunks[max_chunks]{}; // allocated by the owner on first touch
  std::atomic<bool> owned{false};
  shard* next = nullptr;
  /// This shard's chunk for `chunk`, made on first use (owner only).
  std::atomic<std::uint64_t>* make_chunk(std::size_t chunk);
};

/// The calling thread's shard, once claimed.
inline thread_local shard* this_thread_shard = nullptr;
/// Claims a shard for the calling thread (first use; given back at thread exit).
shard& claim_this_thread_shard();

/// The calling thread's cell `index`.
inline std::atomic<std::uint64_t>& cell(std::uint32_t index) {
  shard* s = this_thread_shard;
  if (s == nullptr) s = &claim_this_thread_shard();
  std::atomic<std::uint64_t>* chunk = s->chunks[index >> chunk_bits].load(std::memory_order_relaxed);
  if (chunk == nullptr) chunk = s->make_chunk(index >> chunk_bits);
  return chunk[index & (chunk_cells - 1)];
}

/// Adds to the calling thread's cell (wrapping: a gauge adds negative
/// deltas as their two's complement).
inline void add(std::uint32_t index, std::uint64_t n) noexcept {
  std::atomic<std::uint64_t>& c = cell(index);
  c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

/// The sum of cell `index` over every shard (wrapping).
std::uint64_t sum(std::uint32_t index) noexcept;
/// Sums of `count` consecutive cells from `first`, in one pass over the shards.
void sums(std::uint32_t first, std::uint32_t count, std::uint64_t* out) noexcept;

/// A range of cells for one series; its current sums are the baseline the
/// new owner subtracts (a range given back and taken again starts at 0).
struct cell_range {
  std::uint32_t first = 0;
  std::uint32_t count = 0;
  std::vector<std::uint64_t> baseline{};
};
cell_range take_cells(std::uint32_t count);
void give_back_cells(std::uint32_t first, std::uint32_t count) noexcept;

} // namespace grove::telemetry::detail
