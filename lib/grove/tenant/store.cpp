#include <grove/tenant/store.hpp>

#include <utility>

namespace grove {

tenant_store_contents memory_tenant_store::load() {
  std::lock_guard lock(mutex_);
  tenant_store_contents contents;
  contents.records.reserve(records_.size());
  for (const auto& [id, record] : records_) contents.records.push_back(record);
  contents.outbox.reserve(outbox_.size());
  for (const auto& [sequence, event] : outbox_) contents.outbox.push_back(event);
  return contents;
}

std::vector<std::uint64_t> memory_tenant_store::commit(tenant_change change) {
  if (change.put) check_tenant_id(change.put->id); // before anything changes: all or nothing
  std::lock_guard lock(mutex_);
  if (change.erase) records_.erase(*change.erase);
  if (change.put) {
    std::string id = change.put->id;
    records_.insert_or_assign(std::move(id), std::move(*change.put));
  }
  std::vector<std::uint64_t> sequences;
  sequences.reserve(change.events.size());
  for (tenant_event& event : change.events) {
    event.sequence = ++last_sequence_;
    sequences.push_back(event.sequence);
    outbox_.emplace(event.sequence, std::move(event));
  }
  return sequences;
}

void memory_tenant_store::acknowledge(const std::vector<std::uint64_t>& sequences) {
  std::lock_guard lock(mutex_);
  for (std::uint64_t s : sequences) outbox_.erase(s);
}

} // namespace grove
