#include <grove/core/error.hpp>
#include <grove/core/message.hpp>

namespace grove {
namespace {

// In the order of grove::errc.
constexpr const char* core_messages[] = {
    "no such process: the target has exited or never existed",
    "timed out: the target did not answer in time (raise the timeout or check the target is not blocked)",
    "a process called itself: that would wait forever; handle the request directly",
    "the server exited before it replied",
    "the server failed to start",
    "the request reached a process of another server type: check the pid given to server_ref",
    "the target's mailbox is full: it is not keeping up (raise its capacity or slow the sender)",
    "the node is shutting down and starts no new processes",
    "this operation must run inside a grove process",
    "the wait was cancelled because the waiting process is exiting",
    "invalid argument",
    "a handler returned a result that handler may not return",
    "no connection to the target's node: the link between the nodes is down",
};

} // namespace

std::string detail::table_category::message(int value) const {
  if (value >= 1 && static_cast<std::size_t>(value) <= size_) return messages_[value - 1];
  return std::string("unknown ") + name_ + " error " + std::to_string(value);
}

const std::error_category& error_category() noexcept {
  return detail::table_category_of<errc::noconnection>("grove.core", core_messages);
}

void detail::throw_wrong_message_type(const char* wanted, const char* held) {
  throw grove::error(errc::invalid_argument,
                     std::string("message::get<") + wanted + ">: the message holds a " + held);
}

std::error_code make_error_code(errc e) noexcept { return {static_cast<int>(e), error_category()}; }

error::error(std::error_code code)
    : std::system_error(code), text_(std::make_shared<const std::string>(code.message())) {}

error::error(std::error_code code, const std::string& detail)
    : std::system_error(code), text_(std::make_shared<const std::string>(detail.empty() ? code.message() : detail)) {}

error::error(std::error_code code, exit_reason reason)
    : std::system_error(code), text_(std::make_shared<const std::string>(code.message() + ", reason: " + reason.to_string())),
      reason_(std::move(reason)) {}

error::error(std::error_code code, const std::string& detail, exit_reason reason)
    : std::system_error(code),
      text_(std::make_shared<const std::string>((detail.empty() ? code.message() : detail) + ", reason: " +
                                                reason.to_string())),
      reason_(std::move(reason)) {}

} // namespace grove
