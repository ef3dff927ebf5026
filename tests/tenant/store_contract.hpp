// The tenant store contract (grove/tenant/store.hpp) as test templates,
// instantiated for each implementation with a Kind whose open() gives a
// fresh, empty store: memory and SQLite in store_test.cpp, etcd in
// tests/etcd/etcd_tenant_store_test.cpp. Invoke the templates with
// GROVE_STORE_CONTRACT(kinds...).
#pragma once

#include <grove/tenant/store.hpp>

#include <doctest/doctest.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

// The store contract (store.hpp), checked on every implementation.

namespace {

/// Now, to the microsecond: what every store keeps exactly.
grove::tenant_clock::time_point now_us() {
  return std::chrono::time_point_cast<std::chrono::microseconds>(grove::tenant_clock::now());
}

grove::tenant_record record(std::string id, std::uint64_t generation) {
  grove::tenant_record r;
  r.id = std::move(id);
  r.state = grove::tenant_state::running;
  r.config = {{"plan", "gold"}, {"limits", {{"rps", 100}, {"burst", 2.5}}}, {"name", "Ünïcode ✓"}};
  r.capabilities = {"read", "write", nullptr, 1};
  r.generation = generation;
  r.created_at = now_us();
  r.updated_at = r.created_at + std::chrono::microseconds(1);
  return r;
}

grove::tenant_event event(std::string tenant, grove::tenant_event_kind kind, std::uint64_t generation) {
  return grove::tenant_event{.tenant = std::move(tenant), .kind = kind, .generation = generation, .at = now_us()};
}

grove::tenant_change put(grove::tenant_record r, std::vector<grove::tenant_event> events = {}) {
  grove::tenant_change c;
  c.put = std::move(r);
  c.events = std::move(events);
  return c;
}

std::error_code code_of_commit(grove::tenant_store& store, grove::tenant_change change) {
  try {
    store.commit(std::move(change));
  } catch (const grove::error& e) {
    return e.code();
  }
  return {};
}

} // namespace

TEST_CASE_TEMPLATE_DEFINE("a_store_gives_back_records_and_events_exactly_as_committed", Kind, store_contract_0) {
  Kind kind;
  auto store = kind.open();
  const std::string odd_id("a/b:c\0\xff", 7); // any bytes
  const std::string long_id(grove::max_tenant_id_bytes, 'z');
  grove::tenant_record first = record(odd_id, 1);
  first.last_error = "handle_run: upstream refused";
  first.state = grove::tenant_state::error_occurred;
  grove::tenant_record second = record(long_id, 7);
  second.snapshot = nlohmann::json{{"cursor", 42}, {"seen", {1, 2, 3}}};
  grove::tenant_event failed = event(odd_id, grove::tenant_event_kind::error_occurred, 1);
  failed.ok = false;
  failed.error = "handle_run: upstream refused";

  auto s1 = store->commit(put(first, {event(odd_id, grove::tenant_event_kind::install, 1), failed}));
  auto s2 = store->commit(put(second, {event(long_id, grove::tenant_event_kind::install, 7)}));
  REQUIRE(s1.size() == 2);
  REQUIRE(s2.size() == 1);
  CHECK(s1[0] < s1[1]);
  CHECK(s1[1] < s2[0]);

  grove::tenant_store_contents got = store->load();
  REQUIRE(got.records.size() == 2);
  CHECK(got.records[0] == first); // id order: "a..." before "z..."
  CHECK(got.records[1] == second);
  REQUIRE(got.outbox.size() == 3);
  CHECK(got.outbox[0].sequence == s1[0]);
  CHECK(got.outbox[1].sequence == s1[1]);
  CHECK(got.outbox[2].sequence == s2[0]);
  grove::tenant_event expected = failed;
  expected.sequence = s1[1];
  CHECK(got.outbox[1] == expected);
  CHECK(got.outbox[2].tenant == long_id);
}

