#include "config.hpp"

#include "access.hpp"

#include <grove/erps/json_codec.hpp>
#include <grove/etcd/client.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <fstream>
#include <functional>
#include <iomanip>
#include <iterator>
#include <ostream>
#include <optional>
#include <sstream>

#ifndef GROVED_CERTS_DIR
#define GROVED_CERTS_DIR "certs"
#endif

namespace groved {
namespace {

using json = nlohmann::json;

enum class kind : std::uint8_t { boolean, integer, text, milliseconds, choice };

struct option {
  std::string key;
  kind type;
  std::string help;
  std::function<json(const config&)> get;
  std::function<void(config&, const json&)> set;
};

std::string shown(const json& value) {
  std::string text = value.dump();
  if (text.size() > 60) text = text.substr(0, 57) + "...";
  return text;
}

[[noreturn]] void bad(const std::string& key, const std::string& expected, const json& got) {
  throw config_error(key + ": expected " + expected + ", got " + shown(got));
}

bool to_bool(const std::string& key, const json& v) {
  if (!v.is_boolean()) bad(key, "true or false", v);
  return v.get<bool>();
}

std::uint64_t to_uint(const std::string& key, const json& v, std::uint64_t lo, std::uint64_t hi) {
  const std::string expected = "an integer from " + std::to_string(lo) + " to " + std::to_string(hi);
  if (!v.is_number_integer()) bad(key, expected, v);
  if (v.is_number_unsigned()) {
    const auto n = v.get<std::uint64_t>();
    if (n < lo || n > hi) bad(key, expected, v);
    return n;
  }
  const auto n = v.get<std::int64_t>();
  if (n < 0 || static_cast<std::uint64_t>(n) < lo || static_cast<std::uint64_t>(n) > hi) bad(key, expected, v);
  return static_cast<std::uint64_t>(n);
}

std::string to_text(const std::string& key, const json& v, bool allow_empty) {
  if (!v.is_string() || (!allow_empty && v.get<std::string>().empty())) {
    bad(key, allow_empty ? "a string" : "a non-empty string", v);
  }
  return v.get<std::string>();
}

std::chrono::milliseconds to_ms(const std::string& key, const json& v, std::uint64_t lo, std::uint64_t hi) {
  const std::string expected =
      "a whole number of milliseconds from " + std::to_string(lo) + " to " + std::to_string(hi);
  if (!v.is_number_integer()) bad(key, expected, v);
  const auto n = v.is_number_unsigned() ? static_cast<std::int64_t>(std::min<std::uint64_t>(v.get<std::uint64_t>(), hi + 1))
                                        : v.get<std::int64_t>();
  if (n < static_cast<std::int64_t>(lo) || n > static_cast<std::int64_t>(hi)) bad(key, expected, v);
  return std::chrono::milliseconds(n);
}

constexpr std::uint64_t one_day_ms = 86'400'000;

// The one table of options: names, help, defaults (read from a default
// config) and validation all come from here.
const std::vector<option>& options() {
  static const std::vector<option> table = [] {
    std::vector<option> t;
    auto listener = [&t](const char* name, listener_config config::*member, const char* what) {
      const std::string prefix = name;
      t.push_back({prefix + ".enabled", kind::boolean,
                   std::string("listen for ") + what,
                   [member](const config& c) { return json((c.*member).enabled); },
                   [member, prefix](config& c, const json& v) { (c.*member).enabled = to_bool(prefix + ".enabled", v); }});
      t.push_back({prefix + ".address", kind::text,
                   std::string("address to listen on for ") + what + ", IPv4 or IPv6",
                   [member](const config& c) { return json((c.*member).address); },
                   [member, prefix](config& c, const json& v) { (c.*member).address = to_text(prefix + ".address", v, false); }});
      t.push_back({prefix + ".port", kind::integer,
                   std::string("port for ") + what + "; 0 picks a free one (printed on stdout when ready)",
                   [member](const config& c) { return json((c.*member).port); },
                   [member, prefix](config& c, const json& v) {
                     (c.*member).port = static_cast<std::uint16_t>(to_uint(prefix + ".port", v, 0, 65535));
                   }});
    };
    listener("tcp", &config::tcp, "plain TCP clients");
    listener("tls", &config::tls, "TLS clients");
    listener("admin", &config::admin, "the admin endpoint (HTTP: /, /metrics, /healthz, /readyz, /tree, /events)");
    t.push_back({"tls.certificate", kind::text, "PEM certificate chain the daemon presents",
                 [](const config& c) { return json(c.tls_certificate); },
                 [](config& c, const json& v) { c.tls_certificate = to_text("tls.certificate", v, false); }});
    t.push_back({"tls.private_key", kind::text, "PEM private key for tls.certificate",
                 [](const config& c) { return json(c.tls_private_key); },
                 [](config& c, const json& v) { c.tls_private_key = to_text("tls.private_key", v, false); }});
    t.push_back({"tls.ca", kind::text, "PEM CA bundle client certificates must chain to",
                 [](const config& c) { return json(c.tls_ca); },
                 [](config& c, const json& v) { c.tls_ca = to_text("tls.ca", v, true); }});
    t.push_back({"tls.require_client_certificate", kind::boolean, "mutual TLS: refuse clients without a valid certificate",
                 [](const config& c) { return json(c.tls_require_client_certificate); },
                 [](config& c, const json& v) {
                   c.tls_require_client_certificate = to_bool("tls.require_client_certificate", v);
                 }});
    t.push_back({"tls.handshake_timeout_ms", kind::milliseconds, "close a TLS client that has not finished its handshake",
                 [](const config& c) { return json(c.tls_handshake_timeout.count()); },
                 [](config& c, const json& v) {
                   c.tls_handshake_timeout = to_ms("tls.handshake_timeout_ms", v, 1, one_day_ms);
                 }});
    t.push_back({"tls.min_version", kind::choice, "lowest TLS version accepted: \"1.2\" or \"1.3\"",
                 [](const config& c) { return json(c.tls_min_version_1_3 ? "1.3" : "1.2"); },
                 [](config& c, const json& v) {
                   const std::string s = v.is_string() ? v.get<std::string>() : "";
                   if (s == "1.2") c.tls_min_version_1_3 = false;
                   else if (s == "1.3") c.tls_min_version_1_3 = true;
                   else bad("tls.min_version", "\"1.2\" or \"1.3\"", v);
                 }});
    t.push_back({"tls.session_tickets", kind::boolean, "let TLS clients resume sessions by ticket (keys rotate every 12 h)",
                 [](const config& c) { return json(c.tls_session_tickets); },
                 [](config& c, const json& v) { c.tls_session_tickets = to_bool("tls.session_tickets", v); }});
    t.push_back({"identifier", kind::text, "erps identifier every frame must carry (clients must send the same)",
                 [](const config& c) { return json(c.identifier); },
                 [](config& c, const json& v) {
                   c.identifier = to_text("identifier", v, true);
                   if (c.identifier.size() > 32) bad("identifier", "at most 32 bytes", v);
                 }});
    t.push_back({"codec", kind::choice, "payloads: \"json\", or \"etf\" (Erlang terms, as Elixir's erps sends them)",
                 [](const config& c) { return json(c.codec); },
                 [](config& c, const json& v) {
                   const std::string s = v.is_string() ? v.get<std::string>() : "";
                   if (s != "json" && s != "etf") bad("codec", "\"json\" or \"etf\"", v);
                   c.codec = s;
                 }});
    t.push_back({"workers", kind::integer, "worker threads; 0: one per CPU groved may use (its affinity mask, lowered to its cgroup CPU quota)",
                 [](const config& c) { return json(c.workers); },
                 [](config& c, const json& v) { c.workers = to_uint("workers", v, 0, 256); }});
    t.push_back({"shards", kind::integer, "store shards (processes) of each tenant, keys spread by hash; 0: one per worker (a tenant's config may set its own at install)",
                 [](const config& c) { return json(c.shards); },
                 [](config& c, const json& v) { c.shards = to_uint("shards", v, 0, 1024); }});
    t.push_back({"max_connections", kind::integer, "clients beyond this many are refused with an error; 0: no limit",
                 [](const config& c) { return json(c.max_connections); },
                 [](config& c, const json& v) { c.max_connections = to_uint("max_connections", v, 0, 10'000'000); }});
    t.push_back({"max_payload", kind::integer, "largest frame payload accepted, in bytes",
                 [](const config& c) { return json(c.max_payload); },
                 [](config& c, const json& v) {
                   c.max_payload = static_cast<std::uint32_t>(to_uint("max_payload", v, 1024, 1u << 30));
                 }});
    t.push_back({"max_depth", kind::integer,
                 "deepest nesting of arrays and objects a call may carry (the [id, request] envelope counts); deeper is refused",
                 [](const config& c) { return json(c.max_depth); },
                 [](config& c, const json& v) {
                   c.max_depth = static_cast<std::uint32_t>(to_uint("max_depth", v, 3, grove::erps::max_depth_limit));
                 }});
    t.push_back({"max_calls_in_flight", kind::integer,
                 "per client: unanswered calls before the daemon stops reading from it; 0: no limit",
                 [](const config& c) { return json(c.max_calls_in_flight); },
                 [](config& c, const json& v) { c.max_calls_in_flight = to_uint("max_calls_in_flight", v, 0, 1'000'000); }});
    t.push_back({"idle_timeout_ms", kind::milliseconds, "close a client without a call or cast for this long; 0: never",
                 [](const config& c) { return json(c.idle_timeout.count()); },
                 [](config& c, const json& v) { c.idle_timeout = to_ms("idle_timeout_ms", v, 0, 30 * one_day_ms); }});
    t.push_back({"keepalive_interval_ms", kind::milliseconds, "send a keepalive to a client quiet this long",
                 [](const config& c) { return json(c.keepalive_interval.count()); },
                 [](config& c, const json& v) { c.keepalive_interval = to_ms("keepalive_interval_ms", v, 10, one_day_ms); }});
    t.push_back({"keepalive_timeout_ms", kind::milliseconds, "close a client silent this long (must exceed the interval)",
                 [](const config& c) { return json(c.keepalive_timeout.count()); },
                 [](config& c, const json& v) { c.keepalive_timeout = to_ms("keepalive_timeout_ms", v, 20, one_day_ms); }});
    t.push_back({"frame_timeout_ms", kind::milliseconds,
                 "close a client whose frame, once begun, is not whole within this (plus its size at min_frame_rate)",
                 [](const config& c) { return json(c.frame_timeout.count()); },
                 [](config& c, const json& v) { c.frame_timeout = to_ms("frame_timeout_ms", v, 10, one_day_ms); }});
    t.push_back({"min_frame_rate", kind::integer,
                 "bytes per second a large frame may take on top of frame_timeout_ms; 0: frame_timeout_ms alone",
                 [](const config& c) { return json(c.min_frame_rate); },
                 [](config& c, const json& v) { c.min_frame_rate = to_uint("min_frame_rate", v, 0, 1ull << 32); }});
    t.push_back({"tenants.default", kind::text,
                 "the tenant of every client when there is no access.policy, and of a policy entry naming no "
                 "tenant; installed at start if missing (and never uninstalled)",
                 [](const config& c) { return json(c.default_tenant); },
                 [](config& c, const json& v) {
                   std::string id = to_text("tenants.default", v, false);
                   if (!is_tenant_id(id)) {
                     throw config_error("tenants.default: expected " + std::string(tenant_id_form) + ", got \"" + id + "\"");
                   }
                   c.default_tenant = std::move(id);
                 }});
    t.push_back({"tenants.max", kind::integer,
                 "most tenants at once, the default one included; a tenant.install beyond fails with "
                 "too_many_tenants; 0: no limit",
                 [](const config& c) { return json(c.max_tenants); },
                 [](config& c, const json& v) { c.max_tenants = to_uint("tenants.max", v, 0, 1'000'000); }});
    t.push_back({"max_keys", kind::integer,
                 "keys a tenant's store holds at most (a tenant's config may set its own); a put of a new key beyond "
                 "fails with store_full",
                 [](const config& c) { return json(c.max_keys); },
                 [](config& c, const json& v) { c.max_keys = to_uint("max_keys", v, 1, 1'000'000'000); }});
    t.push_back({"max_key_bytes", kind::integer, "longest key (and topic) accepted, in bytes (a tenant's config may set its own)",
                 [](const config& c) { return json(c.max_key_bytes); },
                 [](config& c, const json& v) { c.max_key_bytes = to_uint("max_key_bytes", v, 1, 65536); }});
    t.push_back({"max_subscriptions", kind::integer, "topics one client may subscribe to (a tenant's config may set its own)",
                 [](const config& c) { return json(c.max_subscriptions); },
                 [](config& c, const json& v) { c.max_subscriptions = to_uint("max_subscriptions", v, 1, 1'000'000); }});
    t.push_back({"access.policy", kind::text,
                 "who may connect and what each may do: a JSON policy file, or an http(s):// URL serving one "
                 "(see the README); empty: every client the listeners accept may do everything",
                 [](const config& c) { return json(c.access_policy); },
                 [](config& c, const json& v) { c.access_policy = to_text("access.policy", v, true); }});
    t.push_back({"access.refresh_ms", kind::milliseconds, "how often the access policy is read again (SIGHUP reads it at once)",
                 [](const config& c) { return json(c.access_refresh.count()); },
                 [](config& c, const json& v) { c.access_refresh = to_ms("access.refresh_ms", v, 100, one_day_ms); }});
    t.push_back({"data_path", kind::text,
                 "the default tenant's snapshot file, with its write-ahead log in PATH.wal/: loaded on start, every write "
                 "logged, the snapshot rewritten every snapshot_interval_ms and on graceful stop; the tenant records go "
                 "to PATH.tenants.db, other tenants' data under PATH.tenants/; empty: keep nothing (with cluster.etcd it "
                 "must be empty: records and data go to etcd)",
                 [](const config& c) { return json(c.data_path); },
                 [](config& c, const json& v) { c.data_path = to_text("data_path", v, true); }});
    t.push_back({"durability", kind::choice,
                 "when a write is acknowledged: \"always\" (after fdatasync: survives kill -9 and power loss), "
                 "\"batch\" (after write(2), fdatasync every durability_interval_ms: survives kill -9), "
                 "\"none\" (at once; the log is written soon after)",
                 [](const config& c) { return json(c.durability); },
                 [](config& c, const json& v) {
                   const std::string s = v.is_string() ? v.get<std::string>() : "";
                   if (s != "always" && s != "batch" && s != "none") bad("durability", "\"always\", \"batch\" or \"none\"", v);
                   c.durability = s;
                 }});
    t.push_back({"durability_interval_ms", kind::milliseconds,
                 "with durability \"batch\": the longest time a write stays unsynced (what power loss can take)",
                 [](const config& c) { return json(c.durability_interval.count()); },
                 [](config& c, const json& v) { c.durability_interval = to_ms("durability_interval_ms", v, 1, 60'000); }});
    t.push_back({"snapshot_interval_ms", kind::milliseconds,
                 "rewrite the snapshot (and drop the log it holds) this often; 0: only at a graceful stop",
                 [](const config& c) { return json(c.snapshot_interval.count()); },
                 [](config& c, const json& v) { c.snapshot_interval = to_ms("snapshot_interval_ms", v, 0, 30 * one_day_ms); }});
    t.push_back({"shutdown_timeout_ms", kind::milliseconds,
                 "on SIGTERM/SIGINT: how long clients get to finish calls in flight",
                 [](const config& c) { return json(c.shutdown_timeout.count()); },
                 [](config& c, const json& v) { c.shutdown_timeout = to_ms("shutdown_timeout_ms", v, 0, one_day_ms); }});
    t.push_back({"log.level", kind::choice, "least severe level logged: debug, info, warning or error",
                 [](const config& c) {
                   static const char* names[] = {"debug", "info", "warning", "error"};
                   return json(names[static_cast<int>(c.level)]);
                 },
                 [](config& c, const json& v) {
                   const std::string s = v.is_string() ? v.get<std::string>() : "";
                   if (s == "debug") c.level = log_level::debug;
                   else if (s == "info") c.level = log_level::info;
                   else if (s == "warning") c.level = log_level::warning;
                   else if (s == "error") c.level = log_level::error;
                   else bad("log.level", "one of \"debug\", \"info\", \"warning\", \"error\"", v);
                 }});
    t.push_back({"debug.chaos_ops", kind::boolean,
                 "serve {\"op\":\"debug.kill_sessions\",\"count\":N}, which kills N random other client sessions (for chaos tests only)",
                 [](const config& c) { return json(c.debug_chaos_ops); },
                 [](config& c, const json& v) { c.debug_chaos_ops = to_bool("debug.chaos_ops", v); }});
    t.push_back({"cluster.etcd", kind::text,
                 "etcd endpoints of the cluster this groved joins, comma-separated (\"http://10.0.0.1:2379,"
                 "http://10.0.0.2:2379\"); each tenant is served by one node, and a client that reaches another is "
                 "sent to it; empty: not clustered",
                 [](const config& c) {
                   std::string joined;
                   for (const auto& e : c.cluster_etcd) joined += (joined.empty() ? "" : ",") + e;
                   return json(joined);
                 },
                 [](config& c, const json& v) {
                   const std::string text = to_text("cluster.etcd", v, true);
                   std::vector<std::string> endpoints;
                   std::size_t at = 0;
                   while (at <= text.size() && !text.empty()) {
                     const std::size_t comma = std::min(text.find(',', at), text.size());
                     std::string e = text.substr(at, comma - at);
                     e.erase(0, e.find_first_not_of(' '));
                     e.erase(e.find_last_not_of(' ') + 1);
                     if (e.rfind("http://", 0) != 0 && e.rfind("https://", 0) != 0) {
                       bad("cluster.etcd", "comma-separated endpoints, each http://HOST:PORT or https://HOST:PORT", v);
                     }
                     try {
                       grove::etcd::client_options o; // its own checks of HOST and PORT
                       o.endpoints = {e};
                       (void)grove::etcd::client(std::move(o));
                     } catch (const std::exception& error) {
                       throw config_error(std::string("cluster.etcd: ") + error.what());
                     }
                     endpoints.push_back(std::move(e));
                     at = comma + 1;
                   }
                   c.cluster_etcd = std::move(endpoints);
                 }});
    t.push_back({"cluster.node", kind::text,
                 "this groved's name in the cluster, unique among its nodes (" + std::string(tenant_id_form) +
                     "); required with cluster.etcd",
                 [](const config& c) { return json(c.cluster_node); },
                 [](config& c, const json& v) {
                   std::string name = to_text("cluster.node", v, true);
                   if (!name.empty() && !is_tenant_id(name)) bad("cluster.node", std::string(tenant_id_form), v);
                   c.cluster_node = std::move(name);
                 }});
    t.push_back({"cluster.advertise", kind::text,
                 "the host (name or address) clients of other nodes are sent to for this node's tenants; empty: "
                 "each listener's address (which must then not be a wildcard such as 0.0.0.0)",
                 [](const config& c) { return json(c.cluster_advertise); },
                 [](config& c, const json& v) { c.cluster_advertise = to_text("cluster.advertise", v, true); }});
    t.push_back({"cluster.lease_ttl_s", kind::integer,
                 "seconds this node's etcd lease (its name and its tenants' placements) outlives its last renewal; "
                 "renewed every third of it",
                 [](const config& c) { return json(c.cluster_lease_ttl_s); },
                 [](config& c, const json& v) { c.cluster_lease_ttl_s = static_cast<std::int64_t>(to_uint("cluster.lease_ttl_s", v, 2, 3600)); }});
    t.push_back({"cluster.prefix", kind::text, "every etcd key the cluster's groveds write starts with it",
                 [](const config& c) { return json(c.cluster_prefix); },
                 [](config& c, const json& v) { c.cluster_prefix = to_text("cluster.prefix", v, false); }});
    t.push_back({"log.format", kind::choice, "log line format on stderr: logfmt or json",
                 [](const config& c) { return json(c.format == log_format::json ? "json" : "logfmt"); },
                 [](config& c, const json& v) {
                   const std::string s = v.is_string() ? v.get<std::string>() : "";
                   if (s == "logfmt") c.format = log_format::logfmt;
                   else if (s == "json") c.format = log_format::json;
                   else bad("log.format", "\"logfmt\" or \"json\"", v);
                 }});
    return t;
  }();
  return table;
}

const option* find_option(std::string_view key) {
  for (const auto& o : options()) {
    if (key == o.key) return &o;
  }
  return nullptr;
}

// Walks a config file's nested objects down to dotted keys.
void apply_object(config& c, const json& object, const std::string& prefix, const std::string& file) {
  for (auto it = object.begin(); it != object.end(); ++it) {
    const std::string key = prefix.empty() ? it.key() : prefix + "." + it.key();
    if (const option* o = find_option(key)) {
      o->set(c, it.value());
    } else if (it.value().is_object()) {
      apply_object(c, it.value(), key, file);
    } else {
      throw config_error(file + ": unknown key '" + key + "' (groved --help lists every key)");
    }
  }
}

void apply_file(config& c, const std::string& path) {
  std::ifstream in(path);
  if (!in) throw config_error("--config: cannot read '" + path + "'");
  const std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  json document;
  try {
    document = grove::erps::read_json(text, grove::erps::decode_limits{16}, "--config file");
  } catch (const grove::erps::codec_error& e) {
    throw config_error("--config: '" + path + "' is not valid JSON: " + e.what());
  }
  if (!document.is_object()) throw config_error("--config: '" + path + "' must hold a JSON object");
  apply_object(c, document, "", path);
}

// A flag's text as the JSON value its option expects; a text that does not
// parse stays a string, so the option's own check names the expected form.
json flag_value(const option& o, const std::string& text) {
  if (o.type == kind::text || o.type == kind::choice) return json(text);
  if (o.type == kind::boolean) {
    if (text == "true" || text == "yes" || text == "on" || text == "1") return json(true);
    if (text == "false" || text == "no" || text == "off" || text == "0") return json(false);
    return json(text);
  }
  std::int64_t n = 0;
  const char* end = text.data() + text.size();
  auto [p, ec] = std::from_chars(text.data(), end, n);
  if (ec == std::errc{} && p == end && !text.empty()) return json(n);
  return json(text);
}

void check(const config& c) {
  if (!c.tcp.enabled && !c.tls.enabled) {
    throw config_error("tcp.enabled, tls.enabled: at least one listener must be enabled");
  }
  if (c.keepalive_timeout <= c.keepalive_interval) {
    throw config_error("keepalive_timeout_ms: expected more than keepalive_interval_ms (" +
                       std::to_string(c.keepalive_interval.count()) + "), got " +
                       std::to_string(c.keepalive_timeout.count()));
  }
  if (c.tcp.enabled && c.tls.enabled && c.tcp.port != 0 && c.tcp.port == c.tls.port && c.tcp.address == c.tls.address) {
    throw config_error("tls.port: expected a port other than tcp.port on the same address, got " +
                       std::to_string(c.tls.port));
  }
  if (!c.cluster_etcd.empty() && c.cluster_node.empty()) {
    throw config_error("cluster.node: expected this groved's name in the cluster (" + std::string(tenant_id_form) +
                       ") with cluster.etcd, got \"\"");
  }
  if (!c.cluster_etcd.empty() && !c.data_path.empty()) {
    throw config_error("data_path: a clustered groved keeps its tenants' records and data in etcd (cluster.etcd), "
                       "where the node that takes a tenant over finds them; expected \"\" with cluster.etcd, got \"" +
                       c.data_path + "\"");
  }
  if (!c.cluster_etcd.empty() && c.cluster_advertise.empty()) {
    for (const auto& [name, l] : {std::pair{"tcp", &c.tcp}, std::pair{"tls", &c.tls}}) {
      if (l->enabled && (l->address == "0.0.0.0" || l->address == "::" || l->address == "[::]")) {
        throw config_error(std::string("cluster.advertise: expected the host clients reach this node at, since ") + name +
                           ".address is " + l->address + " (every address), got \"\"");
      }
    }
  }
  for (const auto& [name, other] : {std::pair{"tcp", &c.tcp}, std::pair{"tls", &c.tls}}) {
    if (c.admin.enabled && other->enabled && c.admin.port != 0 && c.admin.port == other->port &&
        c.admin.address == other->address) {
      throw config_error(std::string("admin.port: expected a port other than ") + name + ".port on the same address, got " +
                         std::to_string(c.admin.port));
    }
  }
}

} // namespace

config default_config() {
  config c;
  const std::string dir = GROVED_CERTS_DIR;
  c.tls_certificate = dir + "/server.pem";
  c.tls_private_key = dir + "/server.key";
  c.tls_ca = dir + "/ca.pem";
  return c;
}

command_line parse_command_line(int argc, char** argv) {
  command_line result;
  result.settings = default_config();
  std::vector<std::pair<std::string, std::string>> flags; // applied after the file
  std::string config_file;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      result.help = true;
      continue;
    }
    if (arg == "--version") {
      result.version = true;
      continue;
    }
    if (arg == "--print-config") {
      result.print_config = true;
      continue;
    }
    if (arg.rfind("--", 0) != 0) {
      throw config_error("unexpected argument '" + arg + "' (options look like --key=value; see groved --help)");
    }
    std::string key = arg.substr(2);
    std::optional<std::string> value;
    if (auto eq = key.find('='); eq != std::string::npos) {
      value = key.substr(eq + 1);
      key.resize(eq);
    }
    if (key == "config") {
      if (!value) {
        if (i + 1 >= argc) throw config_error("--config: expected a file name");
        value = argv[++i];
      }
      config_file = *value;
      continue;
    }
    const option* o = find_option(key);
    if (!o) throw config_error("--" + key + ": unknown option (groved --help lists every option)");
    if (!value) {
      if (o->type == kind::boolean && (i + 1 >= argc || std::string_view(argv[i + 1]).rfind("--", 0) == 0)) {
        value = "true";
      } else if (i + 1 < argc) {
        value = argv[++i];
      } else {
        throw config_error("--" + key + ": expected a value");
      }
    }
    flags.emplace_back(key, *value);
  }
  if (result.help || result.version) return result;
  if (!config_file.empty()) apply_file(result.settings, config_file);
  for (const auto& [key, text] : flags) {
    const option* o = find_option(key);
    o->set(result.settings, flag_value(*o, text));
  }
  check(result.settings);
  return result;
}

void print_help(std::ostream& out) {
  out << "groved: grove's sample daemon, a key-value store with counters and topics over erps.\n\n"
         "usage: groved [--config FILE] [--KEY=VALUE ...]\n"
         "       groved --help | --version | --print-config\n\n"
         "Settings come from the embedded defaults, then the JSON file given with --config\n"
         "(nested objects: {\"tcp\": {\"port\": 7400}}), then flags; a later one wins.\n"
         "Signals: SIGTERM/SIGINT drain clients and stop (a snapshot is written when\n"
         "data_path is set); SIGHUP reloads the TLS certificate, key and CA.\n\n"
         "KEY (default): meaning\n";
  const config defaults = default_config();
  for (const auto& o : options()) {
    out << "  --" << o.key << " (" << o.get(defaults).dump() << ")\n      " << o.help << '\n';
  }
}

std::string to_json_text(const config& c) {
  json out = json::object();
  for (const auto& o : options()) {
    json* at = &out;
    std::string_view key = o.key;
    for (std::size_t dot; (dot = key.find('.')) != std::string_view::npos; key.remove_prefix(dot + 1)) {
      at = &(*at)[std::string(key.substr(0, dot))];
    }
    (*at)[std::string(key)] = o.get(c);
  }
  return out.dump(2);
}

} // namespace groved
