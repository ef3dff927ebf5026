// grove/remote_term/remote_term.hpp — data that lives elsewhere, fetched by
// one refresher process and published for lock-free reads (Elixir's
// RemotePersistentTerm, with retries, limits and one timer chain).
//
//   grove::remote_term_options<nlohmann::json> o;
//   o.name = "feature_flags";
//   o.fetcher = grove::file_fetcher("/etc/myservice/flags.json");
//   o.interval = std::chrono::seconds(30);
//   grove::remote_term<nlohmann::json> flags(std::move(o));
//   co_await flags.start(node);
//   if (auto f = flags.get()) use((*f)["beta"]);     // any thread, lock-free; empty before the first load
//
// A term is an object the user owns (any number per node) and one
// refresher process (a gen_server; start() runs it on its own, child_spec()
// puts it under your supervisor). Each attempt: ask the fetcher what is
// there (not modified, or bytes and a version) within attempt_timeout;
// refuse more than max_bytes; check the SHA-256 if one is expected (the
// option, or what the source states); gunzip a payload starting with
// 1F 8B (unless decompress is off); deserialize; validate; publish. A
// failure anywhere keeps the last good value, is reported once (an event
// "remote_term"/"refresh_failed" naming the term and the reason, the
// span, the stats) and retries after the retry backoff; a success resets
// the backoff and waits the interval (with jitter) again.
//
// update() asks for an attempt now. Scheduled and asked-for attempts share
// one timer chain: an update while an attempt runs or is scheduled
// replaces the schedule, never adds a second one, and updates asked for
// while an attempt runs are answered by the next one together.
#pragma once

#include <grove/core/backoff.hpp>
#include <grove/core/detail/epoch.hpp>
#include <grove/core/gen_server.hpp>
#include <grove/remote_term/error.hpp>
#include <grove/remote_term/fetcher.hpp>
#include <grove/supervisor/child_spec.hpp>

#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>

namespace grove::telemetry {
class event_hub;
} // namespace grove::telemetry

