// grove/dist/dist.hpp — reaching processes of other nodes (other programs,
// other machines) as if they were local, as Erlang distribution does.
//
//   // Both programs: the types that may cross, under one name each.
//   grove::dist::register_message<price>("shop.price");
//   grove::dist::register_call<pricer, quote>("pricer.quote");
//   grove::dist::register_cast<pricer, restock>("pricer.restock");
//
//   grove::dist::options o;            // 127.0.0.1, a free port
//   o.tls_server = ...; o.tls_client = ...;   // mutual TLS (or a cookie)
//   auto d = co_await grove::dist::start(node, o);
//   std::uint32_t peer = co_await d->connect("10.0.0.2", 4370);
//   // a pid of that node (from its registry, a reply, a message) is then
//   // sent to, called, cast to, linked and monitored as a local one:
//   grove::server_ref<pricer> p(remote_pid);
//   double q = co_await p.call(quote{"apple"});
//
// Nodes link over erps framing (TCP or TLS), one link per pair of nodes,
// either side may dial; a handshake exchanges node ids and creations and
// checks the shared cookie. Over a link, messages between two processes
// arrive in the order they were sent. A call keeps its semantics: its
// timeout, a late reply dropped, noproc for a process that is gone, exited
// when it ends before it answers, and errc::noconnection when the link
// goes down first. Links and monitors across nodes fire with the reason
// `noconnection` when the link between the nodes drops. Values cross as
// JSON (nlohmann::json's to_json/from_json for the type, found by ADL);
// pids inside them keep their node identity. A send, call or cast of a
// type that was not registered fails: a send is dropped and logged
// (dist/unregistered_type), a call fails with errc::invalid_argument
// naming the type.
//
// What stays local: grove::stop, alive() and mailbox_size() answer for
// processes of this program only (a pid of another node is not alive
// here). A node reaches the nodes it has a link to (connect(), a peer that
// connected to it) and, with options::resolve, any node it can find the
// address of (dialed on demand); a pid of a node it cannot reach names no
// process (noproc), as before dist; one of a node whose link dropped gets
// noconnection.
#pragma once

#include <grove/core/gen_server.hpp>
#include <grove/core/node.hpp>
#include <grove/erps/link_options.hpp>
#include <grove/erps/tls.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <typeindex>
#include <vector>

namespace grove {
/// Pids as JSON: "node.creation.worker.slot.serial".
void to_json(nlohmann::json& j, const pid& p);
void from_json(const nlohmann::json& j, pid& p);
} // namespace grove

