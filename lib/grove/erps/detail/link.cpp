#include <grove/erps/detail/link.hpp>
#include <grove/erps/detail/metrics.hpp>

#include <grove/core/event.hpp>
#include <grove/core/detail/runtime.hpp>

#include <grove/erps/detail/link_messages.hpp>
#include <grove/erps/detail/transport.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <algorithm>

namespace grove::erps {

std::string_view to_string(log_level l) noexcept {
  switch (l) {
  case log_level::debug: return "debug";
  case log_level::info: return "info";
  case log_level::warning: return "warning";
  case log_level::error: return "error";
  }
  return "unknown";
}

void log_to_events(const log_record& r) {
  static constexpr event_level levels[] = {event_level::debug, event_level::info, event_level::warning,
                                           event_level::error};
  std::vector<event_field> fields;
  if (!r.peer.empty()) fields.push_back({"peer", std::string(r.peer)});
  fields.push_back({"msg", std::string(r.text)});
  grove::emit(event{.level = levels[static_cast<std::size_t>(r.level)], .layer = "erps", .name = std::string(r.event), .fields = std::move(fields)});
}

} // namespace grove::erps

namespace grove::erps::detail {

namespace {

using clock = std::chrono::steady_clock;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

std::string seconds_text(duration d) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + " s";
  return std::to_string(ms) + " ms";
}

// A link is busy once this many reads in a row found bytes within
// busy_wait of asking: it then keeps its read buffer while it waits.
constexpr std::uint8_t busy_after_short_waits = 2;
constexpr auto busy_wait = std::chrono::milliseconds(1);

// The io_context under an executor: a node's worker is an io_context, and
// every executor grove hands out (a worker's, a process's over it) runs on
// one.
asio::io_context::executor_type context_executor(const asio::any_io_executor& ex) {
  return static_cast<asio::io_context&>(asio::query(ex, asio::execution::context)).get_executor();
}

// A TCP socket typed on its worker's io_context: 40 bytes where one with
// an any_io_executor takes 88, for every connection.
using worker_socket = asio::basic_stream_socket<asio::ip::tcp, asio::io_context::executor_type>;

worker_socket on_its_worker(asio::ip::tcp::socket socket) {
  const auto executor = context_executor(socket.get_executor());
  if (!socket.is_open()) return worker_socket(executor);
  boost::system::error_code error;
  const auto local = socket.local_endpoint(error);
  const asio::ip::tcp protocol = error ? asio::ip::tcp::v4() : local.protocol();
  const auto native = socket.release(error);
  if (error) throw boost::system::system_error(error, "adopting a TCP socket onto its worker");
  return worker_socket(executor, protocol, native);
}

// Plain TCP. A read that did not fill its buffer most likely drained the
// kernel's. A link that is not busy then waits for readability
// (wait_readable, holding no read buffer meanwhile) and the read after it
// is made at once, without blocking (the socket is in non-blocking mode).
// A busy link reads with async_read_some straight away: the wait would
// cost an epoll_ctl per read (Asio re-arms the descriptor for every
// async_wait), and the buffer it saves is soon needed again.
class tcp_transport final : public stream_transport<worker_socket> {
public:
  explicit tcp_transport(asio::ip::tcp::socket socket) : stream_transport(on_its_worker(std::move(socket))) {
    boost::system::error_code ignored;
    stream_.non_blocking(true, ignored);
  }

  bool read_would_wait() const noexcept override { return drained_ && !readable_; }
  bool reader_waiting() const noexcept override { return waiting_; }

  asio::awaitable<void> wait_readable() override {
    waiting_ = true;
    auto [error] = co_await stream_.async_wait(asio::socket_base::wait_read, use_tuple);
    waiting_ = false;
    readable_ = !error;
  }

  void cancel_wait() noexcept override {
    boost::system::error_code ignored;
    stream_.cancel(ignored);
  }

  void wait_readable(std::function<void()> then) override {
    waiting_ = true;
    stream_.async_wait(asio::socket_base::wait_read, [this, then = std::move(then)](boost::system::error_code error) {
      waiting_ = false;
      readable_ = !error;
      then();
    });
  }

  bool writes_at_once() const noexcept override { return true; }

