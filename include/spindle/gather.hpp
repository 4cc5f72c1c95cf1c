#pragma once
/// \file
/// Fan-out: gather (fail-fast) and gather_settled (every outcome), over a
/// range of inputs and a function making one task per input. One set of
/// options: a concurrency `limit` (a sliding window, not batches: when an
/// item ends the next starts) and a `per_item_timeout`.
///
/// Tasks are created from inputs only as window slots free up, so a
/// million-item fan-out with a limit holds `limit` coroutine frames at a time.

#include <cstddef>
#include <iterator>
#include <optional>
#include <ranges>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "spindle/cancel_scope.hpp"
#include "spindle/outcome.hpp"
#include "spindle/retry.hpp"
#include "spindle/task.hpp"
#include "spindle/task_group.hpp"

namespace spindle {

/// Options shared by the fan-out family.
struct fanout_options {
  /// Maximum items in flight; 0 means no limit.
  std::size_t limit = 0;
  /// Deadline for each item; nullopt: none. A value is a bound (zero or
  /// negative: already passed, the item times out at once; `forever`:
  /// never). An item that runs out fails with timeout_error
  /// (gather_settled: that item's outcome). See docs/adr/0006.
  std::optional<duration> per_item_timeout{};
  /// Retries of an item's failures (each attempt gets per_item_timeout; the
  /// factory is called again for every attempt).
  std::optional<retry_policy> retry{};
};

}  // namespace spindle

#include "spindle/impl/gather.hpp"

namespace spindle {

/// Runs `fn(input)` for every input, at most `opts.limit` at a time, and
/// returns every outcome in input order — never throws for an item's
/// failure (each failure is that item's outcome: timeout, exception, or a
/// throw from `fn` itself). Every input ends in exactly one outcome.
/// Cancelling the caller cancels the items in flight and throws cancelled_error.
///
/// **Thread safety:** await inside a task on a loop.
/// **Cancellation:** a task group: the items run in its scope.
template <std::ranges::input_range R, class F>
auto gather_settled(R&& inputs, F fn, fanout_options opts = {}) {
  using T = detail::fanout_result_t<F, std::ranges::range_reference_t<R>>;
  return detail::fanout_into<detail::outcome_slots<T>>(std::forward<R>(inputs), std::move(fn),
                                                       std::move(opts));
}

/// Fail-fast fan-out: as gather_settled, but the first failure cancels the
/// items in flight, stops starting new ones, and is rethrown (several
/// simultaneous failures: task_group_error). Returns the values in input order.
///
/// **Thread safety:** await inside a task on a loop.
/// **Cancellation:** as gather_settled.
template <std::ranges::input_range R, class F>
auto gather(R&& inputs, F fn, fanout_options opts = {})
    -> task<std::vector<detail::stored_t<detail::fanout_result_t<F, std::ranges::range_reference_t<R>>>>> {
  using T = detail::fanout_result_t<F, std::ranges::range_reference_t<R>>;
  return detail::fanout_into<detail::value_slots<T>>(std::forward<R>(inputs), std::move(fn), std::move(opts));
}

/// gather_settled over tasks already made (their frames exist already: for
/// large fan-outs prefer the range + factory form, which makes them lazily).
template <class T>
task<std::vector<outcome<T>>> gather_settled(std::vector<task<T>> tasks, fanout_options opts = {}) {
  if (opts.retry) throw usage_error("retry needs a factory: a finished task cannot be run again");
  co_return co_await gather_settled(tasks, detail::take_task{}, opts);
}

/// gather over tasks already made.
template <class T>
task<std::vector<detail::stored_t<T>>> gather(std::vector<task<T>> tasks, fanout_options opts = {}) {
  if (opts.retry) throw usage_error("retry needs a factory: a finished task cannot be run again");
  co_return co_await gather(tasks, detail::take_task{}, opts);
}

/// Fail-fast gather of a fixed set of tasks of possibly different types:
/// `auto [a, b] = co_await gather(fetch_a(), fetch_b());` (void results are
/// std::monostate).
template <class... Ts>
requires(sizeof...(Ts) > 0) task<std::tuple<detail::stored_t<Ts>...>> gather(task<Ts>... ts) {
  co_return co_await detail::gather_tuple(std::index_sequence_for<Ts...>{}, std::move(ts)...);
}

}  // namespace spindle
