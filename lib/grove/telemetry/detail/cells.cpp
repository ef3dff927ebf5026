#include <grove/telemetry/detail/cells.hpp>

#include <grove/core/detail/thread_records.hpp>
#include <grove/core/error.hpp>

#include <algorithm>
#include <mutex>

namespace grove::telemetry::detail {

namespace {

grove::detail::thread_records<shard> all_shards; // shards are reused, never freed

/// Gives the shard back when its thread ends; its cells keep their values.
struct shard_holder {
  shard* held = all_shards.claim();
  ~shard_holder() {
    this_thread_shard = nullptr;
    grove::detail::thread_records<shard>::release(held);
  }
};

// Cell indices: a bump pointer and ranges given back.
std::mutex ranges_mutex;
// The first cells belong to no series: a default-constructed handle (cell
// 0, or a histogram's cells from 0) records there, harmlessly.
constexpr std::uint32_t unowned_cells = 256;
std::uint32_t next_free = unowned_cells;
std::vector<std::pair<std::uint32_t, std::uint32_t>> returned; // (first, count)

} // namespace

std::atomic<std::uint64_t>* shard::make_chunk(std::size_t chunk) {
  auto* fresh = new std::atomic<std::uint64_t>[chunk_cells];
  for (std::size_t i = 0; i < chunk_cells; ++i) fresh[i].store(0, std::memory_order_relaxed);
  chunks[chunk].store(fresh, std::memory_order_release); // a scrape sees zeros, never garbage
  return fresh;
}

shard& claim_this_thread_shard() {
  thread_local shard_holder holder;
  this_thread_shard = holder.held;
  return *holder.held;
}

std::uint64_t sum(std::uint32_t index) noexcept {
  std::uint64_t total = 0;
  for (shard* s = all_shards.head(); s; s = s->next) {
    const std::atomic<std::uint64_t>* chunk = s->chunks[index >> chunk_bits].load(std::memory_order_acquire);
    if (chunk != nullptr) total += chunk[index & (chunk_cells - 1)].load(std::memory_order_relaxed);
  }
  return total;
}

void sums(std::uint32_t first, std::uint32_t count, std::uint64_t* out) noexcept {
  std::fill(out, out + count, 0);
  for (shard* s = all_shards.head(); s; s = s->next) {
    for (std::uint32_t i = 0; i < count; ++i) {
      const std::uint32_t index = first + i;
      const std::atomic<std::uint64_t>* chunk = s->chunks[index >> chunk_bits].load(std::memory_order_acquire);
      if (chunk != nullptr) out[i] += chunk[index & (chunk_cells - 1)].load(std::memory_order_relaxed);
    }
  }
}

cell_range take_cells(std::uint32_t count) {
  cell_range r;
  r.count = count;
  {
    std::lock_guard lock(ranges_mutex);
    auto fit = std::find_if(returned.begin(), returned.end(), [&](const auto& g) { return g.second >= count; });
    if (fit != returned.end()) {
      r.first = fit->first;
      fit->first += count;
      fit->second -= count;
      if (fit->second == 0) returned.erase(fit);
    } else {
      if (static_cast<std::uint64_t>(next_free) + count > chunk_cells * max_chunks) {
        throw grove::error(errc::invalid_argument, "telemetry: more than " + std::to_string(chunk_cells * max_chunks) +
                                                       " metric cells (series x buckets) in use");
      }
      r.first = next_free;
      next_free += count;
    }
  }
  // Cells given back keep what their last owner counted: that is the new
  // owner's zero. (No thread writes them any more: their handles died
  // with their registry.)
  r.baseline.resize(count);
  sums(r.first, count, r.baseline.data());
  return r;
}

void give_back_cells(std::uint32_t first, std::uint32_t count) noexcept {
  if (count == 0) return;
  try {
    std::lock_guard lock(ranges_mutex);
    returned.emplace_back(first, count);
  } catch (...) {
    // Out of memory: the range is lost, never reused. Nothing else breaks.
  }
}

} // namespace grove::telemetry::detail
