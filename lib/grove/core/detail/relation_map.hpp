// Internal: one kind of a process's relations (its links, the monitors it
// holds, the monitors on it).
//
// Most processes that have any have one or two (the link to their
// supervisor, a monitor from a listener), and an idle connection's process
// is one of many thousands: a hash table's bucket array (104 bytes for one
// entry in libstdc++) and its node per entry cost more than the entry.
// So the first few live in a small vector, searched linearly; past `spill`
// (a supervisor's children, a listener's sessions) they move to a hash map
// for good. Order of iteration is unspecified either way.
#pragma once

#include <algorithm>
#include <cstddef>
#include <memory>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

namespace grove::detail {

/// Keys K, each with a V (or none: V = void, a set).
template <class K, class V = void>
class relation_map {
  static constexpr bool is_set = std::is_void_v<V>;
  struct keyed {
    K key;
    std::conditional_t<is_set, char, V> value;
  };
  using entry = std::conditional_t<is_set, K, keyed>;
  using table = std::conditional_t<is_set, std::unordered_set<K>, std::unordered_map<K, std::conditional_t<is_set, char, V>>>;

public:
  static constexpr std::size_t spill = 16;

  /// Adds `key` (with `value`); false, changing nothing, when it is there.
  template <class... Value>
  bool insert(const K& key, Value&&... value) {
    static_assert(sizeof...(Value) == (is_set ? 0 : 1));
    if (many_) {
      if constexpr (is_set) {
        return many_->insert(key).second;
      } else {
        return many_->try_emplace(key, std::forward<Value>(value)...).second;
      }
    }
    if (find(key) != few_.end()) return false;
    if (few_.size() < spill) {
      if constexpr (is_set) {
        few_.push_back(key);
      } else {
        few_.push_back(keyed{key, std::forward<Value>(value)...});
      }
      return true;
    }
    auto t = std::make_unique<table>();
    t->reserve(2 * spill);
    for (entry& e : few_) {
      if constexpr (is_set) {
        t->insert(std::move(e));
      } else {
        t->emplace(std::move(e.key), std::move(e.value));
      }
    }
    if constexpr (is_set) {
      t->insert(key);
    } else {
      t->emplace(key, std::forward<Value>(value)...);
    }
    std::vector<entry>().swap(few_);
    many_ = std::move(t);
    return true;
  }

  /// Removes `key`; false when it was not there.
  bool erase(const K& key) {
    if (many_) return many_->erase(key) > 0;
    auto it = find(key);
    if (it == few_.end()) return false;
    if (it + 1 != few_.end()) *it = std::move(few_.back());
    few_.pop_back();
    return true;
  }

  bool contains(const K& key) const {
    if (many_) return many_->contains(key);
    return find(key) != few_.end();
  }

  std::size_t size() const noexcept { return many_ ? many_->size() : few_.size(); }
  bool empty() const noexcept { return size() == 0; }

  /// f(key) for a set, f(key, value) for a map.
  template <class F>
  void for_each(F&& f) const {
    if (many_) {
      for (const auto& e : *many_) {
        if constexpr (is_set) {
          f(e);
        } else {
          f(e.first, e.second);
        }
      }
      return;
    }
    for (const entry& e : few_) {
      if constexpr (is_set) {
        f(e);
      } else {
        f(e.key, e.value);
      }
    }
  }

private:
  static const K& key_of(const entry& e) noexcept {
    if constexpr (is_set) {
      return e;
    } else {
      return e.key;
    }
  }
  auto find(const K& key) { return std::find_if(few_.begin(), few_.end(), [&](const entry& e) { return key_of(e) == key; }); }
  auto find(const K& key) const {
    return std::find_if(few_.begin(), few_.end(), [&](const entry& e) { return key_of(e) == key; });
  }

  std::vector<entry> few_;
  std::unique_ptr<table> many_;
};

} // namespace grove::detail
