// grove/erps/etf.hpp — Erlang's External Term Format: what an Elixir or
// Erlang peer's :erlang.term_to_binary writes, and what its binary_to_term
// reads.
//
//   using grove::erps::term;
//   std::string bytes = grove::erps::etf::encode(term::tuple({term::atom("ok"), term::integer(42)}));
//   term back = grove::erps::etf::decode(bytes);               // {ok,42}
//
// encode() writes exactly what Erlang/OTP 25's term_to_binary/1 writes for
// the same term (minor_version 1: Latin-1 atoms as ATOM_EXT, others as
// SMALL_ATOM_UTF8_EXT; the smallest integer tag; a list of bytes as
// STRING_EXT; map keys in term order), or with minor_version 2 what
// term_to_binary(T, [{minor_version, 2}]) writes (every atom UTF-8), and
// with `compress` what [{compressed, Level}] writes (zlib, only when that
// makes the term smaller). One difference: Erlang writes a map of more
// than 32 keys in the order of its internal hash; grove writes every map
// in key order, which Erlang reads back as the same map.
//
// decode() reads every tag OTP 25 writes for data, compressed terms (tag
// 80), pids, ports, references and funs (kept as opaque bytes), and the
// old forms (FLOAT_EXT, PID_EXT, ...). It refuses ATOM_CACHE_REF and
// distribution headers (only a distribution connection has an atom
// cache). It is bounded: nesting deeper than max_depth, a size that the
// bytes present cannot hold (checked before anything is allocated), an
// inflated size over max_inflated, trailing bytes, and every malformed
// input throw codec_error (erps_errc::bad_payload) saying what and where.
#pragma once

#include <grove/erps/codec.hpp>
#include <grove/erps/term.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace grove::erps::etf {

struct encode_options {
  int minor_version = 1;            ///< 1 (OTP 25's default) or 2 (OTP 26's: every atom UTF-8)
  std::optional<int> compress{};    ///< zlib level 0 to 9, as term_to_binary's {compressed, Level} (default none)
};

struct decode_options {
  std::uint32_t max_depth = default_max_depth;  ///< tuples, lists, maps nested (default 128)
  std::size_t max_inflated = 64u << 20;         ///< largest size a compressed term may inflate to (default 64 MiB)
};

/// The term's ETF bytes, starting with the version byte 131.
std::string encode(const term& t, const encode_options& options = {});
/// Appends them to `out`.
void encode_into(std::string& out, const term& t, const encode_options& options = {});

/// The term `bytes` hold: exactly one, starting with 131. Throws codec_error.
term decode(std::string_view bytes, const decode_options& options = {});

/// The erps payload codec for Erlang peers: ETF as Elixir's erps writes it
/// (a call {Ref, Request}, a reply {Reply, Ref}, a cast and a push the bare
/// term, an error frame a binary), in OTP 25's term_to_binary/1 bytes. Set
/// it as link_options::codec. Term servers and clients (erps/terms.hpp) use
/// it as it is; JSON ones see it through the mapping of erps/term_json.hpp,
/// so they work with an Elixir or Erlang peer unchanged.
const basic_codec<term>& etf_codec() noexcept;

} // namespace grove::erps::etf
