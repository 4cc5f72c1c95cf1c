#pragma once
/// \file
/// Cancel scopes (Trio's model): the tree that decides whether a task's
/// await must throw cancelled_error, and that interrupts waiting tasks when a
/// scope is cancelled.
///
/// Invariants (all on the owning loop's thread):
///  1. Every task has a root scope (embedded in its node); its innermost
///     scope is `task_node::scope()`. A task's scopes nest strictly (they
///     live in its coroutine frames, entered and left in LIFO order).
///  2. A scope's parent is the enclosing scope of the same task, or, for a
///     task_group child's root scope, the group's scope in the parent task.
///     A scope is linked into its parent's child list while it exists, and
///     each task is linked into the task list of its innermost scope.
///  3. A task is cancelled when some scope on the path from its innermost
///     scope outwards, stopping after the first shielded scope, is cancelled.
///  4. cancel() interrupts (fires the cancel hook of) every task reachable
///     through unshielded child scopes; it never runs user code other than
///     stop_callbacks registered on the scope's stop_token.

#include <cstdint>
#include <memory>
#include <stop_token>

#include "spindle/clock.hpp"
#include "spindle/detail/timer_heap.hpp"

namespace spindle {
class event_loop;
namespace detail {

class task_node;

class scope_node {
 public:
  scope_node() noexcept = default;
  scope_node(const scope_node&) = delete;
  scope_node& operator=(const scope_node&) = delete;

  /// Cancels this scope (sticky until it is left). `by_deadline` records
  /// that its own deadline expired (with_timeout turns that into timeout_error).
  void cancel(bool by_deadline = false) noexcept;
  [[nodiscard]] bool cancelled() const noexcept { return cancelled_; }
  [[nodiscard]] bool cancelled_by_deadline() const noexcept { return by_deadline_; }
  [[nodiscard]] bool shielded() const noexcept { return shield_; }
  [[nodiscard]] time_point own_deadline() const noexcept { return deadline_; }

  /// Attaches under `parent` (may be null for a root) on `loop`.
  void attach(event_loop& loop, scope_node* parent, bool shield, time_point deadline);
  /// A root scope with no deadline: the common case of every spawned task.
  void attach_root(event_loop& loop) noexcept {
    loop_ = &loop;
    attached_ = true;
  }
  /// Detaches from the parent and removes the deadline timer.
  void detach() noexcept {
    if (!attached_) return;
    if (parent_ == nullptr && !timer_.queued()) {
      attached_ = false;  // a plain root scope: nothing is linked
      return;
    }
    detach_linked();
  }

  /// A stop_token that is stop-requested when this scope (or an enclosing
  /// unshielded one) is cancelled. Created on first use.
  [[nodiscard]] std::stop_token stop_token();

  // Task list membership (tasks whose innermost scope this is).
  void add_task(task_node* t) noexcept;
  void remove_task(task_node* t) noexcept;

  [[nodiscard]] scope_node* parent() const noexcept { return parent_; }

  /// True if a scope on the path from `s` outwards (up to the first shield)
  /// is cancelled (invariant 3). Inline: every cancellable await asks.
  [[nodiscard]] static bool effectively_cancelled(const scope_node* s) noexcept {
    for (; s != nullptr; s = s->parent_) {
      if (s->cancelled_) return true;
      if (s->shield_) return false;
    }
    return false;
  }
  /// The earliest deadline on that same path (time_point::max() if none).
  [[nodiscard]] static time_point effective_deadline(const scope_node* s) noexcept {
    time_point d = time_point::max();
    for (; s != nullptr; s = s->parent_) {
      if (s->deadline_ < d) d = s->deadline_;
      if (s->shield_) break;
    }
    return d;
  }

  static constexpr time_point no_deadline = time_point::max();

 private:
  void detach_linked() noexcept;
  void propagate() noexcept;  // interrupt tasks and child scopes (invariant 4)
  static void on_deadline(timer_entry* e) noexcept;

  struct deadline_timer : timer_entry {
    scope_node* scope = nullptr;
  };

  event_loop* loop_ = nullptr;
  scope_node* parent_ = nullptr;
  scope_node* first_child_ = nullptr;
  scope_node* prev_sibling_ = nullptr;
  scope_node* next_sibling_ = nullptr;
  task_node* tasks_ = nullptr;
  time_point deadline_ = no_deadline;
  deadline_timer timer_;
  std::unique_ptr<std::stop_source> stop_;
  bool cancelled_ = false;
  bool by_deadline_ = false;
  bool shield_ = false;
  bool attached_ = false;
};

}  // namespace detail
}  // namespace spindle