  std::optional<std::pair<boost::system::error_code, std::size_t>> try_write(asio::const_buffer bytes) override {
    boost::system::error_code error;
    const std::size_t n = stream_.write_some(bytes, error); // non-blocking: what the socket takes
    if (error == asio::error::would_block || error == asio::error::try_again) error.clear();
    return std::pair{error, n};
  }

  asio::awaitable<std::pair<boost::system::error_code, std::size_t>> read_some(asio::mutable_buffer into) override {
    if (readable_) {
      readable_ = false;
      boost::system::error_code error;
      const std::size_t n = stream_.read_some(into, error);
      if (error != asio::error::would_block && error != asio::error::try_again) {
        drained_ = !error && n < into.size();
        co_return std::pair{error, n};
      }
      // Woken for nothing: wait as usual.
    }
    waiting_ = true;
    auto [error, n] = co_await stream_.async_read_some(into, use_tuple);
    waiting_ = false;
    // Cancelled (the link parked): it read nothing, and the next wait is
    // for new bytes again.
    drained_ = error == asio::error::operation_aborted || (!error && n < into.size());
    co_return std::pair{error, n};
  }

private:
  bool drained_ = true;   // the last read did not fill its buffer (a new connection waits first)
  bool readable_ = false; // wait_readable() just said bytes are there
  bool waiting_ = false;  // a wait or read is pending and has found nothing yet
};

} // namespace

asio::awaitable<boost::system::error_code> transport::handshake() { co_return boost::system::error_code{}; }

asio::awaitable<void> transport::wait_readable() { co_return; }

void transport::wait_readable(std::function<void()> then) { asio::post(executor(), std::move(then)); }

std::string describe(const boost::system::error_code& error) {
  std::string text = error.message();
  // OpenSSL's codes say where they come from; the reason is what matters.
  constexpr std::string_view origin = " (SSL routines)";
  if (text.size() > origin.size() && text.compare(text.size() - origin.size(), origin.size(), origin) == 0) {
    text.resize(text.size() - origin.size());
  }
  return text;
}

std::unique_ptr<transport> make_tcp_transport(asio::ip::tcp::socket socket) {
  return std::make_unique<tcp_transport>(std::move(socket));
}

std::string endpoint_text(const asio::ip::tcp::endpoint& e) {
  if (e.address().is_v6()) return "[" + e.address().to_string() + "]:" + std::to_string(e.port());
  return e.address().to_string() + ":" + std::to_string(e.port());
}

link::link(std::unique_ptr<transport> t, std::shared_ptr<const link_config> config, pid owner, std::uint64_t id)
    : transport_(std::move(t)),
      config_(std::move(config)),
      owner_(owner),
      id_(id),
      peer_(transport_->peer()),
      decoder_(config_->max_payload),
      reader_wake_(context_executor(transport_->executor())),
      writer_wake_(reader_wake_.get_executor()),
      heartbeat_timer_(reader_wake_.get_executor()) {
  started_ = last_received_ = last_sent_ = last_activity_ = last_tick_ = clock::now();
  const link_config& c = *config_;
  tick_ = std::min(c.keepalive_interval, c.keepalive_timeout / 4);
  tick_ = std::min(tick_, c.handshake_timeout / 4);
  if (c.idle_timeout) tick_ = std::min(tick_, *c.idle_timeout / 4);
  tick_ = std::min(tick_, c.frame_timeout / 4);
  tick_ = std::max<duration>(tick_, std::chrono::milliseconds(5));
  if (config_->counters) config_->counters->connections.fetch_add(1, std::memory_order_relaxed);
}

link::~link() {
  if (config_->counters) {
    if (parked_) config_->counters->parked.fetch_sub(1, std::memory_order_relaxed);
    config_->counters->connections.fetch_sub(1, std::memory_order_relaxed);
    config_->counters->queued_bytes.fetch_sub(counted_queued_, std::memory_order_relaxed);
  }
}

void link::start() {
  asio::co_spawn(transport_->executor(), read_loop(shared_from_this(), false), asio::detached);
  // Armed from the executor, as the coroutine starts: after the caller returns.
  asio::post(transport_->executor(), [self = shared_from_this()] { self->arm_heartbeat(); });
}

void link::log(log_level level, std::string_view event, const std::string& text) const {
  if (config_->metrics && level >= log_level::warning) config_->metrics->error(event);
  if (config_->log) config_->log(log_record{level, event, peer_, text});
}

