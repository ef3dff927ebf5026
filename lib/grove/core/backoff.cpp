#include <grove/core/backoff.hpp>

#include <grove/core/error.hpp>

#include <algorithm>
#include <cmath>
#include <string>

namespace grove {
namespace {

using nanos = std::chrono::duration<double, std::nano>;

duration to_duration(double ns) { return std::chrono::nanoseconds(std::llround(ns)); }

std::string ms(duration d) {
  return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(d).count()) + " ms";
}

[[noreturn]] void bad(const std::string& what) { throw grove::error(errc::invalid_argument, what); }

} // namespace

backoff_random::backoff_random() : engine_(std::random_device{}()) {}

backoff_policy backoff_policy::exponential(exponential_backoff_options o) {
  if (o.initial <= duration::zero()) bad("exponential_backoff_options::initial is " + ms(o.initial) + " (expected > 0)");
  if (!(o.multiplier >= 1.0)) {
    bad("exponential_backoff_options::multiplier is " + std::to_string(o.multiplier) + " (expected >= 1)");
  }
  if (!(o.jitter >= 0.0 && o.jitter <= 1.0)) {
    bad("exponential_backoff_options::jitter is " + std::to_string(o.jitter) + " (expected 0 to 1)");
  }
  if (o.max < o.initial) {
    bad("exponential_backoff_options::max is " + ms(o.max) + " (expected >= initial, " + ms(o.initial) + ")");
  }
  return backoff_policy(o);
}

backoff_policy backoff_policy::decorrelated_jitter(decorrelated_jitter_options o) {
  if (o.base <= duration::zero()) bad("decorrelated_jitter_options::base is " + ms(o.base) + " (expected > 0)");
  if (o.max < o.base) bad("decorrelated_jitter_options::max is " + ms(o.max) + " (expected >= base, " + ms(o.base) + ")");
  return backoff_policy(o);
}

backoff_policy backoff_policy::constant(duration delay) {
  if (delay < duration::zero()) bad("constant backoff delay is " + ms(delay) + " (expected >= 0)");
  return backoff_policy(delay);
}

duration backoff_policy::next(backoff_random& random) {
  if (auto* e = std::get_if<exponential_backoff_options>(&policy_)) {
    // gRPC: the first delay is `initial`, each next one `multiplier` times
    // the last, capped at max; jitter spreads each by +-jitter of itself.
    const double base = state_ == duration::zero()
                            ? nanos(e->initial).count()
                            : std::min(nanos(state_).count() * e->multiplier, nanos(e->max).count());
    state_ = to_duration(base);
    return to_duration(base * (1.0 + e->jitter * (2.0 * random.uniform() - 1.0)));
  }
  if (auto* d = std::get_if<decorrelated_jitter_options>(&policy_)) {
    // AWS: uniform between base and three times the last delay, capped.
    const double low = nanos(d->base).count();
    const double high = 3.0 * (state_ == duration::zero() ? low : nanos(state_).count());
    state_ = to_duration(std::min(nanos(d->max).count(), low + random.uniform() * (high - low)));
    return state_;
  }
  return std::get<duration>(policy_);
}

} // namespace grove
