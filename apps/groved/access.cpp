#include "access.hpp"

#include <nlohmann/json.hpp>

namespace groved {
namespace {

bool known_identity_form(std::string_view id) {
  if (id == "tcp" || id == "anonymous") return true;
  for (std::string_view prefix : {"subject:/", "URI:", "DNS:", "email:", "IP:"}) {
    if (id.size() > prefix.size() && id.substr(0, prefix.size()) == prefix) return true;
  }
  return false;
}

} // namespace

bool is_tenant_id(std::string_view id) noexcept {
  if (id.empty() || id.size() > 64 || id[0] == '.' || id[0] == '-') return false;
  for (char c : id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
                    c == '-';
    if (!ok) return false;
  }
  return true;
}

std::string_view to_string(role r) noexcept {
  switch (r) {
    case role::read: return "read";
    case role::write: return "write";
    case role::admin: return "admin";
  }
  return "read";
}

access_policy parse_access_policy(std::string_view bytes) {
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(bytes);
  } catch (const nlohmann::json::exception& e) {
    throw access_error(std::string("not JSON: ") + e.what());
  }
  if (!doc.is_object() || doc.value("format", "") != "groved-access") {
    throw access_error("format: expected \"groved-access\" (a JSON object {\"format\":\"groved-access\",\"version\":1,"
                       "\"identities\":{...}})");
  }
  if (!doc.contains("version") || doc["version"] != 1) throw access_error("version: expected 1");
  const auto ids = doc.find("identities");
  if (ids == doc.end() || !ids->is_object()) {
    throw access_error("identities: expected an object of identity -> {\"role\": \"read\" | \"write\" | \"admin\"}");
  }
  access_policy p;
  for (auto it = ids->begin(); it != ids->end(); ++it) {
    const std::string& id = it.key();
    if (!known_identity_form(id)) {
      throw access_error("identities: \"" + id +
                         "\" is no identity (expected \"URI:…\", \"DNS:…\", \"email:…\", \"IP:…\", "
                         "\"subject:/CN=…\", \"tcp\" or \"anonymous\")");
    }
    const nlohmann::json& entry = it.value();
    const auto r = entry.is_object() ? entry.find("role") : entry.end();
    const std::string name = (r != entry.end() && r->is_string()) ? r->get<std::string>() : "";
    grant g;
    if (name == "read") g.granted = role::read;
    else if (name == "write") g.granted = role::write;
    else if (name == "admin") g.granted = role::admin;
    else throw access_error("identities.\"" + id + "\".role: expected \"read\", \"write\" or \"admin\"");
    if (const auto t = entry.find("tenant"); t != entry.end()) {
      if (!t->is_string() || !is_tenant_id(t->get_ref<const std::string&>())) {
        throw access_error("identities.\"" + id + "\".tenant: expected " + std::string(tenant_id_form));
      }
      g.tenant = t->get<std::string>();
    }
    for (auto field = entry.begin(); field != entry.end(); ++field) {
      if (field.key() != "role" && field.key() != "tenant") {
        throw access_error("identities.\"" + id + "\"." + field.key() + ": unknown field (expected \"role\" and \"tenant\")");
      }
    }
    p.identities.emplace(id, std::move(g));
  }
  return p;
}

std::optional<access_match> match(const access_policy& p, const std::vector<std::string>& identities) {
  for (const std::string& id : identities) {
    if (auto it = p.identities.find(id); it != p.identities.end()) {
      return access_match{it->second.granted, it->first, it->second.tenant};
    }
  }
  return std::nullopt;
}

role required_role(std::string_view op) noexcept {
  if (op == "put" || op == "delete" || op == "incr") return role::write;
  if (op.substr(0, 6) == "debug." || op.substr(0, 7) == "tenant.") return role::admin;
  return role::read;
}

} // namespace groved
