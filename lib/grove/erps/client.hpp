// grove/erps/client.hpp — the erps client: a connection process that keeps
// one TCP or TLS link to a daemon, multiplexes calls over it, and
// reconnects by itself.
//
//   grove::erps::client_options options;
//   options.port = daemon.port();
//   auto c = co_await grove::erps::client::start(node, options);
//   grove::erps::json reply = co_await c.call({{"op", "get"}, {"key", "a"}});
//   c.cast({{"op", "put"}, {"key", "a"}, {"value", 1}});
//
// Calls carry ids, so many are in flight at once and replies may come in
// any order; a reply to a call that already gave up is dropped. A call the
// server refused (an error frame for it) throws grove::error erps_errc::remote
// with the server's text. While the link is down calls fail at once with
// connection_errc::disconnected, or wait up to their timeout
// (options.connection.calls_while_disconnected, or per call); calls in
// flight when it drops fail with connection_errc::disconnected. Casts made while it is
// down are queued (up to max_queued_bytes) and sent once it is back. A
// request the codec cannot write (nested deeper than max_depth_limit), or
// a reply nested deeper than options.max_depth, fails that one call with
// erps_errc::bad_payload; the connection goes on.
// Keepalives go out when the link is quiet, and a server silent past
// keepalive_timeout is treated as gone: the client reconnects by its
// backoff policy, and makes its setup_calls again first, so state a server
// keeps per connection (subscriptions) comes back with the link.
#pragma once

#include <grove/erps/error.hpp>
#include <grove/connection/connection.hpp>
#include <grove/erps/codec.hpp>
#include <grove/erps/frame.hpp>
#include <grove/erps/link_options.hpp>
#include <grove/erps/log.hpp>
#include <grove/erps/server.hpp>
#include <grove/erps/tls.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace grove::erps {

/// What a client sends to options.push_to for each push from the server.
struct push_message {
  json value;
};

/// The answer to one of client_options::setup_calls, for on_setup_reply.
struct setup_reply {
  std::uint64_t link = 0;       ///< which link it was made on: 1 the first, 2 after the first reconnect, ...
  json request;                 ///< the setup call
  std::optional<json> reply{};  ///< its reply, or empty when the server refused it with an error frame
  std::string error{};          ///< the refusal's text, when it was refused
};

struct client_options {
  std::string host = "127.0.0.1";                        ///< daemon address or name (default 127.0.0.1)
  std::uint16_t port = 0;                                ///< daemon port (required)
  std::optional<tls_client_options> tls{};               ///< TLS; plain TCP when empty (default)
  link_options link{};                                   ///< wire options shared with the daemon side: identifier, version, signing, max_payload, max_depth, keepalives, frame deadline, send queue, codec, log
  std::function<void(const json&)> on_push{};            ///< called for each push, in the client's process (default none)
  /// Requests made as calls first on every link, the first and each after
  /// a reconnect, ahead of queued casts and of any other call: what a server
  /// keeps per connection (subscriptions, a login) is set up again by itself.
  /// Called in the client's process when a link comes up (default none).
  std::function<std::vector<json>()> setup_calls{};
  /// Told each setup call's answer, in the client's process (default none).
  /// One that is lost with its link is made again on the next.
  std::function<void(const setup_reply&)> on_setup_reply{};
  pid push_to{};                                         ///< also sent each push as push_message (default nobody)
  connection_options connection{};                       ///< backoff, connect timeout, calls while disconnected, events

  /// Throws grove::error (errc::invalid_argument) naming the option
  /// (`client_options.port: ...`) and the expected form.
  void validate() const;
};

namespace detail {
class link;
class tls_context;
} // namespace detail

class client_ref;

/// The client process. Start it with client::start (or grove::start<client>,
/// or server_child<client> under a supervisor) and talk to it through a
/// client_ref.
class client : public connection {
public:
  explicit client(client_options options);
  ~client() override;

  /// Starts a client and returns once its first connect attempt finished
  /// (connected or backing off). Throws grove::error (invalid_argument) for bad options.
  static awaitable<client_ref> start(node& n, client_options options);
  static awaitable<client_ref> start_link(node& n, client_options options);

  action init();
  awaitable<connect_result> connect(message info);
  disconnect_result disconnect(message info);
  call_result<json> handle_call(erps::call c, from<json> reply);
  action handle_cast(erps::cast c);
  action handle_info(message m);
  void terminate(const exit_reason& reason);

private:
  bool send_call(const json& id, const json& request);
  bool send_cast(const json& value);
  void fail_pending(std::error_code code, const std::string& why);
  void forget_abandoned();
  void fail_unreadable_reply(std::string_view payload, const std::string& why);
  void send_setup_calls();
  bool answer_setup(std::uint64_t id, std::optional<json> reply, const std::string& error);
  void close_link() noexcept;

  client_options options_;
  std::shared_ptr<detail::tls_context> tls_;
  std::shared_ptr<detail::link> link_;
  std::uint64_t links_ = 0;
  std::uint64_t next_id_ = 0;
  std::unordered_map<std::uint64_t, from<json>> pending_;
  std::unordered_map<std::uint64_t, json> setup_pending_; // setup calls on this link, by id
  std::size_t sweep_at_ = 64;
  std::vector<std::string> queued_casts_; // payloads, while disconnected
  std::size_t queued_cast_bytes_ = 0;
};

/// A handle to a running client. A value: copy it freely.
class client_ref {
public:
  client_ref() = default;
  explicit client_ref(server_ref<client> ref) noexcept : ref_(ref) {}

  /// A call to the daemon's server for this client; its reply.
  awaitable<json> call(json request, duration timeout = default_call_timeout) const;
  awaitable<json> call(json request, call_options options) const;
  /// A cast; never waits.
  void cast(json value) const;

  const pid& id() const noexcept { return ref_.id(); }
  const server_ref<client>& ref() const noexcept { return ref_; }
  explicit operator bool() const noexcept { return static_cast<bool>(ref_); }

private:
  server_ref<client> ref_;
};

} // namespace grove::erps
