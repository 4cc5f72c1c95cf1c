#pragma once
/// \file
/// retry: run an operation again after retryable failures, with exponential
/// backoff and full jitter, bounded by attempts and by an overall deadline.

#include <concepts>
#include <cstdint>
#include <exception>
#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "spindle/cancel_scope.hpp"
#include "spindle/clock.hpp"
#include "spindle/error.hpp"
#include "spindle/sleep.hpp"
#include "spindle/task.hpp"

namespace spindle {

/// How to retry.
///
/// Delay before attempt n+1 (n = 1, 2, ...): full jitter (AWS architecture
/// blog's formula): uniform in [0, min(max_delay, base_delay * 2^(n-1))],
/// drawn from splitmix64 (seeded from `seed`, or per thread at random). A failure
/// that says how long to wait (retry_after, e.g. HTTP 429 Retry-After) waits
/// at least that long.
struct retry_policy {
  /// Attempts in all, the first included (1 = no retry).
  unsigned max_attempts = 3;
  duration base_delay = std::chrono::milliseconds(100);
  duration max_delay = std::chrono::seconds(10);
  /// Bounds all attempts and sleeps together; nullopt: none (zero or
  /// negative: already passed). A retry whose sleep would end past it is
  /// not started: the last error is rethrown.
  std::optional<duration> overall_timeout{};
  /// Which failures are worth another attempt. Default: kinds "timeout" and
  /// "connect" (retry_on_kinds). Cancellation is never retried.
  std::function<bool(const std::exception_ptr&)> retryable{};
  /// A minimum wait the failure asks for (null or nullopt: none).
  std::function<std::optional<duration>(const std::exception_ptr&)> retry_after{};
  /// Called before each retry's sleep: attempt just failed (1-based), its
  /// error, the delay chosen.
  std::function<void(unsigned, const std::exception_ptr&, duration)> on_retry{};
  /// Seed for the jitter (tests); nullopt draws one from std::random_device.
  std::optional<std::uint64_t> seed{};
};

/// A retryable() predicate accepting spindle errors of the given kinds.
[[nodiscard]] std::function<bool(const std::exception_ptr&)> retry_on_kinds(std::vector<error_kind> kinds);
/// The same by name; an unknown name throws usage_error (a typo would
/// otherwise silently never retry).
[[nodiscard]] std::function<bool(const std::exception_ptr&)> retry_on_kinds(std::vector<std::string> kinds);

namespace detail {
/// The full-jitter backoff sequence of a policy (shared with tests).
class backoff {
 public:
  explicit backoff(const retry_policy& p);
  /// Delay after `failed_attempt` (1-based) failed.
  [[nodiscard]] duration next(unsigned failed_attempt);

 private:
  duration base_, cap_;
  std::uint64_t state_;  // splitmix64: 8 bytes, a few ns per draw, specified output
};
/// The running task's loop clock (keeps event_loop out of this header).
[[nodiscard]] time_point task_now();
[[nodiscard]] bool should_retry(const retry_policy& p, const std::exception_ptr& e);
[[nodiscard]] duration retry_delay(const retry_policy& p, backoff& b, unsigned attempt,
                                   const std::exception_ptr& e);

// The policy held by value (retry's own copy) or shared (not copied per call).
inline const retry_policy& policy_of(const retry_policy& p) noexcept { return p; }
inline const retry_policy& policy_of(const std::shared_ptr<const retry_policy>& p) noexcept { return *p; }

template <class R, class P, class F>
task<R> retry_loop(P holder, F make, time_point deadline) {
  const retry_policy& p = policy_of(holder);
  std::optional<backoff> b;  // made at the first failure: most calls succeed at once
  for (unsigned attempt = 1;; ++attempt) {
    std::exception_ptr failure;
    try {
      co_return co_await make();
    } catch (...) {
      failure = std::current_exception();
    }
    if (attempt >= p.max_attempts || !should_retry(p, failure)) std::rethrow_exception(failure);
    if (!b) b.emplace(p);
    duration delay = retry_delay(p, *b, attempt, failure);
    if (deadline != time_point::max() && saturating_add(task_now(), delay) >= deadline) {
      std::rethrow_exception(failure);  // the next attempt could not finish in time
    }
    if (p.on_retry) p.on_retry(attempt, failure, delay);
    co_await sleep_for(delay);
  }
}

// Not a coroutine itself: without an overall timeout, the loop's task is
// the whole retry (one frame per call, not two).
template <class R, class P, class F>
task<R> start_retry(P holder, F make, std::optional<duration> overall) {
  if (overall) {
    const time_point deadline = deadline_after(*overall);
    return with_timeout(*overall, retry_loop<R>(std::move(holder), std::move(make), deadline));
  }
  return retry_loop<R>(std::move(holder), std::move(make), time_point::max());
}
}  // namespace detail

/// Awaits `make()` (a callable returning a fresh task each time) until it
/// succeeds, a failure is not retryable, the attempts run out, or the
/// overall timeout would be passed; then rethrows the last failure (or
/// timeout_error if the overall timeout expires during an attempt).
///
///     auto body = co_await retry({.max_attempts = 5}, [&] { return fetch(url); });
///
/// **Thread safety:** await inside a task on a loop.
/// **Cancellation:** every attempt and every sleep is a cancellation point;
/// cancellation is rethrown at once, never retried.
template <class F>
auto retry(retry_policy policy, F make) -> task<detail::await_result_t<std::invoke_result_t<F&>>> {
  const std::optional<duration> overall = policy.overall_timeout;
  return detail::start_retry<detail::await_result_t<std::invoke_result_t<F&>>>(std::move(policy),
                                                                               std::move(make), overall);
}

/// As above, with a policy shared by many calls (every item of a fan-out):
/// the policy (three std::functions) is not copied per call. It must not be
/// null.
/// (A template on the pointer's type, so that `retry({}, make)` still means
/// a default retry_policy.)
template <class P, class F>
requires std::same_as<std::remove_cvref_t<P>, std::shared_ptr<const retry_policy>>
auto retry(P&& shared, F make) -> task<detail::await_result_t<std::invoke_result_t<F&>>> {
  std::shared_ptr<const retry_policy> policy = std::forward<P>(shared);
  if (!policy) throw usage_error("retry: null policy");
  const std::optional<duration> overall = policy->overall_timeout;
  return detail::start_retry<detail::await_result_t<std::invoke_result_t<F&>>>(std::move(policy),
                                                                               std::move(make), overall);
}

}  // namespace spindle
