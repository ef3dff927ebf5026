// grove/core/error.hpp — the one error type of grove, with a category per
// layer.
//
// The rule, as in Asio: everything grove throws is a grove::error, a
// std::system_error whose code() is a std::error_code. Each layer owns its
// codes and its category — core (grove::errc, here), supervisor
// (supervisor_errc), connection (connection_errc), registry (registry_errc),
// erps (erps_errc) — declared in that layer's error.hpp; a new layer adds
// its own enum and category without touching core. Compare a code with the
// enum value, whatever the layer:
//
//   try { co_await ref.call(get{}); }
//   catch (const grove::error& e) {
//     if (e.code() == grove::errc::timeout) ...
//     if (e.code() == grove::connection_errc::disconnected) ...
//   }
//
// A bad option or argument is errc::invalid_argument, whose text names the
// option and the expected form (`daemon_options.port: 0: expected ...`).
// reason() carries the exit reason where one applies (exited,
// start_failed). grove::testing (grove/core/testing.hpp) turns a call's
// error into a value for tests.
#pragma once

#include <grove/core/exit_reason.hpp>

#include <cstddef>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>

namespace grove {

/// Core's codes (category "grove.core").
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
  bad_directive,     ///< a handler returned what that handler may not return; the text says which
  noconnection,      ///< the target is on another node and the link to it is down (grove/dist)
};

const std::error_category& error_category() noexcept;
std::error_code make_error_code(errc e) noexcept;

/// What grove throws. code() is in one of grove's categories; reason()
/// carries the exit reason where one applies (exited, start_failed).
/// what() is the detail given (a whole sentence: what failed and why), or
/// the code's message when there is none; code().message() is always the
/// generic text.
class error : public std::system_error {
public:
  explicit error(std::error_code code);
  error(std::error_code code, const std::string& detail);
  error(std::error_code code, exit_reason reason);
  /// `detail` says what failed (e.g. which child); `reason` why.
  error(std::error_code code, const std::string& detail, exit_reason reason);

  const char* what() const noexcept override { return text_->c_str(); }
  const std::optional<exit_reason>& reason() const noexcept { return reason_; }

private:
  std::shared_ptr<const std::string> text_; // shared: copying an exception must not throw
  std::optional<exit_reason> reason_;
};

namespace detail {
/// A category whose messages are a table indexed by code - 1: how each
/// layer defines its own in a few lines.
class table_category final : public std::error_category {
public:
  template <std::size_t N>
  constexpr table_category(const char* name, const char* const (&messages)[N]) noexcept
      : name_(name), messages_(messages), size_(N) {}
  const char* name() const noexcept override { return name_; }
  std::string message(int value) const override;

private:
  const char* name_;
  const char* const* messages_;
  std::size_t size_;
};

/// The one category of the enum whose last code is `Last`, with a message
/// per code from 1 to Last (checked at compile time).
template <auto Last, std::size_t N>
const std::error_category& table_category_of(const char* name, const char* const (&messages)[N]) noexcept {
  static_assert(N == static_cast<std::size_t>(Last), "one message per code, in the enum's order");
  static const table_category category(name, messages);
  return category;
}
} // namespace detail

} // namespace grove

template <>
struct std::is_error_code_enum<grove::errc> : std::true_type {};
