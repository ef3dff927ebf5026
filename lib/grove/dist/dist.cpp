#include <grove/dist/dist.hpp>

#include <grove/core/pid_text.hpp>
#include <grove/core/detail/remote.hpp>
#include <grove/core/detail/reply_notice.hpp>
#include <grove/core/error.hpp>
#include <grove/core/event.hpp>
#include <grove/erps/detail/link.hpp>
#include <grove/erps/detail/link_messages.hpp>
#include <grove/erps/detail/transport.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <charconv>
#include <map>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <unordered_map>

namespace grove {

void to_json(nlohmann::json& j, const pid& p) { j = pid_text(p); }

void from_json(const nlohmann::json& j, pid& p) {
  const std::string& text = j.get_ref<const std::string&>();
  std::optional<pid> parsed = parse_pid(text);
  if (!parsed) throw grove::error(errc::invalid_argument, "not a pid: \"" + text + "\" (expected node.creation.worker.slot.serial)");
  p = *parsed;
}

} // namespace grove

namespace grove::dist {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using detail::json;
using grove::detail::envelope;
using grove::detail::reply_slot_base;

void options::validate() const {
  auto bad = [](const std::string& field, const std::string& why) {
    throw grove::error(errc::invalid_argument, "dist.options." + field + ": " + why);
  };
  boost::system::error_code not_address;
  asio::ip::make_address(address, not_address);
  if (not_address) bad("address", "expected an IP address (\"127.0.0.1\", \"::1\"), got \"" + address + "\"");
  if (tls_server.has_value() != tls_client.has_value()) {
    bad(tls_server ? "tls_client" : "tls_server", "give both tls_server and tls_client, or neither");
  }
  if (!tls_server && cookie.empty()) {
    bad("cookie", "required without TLS: a secret every node of the cluster shares");
  }
  if (connect_timeout <= duration::zero()) bad("connect_timeout", "expected a positive duration");
  if (redial_interval < duration::zero()) bad("redial_interval", "expected a duration of 0 or more");
  link.validate("dist.options");
}

namespace detail {
namespace {

struct table {
  std::shared_mutex mutex;
  // by (kind, type, server tag) for sending; by (kind, name) for receiving
  std::map<std::tuple<int, std::type_index, const void*>, std::shared_ptr<const type_entry>> by_type;
  std::map<std::pair<int, std::string>, std::shared_ptr<const type_entry>> by_name;
};

table& types() {
  static table t;
  return t;
}

const char* kind_text(entry_kind k) {
  switch (k) {
  case entry_kind::message: return "message";
  case entry_kind::call: return "call";
  case entry_kind::cast: return "cast";
  }
  return "type";
}

} // namespace

void add_entry(entry_kind kind, std::type_index type, const void* server_tag, type_entry entry) {
  if (entry.name.empty()) throw grove::error(errc::invalid_argument, "dist: a registered type needs a name");
  table& t = types();
  std::unique_lock lock(t.mutex);
  const auto type_key = std::make_tuple(static_cast<int>(kind), type, server_tag);
  const auto name_key = std::make_pair(static_cast<int>(kind), entry.name);
  auto by_type = t.by_type.find(type_key);
  auto by_name = t.by_name.find(name_key);
  if (by_type != t.by_type.end() && by_name != t.by_name.end() && by_type->second == by_name->second) return; // again, the same
  if (by_type != t.by_type.end()) {
    throw grove::error(errc::invalid_argument, std::string("dist: this ") + kind_text(kind) + " type is registered already as \"" +
                                                   by_type->second->name + "\"");
  }
  if (by_name != t.by_name.end()) {
    throw grove::error(errc::invalid_argument,
                       std::string("dist: the ") + kind_text(kind) + " name \"" + entry.name + "\" is taken by another type");
  }
  auto shared = std::make_shared<const type_entry>(std::move(entry));
  t.by_type.emplace(type_key, shared);
  t.by_name.emplace(name_key, std::move(shared));
}

namespace {

std::shared_ptr<const type_entry> find_type(entry_kind kind, std::type_index type, const void* server_tag) {
  table& t = types();
  std::shared_lock lock(t.mutex);
  auto it = t.by_type.find(std::make_tuple(static_cast<int>(kind), type, server_tag));
  return it == t.by_type.end() ? nullptr : it->second;
}

std::shared_ptr<const type_entry> find_name(entry_kind kind, const std::string& name) {
  table& t = types();
  std::shared_lock lock(t.mutex);
  auto it = t.by_name.find(std::make_pair(static_cast<int>(kind), name));
  return it == t.by_name.end() ? nullptr : it->second;
}

// -- exit reasons and errors on the wire ------------------------------------------------

json reason_json(const exit_reason& r) {
  static const char* names[] = {"normal", "shutdown", "kill", "killed", "error", "noproc", "noconnection"};
  json j{{"kind", names[static_cast<int>(r.what())]}};
  if (!r.detail().empty()) j["detail"] = r.detail();
  return j;
}

exit_reason reason_from(const json& j) {
  const std::string kind = j.at("kind").get<std::string>();
  const std::string detail = j.contains("detail") ? j.at("detail").get<std::string>() : std::string();
  if (kind == "normal") return exit_reason::normal();
  if (kind == "shutdown") return detail.empty() ? exit_reason::shutdown() : exit_reason::shutdown(detail);
  if (kind == "kill") return exit_reason::kill();
  if (kind == "killed") return exit_reason::killed();
  if (kind == "error") return exit_reason::error(detail);
  if (kind == "noproc") return exit_reason::noproc();
  if (kind == "noconnection") return exit_reason::noconnection();
  throw grove::error(errc::invalid_argument, "unknown exit reason kind \"" + kind + "\"");
}

void log_event(event_level level, std::string name, std::string peer, std::string text) {
  grove::emit(event{.level = level,
                    .layer = "dist",
                    .name = std::move(name),
                    .fields = {{"peer", std::move(peer)}, {"detail", std::move(text)}}});
}

// -- what local processes hand to a link ---------------------------------------------------

/// An operation on a process of another node, on its way to the link's
/// process. One that never reaches the wire (the link went down first)
/// answers as a dropped link does: a call fails with noconnection, a link
/// or monitor fires noconnection.
struct outbound {
  enum class kind : std::uint8_t { deliver, exit, down, link, unlink, monitor, demonitor };
  kind what = kind::deliver;
  pid to{};
  pid from{};
  exit_reason reason{};
  bool from_link = false;
  std::uint64_t ref = 0;
  envelope env{};
  bool done = false;

