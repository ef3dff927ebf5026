#include <grove/etcd/etcd_tenant_store.hpp>

#include <grove/tenant/error.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>

namespace grove {

namespace {

constexpr const char* schema_text = "grove tenant store 1";
/// etcd's default --max-txn-ops is 128; a change needs two more than its events.
constexpr std::size_t max_events_per_change = 120;

std::string hex(std::string_view bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

std::optional<std::string> unhex(std::string_view text) {
  if (text.size() % 2 != 0) return std::nullopt;
  std::string out;
  out.reserve(text.size() / 2);
  for (std::size_t i = 0; i < text.size(); i += 2) {
    unsigned v = 0;
    auto [end, ec] = std::from_chars(text.data() + i, text.data() + i + 2, v, 16);
    if (ec != std::errc() || end != text.data() + i + 2) return std::nullopt;
    out += static_cast<char>(v);
  }
  return out;
}

std::int64_t micros(tenant_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
}
tenant_clock::time_point from_micros(std::int64_t us) {
  return tenant_clock::time_point(std::chrono::duration_cast<tenant_clock::duration>(std::chrono::microseconds(us)));
}

std::string sequence_key_text(std::uint64_t s) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%020llu", static_cast<unsigned long long>(s));
  return buf;
}

/// A record's value (its id is the key's last part).
std::string record_value(const tenant_record& r) {
  nlohmann::json j{{"state", std::string(to_string(r.state))},
                   {"config", r.config},
                   {"capabilities", r.capabilities},
                   {"generation", r.generation},
                   {"last_error", hex(r.last_error)},
                   {"created_at", micros(r.created_at)},
                   {"updated_at", micros(r.updated_at)}};
  if (r.snapshot) j["snapshot"] = nlohmann::json::array({*r.snapshot}); // (wrapped: a null snapshot is one)
  return j.dump(); // throws on text that is not UTF-8: the commit fails before anything is sent
}

std::string event_value(const tenant_event& e) {
  return nlohmann::json{{"tenant", hex(e.tenant)},
                        {"kind", std::string(to_string(e.kind))},
                        {"ok", e.ok},
                        {"error", hex(e.error)},
                        {"generation", e.generation},
                        {"at", micros(e.at)}}
      .dump();
}

} // namespace

template <class T>
T etcd_tenant_store::run(awaitable<T> work, const char* what) {
  try {
    return node_.block_on(std::move(work));
  } catch (const grove::error& e) {
    if (e.code().category() == tenant_category()) throw;
    throw grove::error(tenant_errc::store_failed, describe() + ": " + what + ": " + e.what());
  }
}

etcd_tenant_store::etcd_tenant_store(grove::node& n, etcd::client etcd, etcd_tenant_store_options options)
    : node_(n), etcd_(std::move(etcd)), options_(std::move(options)) {
  if (options_.prefix.empty()) {
    throw grove::error(errc::invalid_argument,
                       "etcd_tenant_store_options.prefix: empty (expected a key prefix such as \"grove/tenants/\")");
  }
  const std::string schema_key = options_.prefix + "schema";
  try {
    etcd::txn_request t;
    t.when.push_back(etcd::compare::absent(schema_key));
    t.then.push_back(etcd::txn_op::get(options_.prefix, true)); // anything else there already?
    t.otherwise.push_back(etcd::txn_op::get(schema_key));
    etcd::txn_result r = node_.block_on(etcd_.txn(std::move(t)));
    const auto& got = std::get<etcd::get_result>(r.responses.at(0));
    if (r.succeeded) {
      if (!got.kvs.empty()) {
        throw grove::error(tenant_errc::store_refused,
                           describe() + ": holds keys that are not a tenant store's (" + got.kvs[0].key + ", ...)");
      }
      // Empty: make it a store (only if still absent: two openers race safely).
      etcd::txn_request mark;
      mark.when.push_back(etcd::compare::absent(schema_key));
      mark.then.push_back(etcd::txn_op::put(schema_key, schema_text));
      (void)node_.block_on(etcd_.txn(std::move(mark)));
    } else if (got.kvs.empty() || got.kvs[0].value != schema_text) {
      const std::string said = got.kvs.empty() ? std::string() : got.kvs[0].value;
      throw grove::error(tenant_errc::store_refused,
                         describe() + ": its schema key says \"" + said + "\" (expected \"" + schema_text + "\")");
    }
  } catch (const grove::error& e) {
    if (e.code() == tenant_errc::store_refused) throw;
    throw grove::error(tenant_errc::store_refused, describe() + ": cannot be read: " + e.what());
  }
}

std::string etcd_tenant_store::describe() const { return "etcd " + options_.prefix; }

std::string etcd_tenant_store::record_key(const std::string& prefix, std::string_view id) {
  return prefix + "records/" + std::string(id);
}

tenant_record etcd_tenant_store::parse_record(std::string_view id, const std::string& value) {
  const nlohmann::json j = nlohmann::json::parse(value, nullptr, false);
  auto damaged = [](const std::string& why) { return grove::error(tenant_errc::store_failed, why); };
  if (!j.is_object()) throw damaged("not a JSON object");
  try {
    tenant_record rec;
    rec.id = std::string(id);
    const auto state = parse_tenant_state(j.at("state").get<std::string>());
    if (!state) throw damaged("unknown state");
    rec.state = *state;
    rec.config = j.at("config");
    rec.capabilities = j.at("capabilities");
    rec.generation = j.at("generation").get<std::uint64_t>();
    const auto error = unhex(j.at("last_error").get<std::string>());
    if (!error) throw damaged("last_error is not hex");
    rec.last_error = *error;
    if (j.contains("snapshot")) rec.snapshot = j.at("snapshot").at(0);
    rec.created_at = from_micros(j.at("created_at").get<std::int64_t>());
    rec.updated_at = from_micros(j.at("updated_at").get<std::int64_t>());
    return rec;
  } catch (const nlohmann::json::exception& e) {
    throw damaged(e.what());
  }
}

tenant_store_contents etcd_tenant_store::load() {
  const std::string sequence_key = options_.prefix + "sequence";
  etcd::txn_request t; // one revision for all three
  t.then.push_back(etcd::txn_op::get(sequence_key));
  t.then.push_back(etcd::txn_op::get(options_.prefix + "records/", true));
  t.then.push_back(etcd::txn_op::get(options_.prefix + "outbox/", true));
  const etcd::txn_result r = run(etcd_.txn(std::move(t)), "load");
  const auto& sequence = std::get<etcd::get_result>(r.responses.at(0));
  const auto& records = std::get<etcd::get_result>(r.responses.at(1));
  const auto& outbox = std::get<etcd::get_result>(r.responses.at(2));
  auto damaged = [&](const std::string& key, const std::string& why) {
    return grove::error(tenant_errc::store_failed, describe() + ": " + key + ": " + why);
  };
  fence_ = sequence.kvs.empty() ? 0 : sequence.kvs[0].mod_revision;
  last_sequence_ = 0;
  if (!sequence.kvs.empty()) {
    const std::string& v = sequence.kvs[0].value;
    auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), last_sequence_);
    if (ec != std::errc() || end != v.data() + v.size()) throw damaged(sequence_key, "not a number: " + v);
  }
  tenant_store_contents out;
  const std::size_t records_at = options_.prefix.size() + 8;
  for (const etcd::key_value& kv : records.kvs) {
    try {
      out.records.push_back(parse_record(std::string_view(kv.key).substr(records_at), kv.value));
    } catch (const grove::error& e) {
      throw grove::error(tenant_errc::store_failed, describe() + ": " + kv.key + ": " + e.what());
    }
  }
  const std::size_t outbox_at = options_.prefix.size() + 7;
  for (const etcd::key_value& kv : outbox.kvs) {
    nlohmann::json j = nlohmann::json::parse(kv.value, nullptr, false);
    if (!j.is_object()) throw damaged(kv.key, "not a JSON object");
    try {
      tenant_event e;
      const std::string seq = kv.key.substr(outbox_at);
      auto [end, ec] = std::from_chars(seq.data(), seq.data() + seq.size(), e.sequence);
      if (ec != std::errc() || end != seq.data() + seq.size()) throw damaged(kv.key, "not a sequence");
      const auto tenant = unhex(j.at("tenant").get<std::string>());
      const auto error = unhex(j.at("error").get<std::string>());
      const auto kind = parse_tenant_event_kind(j.at("kind").get<std::string>());
      if (!tenant || !error || !kind) throw damaged(kv.key, "a field is not what the store writes");
      e.tenant = *tenant;
      e.kind = *kind;
      e.ok = j.at("ok").get<bool>();
      e.error = *error;
      e.generation = j.at("generation").get<std::uint64_t>();
      e.at = from_micros(j.at("at").get<std::int64_t>());
      out.outbox.push_back(std::move(e));
    } catch (const nlohmann::json::exception& e) {
      throw damaged(kv.key, e.what());
    }
  }
  return out; // records/ and outbox/ keys come sorted: ids by bytes, sequences zero-padded
}

