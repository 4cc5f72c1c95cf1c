#pragma once
/// \file
/// sleep_for / sleep_until: suspend the running task on the loop's clock.

#include <coroutine>

#include "spindle/clock.hpp"
#include "spindle/detail/task_node.hpp"
#include "spindle/detail/timer_heap.hpp"

namespace spindle {

namespace detail {
/// Awaiter of sleep_for / sleep_until (bodies in src/sleep.cpp).
class sleep_awaiter : public cancel_hook, public timer_entry {
 public:
  sleep_awaiter(bool relative, duration d, time_point t) noexcept
      : relative_(relative), delay_(d), until_(t) {}
  // Movable before it is awaited (wrappers such as with_timeout store it).
  sleep_awaiter(sleep_awaiter&&) noexcept = default;
  sleep_awaiter& operator=(sleep_awaiter&&) = delete;
  [[nodiscard]] bool await_ready() const noexcept { return false; }
  bool await_suspend(std::coroutine_handle<> h);
  void await_resume() const;

 private:
  static void on_timer(timer_entry* self) noexcept;
  static void on_cancel_hook(cancel_hook* self) noexcept;
  static void on_yield_cancel(cancel_hook* self) noexcept;
  task_node* task_ = nullptr;
  bool relative_;
  bool yielding_ = false;
  bool cancelled_ = false;
  duration delay_;
  time_point until_;
};
}  // namespace detail

/// Suspends the running task for `d` on its loop's clock. A zero or negative
/// duration still yields to the other ready tasks once.
///
/// **Thread safety:** await only inside a task running on a loop.
/// **Cancellation:** a cancellation point: throws cancelled_error, and the
/// timer is removed from the loop.
[[nodiscard]] inline detail::sleep_awaiter sleep_for(duration d) noexcept { return {true, d, {}}; }

/// Suspends the running task until `t` on its loop's clock.
///
/// **Thread safety:** await only inside a task running on a loop.
/// **Cancellation:** as sleep_for.
[[nodiscard]] inline detail::sleep_awaiter sleep_until(time_point t) noexcept { return {false, {}, t}; }

/// Yields to the other ready tasks once (a zero sleep).
[[nodiscard]] inline detail::sleep_awaiter yield() noexcept { return {true, duration::zero(), {}}; }

}  // namespace spindle
