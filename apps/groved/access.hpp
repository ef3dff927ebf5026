// groved's access policy: which client identities are served, and what
// each may do. A JSON document, read from a file or an HTTP(S) URL as a
// remote term (refreshed every access.refresh_ms and on SIGHUP; every
// request reads it lock-free):
//
//   {"format": "groved-access", "version": 1,
//    "identities": {
//      "URI:grove://tenant/a":          {"role": "write", "tenant": "a"},
//      "subject:/CN=grove tenant b":    {"role": "read",  "tenant": "b"},
//      "URI:grove://ops":               {"role": "admin"},
//      "tcp":                           {"role": "write", "tenant": "dev"}}}
//
// A TLS client's identities are its certificate's subject alternative
// names ("URI:…", "DNS:…", "email:…", "IP:…", in the certificate's order)
// and then "subject:" with its subject; the first one the policy names
// decides. A plain TCP client is "tcp"; a TLS client without a
// certificate (one-way TLS) is "anonymous".
//
// Roles: "read" (ping, get, keys, subscribe, unsubscribe, stats), "write"
// (also put, delete, incr), "admin" (everything: tenant.* and debug ops).
// "tenant" (optional; 1 to 64 of A-Z a-z 0-9 _ . -) is the tenant whose
// keys the identity reaches; without it, tenants.default. A tenant the
// policy names need not be installed yet: its clients are refused
// (no_tenant) until an admin installs it.
// Without access.policy every client the listeners accept is served with
// every op, in tenants.default.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace groved {

enum class role : std::uint8_t { read, write, admin };

std::string_view to_string(role r) noexcept;

/// The form of a tenant id, for messages.
inline constexpr std::string_view tenant_id_form =
    "1 to 64 characters of A-Z a-z 0-9 _ . - (not starting with . or -)";
bool is_tenant_id(std::string_view id) noexcept;

struct grant {
  role granted = role::read;
  std::string tenant; // empty: tenants.default
};

struct access_policy {
  std::unordered_map<std::string, grant> identities;
};

class access_error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// Parses and checks a policy. Throws access_error naming what is wrong
/// (the field, and the expected form).
access_policy parse_access_policy(std::string_view bytes);

/// The role of the first identity the policy names, that identity and its
/// tenant; nullopt when it names none. The views point into the policy
/// (checked on every request: nothing is copied), so they are valid while
/// the caller holds it.
struct access_match {
  role granted;
  std::string_view identity;
  std::string_view tenant; // empty: tenants.default
};
std::optional<access_match> match(const access_policy& p, const std::vector<std::string>& identities);

/// The least role that may run `op` (unknown ops: read, so that they get
/// unknown_op rather than forbidden).
role required_role(std::string_view op) noexcept;

} // namespace groved
