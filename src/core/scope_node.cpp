#include "spindle/detail/scope_node.hpp"

#include "detail/loop_access.hpp"
#include "spindle/detail/task_node.hpp"
#include "spindle/event_loop.hpp"

namespace spindle::detail {

void scope_node::attach(event_loop& loop, scope_node* parent, bool shield, time_point deadline) {
  loop_ = &loop;
  parent_ = parent;
  shield_ = shield;
  deadline_ = deadline;
  cancelled_ = by_deadline_ = false;
  if (parent_ != nullptr) {
    next_sibling_ = parent_->first_child_;
    prev_sibling_ = nullptr;
    if (next_sibling_ != nullptr) next_sibling_->prev_sibling_ = this;
    parent_->first_child_ = this;
  }
  if (deadline_ != no_deadline) {
    if (deadline_ <= loop.coarse_now()) {
      // Passed already (a duration of zero or less, ADR 0006): cancelled on
      // entry, not at the next timer check, so a body that never suspends
      // still meets it at its first cancellation point.
      cancelled_ = by_deadline_ = true;
    } else {
      timer_.scope = this;
      timer_.fire = &on_deadline;
      loop_access::add_timer(loop, &timer_, deadline_);
    }
  }
  attached_ = true;
}

void scope_node::detach_linked() noexcept {
  attached_ = false;
  if (timer_.queued()) loop_access::remove_timer(*loop_, &timer_);
  if (parent_ != nullptr) {
    if (prev_sibling_ != nullptr) {
      prev_sibling_->next_sibling_ = next_sibling_;
    } else {
      parent_->first_child_ = next_sibling_;
    }
    if (next_sibling_ != nullptr) next_sibling_->prev_sibling_ = prev_sibling_;
  }
  prev_sibling_ = next_sibling_ = nullptr;
  parent_ = nullptr;
}

void scope_node::on_deadline(timer_entry* e) noexcept {
  static_cast<deadline_timer*>(e)->scope->cancel(true);
}

void scope_node::cancel(bool by_deadline) noexcept {
  if (cancelled_) return;
  cancelled_ = true;
  by_deadline_ = by_deadline;
  if (timer_.queued()) loop_access::remove_timer(*loop_, &timer_);
  // Already effectively cancelled through an enclosing scope: everything
  // below was interrupted then.
  if (!shield_ && parent_ != nullptr && effectively_cancelled(parent_)) return;
  propagate();
}

void scope_node::propagate() noexcept {
  if (stop_) stop_->request_stop();
  // interrupt() only moves tasks to the ready queue: no user code runs here,
  // so the lists cannot change under the walk.
  for (task_node* t = tasks_; t != nullptr; t = t->scope_next) t->interrupt();
  for (scope_node* c = first_child_; c != nullptr; c = c->next_sibling_) {
    if (!c->shield_ && !c->cancelled_) c->propagate();
  }
}

std::stop_token scope_node::stop_token() {
  if (!stop_) {
    stop_ = std::make_unique<std::stop_source>();
    if (effectively_cancelled(this)) stop_->request_stop();
  }
  return stop_->get_token();
}

void scope_node::add_task(task_node* t) noexcept {
  t->scope_prev = nullptr;
  t->scope_next = tasks_;
  if (tasks_ != nullptr) tasks_->scope_prev = t;
  tasks_ = t;
}

void scope_node::remove_task(task_node* t) noexcept {
  if (t->scope_prev != nullptr) {
    t->scope_prev->scope_next = t->scope_next;
  } else if (tasks_ == t) {
    tasks_ = t->scope_next;
  }
  if (t->scope_next != nullptr) t->scope_next->scope_prev = t->scope_prev;
  t->scope_prev = t->scope_next = nullptr;
}

}  // namespace spindle::detail
