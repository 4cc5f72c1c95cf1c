#pragma once
/// \file
/// Deadlines and cancellation scopes: with_timeout, move_on_after, shielded,
/// current_deadline and current_stop_token. The model is Trio's: a scope
/// bounds everything awaited inside it; scopes nest; the innermost deadline
/// wins; a cancelled scope delivers cancelled_error at every await inside it
/// until it is left; a shielded scope is immune to the scopes around it.

#include <optional>
#include <stop_token>
#include <type_traits>
#include <utility>

#include "spindle/clock.hpp"
#include "spindle/detail/await_traits.hpp"
#include "spindle/detail/scope_node.hpp"
#include "spindle/detail/task_node.hpp"
#include "spindle/error.hpp"
#include "spindle/task.hpp"

namespace spindle {

namespace detail {

/// Enters a scope for the running task for its lifetime (LIFO).
class scope_guard {
 public:
  scope_guard(time_point deadline, bool shield, const char* what);
  ~scope_guard();
  scope_guard(const scope_guard&) = delete;
  scope_guard& operator=(const scope_guard&) = delete;
  [[nodiscard]] scope_node& node() noexcept { return node_; }
  /// True when this scope's own deadline cancelled it (not an outer scope).
  [[nodiscard]] bool expired() const noexcept { return node_.cancelled_by_deadline(); }

 private:
  task_node* task_;
  scope_node node_;
};

[[nodiscard]] time_point deadline_after(duration d);
[[noreturn]] void throw_timeout(duration d);

template <class R, class A>
task<R> timeout_impl(time_point deadline, duration shown, A aw) {
  scope_guard scope(deadline, false, "with_timeout");
  try {
    co_return co_await std::forward<A>(aw);
  } catch (const cancelled_error&) {
    if (scope.expired()) throw_timeout(shown);
    throw;
  }
}

template <class R, class A>
task<std::conditional_t<std::is_void_v<R>, bool, std::optional<R>>> move_on_impl(time_point deadline, A aw) {
  scope_guard scope(deadline, false, "move_on_after");
  try {
    if constexpr (std::is_void_v<R>) {
      co_await std::forward<A>(aw);
      co_return true;
    } else {
      co_return std::optional<R>(co_await std::forward<A>(aw));
    }
  } catch (const cancelled_error&) {
    if (!scope.expired()) throw;
  }
  if constexpr (std::is_void_v<R>) {
    co_return false;
  } else {
    co_return std::nullopt;
  }
}

template <class R, class A>
task<R> shield_impl(A aw) {
  scope_guard scope(scope_node::no_deadline, true, "shielded");
  co_return co_await std::forward<A>(aw);
}

}  // namespace detail

/// Awaits `aw` with a deadline `d` from now. If the deadline passes first,
/// everything awaited inside is cancelled (its cleanup runs) and the await
/// throws timeout_error. An enclosing scope's earlier deadline or
/// cancellation still applies, and surfaces as its own error.
///
/// **Thread safety:** await inside a task on a loop.
/// **Cancellation:** a cancellation scope (see docs/cancellation.md).
template <class A>
[[nodiscard]] auto with_timeout(duration d, A&& aw) {
  using R = detail::await_result_t<A>;
  return detail::timeout_impl<R, detail::stored_awaitable_t<A>>(detail::deadline_after(d), d,
                                                                std::forward<A>(aw));
}

/// As with_timeout, with an absolute deadline on the loop's clock.
template <class A>
[[nodiscard]] auto with_deadline(time_point t, A&& aw) {
  using R = detail::await_result_t<A>;
  return detail::timeout_impl<R, detail::stored_awaitable_t<A>>(t, duration::zero(), std::forward<A>(aw));
}

/// Awaits `aw` for at most `d`; when the deadline passes first, the work
/// inside is cancelled and the result is empty: std::optional<R> (a bool,
/// true when completed, for void).
///
/// **Thread safety:** await inside a task on a loop.
/// **Cancellation:** a cancellation scope.
template <class A>
[[nodiscard]] auto move_on_after(duration d, A&& aw) {
  using R = detail::await_result_t<A>;
  return detail::move_on_impl<R, detail::stored_awaitable_t<A>>(detail::deadline_after(d),
                                                                std::forward<A>(aw));
}

/// As move_on_after, with an absolute deadline.
template <class A>
[[nodiscard]] auto move_on_at(time_point t, A&& aw) {
  using R = detail::await_result_t<A>;
  return detail::move_on_impl<R, detail::stored_awaitable_t<A>>(t, std::forward<A>(aw));
}

/// Awaits `aw` shielded from every enclosing scope's cancellation and
/// deadline: for cleanup that must finish (close a connection, write a final
/// record) even in a cancelled task. Bound it with with_timeout inside.
///
/// **Thread safety:** await inside a task on a loop.
/// **Cancellation:** immune to outer scopes; scopes inside it still work.
template <class A>
[[nodiscard]] auto shielded(A&& aw) {
  using R = detail::await_result_t<A>;
  return detail::shield_impl<R, detail::stored_awaitable_t<A>>(std::forward<A>(aw));
}

/// The earliest deadline that applies to the running task's current point
/// (time_point::max() when none).
[[nodiscard]] time_point current_deadline();

/// A stop_token that is stop-requested when the running task's innermost
/// scope is cancelled (by a deadline, a cancel, or an enclosing scope). For
/// blocking code and polling loops.
[[nodiscard]] std::stop_token current_stop_token();

/// Raises cancelled_error now if the running task is cancelled (a checkpoint
/// for long computations that have no await).
void check_cancelled();

}  // namespace spindle
