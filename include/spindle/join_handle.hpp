#pragma once
/// \file
/// join_handle<T>: the result of event_loop::spawn.

#include <coroutine>
#include <cstdint>
#include <string>
#include <utility>

#include "spindle/detail/typed_task_node.hpp"
#include "spindle/error.hpp"

namespace spindle {

namespace detail {
/// The untyped part of awaiting a join_handle (src/join_handle.cpp).
class join_wait : public cancel_hook {
 public:
  explicit join_wait(task_node* target) noexcept : target_(target) {}
  [[nodiscard]] bool ready() const noexcept { return target_->done(); }
  bool suspend(std::coroutine_handle<> h);
  void check_resume() const;

 private:
  static void cancel(cancel_hook* self) noexcept;
  task_node* target_;
  task_node* self_ = nullptr;
  bool cancelled_ = false;
};
void check_loop_owner(const task_node& n, const char* method);
}  // namespace detail

/// A handle to a spawned task: await it for the task's value (or its
/// exception), or cancel it.
///
/// Destroying the handle does not cancel the task (it runs on, detached);
/// a failure that nobody observed is reported through the loop's
/// diagnostic handler when both the task has ended and the handle is gone.
///
/// **Thread safety:** use only on the loop's thread (checked: other threads
/// get wrong_thread_error). Move-only.
/// **Cancellation:** awaiting the handle is a cancellation point: if the
/// awaiting task is cancelled, the await throws cancelled_error and the
/// joined task keeps running. cancel() on a finished task is a no-op.
template <class T>
class [[nodiscard]] join_handle {
 public:
  join_handle() noexcept = default;
  explicit join_handle(detail::typed_task_node<T>* n) noexcept : node_(n) { node_->add_handle(); }
  join_handle(join_handle&& o) noexcept : node_(std::exchange(o.node_, nullptr)) {}
  join_handle& operator=(join_handle&& o) noexcept {
    if (this != &o) {
      reset();
      node_ = std::exchange(o.node_, nullptr);
    }
    return *this;
  }
  join_handle(const join_handle&) = delete;
  join_handle& operator=(const join_handle&) = delete;
  ~join_handle() { reset(); }

  [[nodiscard]] bool valid() const noexcept { return node_ != nullptr; }
  /// True once the task has finished (value, exception or cancellation).
  [[nodiscard]] bool done() const noexcept { return node_ != nullptr && node_->done(); }
  [[nodiscard]] std::uint64_t id() const noexcept { return node_ != nullptr ? node_->id() : 0; }
  [[nodiscard]] const std::string& name() const noexcept { return node_->name(); }

  /// Requests cancellation: delivered as cancelled_error at the task's next
  /// cancellable await; a task that has not started never starts.
  void cancel() {
    if (node_ == nullptr) return;
    detail::check_loop_owner(*node_, "join_handle::cancel");
    node_->request_cancel();
  }

  /// Lets the task run on without a handle.
  void detach() noexcept { reset(); }

  auto operator co_await() & noexcept { return awaiter{node_}; }
  auto operator co_await() && noexcept { return awaiter{node_}; }

 private:
  struct awaiter {
    detail::typed_task_node<T>* node;
    detail::join_wait wait{node};
    [[nodiscard]] bool await_ready() const noexcept {
      return node == nullptr || (wait.ready() && !detail::cancel_pending());
    }
    bool await_suspend(std::coroutine_handle<> h) { return wait.suspend(h); }
    decltype(auto) await_resume() {
      if (node == nullptr) throw usage_error("awaited an empty join_handle");
      wait.check_resume();
      if (node->result_taken()) throw usage_error("join_handle awaited after its result was taken");
      return node->take();
    }
  };

  void reset() noexcept {
    if (node_ != nullptr) std::exchange(node_, nullptr)->release_handle();
  }

  detail::typed_task_node<T>* node_ = nullptr;
};

}  // namespace spindle
