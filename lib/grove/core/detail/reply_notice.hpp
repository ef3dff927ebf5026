// Internal: a reply_waiter that, when its slot completes (on whichever
// thread completes it), sends one message to a process and deletes itself.
// For a process that holds a call's slot for someone else (an erps
// session for its client, a dist link for the other node) and must hear,
// in its own mailbox, that the answer is there. Every slot it waits on must
// be completed at the latest when that process ends (fail it then), so the
// notice is always freed.
#pragma once

#include <grove/core/detail/reply_slot.hpp>
#include <grove/core/process.hpp>

#include <utility>

namespace grove::detail {

template <class Message>
class reply_notice final : public reply_waiter {
public:
  reply_notice(pid to, Message m) : to_(to), message_(std::move(m)) {}
  void wake(reply_slot_base&) noexcept override {
    try {
      grove::send(to_, std::move(message_));
    } catch (...) { // a send fails only when memory does; the caller then times out
    }
    delete this;
  }

private:
  pid to_;
  Message message_;
};

/// Sends `m` to `to` once `slot` completes (at once if it has).
template <class Message>
void notify_when_answered(reply_slot_base& slot, pid to, Message m) {
  slot.set_waiter(new reply_notice<Message>(to, std::move(m)));
}

} // namespace grove::detail
