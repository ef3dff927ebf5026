#include <grove/tenant/record.hpp>

#include <array>
#include <utility>

namespace grove {

namespace {

constexpr std::array<std::pair<tenant_state, std::string_view>, 5> state_names{{
    {tenant_state::installing, "installing"},
    {tenant_state::running, "running"},
    {tenant_state::updating, "updating"},
    {tenant_state::uninstalling, "uninstalling"},
    {tenant_state::error_occurred, "error_occurred"},
}};

constexpr std::array<std::pair<tenant_event_kind, std::string_view>, 7> event_names{{
    {tenant_event_kind::install, "install"},
    {tenant_event_kind::update, "update"},
    {tenant_event_kind::uninstall, "uninstall"},
    {tenant_event_kind::error_occurred, "error_occurred"},
    {tenant_event_kind::restarted, "restarted"},
    {tenant_event_kind::gave_up, "gave_up"},
    {tenant_event_kind::dropped, "dropped"},
}};

template <class Enum, std::size_t N>
std::string_view name_of(const std::array<std::pair<Enum, std::string_view>, N>& names, Enum value) noexcept {
  for (const auto& [v, name] : names) {
    if (v == value) return name;
  }
  return "unknown";
}

template <class Enum, std::size_t N>
std::optional<Enum> value_of(const std::array<std::pair<Enum, std::string_view>, N>& names,
                             std::string_view text) noexcept {
  for (const auto& [v, name] : names) {
    if (name == text) return v;
  }
  return std::nullopt;
}

} // namespace

std::string_view to_string(tenant_state s) noexcept { return name_of(state_names, s); }
std::optional<tenant_state> parse_tenant_state(std::string_view text) noexcept { return value_of(state_names, text); }
std::string_view to_string(tenant_event_kind k) noexcept { return name_of(event_names, k); }
std::optional<tenant_event_kind> parse_tenant_event_kind(std::string_view text) noexcept {
  return value_of(event_names, text);
}

void check_tenant_id(std::string_view id) {
  if (id.empty()) throw grove::error(tenant_errc::bad_tenant_id, "tenant id: empty (expected 1 to 255 bytes)");
  if (id.size() > max_tenant_id_bytes) {
    throw grove::error(tenant_errc::bad_tenant_id,
                       "tenant id: " + std::to_string(id.size()) + " bytes (expected 1 to 255 bytes)");
  }
}

const std::error_category& tenant_category() noexcept {
  static constexpr const char* messages[] = { // in the order of tenant_errc
      "bad tenant id: it must be 1 to 255 bytes",
      "the tenant store failed; the change was not applied (see the text for the store and the reason)",
      "the tenant store was refused: its file is damaged, unreadable or not a tenant store (it was left untouched)",
      "a tenant with this id already exists",
      "no tenant with this id",
      "an install, update or uninstall of this tenant is still in progress",
      "the tenant manager holds as many tenants as its max_tenants allows",
  };
  return detail::table_category_of<tenant_errc::too_many_tenants>("grove.tenant", messages);
}

} // namespace grove