void link::log_close(log_level level, std::string_view event, const std::string& reason) {
  log(level, event, reason);
  close_logged_ = true;
}

bool link::send_error(std::string_view text, std::string_view call_payload) {
  return send(frame_type::error, [&](std::string& out) { config_->codec->write_refusal(out, text, call_payload); });
}

bool link::enqueue(std::string_view frame) {
  const std::size_t at = out_.size();
  out_.append(frame);
  return queued(at);
}

bool link::queued(std::size_t at) {
  if (queued_bytes() > config_->max_queued_bytes) {
    const std::size_t frame = out_.size() - at;
    out_.resize(at);
    const std::string reason = "peer is not reading: " + std::to_string(queued_bytes()) +
                               " bytes already queued and a frame of " + std::to_string(frame) +
                               " would pass the limit of " + std::to_string(config_->max_queued_bytes);
    log_close(log_level::warning, "slow_peer", reason);
    close(reason, true);
    return false;
  }
  if (config_->counters) {
    const auto now_queued = static_cast<std::int64_t>(queued_bytes());
    config_->counters->queued_bytes.fetch_add(now_queued - counted_queued_, std::memory_order_relaxed);
    counted_queued_ = now_queued;
  }
  wake_writer();
  return true;
}

void link::call_done() noexcept {
  if (calls_in_flight_ > 0) --calls_in_flight_;
  wake_reader();
}

void link::stop_reading() noexcept {
  reading_stopped_ = true;
  wake_reader();
}

void link::wake_reader() noexcept { reader_wake_.cancel(); }
void link::wake_writer() noexcept {
  if (writer_running_) {
    writer_wake_.cancel();
    return;
  }
  if (closed_ || !handshake_done_ || out_.empty()) return;
  if (transport_->writes_at_once()) {
    if (!flush_posted_) {
      flush_posted_ = true;
      auto run = [self = shared_from_this()] { self->flush(); };
      // On its node worker's thread (the owner's), in the worker's ready
      // queue: it runs once the processes resumed before it (the owner
      // queueing its replies among them) have run, without the reactor
      // poll that a post to the worker's io_context comes after.
      grove::detail::worker* w = grove::detail::this_worker;
      if (w && w->io.get() == &reader_wake_.get_executor().context()) {
        asio::post(*w->ready, std::move(run));
        w->queue_drain();
      } else {
        asio::post(transport_->executor(), std::move(run));
      }
    }
    return;
  }
  writer_running_ = true;
  asio::co_spawn(transport_->executor(), write_loop(shared_from_this()), asio::detached);
}

void link::flush() {
  flush_posted_ = false;
  if (closed_ || writer_running_ || out_.empty()) return;
  std::swap(writing_, out_);
  auto [error, n] = *transport_->try_write(asio::buffer(writing_));
  if (config_->metrics) config_->metrics->bytes_out.inc(n);
  if (error) {
    writing_.clear();
    close("write failed: " + describe(error), true);
    return;
  }
  if (n < writing_.size()) { // the socket is full: the rest waits for it
    writing_.erase(0, n);
    writer_running_ = true;
    asio::co_spawn(transport_->executor(), write_loop(shared_from_this()), asio::detached);
    return;
  }
  wrote();
}

void link::wrote() {
  writing_.clear();
  if (config_->counters) {
    const auto now_queued = static_cast<std::int64_t>(queued_bytes());
    config_->counters->queued_bytes.fetch_add(now_queued - counted_queued_, std::memory_order_relaxed);
    counted_queued_ = now_queued;
  }
  last_sent_ = clock::now();
  wake_reader();
  if (closing_ && out_.empty()) close(close_reason_, close_error_);
}

bool link::reading_paused() const noexcept {
  return reading_stopped_ || (config_->max_calls_in_flight != 0 && calls_in_flight_ >= config_->max_calls_in_flight) ||
         queued_bytes() >= config_->pause_reading_bytes;
}

void link::close_after_flush(std::string reason, bool error, duration linger) {
  if (closed_) return;
  stop_reading();
  if (!closing_) {
    closing_ = true;
    close_reason_ = std::move(reason);
    close_error_ = error;
    flush_deadline_ = clock::now() + linger;
  }
  if (out_.empty() && writing_.empty()) {
    close(close_reason_, close_error_);
    return;
  }
  wake_writer();
}