  outbound() = default;
  outbound(outbound&& o) noexcept
      : what(o.what), to(o.to), from(o.from), reason(std::move(o.reason)), from_link(o.from_link), ref(o.ref),
        env(std::move(o.env)), done(o.done) {
    o.done = true;
  }
  outbound& operator=(outbound&&) = delete;
  ~outbound() {
    if (done) return;
    switch (what) {
    case kind::deliver:
      if (env.reply) env.reply->fail(make_error_code(errc::noconnection), exit_reason::noconnection());
      break;
    case kind::link: grove::detail::exit_signal_to_local(from, to, exit_reason::noconnection(), true); break;
    case kind::monitor: grove::detail::down_to_local(from, monitor_ref{to, ref}, exit_reason::noconnection()); break;
    default: break;
    }
  }
};

/// A remote call to a local process was answered (sent by the reply slot's
/// completion, from whichever thread answered).
struct call_answered {
  std::uint64_t id = 0;
};
/// Close the link now (dist stopped, a simultaneous link won, disconnect()).
struct close_link {
  std::string reason;
  bool replaced = false; ///< another link to the node took over: what waits here goes to it
};

struct route {
  std::uint32_t creation = 0; ///< 0 until a handshake said (a link dialed on demand)
  pid channel{};              ///< null: the node is down
  std::string address;
  bool dialed = false;
  std::chrono::steady_clock::time_point failed_at{}; ///< the last dial on demand that failed
  bool up = false;                                    ///< handshake done, link not dropped
};

/// "host:port" or "[v6]:port" split; nullopt if it is neither.
std::optional<std::pair<std::string, std::uint16_t>> split_endpoint(const std::string& text) {
  const std::size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size()) return std::nullopt;
  std::string host = text.substr(0, colon);
  if (host.front() == '[') {
    if (host.back() != ']') return std::nullopt;
    host = host.substr(1, host.size() - 2);
  }
  unsigned port = 0;
  const char* end = text.data() + text.size();
  auto [at, ec] = std::from_chars(text.data() + colon + 1, end, port);
  if (ec != std::errc() || at != end || port == 0 || port > 65535) return std::nullopt;
  return std::make_pair(host, static_cast<std::uint16_t>(port));
}

class state;

/// What a channel is started with (arguments are copied into the process).
struct channel_start {
  std::shared_ptr<state> owner;
  std::shared_ptr<std::unique_ptr<erps::detail::transport>> stream; ///< null: dial `host:port` first
  bool dialed = false;
  bool handshake_first = false;
  std::shared_ptr<grove::detail::reply_slot<std::uint32_t>> ready;
  std::string host{};
  std::uint16_t port = 0;
  std::uint32_t expect_node = 0; ///< a link dialed on demand: the node it is for
};

std::atomic<bool> running{false};

/// The router the core calls: installed once, never destroyed, so a thread
/// that loaded it as dist stops never reaches a freed object. It forwards
/// to the running dist, if any.
class shim final : public grove::detail::remote_router {
public:
  void attach(std::shared_ptr<state> s, std::uint64_t local_key);
  void detach(const state* s);
  bool handles(const pid& p) const noexcept override;
  void deliver(const pid& to, envelope env) override;
  void exit_signal(const pid& to, const pid& from, const exit_reason& reason, bool from_link) override;
  void down(const pid& watcher, const monitor_ref& ref, const exit_reason& reason) override;
  void link(const pid& from, const pid& to) override;
  void unlink(const pid& from, const pid& to) override;
  void monitor(const pid& watcher, const monitor_ref& ref) override;
  void demonitor(const pid& watcher, const monitor_ref& ref) override;

private:
  std::shared_ptr<state> current() const {
    std::shared_lock lock(mutex_);
    return current_;
  }
  mutable std::shared_mutex mutex_;
  std::shared_ptr<state> current_;
  std::atomic<std::uint64_t> local_key_{0}; // this node's (id, creation): a quick "not remote"
};

shim& the_shim() {
  static shim* s = new shim(); // never destroyed: see shim
  return *s;
}

std::uint64_t key_of(std::uint32_t node, std::uint32_t creation) noexcept { return (std::uint64_t{node} << 32) | creation; }

class state final : public instance, public std::enable_shared_from_this<state> {
public:
  state(node& n, options o) : node_(n), options_(std::move(o)) {}
  ~state() override {
    stop_routes();
    if (acceptor_) { // nothing else holds it now (the accept loop held this)
      boost::system::error_code ignored;
      acceptor_->close(ignored);
    }
  }

  void open() {
    if (options_.tls_server) tls_server_ = erps::detail::tls_context::server(*options_.tls_server);
    if (options_.tls_client) tls_client_ = erps::detail::tls_context::client(*options_.tls_client);
    erps::detail::link_config c = erps::detail::make_link_config(options_.link);
    c.server = false;
    c.handshake_first = false;
    dialed_config_ = std::make_shared<const erps::detail::link_config>(c);
    c.handshake_first = true; // an accepted TLS link shakes hands in the link
    if (options_.tls_server) c.handshake_timeout = options_.tls_server->handshake_timeout;
    accepted_config_ = std::make_shared<const erps::detail::link_config>(c);
    acceptor_ = std::make_shared<tcp::acceptor>(node_.context(0));
    const tcp::endpoint where(asio::ip::make_address(options_.address), options_.port);
    boost::system::error_code error;
    acceptor_->open(where.protocol(), error);
    if (!error) acceptor_->set_option(tcp::acceptor::reuse_address(true), error);
    if (!error) acceptor_->bind(where, error);
    if (!error) acceptor_->listen(asio::socket_base::max_listen_connections, error);
    if (error) {
      throw grove::error(errc::invalid_argument, "dist: cannot listen on " + options_.address + ":" +
                                                     std::to_string(options_.port) + ": " + error.message());
    }
    port_ = acceptor_->local_endpoint().port();
    the_shim().attach(shared_from_this(), key_of(node_.id(), node_.creation()));
    asio::co_spawn(node_.context(0), accept_loop(shared_from_this(), acceptor_), asio::detached);
  }

