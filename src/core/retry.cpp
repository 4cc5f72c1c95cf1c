#include "spindle/retry.hpp"

#include <random>

#include <algorithm>

#include "spindle/error.hpp"
#include "spindle/event_loop.hpp"
#include "spindle/outcome.hpp"

namespace spindle {

std::function<bool(const std::exception_ptr&)> retry_on_kinds(std::vector<std::string> kinds) {
  std::vector<error_kind> ids;
  for (const auto& name : kinds) {
    const auto k = error_kind_from_name(name);
    if (!k) throw usage_error("retry_on_kinds: unknown error kind '" + name + "' (see spindle::error_kind)");
    ids.push_back(*k);
  }
  return retry_on_kinds(std::move(ids));
}

std::function<bool(const std::exception_ptr&)> retry_on_kinds(std::vector<error_kind> kinds) {
  return [kinds = std::move(kinds)](const std::exception_ptr& e) {
    return std::find(kinds.begin(), kinds.end(), error_kind_of(e)) != kinds.end();
  };
}

namespace detail {

namespace {

std::uint64_t splitmix64(std::uint64_t& s) noexcept {
  std::uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// A seed per retry() call without a std::random_device per call (that
// costs microseconds: it was most of a fan-out item's CPU): one per thread,
// then splitmix64 steps.
std::uint64_t fresh_seed() {
  thread_local std::uint64_t source = [] {
    std::random_device rd;
    return (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
  }();
  return splitmix64(source);
}

}  // namespace

backoff::backoff(const retry_policy& p)
    : base_(p.base_delay), cap_(p.max_delay), state_(p.seed ? *p.seed : fresh_seed()) {}

duration backoff::next(unsigned failed_attempt) {
  // base * 2^(n-1), saturating at the cap (and before overflowing).
  duration upper = base_;
  for (unsigned i = 1; i < failed_attempt && upper < cap_; ++i) upper *= 2;
  if (upper > cap_) upper = cap_;
  if (upper <= duration::zero()) return duration::zero();
  // Full jitter: uniform in [0, upper]. Modulo keeps the draw reproducible
  // across standard libraries (splitmix64 is specified here; the standard
  // distributions' algorithms are not); its bias is below 2^-40 here.
  const auto span = static_cast<std::uint64_t>(upper.count()) + 1;
  return duration(static_cast<duration::rep>(splitmix64(state_) % span));
}

time_point task_now() { return current_task("retry").loop().now(); }

bool should_retry(const retry_policy& p, const std::exception_ptr& e) {
  if (is_cancellation(e)) return false;
  if (current_task("retry").cancel_requested()) return false;
  if (p.retryable) return p.retryable(e);
  static const auto by_default =
      retry_on_kinds(std::vector<error_kind>{error_kind::timeout, error_kind::connect});
  return by_default(e);
}

duration retry_delay(const retry_policy& p, backoff& b, unsigned attempt, const std::exception_ptr& e) {
  duration d = b.next(attempt);
  if (p.retry_after) {
    if (std::optional<duration> at_least = p.retry_after(e); at_least && *at_least > d) d = *at_least;
  }
  return d;
}

}  // namespace detail
}  // namespace spindle
