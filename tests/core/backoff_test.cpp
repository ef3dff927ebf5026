#include <grove/core/backoff.hpp>

#include <grove/core/error.hpp>

#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace std::chrono_literals;
using std::chrono::duration_cast;
using std::chrono::microseconds;

namespace {
std::vector<long long> draw_us(grove::backoff_policy b, std::uint64_t seed, int n) {
  grove::backoff_random random(seed);
  std::vector<long long> out;
  for (int i = 0; i < n; ++i) out.push_back(duration_cast<microseconds>(b.next(random)).count());
  return out;
}

std::string error_text(auto&& f) {
  try {
    f();
  } catch (const grove::error& e) {
    CHECK(e.code() == grove::errc::invalid_argument);
    return e.what();
  }
  return {};
}
} // namespace

TEST_CASE("exponential_backoff_without_jitter_grows_by_the_multiplier_up_to_the_cap_exactly") {
  auto b = grove::backoff_policy::exponential({.jitter = 0.0});
  grove::backoff_random random(1);
  std::vector<long long> ms;
  for (int i = 0; i < 14; ++i) ms.push_back(std::chrono::duration_cast<std::chrono::milliseconds>(b.next(random)).count());
  // 1 s x 1.6^n: 1000, 1600, 2560, 4096, 6553.6, ... then the 120 s cap.
  CHECK(ms == std::vector<long long>{1000, 1600, 2560, 4096, 6553, 10485, 16777, 26843, 42949, 68719, 109951, 120000,
                                     120000, 120000});
  b.reset();
  CHECK(b.next(random) == 1s);
}

TEST_CASE("exponential_backoff_uses_grpc_defaults_and_a_seed_gives_an_exact_sequence") {
  const grove::exponential_backoff_options d;
  CHECK(d.initial == 1s);
  CHECK(d.multiplier == 1.6);
  CHECK(d.jitter == 0.2);
  CHECK(d.max == 120s);
  const auto seq = draw_us(grove::backoff_policy::exponential(), 42, 6);
  CHECK(seq == std::vector<long long>{1102062, 1688980, 2818196, 3500069, 7610745, 8783159});
  CHECK(draw_us(grove::backoff_policy::exponential(), 42, 6) == seq); // the same seed, the same delays
  CHECK(draw_us(grove::backoff_policy::exponential(), 43, 6) != seq);
}

TEST_CASE("exponential_backoff_stays_within_its_jitter_of_each_step_and_resets") {
  auto b = grove::backoff_policy::exponential();
  grove::backoff_random random(2024);
  double base = 1.0;
  for (int i = 0; i < 40; ++i) {
    const double s = std::chrono::duration<double>(b.next(random)).count();
    CHECK(s >= base * 0.8 - 1e-6);
    CHECK(s <= base * 1.2 + 1e-6);
    base = std::min(base * 1.6, 120.0);
  }
  b.reset();
  const double first = std::chrono::duration<double>(b.next(random)).count();
  CHECK(first >= 0.8);
  CHECK(first <= 1.2);
}

TEST_CASE("decorrelated_jitter_draws_between_base_and_three_times_the_last_delay_capped") {
  const auto seq = draw_us(grove::backoff_policy::decorrelated_jitter({.base = 100ms, .max = 2s}), 7, 6);
  CHECK(seq == std::vector<long long>{250877, 719543, 341712, 925142, 477961, 173487});
  auto b = grove::backoff_policy::decorrelated_jitter({.base = 100ms, .max = 2s});
  grove::backoff_random random(99);
  grove::duration last = 100ms;
  for (int i = 0; i < 200; ++i) {
    const grove::duration d = b.next(random);
    CHECK(d >= 100ms);
    CHECK(d <= std::min<grove::duration>(2s, 3 * last));
    last = d;
  }
  b.reset();
  CHECK(b.next(random) <= 300ms);
}

TEST_CASE("constant_backoff_always_waits_the_same") {
  auto b = grove::backoff_policy::constant(250ms);
  grove::backoff_random random;
  for (int i = 0; i < 5; ++i) CHECK(b.next(random) == 250ms);
}

TEST_CASE("backoffs_are_values") {
  auto a = grove::backoff_policy::exponential();
  auto b = a;
  CHECK(a == b);
  grove::backoff_random random(1);
  b.next(random);
  CHECK(a != b); // state is part of the value
  b.reset();
  CHECK(a == b);
  CHECK(grove::backoff_policy() == grove::backoff_policy::exponential());
  CHECK(grove::backoff_policy::constant(1s) != grove::backoff_policy::constant(2s));
}

TEST_CASE("a_bad_backoff_knob_is_named_with_its_expected_form") {
  CHECK(error_text([] { grove::backoff_policy::exponential({.initial = 0s}); }).find("initial") != std::string::npos);
  CHECK(error_text([] { grove::backoff_policy::exponential({.multiplier = 0.5}); }).find("multiplier") != std::string::npos);
  CHECK(error_text([] { grove::backoff_policy::exponential({.jitter = 1.5}); }).find("jitter is 1.5") != std::string::npos);
  CHECK(error_text([] { grove::backoff_policy::exponential({.initial = 5s, .max = 1s}); }).find("max") != std::string::npos);
  CHECK(error_text([] { grove::backoff_policy::decorrelated_jitter({.base = 0s}); }).find("base") != std::string::npos);
  CHECK(error_text([] { grove::backoff_policy::decorrelated_jitter({.base = 2s, .max = 1s}); }).find("max") != std::string::npos);
  CHECK(error_text([] { grove::backoff_policy::constant(-1s); }).find("expected >= 0") != std::string::npos);
}
