// The ETF decoder's fuzz body, shared by the libFuzzer target (etf_fuzz.cpp)
// and a doctest that replays the seed corpus in every ordinary build
// (tests/erps/fuzz_corpus_test.cpp).
//
// Whatever the bytes, decode() either throws codec_error or returns a
// term; a term it returns must encode (both minor versions, compressed or
// not) to bytes that decode to the same term, and encoding must be
// stable: encode(decode(encode(t))) == encode(t).
#pragma once

#include <grove/erps/etf.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

namespace grove_fuzz {

inline void etf_require(bool ok) {
  if (!ok) std::abort();
}

inline int decode_etf(const std::uint8_t* data, std::size_t size) {
  namespace etf = grove::erps::etf;
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  grove::erps::term t;
  try {
    t = etf::decode(bytes, {.max_depth = 64, .max_inflated = 1 << 20});
  } catch (const grove::erps::codec_error&) {
    return 0; // refused: fine
  }
  for (const etf::encode_options& o : {etf::encode_options{}, etf::encode_options{.minor_version = 2},
                                       etf::encode_options{.compress = 6}}) {
    const std::string again = etf::encode(t, o);
    const grove::erps::term back = etf::decode(again, {.max_depth = 200, .max_inflated = 64 << 20});
    etf_require(back == t);
    etf_require(etf::encode(back, o) == again);
  }
  return 0;
}

} // namespace grove_fuzz
