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
    if (name == "read") p.identities.emplace(id, role::read);
    else if (name == "write") p.identities.emplace(id, role::write);
    else if (name == "admin") p.identities.emplace(id, role::admin);
    else throw access_error("identities.\"" + id + "\".role: expected \"read\", \"write\" or \"admin\"");
  }
  return p;
}

std::optional<access_match> match(const access_policy& p, const std::vector<std::string>& identities) {
  for (const std::string& id : identities) {
    if (auto it = p.identities.find(id); it != p.identities.end()) return access_match{it->second, id};
  }
  return std::nullopt;
}

role required_role(std::string_view op) noexcept {
  if (op == "put" || op == "delete" || op == "incr") return role::write;
  if (op.substr(0, 6) == "debug.") return role::admin;
  return role::read;
}

} // namespace groved
