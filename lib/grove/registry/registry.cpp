#include <grove/registry/error.hpp>
#include <grove/registry/registry.hpp>

namespace grove {

bool send(const registry& r, std::string_view name, message m) {
  const pid holder = r.whereis(name);
  if (!holder) return false;
  send(holder, std::move(m));
  return true;
}


const std::error_category& registry_category() noexcept {
  static constexpr const char* messages[] = { // in the order of registry_errc
      "the name is already registered to another live process (whereis it, or pick another name)",
  };
  return detail::table_category_of<registry_errc::already_registered>("grove.registry", messages);
}

} // namespace grove
