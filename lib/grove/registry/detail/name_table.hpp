// Internal: a string-keyed hash table whose lookups are lock-free and write
// nothing shared (so they scale across threads), for the registry's names.
//
// Readers pin an epoch (epoch.hpp), load a bucket and walk its chain. Chains
// are immutable once published: an insert puts a new node in front; an
// erase or a replacement copies the nodes before the one it changes and
// publishes the copy; growing builds a new bucket array. What a writer
// unlinks is retired and freed once no reader can hold it. Writers are
// serialised by a mutex (the registry has one writer anyway).
#pragma once

#include <grove/core/detail/epoch.hpp>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace grove::detail {

template <class Value>
class name_table {
public:
  explicit name_table(std::size_t initial_buckets = 64) : array_(new bucket_array(round_up(initial_buckets))) {}

  ~name_table() {
    const bucket_array* a = array_.load(std::memory_order_relaxed);
    for (std::size_t i = 0; i <= a->mask; ++i) free_chain(a->buckets[i].load(std::memory_order_relaxed));
    delete a;
  }

  name_table(const name_table&) = delete;
  name_table& operator=(const name_table&) = delete;

  // -- readers: any thread, lock-free -------------------------------------

  /// Calls f(value) for `key` while it cannot be freed; false if absent.
  template <class F>
  bool visit(std::string_view key, F&& f) const {
    epoch_guard pin;
    if (const node* n = find_node(key, hash_of(key))) {
      std::forward<F>(f)(n->value);
      return true;
    }
    return false;
  }

  std::optional<Value> find(std::string_view key) const {
    std::optional<Value> out;
    visit(key, [&](const Value& v) { out.emplace(v); });
    return out;
  }

  /// Calls f(key, value) for every entry (a consistent view of each bucket,
  /// not of the whole table while writers run).
  template <class F>
  void for_each(F&& f) const {
    epoch_guard pin;
    const bucket_array* a = array_.load(std::memory_order_acquire);
    for (std::size_t i = 0; i <= a->mask; ++i) {
      for (const node* n = a->buckets[i].load(std::memory_order_acquire); n; n = n->next) f(n->key, n->value);
    }
  }

  std::size_t size() const noexcept { return size_.load(std::memory_order_relaxed); }

  // -- writers: serialised ---------------------------------------------------

  /// Adds `key` unless present; false if it was.
  bool insert(std::string key, Value value) {
    std::lock_guard lock(writer_);
    const std::size_t h = hash_of(key);
    if (find_node(key, h)) return false;
    add(h, std::move(key), std::move(value));
    return true;
  }

  /// Adds or replaces.
  void insert_or_assign(std::string key, Value value) {
    std::lock_guard lock(writer_);
    const std::size_t h = hash_of(key);
    if (find_node(key, h)) {
      replace(key, h, [&](const node& old) { return new node{h, old.key, std::move(value), nullptr}; });
    } else {
      add(h, std::move(key), std::move(value));
    }
  }

  /// Removes `key` if it is present and pred(value) holds; returns whether
  /// it did (the registry removes a name only if the dying process holds it).
  template <class Pred>
  bool erase_if(std::string_view key, Pred pred) {
    std::lock_guard lock(writer_);
    const std::size_t h = hash_of(key);
    const node* n = find_node(key, h);
    if (!n || !pred(n->value)) return false;
    replace(key, h, [](const node&) -> node* { return nullptr; });
    size_.fetch_sub(1, std::memory_order_relaxed);
    return true;
  }

  bool erase(std::string_view key) {
    return erase_if(key, [](const Value&) { return true; });
  }

  /// Updates the value of `key` in place of a copy: update(old) gives the
  /// new value, or std::nullopt to remove it. Returns false if absent.
  template <class Update>
  bool update(std::string_view key, Update update) {
    std::lock_guard lock(writer_);
    const std::size_t h = hash_of(key);
    const node* n = find_node(key, h);
    if (!n) return false;
    std::optional<Value> next = update(n->value);
    if (next) {
      replace(key, h, [&](const node& old) { return new node{h, old.key, std::move(*next), nullptr}; });
    } else {
      replace(key, h, [](const node&) -> node* { return nullptr; });
      size_.fetch_sub(1, std::memory_order_relaxed);
    }
    return true;
  }

  /// Removes every entry (readers see each bucket emptied in turn).
  void clear() {
    std::lock_guard lock(writer_);
    bucket_array* a = array_.load(std::memory_order_relaxed);
    for (std::size_t i = 0; i <= a->mask; ++i) {
      const node* n = a->buckets[i].exchange(nullptr, std::memory_order_acq_rel);
      for (; n; n = n->next) retire(n);
    }
    size_.store(0, std::memory_order_relaxed);
    maybe_collect();
  }

