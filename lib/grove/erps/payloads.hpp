// grove/erps/payloads.hpp — erps servers and clients of payloads
// (erps/payload.hpp): JSON kept as the text it came as. A call's request
// reaches the handler unparsed (checked, and sharing its frame's buffer); a
// handler that forwards, stores or echoes it never builds a tree, and one
// that needs to look inside parses it (value()) or part of it.
//
//   class echo : public grove::erps::payload_server {
//   public:
//     grove::erps::payload handle_call(grove::erps::payload_call c) { return std::move(c.request); }
//   };
//   auto d = co_await grove::erps::daemon::start<echo>(node, options);
//
// They work on JSON links (the JSON codec has a view of payloads); a daemon
// whose codec is ETF refuses a payload server when it starts.
#pragma once

#include <grove/erps/client.hpp>
#include <grove/erps/payload.hpp>
#include <grove/erps/server.hpp>

namespace grove::erps {

extern template class basic_server<payload>;
extern template struct basic_client_options<payload>;
extern template class basic_client<payload>;
extern template class basic_client_ref<payload>;

using payload_call = basic_call<payload>;
using payload_cast = basic_cast<payload>;
/// A server of payloads.
using payload_server = basic_server<payload>;

/// A client of payloads.
using payload_client = basic_client<payload>;
using payload_client_options = basic_client_options<payload>;
using payload_client_ref = basic_client_ref<payload>;
using payload_push_message = basic_push_message<payload>;
using payload_setup_reply = basic_setup_reply<payload>;

} // namespace grove::erps
