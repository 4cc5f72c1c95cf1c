#pragma once
/// \file
/// first_of: the first task to succeed wins; the others are cancelled.

#include <exception>
#include <optional>
#include <utility>
#include <vector>

#include "spindle/task.hpp"
#include "spindle/task_group.hpp"

namespace spindle {

namespace detail {
template <class T>
task<void> contender(task<T> t, std::optional<T>& winner, std::vector<std::exception_ptr>& failures,
                     task_group& g) {
  try {
    T v = co_await std::move(t);
    if (!winner) {
      winner.emplace(std::move(v));
      g.cancel();  // the others lose
    }
  } catch (const cancelled_error&) {
    // Lost the race (or the whole race was cancelled: the group rethrows that).
  } catch (...) {
    failures.push_back(std::current_exception());
  }
}
}  // namespace detail

/// Runs the tasks concurrently; the first to succeed gives the result and
/// the others are cancelled (and awaited). Failures do not stop the race;
/// when every task failed, the only failure is rethrown, or task_group_error
/// with all of them.
///
///     auto fastest = co_await first_of(std::move(mirrors));  // happy-eyeballs style
///
/// **Thread safety:** await inside a task on a loop.
/// **Cancellation:** cancelling the caller cancels every contender.
template <class T>
task<T> first_of(std::vector<task<T>> tasks) {
  if (tasks.empty()) throw usage_error("first_of needs at least one task");
  std::optional<T> winner;
  std::vector<std::exception_ptr> failures;
  co_await with_task_group([&](task_group& g) -> task<void> {
    for (auto& t : tasks) g.spawn(detail::contender(std::move(t), winner, failures, g), "first_of");
    co_return;
  });
  if (winner) co_return std::move(*winner);
  if (failures.size() == 1) std::rethrow_exception(failures.front());
  throw task_group_error(std::move(failures));
}

/// first_of over a fixed set of tasks of one type.
template <class T, class... More>
task<T> first_of(task<T> first, task<More>... more) {
  std::vector<task<T>> v;
  v.reserve(1 + sizeof...(More));
  v.push_back(std::move(first));
  (v.push_back(std::move(more)), ...);
  co_return co_await first_of(std::move(v));
}

}  // namespace spindle
