#include <grove/erps/server.hpp>

#include <grove/core/detail/reply_notice.hpp>

#include <grove/erps/payload.hpp>
#include <grove/erps/term.hpp>

#include <grove/erps/detail/link.hpp>
#include <grove/erps/detail/link_messages.hpp>
#include <grove/erps/detail/metrics.hpp>
#include <grove/erps/detail/session.hpp>

#include <atomic>
#include <unordered_map>

namespace grove::erps {

namespace detail {

namespace {

using grove::detail::handler_outcome;
using grove::detail::reply_slot;
using grove::detail::reply_slot_base;

} // namespace

template <class V>
session<V>::session(std::shared_ptr<link> l, pid self, const basic_codec<V>& codec)
    : link_(std::move(l)), self_(self), codec_(&codec) {}

template <class V>
session<V>::~session() {
  // Calls of a batch not handled when the server went: the client hears
  // of each (by id where it can be read).
  if (held_) {
    for (std::size_t i = held_->next; i < held_->frames.size(); ++i) {
      link_frame& f = held_->frames[i];
      if (f.type != frame_type::call) continue;
      std::optional<V> id;
      try {
        id = codec_->read_call_id(f.payload);
      } catch (const codec_error&) {
      }
      send_error(id ? &*id : nullptr, "the server stopped before it took this call");
    }
    held_.reset();
  }
  // Whatever was never answered: tell the client, and complete the slots
  // so their reply notices are freed. A reply that was given but
  // not sent yet (its wake-up came too late) still goes out; a call that
  // failed as the server went (its from dropped with it) says so.
  for (auto& entry : pending_) {
    pending_call& pending = entry.second; // (not a structured binding: clang 14 cannot capture one)
    const bool unanswered = pending.slot->fail(errc::exited);
    // (An answer still being written on another thread is not read.)
    if (!unanswered && pending.slot->published() && !pending.slot->error()) {
      V value = pending.slot->take();
      try {
        link_->send(frame_type::reply, [&](std::string& out) { codec_->write_reply(out, pending.id, value); });
        continue;
      } catch (const codec_error&) {
      }
    }
    send_error(&pending.id, "the server stopped before it replied");
  }
  pending_.clear();
  link_->close_after_flush("the server stopped", false);
}

template <class V>
void session<V>::send_error(const V* id, std::string_view text) {
  try {
    link_->send(frame_type::error, [&](std::string& out) { codec_->write_error(out, id, text); });
  } catch (const codec_error&) { // the id has no form in the wire's codec: the error names no call
    link_->send_error(text);
  }
}

template <class V>
void session<V>::reply(std::uint64_t sequence) {
  auto it = pending_.find(sequence);
  if (it == pending_.end()) return;
  pending_call call = std::move(it->second);
  pending_.erase(it);
  send_reply(call);
}

template <class V>
void session<V>::send_reply(pending_call& call) {
  if (!call.slot->error()) {
    V value = call.slot->take();
    try {
      link_->send(frame_type::reply, [&](std::string& out) { codec_->write_reply(out, call.id, value); });
    } catch (const codec_error& e) {
      // The handler's value, not the client, is at fault: the caller is
      // told, the connection goes on.
      const std::string why = std::string("the reply could not be written: ") + e.what();
      link_->log(log_level::error, "reply_unwritable", why);
      send_error(&call.id, why);
    }
  } else {
    send_error(&call.id, "the call failed: " + std::string(grove::error(call.slot->error()).what()));
    if (const auto& m = link_->config().metrics) m->error("call_failed");
  }
  if (const auto& m = link_->config().metrics) {
    const auto took = std::chrono::steady_clock::now() - call.arrived;
    m->call_seconds.observe(static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(took).count()));
  }
  link_->call_done();
  maybe_finish_drain();
}

template <class V>
void session<V>::settle(std::uint64_t sequence) {
  auto it = pending_.find(sequence);
  if (it == pending_.end()) return;
  if (it->second.slot->published()) { // (claimed but not yet published: the waiter is woken by the publish)
    reply(sequence);
  } else {
    // Wakes the session when the call is answered after its handler returned.
    grove::detail::notify_when_answered(*it->second.slot, self_, remote_reply_ready{sequence});
  }
}

template <class V>
std::shared_ptr<reply_slot<V>> session<V>::take_slot() {
  return grove::detail::take_reply_slot<V>();
}

template <class V>
void session<V>::recycle(std::shared_ptr<reply_slot<V>> slot) noexcept {
  // The sessions of a worker run one at a time, and a call answered from
  // handle_call gives its slot back before the next call is read: one
  // spare per thread serves them all. Kept only when ours is the last
  // reference (its handler kept no from<V>); see give_back_reply_slot.
  grove::detail::give_back_reply_slot(std::move(slot));
}

template <class V>
awaitable<action> session<V>::settle_later(session* s, awaitable<action> handler, std::uint64_t sequence) {
  action next = co_await std::move(handler);
  s->settle(sequence);
  co_return next;
}

template <class V>
void session<V>::finish_then_close(std::string reason) {
  if (!draining_) {
    draining_ = true;
    close_reason_ = std::move(reason);
    link_->stop_reading();
  }
  maybe_finish_drain();
}

template <class V>
void session<V>::maybe_finish_drain() {
  if (draining_ && pending_.empty() && link_->calls_in_flight() == 0) {
    link_->close_after_flush(close_reason_, false);
  }
}

template <class V>
handler_outcome session<V>::on_call(server_base& s, std::string& payload, const session_dispatch& d) {
  decoded_call<V> c;
  try {
    c = codec_->take_call(payload, link_->config().limits);
  } catch (const codec_error& e) {
    link_->log(log_level::warning, "bad_payload", e.what());
    // Answer by id when the id can be read, so the caller fails at once.
    std::optional<V> id;
    try {
      id = codec_->read_call_id(payload);
    } catch (const codec_error&) { // an id with no form in the server's values
    }
    send_error(id ? &*id : nullptr, e.what());
    link_->call_done();
    return action{};
  }
  if (d.call == nullptr) {
    send_error(&c.id, "this server takes no calls");
    link_->call_done();
    return action{};
  }
  const std::uint64_t sequence = ++sequence_;
  std::shared_ptr<reply_slot<V>> slot = take_slot();
  slot->set_caller(self_); // a process never calls itself, so this marks a remote call
  std::chrono::steady_clock::time_point arrived{};
  if (const auto& m = link_->config().metrics) {
    m->calls.inc();
    arrived = link_->received_at(); // its bytes came in then: the time it queued counts
  }
  // The call is pending_ only if its handler does not answer it at once:
  // the common case touches no map. While the handler runs, it is
  // current_ (counted by pending(), and failed by ~session if the handler
  // throws and the server goes).
  reply_slot<V>& answer = *slot;
  current_.emplace(pending_call{std::move(c.id), slot, arrived});
  grove::detail::envelope env{.body = basic_call<V>(std::move(c.request)),
                              .reply = std::move(slot),
                              .dispatch = d.call,
                              .kind = grove::detail::envelope_kind::call};
  struct unwind_guard { // a throwing handler leaves its call to ~session
    session& s;
    std::uint64_t sequence;
    ~unwind_guard() {
      if (s.current_) {
        s.pending_.emplace(sequence, std::move(*s.current_));
        s.current_.reset();
      }
    }
  } guard{*this, sequence};
  handler_outcome outcome = d.call(s, env);
  env.reply.reset();
  if (outcome.ready()) {
    action next = outcome.take_ready();
    if (answer.published()) {
      pending_call call = std::move(*current_);
      current_.reset();
      send_reply(call);
      recycle(std::move(call.slot));
    } else {
      pending_.emplace(sequence, std::move(*current_));
      current_.reset();
      settle(sequence);
    }
    return next;
  }
  pending_.emplace(sequence, std::move(*current_));
  current_.reset();
  return settle_later(this, outcome.take_pending(), sequence);
}

template <class V>
handler_outcome session<V>::on_cast(server_base& s, std::string& payload, const session_dispatch& d) {
  V value;
  try {
    value = codec_->take_value(payload, link_->config().limits);
  } catch (const codec_error& e) {
    link_->log(log_level::warning, "bad_payload", e.what());
    link_->send_error(e.what());
    return action{};
  }
  if (d.cast == nullptr) {
    link_->send_error("this server takes no casts");
    return action{};
  }
  if (const auto& m = link_->config().metrics) m->casts.inc();
  grove::detail::envelope env{
      .body = basic_cast<V>(std::move(value)), .dispatch = d.cast, .kind = grove::detail::envelope_kind::cast};
  return d.cast(s, env);
}

template <class V>
handler_outcome session<V>::on_frame(server_base& s, link_frame& f, const session_dispatch& d) {
  switch (f.type) {
  case frame_type::call: return on_call(s, f.payload, d);
  case frame_type::cast: return on_cast(s, f.payload, d);
  case frame_type::error: {
    std::string text(f.payload.substr(0, 200));
    link_->log(log_level::info, "error_from_client", "the client sent an error frame: " + text);
    return action{};
  }
  default:
    link_->log(log_level::warning, "unexpected_frame",
               "a client sent a " + std::string(to_string(f.type)) + " frame (only call, cast and keepalive are expected)");
    link_->send_error("unexpected " + std::string(to_string(f.type)) + " frame from a client");
    return action{};
  }
}

namespace {
// Whether the next frame of a batch may be handled straight after this
// outcome, as the gen_server loop would handle the next message: the
// handler said "go on" and nothing more.
bool goes_on(const action& a) noexcept { return !a.stops() && !a.has_step() && !a.idle_timeout(); }
} // namespace

template <class V>
handler_outcome session<V>::run_held(server_base& s, const session_dispatch& d) {
  while (held_) {
    link_frame& f = held_->frames[held_->next++];
    handler_outcome outcome = on_frame(s, f, d);
    if (held_->next == held_->frames.size()) { // the last one held
      std::optional<link_down> down = std::move(held_->down);
      give_back_frame_vector(std::move(held_->frames));
      held_.reset();
      if (down) grove::send(self_, std::move(*down)); // after the frames before it, as the link sent it
      return outcome;
    }
    if (!outcome.ready()) {
      notice_held();
      return outcome;
    }
    action next = outcome.take_ready();
    if (!goes_on(next)) {
      notice_held();
      return next;
    }
  }
  return action{};
}

template <class V>
void session<V>::notice_held() {
  if (held_notice_sent_) return;
  held_notice_sent_ = true;
  grove::send(self_, frames_held{});
}

template <class V>
handler_outcome session<V>::take_frames(server_base& s, std::vector<link_frame>&& frames, const session_dispatch& d) {
  if (held_) { // after the ones held
    held_->frames.insert(held_->frames.end(), std::make_move_iterator(frames.begin()), std::make_move_iterator(frames.end()));
    give_back_frame_vector(std::move(frames));
    return run_held(s, d);
  }
  for (std::size_t i = 0; i < frames.size(); ++i) {
    std::optional<handler_outcome> handled;
    try {
      handled.emplace(on_frame(s, frames[i], d));
    } catch (...) { // the server goes: ~session answers the calls behind this one
      if (i + 1 < frames.size()) held_ = std::make_unique<held_frames>(held_frames{std::move(frames), i + 1, std::nullopt});
      throw;
    }
    handler_outcome outcome = std::move(*handled);
    if (i + 1 == frames.size()) {
      give_back_frame_vector(std::move(frames));
      return outcome;
    }
    if (!outcome.ready()) {
      held_ = std::make_unique<held_frames>(held_frames{std::move(frames), i + 1, std::nullopt});
      notice_held();
      return outcome;
    }
    action next = outcome.take_ready();
    if (!goes_on(next)) {
      held_ = std::make_unique<held_frames>(held_frames{std::move(frames), i + 1, std::nullopt});
      notice_held();
      return next;
    }
  }
  give_back_frame_vector(std::move(frames)); // (an empty batch: not sent)
  return action{};
}

template <class V>
handler_outcome session<V>::on_message(server_base& s, message&& m, const session_dispatch& d) {
  if (auto* f = m.get_if<link_frame>()) {
    if (f->link != link_->id()) return action{};
    if (held_) {
      held_->frames.push_back(std::move(*f));
      return run_held(s, d);
    }
    return on_frame(s, *f, d);
  }
  if (auto* batch = m.get_if<link_frames>()) {
    if (batch->link != link_->id()) return action{};
    return take_frames(s, std::move(batch->frames), d);
  }
  if (m.is<frames_held>()) {
    held_notice_sent_ = false;
    return run_held(s, d);
  }
  if (auto* r = m.get_if<remote_reply_ready>()) {
    reply(r->sequence);
    return action{};
  }
  if (m.is<drain>()) {
    link_->send_error("the server is shutting down: calls in flight are finished, no new ones are read");
    finish_then_close("the daemon is shutting down");
    return action{};
  }
  if (auto* down = m.get_if<link_down>()) {
    if (down->link != link_->id()) return action{}; // (the link logged why it closed)
    if (held_) { // the frames that came before it first
      held_->down = std::move(*down);
      return run_held(s, d);
    }
    return stop(down->error ? exit_reason::shutdown(down->reason) : exit_reason::normal());
  }
  return action{};
}

bool session_access::is_session_message(const message& m) noexcept {
  return m.is<link_frame>() || m.is<link_frames>() || m.is<frames_held>() || m.is<remote_reply_ready>() ||
         m.is<link_down>() || m.is<drain>();
}

template <class V>
bool session<V>::push(const V& value) {
  auto& l = *link_;
  try {
    const bool sent = l.send(frame_type::push, [&](std::string& out) { codec_->write_value(out, value); });
    if (sent && l.config().metrics) l.config().metrics->pushes.inc();
    return sent;
  } catch (const codec_error& e) {
    l.log(log_level::error, "push_unwritable", std::string("a push could not be written: ") + e.what());
    return false;
  }
}

template class session<json>;
template class session<term>;
template class session<payload>;

handler_outcome session_access::on_message(server_base& s, message&& m, const session_dispatch& d) {
  if (!s.session_) return action{}; // a locally started server has no client
  return s.session_->on_message(s, std::move(m), d);
}

template <class V>
void session_access::attach(server_base& s, const std::shared_ptr<pending_session>& pending, process& self) {
  const basic_codec<V>* codec = codec_for<V>(*pending->config->codec);
  if (codec == nullptr) { // the daemon checked this when it started
    throw std::invalid_argument("the " + std::string(pending->config->codec->name()) + " codec has no view of this server's values");
  }
  auto l = std::make_shared<link>(std::move(pending->stream), std::move(pending->config), self.self(), pending->link_id);
  s.session_ = std::make_unique<session<V>>(l, self.self(), *codec);
  self.set_label("erps session " + l->peer());
  l->start();
}

template void session_access::attach<json>(server_base&, const std::shared_ptr<pending_session>&, process&);
template void session_access::attach<term>(server_base&, const std::shared_ptr<pending_session>&, process&);
template void session_access::attach<payload>(server_base&, const std::shared_ptr<pending_session>&, process&);

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

server_base::server_base() = default;
server_base::~server_base() = default;

template <class V>
bool basic_server<V>::push(const V& value) {
  if (!session_) return false;
  return static_cast<detail::session<V>&>(*session_).push(value);
}

template class basic_server<json>;
template class basic_server<term>;
template class basic_server<payload>;

bool server_base::has_client() const noexcept { return session_ != nullptr; }

std::string server_base::peer() const { return session_ ? session_->channel()->peer() : std::string(); }

std::string server_base::peer_subject() const { return session_ ? session_->channel()->stream().peer_subject() : std::string(); }

std::vector<std::string> server_base::peer_alt_names() const {
  return session_ ? session_->channel()->stream().peer_alt_names() : std::vector<std::string>();
}

std::size_t server_base::remote_calls_pending() const noexcept { return session_ ? session_->pending() : 0; }

void server_base::close_connection(std::string reason) {
  if (session_) session_->finish_then_close(std::move(reason));
}

} // namespace grove::erps