  // -- instance ------------------------------------------------------------------------------
  std::uint16_t port() const noexcept override { return port_; }

  /// Connects (TCP, then TLS) on the calling coroutine's executor.
  asio::awaitable<erps::detail::dialed> dial(std::string host, std::uint16_t port) {
    std::string verify;
    if (options_.tls_client && options_.tls_client->verify_server) {
      verify = options_.tls_client->server_name.empty() ? host : options_.tls_client->server_name;
    }
    return erps::detail::dial(std::move(host), port, tls_client_.get(), std::move(verify), options_.connect_timeout,
                              "dist.options.connect_timeout");
  }

  awaitable<std::uint32_t> connect(std::string host, std::uint16_t port) override {
    if (stopped_.load()) throw grove::error(errc::noconnection, "dist: stopped");
    const std::size_t worker = next_worker_++ % node_.size();
    const std::string where = host + ":" + std::to_string(port);
    erps::detail::dialed d = co_await asio::co_spawn(node_.context(worker), dial(host, port), asio::use_awaitable);
    if (!d.stream) throw grove::error(errc::noconnection, "dist: cannot link to " + where + ": " + d.error);
    auto ready = std::make_shared<grove::detail::reply_slot<std::uint32_t>>();
    channel_start s{shared_from_this(), std::make_shared<std::unique_ptr<erps::detail::transport>>(std::move(d.stream)),
                    true, false, ready, {}, 0, 0};
    co_await start_channel(std::move(s), worker);
    try {
      co_await grove::detail::await_reply(ready, options_.connect_timeout);
    } catch (const grove::error& e) {
      if (e.code() == errc::timeout) {
        throw grove::error(errc::noconnection, "dist: no handshake from " + where + " within dist.options.connect_timeout");
      }
      throw;
    }
    co_return ready->take();
  }

  std::vector<peer_info> peers() const override {
    std::shared_lock lock(mutex_);
    std::vector<peer_info> out;
    for (const auto& [id, r] : routes_) {
      if (r.up) out.push_back(peer_info{id, r.creation, r.address, r.dialed});
    }
    std::sort(out.begin(), out.end(), [](const peer_info& a, const peer_info& b) { return a.node < b.node; });
    return out;
  }

  bool disconnect(std::uint32_t node) override {
    pid channel;
    {
      std::unique_lock lock(mutex_);
      auto it = routes_.find(node);
      if (it == routes_.end() || !it->second.channel) return false;
      channel = it->second.channel;
      it->second.channel = pid();
      it->second.up = false;
    }
    grove::send(channel, close_link{"disconnect() was called"});
    return true;
  }

  void stop() override {
    if (!stop_routes()) return;
    // Closed on its own worker, where the accept loop uses it.
    asio::post(node_.context(0), [a = acceptor_] {
      boost::system::error_code ignored;
      a->close(ignored);
    });
  }

  /// Uninstalls the routes and closes every link; false if done before.
  bool stop_routes() {
    if (stopped_.exchange(true)) return false;
    the_shim().detach(this);
    running.store(false);
    std::unordered_map<std::uint32_t, route> routes;
    {
      std::unique_lock lock(mutex_);
      routes.swap(routes_);
    }
    for (auto& [id, r] : routes) {
      if (r.channel) grove::send(r.channel, close_link{"dist stopped"});
      if (r.up) notify(node_down{id, r.creation, "dist stopped"});
    }
    return true;
  }

  // -- routing (through the shim) ---------------------------------------------------------------
  bool handles(const pid& p) const noexcept {
    {
      std::shared_lock lock(mutex_);
      auto it = routes_.find(p.node_id());
      if (it != routes_.end()) {
        const route& r = it->second;
        if (r.creation == p.creation() || (r.channel && r.creation == 0)) return true; // up, down, or being dialed
        if (r.channel) return false; // linked to another life of that node
      }
    }
    // A node with no link (or down, perhaps restarted): reachable if it can be found.
    return options_.resolve && !grove::detail::node_in_program(p) && !resolve(p.node_id()).empty();
  }

  void deliver(const pid& to, envelope env) {
    outbound o;
    o.what = outbound::kind::deliver;
    o.to = to;
    o.env = std::move(env);
    hand_over(std::move(o));
  }
  void exit_signal(const pid& to, const pid& from, const exit_reason& reason, bool from_link) {
    outbound o;
    o.what = outbound::kind::exit;
    o.to = to;
    o.from = from;
    o.reason = reason;
    o.from_link = from_link;
    hand_over(std::move(o));
  }
  void down(const pid& watcher, const monitor_ref& ref, const exit_reason& reason) {
    outbound o;
    o.what = outbound::kind::down;
    o.to = watcher;
    o.from = ref.target;
    o.ref = ref.id;
    o.reason = reason;
    hand_over(std::move(o));
  }
  void link(const pid& from, const pid& to) { relation(outbound::kind::link, from, to, 0); }
  void unlink(const pid& from, const pid& to) { relation(outbound::kind::unlink, from, to, 0); }
  void monitor(const pid& watcher, const monitor_ref& ref) {
    relation(outbound::kind::monitor, watcher, ref.target, ref.id);
  }
  void demonitor(const pid& watcher, const monitor_ref& ref) {
    relation(outbound::kind::demonitor, watcher, ref.target, ref.id);
  }

  // -- for channels ------------------------------------------------------------------------
  const options& settings() const noexcept { return options_; }
  node& owner_node() noexcept { return node_; }
  std::shared_ptr<const erps::detail::link_config> config(bool handshake_first) const {
    return handshake_first ? accepted_config_ : dialed_config_;
  }
  std::uint64_t next_link_id() noexcept { return ++link_ids_; }