std::int64_t etcd_tenant_store::fenced(etcd::txn_request request, const char* what, const std::string& expect_sequence) {
  const std::string sequence_key = options_.prefix + "sequence";
  request.when.insert(request.when.begin(), etcd::compare::mod_revision_is(sequence_key, fence_));
  request.then.push_back(etcd::txn_op::put(sequence_key, expect_sequence));
  request.otherwise.push_back(etcd::txn_op::get(sequence_key));
  etcd::txn_result r;
  try {
    r = node_.block_on(etcd_.txn(std::move(request)));
  } catch (const grove::error& e) {
    if (e.code() != etcd::errc::outcome_unknown) {
      throw grove::error(tenant_errc::store_failed, describe() + ": " + what + ": " + e.what());
    }
    // Sent, answer lost: applied if the sequence key now holds what this
    // write put there, at a revision after the fence.
    etcd::get_result now;
    try {
      now = node_.block_on(etcd_.get(sequence_key));
    } catch (const grove::error& again) {
      throw grove::error(tenant_errc::store_failed,
                         describe() + ": " + what + ": the outcome is unknown (" + e.what() + "), and etcd cannot say: " +
                             again.what());
    }
    if (!now.kvs.empty() && now.kvs[0].value == expect_sequence && now.kvs[0].mod_revision > fence_) {
      fence_ = now.kvs[0].mod_revision;
      return fence_;
    }
    throw grove::error(tenant_errc::store_failed, describe() + ": " + what + ": not applied (" + e.what() + ")");
  }
  if (!r.succeeded) {
    std::int64_t at = 0;
    if (const auto* g = std::get_if<etcd::get_result>(&r.responses.at(0)); g && !g->kvs.empty()) at = g->kvs[0].mod_revision;
    throw grove::error(tenant_errc::store_failed,
                       describe() + ": " + what + ": another writer took the store over (its sequence key is at revision " +
                           std::to_string(at) + ", this store last saw " + std::to_string(fence_) +
                           "): nothing applied; load() again to carry on from what it wrote");
  }
  fence_ = r.revision;
  return r.revision;
}

