#pragma once
/// \file
/// The FIFO of tasks waiting on a sync primitive. Each waiter lives in its
/// awaiter (in the waiting coroutine's frame): no allocation per wait.
///
/// Invariants:
///  1. A waiter is in at most one queue; it leaves it when it is granted
///     (pop_front then grant) or cancelled (its cancel hook unlinks it).
///  2. Granting hands the resource to the waiter before waking it: a woken
///     waiter never has to compete again (no barging, FIFO fairness).

#include <coroutine>
#include <cstddef>
#include <cstdint>

#include "spindle/detail/task_node.hpp"

namespace spindle::detail {

class wait_queue;

struct waiter : cancel_hook {
  task_node* task = nullptr;
  waiter* prev = nullptr;
  waiter* next = nullptr;
  wait_queue* queue = nullptr;
  bool cancelled = false;
  bool closed = false;  // woken because the primitive was closed (channel)
  time_point since{};
};

class wait_queue {
 public:
  /// Parks the running task behind `w`. Returns false (and sets
  /// w.cancelled) without parking when the task is already cancelled.
  bool park(waiter& w, std::coroutine_handle<> h, const char* what);
  /// Removes and returns the oldest waiter (null if none); does not wake it.
  waiter* pop_front() noexcept;
  /// Wakes `w` (already popped).
  static void wake(waiter& w) noexcept { w.task->wake(); }
  [[nodiscard]] bool empty() const noexcept { return head_ == nullptr; }
  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  /// Total time the granted waiters waited, and how many were cancelled.
  [[nodiscard]] std::uint64_t cancelled_waits() const noexcept { return cancelled_; }

 private:
  static void on_cancel(cancel_hook* h) noexcept;
  void unlink(waiter& w) noexcept;

  waiter* head_ = nullptr;
  waiter* tail_ = nullptr;
  std::size_t size_ = 0;
  std::uint64_t cancelled_ = 0;
};

}  // namespace spindle::detail