void link::close(std::string reason, bool error) {
  if (closed_) return;
  closed_ = true;
  transport_->close();
  reader_wake_.cancel();
  writer_wake_.cancel();
  heartbeat_timer_.cancel();
  if (!close_logged_) {
    close_logged_ = true;
    log(error ? log_level::warning : log_level::info, "connection_closed", reason);
  }
  if (!notified_) {
    notified_ = true;
    grove::send(owner_, link_down{id_, std::move(reason), error});
  }
}

void link::abandon() noexcept {
  notified_ = true;
  if (!closed_) {
    closed_ = true;
    transport_->close();
    reader_wake_.cancel();
    writer_wake_.cancel();
    heartbeat_timer_.cancel();
  }
}

asio::awaitable<void> link::wait(timer& t) {
  t.expires_at(clock::time_point::max());
  co_await t.async_wait(use_tuple);
}

std::optional<std::string> link::check(const frame_decoder::frame& f) const {
  if (config_->server && f.header.identifier != config_->identifier) {
    std::string got(f.header.identifier);
    return "identifier mismatch: this server is \"" + config_->identifier + "\", the frame says \"" + got + "\"";
  }
  if (config_->server && !config_->versions.allows(f.header.version)) {
    return "protocol version " + f.header.version.to_string() + " is not allowed: this server requires " +
           config_->versions.text();
  }
  if (config_->require_signed || (!config_->verify_keys.empty() && f.header.signed_frame())) {
    std::span<const std::uint8_t, header_size> raw(f.raw_header.data(), header_size);
    if (auto problem = verify_signature(raw, f.payload, config_->verify_keys)) return problem;
  }
  return std::nullopt;
}

