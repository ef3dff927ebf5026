// Internal: what a registry's process keeps beside its lookup tables, for
// any backend: the processes that own something in the registry (a name,
// a membership, a watch, a claim), each monitored so that its end can be
// cleaned up, and the watchers of each key.
#pragma once

#include <grove/core/process.hpp>
#include <grove/registry/registry.hpp>

#include <algorithm>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

namespace grove::detail {

class registry_book {
public:
  struct owned {
    monitor_ref monitor;
    std::set<std::string> names, groups, watching, claims;
    bool idle() const { return names.empty() && groups.empty() && watching.empty() && claims.empty(); }
  };
  using holding = std::set<std::string> owned::*;

  /// `p`'s entry; `self` (the registry's process) monitors `p` from its first.
  owned& owner(process& self, const pid& p) {
    auto [it, fresh] = owners_.try_emplace(p);
    if (fresh) it->second.monitor = self.monitor(p);
    return it->second;
  }

  /// `p` no longer holds `key` (in its names, groups, watching or claims);
  /// forgotten (and no longer monitored) once it holds nothing.
  void release(process& self, const pid& p, holding what, const std::string& key) {
    auto it = owners_.find(p);
    if (it == owners_.end()) return;
    (it->second.*what).erase(key);
    if (!it->second.idle()) return;
    self.demonitor(it->second.monitor);
    owners_.erase(it);
  }

  /// Takes the entry of an owner that ended (its monitor fired), with its
  /// watches dropped; nothing if it held nothing.
  std::optional<owned> ended(const pid& p) {
    auto it = owners_.find(p);
    if (it == owners_.end()) return std::nullopt;
    owned gone = std::move(it->second);
    owners_.erase(it);
    for (const auto& key : gone.watching) {
      auto w = watchers_.find(key);
      if (w == watchers_.end()) continue;
      std::erase(w->second, p);
      if (w->second.empty()) watchers_.erase(w);
    }
    return gone;
  }

  /// Starts (on) or stops `watcher` watching `key`; false if it is to
  /// start and is not alive.
  bool watch(process& self, const std::string& key, const pid& watcher, bool on) {
    auto& list = watchers_[key];
    auto it = std::find(list.begin(), list.end(), watcher);
    if (on) {
      if (!alive(watcher)) {
        if (list.empty()) watchers_.erase(key);
        return false;
      }
      if (it == list.end()) list.push_back(watcher);
      owner(self, watcher).watching.insert(key);
    } else {
      if (it != list.end()) list.erase(it);
      if (list.empty()) watchers_.erase(key);
      release(self, watcher, &owned::watching, key);
    }
    return true;
  }

  /// Calls f(pid, const owned&) for every owner.
  template <class F>
  void for_each_owner(F&& f) const {
    for (const auto& [p, o] : owners_) f(p, o);
  }

  /// Tells the watchers of `key`.
  void notify(const std::string& key, registry_event::kind what, const pid& who) const {
    auto it = watchers_.find(key);
    if (it == watchers_.end()) return;
    for (const pid& w : it->second) send(w, registry_event{what, key, who});
  }

private:
  std::unordered_map<pid, owned> owners_;
  std::unordered_map<std::string, std::vector<pid>> watchers_;
};

} // namespace grove::detail
