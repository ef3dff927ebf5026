// groved's configuration: embedded defaults, then a JSON file (--config),
// then command-line flags (--tcp.port=0), each overriding the one before.
// Every key has one dotted name used in the file (as nested objects), on
// the command line and in error messages.
#pragma once

#include <chrono>
#include <cstdint>
#include <iosfwd>
#include <stdexcept>
#include <string>
#include <vector>

namespace groved {

enum class log_format : std::uint8_t { logfmt, json };
enum class log_level : std::uint8_t { debug, info, warning, error };

struct listener_config {
  bool enabled = true;
  std::string address = "127.0.0.1";
  std::uint16_t port = 0;
};

struct config {
  listener_config tcp{true, "127.0.0.1", 7400};
  listener_config tls{true, "127.0.0.1", 7401};
  listener_config admin{false, "127.0.0.1", 7402}; // /metrics, /healthz, /readyz (HTTP)
  std::string tls_certificate;
  std::string tls_private_key;
  std::string tls_ca;
  bool tls_require_client_certificate = true;
  std::chrono::milliseconds tls_handshake_timeout{10'000};
  bool tls_min_version_1_3 = false;
  bool tls_session_tickets = true;

  std::string identifier;
  std::string codec = "json"; // or "etf"
  std::size_t workers = 0; // 0: grove::available_cpus()
  std::size_t shards = 0;  // 0: one per worker
  std::size_t max_connections = 10'000;
  std::uint32_t max_payload = 16u << 20;
  std::uint32_t max_depth = 128;
  std::size_t max_calls_in_flight = 256;
  std::chrono::milliseconds idle_timeout{0}; // 0: never
  std::chrono::milliseconds keepalive_interval{5'000};
  std::chrono::milliseconds keepalive_timeout{20'000};
  std::chrono::milliseconds frame_timeout{30'000};
  std::size_t min_frame_rate = 64 * 1024;
  std::size_t max_keys = 1'000'000;
  std::size_t max_key_bytes = 1024;
  std::size_t max_subscriptions = 1024;
  std::string default_tenant = "default"; // tenants.default
  std::size_t max_tenants = 0;             // tenants.max; 0: no limit
  std::string access_policy;                        // file or http(s):// URL; empty: no policy (access.hpp)
  std::chrono::milliseconds access_refresh{30'000}; // and on SIGHUP
  std::string data_path; // empty: nothing is persisted
  std::string durability = "always";                 // or "batch", "none" (see wal.hpp)
  std::chrono::milliseconds durability_interval{10}; // batch: fdatasync at most this often
  std::chrono::milliseconds snapshot_interval{300'000}; // 0: only at a graceful stop
  std::chrono::milliseconds shutdown_timeout{5'000};
  log_level level = log_level::info;
  log_format format = log_format::logfmt;
  bool debug_chaos_ops = false; // serve debug.kill_sessions (tests only)

  // A cluster of groveds sharing one etcd (cluster.hpp); empty etcd: alone.
  std::vector<std::string> cluster_etcd; // cluster.etcd: endpoints, "http(s)://host:port", comma-separated
  std::string cluster_node;              // cluster.node: this groved's name, unique in the cluster
  std::string cluster_advertise;         // cluster.advertise: the host clients are sent to; empty: the listener's
  std::int64_t cluster_lease_ttl_s = 10; // cluster.lease_ttl_s
  std::string cluster_prefix = "groved/"; // cluster.prefix: every etcd key groved writes starts with it
};

/// A bad configuration value or flag; what() names the key and the
/// expected form.
class config_error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// What the command line asked for.
struct command_line {
  config settings;
  bool help = false;
  bool version = false;
  bool print_config = false;
};

/// The embedded defaults (TLS files point at the repository's test certs).
config default_config();

/// Defaults, then --config FILE, then every --key=value / --key value flag.
/// Throws config_error.
command_line parse_command_line(int argc, char** argv);

/// Every option, its default and what it means (for --help).
void print_help(std::ostream& out);

/// The effective configuration as JSON (for --print-config).
std::string to_json_text(const config& c);

} // namespace groved