void link::handle(const frame_decoder::frame& f, std::vector<link_frame>& batch) {
  if (config_->counters) config_->counters->frames_in.fetch_add(1, std::memory_order_relaxed);
  if (f.keepalive()) {
    if (config_->counters) config_->counters->keepalives_in.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  if (auto problem = check(f)) {
    if (config_->counters) config_->counters->rejected_frames.fetch_add(1, std::memory_order_relaxed);
    log(log_level::warning, "frame_refused", *problem);
    // Answer a refused call with its id when its payload can be read, so
    // the caller fails at once instead of timing out.
    if (f.header.type != frame_type::error) {
      hand_over(batch); // (the error may close the link: the frames before it go first)
      send_error(*problem, f.header.type == frame_type::call ? f.payload : std::string_view());
    }
    return;
  }
  unpark();
  if (f.header.type == frame_type::call) {
    ++calls_in_flight_;
    touch();
  } else if (f.header.type == frame_type::cast) {
    touch();
  }
  // With room past its end for a JSON reader that reads ahead (simdjson
  // reads the payload in place when it has 64 bytes to spare).
  std::string payload;
  payload.reserve(f.payload.size() + payload_padding);
  payload.assign(f.payload);
  if (!config_->batch_frames) {
    grove::send(owner_, link_frame{id_, f.header.type, std::move(payload)});
    return;
  }
  if (batch.capacity() == 0) batch = take_frame_vector();
  batch.push_back(link_frame{id_, f.header.type, std::move(payload)});
}

void link::hand_over(std::vector<link_frame>& batch) {
  if (batch.empty()) return;
  if (batch.size() == 1) {
    grove::send(owner_, std::move(batch.front()));
    give_back_frame_vector(std::move(batch)); // (a link waiting for bytes holds none)
  } else {
    grove::send(owner_, link_frames{id_, std::move(batch)});
  }
  batch = std::vector<link_frame>(); // (the next frame takes a spare)
}

namespace {
// Spare batch vectors, per thread: the owner gives a batch's vector back
// once it has handled the frames (give_back_frame_vector), and the next
// batch on this thread takes it instead of allocating as it grows.
constexpr std::size_t spare_frame_vectors = 8;
constexpr std::size_t frame_vector_start = 16;
struct frame_vector_spares {
  std::vector<link_frame> v[spare_frame_vectors];
  std::size_t count = 0;
};
thread_local frame_vector_spares spares;
} // namespace

std::vector<link_frame> take_frame_vector() {
  if (spares.count > 0) return std::move(spares.v[--spares.count]);
  std::vector<link_frame> fresh;
  fresh.reserve(frame_vector_start);
  return fresh;
}

void give_back_frame_vector(std::vector<link_frame>&& frames) noexcept {
  frames.clear();
  if (spares.count < spare_frame_vectors && frames.capacity() >= frame_vector_start &&
      frames.capacity() <= 64 * frame_vector_start) {
    spares.v[spares.count++] = std::move(frames);
  }
}

std::optional<std::string> link::frame_overdue(clock::time_point now) const {
  if (!frame_started_ || closing_) return std::nullopt;
  const std::size_t received = decoder_.buffered();
  const std::size_t whole = received + decoder_.missing(); // the header's length, once it is in
  duration allowed = config_->frame_timeout;
  if (config_->min_frame_rate != 0) {
    allowed += std::chrono::duration_cast<duration>(std::chrono::duration<double>(double(whole) / double(config_->min_frame_rate)));
  }
  if (now - *frame_started_ < allowed) return std::nullopt;
  const std::string progress = received >= keepalive_size
                                   ? std::to_string(received) + " of " + std::to_string(whole) + " bytes received"
                                   : std::to_string(received) + " bytes of its header received";
  // Past 10 s the allowance for the size is shown to the second.
  const std::string within = allowed >= std::chrono::seconds(10)
                                 ? std::to_string(std::chrono::round<std::chrono::seconds>(allowed).count()) + " s"
                                 : seconds_text(allowed);
  return "frame not complete within " + within + " (" + progress +
         "): the peer sends too slowly (frame_timeout, min_frame_rate)";
}

asio::awaitable<void> link::read_loop(std::shared_ptr<link> self, bool resumed) {
  if (self->closed_) co_return;
  if (!resumed) {
    boost::system::error_code handshake;
    if (self->config_->handshake_first) handshake = co_await self->transport_->handshake();
    if (self->closed_) co_return;
    if (handshake) {
      if (self->config_->metrics) self->config_->metrics->tls_handshake_failures.inc();
      std::string reason = "TLS handshake failed: " + describe(handshake);
      if (auto detail = self->transport_->handshake_detail(); !detail.empty()) reason += " (" + detail + ")";
      self->log_close(log_level::warning, "handshake_failed", reason);
      self->close(std::move(reason), true);
      co_return;
    }
    self->handshake_done_ = true;
    if (self->config_->counters && self->transport_->encrypted()) {
      self->config_->counters->tls_handshakes.fetch_add(1, std::memory_order_relaxed);
      if (self->transport_->resumed()) self->config_->counters->tls_resumed.fetch_add(1, std::memory_order_relaxed);
    }
    self->last_received_ = clock::now();
    self->wake_writer();
  }
  std::optional<clock::time_point> waiting_since; // since the reader last wanted bytes
  std::vector<link_frame> batch;                  // a read's frames, handed over together
  for (;;) {
    // Hand over what is buffered, a frame at a time, while not paused: a
    // read may hold more calls than the client may have in flight, and
    // those wait in the buffer (and the socket), not in the mailbox.
    bool whole_frames = false;
    while (!self->closed_ && !self->reading_paused()) {
      auto f = self->decoder_.next();
      if (!f) break;
      whole_frames = true;
      self->handle(f, batch);
    }
    self->hand_over(batch);
    // The frame deadline runs from the read that brought a frame's first
    // bytes (the one that finished the frame before it, when they share it).
    if (!self->decoder_.in_frame()) {
      self->frame_started_.reset();
    } else if (whole_frames || !self->frame_started_) {
      self->frame_started_ = self->last_received_;
    }
    if (self->closed_) co_return;
    if (self->decoder_.failed()) {
      std::string reason = "bad frame: " + self->decoder_.error_text();
      self->log_close(log_level::warning, "bad_frame", reason);
      self->send_error(reason);
      self->close_after_flush(std::move(reason), true);
      co_return;
    }
    if (self->reading_paused()) {
      co_await wait(self->reader_wake_);
      continue;
    }
    if (self->transport_->read_would_wait() && (self->parked_ || self->short_waits_ < busy_after_short_waits)) {
      // Between frames, a link that is not busy holds no read buffer while
      // it waits; an idle one (nothing in flight either way) holds no
      // coroutine either: this one ends, and the wait starts it again.
      if (!self->decoder_.in_frame()) self->decoder_.release();
      if (self->parked_) {
        self->transport_->wait_readable([self] {
          if (self->closed_) return;
          asio::co_spawn(self->transport_->executor(), read_loop(self, true), asio::detached);
        });
        co_return;
      }
      if (!waiting_since) waiting_since = clock::now();
      co_await self->transport_->wait_readable();
      if (self->closed_) co_return;
      continue; // a readable socket, or a cancelled wait (parked: wait by callback)
    }
    auto space = self->decoder_.prepare(std::max<std::size_t>(16 * 1024, self->decoder_.missing()));
    if (!waiting_since) waiting_since = clock::now();
    auto [error, n] = co_await self->transport_->read_some(asio::buffer(space.data(), space.size()));
    if (self->closed_) co_return;
    if (error == asio::error::operation_aborted) { // the link parked while the read waited
      self->short_waits_ = 0;
      continue;
    }
    if (error) {
      const bool clean = error == asio::error::eof || error == asio::error::connection_reset;
      std::string reason = clean ? "closed by the peer" : "read failed: " + describe(error);
      if (self->decoder_.in_frame()) {
        reason += " in the middle of a frame (" + std::to_string(self->decoder_.buffered()) + " bytes of it received)";
      }
      self->close(std::move(reason), !clean || self->decoder_.in_frame());
      co_return;
    }
    self->decoder_.commit(n);
    if (self->config_->metrics) self->config_->metrics->bytes_in.inc(n);
    self->last_received_ = clock::now();
    // Busy: bytes keep coming within a moment of asking. A link that gets
    // one call and goes quiet never counts as busy, so it never holds a
    // buffer while it waits.
    const bool short_wait = self->last_received_ - *waiting_since < busy_wait;
    waiting_since.reset();
    self->short_waits_ = short_wait ? std::min<std::uint8_t>(self->short_waits_ + 1, busy_after_short_waits) : 0;
  }
}

asio::awaitable<void> link::write_loop(std::shared_ptr<link> self) {
  struct running {
    link& l;
    ~running() { l.writer_running_ = false; }
  } mark{*self};
  for (;;) {
    if (self->closed_) co_return;
    if (self->writing_.empty()) { // (else: what a flush left)
      if (self->out_.empty()) {
        // Plain TCP: the next frames go out by flush().
        if (self->parked_ || self->transport_->writes_at_once()) co_return; // wake_writer() starts it again
        co_await wait(self->writer_wake_); // more frames are coming
        continue;
      }
      std::swap(self->writing_, self->out_);
    }
    // In chunks, so that a peer that reads slowly but steadily is told from
    // one that stopped reading (see the heartbeat).
    boost::system::error_code error;
    constexpr std::size_t chunk = 256 * 1024;
    for (std::size_t at = 0; at < self->writing_.size() && !error && !self->closed_; at += chunk) {
      self->write_started_ = clock::now();
      auto [e, n] =
          co_await self->transport_->write(asio::buffer(self->writing_.data() + at, std::min(chunk, self->writing_.size() - at)));
      error = e;
      if (self->config_->metrics) self->config_->metrics->bytes_out.inc(n);
    }
    self->write_started_.reset();
    if (self->closed_) co_return;
    if (error) {
      self->writing_.clear();
      self->close("write failed: " + describe(error), true);
      co_return;
    }
    self->wrote();
    if (self->closed_) co_return;
  }
}

void link::arm_heartbeat() {
  if (closed_) return;
  heartbeat_timer_.expires_after(tick_);
  heartbeat_timer_.async_wait([self = shared_from_this()](boost::system::error_code) {
    if (self->heartbeat_tick()) self->arm_heartbeat();
  });
}

bool link::heartbeat_tick() {
  const link_config& c = *config_;
  if (closed_) return false;
  const auto now = clock::now();
  // A tick this late means this process did not run (SIGSTOP, a stalled
  // VM, a long handler on this worker): what the peer sent meanwhile is
  // waiting unread, so that time is not the peer's silence or slowness.
  if (now - last_tick_ > 4 * tick_ + std::chrono::milliseconds(100)) {
    const auto stalled = now - last_tick_ - tick_;
    auto forgive = [&](clock::time_point& t) { t = std::min(now, t + stalled); }; // (a read since may have set it to now)
    forgive(last_received_);
    if (frame_started_) forgive(*frame_started_);
    if (write_started_) forgive(*write_started_);
  }
  last_tick_ = now;
  if (flush_deadline_ && now >= *flush_deadline_) {
    close(close_reason_ + " (the peer did not take the last frames in time)", close_error_);
    return false;
  }
  if (!handshake_done_) {
    if (now - started_ >= c.handshake_timeout) {
      std::string reason = "TLS handshake did not finish within " + seconds_text(c.handshake_timeout);
      log_close(log_level::warning, "handshake_timeout", reason);
      close(std::move(reason), true);
      return false;
    }
    return true;
  }
  // While we do not read (calls in flight at the limit, our own queue
  // full, draining) the peer's keepalives wait unread: its silence is
  // ours, and so is the time the rest of its frame waits.
  if (reading_paused()) {
    last_received_ = now;
    if (frame_started_) frame_started_ = now;
  }
  if (auto overdue = frame_overdue(now)) {
    log_close(log_level::warning, "frame_timeout", *overdue);
    send_error(*overdue);
    close_after_flush(std::move(*overdue), true);
    return !closed_;
  }
  if (now - last_received_ >= c.keepalive_timeout) {
    std::string reason = "peer silent for " + seconds_text(c.keepalive_timeout) + " (keepalive timeout)";
    if (decoder_.in_frame()) {
      reason += " with a frame unfinished (" + std::to_string(decoder_.buffered()) + " bytes of it received)";
    }
    log_close(log_level::info, "peer_silent", reason);
    close(std::move(reason), true);
    return false;
  }
  if (write_started_ && now - *write_started_ >= c.keepalive_timeout) {
    std::string reason = "peer is not reading: " + std::to_string(queued_bytes()) + " bytes unsent and none taken for " +
                         seconds_text(c.keepalive_timeout);
    log_close(log_level::warning, "slow_peer", reason);
    close(std::move(reason), true);
    return false;
  }
  // A call in flight is activity: the idle time of a long call's
  // connection counts from the last tick that saw it running.
  if (calls_in_flight_ != 0) last_activity_ = now;
  if (c.idle_timeout && !closing_ && calls_in_flight_ == 0 && now - last_activity_ >= *c.idle_timeout) {
    std::string reason = "idle for " + seconds_text(*c.idle_timeout) + " (no call or cast)";
    log_close(log_level::info, "idle_timeout", reason);
    send_error("closing: " + reason);
    close_after_flush(std::move(reason), false);
    return !closed_;
  }
  // Before the keepalive below: a keepalive queued at every tick (an
  // interval no longer than the tick) would otherwise never let it park.
  park_if_idle();
  if (now - last_sent_ >= c.keepalive_interval && out_.empty() && writing_.empty() && !closing_) {
    enqueue(frame_writer::keepalive());
    last_sent_ = now;
  }
  return !closed_;
}

// Parks a link that has been idle for a whole tick: no frame but
// keepalives since the tick before.
void link::park_if_idle() {
  const bool busy = std::exchange(busy_, false);
  if (parked_ || closed_ || closing_ || calls_in_flight_ != 0 || !out_.empty() || !writing_.empty() ||
      !transport_->reader_waiting() || reading_paused() || decoder_.in_frame()) {
    return;
  }
  if (busy) return;
  parked_ = true;
  // Both queues are empty: give back what their last frames grew them to
  // (a keepalive fits in a string's own bytes; the next reply allocates).
  std::string().swap(out_);
  std::string().swap(writing_);
  if (config_->counters) config_->counters->parked.fetch_add(1, std::memory_order_relaxed);
  log(log_level::debug, "parked", "idle: no coroutine held until bytes arrive");
  transport_->cancel_wait(); // the reader's wait or read ends; it waits by callback, holding no buffer
  wake_writer();             // the writer ends
}

void link::leave_park() noexcept {
  parked_ = false;
  if (config_->counters) config_->counters->parked.fetch_sub(1, std::memory_order_relaxed);
  log(log_level::debug, "unparked", "a frame other than a keepalive");
}

} // namespace grove::erps::detail