std::vector<std::uint64_t> etcd_tenant_store::commit(tenant_change change) {
  if (change.put) check_tenant_id(change.put->id);
  if (change.events.size() > max_events_per_change) {
    throw grove::error(tenant_errc::store_failed, describe() + ": a change with " + std::to_string(change.events.size()) +
                                                      " events (at most " + std::to_string(max_events_per_change) +
                                                      " fit one etcd transaction)");
  }
  etcd::txn_request t;
  try {
    // Erased then put (as the other stores apply it): the put stands, and
    // etcd refuses a transaction naming one key twice.
    if (change.erase && !(change.put && change.put->id == *change.erase)) {
      t.then.push_back(etcd::txn_op::erase(options_.prefix + "records/" + *change.erase));
    }
    if (change.put) t.then.push_back(etcd::txn_op::put(options_.prefix + "records/" + change.put->id, record_value(*change.put)));
  } catch (const nlohmann::json::exception& e) {
    throw grove::error(tenant_errc::store_failed, describe() + ": the record cannot be written as JSON: " + e.what());
  }
  std::vector<std::uint64_t> sequences;
  std::uint64_t next = last_sequence_;
  for (const tenant_event& e : change.events) {
    ++next;
    sequences.push_back(next);
    t.then.push_back(etcd::txn_op::put(options_.prefix + "outbox/" + sequence_key_text(next), event_value(e)));
  }
  (void)fenced(std::move(t), "commit", std::to_string(next));
  last_sequence_ = next;
  return sequences;
}

void etcd_tenant_store::acknowledge(const std::vector<std::uint64_t>& given) {
  // Each once: etcd refuses a transaction naming one key twice.
  std::vector<std::uint64_t> sequences = given;
  std::sort(sequences.begin(), sequences.end());
  sequences.erase(std::unique(sequences.begin(), sequences.end()), sequences.end());
  if (sequences.empty()) return;
  for (std::size_t from = 0; from < sequences.size(); from += max_events_per_change) {
    etcd::txn_request t;
    const std::size_t to = std::min(sequences.size(), from + max_events_per_change);
    for (std::size_t i = from; i < to; ++i) {
      t.then.push_back(etcd::txn_op::erase(options_.prefix + "outbox/" + sequence_key_text(sequences[i])));
    }
    (void)fenced(std::move(t), "acknowledge", std::to_string(last_sequence_));
  }
}

} // namespace grove
