// grove/erps/server.hpp — the server behind one erps client: a gen_server
// whose calls and casts are values of one type: JSON for `server`, Erlang
// terms for `term_server` (erps/terms.hpp). The daemon starts one per
// accepted connection; it is also an ordinary gen_server that local
// processes call. Either works on a link of either codec: the link's codec
// is seen as a codec of the server's values (codec_for), so a JSON server
// serves an ETF peer through the mapping of erps/term_json.hpp.
//
//   class kv : public grove::erps::server {
//   public:
//     explicit kv(grove::erps::json initial) : data_(std::move(initial)) {}
//     grove::erps::json handle_call(grove::erps::call c, grove::from<grove::erps::json>) {
//       return data_.value(c.request.at("key").get<std::string>(), grove::erps::json());
//     }
//     void handle_cast(grove::erps::cast c) { data_.update(c.request); push(c.request); }
//   private:
//     grove::erps::json data_;
//   };
//
// Every gen_server return path works for remote calls: a reply (value or
// call_result), a reply later through from<json> from any process or thread
// (replies go out as they come, out of order), stop with or without a
// reply. A remote caller whose call gets no reply (the server stopped, or
// threw) receives an error frame for that call. handle_info, handle_continue
// and terminate are as for any gen_server. When the client goes away the
// server stops (reason normal; {shutdown, why} after a protocol error or a
// timeout), so terminate runs.
#pragma once

#include <grove/core/gen_server.hpp>
#include <grove/erps/codec.hpp>
#include <grove/erps/json_codec.hpp>

#include <concepts>
#include <memory>
#include <string>
#include <tuple>

namespace grove::erps {

/// A call's request, from the remote client or a local caller
/// (`co_await ref.call(grove::erps::call(request))`). The reply is a V.
template <class V>
struct basic_call {
  using reply_type = V;
  explicit basic_call(V r) : request(std::move(r)) {}
  V request;
};

/// A cast's value, from the remote client or a local `ref.cast(...)`.
template <class V>
struct basic_cast {
  explicit basic_cast(V r) : request(std::move(r)) {}
  V request;
};

using call = basic_call<json>;
using cast = basic_cast<json>;

namespace detail {
class session_base;
class session_access;
struct pending_session;
} // namespace detail

/// What every erps server has, whatever its values.
class server_base : public gen_server {
public:
  server_base();
  ~server_base() override;

  /// Whether this server serves a client connection.
  bool has_client() const noexcept;
  /// The client's address ("127.0.0.1:51234"); empty without a client.
  std::string peer() const;
  /// TLS: the client certificate's subject ("/CN=grove test client"); empty otherwise.
  std::string peer_subject() const;
  /// TLS: the client certificate's subject alternative names, in the
  /// certificate's order, each with its kind: "DNS:b.tenants.example",
  /// "URI:spiffe://example/tenant/a", "email:ops@example.com",
  /// "IP:10.0.0.7" (other kinds are left out). Empty otherwise. An identity
  /// to map a client to (a tenant, a role) by.
  std::vector<std::string> peer_alt_names() const;
  /// Remote calls not answered yet.
  std::size_t remote_calls_pending() const noexcept;
  /// Reads no more from the client, answers the calls already taken (this
  /// handler's included), sends what is queued, then closes; the server
  /// then stops (reason normal).
  void close_connection(std::string reason);

protected:
  friend class detail::session_access;
  std::unique_ptr<detail::session_base> session_;
};

/// Base of a per-client erps server of V values. Derive from it as from
/// gen_server: handle_call(basic_call<V>, from<V>), handle_cast(basic_cast<V>).
template <class V>
class basic_server : public server_base {
public:
  using value_type = V;