namespace grove {

enum class term_status : std::uint8_t {
  updated,      ///< a new value was published
  not_modified, ///< the source still holds the version the term has
  failed,       ///< nothing was published; the last good value stays
};
std::string_view to_string(term_status s) noexcept;

/// What one attempt came to.
struct term_outcome {
  term_status status = term_status::failed;
  std::string version{};  ///< the version the term holds after it
  std::error_code error{}; ///< why it failed (failed only)
  std::string reason{};   ///< the same, as a sentence naming the term
};

/// One attempt, as the span hook sees it: `start`, then `stop` (updated or
/// not_modified) or `exception` (failed).
struct term_span {
  enum class phase : std::uint8_t { start, stop, exception };
  std::string_view name{};
  phase what = phase::start;
  term_status status = term_status::failed; ///< stop / exception only
  duration elapsed{};                       ///< stop / exception only
  std::string error{};                      ///< exception only
};

/// What a term says about itself (a copy, taken under a lock: for
/// dashboards and tests, not for the request path).
struct term_stats {
  std::string version{};                                       ///< of the published value (empty: none yet)
  std::optional<std::chrono::system_clock::time_point> last_success{}; ///< when the source was last read successfully
  std::string last_error{};                                    ///< the last failure (empty after a success)
  std::uint64_t attempts = 0, updates = 0, not_modified = 0, failures = 0;
  std::optional<duration> next_delay{}; ///< the wait the last attempt scheduled (none: update() only)
};

template <class T>
struct remote_term_options {
  std::string name{};                            ///< for logs, events and telemetry (required)
  std::shared_ptr<term_fetcher> fetcher{};       ///< where the bytes come from (required)
  std::optional<duration> interval{};            ///< time between attempts (default none: update() only)
  double jitter = 0.1;                           ///< interval spread, a fraction (default 0.1 = +-10 %; 0 to 1)
  bool sync_first_load = false;                  ///< start() waits for the first attempt (default false: lazy)
  duration start_timeout = std::chrono::seconds(30); ///< how long a sync start waits (default 30 s)
  backoff_policy retry_backoff = backoff_policy::exponential(
      {.initial = std::chrono::seconds(1), .max = std::chrono::seconds(60)}); ///< wait after a failure (default 1 s, x1.6, at most 60 s)
  std::size_t max_bytes = 64 << 20;              ///< largest payload, stored or decompressed (default 64 MiB)
  duration attempt_timeout = std::chrono::seconds(30); ///< longest attempt (default 30 s)
  bool decompress = true;                        ///< gunzip payloads that start with 1F 8B (default on)
  std::function<T(std::string_view)> deserialize{}; ///< bytes -> value; throw to refuse (default: nlohmann::json parse, or the bytes for std::string)
  std::function<void(const T&)> validate{};      ///< throw to refuse a value (default: none)
  std::optional<std::string> sha256{};           ///< the payload's expected SHA-256, hex (default: only what the source states)
  std::function<void(const term_span&)> on_span{}; ///< each attempt's span (default none)
  const telemetry::event_hub* events = nullptr;  ///< also emit each span as grove.remote_term.refresh.{start,stop,exception}
                                                 ///< (measurement "duration", ns; metadata term, status, error) (default none)
  std::optional<std::size_t> worker{};           ///< worker the refresher runs on (default: round-robin)
};

namespace detail {

/// One published value: its version, and the value itself right after
/// it, at the fixed offset term_value_offset (term_value_of<T>). What a
/// term publishes is the value's own address, so get() hands it over as
/// loaded (null: nothing loaded yet), with no arithmetic or test on it;
/// the rest is found at that fixed distance before it (header_of).
struct term_value {
  term_value() = default;
  term_value(const term_value&) = delete;
  term_value& operator=(const term_value&) = delete;
  virtual ~term_value() = default;
  /// The value, for the type-erased refresher (validate).
  virtual const void* raw() const noexcept = 0;

  std::string version; ///< set before it is published, then never changed
  /// The refresher's reference to this value, on the value itself so that
  /// share() can copy it (one count increment) while pinned. Dropped only
  /// once no reader can be pinned on the value (the term's reclamation),
  /// after which the value lives as long as share()'s copies.
  std::shared_ptr<const term_value> self;
};

/// Where a value sits after its term_value: the value is aligned to this
/// (a member alignment, so it cannot share the header's tail padding),
/// and the header fits before it (checked here, and at every publication).
inline constexpr std::ptrdiff_t term_value_offset = 64;
static_assert(sizeof(term_value) <= term_value_offset);

template <class T>
struct term_value_of final : term_value {
  static_assert(alignof(T) <= term_value_offset, "remote_term: value types aligned beyond 64 bytes are not supported");
  explicit term_value_of(T v) : value(std::move(v)) {}
  const void* raw() const noexcept override { return &value; }
  alignas(term_value_offset) const T value;
};

/// The term_value a published value address belongs to.
inline const term_value* header_of(const void* value) noexcept {
  return reinterpret_cast<const term_value*>(static_cast<const char*>(value) - term_value_offset);
}

} // namespace detail

/// The published value, valid while held: it pins reclamation (grove's
/// epochs), so hold it for a request, not for ever, and never past the
/// life of its remote_term. It holds a pin of the thread that took it, so
/// it must be released (destroyed or assigned over) on that thread: a grove
/// process always resumes on its own worker, so a snapshot a process holds
/// across a co_await is fine; one handed to another thread is not. share() gives a
/// std::shared_ptr for longer or cross-thread holding. An empty snapshot
/// (no value loaded yet) holds its pin too, until released.
template <class T>
class term_snapshot {
public:
  term_snapshot() = default;
  term_snapshot(term_snapshot&& other) noexcept
      : value_(std::exchange(other.value_, nullptr)), pin_(std::exchange(other.pin_, pin_slot::none)) {}
  term_snapshot& operator=(term_snapshot&& other) noexcept {
    if (this != &other) {
      release();
      value_ = std::exchange(other.value_, nullptr);
      pin_ = std::exchange(other.pin_, pin_slot::none);
    }
    return *this;
  }
  term_snapshot(const term_snapshot&) = delete;
  term_snapshot& operator=(const term_snapshot&) = delete;
  ~term_snapshot() { release(); }

