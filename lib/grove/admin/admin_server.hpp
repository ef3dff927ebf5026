// grove/admin/admin_server.hpp — the admin endpoint: an HTTP/1.1 server a
// service runs beside its work, for Prometheus and for health checks.
//
//   grove::telemetry::metric_registry metrics;
//   grove::admin::admin_server admin({.metrics = &metrics});   // 127.0.0.1, port 0
//   co_await admin.start(node);
//   std::uint16_t port = admin.port();                          // curl http://127.0.0.1:<port>/metrics
//   ...
//   co_await admin.stop();
//
// Paths (GET or HEAD):
//   /         the dashboard: one HTML page (no external assets) showing the
//             supervision tree and the main rates, live over /events
//   /metrics  the registry in Prometheus's text format 0.0.4 (404 without a registry)
//   /healthz  200 "ok": the node runs and answers
//   /readyz   200 "ready", or 503 with the reason: a daemon in `daemons`
//             that is not listening, a supervisor in `supervisors` that is
//             down, or what `ready()` says (checked in that order)
//   /tree     JSON: the node's live process tree (below)
//   /events   server-sent events: every dashboard_interval, an event
//             "snapshot" whose data is {"tree": <as /tree>, "metrics":
//             {family: sum of its series}, "at": unix ms}; the first at once
// With a bearer_token, a request without it gets 401 (WWW-Authenticate);
// the token may also come as ?access_token=<it> (RFC 6750), which is how
// the dashboard's EventSource passes it on.
//
// /tree: {"node": id, "processes": count, "roots": [process...]}, where a
// process is {"pid", "kind", "label", "mailbox", "links", "monitors",
// "trap_exit", "children": [...]} and, for a supervisor, "supervisor":
// {"strategy", "max_restarts", "max_seconds", "restarts", "max_children"}
// with its children in start order, each also carrying the supervisor's
// "id", "type", "restart", "status" and "restarts" for it (a stopped
// child has no pid). Other processes nest under the process that spawned
// them; a process whose spawner is gone is a root. An erps session's label
// names its peer ("erps session 127.0.0.1:51234"). A node with more than
// tree_max_children children under one parent shows that many and
// "more_children": how many were left out.
// With tls, HTTPS only (mutual TLS by default, as erps).
// Anything else: 404; another method: 405 (with Allow); a request line and
// headers, or a body, over max_request_bytes: 413; what is not HTTP: 400;
// a request that does not arrive whole within request_timeout, or a
// connection idle past idle_timeout: closed. Each of these closes that one
// connection; the server goes on serving everyone else. Connections over
// max_connections get 503 and are closed.
//
// The server is grove processes on one worker of the node: an acceptor,
// and one process per connection linked to it. stop() kills them and
// waits for them.
#pragma once

#include <grove/core/node.hpp>
#include <grove/core/pid.hpp>
#include <grove/core/process.hpp>
#include <grove/erps/daemon.hpp>
#include <grove/erps/tls.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace grove::telemetry {
class metric_registry;
} // namespace grove::telemetry

namespace grove::admin {

/// What /readyz says.
struct readiness {
  bool ready = true;
  std::string reason{}; ///< why not, when not ready (the 503's body)
};

struct admin_options {
  std::string address = "127.0.0.1";                 ///< where to listen (default 127.0.0.1: this machine only)
  std::uint16_t port = 0;                            ///< 0: any free port; read it back with port() (default 0)
  const telemetry::metric_registry* metrics = nullptr; ///< served at /metrics (default none: 404)
  std::vector<erps::daemon> daemons{};               ///< /readyz: each must be listening (default none)
  std::vector<pid> supervisors{};                    ///< /readyz: each must be alive, e.g. the service's root supervisors (default none)
  std::function<readiness()> ready{};                ///< also asked by /readyz, on the server's worker (default: ready)
  std::size_t max_request_bytes = 16 * 1024;         ///< request line + headers, and body, each (default 16 KiB)
  duration request_timeout = std::chrono::seconds(10); ///< from a request's first byte to its last (default 10 s)
  duration idle_timeout = std::chrono::seconds(60);  ///< between requests on a kept-alive connection (default 60 s)
  std::size_t max_connections = 64;                  ///< open at once; more get 503 (default 64)
  std::optional<std::size_t> worker{};               ///< the worker it runs on (default 0)
  std::optional<erps::tls_server_options> tls{};     ///< serve HTTPS: mutual TLS unless require_client_certificate
                                                     ///< is false, erps's policy (default: plain HTTP)
  std::string bearer_token{};                        ///< when set, every request needs "Authorization: Bearer <it>",
                                                     ///< else 401 (default none)
  std::size_t tree_max_children = 200;               ///< /tree: children shown per parent (default 200)
  duration dashboard_interval = std::chrono::seconds(1); ///< /events: time between snapshots (default 1 s)
};

class admin_server {
public:
  /// Checks the options; throws errc::invalid_argument naming a bad one.
  explicit admin_server(admin_options options);
  ~admin_server();
  admin_server(const admin_server&) = delete;
  admin_server& operator=(const admin_server&) = delete;

  /// Listens and starts serving. Throws grove::error naming the address
  /// and port when it cannot listen (in use, not an address of this
  /// machine), and invalid_argument if it runs already.
  awaitable<void> start(node& n);
  /// Stops serving: closes the listener and every connection. Idempotent.
  awaitable<void> stop();
  /// The port it listens on (the one chosen for port 0); 0 before start.
  std::uint16_t port() const noexcept;
  /// Requests answered so far, by any status (for tests and dashboards).
  std::uint64_t requests_served() const noexcept;

private:
  struct state;
  std::shared_ptr<state> state_;
  pid acceptor_{};
};

} // namespace grove::admin
