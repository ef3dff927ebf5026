// Internal: one erps connection's byte stream, shared by the daemon's
// per-client servers and the client. A link owns its transport (TCP or TLS)
// and runs on the owning process's worker (so, on one thread with that
// process, it needs no lock):
//   read_loop   a coroutine: handshake, then decode frames, check them, and
//               hand calls, casts, replies, pushes and errors to the owner
//               as messages; stops reading while the peer has too much
//               outstanding (calls in flight, or bytes we could not send
//               yet). Over plain TCP it waits for readability holding no
//               read buffer; once the link is parked (below) it ends, and
//               a readiness wait starts it again.
//   flush       plain TCP: posted when frames are queued (once per batch:
//               what the owner queues before it runs goes out in one
//               send), writes them at once without waiting; only what the
//               socket does not take then is left to write_loop
//   write_loop  a coroutine: over TLS, started when frames are queued and
//               none is running, gathers every queued frame into one write
//               and waits for more (it ends when the queue is empty and the
//               link is parked); over plain TCP, started by a flush the
//               socket did not take whole, it ends once the queue is empty
//   heartbeat   a timer callback: keepalives out, a silent peer, the idle,
//               handshake and frame timeouts, and the bound on a close that
//               waits for a flush; and parking: a plain TCP link with
//               nothing in flight either way for a whole tick is parked, so
//               an idle connection holds no coroutine frame at all (ending
//               them at every pause instead cost 4 % of the calls/s at
//               16 x 16: the pauses between a client's batches)
// The owner sends frames with send(); the link tells it link_down once.
#pragma once

#include <grove/core/pid.hpp>
#include <grove/core/process.hpp>
#include <grove/erps/link_options.hpp>
#include <grove/erps/codec.hpp>
#include <grove/erps/frame.hpp>
#include <grove/erps/log.hpp>
#include <grove/erps/detail/link_messages.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/system/error_code.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace grove::erps::detail {

namespace asio = boost::asio;

/// A byte stream: TCP, or TLS over TCP.
class transport {
public:
  virtual ~transport() = default;
  virtual asio::any_io_executor executor() = 0;
  /// TLS: the handshake (the error says why it failed). TCP: nothing.
  virtual asio::awaitable<boost::system::error_code> handshake();
  virtual asio::awaitable<std::pair<boost::system::error_code, std::size_t>> read_some(asio::mutable_buffer into) = 0;
  /// Plain TCP: true when the next read would most likely find nothing
  /// (the last one did not fill its buffer, and no wait said otherwise
  /// since). A reader that is not busy then waits with wait_readable()
  /// first, holding no buffer meanwhile.
  virtual bool read_would_wait() const noexcept { return false; }
  /// Plain TCP: a wait_readable or read_some is pending and has found
  /// nothing yet, so cancel_wait() can end it without losing a byte.
  virtual bool reader_waiting() const noexcept { return false; }
  /// Returns when a read would find bytes, or the connection failed or
  /// closed (the next read_some says how). The read_some after it reads at
  /// once.
  virtual asio::awaitable<void> wait_readable();
  /// The same, calling `then` (on the transport's executor) instead: for a
  /// reader that ends its coroutine while the connection is idle.
  virtual void wait_readable(std::function<void()> then);
  /// Cancels a pending wait_readable (the awaitable one resumes at once)
  /// or read_some (it returns operation_aborted, having read nothing).
  /// Only while reader_waiting() and no write is pending.
  virtual void cancel_wait() noexcept {}
  virtual asio::awaitable<std::pair<boost::system::error_code, std::size_t>> write(asio::const_buffer bytes) = 0;
  /// Plain TCP: writes what the socket takes now, without waiting (0 bytes
  /// and no error when it takes none). Others: nullopt, and write() is the
  /// only way.
  virtual std::optional<std::pair<boost::system::error_code, std::size_t>> try_write(asio::const_buffer) {
    return std::nullopt;
  }
  /// true: try_write() always writes (never returns nullopt), and the link
  /// flushes with it instead of keeping a writer coroutine.
  virtual bool writes_at_once() const noexcept { return false; }
  /// Cancels pending operations; they complete with an error.
  virtual void close() noexcept = 0;
  /// "127.0.0.1:51234" / "[::1]:51234"; empty if unknown.
  virtual std::string peer() const = 0;
  /// TLS: the verified peer certificate's subject, one line; empty otherwise.
  virtual std::string peer_subject() const { return {}; }
  /// TLS: the verified peer certificate's alternative names ("DNS:…", "URI:…", "email:…", "IP:…").
  virtual std::vector<std::string> peer_alt_names() const { return {}; }
  /// Whether this is TLS.
  virtual bool encrypted() const noexcept { return false; }
  /// TLS, after the handshake: whether it resumed an earlier session.
  virtual bool resumed() const { return false; }
  /// After a failed handshake: why the certificate was refused, if it was.
  virtual std::string handshake_detail() const { return {}; }
};