  explicit operator bool() const noexcept { return value_ != nullptr; }
  const T& operator*() const noexcept { return *value_; }
  const T* operator->() const noexcept { return value_; }
  const T* get() const noexcept { return value_; }
  /// The value's version (empty for an empty snapshot).
  std::string_view version() const noexcept {
    return value_ ? std::string_view(detail::header_of(value_)->version) : std::string_view();
  }

private:
  template <class>
  friend class remote_term;
  /// Which of the thread's pins the snapshot holds.
  enum class pin_slot : std::uint8_t { none, held, nested };
  /// Takes over the calling thread's pin: its held slot
  /// (detail::try_pin_held()) or one nesting pin (detail::pin()).
  term_snapshot(const T* value, pin_slot pin) noexcept : value_(value), pin_(pin) {}
  void release() noexcept {
    // The pin is this thread's (see above).
    if (pin_ == pin_slot::held) {
      detail::unpin_held();
    } else if (pin_ == pin_slot::nested) {
      detail::unpin();
    }
    pin_ = pin_slot::none;
    value_ = nullptr;
  }

  const T* value_ = nullptr; // inside a detail::term_value_of<T>
  pin_slot pin_ = pin_slot::none;
};

namespace detail {

/// A term's options with its value type erased.
struct term_config {
  std::string name;
  std::shared_ptr<term_fetcher> fetcher;
  std::optional<duration> interval;
  double jitter = 0.1;
  bool sync_first_load = false;
  duration start_timeout{};
  backoff_policy retry_backoff;
  std::size_t max_bytes = 0;
  duration attempt_timeout{};
  bool decompress = true;
  std::function<std::shared_ptr<term_value>(std::string_view)> make_value; ///< deserialize (never null)
  std::function<void(const void*)> validate;                              ///< empty: none
  std::optional<std::string> sha256;
  std::function<void(const term_span&)> on_span;
  const telemetry::event_hub* events = nullptr;
  std::optional<std::size_t> worker;
};

struct remote_term_state;

/// A copy of the published value's address inside each remote_term
/// object, kept by the refresher (under its writer lock) with the
/// canonical one: get() loads it from the object it is called on, with
/// no pointer to the shared state to load first. Linked into the term's
/// list while the object lives.
struct term_mirror {
  std::atomic<const void*> value{nullptr}; ///< the value's address (term_value::raw()), or null

  term_mirror* prev = nullptr;
  term_mirror* next = nullptr;
};

/// What every remote_term does, whatever its value type.
class remote_term_base {
public:
  /// Starts the refresher on `n` (not linked). With sync_first_load, waits
  /// for the first attempt, up to start_timeout (grove::error timeout; the
  /// term keeps trying). Throws invalid_argument if it already runs.
  awaitable<void> start(node& n) const;
  /// Stops the refresher; the last value stays readable.
  awaitable<void> stop(duration timeout = infinity) const;
  /// The refresher as a child of your supervisor (a permanent worker).
  grove::child_spec child_spec(std::string id = {}) const;

  /// Asks for an attempt now (see the header comment). Any thread; no-op
  /// when the refresher is not running.
  void update() const;
  /// update(), and the outcome of the attempt that answers it (one that
  /// started after this was asked). Throws timeout, noproc.
  awaitable<term_outcome> refresh(duration timeout = infinity) const;
  /// The outcome of the next attempt to finish (scheduled or asked for).
  /// Throws timeout, noproc.
  awaitable<term_outcome> await_update(duration timeout = infinity) const;
  /// The outcome of the refresher's first attempt (at once if it is
  /// over): what a lazy start came to, success or not. Throws timeout,
  /// noproc.
  awaitable<term_outcome> first_attempt(duration timeout = infinity) const;
  /// Returns once a value is published (at once if one is). Throws
  /// timeout, noproc.
  awaitable<void> await_first_load(duration timeout = infinity) const;

