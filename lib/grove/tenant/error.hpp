// grove/tenant/error.hpp — the tenant layer's error codes (category
// "grove.tenant"). What the layer throws is a grove::error with one of these
// codes, or a core grove::errc (see grove/core/error.hpp for the rule).
#pragma once

#include <grove/core/error.hpp>

namespace grove {

enum class tenant_errc {
  bad_tenant_id = 1, ///< a tenant id is empty or longer than max_tenant_id_bytes
  store_failed,      ///< the record store could not read or commit; nothing of that change was applied
  store_refused,     ///< the store file is damaged, unreadable or not a tenant store; it was left untouched
  already_exists,    ///< install of an id the manager already has (in any state)
  tenant_not_found,  ///< update or uninstall of an id the manager does not have
  busy,              ///< an install, update or uninstall of that tenant is still in progress
  too_many_tenants,  ///< install past tenant_manager_options::max_tenants
};

const std::error_category& tenant_category() noexcept;
inline std::error_code make_error_code(tenant_errc e) noexcept { return {static_cast<int>(e), tenant_category()}; }

} // namespace grove

template <>
struct std::is_error_code_enum<grove::tenant_errc> : std::true_type {};