  /// A channel finished its handshake with `peer`. Returns whether it is
  /// the node's route now. Two links between one pair of nodes (both
  /// dialed at once): the one the lower node id dialed stays, on both sides.
  bool adopt(std::uint32_t peer, std::uint32_t creation, pid channel, const std::string& address, bool dialed) {
    pid replaced;
    bool was_up = false;            // a link to this life of the node was up already (a replaced one)
    std::uint32_t earlier_life = 0; // a link to an earlier life was up
    {
      std::unique_lock lock(mutex_);
      if (stopped_.load()) return false;
      auto it = routes_.find(peer);
      if (it != routes_.end() && it->second.channel && it->second.channel != channel) {
        const bool new_by_lower = dialed == (node_.id() < peer);
        const bool old_by_lower = it->second.dialed == (node_.id() < peer);
        const bool other_life = it->second.creation != 0 && it->second.creation != creation;
        if (!other_life && old_by_lower && !new_by_lower) return false;
        replaced = it->second.channel;
      }
      if (it != routes_.end() && it->second.up) {
        was_up = it->second.creation == creation;
        if (!was_up) earlier_life = it->second.creation;
      }
      routes_[peer] = route{creation, channel, address, dialed, {}, true};
    }
    if (replaced) grove::send(replaced, close_link{"replaced by another link to the same node", true});
    if (earlier_life) notify(node_down{peer, earlier_life, "the node restarted (a new creation)"});
    if (!was_up) notify(node_up{peer, creation});
    return true;
  }

  void monitor_nodes(pid watcher, bool on) override {
    std::lock_guard lock(watchers_mutex_);
    std::erase(watchers_, watcher);
    if (on) watchers_.push_back(watcher);
  }

  template <class Event>
  void notify(const Event& e) {
    std::vector<pid> to;
    {
      std::lock_guard lock(watchers_mutex_);
      std::erase_if(watchers_, [](const pid& w) { return !grove::alive(w); });
      to = watchers_;
    }
    for (const pid& w : to) grove::send(w, e);
  }

  /// The channel ended: its node is down (if the route is still its). The
  /// node stays known, so its pids get noconnection, not noproc, until a
  /// link to it is up again.
  void forget(std::uint32_t peer, pid channel, const std::string& why) {
    std::uint32_t creation = 0;
    {
      std::unique_lock lock(mutex_);
      auto it = routes_.find(peer);
      if (it == routes_.end() || it->second.channel != channel) return;
      it->second.channel = pid();
      it->second.up = false;
      creation = it->second.creation;
    }
    notify(node_down{peer, creation, why});
  }

  awaitable<void> start_channel(channel_start s, std::size_t worker);

private:
  void relation(outbound::kind k, const pid& from, const pid& to, std::uint64_t ref) {
    outbound o;
    o.what = k;
    o.from = from;
    o.to = to;
    o.ref = ref;
    hand_over(std::move(o));
  }

  std::string resolve(std::uint32_t node) const noexcept {
    try {
      return options_.resolve ? options_.resolve(node) : std::string();
    } catch (const std::exception& e) {
      log_event(event_level::warning, "resolve_failed", {}, "node " + std::to_string(node) + ": " + e.what());
      return {};
    }
  }

  /// A link dialed on demand to `node`, if none is up or being dialed and
  /// the last attempt is older than redial_interval; its channel, or null.
  pid dial_on_demand(std::uint32_t node) {
    if (!options_.resolve || stopped_.load()) return {};
    const std::string where = resolve(node);
    if (where.empty()) return {};
    const auto endpoint = split_endpoint(where);
    if (!endpoint) {
      log_event(event_level::warning, "resolve_failed", where,
                "node " + std::to_string(node) + ": \"" + where + "\" is not host:port");
      return {};
    }
    std::unique_lock lock(mutex_);
    route& r = routes_[node];
    if (r.channel) return r.channel;
    const auto now = std::chrono::steady_clock::now();
    if (r.failed_at != std::chrono::steady_clock::time_point{} && now - r.failed_at < options_.redial_interval) return {};
    channel_start s{shared_from_this(), nullptr, true, false, nullptr, endpoint->first, endpoint->second, node};
    r.channel = spawn_channel(std::move(s), next_worker_++ % node_.size());
    r.address = where;
    r.dialed = true;
    return r.channel;
  }

  pid spawn_channel(channel_start s, std::size_t worker);

public:
  /// Hands `o` to the link of its node (dialing it on demand).
  void hand_over(outbound o) {
    pid channel;
    {
      std::shared_lock lock(mutex_);
      auto it = routes_.find(o.to.node_id());
      if (it != routes_.end()) channel = it->second.channel;
    }
    if (!channel) channel = dial_on_demand(o.to.node_id());
    // No link (or a channel that ends before it reads this): the
    // outbound's destructor answers with noconnection.
    if (channel) grove::send(channel, std::move(o));
  }

  /// A link dialed on demand ended before its handshake.
  void dial_failed(std::uint32_t node, pid channel) {
    std::unique_lock lock(mutex_);
    auto it = routes_.find(node);
    if (it != routes_.end() && it->second.channel == channel) {
      it->second.channel = pid();
      it->second.failed_at = std::chrono::steady_clock::now();
    }
  }

private:

  static asio::awaitable<void> accept_loop(std::shared_ptr<state> self, std::shared_ptr<tcp::acceptor> acceptor);

  node& node_;
  options options_;
  std::shared_ptr<erps::detail::tls_context> tls_server_;
  std::shared_ptr<erps::detail::tls_context> tls_client_;
  std::shared_ptr<const erps::detail::link_config> dialed_config_;
  std::shared_ptr<const erps::detail::link_config> accepted_config_;
  std::shared_ptr<tcp::acceptor> acceptor_;
  std::uint16_t port_ = 0;
  std::atomic<bool> stopped_{false};
  std::atomic<std::size_t> next_worker_{0};
  std::atomic<std::uint64_t> link_ids_{0};
  mutable std::shared_mutex mutex_;
  std::unordered_map<std::uint32_t, route> routes_;
  std::mutex watchers_mutex_;
  std::vector<pid> watchers_; // monitor_nodes()
};

// -- a link to one node -------------------------------------------------------------------------

bool same_secret(const std::string& a, const std::string& b) noexcept {
  // Every byte compared whatever differs, so the time says nothing of where.
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (std::size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i % std::max<std::size_t>(1, b.size())]);
  return diff == 0;
}

class channel : public gen_server {
public:
  explicit channel(channel_start s) : start_(std::move(s)) {}

  ~channel() override { finish(); }