  /// Sends a push frame to this server's client. false when there is no
  /// client (a locally started server) or its connection is closing, or the
  /// client is not reading (its queue passed the daemon's max_queued_bytes:
  /// the connection is closed), or the codec cannot write the value (e.g.
  /// nested deeper than max_depth_limit, or with no form in the link's
  /// codec: logged as push_unwritable).
  bool push(const V& value);
  /// Whether the call behind `f` came from the remote client.
  bool is_remote(const from<V>& f) const noexcept { return session_ && f.caller() == self(); }
};

extern template class basic_server<json>;

/// A server of JSON values.
using server = basic_server<json>;

namespace detail {

/// A daemon's message to its sessions: stop reading, finish the calls in
/// flight, then close.
struct drain {};

/// How a session reaches S's handlers.
struct session_dispatch {
  grove::detail::handler_outcome (*call)(gen_server&, grove::detail::envelope&) = nullptr;
  grove::detail::handler_outcome (*cast)(gen_server&, grove::detail::envelope&) = nullptr;
};

template <class S>
constexpr session_dispatch make_session_dispatch() {
  using V = typename S::value_type;
  session_dispatch d;
  if constexpr (handles_call<S, basic_call<V>>) d.call = &grove::detail::dispatch_call<S, basic_call<V>>;
  if constexpr (handles_cast<S, basic_cast<V>>) d.cast = &grove::detail::dispatch_cast<S, basic_cast<V>>;
  return d;
}

template <class S>
inline constexpr session_dispatch session_dispatch_for = make_session_dispatch<S>();

class session_access {
public:
  /// Whether `m` is for the session layer (a frame, a link event, a
  /// deferred reply, a drain).
  static bool is_session_message(const message& m) noexcept;
  static grove::detail::handler_outcome on_message(server_base& s, message&& m, const session_dispatch& d);
  /// Connects a freshly constructed server of V values to its client
  /// (before init). Defined for json, term and payload.
  template <class V>
  static void attach(server_base& s, const std::shared_ptr<pending_session>& pending, process& self);
};

/// The body of a session process: S constructed from the daemon's
/// arguments, attached to its connection, then run as any gen_server.
template <class S, class... Args>
struct session_body {
  std::shared_ptr<grove::detail::reply_slot<pid>> started;
  std::shared_ptr<pending_session> pending;
  std::tuple<Args...> args;
  std::unique_ptr<S> server;

  grove::detail::body_base::coroutine operator()(process& self) {
    grove::detail::handler_outcome init = action{};
    try {
      server = std::apply([](Args&... a) { return std::make_unique<S>(a...); }, args);
      grove::detail::bind(*server, self);
      session_access::attach<typename S::value_type>(*server, pending, self);
      pending.reset(); // its stream and config are the link's now
      init = grove::detail::run_init(*server);
    } catch (const std::exception& e) {
      return grove::detail::start_failed(self, std::move(started), exit_reason::error(e.what()));
    }
    return grove::detail::server_main_untyped(self, server.get(), grove::detail::hooks_for<S>, std::move(started),
                                              std::move(init), std::nullopt);
  }
};

/// Spawns a session process on `worker`, linked to the caller (the
/// daemon's supervisor), and waits for its init.
awaitable<pid> await_session_start(std::shared_ptr<grove::detail::reply_slot<pid>> started, pid p);
spawn_options session_spawn_options(std::size_t worker);

template <class S, class... Args>
struct session_start {
  std::shared_ptr<pending_session> pending;
  std::size_t worker;
  std::tuple<Args...> args;

  awaitable<pid> operator()(node& n) const {
    auto started = std::make_shared<grove::detail::reply_slot<pid>>();
    pid p = grove::detail::spawn_body(n, session_body<S, Args...>{started, pending, args, nullptr},
                                      session_spawn_options(worker));
    return await_session_start(std::move(started), p);
  }
};

} // namespace detail
} // namespace grove::erps

namespace grove::detail {

/// Plugs erps servers into the gen_server loop: frames from the client and
/// deferred replies are the session's; everything else is the server's.
template <class S>
  requires std::derived_from<S, erps::server_base>
struct server_extension<S> {
  static constexpr bool enabled = true;
  static handler_outcome info(gen_server& base, message&& m) {
    if (erps::detail::session_access::is_session_message(m)) {
      return erps::detail::session_access::on_message(static_cast<erps::server_base&>(base), std::move(m),
                                                      erps::detail::session_dispatch_for<S>);
    }
    return hook_info<S>(base, std::move(m));
  }
  static handler_outcome directive(gen_server&, action&&) {
    return stop(exit_reason::error("an erps server returned a connection directive (connect/backoff/disconnect)"));
  }
};

} // namespace grove::detail
