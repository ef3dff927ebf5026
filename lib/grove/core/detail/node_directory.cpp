#include <grove/core/detail/epoch.hpp>
#include <grove/core/detail/node_directory.hpp>
#include <grove/core/detail/runtime.hpp>
#include <grove/core/error.hpp>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace grove::detail::node_directory {

namespace {
// The listing before any node: constant-initialised, so a node made during
// static initialisation finds the directory ready; never freed.
constinit const listing no_nodes{};
} // namespace

std::atomic<const listing*> current_listing{&no_nodes};

namespace {

/// Copy on write: a change publishes a new listing and retires the old one;
/// a program has a handful of nodes, so a reader scans a few entries.
struct directory {
  std::mutex mutex; // writers only
  retired_list retired;
  std::uint32_t counter = 0;

  void publish(std::vector<entry> next) {
    const listing* old = current_listing.exchange(new listing{std::move(next)}, std::memory_order_acq_rel);
    if (old == &no_nodes) return; // static: nothing to free
    retired.retire(const_cast<listing*>(old), [](void* p) { delete static_cast<listing*>(p); });
  }
};

directory& the_directory() {
  // Never destroyed: a node in a static object may outlive this file's
  // statics, and its destructor still unlists it.
  static directory* d = new directory;
  return *d;
}

bool taken(const std::vector<entry>& l, std::uint32_t id, std::uint32_t creation) {
  return std::any_of(l.begin(), l.end(), [&](const entry& e) { return e.id == id && e.creation == creation; });
}

} // namespace



void add(node_state& n) {
  directory& d = the_directory();
  std::lock_guard lock(d.mutex);
  const std::vector<entry>& now = current_listing.load(std::memory_order_acquire)->entries;
  if (taken(now, n.id, n.creation)) {
    throw grove::error(errc::invalid_argument, "node_options.id: node " + std::to_string(n.id) + " (creation " +
                                                   std::to_string(n.creation) +
                                                   ") is already running in this program");
  }
  std::vector<entry> next = now;
  next.push_back({n.id, n.creation, &n});
  d.publish(std::move(next));
  d.retired.collect();
}

void remove(node_state& n) noexcept {
  directory& d = the_directory();
  std::lock_guard lock(d.mutex);
  const std::vector<entry>& now = current_listing.load(std::memory_order_acquire)->entries;
  std::vector<entry> next;
  next.reserve(now.size());
  for (const entry& e : now) {
    if (e.node != &n) next.push_back(e);
  }
  if (next.size() == now.size()) return;
  d.publish(std::move(next));
  // A reader that can still see `n` holds a listing retired just now or
  // before; once every retired listing is freed, none is left. Readers pin
  // for the length of one lookup and a post, so this wait is short.
  while (d.retired.collect() > 0) std::this_thread::yield();
}

std::uint32_t next_free_id() {
  directory& d = the_directory();
  std::lock_guard lock(d.mutex);
  const std::vector<entry>& now = current_listing.load(std::memory_order_acquire)->entries;
  for (;;) {
    const std::uint32_t id = ++d.counter;
    if (id != 0 && std::none_of(now.begin(), now.end(), [&](const entry& e) { return e.id == id; })) return id;
  }
}

} // namespace grove::detail::node_directory
