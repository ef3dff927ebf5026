// grove/erps/server.hpp — the server behind one erps client: a gen_server
// whose calls and casts are JSON values. The daemon starts one per accepted
// connection; it is also an ordinary gen_server that local processes call.
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

#include <concepts>
#include <memory>
#include <string>
#include <tuple>

namespace grove::erps {

/// A call's request, from the remote client or a local caller
/// (`co_await ref.call(grove::erps::call(request))`). The reply is a json.
struct call {
  using reply_type = json;
  explicit call(json r) : request(std::move(r)) {}
  json request;
};

/// A cast's value, from the remote client or a local `ref.cast(...)`.
struct cast {
  explicit cast(json r) : request(std::move(r)) {}
  json request;
};

namespace detail {
class session;
class session_access;
struct pending_session;
} // namespace detail

/// Base of a per-client erps server. Derive from it as from gen_server.
class server : public gen_server {
public:
  server();
  ~server() override;

  /// Sends a push frame to this server's client. false when there is no
  /// client (a locally started server) or its connection is closing, or the
  /// client is not reading (its queue passed the daemon's max_queued_bytes:
  /// the connection is closed), or the codec cannot write the value (e.g.
  /// nested deeper than max_depth_limit: logged as push_unwritable).
  bool push(const json& value);
  /// Whether the call behind `f` came from the remote client.
  bool is_remote(const from<json>& f) const noexcept;
  /// Whether this server serves a client connection.
  bool has_client() const noexcept;
  /// The client's address ("127.0.0.1:51234"); empty without a client.
  std::string peer() const;
  /// TLS: the client certificate's subject ("/CN=grove test client"); empty otherwise.
  std::string peer_subject() const;
  /// Remote calls not answered yet.
  std::size_t remote_calls_pending() const noexcept;
  /// Reads no more from the client, answers the calls already taken (this
  /// handler's included), sends what is queued, then closes; the server
  /// then stops (reason normal).
  void close_connection(std::string reason);

private:
  friend class detail::session_access;
  std::unique_ptr<detail::session> session_;
};

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
  session_dispatch d;
  if constexpr (handles_call<S, erps::call>) d.call = &grove::detail::dispatch_call<S, erps::call>;
  if constexpr (handles_cast<S, erps::cast>) d.cast = &grove::detail::dispatch_cast<S, erps::cast>;
  return d;
}

template <class S>
inline constexpr session_dispatch session_dispatch_for = make_session_dispatch<S>();

class session_access {
public:
  /// Whether `m` is for the session layer (a frame, a link event, a
  /// deferred reply, a drain).
  static bool is_session_message(const message& m) noexcept;
  static grove::detail::handler_outcome on_message(server& s, message&& m, const session_dispatch& d);
  /// Connects a freshly constructed server to its client (before init).
  static void attach(server& s, const std::shared_ptr<pending_session>& pending, process& self);
};

/// The body of a session process: S constructed from the daemon's
/// arguments, attached to its connection, then run as any gen_server.
template <class S, class... Args>
struct session_body {
  std::shared_ptr<grove::detail::reply_slot<pid>> started;
  std::shared_ptr<pending_session> pending;
  std::tuple<Args...> args;
  std::unique_ptr<S> server;

  awaitable<exit_reason> operator()(process& self) {
    grove::detail::handler_outcome init = action{};
    try {
      server = std::apply([](Args&... a) { return std::make_unique<S>(a...); }, args);
      grove::detail::bind(*server, self);
      session_access::attach(*server, pending, self);
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
    pid p = spawn(n, session_body<S, Args...>{started, pending, args, nullptr}, session_spawn_options(worker));
    return await_session_start(std::move(started), p);
  }
};

} // namespace detail
} // namespace grove::erps

namespace grove::detail {

/// Plugs erps servers into the gen_server loop: frames from the client and
/// deferred replies are the session's; everything else is the server's.
template <class S>
  requires std::derived_from<S, erps::server>
struct server_extension<S> {
  static constexpr bool enabled = true;
  static handler_outcome info(gen_server& base, message&& m) {
    if (erps::detail::session_access::is_session_message(m)) {
      return erps::detail::session_access::on_message(static_cast<erps::server&>(base), std::move(m),
                                                      erps::detail::session_dispatch_for<S>);
    }
    return hook_info<S>(base, std::move(m));
  }
  static handler_outcome directive(gen_server&, action&&) {
    return stop(exit_reason::error("an erps server returned a connection directive (connect/backoff/disconnect)"));
  }
};

} // namespace grove::detail