  term_stats stats() const;
  const std::string& name() const noexcept;
  /// Whether a value is published. Lock-free.
  bool loaded() const noexcept;

protected:
  explicit remote_term_base(term_config config);
  /// A copy is the same term (one refresher, one value). A moved-from
  /// term stays that term too: moving is copying.
  remote_term_base(const remote_term_base& other);
  remote_term_base& operator=(const remote_term_base& other);
  ~remote_term_base();

  /// The published value's address (inline: a read makes no call into the
  /// library), or null.
  const void* current() const noexcept { return mirror_.value.load(std::memory_order_acquire); }

  std::shared_ptr<remote_term_state> state_;
  term_mirror mirror_;
};

} // namespace detail

template <class T>
class remote_term : public detail::remote_term_base {
public:
  /// Throws grove::error(invalid_argument) naming the first bad option.
  explicit remote_term(remote_term_options<T> options) : remote_term_base(erase(std::move(options))) {}

  /// The current value; empty before the first load. Lock-free and
  /// wait-free, from any thread; never touches the refresher.
  term_snapshot<T> get() const {
    using slot = typename term_snapshot<T>::pin_slot;
    slot pin = slot::held;
    if (!detail::try_pin_held()) [[unlikely]] { // this thread holds a snapshot already
      detail::pin();
      pin = slot::nested;
    }
    return term_snapshot<T>(static_cast<const T*>(current()), pin);
  }

  /// The current value as a shared_ptr (null before the first load): for
  /// holding it long or on another thread. Lock-free (one reference count).
  std::shared_ptr<const T> share() const {
    detail::epoch_guard pin;
    const void* v = current();
    if (!v) return nullptr;
    // Pinned, so `self` is still set (see term_value).
    return std::shared_ptr<const T>(detail::header_of(v)->self, static_cast<const T*>(v));
  }

private:
  static detail::term_config erase(remote_term_options<T> o) {
    std::function<T(std::string_view)> deserialize = std::move(o.deserialize);
    if (!deserialize) {
      if constexpr (std::is_same_v<T, nlohmann::json>) {
        deserialize = [](std::string_view bytes) { return nlohmann::json::parse(bytes); };
      } else if constexpr (std::is_same_v<T, std::string>) {
        deserialize = [](std::string_view bytes) { return std::string(bytes); };
      } else {
        throw grove::error(errc::invalid_argument, "remote_term_options.deserialize: missing (required for a "
                                                   "value type other than nlohmann::json and std::string)");
      }
    }
    detail::term_config c;
    c.name = std::move(o.name);
    c.fetcher = std::move(o.fetcher);
    c.interval = o.interval;
    c.jitter = o.jitter;
    c.sync_first_load = o.sync_first_load;
    c.start_timeout = o.start_timeout;
    c.retry_backoff = o.retry_backoff;
    c.max_bytes = o.max_bytes;
    c.attempt_timeout = o.attempt_timeout;
    c.decompress = o.decompress;
    c.make_value = [deserialize = std::move(deserialize)](std::string_view bytes) -> std::shared_ptr<detail::term_value> {
      return std::make_shared<detail::term_value_of<T>>(deserialize(bytes));
    };
    if (o.validate) {
      c.validate = [validate = std::move(o.validate)](const void* value) { validate(*static_cast<const T*>(value)); };
    }
    c.sha256 = std::move(o.sha256);
    c.on_span = std::move(o.on_span);
    c.events = o.events;
    c.worker = o.worker;
    return c;
  }
};

} // namespace grove
