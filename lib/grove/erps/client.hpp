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
// A client's values are of one type: JSON for `client`, Erlang terms for
// `term_client` (erps/terms.hpp); either works on a link of either codec,
// as a server does (codec_for).
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
template <class V>
struct basic_push_message {
  V value;
};

/// The answer to one of client_options::setup_calls, for on_setup_reply.
template <class V>
struct basic_setup_reply {
  std::uint64_t link = 0;       ///< which link it was made on: 1 the first, 2 after the first reconnect, ...
  V request;                    ///< the setup call
  std::optional<V> reply{};     ///< its reply, or empty when the server refused it with an error frame
  std::string error{};          ///< the refusal's text, when it was refused
};

template <class V>
struct basic_client_options {
  std::string host = "127.0.0.1";                        ///< daemon address or name (default 127.0.0.1)
  std::uint16_t port = 0;                                ///< daemon port (required)
  std::optional<tls_client_options> tls{};               ///< TLS; plain TCP when empty (default)
  link_options link{};                                   ///< wire options shared with the daemon side: identifier, version, signing, max_payload, max_depth, keepalives, frame deadline, send queue, codec, log
  std::function<void(const V&)> on_push{};               ///< called for each push, in the client's process (default none)
  /// Requests made as calls first on every link, the first and each after
  /// a reconnect, ahead of queued casts and of any other call: what a server
  /// keeps per connection (subscriptions, a login) is set up again by itself.
  /// Called in the client's process when a link comes up (default none).
  std::function<std::vector<V>()> setup_calls{};
  /// Told each setup call's answer, in the client's process (default none).
  /// One that is lost with its link is made again on the next.
  std::function<void(const basic_setup_reply<V>&)> on_setup_reply{};
  pid push_to{};                                         ///< also sent each push as basic_push_message<V> (default nobody)
  connection_options connection{};                       ///< backoff, connect timeout, calls while disconnected, events

  /// Throws grove::error (errc::invalid_argument) naming the option
  /// (`client_options.port: ...`) and the expected form; also when the
  /// link's codec has no view of V values.
  void validate() const;
};

namespace detail {
class link;
class tls_context;
} // namespace detail

template <class V>
class basic_client_ref;

/// The client process. Start it with client::start (or grove::start<client>,
/// or server_child<client> under a supervisor) and talk to it through a
/// client_ref.
template <class V>
class basic_client : public connection {
public:
  using value_type = V;
  using options_type = basic_client_options<V>;

  explicit basic_client(options_type options);
  ~basic_client() override;

  /// Starts a client and returns once its first connect attempt finished
  /// (connected or backing off). Throws grove::error (invalid_argument) for bad options.
  static awaitable<basic_client_ref<V>> start(node& n, options_type options);
  static awaitable<basic_client_ref<V>> start_link(node& n, options_type options);

  action init();
  awaitable<connect_result> connect(message info);
  disconnect_result disconnect(message info);
  call_result<V> handle_call(basic_call<V> c, from<V> reply);
  action handle_cast(basic_cast<V> c);
  action handle_info(message m);
  void terminate(const exit_reason& reason);
  /// A link that closed is gated as down before its close message runs.
  bool ready_for_calls() const noexcept;

private:
  void fail_pending(std::error_code code, const std::string& why);
  void forget_abandoned();
  void fail_unreadable_reply(std::string_view payload, const std::string& why);
  void send_setup_calls();
  bool answer_setup(std::uint64_t id, std::optional<V> reply, const std::string& error);
  void close_link() noexcept;

  options_type options_;
  const basic_codec<V>* codec_ = nullptr;
  std::shared_ptr<detail::tls_context> tls_;
  std::shared_ptr<detail::link> link_;
  std::uint64_t links_ = 0;
  std::uint64_t next_id_ = 0;
  std::unordered_map<std::uint64_t, from<V>> pending_;
  std::unordered_map<std::uint64_t, V> setup_pending_; // setup calls on this link, by id
  std::size_t sweep_at_ = 64;
  std::vector<std::string> queued_casts_; // payloads, while disconnected
  std::size_t queued_cast_bytes_ = 0;
};

/// A handle to a running client. A value: copy it freely.
template <class V>
class basic_client_ref {
public:
  basic_client_ref() = default;
  explicit basic_client_ref(server_ref<basic_client<V>> ref) noexcept : ref_(ref) {}

  /// A call to the daemon's server for this client; its reply.
  awaitable<V> call(V request, duration timeout = default_call_timeout) const;
  awaitable<V> call(V request, call_options options) const;
  /// A cast; never waits.
  void cast(V value) const;

  const pid& id() const noexcept { return ref_.id(); }
  const server_ref<basic_client<V>>& ref() const noexcept { return ref_; }
  explicit operator bool() const noexcept { return static_cast<bool>(ref_); }

private:
  server_ref<basic_client<V>> ref_;
};

extern template struct basic_client_options<json>;
extern template class basic_client<json>;
extern template class basic_client_ref<json>;

/// A client of JSON values.
using client = basic_client<json>;
using client_options = basic_client_options<json>;
using client_ref = basic_client_ref<json>;
using push_message = basic_push_message<json>;
using setup_reply = basic_setup_reply<json>;

} // namespace grove::erps
