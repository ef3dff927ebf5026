// Internal: how a connection plugs into the gen_server loop — its backoff
// timer's messages, its directives, its call gate, and the user's connect
// and disconnect, typed per server. Users read connection.hpp; this is
// included at its end.
#pragma once

#include <grove/connection/connection.hpp>

#include <concepts>
#include <type_traits>
#include <utility>
#include <variant>

namespace grove {

namespace detail {

/// The backoff timer's message to its connection.
struct backoff_timer {
  std::uint64_t generation;
};

class connection_access {
public:
  static handler_outcome run(connection& c, action a, const connection_callbacks& cb) {
    return c.run(std::move(a), cb);
  }
  static handler_outcome on_timer(connection& c, std::uint64_t generation, const connection_callbacks& cb) {
    return c.on_timer(generation, cb);
  }
  template <class S>
  static bool admit(gen_server& c, envelope& call) {
    return static_cast<connection&>(c).admit(call, ready_for_calls<S>(c));
  }
  template <class S>
  static bool release(gen_server& c, envelope& out) {
    return static_cast<connection&>(c).release(out, ready_for_calls<S>(c));
  }

private:
  template <class S>
  static bool ready_for_calls(gen_server& c) {
    if constexpr (requires(const S& s) { { s.ready_for_calls() } -> std::convertible_to<bool>; }) {
      return static_cast<const S&>(c).ready_for_calls();
    } else {
      return true;
    }
  }
};

template <class S>
inline constexpr call_gate connection_gate{&connection_access::admit<S>, &connection_access::release<S>};

template <class T, class F>
callback_outcome<T> run_callback(F&& f) {
  using result = std::invoke_result_t<F&&>;
  if constexpr (std::is_same_v<result, T>) {
    return callback_outcome<T>(std::in_place_index<0>, std::forward<F>(f)());
  } else {
    static_assert(std::is_same_v<result, awaitable<T>>,
                  "a grove::connection's connect() returns grove::connect_result and its disconnect() "
                  "grove::disconnect_result (or awaitable of it)");
    return callback_outcome<T>(std::in_place_index<1>, std::forward<F>(f)());
  }
}

template <class S>
callback_outcome<connect_result> call_connect(connection& base, message&& info) {
  S& server = static_cast<S&>(base);
  if constexpr (requires(S& s, message m) { s.connect(std::move(m)); }) {
    return run_callback<connect_result>([&]() -> decltype(auto) { return server.connect(std::move(info)); });
  } else {
    static_assert(requires(S& s) { s.connect(); }, "a grove::connection needs connect(grove::message) or connect()");
    return run_callback<connect_result>([&]() -> decltype(auto) { return server.connect(); });
  }
}

template <class S>
callback_outcome<disconnect_result> call_disconnect(connection& base, message&& info) {
  S& server = static_cast<S&>(base);
  if constexpr (requires(S& s, message m) { s.disconnect(std::move(m)); }) {
    return run_callback<disconnect_result>([&]() -> decltype(auto) { return server.disconnect(std::move(info)); });
  } else {
    return run_callback<disconnect_result>([&]() -> decltype(auto) { return server.disconnect(); });
  }
}

template <class S>
constexpr connection_callbacks make_connection_callbacks() {
  if constexpr (requires(S& s, message m) { s.disconnect(std::move(m)); } || requires(S& s) { s.disconnect(); }) {
    return {&call_connect<S>, &call_disconnect<S>};
  } else {
    return {&call_connect<S>, nullptr};
  }
}

template <class S>
inline constexpr connection_callbacks connection_callbacks_for = make_connection_callbacks<S>();

/// Plugs connections into the gen_server loop: the backoff timer's
/// messages are theirs, and connect / backoff / disconnect run here.
template <class S>
  requires std::derived_from<S, connection>
struct server_extension<S> {
  static constexpr bool enabled = true;

  static handler_outcome info(gen_server& base, message&& m) {
    if (auto* t = m.get_if<backoff_timer>()) {
      return connection_access::on_timer(static_cast<S&>(base), t->generation, connection_callbacks_for<S>);
    }
    return hook_info<S>(base, std::move(m));
  }

  static handler_outcome directive(gen_server& base, action&& a) {
    return connection_access::run(static_cast<S&>(base), std::move(a), connection_callbacks_for<S>);
  }

  static constexpr const call_gate* gate = &connection_gate<S>;
};

} // namespace detail

} // namespace grove
