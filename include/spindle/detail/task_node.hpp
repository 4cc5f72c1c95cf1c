#pragma once
/// \file
/// The scheduling unit of an event_loop: a spawned task's node, and the
/// intrusive pieces the loop's queues are made of.
///
/// Invariants (all state is touched only on the owning loop's thread):
///  1. A node is in the ready queue at most once: only wake() puts it there,
///     and only one party can wake a suspended task (the awaiter it
///     registered with, or its cancel hook — whichever comes first clears
///     `hook_`).
///  2. While a task is suspended at a cancellable await, `hook_` points at
///     that await's registration; request_cancel() calls it, and the hook
///     removes every registration (timer, fd waiter, join waiter) before it
///     wakes the task. Nothing dangles after a cancelled await.
///  3. The loop holds one reference while the task is alive; each
///     join_handle holds one. The node (and the coroutine frame it owns) is
///     freed when the last reference goes.

#include <coroutine>
#include <cstdint>
#include <exception>
#include <source_location>
#include <string>

#include "spindle/detail/frame_allocator.hpp"
#include "spindle/detail/scope_node.hpp"

namespace spindle {
class event_loop;
namespace detail {

/// An entry of the loop's ready queue (or of its thread-safe inbox).
struct ready_node {
  ready_node* next_ready = nullptr;
  void (*run_ready)(ready_node*) noexcept = nullptr;
  /// Frees an entry that will never run (loop destruction); null for tasks.
  void (*drop)(ready_node*) noexcept = nullptr;
};

/// A suspended task's registration at a cancellable await.
struct cancel_hook {
  /// Removes the registration, records the cancellation for await_resume,
  /// and wakes the task.
  void (*on_cancel)(cancel_hook*) noexcept = nullptr;
};

class promise_base;

class task_node : public ready_node {
 public:
  task_node(event_loop& loop, std::coroutine_handle<> root, promise_base& promise, std::string&& name,
            std::source_location where) noexcept;
  task_node(const task_node&) = delete;
  task_node& operator=(const task_node&) = delete;

  static void* operator new(std::size_t size) { return frame_allocate(size); }
  static void operator delete(void* p, std::size_t size) noexcept { frame_deallocate(p, size); }

  [[nodiscard]] event_loop& loop() const noexcept { return *loop_; }
  [[nodiscard]] const std::string& name() const noexcept { return name_; }
  [[nodiscard]] const std::source_location& where() const noexcept { return where_; }
  [[nodiscard]] std::uint64_t id() const noexcept { return id_; }
  [[nodiscard]] bool done() const noexcept { return done_; }
  /// True when an await of this task must throw cancelled_error now: a
  /// scope on its path is cancelled and no shield is in between.
  [[nodiscard]] bool cancel_requested() const noexcept { return scope_node::effectively_cancelled(scope_); }
  /// The innermost cancel scope of the task (its root scope when none).
  [[nodiscard]] scope_node* scope() const noexcept { return scope_; }
  void set_scope(scope_node* s) noexcept { scope_ = s; }
  [[nodiscard]] scope_node& root_scope() noexcept { return root_scope_; }
  /// Fires the cancel hook of the await the task is suspended at, if any
  /// (called by a cancelled scope, see scope_node).
  void interrupt() noexcept;
  /// The outcome's exception (null on success); valid once done().
  [[nodiscard]] const std::exception_ptr& exception() const noexcept;

  /// Called by an awaiter's await_suspend: remember where to resume and how
  /// to cancel this wait.
  void suspend(std::coroutine_handle<> resume_at, cancel_hook* hook) noexcept {
    resume_ = resume_at;
    hook_ = hook;
  }
  /// Puts the task back on the ready queue (see invariant 1).
  void wake() noexcept;
  /// For an awaiter that queued its task itself with the hook kept (yield):
  /// drops the registration once resumed.
  void clear_hook() noexcept { hook_ = nullptr; }
  /// Cancellation request; a no-op when done. Delivered at the task's next
  /// cancellable await (at once if it is suspended at one now); a task that
  /// has not started yet never starts.
  void request_cancel() noexcept;

  // Reference counting (invariant 3).
  void add_ref() noexcept { ++refs_; }
  void release() noexcept;
  void add_handle() noexcept {
    ++handles_;
    add_ref();
  }
  void release_handle() noexcept;

  /// Join support: at most one task waits for this one at a time.
  [[nodiscard]] task_node* joiner() const noexcept { return joiner_; }
  void set_joiner(task_node* j) noexcept { joiner_ = j; }
  /// Marks the outcome as seen by someone (so a failure is not reported).
  void mark_observed() noexcept { observed_ = true; }
  [[nodiscard]] bool result_taken() const noexcept { return taken_; }
  void mark_taken() noexcept { taken_ = observed_ = true; }

  /// Called from the root coroutine's final suspend.
  void on_root_done() noexcept;

  // Intrusive list of the tasks of one scope (scope_node::add_task).
  task_node* scope_prev = nullptr;
  task_node* scope_next = nullptr;

  /// Called when a task_group child ends (set by the group).
  void (*on_done_hook)(task_node*, void*) noexcept = nullptr;
  void* on_done_arg = nullptr;

  // Intrusive list of the loop's live tasks.
  task_node* live_prev = nullptr;
  task_node* live_next = nullptr;

 protected:
  virtual ~task_node();

 private:
  friend struct loop_access;
  friend class spindle::event_loop;
  static void run(ready_node* self) noexcept;
  void report_unobserved() noexcept;

  event_loop* loop_;
  std::coroutine_handle<> root_;  // owned: destroyed with the node
  promise_base* promise_;
  std::coroutine_handle<> resume_;
  cancel_hook* hook_ = nullptr;
  task_node* joiner_ = nullptr;
  scope_node root_scope_;
  scope_node* scope_ = &root_scope_;
  std::string name_;
  std::source_location where_;
  std::uint64_t id_ = 0;
  std::uint32_t refs_ = 1;  // the loop's reference while alive
  std::uint32_t handles_ = 0;
  bool started_ = false;
  bool done_ = false;
  bool observed_ = false;
  bool taken_ = false;
  bool abandoned_ = false;
};

/// Per-thread state: the loop running on this thread and the task it is
/// running right now (null inside plain callbacks).
struct thread_context {
  event_loop* loop = nullptr;
  task_node* task = nullptr;
};
extern constinit thread_local thread_context tls_context;

/// True when the running task (if any) has a cancellation pending. Every
/// cancellation point's ready path checks it first (Trio's rule: a
/// checkpoint always checks), so a cancelled task cannot go on through
/// awaits that happen not to suspend.
[[nodiscard]] inline bool cancel_pending() noexcept {
  const task_node* t = tls_context.task;
  return t != nullptr && t->cancel_requested();
}

/// True when `e` holds a cancelled_error.
[[nodiscard]] bool is_cancellation(const std::exception_ptr& e) noexcept;

/// The running task, or throws usage_error naming `what` when called
/// outside a task (for example from a plain callback or another thread).
[[nodiscard]] task_node& current_task(const char* what);

}  // namespace detail
}  // namespace spindle
