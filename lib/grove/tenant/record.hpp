// grove/tenant/record.hpp — what the tenant layer stores about each tenant:
// its record (id, lifecycle state, config, capabilities, generation, last
// error, persisted snapshot, timestamps) and the events its changes produce.
//
//   grove::tenant_record r{.id = "acme", .state = grove::tenant_state::running,
//                          .config = {{"plan", "gold"}}};
//   grove::check_tenant_id(r.id);              // throws tenant_errc::bad_tenant_id when empty or too long
//   std::string_view s = grove::to_string(r.state);   // "running"
//
// Values only: copy and compare them freely.
#pragma once

#include <grove/tenant/error.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace grove {

/// Where a tenant is in its lifecycle (JetPluginSDK.TenantMan's states).
enum class tenant_state : std::uint8_t {
  installing,     ///< an install is in progress
  running,        ///< installed; its process runs
  updating,       ///< an update is in progress (the tenant keeps serving)
  uninstalling,   ///< an uninstall is in progress
  error_occurred, ///< handle_run failed, or restarts gave up; last_error says why
};

std::string_view to_string(tenant_state s) noexcept;
/// The state named by to_string's text; std::nullopt for any other text.
std::optional<tenant_state> parse_tenant_state(std::string_view text) noexcept;

/// A tenant id is any non-empty byte string up to this long; no byte has a
/// meaning of its own (no delimiters, no case folding).
inline constexpr std::size_t max_tenant_id_bytes = 255;

/// Throws grove::error(tenant_errc::bad_tenant_id) saying what is wrong
/// with `id`.
void check_tenant_id(std::string_view id);

using tenant_clock = std::chrono::system_clock;

struct tenant_record {
  std::string id{};                                   ///< unique per manager
  tenant_state state = tenant_state::installing;      ///< lifecycle state
  nlohmann::json config = nlohmann::json::object();   ///< the tenant's configuration (a JSON object)
  nlohmann::json capabilities = nlohmann::json::array(); ///< what it may do (a JSON array)
  std::uint64_t generation = 0;                       ///< bumped by every change of the record
  std::string last_error{};                           ///< why it failed last (empty: no error)
  std::optional<nlohmann::json> snapshot{};           ///< state the tenant asked to persist (handle_run gets it after a restart)
  tenant_clock::time_point created_at{};              ///< when it was first stored
  tenant_clock::time_point updated_at{};              ///< when it last changed

  friend bool operator==(const tenant_record&, const tenant_record&) = default;
};

/// What happened to a tenant, as the event sink (and the store's outbox)
/// carries it.
enum class tenant_event_kind : std::uint8_t {
  install,        ///< an install finished (ok or error)
  update,         ///< an update finished (ok or error)
  uninstall,      ///< an uninstall finished (ok or error)
  error_occurred, ///< handle_run failed
  restarted,      ///< its process ended and was started again
  gave_up,        ///< it crashed past its restart intensity; its process stays down
  dropped,        ///< an install in progress when the manager stopped was dropped at warm-up
};

std::string_view to_string(tenant_event_kind k) noexcept;
std::optional<tenant_event_kind> parse_tenant_event_kind(std::string_view text) noexcept;

struct tenant_event {
  std::uint64_t sequence = 0;        ///< given by the store when committed; increases across the store's life
  std::string tenant{};              ///< the tenant's id
  tenant_event_kind kind = tenant_event_kind::install;
  bool ok = true;                    ///< whether the operation succeeded
  std::string error{};               ///< why not (empty when ok)
  std::uint64_t generation = 0;      ///< the record's generation after the change (0: the record is gone)
  tenant_clock::time_point at{};     ///< when it happened

  friend bool operator==(const tenant_event&, const tenant_event&) = default;
};

} // namespace grove
