// grove/erps/terms.hpp — erps servers and clients written against Erlang
// terms (erps/term.hpp) rather than JSON: what an Elixir or Erlang peer
// sends, with nothing lost to a mapping (atoms stay atoms, tuples tuples,
// big integers exact).
//
//   class echo : public grove::erps::term_server {
//   public:
//     grove::erps::term handle_call(grove::erps::term_call c, grove::from<grove::erps::term>) { return c.request; }
//   };
//   grove::erps::daemon_options o;
//   o.link.codec = &grove::erps::etf::etf_codec();
//   auto d = co_await grove::erps::daemon::start<echo>(node, o);
//
//   grove::erps::term_client_options co;
//   co.port = d.port();
//   co.link.codec = &grove::erps::etf::etf_codec();
//   auto c = co_await grove::erps::term_client::start(node, co);
//   grove::erps::term r = co_await c.call(grove::erps::term::tuple({grove::erps::term::atom("get"), grove::erps::term::binary("k")}));
//
// On an ETF link they use the codec as it is. On a JSON link they see it
// through etf::from_json / etf::to_json (erps/term_json.hpp), so a term
// server also serves JSON clients, within that mapping.
#pragma once

#include <grove/erps/client.hpp>
#include <grove/erps/etf.hpp>
#include <grove/erps/server.hpp>
#include <grove/erps/term.hpp>

namespace grove::erps {

extern template class basic_server<term>;
extern template struct basic_client_options<term>;
extern template class basic_client<term>;
extern template class basic_client_ref<term>;

using term_call = basic_call<term>;
using term_cast = basic_cast<term>;
/// A server of Erlang terms.
using term_server = basic_server<term>;

/// A client of Erlang terms.
using term_client = basic_client<term>;
using term_client_options = basic_client_options<term>;
using term_client_ref = basic_client_ref<term>;
using term_push_message = basic_push_message<term>;
using term_setup_reply = basic_setup_reply<term>;

} // namespace grove::erps