/// What a link counts, for the daemon's stats (shared by all its links).
struct link_counters {
  std::atomic<std::int64_t> connections{0};
  std::atomic<std::int64_t> queued_bytes{0};
  std::atomic<std::int64_t> parked{0};          ///< idle links holding no coroutine now
  std::atomic<std::uint64_t> frames_in{0};
  std::atomic<std::uint64_t> keepalives_in{0};
  std::atomic<std::uint64_t> rejected_frames{0};
  std::atomic<std::uint64_t> tls_handshakes{0}; ///< completed
  std::atomic<std::uint64_t> tls_resumed{0};    ///< of those, resumed sessions
  std::atomic<std::uint64_t> accepted{0};       ///< the daemon's: connections accepted
  std::atomic<std::uint64_t> refused{0};        ///< the daemon's: refused for max_connections
};

struct daemon_series;

struct link_config {
  std::uint32_t max_payload = default_max_payload;
  frame_writer writer{};
  std::string identifier{};                         ///< server: what a peer's frames must carry
  const payload_codec* codec = nullptr;
  decode_limits limits{};                           ///< what the codec enforces on every payload read
  bool server = false;                              ///< the daemon's side: checks identifier and version
  version_requirement versions{};                   ///< server: what the peer's version must satisfy
  std::vector<signing_key> verify_keys{};           ///< keys a signed frame may use
  bool require_signed = false;                      ///< refuse unsigned or badly signed frames
  duration keepalive_interval = std::chrono::seconds(5);
  duration keepalive_timeout = std::chrono::seconds(20);
  std::optional<duration> idle_timeout{};           ///< server: close after this long without a call or cast
  duration frame_timeout = std::chrono::seconds(30); ///< a frame begun must be whole within this ...
  std::size_t min_frame_rate = 64 * 1024;           ///< ... plus its size at this many bytes per second
  duration handshake_timeout = std::chrono::seconds(10);
  bool handshake_first = true;                      ///< false: the transport's handshake was done already
  std::size_t max_calls_in_flight = 0;              ///< stop reading at this many unanswered calls (0: no limit)
  bool batch_frames = false;                        ///< a read's frames go to the owner in one link_frames message
  std::size_t max_queued_bytes = 64u << 20;         ///< more unsent than this: the peer is not reading, close
  std::size_t pause_reading_bytes = 1u << 20;       ///< stop reading while this much is unsent
  log_function log{};
  std::shared_ptr<link_counters> counters{};
  std::shared_ptr<const daemon_series> metrics{}; ///< a daemon's, when its node has a registry
};

/// Throws grove::error (errc::invalid_argument): "<owner>.<field>: <why>".
[[noreturn]] void bad_option(std::string_view owner, std::string_view field, const std::string& why);
/// The link settings `o` gives; each side adds its own (server, versions,
/// idle timeout, calls in flight, handshake, counters).
link_config make_link_config(const link_options& o);

/// An error's message without OpenSSL's " (SSL routines)" suffix.
std::string describe(const boost::system::error_code& error);

class link : public std::enable_shared_from_this<link> {
public:
  /// `config` is shared: a daemon's links all point at its one copy.
  link(std::unique_ptr<transport> t, std::shared_ptr<const link_config> config, pid owner, std::uint64_t id);
  ~link();
  link(const link&) = delete;
  link& operator=(const link&) = delete;

  /// Starts the coroutines (on the transport's executor, after the caller
  /// returns). TLS handshakes first.
  void start();

  std::uint64_t id() const noexcept { return id_; }
  const std::string& peer() const noexcept { return peer_; }
  const link_config& config() const noexcept { return *config_; }
  transport& stream() noexcept { return *transport_; }
  bool closed() const noexcept { return closed_; }

  /// Queues one frame: `write(payload)` appends the payload after a
  /// reserved header. false if the link is closed, or the frame would put
  /// more than max_queued_bytes in the queue (then the link closes: the
  /// peer is not reading).
  template <class WritePayload>
  bool send(frame_type type, WritePayload&& write) {
    if (closed_ || closing_) return false;
    unpark();
    // Written in place at the queue's end: no buffer of its own per frame.
    const std::size_t at = out_.size();
    out_.resize(at + header_size);
    try {
      write(out_);
      config_->writer.seal(type, out_, at);
    } catch (...) {
      out_.resize(at); // (a codec error: the frame is not sent, the queue is as it was)
      throw;
    }
    return queued(at);
  }
  /// An error frame saying `text`; answering the call whose payload is
  /// `call_payload` when the codec can name it (JSON: [call_id, text]).
  bool send_error(std::string_view text, std::string_view call_payload = {});

  /// A call handed to the owner was answered (or refused): may resume reading.
  void call_done() noexcept;
  std::size_t calls_in_flight() const noexcept { return calls_in_flight_; }
  /// Counts as activity for the idle timeout: a frame, as of the read that
  /// brought it (no clock read per frame).
  void touch() noexcept { last_activity_ = last_received_; }
  /// When the last read brought bytes (or reading resumed).
  std::chrono::steady_clock::time_point received_at() const noexcept { return last_received_; }
  std::size_t queued_bytes() const noexcept { return out_.size() + writing_.size(); }

