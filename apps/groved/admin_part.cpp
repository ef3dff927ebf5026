// The admin part: grove's admin endpoint (/metrics, /healthz, /readyz,
// /tree, /events, the dashboard) in a process of groved's tree, serving the
// node's metrics and groved's own (metrics.hpp). It reads admin.*; /readyz
// is ready while every enabled listener is up.
#include "metrics.hpp"
#include "tree.hpp"

#include <grove/admin/admin_server.hpp>
#include <grove/core/gen_server.hpp>

#include <atomic>
#include <optional>

namespace groved {
namespace {

// Owns the endpoint: started by init, stopped by terminate.
class admin_host : public grove::gen_server {
public:
  admin_host(grove::admin::admin_options options, std::shared_ptr<std::atomic<std::uint16_t>> port)
      : options_(std::move(options)), port_(std::move(port)) {}

  grove::awaitable<void> init() {
    this_process().set_label("groved admin endpoint");
    server_.emplace(options_);
    co_await server_->start(this_process().node());
    port_->store(server_->port());
  }
  grove::awaitable<void> terminate(const grove::exit_reason&) {
    if (server_) co_await server_->stop();
  }

private:
  grove::admin::admin_options options_;
  std::shared_ptr<std::atomic<std::uint16_t>> port_;
  std::optional<grove::admin::admin_server> server_;
};

} // namespace

part admin_part(const config& c, const std::shared_ptr<service_state>& state, grove::telemetry::metric_registry& metrics) {
  add_metrics(metrics, state); // read at each scrape, as long as the registry lives
  grove::admin::admin_options o;
  o.address = c.admin.address;
  o.port = c.admin.port;
  o.metrics = &metrics;
  o.ready = [state, tcp = c.tcp.enabled, tls = c.tls.enabled] {
    const auto daemons = state->daemons();
    if (tcp && !daemons[tcp_slot]) return grove::admin::readiness{false, "the tcp listener is not up"};
    if (tls && !daemons[tls_slot]) return grove::admin::readiness{false, "the tls listener is not up"};
    return grove::admin::readiness{};
  };
  // Written by the endpoint's process when it listens; read by main for the
  // ready line once the tree has started (the start is the synchronisation).
  auto port = std::make_shared<std::atomic<std::uint16_t>>(0);
  part p;
  p.name = "admin";
  p.child.id = "admin";
  p.child.start = grove::child_start::server<admin_host>(grove::start_options{.trap_exit = true}, o, port);
  p.describe = [port, address = c.admin.address](json& ready) {
    ready["admin"] = {{"address", address}, {"port", port->load()}};
  };
  return p;
}

} // namespace groved