namespace grove::dist {

struct options {
  std::string address = "127.0.0.1";  ///< address to listen on for other nodes (default 127.0.0.1)
  std::uint16_t port = 0;             ///< port (default 0: a free one; see instance::port())
  /// TLS for links other nodes open (mutual by default: a peer must show a
  /// certificate the CA signed). Plain TCP when empty.
  std::optional<erps::tls_server_options> tls_server{};
  /// TLS for links this node opens; give both or neither.
  std::optional<erps::tls_client_options> tls_client{};
  /// A secret every node of the cluster shares; a peer that does not send
  /// it is refused. Required (non-empty) without TLS; with TLS, optional.
  std::string cookie{};
  /// Keepalives, max payload, send queue, ... of each link.
  erps::link_options link{};
  duration connect_timeout = std::chrono::seconds(5); ///< dial, TLS and handshake, each (default 5 s)
  /// Where node N listens ("host:port", "[::1]:port"; empty: unknown), for
  /// dialing on demand: a send, call, link or monitor to a pid of a node
  /// with no link up opens one (operations wait in order for it; if it
  /// fails they get noconnection). Called on the thread of the process
  /// doing the operation, once per node until its link is up: it must be
  /// quick and must not block (etcd_registry::node_endpoint is). Default
  /// none: only connect() and peers that dial us make links.
  std::function<std::string(std::uint32_t node)> resolve{};
  /// After a failed dial on demand, operations to that node fail with
  /// noconnection for this long before the next dial (default 1 s).
  duration redial_interval = std::chrono::seconds(1);
  /// Throws grove::error (errc::invalid_argument) naming `dist.options.<field>`.
  void validate() const;
};

/// A node this one has a link to.
struct peer_info {
  std::uint32_t node = 0;
  std::uint32_t creation = 0;
  std::string address; ///< the other end ("127.0.0.1:40123")
  bool dialed = false; ///< this node opened the link
};

/// Sent to the processes monitor_nodes() names when a link to a node comes
/// up, and when it goes down (Erlang's nodeup / nodedown).
struct node_up {
  std::uint32_t node = 0;
  std::uint32_t creation = 0;
};
struct node_down {
  std::uint32_t node = 0;
  std::uint32_t creation = 0;
  std::string reason; ///< why the link went down, one line
};

/// A running dist: its listener and links. At most one per program.
class instance {
public:
  virtual ~instance() = default;
  /// The port it listens on.
  virtual std::uint16_t port() const noexcept = 0;
  /// Opens a link to the node listening at host:port and returns that
  /// node's id once the handshake finished (at once if a link to it is
  /// up). Throws grove::error (errc::noconnection) saying why it failed.
  virtual awaitable<std::uint32_t> connect(std::string host, std::uint16_t port) = 0;
  /// The nodes with a link up.
  virtual std::vector<peer_info> peers() const = 0;
  /// Closes the link to `node` (its links and monitors fire noconnection);
  /// false if there was none.
  virtual bool disconnect(std::uint32_t node) = 0;
  /// `watcher` (a local process) gets node_up and node_down for every
  /// node's link from now on (on: false stops it). A watcher that ended is
  /// dropped by itself.
  virtual void monitor_nodes(pid watcher, bool on = true) = 0;
  /// Closes the listener and every link; the routes go at once. Idempotent.
  virtual void stop() = 0;
};

/// Starts listening and installs the routes to other nodes. Throws
/// grove::error: invalid_argument (bad options, or a dist already running
/// in this program), or the listen error.
awaitable<std::shared_ptr<instance>> start(node& n, options o);

namespace detail {

using json = nlohmann::json;

/// How one registered type crosses.
struct type_entry {
  std::string name;
  json (*encode)(const message& body) = nullptr;
  message (*decode)(const json& body) = nullptr;
  // calls and casts: the target's handler
  grove::detail::dispatch_fn dispatch = nullptr;
  const void* server_tag = nullptr;
  // calls: a fresh slot for the reply, the reply out of it, and into the caller's
  std::shared_ptr<grove::detail::reply_slot_base> (*make_slot)() = nullptr;
  json (*encode_reply)(grove::detail::reply_slot_base& slot) = nullptr;
  void (*decode_reply)(const json& value, grove::detail::reply_slot_base& slot) = nullptr;
};

enum class entry_kind : std::uint8_t { message, call, cast };

/// Throws grove::error (invalid_argument) if `name` or the type was
/// registered already as something else.
void add_entry(entry_kind kind, std::type_index type, const void* server_tag, type_entry entry);

} // namespace detail

/// Lets values of T be sent (grove::send) to processes of other nodes.
template <class T>
void register_message(std::string name) {
  detail::type_entry e;
  e.name = std::move(name);
  e.encode = [](const message& m) -> detail::json { return detail::json(*m.get_if<T>()); };
  e.decode = [](const detail::json& j) -> message { return message(j.get<T>()); };
  detail::add_entry(detail::entry_kind::message, std::type_index(typeid(T)), nullptr, std::move(e));
}

/// Lets server_ref<S>::call(Req) reach an S on another node (both sides
/// register it under the same name).
template <class S, class Req>
  requires handles_call<S, Req>
void register_call(std::string name) {
  using R = grove::detail::reply_of<Req>;
  detail::type_entry e;
  e.name = std::move(name);
  e.encode = [](const message& m) -> detail::json { return detail::json(*m.get_if<Req>()); };
  e.decode = [](const detail::json& j) -> message { return message(j.get<Req>()); };
  e.dispatch = &grove::detail::dispatch_call<S, Req>;
  e.server_tag = &grove::detail::server_tag<S>;
  e.make_slot = []() -> std::shared_ptr<grove::detail::reply_slot_base> {
    return std::make_shared<grove::detail::reply_slot<R>>();
  };
  e.encode_reply = [](grove::detail::reply_slot_base& s) -> detail::json {
    return detail::json(static_cast<grove::detail::reply_slot<R>&>(s).take());
  };
  e.decode_reply = [](const detail::json& j, grove::detail::reply_slot_base& s) {
    static_cast<grove::detail::reply_slot<R>&>(s).set(j.get<R>());
  };
  detail::add_entry(detail::entry_kind::call, std::type_index(typeid(Req)), e.server_tag, std::move(e));
}

/// Lets server_ref<S>::cast(Req) reach an S on another node.
template <class S, class Req>
  requires handles_cast<S, Req>
void register_cast(std::string name) {
  detail::type_entry e;
  e.name = std::move(name);
  e.encode = [](const message& m) -> detail::json { return detail::json(*m.get_if<Req>()); };
  e.decode = [](const detail::json& j) -> message { return message(j.get<Req>()); };
  e.dispatch = &grove::detail::dispatch_cast<S, Req>;
  e.server_tag = &grove::detail::server_tag<S>;
  detail::add_entry(detail::entry_kind::cast, std::type_index(typeid(Req)), e.server_tag, std::move(e));
}

} // namespace grove::dist