  action init() {
    if (!start_.stream) return grove::continue_with(dial_step{});
    begin(std::move(*start_.stream));
    start_.stream.reset();
    return action{};
  }

  awaitable<action> handle_continue(message m) {
    if (!m.is<dial_step>()) co_return action{};
    state& d = *start_.owner;
    const std::string where = start_.host + ":" + std::to_string(start_.port);
    this_process().set_label("dist link to node " + std::to_string(start_.expect_node) + " " + where + " (dialing)");
    erps::detail::dialed dialed = co_await d.dial(start_.host, start_.port);
    if (!dialed.stream) {
      log_event(event_level::warning, "dial_failed", where,
                "node " + std::to_string(start_.expect_node) + ": " + dialed.error);
      co_return grove::stop(exit_reason::shutdown("dist: cannot link to " + where + ": " + dialed.error));
    }
    begin(std::move(dialed.stream));
    co_return action{};
  }

  void begin(std::unique_ptr<erps::detail::transport> stream) {
    state& d = *start_.owner;
    link_ = std::make_shared<erps::detail::link>(std::move(stream), d.config(start_.handshake_first), self(),
                                                 d.next_link_id());
    peer_address_ = link_->peer();
    this_process().set_label("dist link " + peer_address_);
    link_->start();
    send(json{{"dist", "hello"},
              {"version", 1},
              {"node", d.owner_node().id()},
              {"creation", d.owner_node().creation()},
              {"cookie", d.settings().cookie}});
    // A peer that does not say hello within the connect timeout is dropped.
    grove::send_after(self(), d.settings().connect_timeout, hello_deadline{});
  }

  action handle_info(message m) {
    if (auto* f = m.get_if<erps::detail::link_frame>()) {
      if (!link_ || f->link != link_->id()) return action{};
      if (f->type != erps::frame_type::cast) return protocol_error("unexpected " + std::string(erps::to_string(f->type)) + " frame");
      json j = json::parse(f->payload, nullptr, false);
      if (j.is_discarded() || !j.is_object()) return protocol_error("a frame that is not a JSON object");
      try {
        return peer_ ? incoming(j) : hello(j);
      } catch (const std::exception& e) {
        return protocol_error(std::string("a malformed operation: ") + e.what());
      }
    }
    if (auto* o = m.get_if<outbound>()) {
      outgoing(*o);
      return action{};
    }
    if (auto* a = m.get_if<call_answered>()) {
      answer(a->id);
      return action{};
    }
    if (auto* down = m.get_if<erps::detail::link_down>()) {
      if (!link_ || down->link != link_->id()) return action{};
      down_reason_ = down->reason;
      return stop(exit_reason::shutdown("link down: " + down->reason));
    }
    if (auto* c = m.get_if<close_link>()) {
      if (c->replaced) pass_on_waiting();
      down_reason_ = c->reason;
      if (link_) link_->close_after_flush(c->reason, false);
      return stop(exit_reason::shutdown(c->reason));
    }
    if (m.is<hello_deadline>() && !peer_) {
      return protocol_error("no handshake within dist.options.connect_timeout");
    }
    return action{};
  }

private:
  struct hello_deadline {};
  struct dial_step {};
  struct out_call {
    std::shared_ptr<reply_slot_base> slot;
    std::shared_ptr<const type_entry> type;
  };
  struct out_monitor {
    pid watcher;
    pid target;
  };
  struct in_monitor {
    pid watcher;         // remote
    std::uint64_t remote_id = 0;
    pid target;          // local
  };

  action protocol_error(const std::string& why) {
    log_event(event_level::warning, "protocol_error", peer_address_, why);
    down_reason_ = "dist: " + why;
    if (link_) link_->close_after_flush("dist: " + why, true);
    return stop(exit_reason::shutdown("dist: " + why));
  }

  void send(const json& j) {
    if (!link_ || link_->closed()) return;
    const std::string text = j.dump(-1, ' ', false, json::error_handler_t::replace);
    link_->send(erps::frame_type::cast, [&](std::string& out) { out += text; });
  }

  action hello(const json& j) {
    if (!j.contains("dist") || j.at("dist") != "hello") return protocol_error("the first frame is not a dist hello");
    state& d = *start_.owner;
    const std::string cookie = j.value("cookie", std::string());
    if (!same_secret(cookie, d.settings().cookie)) {
      log_event(event_level::warning, "refused", peer_address_, "the peer's cookie is not this node's");
      return protocol_error("wrong cookie");
    }
    const auto peer = j.at("node").get<std::uint32_t>();
    const auto creation = j.at("creation").get<std::uint32_t>();
    if (peer == d.owner_node().id()) return protocol_error("the peer has this node's id (" + std::to_string(peer) + ")");
    if (start_.expect_node != 0 && peer != start_.expect_node) {
      return protocol_error("dialed for node " + std::to_string(start_.expect_node) + ", the peer is node " +
                            std::to_string(peer) + " (options.resolve gave a stale address?)");
    }
    if (!d.adopt(peer, creation, self(), peer_address_, start_.dialed)) {
      // Another link to that node is up (or dist stopped): this one goes,
      // and what waited for it goes to that one.
      if (start_.ready) start_.ready->set(peer);
      pass_on_waiting();
      link_->close_after_flush("a link to node " + std::to_string(peer) + " is up already", false);
      return stop(exit_reason::normal());
    }
    peer_ = peer;
    creation_ = creation;
    log_event(event_level::info, "node_up", peer_address_, "linked to node " + std::to_string(peer));
    if (start_.ready) start_.ready->set(peer);
    std::vector<outbound> waiting = std::move(waiting_);
    waiting_.clear();
    for (outbound& o : waiting) outgoing(o);
    return action{};
  }

  bool ours(const pid& p) const {
    node& n = start_.owner->owner_node();
    return p.node_id() == n.id() && p.creation() == n.creation();
  }