  /// Frees what no reader can hold any more (writers also do this as they go).
  void reclaim() {
    std::lock_guard lock(writer_);
    retired_.collect();
  }

  /// Nodes unlinked but not yet freed (for tests and benchmarks).
  std::size_t retired() const {
    std::lock_guard lock(writer_);
    return retired_.size();
  }

private:
  struct node {
    std::size_t hash;
    std::string key;
    Value value;
    const node* next;
  };

  struct bucket_array {
    explicit bucket_array(std::size_t n) : mask(n - 1), buckets(new std::atomic<const node*>[n]) {
      for (std::size_t i = 0; i < n; ++i) buckets[i].store(nullptr, std::memory_order_relaxed);
    }
    std::size_t mask;
    std::unique_ptr<std::atomic<const node*>[]> buckets;
  };

  static std::size_t round_up(std::size_t n) {
    std::size_t p = 8;
    while (p < n) p *= 2;
    return p;
  }

  static std::size_t hash_of(std::string_view key) noexcept { return std::hash<std::string_view>{}(key); }

  const node* find_node(std::string_view key, std::size_t h) const {
    const bucket_array* a = array_.load(std::memory_order_acquire);
    for (const node* n = a->buckets[h & a->mask].load(std::memory_order_acquire); n; n = n->next) {
      if (n->hash == h && n->key == key) return n;
    }
    return nullptr;
  }

  void add(std::size_t h, std::string key, Value value) {
    bucket_array* a = array_.load(std::memory_order_relaxed);
    auto& bucket = a->buckets[h & a->mask];
    bucket.store(new node{h, std::move(key), std::move(value), bucket.load(std::memory_order_relaxed)},
                 std::memory_order_release);
    if (size_.fetch_add(1, std::memory_order_relaxed) + 1 > a->mask + 1) grow();
  }

  /// Publishes the chain of `key`'s bucket with the node for `key` swapped
  /// for make(old) (nullptr: dropped): the nodes before it are copied, the
  /// ones after it shared. The old nodes up to it are retired.
  template <class Make>
  void replace(std::string_view key, std::size_t h, Make make) {
    bucket_array* a = array_.load(std::memory_order_relaxed);
    auto& bucket = a->buckets[h & a->mask];
    const node* head = bucket.load(std::memory_order_relaxed);
    const node* target = head;
    while (!(target->hash == h && target->key == key)) target = target->next;
    node* replacement = make(*target);
    const node* rest = target->next;
    if (replacement) {
      replacement->next = rest;
      rest = replacement;
    }
    // Copy the prefix back to front so each copy points at the next one.
    const node* copy = rest;
    copy_prefix(head, target, copy);
    bucket.store(copy, std::memory_order_release);
    for (const node* n = head;; n = n->next) {
      retire(n);
      if (n == target) break;
    }
    maybe_collect();
  }

  static void copy_prefix(const node* from, const node* stop, const node*& tail) {
    if (from == stop) return;
    copy_prefix(from->next, stop, tail);
    tail = new node{from->hash, from->key, from->value, tail};
  }

  void grow() {
    bucket_array* old = array_.load(std::memory_order_relaxed);
    auto* bigger = new bucket_array((old->mask + 1) * 2);
    for (std::size_t i = 0; i <= old->mask; ++i) {
      for (const node* n = old->buckets[i].load(std::memory_order_relaxed); n; n = n->next) {
        auto& bucket = bigger->buckets[n->hash & bigger->mask];
        bucket.store(new node{n->hash, n->key, n->value, bucket.load(std::memory_order_relaxed)},
                     std::memory_order_relaxed);
      }
    }
    array_.store(bigger, std::memory_order_release);
    for (std::size_t i = 0; i <= old->mask; ++i) {
      for (const node* n = old->buckets[i].load(std::memory_order_relaxed); n; n = n->next) retire(n);
    }
    retired_.retire(old, [](void* p) { delete static_cast<bucket_array*>(p); });
    maybe_collect();
  }

  void retire(const node* n) {
    retired_.retire(const_cast<node*>(n), [](void* p) { delete static_cast<node*>(p); });
  }

  void maybe_collect() {
    if (retired_.size() >= collect_at_) {
      const std::size_t left = retired_.collect();
      collect_at_ = std::max<std::size_t>(64, left * 2);
    }
  }

  static void free_chain(const node* n) {
    while (n) {
      const node* next = n->next;
      delete n;
      n = next;
    }
  }

  std::atomic<bucket_array*> array_;
  std::atomic<std::size_t> size_{0};
  mutable std::mutex writer_;
  retired_list retired_;
  std::size_t collect_at_ = 64;
};

} // namespace grove::detail
