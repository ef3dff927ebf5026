// Internal: what travels in a mailbox.
#pragma once

#include <grove/core/detail/reply_slot.hpp>
#include <grove/core/message.hpp>

#include <cstdint>
#include <memory>

namespace grove {
class gen_server;
}

namespace grove::detail {

class handler_outcome;
struct envelope;

/// Typed entry point for a call or cast, instantiated at the call site for
/// one (server type, request type) pair, so dispatch needs no lookup.
using dispatch_fn = handler_outcome (*)(gen_server& server, envelope& env);

/// system: a request to a gen_server's loop itself (grove::stop), whatever
/// the server's type; body is an exit_message.
enum class envelope_kind : std::uint8_t { info, call, cast, system };

struct envelope {
  message body{};
  std::shared_ptr<reply_slot_base> reply{}; // calls only
  dispatch_fn dispatch = nullptr;         // calls and casts
  const void* server_tag = nullptr;       // identifies the server type dispatch expects
  std::uint64_t timer_id = 0;             // set when a send_after timer produced it
  envelope_kind kind = envelope_kind::info;
  std::uint8_t readiness = 0;             // calls: a grove::when_not_ready, or served_when_not_ready
};

} // namespace grove::detail