  action incoming(const json& j) {
    const std::string& op = j.at("op").get_ref<const std::string&>();
    if (op == "send") {
      const pid to = j.at("to").get<pid>();
      auto type = registered_or_logged(entry_kind::message, j);
      if (!type) return action{};
      if (ours(to)) grove::detail::deliver_envelope(to, envelope{.body = type->decode(j.at("body"))});
    } else if (op == "call") {
      const std::uint64_t id = j.at("id").get<std::uint64_t>();
      const pid to = j.at("to").get<pid>();
      const pid from = j.at("from").get<pid>();
      auto type = find_name(entry_kind::call, j.at("type").get<std::string>());
      if (!type) {
        reply_error(id, errc::invalid_argument,
                    exit_reason::error("dist: node " + std::to_string(start_.owner->owner_node().id()) +
                                       " has no call registered as \"" + j.at("type").get<std::string>() + "\""));
        return action{};
      }
      if (!ours(to)) {
        reply_error(id, errc::noproc, exit_reason::noproc());
        return action{};
      }
      message body;
      try {
        body = type->decode(j.at("body"));
      } catch (const std::exception& e) {
        reply_error(id, errc::invalid_argument, exit_reason::error(std::string("dist: the request could not be read: ") + e.what()));
        return action{};
      }
      std::shared_ptr<reply_slot_base> slot = type->make_slot();
      slot->set_caller(from);
      in_calls_[id] = out_call{slot, type};
      grove::detail::notify_when_answered(*slot, self(), call_answered{id});
      grove::detail::deliver_envelope(to, envelope{.body = std::move(body),
                                                   .reply = slot,
                                                   .dispatch = type->dispatch,
                                                   .server_tag = type->server_tag,
                                                   .kind = grove::detail::envelope_kind::call,
                                                   .readiness = j.value("ready", std::uint8_t{0})});
    } else if (op == "cast") {
      const pid to = j.at("to").get<pid>();
      auto type = registered_or_logged(entry_kind::cast, j);
      if (!type) return action{};
      if (ours(to)) {
        grove::detail::deliver_envelope(to, envelope{.body = type->decode(j.at("body")),
                                                     .dispatch = type->dispatch,
                                                     .server_tag = type->server_tag,
                                                     .kind = grove::detail::envelope_kind::cast});
      }
    } else if (op == "reply") {
      auto it = out_calls_.find(j.at("id").get<std::uint64_t>());
      if (it == out_calls_.end()) return action{}; // (answered already: a timeout, or a duplicate)
      out_call call = std::move(it->second);
      out_calls_.erase(it);
      if (j.contains("error")) {
        const int code = j.at("error").get<int>();
        const bool known = code >= 1 && code <= static_cast<int>(errc::noconnection);
        call.slot->fail(make_error_code(known ? static_cast<errc>(code) : errc::exited), reason_from(j.at("reason")));
      } else {
        try {
          call.type->decode_reply(j.at("value"), *call.slot);
        } catch (const std::exception& e) {
          call.slot->fail(make_error_code(errc::invalid_argument),
                          exit_reason::error(std::string("dist: the reply could not be read: ") + e.what()));
        }
      }
    } else if (op == "exit") {
      const pid to = j.at("to").get<pid>();
      const pid from = j.at("from").get<pid>();
      const bool from_link = j.at("link").get<bool>();
      if (from_link) links_.erase({to, from});
      if (ours(to)) grove::detail::exit_signal_to_local(to, from, reason_from(j.at("reason")), from_link);
    } else if (op == "link") {
      const pid to = j.at("to").get<pid>();
      const pid from = j.at("from").get<pid>();
      if (ours(to)) {
        links_.insert({to, from});
        grove::detail::link_from_remote(to, from);
      } else {
        send(json{{"op", "exit"}, {"to", from}, {"from", to}, {"link", true}, {"reason", reason_json(exit_reason::noproc())}});
      }
    } else if (op == "unlink") {
      const pid to = j.at("to").get<pid>();
      const pid from = j.at("from").get<pid>();
      links_.erase({to, from});
      if (ours(to)) grove::detail::unlink_from_remote(to, from);
    } else if (op == "monitor") {
      const pid target = j.at("to").get<pid>();
      const pid watcher = j.at("from").get<pid>();
      const std::uint64_t remote_id = j.at("ref").get<std::uint64_t>();
      if (!ours(target)) {
        send(json{{"op", "down"}, {"to", watcher}, {"from", target}, {"ref", remote_id}, {"reason", reason_json(exit_reason::noproc())}});
        return action{};
      }
      const std::uint64_t local_id = grove::detail::new_monitor_id();
      in_monitors_[local_id] = in_monitor{watcher, remote_id, target};
      in_by_remote_[{watcher, remote_id}] = local_id;
      grove::detail::monitor_from_remote(target, local_id, watcher);
    } else if (op == "demonitor") {
      const pid watcher = j.at("from").get<pid>();
      auto it = in_by_remote_.find({watcher, j.at("ref").get<std::uint64_t>()});
      if (it == in_by_remote_.end()) return action{};
      auto m = in_monitors_.find(it->second);
      if (m != in_monitors_.end()) {
        grove::detail::demonitor_from_remote(m->second.target, it->second);
        in_monitors_.erase(m);
      }
      in_by_remote_.erase(it);
    } else if (op == "down") {
      const pid watcher = j.at("to").get<pid>();
      const pid target = j.at("from").get<pid>();
      const std::uint64_t id = j.at("ref").get<std::uint64_t>();
      out_monitors_.erase(id);
      if (ours(watcher)) grove::detail::down_to_local(watcher, monitor_ref{target, id}, reason_from(j.at("reason")));
    } else {
      return protocol_error("an unknown operation \"" + op + "\"");
    }
    return action{};
  }

  /// The type a send or cast names, or nothing (logged: it is dropped).
  std::shared_ptr<const type_entry> registered_or_logged(entry_kind kind, const json& j) const {
    const std::string name = j.at("type").get<std::string>();
    auto type = find_name(kind, name);
    if (!type) {
      log_event(event_level::warning, "unregistered_type", peer_address_,
                std::string("a ") + kind_text(kind) + " of type \"" + name + "\" that this node has not registered: dropped");
    }
    return type;
  }

  void reply_error(std::uint64_t id, errc code, const exit_reason& reason) {
    send(json{{"op", "reply"}, {"id", id}, {"error", static_cast<int>(code)}, {"reason", reason_json(reason)}});
  }

