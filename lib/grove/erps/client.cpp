#include <grove/erps/client.hpp>

#include <grove/erps/payload.hpp>
#include <grove/erps/term.hpp>

#include <grove/erps/detail/link.hpp>
#include <grove/erps/detail/link_messages.hpp>
#include <grove/erps/detail/transport.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <stdexcept>

namespace grove::erps {

namespace {

using tcp = boost::asio::ip::tcp;
constexpr auto use_tuple = boost::asio::as_tuple(boost::asio::use_awaitable);

// Why a connect failed, for the connection's event and the backoff.
struct connect_failure {
  std::string reason;
};

std::string text_of(const message& info) {
  if (auto* s = info.get_if<std::string>()) return *s;
  if (auto* f = info.get_if<connect_failure>()) return f->reason;
  return {};
}

} // namespace

template <class V>
void basic_client_options<V>::validate() const {
  constexpr std::string_view at = "client_options";
  if (host.empty()) detail::bad_option(at, "host", "empty: expected an address or a name, e.g. 127.0.0.1");
  if (port == 0) detail::bad_option(at, "port", "0: expected the daemon's port (1-65535)");
  link.validate(at);
  detail::check_codec_for<V>(link, at);
}

template <class V>
basic_client<V>::basic_client(options_type options) : connection(options.connection), options_(std::move(options)) {
  options_.validate();
  if (options_.link.codec == nullptr) options_.link.codec = &json_codec();
  codec_ = codec_for<V>(*options_.link.codec);
  if (options_.tls) tls_ = detail::tls_context::client(*options_.tls);
}

template <class V>
basic_client<V>::~basic_client() { close_link(); }

namespace {
// Bad options and unreadable TLS files are the caller's error, thrown here
// as std::invalid_argument rather than as a failed start.
template <class V>
void check_before_start(const basic_client_options<V>& options) {
  options.validate();
  if (options.tls) detail::tls_context::client(*options.tls);
}
} // namespace

template <class V>
awaitable<basic_client_ref<V>> basic_client<V>::start(node& n, options_type options) {
  check_before_start(options);
  co_return basic_client_ref<V>(co_await grove::start<basic_client<V>>(n, std::move(options)));
}

template <class V>
awaitable<basic_client_ref<V>> basic_client<V>::start_link(node& n, options_type options) {
  check_before_start(options);
  co_return basic_client_ref<V>(co_await grove::start_link<basic_client<V>>(n, std::move(options)));
}

template <class V>
action basic_client<V>::init() { return grove::connect(); }

template <class V>
awaitable<connect_result> basic_client<V>::connect(message) {
  auto executor = co_await boost::asio::this_coro::executor;
  tcp::resolver resolver(executor);
  // (std::get, not a structured binding of a co_await: clang 14 corrupts
  // the coroutine frame with the latter here.)
  auto resolved = co_await resolver.async_resolve(options_.host, std::to_string(options_.port), use_tuple);
  const boost::system::error_code resolve_error = std::get<0>(resolved);
  const tcp::resolver::results_type endpoints = std::get<1>(resolved);
  if (resolve_error) {
    co_return grove::backoff(); // the event says "connect failed"; the log says why
  }
  tcp::socket socket(executor);
  boost::system::error_code error = boost::asio::error::host_not_found;
  for (const auto& entry : endpoints) {
    boost::system::error_code ignored;
    socket.close(ignored);
    auto connected = co_await socket.async_connect(entry.endpoint(), use_tuple);
    error = std::get<0>(connected);
    if (!error) break;
  }
  const std::string where = options_.host + ":" + std::to_string(options_.port);
  if (error) {
    if (options_.link.log) {
      options_.link.log(log_record{log_level::debug, "connect_failed", where, "cannot connect: " + detail::describe(error)});
    }
    co_return grove::backoff();
  }
  std::unique_ptr<detail::transport> stream;
  if (tls_) {
    const std::string name = options_.tls->server_name.empty() ? options_.host : options_.tls->server_name;
    stream = tls_->wrap(std::move(socket), options_.tls->verify_server ? name : std::string());
    auto handshake = co_await stream->handshake();
    if (handshake) {
      std::string reason = "TLS handshake failed: " + detail::describe(handshake);
      if (auto detail = stream->handshake_detail(); !detail.empty()) reason += " (" + detail + ")";
      if (options_.link.log) options_.link.log(log_record{log_level::warning, "handshake_failed", where, reason});
      co_return grove::backoff();
    }
  } else {
    stream = detail::make_tcp_transport(std::move(socket));
  }
  auto c = std::make_shared<detail::link_config>(detail::make_link_config(options_.link));
  c->handshake_first = false; // done above, inside connect's timeout
  link_ = std::make_shared<detail::link>(std::move(stream), std::move(c), self(), ++links_);
  link_->start();
  send_setup_calls();
  // Casts made while down go next, in the order they were made.
  for (auto& payload : queued_casts_) {
    link_->send(frame_type::cast, [&](std::string& out) { out += payload; });
  }
  queued_casts_.clear();
  queued_cast_bytes_ = 0;
  co_return connect_result{}; // connected
}

template <class V>
void basic_client<V>::send_setup_calls() {
  if (!options_.setup_calls) return;
  for (V& request : options_.setup_calls()) {
    const std::uint64_t id = ++next_id_;
    const V wire_id = codec_->make_id(id);
    try {
      if (!link_->send(frame_type::call, [&](std::string& out) { codec_->write_call(out, wire_id, request); })) return;
    } catch (const codec_error& e) {
      if (options_.on_setup_reply) {
        options_.on_setup_reply(basic_setup_reply<V>{links_, std::move(request), std::nullopt,
                                            std::string("the request could not be written: ") + e.what()});
      }
      continue;
    }
    setup_pending_.emplace(id, std::move(request));
  }
}

template <class V>
bool basic_client<V>::answer_setup(std::uint64_t id, std::optional<V> reply, const std::string& error) {
  auto it = setup_pending_.find(id);
  if (it == setup_pending_.end()) return false;
  basic_setup_reply<V> answer{links_, std::move(it->second), std::move(reply), error};
  setup_pending_.erase(it);
  if (options_.on_setup_reply) options_.on_setup_reply(answer);
  return true;
}

template <class V>
disconnect_result basic_client<V>::disconnect(message info) {
  const std::string why = text_of(info);
  setup_pending_.clear(); // made again on the next link
  close_link();
  fail_pending(connection_errc::disconnected, why);
  return grove::connect(); // at once; if that fails, connect backs off
}

template <class V>
void basic_client<V>::close_link() noexcept {
  if (!link_) return;
  link_->abandon();
  link_.reset();
}

template <class V>
void basic_client<V>::fail_pending(std::error_code code, const std::string& why) {
  for (auto& [id, waiting] : pending_) {
    if (why.empty()) {
      waiting.fail(code);
    } else {
      waiting.fail(code, "the link to the daemon dropped: " + why);
    }
  }
  pending_.clear();
  sweep_at_ = 64;
}

template <class V>
void basic_client<V>::fail_unreadable_reply(std::string_view payload, const std::string& why) {
  std::optional<std::uint64_t> id;
  try {
    if (const std::optional<V> wire_id = codec_->read_reply_id(payload)) id = codec_->id_number(*wire_id);
  } catch (const codec_error&) { // an id with no form in our values
  }
  if (!id) return;
  if (answer_setup(*id, std::nullopt, "the reply could not be read: " + why)) return;
  auto it = pending_.find(*id);
  if (it == pending_.end()) return;
  it->second.fail(erps_errc::bad_payload, "the reply could not be read: " + why);
  pending_.erase(it);
}

template <class V>
void basic_client<V>::forget_abandoned() {
  if (pending_.size() < sweep_at_) return;
  std::erase_if(pending_, [](const auto& entry) { return !entry.second.pending(); });
  sweep_at_ = std::max<std::size_t>(64, pending_.size() * 2);
}

template <class V>
bool basic_client<V>::ready_for_calls() const noexcept {
  return link_ && !link_->closed();
}

template <class V>
call_result<V> basic_client<V>::handle_call(basic_call<V> c, from<V> reply) {
  if (!link_ || link_->closed()) {
    reply.fail(connection_errc::disconnected);
    return call_result<V>(noreply);
  }
  const std::uint64_t id = ++next_id_;
  const V wire_id = codec_->make_id(id);
  bool queued = false;
  try {
    queued = link_->send(frame_type::call, [&](std::string& out) { codec_->write_call(out, wire_id, c.request); });
  } catch (const codec_error& e) {
    reply.fail(erps_errc::bad_payload, std::string("the request could not be written: ") + e.what());
    return call_result<V>(noreply);
  }
  if (!queued) {
    reply.fail(connection_errc::disconnected, "the call could not be queued: the link is closing");
    return call_result<V>(noreply);
  }
  forget_abandoned();
  pending_.emplace(id, std::move(reply));
  return call_result<V>(noreply);
}

template <class V>
action basic_client<V>::handle_cast(basic_cast<V> c) {
  std::string payload;
  try {
    if (link_ && !link_->closed()) {
      link_->send(frame_type::cast, [&](std::string& out) { codec_->write_value(out, c.request); });
      return {};
    }
    codec_->write_value(payload, c.request);
  } catch (const codec_error& e) {
    if (options_.link.log) {
      options_.link.log(log_record{log_level::error, "cast_dropped", {}, std::string("a cast was dropped: ") + e.what()});
    }
    return {};
  }
  if (queued_cast_bytes_ + payload.size() > options_.link.max_queued_bytes) {
    if (options_.link.log) {
      options_.link.log(log_record{log_level::error, "cast_dropped", {},
                              "a cast was dropped: " + std::to_string(queued_cast_bytes_) +
                                  " bytes of casts already wait for the link (max_queued_bytes)"});
    }
    return {};
  }
  queued_cast_bytes_ += payload.size();
  queued_casts_.push_back(std::move(payload));
  return {};
}

template <class V>
action basic_client<V>::handle_info(message m) {
  if (auto* f = m.get_if<detail::link_frame>()) {
    if (!link_ || f->link != link_->id()) return {}; // from an earlier link
    try {
      switch (f->type) {
      case frame_type::reply: {
        decoded_reply<V> r = codec_->take_reply(f->payload, link_->config().limits);
        if (const std::optional<std::uint64_t> id = codec_->id_number(r.id)) {
          if (setup_pending_.contains(*id)) {
            answer_setup(*id, std::move(r.reply), {});
            break;
          }
          auto it = pending_.find(*id);
          if (it != pending_.end()) {
            it->second.reply(std::move(r.reply)); // dropped if the caller gave up
            pending_.erase(it);
          }
        }
        break;
      }
      case frame_type::push: {
        V value = codec_->take_value(f->payload, link_->config().limits);
        if (options_.push_to) grove::send(options_.push_to, basic_push_message<V>{value});
        if (options_.on_push) options_.on_push(value);
        break;
      }
      case frame_type::error: {
        decoded_error<V> e = codec_->read_error(f->payload, link_->config().limits);
        const std::string& text = e.text;
        if (const std::optional<std::uint64_t> id = e.id ? codec_->id_number(*e.id) : std::nullopt) {
          if (answer_setup(*id, std::nullopt, text)) break;
          auto it = pending_.find(*id);
          if (it != pending_.end()) {
            it->second.fail(erps_errc::remote, text);
            pending_.erase(it);
            break;
          }
        }
        link_->log(log_level::warning, "error_from_server", text);
        break;
      }
      default:
        link_->log(log_level::warning, "unexpected_frame",
                   "the server sent a " + std::string(to_string(f->type)) + " frame (expected reply, push or error)");
      }
    } catch (const codec_error& e) {
      link_->log(log_level::warning, "bad_payload", e.what());
      // A reply we cannot read fails its call now rather than at its timeout.
      if (f->type == frame_type::reply) fail_unreadable_reply(f->payload, e.what());
    }
    return {};
  }
  if (auto* down = m.get_if<detail::link_down>()) {
    if (!link_ || down->link != link_->id()) return {}; // (the link logged why it closed)
    return grove::disconnect(std::move(down->reason)); // text: the connection's event carries it
  }
  return {};
}

template <class V>
void basic_client<V>::terminate(const exit_reason&) {
  close_link();
  fail_pending(errc::exited, "the client stopped");
}

template <class V>
awaitable<V> basic_client_ref<V>::call(V request, duration timeout) const {
  call_options options;
  options.timeout = timeout;
  return call(std::move(request), options);
}

template <class V>
awaitable<V> basic_client_ref<V>::call(V request, call_options options) const {
  return ref_.call(basic_call<V>(std::move(request)), options);
}

template <class V>
void basic_client_ref<V>::cast(V value) const { ref_.cast(basic_cast<V>(std::move(value))); }

template struct basic_client_options<json>;
template class basic_client<json>;
template class basic_client_ref<json>;
template struct basic_client_options<term>;
template class basic_client<term>;
template class basic_client_ref<term>;
template struct basic_client_options<payload>;
template class basic_client<payload>;
template class basic_client_ref<payload>;

} // namespace grove::erps
