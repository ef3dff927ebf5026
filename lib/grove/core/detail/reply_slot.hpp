// Internal: the one-shot rendezvous between a call and its reply.
//
// Exactly one of {reply, timeout, target exit, caller cancelled} completes a
// slot; the first wins by a compare-and-swap and every later attempt is a
// no-op. That is how a late reply is dropped: it finds the slot completed and
// is never seen by anybody, least of all a later call (each call has its own
// slot).
#pragma once

#include <grove/core/error.hpp>
#include <grove/core/exit_reason.hpp>
#include <grove/core/pid.hpp>

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <utility>

namespace grove::detail {

class reply_slot_base;

/// The waiting side of a call; implemented in the library.
class reply_waiter {
public:
  /// Called once, on the completing thread, after the slot completed.
  virtual void wake(reply_slot_base& slot) noexcept = 0;

protected:
  ~reply_waiter() = default;
};

class reply_slot_base : public std::enable_shared_from_this<reply_slot_base> {
public:
  reply_slot_base() = default;
  reply_slot_base(const reply_slot_base&) = delete;
  reply_slot_base& operator=(const reply_slot_base&) = delete;
  virtual ~reply_slot_base() = default;

  /// Complete with an error. Any thread; false if already completed.
  bool fail(std::error_code code, exit_reason reason = {}) noexcept {
    if (!claim()) return false;
    error_ = code;
    reason_ = std::move(reason);
    publish();
    return true;
  }

  bool completed() const noexcept { return state_.load(std::memory_order_acquire) != pending; }
  /// Completed and its value or error written: only then may another
  /// thread than the completing one read them (completed() is already true
  /// while the completing thread is still writing).
  bool published() const noexcept { return state_.load(std::memory_order_acquire) == done; }

  /// The calling process, or the null pid for a caller outside any process.
  const pid& caller() const noexcept { return caller_; }
  void set_caller(pid p) noexcept { caller_ = p; }

  /// Installs the waiting side. If the slot already completed, wakes it at
  /// once; either order of completion and installation wakes it exactly once.
  void set_waiter(reply_waiter* w) noexcept {
    reply_waiter* previous = waiter_.exchange(w, std::memory_order_acq_rel);
    if (previous == completed_marker()) w->wake(*this);
  }

  /// from<R> handles count themselves here: the last one to go away with
  /// the call unanswered fails it (errc::exited, "no reply"), so a caller
  /// never waits out its timeout for an answer nobody can give any more.
  void retain_answerer() noexcept { answerers_.fetch_add(1, std::memory_order_relaxed); }
  void release_answerer() noexcept {
    if (answerers_.fetch_sub(1, std::memory_order_acq_rel) == 1 && !completed()) {
      fail(make_error_code(errc::exited),
           exit_reason::error("no reply: the call was let go of without an answer (its from was dropped, or the "
                              "process holding it ended)"));
    }
  }

  /// Lets go of a from<R> without failing the call: its server is ending,
  /// and the exit reason will answer it.
  void release_answerer_quietly() noexcept { answerers_.fetch_sub(1, std::memory_order_acq_rel); }

  /// The error it completed with (none for a value) and its exit reason.
  /// Caller side, after completion.
  const std::error_code& error() const noexcept { return error_; }
  const exit_reason& reason() const noexcept { return reason_; }

  /// Throws the stored error, if any. Caller side, after completion.
  void rethrow_error() const {
    if (!error_) return;
    if (error_ == errc::exited || error_ == errc::start_failed) throw grove::error(error_, reason_);
    if (!reason_.detail().empty()) throw grove::error(error_, reason_.detail());
    throw grove::error(error_);
  }

protected:
  /// Pending again, for another call. Only by the one holder of the only
  /// reference, after a completion it observed (completed(): acquire), so
  /// that nothing else can reach the slot any more.
  void reset_base() noexcept {
    error_ = {};
    reason_ = exit_reason();
    caller_ = pid();
    waiter_.store(nullptr, std::memory_order_relaxed);
    answerers_.store(0, std::memory_order_relaxed);
    state_.store(pending, std::memory_order_relaxed);
  }

  /// Completes it as publish() does, for the slot's only holder on its own
  /// thread: nothing can complete it meanwhile, nor wait on it yet.
  void publish_unshared() noexcept {
    state_.store(done, std::memory_order_relaxed);
    waiter_.store(completed_marker(), std::memory_order_relaxed);
  }

  bool claim() noexcept {
    std::uint8_t expected = pending;
    return state_.compare_exchange_strong(expected, completing, std::memory_order_acq_rel);
  }

  void publish() noexcept {
    state_.store(done, std::memory_order_release);
    reply_waiter* w = waiter_.exchange(completed_marker(), std::memory_order_acq_rel);
    if (w) w->wake(*this);
  }

private:
  static constexpr std::uint8_t pending = 0, completing = 1, done = 2;

  static reply_waiter* completed_marker() noexcept {
    static char marker;
    return reinterpret_cast<reply_waiter*>(&marker);
  }

  std::atomic<std::uint8_t> state_{pending};
  std::error_code error_{};
  exit_reason reason_;
  pid caller_;
  std::atomic<reply_waiter*> waiter_{nullptr};
  std::atomic<std::uint32_t> answerers_{0};
};

/// A slot whose reply is an R.
template <class R>
class reply_slot final : public reply_slot_base {
public:
  /// Any thread. false if the slot already completed (the value is dropped).
  bool set(R value) {
    if (!claim()) return false;
    value_.emplace(std::move(value));
    publish();
    return true;
  }

  /// set(), by the slot's only holder on its own thread (a call that
  /// process made of itself: an erps session's remote call, answered by
  /// handle_call's value). No atomic read-modify-write: nothing else can
  /// reach the slot.
  void set_unshared(R value) {
    value_.emplace(std::move(value));
    publish_unshared();
  }

  /// Caller side, after completion: the reply, or throws the error.
  R take() {
    rethrow_error();
    return std::move(*value_);
  }

  /// See reset_base: a completed slot made pending again, for a caller
  /// that makes many calls and holds the only reference to its last slot
  /// (an erps session answering its client's calls).
  void reset() noexcept {
    value_.reset();
    reset_base();
  }

private:
  std::optional<R> value_;
};

/// This thread's spare slot for replies of type R: calls made one after
/// another on a thread (a process's calls, an erps session's remote calls)
/// reuse one slot instead of allocating one each.
template <class R>
std::shared_ptr<reply_slot<R>>& spare_reply_slot() noexcept {
  thread_local std::shared_ptr<reply_slot<R>> spare;
  return spare;
}

/// A pending slot for a new call: this thread's spare, or a new one.
template <class R>
std::shared_ptr<reply_slot<R>> take_reply_slot() {
  if (auto& spare = spare_reply_slot<R>()) return std::move(spare);
  return std::make_shared<reply_slot<R>>();
}

/// After a call completed and its caller took the answer: keeps the slot
/// as this thread's spare when nothing else holds it any more (no from<R>
/// kept by a server, no timer, no tracking list). The fence pairs with the
/// release of the last other holder's reference count, so whatever that
/// holder did with the slot comes before the reset.
template <class R>
void give_back_reply_slot(std::shared_ptr<reply_slot<R>> slot) noexcept {
  if (slot.use_count() != 1) return;
  std::atomic_thread_fence(std::memory_order_acquire);
  slot->reset();
  spare_reply_slot<R>() = std::move(slot);
}

} // namespace grove::detail