  void answer(std::uint64_t id) {
    auto it = in_calls_.find(id);
    if (it == in_calls_.end()) return;
    out_call call = std::move(it->second);
    in_calls_.erase(it);
    if (!call.slot->published()) return; // (failed by finish(): nobody to answer)
    if (call.slot->error()) {
      const auto& code = call.slot->error();
      const int value = code.category() == grove::error_category() ? code.value() : static_cast<int>(errc::exited);
      reply_error(id, static_cast<errc>(value), call.slot->reason());
      return;
    }
    json value;
    try {
      value = call.type->encode_reply(*call.slot);
    } catch (const std::exception& e) {
      reply_error(id, errc::invalid_argument, exit_reason::error(std::string("dist: the reply could not be written: ") + e.what()));
      return;
    }
    send(json{{"op", "reply"}, {"id", id}, {"value", std::move(value)}});
  }

  void outgoing(outbound& o) {
    if (!peer_ && start_.expect_node != 0 && o.to.node_id() == start_.expect_node) {
      waiting_.push_back(std::move(o)); // dialing: sent in order once the handshake is done
      return;
    }
    if (!peer_ || o.to.node_id() != *peer_ || o.to.creation() != creation_) {
      return; // not this link's node (a route replaced meanwhile): answered as a dropped link (its destructor)
    }
    o.done = true;
    switch (o.what) {
    case outbound::kind::deliver: deliver(o); break;
    case outbound::kind::exit:
      if (o.from_link) links_.erase({o.from, o.to});
      send(json{{"op", "exit"}, {"to", o.to}, {"from", o.from}, {"link", o.from_link}, {"reason", reason_json(o.reason)}});
      break;
    case outbound::kind::down: {
      // A local target ended: its remote watcher's monitor, by the id it gave.
      auto it = in_monitors_.find(o.ref);
      if (it == in_monitors_.end()) return;
      const in_monitor m = it->second;
      in_monitors_.erase(it);
      in_by_remote_.erase({m.watcher, m.remote_id});
      send(json{{"op", "down"}, {"to", m.watcher}, {"from", m.target}, {"ref", m.remote_id}, {"reason", reason_json(o.reason)}});
      break;
    }
    case outbound::kind::link:
      links_.insert({o.from, o.to});
      send(json{{"op", "link"}, {"to", o.to}, {"from", o.from}});
      break;
    case outbound::kind::unlink:
      links_.erase({o.from, o.to});
      send(json{{"op", "unlink"}, {"to", o.to}, {"from", o.from}});
      break;
    case outbound::kind::monitor:
      out_monitors_[o.ref] = out_monitor{o.from, o.to};
      send(json{{"op", "monitor"}, {"to", o.to}, {"from", o.from}, {"ref", o.ref}});
      break;
    case outbound::kind::demonitor:
      out_monitors_.erase(o.ref);
      send(json{{"op", "demonitor"}, {"to", o.to}, {"from", o.from}, {"ref", o.ref}});
      break;
    }
  }

  void deliver(outbound& o) {
    envelope& env = o.env;
    using grove::detail::envelope_kind;
    const entry_kind kind = env.kind == envelope_kind::call   ? entry_kind::call
                            : env.kind == envelope_kind::cast ? entry_kind::cast
                                                              : entry_kind::message;
    if (env.kind == envelope_kind::system) {
      env.reply->fail(make_error_code(errc::invalid_argument),
                      exit_reason::error("dist: stop() reaches processes of this program only"));
      return;
    }
    auto type = find_type(kind, env.body.type(), kind == entry_kind::message ? nullptr : env.server_tag);
    if (!type) {
      const std::string why = std::string("dist: the ") + kind_text(kind) + " type " + env.body.type_name() +
                              " is not registered (grove::dist::register_" + kind_text(kind) + ")";
      if (env.reply) {
        env.reply->fail(make_error_code(errc::invalid_argument), exit_reason::error(why));
      } else {
        log_event(event_level::warning, "unregistered_type", peer_address_, why + ": dropped");
      }
      return;
    }
    json body;
    try {
      body = type->encode(env.body);
    } catch (const std::exception& e) {
      const std::string why = "dist: a " + type->name + " could not be written: " + e.what();
      if (env.reply) {
        env.reply->fail(make_error_code(errc::invalid_argument), exit_reason::error(why));
      } else {
        log_event(event_level::warning, "unwritable", peer_address_, why + ": dropped");
      }
      return;
    }
    if (kind == entry_kind::call) {
      const std::uint64_t id = ++next_call_;
      if (out_calls_.size() >= sweep_at_) { // calls that gave up (timed out) and got no reply yet
        std::erase_if(out_calls_, [](const auto& c) { return c.second.slot->completed(); });
        sweep_at_ = std::max<std::size_t>(64, out_calls_.size() * 2);
      }
      out_calls_[id] = out_call{env.reply, type};
      send(json{{"op", "call"},
                {"to", o.to},
                {"from", env.reply->caller()},
                {"id", id},
                {"type", type->name},
                {"body", std::move(body)},
                {"ready", env.readiness}});
    } else {
      send(json{{"op", kind == entry_kind::cast ? "cast" : "send"}, {"to", o.to}, {"type", type->name}, {"body", std::move(body)}});
    }
  }

  /// Operations that waited for this link's handshake go to the node's
  /// link that won instead (in their order).
  void pass_on_waiting() {
    std::vector<outbound> waiting = std::move(waiting_);
    waiting_.clear();
    for (outbound& o : waiting) start_.owner->hand_over(std::move(o));
  }

  /// The link ended: everything across it answers as a dropped link does.
  void finish() noexcept {
    try {
      if (link_) link_->abandon();
      if (!peer_ && start_.expect_node != 0) start_.owner->dial_failed(start_.expect_node, self());
      waiting_.clear(); // (each answers noconnection)
      if (peer_) {
        start_.owner->forget(*peer_, self(), down_reason_.empty() ? std::string("the link closed") : down_reason_);
        log_event(event_level::info, "node_down", peer_address_, "the link to node " + std::to_string(*peer_) + " is down");
      }
      if (start_.ready) start_.ready->fail(make_error_code(errc::noconnection), exit_reason::noconnection());
      for (const auto& [local, remote] : links_) {
        grove::detail::exit_signal_to_local(local, remote, exit_reason::noconnection(), true);
      }
      for (const auto& [id, m] : out_monitors_) {
        grove::detail::down_to_local(m.watcher, monitor_ref{m.target, id}, exit_reason::noconnection());
      }
      for (const auto& [id, m] : in_monitors_) grove::detail::demonitor_from_remote(m.target, id);
      for (auto& [id, c] : out_calls_) c.slot->fail(make_error_code(errc::noconnection), exit_reason::noconnection());
      for (auto& [id, c] : in_calls_) c.slot->fail(make_error_code(errc::exited), exit_reason::noconnection());
    } catch (...) { // only when memory fails
    }
    links_.clear();
    out_monitors_.clear();
    in_monitors_.clear();
    out_calls_.clear();
    in_calls_.clear();
  }

