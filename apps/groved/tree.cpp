#include "tree.hpp"

#include "tenants.hpp"

#include <grove/erps/etf.hpp>

#include <grove/supervisor/supervisor.hpp>

namespace groved {
namespace {

grove::awaitable<grove::pid> start_listener(grove::node& n, grove::erps::daemon_options options,
                                            std::shared_ptr<service_state> state, std::size_t slot) {
  grove::erps::daemon d = co_await grove::erps::daemon::start_link<session>(n, std::move(options), state, slot == tls_slot);
  state->set_daemon(slot, d);
  co_return d.id();
}

} // namespace

grove::erps::daemon_options daemon_options_for(const config& c, bool tls, const logger& log) {
  grove::erps::daemon_options o;
  const listener_config& l = tls ? c.tls : c.tcp;
  o.bind_address = l.address;
  o.port = l.port;
  o.name = tls ? "tls" : "tcp";
  o.link.identifier = c.identifier;
  if (c.codec == "etf") o.link.codec = &grove::erps::etf::etf_codec();
  o.link.max_payload = c.max_payload;
  o.link.max_depth = c.max_depth;
  o.max_connections = c.max_connections;
  o.max_calls_in_flight = c.max_calls_in_flight;
  if (c.idle_timeout.count() > 0) o.idle_timeout = c.idle_timeout;
  o.link.keepalive_interval = c.keepalive_interval;
  o.link.keepalive_timeout = c.keepalive_timeout;
  o.link.frame_timeout = c.frame_timeout;
  o.link.min_frame_rate = c.min_frame_rate;
  o.link.log = log.erps_log(tls ? "tls" : "tcp");
  if (tls) {
    grove::erps::tls_server_options t;
    t.certificate_file = c.tls_certificate;
    t.private_key_file = c.tls_private_key;
    t.ca_file = c.tls_ca;
    t.require_client_certificate = c.tls_require_client_certificate;
    t.handshake_timeout = c.tls_handshake_timeout;
    t.min_version = c.tls_min_version_1_3 ? grove::erps::tls_version::tls1_3 : grove::erps::tls_version::tls1_2;
    t.session_tickets = c.tls_session_tickets;
    o.tls = t;
  }
  return o;
}

std::vector<grove::child_spec> tree(const config& c, grove::registry&, const std::shared_ptr<service_state>& state,
                                    std::size_t, const logger& log) {
  std::vector<grove::child_spec> children;
  children.push_back(tenants_child(make_tenant_manager(state), state));
  const auto drain = grove::shutdown_policy::timeout(c.shutdown_timeout + std::chrono::seconds(5));
  for (bool tls : {false, true}) {
    if (!(tls ? c.tls.enabled : c.tcp.enabled)) continue;
    grove::child_spec spec;
    spec.id = tls ? "tls" : "tcp";
    spec.start = [options = daemon_options_for(c, tls, log), state, slot = tls ? tls_slot : tcp_slot](grove::node& n) {
      return start_listener(n, options, state, slot);
    };
    spec.restart = grove::restart_type::transient; // a drained listener stays down
    spec.shutdown = drain;
    spec.type = grove::child_type::supervisor;
    children.push_back(std::move(spec));
  }
  return children;
}

} // namespace groved
