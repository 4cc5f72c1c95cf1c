#pragma once
// Template bodies of the fan-out family (included from gather.hpp).

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

namespace detail {

template <class F, class Item>
using fanout_result_t = typename std::invoke_result_t<F&, Item>::value_type;

template <class T>
using stored_t = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

/// Shared by the workers of one fan-out (all on one loop thread).
template <class It, class Sentinel, class F, class T>
struct fanout_state {
  It it;
  Sentinel end;
  F& fn;
  fanout_options opts;
  std::size_t next_index = 0;
  std::vector<std::optional<outcome<T>>> results;

  /// Where an item's outcome goes: its slot in input order.
  std::suspend_never deliver(std::size_t index, outcome<T>&& o) {
    if (results.size() <= index) results.resize(index + 1);
    results[index].emplace(std::move(o));
    return {};
  }
};

/// The fan-out's retry policy for one item's retry(), not copied: the
/// fan-out's state outlives every item (a non-owning aliasing pointer, so no
/// reference count either).
inline std::shared_ptr<const retry_policy> borrowed_policy(const retry_policy& p) noexcept {
  return {std::shared_ptr<const retry_policy>{}, &p};
}

/// Runs one item, bounded by the per-item timeout. Not a coroutine: without
/// a timeout the item's own task is returned (no frame of its own).
template <class T>
task<T> run_item(task<T> t, std::optional<duration> per_item_timeout) {
  if (per_item_timeout) return with_timeout(*per_item_timeout, std::move(t));
  return t;
}

/// Takes the next input (synchronously, before the first suspension, so
/// workers never see the same input) and runs it: with the retry policy if
/// any (the input is copied, the factory called per attempt), each attempt
/// bounded by the per-item timeout. A throw from the factory is the item's
/// failure.
template <class T, class State>
task<T> next_item(State& st) {
  using input_t = std::remove_cvref_t<decltype(*st.it)>;
  if constexpr (std::is_copy_constructible_v<input_t>) {
    if (st.opts.retry) {
      input_t input = *st.it;
      ++st.it;
      auto attempt = [&] { return run_item(st.fn(input), st.opts.per_item_timeout); };
      co_return co_await retry(borrowed_policy(*st.opts.retry), attempt);
    }
  } else {
    if (st.opts.retry)
      throw usage_error("fan-out retry needs copyable inputs (each attempt remakes the task)");
  }
  std::optional<task<T>> t;
  std::exception_ptr failure;
  try {
    t.emplace(st.fn(*st.it));
  } catch (...) {
    failure = std::current_exception();
  }
  ++st.it;
  if (failure) std::rethrow_exception(failure);
  co_return co_await run_item(std::move(*t), st.opts.per_item_timeout);
}

/// A window slot: takes the next input, runs it, delivers its outcome,
/// repeats. `settle`: an item's failure becomes its outcome (gather_settled,
/// as_completed) instead of failing the worker (gather, whose group then
/// cancels the rest).
template <bool settle, class T, class State>
task<void> fanout_worker(State& st) {
  while (st.it != st.end) {
    const std::size_t index = st.next_index++;
    std::optional<outcome<T>> o;
    std::exception_ptr failure;
    try {
      if constexpr (std::is_void_v<T>) {
        co_await next_item<T>(st);
        o.emplace();
      } else {
        o.emplace(co_await next_item<T>(st));
      }
    } catch (...) {
      failure = std::current_exception();
    }
    if (failure) {
      // Once the fan-out itself is cancelled (from outside, or by gather's
      // first failure), what items throw is a consequence, not an outcome:
      // the fan-out ends with cancelled_error (or gather's first failure).
      if (current_task("gather").cancel_requested()) throw cancelled_error();
      if (!settle) std::rethrow_exception(failure);
      o.emplace(failure);
    }
    co_await st.deliver(index, std::move(*o));
  }
}

/// How many window slots: the limit, or one per input when unlimited.
template <class R>
std::size_t window_size(R& inputs, const fanout_options& opts) {
  std::size_t workers = opts.limit == 0 ? static_cast<std::size_t>(-1) : opts.limit;
  if constexpr (std::ranges::sized_range<R>) {
    const auto n = static_cast<std::size_t>(std::ranges::size(inputs));
    if (workers > n) workers = n;
  } else if (opts.limit == 0) {
    // Unsized and unlimited: one slot per input means counting them first.
    workers = static_cast<std::size_t>(std::ranges::distance(inputs));
  }
  return workers;
}

/// Runs the workers of `st` in a task group.
template <bool settle, class T, class State>
task<void> run_window(State& st, std::size_t workers) {
  co_await with_task_group([&](task_group& g) -> task<void> {
    for (std::size_t w = 0; w < workers; ++w) g.spawn(fanout_worker<settle, T>(st), "fanout-worker");
    co_return;
  });
}

template <bool settle, class R, class F>
auto fanout(R&& inputs, F fn, fanout_options opts)
    -> task<std::vector<outcome<fanout_result_t<F, std::ranges::range_reference_t<R>>>>> {
  using T = fanout_result_t<F, std::ranges::range_reference_t<R>>;
  using It = std::ranges::iterator_t<R>;
  using Sentinel = std::ranges::sentinel_t<R>;
  const std::size_t workers = window_size(inputs, opts);
  fanout_state<It, Sentinel, F, T> st{std::ranges::begin(inputs), std::ranges::end(inputs), fn, opts, 0, {}};
  if constexpr (std::ranges::sized_range<R>) st.results.reserve(std::ranges::size(inputs));
  co_await run_window<settle, T>(st, workers);
  std::vector<outcome<T>> out;
  out.reserve(st.results.size());
  for (auto& r : st.results) {
    if (!r) throw cancelled_error();  // only when the group was cancelled, which rethrows first
    out.push_back(std::move(*r));
  }
  co_return out;
}

template <class T>
task<void> store_into(task<T> t, std::optional<stored_t<T>>& slot) {
  if constexpr (std::is_void_v<T>) {
    co_await std::move(t);
    slot.emplace();
  } else {
    slot.emplace(co_await std::move(t));
  }
}

template <class... Ts, std::size_t... I>
task<std::tuple<stored_t<Ts>...>> gather_tuple(std::index_sequence<I...>, task<Ts>... ts) {
  std::tuple<std::optional<stored_t<Ts>>...> slots;
  co_await with_task_group([&](task_group& g) -> task<void> {
    (g.spawn(store_into<Ts>(std::move(ts), std::get<I>(slots))), ...);
    co_return;
  });
  co_return std::tuple<stored_t<Ts>...>(std::move(*std::get<I>(slots))...);
}

}  // namespace detail

namespace detail {
/// The factory for a vector of ready-made tasks: hands each one out once.
struct take_task {
  template <class T>
  task<T> operator()(task<T>& t) const noexcept {
    return std::move(t);
  }
};
}  // namespace detail

}  // namespace spindle