  channel_start start_;
  std::shared_ptr<erps::detail::link> link_;
  std::vector<outbound> waiting_; // dialing: operations for after the handshake
  std::string down_reason_;       // why the link ended (for node_down)
  std::string peer_address_;
  std::optional<std::uint32_t> peer_;
  std::uint32_t creation_ = 0;
  std::uint64_t next_call_ = 0;
  std::size_t sweep_at_ = 64;
  std::unordered_map<std::uint64_t, out_call> out_calls_;
  std::unordered_map<std::uint64_t, out_call> in_calls_;
  std::set<std::pair<pid, pid>> links_; // (local, remote)
  std::unordered_map<std::uint64_t, out_monitor> out_monitors_;                // by the local watcher's id
  std::unordered_map<std::uint64_t, in_monitor> in_monitors_;                  // by the id given here
  std::map<std::pair<pid, std::uint64_t>, std::uint64_t> in_by_remote_;        // (watcher, its id) -> id here
};

void shim::attach(std::shared_ptr<state> s, std::uint64_t local_key) {
  {
    std::unique_lock lock(mutex_);
    current_ = std::move(s);
    local_key_.store(local_key, std::memory_order_relaxed);
  }
  grove::detail::set_remote_router(this);
}

void shim::detach(const state* s) {
  std::shared_ptr<state> gone; // released outside the lock
  std::unique_lock lock(mutex_);
  if (current_.get() != s) return;
  gone = std::move(current_);
  local_key_.store(0, std::memory_order_relaxed);
}

bool shim::handles(const pid& p) const noexcept {
  if (!p) return false;
  if (key_of(p.node_id(), p.creation()) == local_key_.load(std::memory_order_relaxed)) return false;
  std::shared_lock lock(mutex_);
  return current_ && current_->handles(p);
}

// Each forwards to the running dist; with none (it stopped since handles()
// said yes), the outbound's destructor answers as a dropped link.
void shim::deliver(const pid& to, envelope env) {
  if (auto s = current()) {
    s->deliver(to, std::move(env));
  } else if (env.reply) {
    env.reply->fail(make_error_code(errc::noconnection), exit_reason::noconnection());
  }
}
void shim::exit_signal(const pid& to, const pid& from, const exit_reason& reason, bool from_link) {
  if (auto s = current()) s->exit_signal(to, from, reason, from_link);
}
void shim::down(const pid& watcher, const monitor_ref& ref, const exit_reason& reason) {
  if (auto s = current()) s->down(watcher, ref, reason);
}
void shim::link(const pid& from, const pid& to) {
  if (auto s = current()) {
    s->link(from, to);
  } else {
    grove::detail::exit_signal_to_local(from, to, exit_reason::noconnection(), true);
  }
}
void shim::unlink(const pid& from, const pid& to) {
  if (auto s = current()) s->unlink(from, to);
}
void shim::monitor(const pid& watcher, const monitor_ref& ref) {
  if (auto s = current()) {
    s->monitor(watcher, ref);
  } else {
    grove::detail::down_to_local(watcher, ref, exit_reason::noconnection());
  }
}
void shim::demonitor(const pid& watcher, const monitor_ref& ref) {
  if (auto s = current()) s->demonitor(watcher, ref);
}

awaitable<void> state::start_channel(channel_start s, std::size_t worker) {
  start_options o;
  o.worker = worker;
  co_await grove::start<channel>(node_, o, std::move(s));
}

pid state::spawn_channel(channel_start s, std::size_t worker) {
  // Started without waiting for its init (the caller may hold the routes' lock).
  start_options o;
  o.worker = worker;
  auto started = std::make_shared<grove::detail::reply_slot<pid>>();
  return grove::detail::spawn_body(node_,
                                   grove::detail::server_body<channel, channel_start>{
                                       started, std::tuple<channel_start>(std::move(s)), std::nullopt, nullptr},
                                   grove::detail::to_spawn_options(o));
}

asio::awaitable<void> state::accept_loop(std::shared_ptr<state> self, std::shared_ptr<tcp::acceptor> acceptor) {
  for (;;) {
    auto [error, socket] = co_await acceptor->async_accept(asio::as_tuple(asio::use_awaitable));
    if (self->stopped_.load()) co_return;
    if (error) {
      if (error == asio::error::operation_aborted) co_return;
      log_event(event_level::warning, "accept_failed", {}, error.message());
      continue; // (descriptors run out: the next accept may succeed)
    }
    std::unique_ptr<erps::detail::transport> stream;
    if (self->tls_server_) {
      stream = self->tls_server_->wrap(std::move(socket), {});
    } else {
      stream = erps::detail::make_tcp_transport(std::move(socket));
    }
    channel_start s{self, std::make_shared<std::unique_ptr<erps::detail::transport>>(std::move(stream)), false,
                    self->tls_server_ != nullptr, nullptr, {}, 0, 0};
    try {
      co_await self->start_channel(std::move(s), 0);
    } catch (const std::exception& e) {
      log_event(event_level::warning, "accept_failed", {}, e.what());
    }
  }
}

} // namespace
} // namespace detail

awaitable<std::shared_ptr<instance>> start(node& n, options o) {
  o.validate();
  if (detail::running.exchange(true)) {
    throw grove::error(errc::invalid_argument, "dist: a dist is running in this program already (one per program)");
  }
  auto s = std::make_shared<detail::state>(n, std::move(o));
  try {
    s->open();
  } catch (...) {
    detail::running.store(false);
    throw;
  }
  co_return s;
}

} // namespace grove::dist
