// The tcp and tls parts: an erps daemon each (a listener and a dynamic
// supervisor with one session process per client), reading tcp.* / tls.*
// and the link options (identifier, codec, max_payload, ..., keepalive_*).
#include "tree.hpp"

#include "cluster.hpp"

#include <grove/erps/etf.hpp>

#include <grove/supervisor/supervisor.hpp>

namespace groved {
namespace {

grove::awaitable<grove::pid> start_listener(grove::node& n, grove::erps::daemon_options options,
                                            std::shared_ptr<service_state> state, std::size_t slot) {
  const std::string bound = options.bind_address;
  grove::erps::daemon d = co_await grove::erps::daemon::start_link<session>(n, std::move(options), state, slot == tls_slot);
  state->set_daemon(slot, d);
  if (state->cluster) {
    // Where the cluster sends this node's tenants' clients: a start that
    // cannot say so fails (and is retried by the supervisor).
    std::string failure;
    try {
      co_await state->cluster->announce(slot == tls_slot ? "tls" : "tcp", bound, d.port());
    } catch (const std::exception& e) {
      failure = std::string("cluster: this node's address could not be written to etcd: ") + e.what();
    }
    if (!failure.empty()) {
      co_await d.shutdown(std::chrono::seconds(0));
      throw std::runtime_error(failure);
    }
  }
  co_return d.id();
}

grove::awaitable<void> drain_listener(std::shared_ptr<service_state> state, std::size_t slot, grove::duration deadline) {
  const auto d = state->daemons()[slot];
  if (d) co_await d.shutdown(deadline);
}

grove::awaitable<void> reload_certificates(std::shared_ptr<service_state> state) {
  const auto d = state->daemons()[tls_slot];
  if (!d) co_return;
  try {
    co_await d.reload_tls();
  } catch (const std::exception&) {
    // The daemon logged tls_reload_failed with the reason; it keeps the old files.
  }
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

part listener_part(const config& c, const std::shared_ptr<service_state>& state, bool tls) {
  const std::size_t slot = tls ? tls_slot : tcp_slot;
  part p;
  p.name = tls ? "tls" : "tcp";
  p.child.id = p.name;
  p.child.start = [options = daemon_options_for(c, tls, state->log), state, slot](grove::node& n) {
    return start_listener(n, options, state, slot);
  };
  p.child.restart = grove::restart_type::transient; // a drained listener stays down
  p.child.shutdown = grove::shutdown_policy::timeout(c.shutdown_timeout + std::chrono::seconds(5));
  p.child.type = grove::child_type::supervisor;
  p.drain = [state, slot](grove::duration deadline) -> grove::awaitable<void> {
    return drain_listener(state, slot, deadline);
  };
  if (tls) {
    // New certificate, key and CA files; a bad one is refused (the daemon
    // logs tls_reload_failed with the reason) and the old ones stay.
    p.reload = [state]() -> grove::awaitable<void> { return reload_certificates(state); };
  }
  p.describe = [state, slot, name = p.name](json& ready) {
    const auto d = state->daemons()[slot];
    if (d) ready[name] = {{"address", d.address()}, {"port", d.port()}};
  };
  return p;
}

} // namespace groved
