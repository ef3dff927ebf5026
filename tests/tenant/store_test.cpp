#include <grove/tenant/store.hpp>

#include <grove/tenant/sqlite_store.hpp>

#include "../temp_dir.hpp"

#include "store_contract.hpp"

#include <doctest/doctest.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace {

struct memory_kind {
  std::unique_ptr<grove::tenant_store> open() { return std::make_unique<grove::memory_tenant_store>(); }
};

struct sqlite_kind {
  test_support::temp_dir dir{"grove-tenant-store"};
  std::unique_ptr<grove::tenant_store> open() {
    return std::make_unique<grove::sqlite_tenant_store>(dir.file("tenants.db"));
  }
};

} // namespace

GROVE_STORE_CONTRACT(memory_kind, sqlite_kind);

TEST_CASE("the_header_snippet_commits_a_record_with_its_event") {
  grove::memory_tenant_store store;
  grove::tenant_change c;
  c.put = grove::tenant_record{.id = "acme", .state = grove::tenant_state::running, .generation = 1};
  c.events.push_back({.tenant = "acme", .kind = grove::tenant_event_kind::install, .generation = 1});
  std::vector<std::uint64_t> sequences = store.commit(std::move(c));
  CHECK(store.load().outbox.size() == 1);
  store.acknowledge(sequences);
  CHECK(store.load().outbox.empty());
  CHECK(store.load().records.at(0).id == "acme");
  CHECK(store.describe() == "memory");
}
