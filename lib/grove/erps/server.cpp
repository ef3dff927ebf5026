#include <grove/erps/server.hpp>

#include <grove/erps/detail/link.hpp>
#include <grove/erps/detail/link_messages.hpp>
#include <grove/erps/detail/metrics.hpp>
#include <grove/erps/detail/session.hpp>

#include <unordered_map>

namespace grove::erps {

namespace detail {

namespace {

using grove::detail::handler_outcome;
using grove::detail::reply_slot;
using grove::detail::reply_slot_base;

// Wakes the session when a remote call is answered after its handler
// returned (from any thread). Owned by itself: deleted when it fires, and
// every slot it waits on is completed at the latest when the session ends.
class deferred_reply final : public grove::detail::reply_waiter {
public:
  deferred_reply(pid session, std::uint64_t sequence) : session_(session), sequence_(sequence) {}
  void wake(reply_slot_base&) noexcept override {
    try {
      grove::send(session_, remote_reply_ready{sequence_});
    } catch (...) { // a send only fails when memory does; the call then times out on the client
    }
    delete this;
  }

private:
  pid session_;
  std::uint64_t sequence_;
};

} // namespace

session::session(std::shared_ptr<link> l, pid self) : link_(std::move(l)), self_(self) {}

session::~session() {
  // Whatever was never answered: tell the client, and complete the slots
  // so their deferred_reply waiters are freed.
  for (auto& [sequence, pending] : pending_) {
    if (pending.slot->fail(errc::exited)) {
      link_->send_error(&pending.id, "the server stopped before it replied");
    }
  }
  pending_.clear();
  link_->close_after_flush("the server stopped", false);
}

void session::reply(std::uint64_t sequence) {
  auto it = pending_.find(sequence);
  if (it == pending_.end()) return;
  pending_call call = std::move(it->second);
  pending_.erase(it);
  if (!call.slot->error()) {
    json value = call.slot->take();
    try {
      link_->send(frame_type::reply, [&](std::string& out) { link_->config().codec->write_reply(out, call.id, value); });
    } catch (const codec_error& e) {
      // The handler's value, not the client, is at fault: the caller is
      // told, the connection goes on.
      const std::string why = std::string("the reply could not be written: ") + e.what();
      link_->log(log_level::error, "reply_unwritable", why);
      link_->send_error(&call.id, why);
    }
  } else {
    link_->send_error(&call.id, "the call failed: " + std::string(grove::error(call.slot->error()).what()));
    if (const auto& m = link_->config().metrics) m->error("call_failed");
  }
  if (const auto& m = link_->config().metrics) {
    const auto took = std::chrono::steady_clock::now() - call.arrived;
    m->call_seconds.observe(static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(took).count()));
  }
  link_->call_done();
  maybe_finish_drain();
}

void session::settle(std::uint64_t sequence) {
  auto it = pending_.find(sequence);
  if (it == pending_.end()) return;
  if (it->second.slot->completed()) {
    reply(sequence);
  } else {
    it->second.slot->set_waiter(new deferred_reply(self_, sequence));
  }
}

awaitable<action> session::settle_later(session* s, awaitable<action> handler, std::uint64_t sequence) {
  action next = co_await std::move(handler);
  s->settle(sequence);
  co_return next;
}

void session::finish_then_close(std::string reason) {
  if (!draining_) {
    draining_ = true;
    close_reason_ = std::move(reason);
    link_->stop_reading();
  }
  maybe_finish_drain();
}

void session::maybe_finish_drain() {
  if (draining_ && pending_.empty() && link_->calls_in_flight() == 0) {
    link_->close_after_flush(close_reason_, false);
  }
}

handler_outcome session::on_call(server& s, std::string_view payload, const session_dispatch& d) {
  decoded_call c;
  try {
    c = link_->config().codec->read_call(payload, link_->config().limits);
  } catch (const codec_error& e) {
    link_->log(log_level::warning, "bad_payload", e.what());
    // Answer by id when the id can be read, so the caller fails at once.
    const std::optional<json> id = link_->config().codec->read_call_id(payload);
    link_->send_error(id ? &*id : nullptr, e.what());
    link_->call_done();
    return action{};
  }
  if (d.call == nullptr) {
    link_->send_error(&c.id, "this server takes no calls");
    link_->call_done();
    return action{};
  }
  const std::uint64_t sequence = ++sequence_;
  auto slot = std::make_shared<reply_slot<json>>();
  slot->set_caller(self_); // a process never calls itself, so this marks a remote call
  std::chrono::steady_clock::time_point arrived{};
  if (const auto& m = link_->config().metrics) {
    m->calls.inc();
    arrived = std::chrono::steady_clock::now();
  }
  pending_.emplace(sequence, pending_call{std::move(c.id), slot, arrived});
  grove::detail::envelope env{.body = erps::call(std::move(c.request)),
                              .reply = slot,
                              .dispatch = d.call,
                              .kind = grove::detail::envelope_kind::call};
  handler_outcome outcome = d.call(s, env);
  if (outcome.ready()) {
    action next = outcome.take_ready();
    settle(sequence);
    return next;
  }
  return settle_later(this, outcome.take_pending(), sequence);
}

handler_outcome session::on_cast(server& s, std::string_view payload, const session_dispatch& d) {
  json value;
  try {
    value = link_->config().codec->read_value(payload, link_->config().limits);
  } catch (const codec_error& e) {
    link_->log(log_level::warning, "bad_payload", e.what());
    link_->send_error(nullptr, e.what());
    return action{};
  }
  if (d.cast == nullptr) {
    link_->send_error(nullptr, "this server takes no casts");
    return action{};
  }
  if (const auto& m = link_->config().metrics) m->casts.inc();
  grove::detail::envelope env{
      .body = erps::cast(std::move(value)), .dispatch = d.cast, .kind = grove::detail::envelope_kind::cast};
  return d.cast(s, env);
}

handler_outcome session::on_message(server& s, message&& m, const session_dispatch& d) {
  if (auto* f = m.get_if<link_frame>()) {
    if (f->link != link_->id()) return action{};
    switch (f->type) {
    case frame_type::call: return on_call(s, f->payload, d);
    case frame_type::cast: return on_cast(s, f->payload, d);
    case frame_type::error: {
      std::string text(f->payload.substr(0, 200));
      link_->log(log_level::info, "error_from_client", "the client sent an error frame: " + text);
      return action{};
    }
    default:
      link_->log(log_level::warning, "unexpected_frame",
                 "a client sent a " + std::string(to_string(f->type)) + " frame (only call, cast and keepalive are expected)");
      link_->send_error(nullptr, "unexpected " + std::string(to_string(f->type)) + " frame from a client");
      return action{};
    }
  }
  if (auto* r = m.get_if<remote_reply_ready>()) {
    reply(r->sequence);
    return action{};
  }
  if (m.is<drain>()) {
    link_->send_error(nullptr, "the server is shutting down: calls in flight are finished, no new ones are read");
    finish_then_close("the daemon is shutting down");
    return action{};
  }
  if (auto* down = m.get_if<link_down>()) {
    if (down->link != link_->id()) return action{}; // (the link logged why it closed)
    return stop(down->error ? exit_reason::shutdown(down->reason) : exit_reason::normal());
  }
  return action{};
}

bool session_access::is_session_message(const message& m) noexcept {
  return m.is<link_frame>() || m.is<remote_reply_ready>() || m.is<link_down>() || m.is<drain>();
}

handler_outcome session_access::on_message(server& s, message&& m, const session_dispatch& d) {
  if (!s.session_) return action{}; // a locally started server has no client
  return s.session_->on_message(s, std::move(m), d);
}

void session_access::attach(server& s, const std::shared_ptr<pending_session>& pending, process& self) {
  auto l = std::make_shared<link>(std::move(pending->stream), std::move(pending->config), self.self(), pending->link_id);
  s.session_ = std::make_unique<session>(l, self.self());
  self.set_label("erps session " + l->peer());
  l->start();
}

spawn_options session_spawn_options(std::size_t worker) {
  spawn_options options;
  options.worker = worker;
  options.link = true; // to the daemon's supervisor
  return options;
}

awaitable<pid> await_session_start(std::shared_ptr<grove::detail::reply_slot<pid>> started, pid p) {
  return grove::detail::await_start(std::move(started), p, std::chrono::seconds(5));
}

} // namespace detail

server::server() = default;
server::~server() = default;

bool server::push(const json& value) {
  if (!session_) return false;
  auto& l = *session_->channel();
  try {
    const bool sent = l.send(frame_type::push, [&](std::string& out) { l.config().codec->write_value(out, value); });
    if (sent && l.config().metrics) l.config().metrics->pushes.inc();
    return sent;
  } catch (const codec_error& e) {
    l.log(log_level::error, "push_unwritable", std::string("a push could not be written: ") + e.what());
    return false;
  }
}

bool server::is_remote(const from<json>& f) const noexcept { return session_ && f.caller() == self(); }

bool server::has_client() const noexcept { return session_ != nullptr; }

std::string server::peer() const { return session_ ? session_->channel()->peer() : std::string(); }

std::string server::peer_subject() const { return session_ ? session_->channel()->stream().peer_subject() : std::string(); }

std::size_t server::remote_calls_pending() const noexcept { return session_ ? session_->pending() : 0; }

void server::close_connection(std::string reason) {
  if (session_) session_->finish_then_close(std::move(reason));
}

} // namespace grove::erps
