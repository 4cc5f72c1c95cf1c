#pragma once
/// \file
/// task_group: structured concurrency (Trio's nursery). Children run
/// concurrently inside the group's cancel scope; the group is left only when
/// every child has ended; the first failure cancels the rest.

#include <coroutine>
#include <cstddef>
#include <exception>
#include <source_location>
#include <string>
#include <utility>
#include <vector>

#include "spindle/cancel_scope.hpp"
#include "spindle/detail/typed_task_node.hpp"
#include "spindle/error.hpp"
#include "spindle/task.hpp"

namespace spindle {

/// Thrown by a task group when more than one child failed: every failure,
/// in the order they happened (the first one first). A single failure is
/// rethrown as itself.
class task_group_error : public error {
 public:
  explicit task_group_error(std::vector<std::exception_ptr> errors);
  [[nodiscard]] error_kind kind_id() const noexcept override { return error_kind::group; }
  [[nodiscard]] const std::vector<std::exception_ptr>& errors() const noexcept { return errors_; }
  [[nodiscard]] std::exception_ptr first() const noexcept { return errors_.front(); }

 private:
  std::vector<std::exception_ptr> errors_;
};

/// The nursery handed to the body of with_task_group.
///
/// **Thread safety:** use only on the loop's thread, from inside the group
/// (the body or a child).
/// **Cancellation:** the group is a cancel scope: cancel() cancels the body
/// and every child (the group then ends normally); a child failure cancels
/// them too and is rethrown; cancellation from outside reaches every child.
class task_group {
 public:
  task_group(const task_group&) = delete;
  task_group& operator=(const task_group&) = delete;

  /// Starts `t` as a child. Its value is discarded (capture what you need).
  template <class T>
  void spawn(task<T> t, std::string name = {}, std::source_location where = std::source_location::current()) {
    adopt(new detail::typed_task_node<T>(*loop_, std::move(t), std::move(name), where));
  }

  /// Cancels the body and every child; the group then ends without error.
  void cancel() noexcept { scope_.node().cancel(); }
  /// Children still running.
  [[nodiscard]] std::size_t running() const noexcept { return alive_; }

 private:
  template <class F>
  friend task<void> with_task_group(F body);

  task_group();
  void adopt(detail::task_node* child);
  static void on_child_done(detail::task_node* child, void* self) noexcept;
  void record_failure(std::exception_ptr e) noexcept;
  /// The body threw: a failure (recorded, cancels the group) or a cancellation.
  void on_body_exception(std::exception_ptr e) noexcept;
  /// After every child ended: rethrows the group's outcome (see with_task_group).
  void finish();

  struct wait_all {
    task_group* g;
    [[nodiscard]] bool await_ready() const noexcept { return g->alive_ == 0; }
    void await_suspend(std::coroutine_handle<> h) noexcept;
    void await_resume() const noexcept {}
  };

  event_loop* loop_;
  detail::scope_guard scope_;
  std::size_t alive_ = 0;
  detail::task_node* waiter_ = nullptr;
  std::vector<std::exception_ptr> failures_;
  std::exception_ptr body_cancelled_;
};

/// Runs `body(group)` and the children it spawns into the group, and returns
/// when all of them have ended. The first failure (of the body or a child)
/// cancels everything else in the group; once all have ended it is rethrown
/// (several failures: task_group_error with all of them). No child outlives
/// the group.
///
///     co_await with_task_group([&](task_group& g) -> task<void> {
///       for (auto& url : urls) g.spawn(fetch(url));
///       co_return;
///     });
///
/// **Thread safety:** await inside a task on a loop.
/// **Cancellation:** waiting for the children is not interrupted by
/// cancellation (the children are cancelled instead, and awaited).
template <class F>
task<void> with_task_group(F body) {
  task_group g;
  try {
    co_await body(g);
  } catch (...) {
    g.on_body_exception(std::current_exception());
  }
  co_await task_group::wait_all{&g};
  g.finish();
}

}  // namespace spindle
