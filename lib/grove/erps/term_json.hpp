// grove/erps/term_json.hpp — Erlang terms and JSON values, each way: how a
// server or client written for JSON works on an ETF link (the ETF codec
// seen as a JSON codec), and a term server on a JSON link.
//
//   nlohmann::json j = grove::erps::etf::to_json(term);   // throws codec_error if it has no JSON form
//   grove::erps::term t = grove::erps::etf::from_json(j);
#pragma once

#include <grove/erps/json_codec.hpp>
#include <grove/erps/term.hpp>

namespace grove::erps::etf {

// So that a handler written for JSON serves an ETF peer, and a JSON value
// reaches one. The rules, each way:
//
//   term                         JSON                    JSON            term
//   integer (to 64 bits)         number                  null            nil
//   float                        number                  true, false     true, false
//   true, false                  true, false             integer         integer
//   nil, undefined               null                    float           float
//   other atom                   string                  string          binary
//   binary (UTF-8)               string                  array           list
//   list, [], tuple              array                   object          map, binary keys
//   map (atom or binary keys)    object
//
// Refused (codec_error naming the kind): integers past 64 bits, binaries
// that are not UTF-8, bit strings, improper lists, maps with other keys
// (or two keys naming one string), pids, ports, references and funs.

nlohmann::json to_json(const term& t);
term from_json(const nlohmann::json& j);

} // namespace grove::erps::etf
