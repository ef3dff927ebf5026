// grove/core/error.hpp — the one error vocabulary of grove.
//
// Convention: fallible grove operations throw grove::error; its code() is in
// grove::error_category() and compares equal to a grove::errc:
//
//   try { co_await ref.call(get{}); }
//   catch (const grove::error& e) { if (e.code() == grove::errc::timeout) ... }
#pragma once

#include <grove/core/exit_reason.hpp>

#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>

namespace grove {

enum class errc {
  noproc = 1,        ///< the target process is not alive
  timeout,           ///< no answer within the deadline
  calling_self,      ///< a process called itself (it would wait for itself forever)
  exited,            ///< the server exited before it replied; reason() says why
  start_failed,      ///< a server's constructor or init stopped it; reason() says why
  wrong_server,      ///< a typed call reached a process of another server type
  mailbox_full,      ///< the target's bounded mailbox rejected the message
  node_stopped,      ///< the node is shutting down and takes no new processes
  not_in_process,    ///< an operation that needs a calling process ran outside one
  cancelled,         ///< the waiting process was killed or the wait was cancelled
  invalid_argument,  ///< an option or argument is out of range; the text names it
  already_started,   ///< a supervisor already runs a child with that id
  already_present,   ///< a supervisor already holds a (stopped) child spec with that id
  not_found,         ///< no child (or name) with that id
  running,           ///< the child is running; terminate it first
  restarting,        ///< the child is being restarted by its supervisor
  max_children,      ///< a dynamic supervisor is at its max_children
  disconnected,      ///< a connection is not connected (a call while it was down, or one in flight when it dropped)
  already_registered, ///< a registry name is held by another live process
  remote,            ///< the remote side answered with an error; what() has its text
  bad_payload,       ///< a payload could not be decoded (malformed, or nested deeper than max_depth); what() says why
};

const std::error_category& error_category() noexcept;
std::error_code make_error_code(errc e) noexcept;

/// What grove throws. code() is a grove::errc; reason() carries the exit
/// reason where one applies (exited, start_failed).
class error : public std::system_error {
public:
  explicit error(errc code);
  error(errc code, const std::string& detail);
  error(errc code, exit_reason reason);
  /// `detail` says what failed (e.g. which child); `reason` why.
  error(errc code, const std::string& detail, exit_reason reason);

  const std::optional<exit_reason>& reason() const noexcept { return reason_; }

private:
  std::optional<exit_reason> reason_;
};

} // namespace grove

template <>
struct std::is_error_code_enum<grove::errc> : std::true_type {};