TEST_CASE_TEMPLATE_DEFINE("a_put_replaces_an_erase_removes_and_an_erase_of_nothing_is_fine", Kind, store_contract_1) {
  Kind kind;
  auto store = kind.open();
  store->commit(put(record("t1", 1)));
  store->commit(put(record("t2", 1)));
  grove::tenant_record changed = record("t1", 2);
  changed.state = grove::tenant_state::updating;
  changed.config = nlohmann::json::object();
  store->commit(put(changed));
  grove::tenant_change gone;
  gone.erase = "t2";
  gone.events.push_back(event("t2", grove::tenant_event_kind::uninstall, 0));
  store->commit(gone);
  grove::tenant_change nothing;
  nothing.erase = "never-there";
  CHECK(store->commit(nothing).empty());

  auto got = store->load();
  REQUIRE(got.records.size() == 1);
  CHECK(got.records[0] == changed);
  REQUIRE(got.outbox.size() == 1);
  CHECK(got.outbox[0].kind == grove::tenant_event_kind::uninstall);
}

TEST_CASE_TEMPLATE_DEFINE("acknowledged_events_leave_the_outbox_and_their_sequences_are_never_reused", Kind, store_contract_2) {
  Kind kind;
  auto store = kind.open();
  auto a = store->commit(put(record("t", 1), {event("t", grove::tenant_event_kind::install, 1),
                                              event("t", grove::tenant_event_kind::update, 2)}));
  store->acknowledge({a[0], 999999}); // an unknown sequence is ignored
  auto got = store->load();
  REQUIRE(got.outbox.size() == 1);
  CHECK(got.outbox[0].sequence == a[1]);
  store->acknowledge({a[1]});
  CHECK(store->load().outbox.empty());
  auto b = store->commit(put(record("t", 3), {event("t", grove::tenant_event_kind::update, 3)}));
  REQUIRE(b.size() == 1);
  CHECK(b[0] > a[1]); // not reused after the outbox emptied
}

TEST_CASE_TEMPLATE_DEFINE("a_change_with_a_bad_tenant_id_applies_nothing", Kind, store_contract_3) {
  Kind kind;
  auto store = kind.open();
  grove::tenant_change bad = put(record("", 1), {event("", grove::tenant_event_kind::install, 1)});
  bad.erase = "kept";
  store->commit(put(record("kept", 1)));
  CHECK(code_of_commit(*store, std::move(bad)) == grove::tenant_errc::bad_tenant_id);
  CHECK(code_of_commit(*store, put(record(std::string(256, 'x'), 1))) == grove::tenant_errc::bad_tenant_id);
  auto got = store->load();
  REQUIRE(got.records.size() == 1);
  CHECK(got.records[0].id == "kept");
  CHECK(got.outbox.empty());
}

TEST_CASE_TEMPLATE_DEFINE("a_change_erasing_and_putting_one_id_keeps_the_put_and_a_twice_acknowledged_event_is_fine", Kind,
                          store_contract_4) {
  Kind kind;
  auto store = kind.open();
  store->commit(put(record("t", 1)));
  grove::tenant_change both = put(record("t", 2), {event("t", grove::tenant_event_kind::update, 2)});
  both.erase = "t"; // erased, then put: the put stands
  const auto sequences = store->commit(std::move(both));
  REQUIRE(sequences.size() == 1);
  auto got = store->load();
  REQUIRE(got.records.size() == 1);
  CHECK(got.records[0].generation == 2);
  store->acknowledge({sequences[0], sequences[0]});
  CHECK(store->load().outbox.empty());
}

#define GROVE_STORE_CONTRACT(...)                                                                                      \
  TEST_CASE_TEMPLATE_INVOKE(store_contract_0, __VA_ARGS__);                                                            \
  TEST_CASE_TEMPLATE_INVOKE(store_contract_1, __VA_ARGS__);                                                            \
  TEST_CASE_TEMPLATE_INVOKE(store_contract_2, __VA_ARGS__);                                                            \
  TEST_CASE_TEMPLATE_INVOKE(store_contract_3, __VA_ARGS__);                                                            \
  TEST_CASE_TEMPLATE_INVOKE(store_contract_4, __VA_ARGS__)
