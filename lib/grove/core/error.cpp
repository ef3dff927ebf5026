#include <grove/core/error.hpp>

namespace grove {
namespace {

class grove_category final : public std::error_category {
public:
  const char* name() const noexcept override { return "grove"; }

  std::string message(int value) const override {
    switch (static_cast<errc>(value)) {
    case errc::noproc:
      return "no such process: the target has exited or never existed";
    case errc::timeout:
      return "timed out: the target did not answer in time (raise the timeout or check the target is not blocked)";
    case errc::calling_self:
      return "a process called itself: that would wait forever; handle the request directly";
    case errc::exited:
      return "the server exited before it replied";
    case errc::start_failed:
      return "the server failed to start";
    case errc::wrong_server:
      return "the request reached a process of another server type: check the pid given to server_ref";
    case errc::mailbox_full:
      return "the target's mailbox is full: it is not keeping up (raise its capacity or slow the sender)";
    case errc::node_stopped:
      return "the node is shutting down and starts no new processes";
    case errc::not_in_process:
      return "this operation must run inside a grove process";
    case errc::cancelled:
      return "the wait was cancelled because the waiting process is exiting";
    case errc::invalid_argument:
      return "invalid argument";
    case errc::already_started:
      return "a child with this id is already running under the supervisor";
    case errc::already_present:
      return "a child spec with this id is already present (stopped): restart_child or delete_child it first";
    case errc::not_found:
      return "no such child";
    case errc::running:
      return "the child is running: terminate_child it first";
    case errc::restarting:
      return "the child is being restarted by its supervisor; try again";
    case errc::max_children:
      return "the dynamic supervisor already has max_children children";
    case errc::already_registered:
      return "the name is already registered to another live process (whereis it, or pick another name)";
    case errc::remote:
      return "the remote side answered the call with an error";
    case errc::bad_payload:
      return "the payload could not be decoded";
    case errc::disconnected:
      return "not connected: the connection is down and reconnecting (retry, or call with call_options{.if_not_ready = when_not_ready::wait} to wait for it)";
    }
    return "unknown grove error";
  }
};

} // namespace

const std::error_category& error_category() noexcept {
  static const grove_category category;
  return category;
}

std::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), error_category()};
}

error::error(errc code) : std::system_error(make_error_code(code)) {}

error::error(errc code, const std::string& detail)
    : std::system_error(make_error_code(code), detail) {}

error::error(errc code, exit_reason reason)
    : std::system_error(make_error_code(code), "reason: " + reason.to_string()),
      reason_(std::move(reason)) {}

error::error(errc code, const std::string& detail, exit_reason reason)
    : std::system_error(make_error_code(code), detail + ", reason: " + reason.to_string()),
      reason_(std::move(reason)) {}

} // namespace grove