  /// Stops reading; queued frames still go out.
  void stop_reading() noexcept;
  /// Closes once everything queued is written (at most `linger` from now).
  void close_after_flush(std::string reason, bool error, duration linger = std::chrono::seconds(2));
  /// Closes now; tells the owner link_down (once).
  void close(std::string reason, bool error);
  /// Closes without telling the owner (the owner itself is going away).
  void abandon() noexcept;

  void log(log_level level, std::string_view event, const std::string& text) const;

private:
  /// Logs why the link is about to close under its own event, so close()
  /// does not log it again as connection_closed.
  void log_close(log_level level, std::string_view event, const std::string& reason);
  /// Queues a frame: copies it to the queue's end.
  bool enqueue(std::string_view frame);
  /// After a frame was written at out_[at..]: checks the queue's bound
  /// (over it, the frame is taken back and the link closes) and wakes the
  /// writer.
  bool queued(std::size_t at);
  void wake_reader() noexcept;
  void wake_writer() noexcept;
  bool reading_paused() const noexcept;
  std::optional<std::string> frame_overdue(std::chrono::steady_clock::time_point now) const;
  /// Checks frame `f` and queues it in `batch` for the owner (a refused
  /// frame hands `batch` over first, so anything it closes comes after).
  void handle(const frame_decoder::frame& f, std::vector<link_frame>& batch);
  /// Sends the owner what `batch` holds (one link_frame, or link_frames
  /// with batch_frames), in order; leaves it empty.
  void hand_over(std::vector<link_frame>& batch);
  std::optional<std::string> check(const frame_decoder::frame& f) const;

  /// `resumed`: started again by a readiness wait (the handshake is done).
  static asio::awaitable<void> read_loop(std::shared_ptr<link> self, bool resumed);
  static asio::awaitable<void> write_loop(std::shared_ptr<link> self);
  /// Plain TCP: writes the queue now, what the socket takes; the rest goes
  /// to write_loop.
  void flush();
  /// A batch was written whole: bookkeeping, the reader woken, and a close
  /// that waited for the flush done.
  void wrote();
  // Timers typed on the worker's io_context: an any_io_executor would add
  // 48 bytes to each of the three every connection holds. (Their handlers
  // run on that worker, as the sockets' do.)
  using timer = asio::basic_waitable_timer<std::chrono::steady_clock, asio::wait_traits<std::chrono::steady_clock>,
                                           asio::io_context::executor_type>;
  static asio::awaitable<void> wait(timer& t);
  void arm_heartbeat();
  /// A frame other than a keepalive, in or out: the link is busy.
  void unpark() noexcept {
    if (parked_) leave_park();
    busy_ = true;
  }
  void leave_park() noexcept;
  void park_if_idle();
  /// One heartbeat tick; false when the link closed (no next tick).
  bool heartbeat_tick();

  std::unique_ptr<transport> transport_;
  std::shared_ptr<const link_config> config_;
  pid owner_;
  std::uint64_t id_;
  std::string peer_;
  frame_decoder decoder_;
  std::string out_;     // frames queued, not yet being written
  std::string writing_; // the batch being written
  timer reader_wake_;
  timer writer_wake_; // a running writer waits on it for the next reply
  timer heartbeat_timer_;
  duration tick_{};
  std::chrono::steady_clock::time_point last_tick_;
  bool busy_ = false; // a frame in or out other than a keepalive since the last tick (no clock read per frame)
  std::chrono::steady_clock::time_point started_;
  std::chrono::steady_clock::time_point last_received_;
  std::chrono::steady_clock::time_point last_sent_;
  std::chrono::steady_clock::time_point last_activity_;
  std::optional<std::chrono::steady_clock::time_point> flush_deadline_;
  std::optional<std::chrono::steady_clock::time_point> write_started_; // a write (chunk) in progress since
  std::optional<std::chrono::steady_clock::time_point> frame_started_; // the frame begun, not yet whole, since
  std::string close_reason_;
  std::size_t calls_in_flight_ = 0;
  std::uint8_t short_waits_ = 0; // reads in a row whose bytes came within busy_wait of asking (link.cpp)
  std::int64_t counted_queued_ = 0; // what this link added to counters->queued_bytes
  bool handshake_done_ = false;
  bool writer_running_ = false;
  bool flush_posted_ = false;
  bool parked_ = false; // idle: the reader waits by callback, the writer ends when the queue is empty
  bool reading_stopped_ = false;
  bool closing_ = false; // close_after_flush: no more frames accepted
  bool close_error_ = false;
  bool closed_ = false;
  bool notified_ = false;
  bool close_logged_ = false;
};

} // namespace grove::erps::detail
