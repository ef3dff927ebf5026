// grove/core/backoff.hpp — how long to wait before trying again (a
// connection's reconnect, a fetcher's retry, a tenant's restart): exponential with jitter (gRPC's connection backoff),
// decorrelated jitter (AWS's), or constant.
//
//   auto policy = grove::backoff_policy::exponential(); // 1 s, x1.6, +-20 %, at most 120 s
//   grove::backoff_random rng(42);                       // seeded: the same delays every run
//   grove::duration first = policy.next(rng);            // 0.8 s .. 1.2 s
//   grove::duration second = policy.next(rng);           // 1.28 s .. 1.92 s
//   policy.reset();                                      // after a successful connect
//
// A backoff is a value (copy it, compare it); next() depends only on the
// policy, its state and the random source, so a seeded source gives the same
// sequence on every platform (the source is std::mt19937_64, whose output the
// standard fixes, and its numbers become delays by grove's own arithmetic,
// not by a library distribution).
#pragma once

#include <chrono>
#include <cstdint>
#include <random>
#include <variant>

namespace grove {

using duration = std::chrono::steady_clock::duration;

/// The random numbers a backoff draws from. Seed it for a repeatable sequence.
class backoff_random {
public:
  /// Seeded from std::random_device.
  backoff_random();
  explicit backoff_random(std::uint64_t seed) : engine_(seed) {}

  /// Uniform in [0, 1), from the top 53 bits of one draw.
  double uniform() { return static_cast<double>(engine_() >> 11) * 0x1.0p-53; }

private:
  std::mt19937_64 engine_;
};

/// gRPC's connection backoff: the n-th delay is initial * multiplier^(n-1),
/// capped at max, then spread by +-jitter of itself.
struct exponential_backoff_options {
  duration initial = std::chrono::seconds(1);  ///< the first delay before jitter (default 1 s)
  double multiplier = 1.6;                     ///< growth per attempt (default 1.6; >= 1)
  double jitter = 0.2;                         ///< spread, a fraction of the delay (default 0.2 = +-20 %; 0 to 1)
  duration max = std::chrono::seconds(120);    ///< cap before jitter (default 120 s)
  friend bool operator==(const exponential_backoff_options&, const exponential_backoff_options&) = default;
};

/// AWS's "decorrelated jitter": each delay is uniform between base and three
/// times the previous one, capped at max.
struct decorrelated_jitter_options {
  duration base = std::chrono::seconds(1);     ///< the smallest delay and the first upper bound's third (default 1 s)
  duration max = std::chrono::seconds(120);    ///< cap (default 120 s)
  friend bool operator==(const decorrelated_jitter_options&, const decorrelated_jitter_options&) = default;
};

class backoff_policy {
public:
  /// Default: exponential with gRPC's defaults.
  backoff_policy() : backoff_policy(exponential()) {}

  /// Throws grove::error (invalid_argument) naming the bad knob.
  static backoff_policy exponential(exponential_backoff_options options = {});
  static backoff_policy decorrelated_jitter(decorrelated_jitter_options options = {});
  static backoff_policy constant(duration delay);

  /// The delay before the next attempt; advances the state.
  duration next(backoff_random& random);
  /// Back to the first delay (after a successful connect).
  void reset() noexcept { state_ = duration::zero(); }

  friend bool operator==(const backoff_policy&, const backoff_policy&) = default;

private:
  using policy = std::variant<exponential_backoff_options, decorrelated_jitter_options, duration>;
  explicit backoff_policy(policy p) : policy_(p) {}

  policy policy_;
  duration state_ = duration::zero(); // exponential: last delay before jitter; decorrelated: last delay
};

} // namespace grove
