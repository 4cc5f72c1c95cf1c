#include "spindle/cancel_scope.hpp"

#include <string>

#include "spindle/event_loop.hpp"

namespace spindle {

namespace detail {

scope_guard::scope_guard(time_point deadline, bool shield, const char* what) : task_(&current_task(what)) {
  scope_node* outer = task_->scope();
  node_.attach(task_->loop(), outer, shield, deadline);
  outer->remove_task(task_);
  node_.add_task(task_);
  task_->set_scope(&node_);
}

scope_guard::~scope_guard() {
  // Scopes live in coroutine frames and are left in LIFO order.
  scope_node* outer = node_.parent();
  node_.remove_task(task_);
  task_->set_scope(outer);
  outer->add_task(task_);
  node_.detach();
}

time_point deadline_after(duration d) {
  task_node& t = current_task("with_timeout/move_on_after");
  if (d <= duration::zero()) return time_point::min();  // passed: the scope is cancelled on entry
  time_point now = t.loop().now();
  // Saturate instead of overflowing for "effectively never" durations.
  if (d > time_point::max() - now) return time_point::max() - duration(1);
  return now + d;
}

void throw_timeout(duration d) {
  if (d == duration::zero()) throw timeout_error("deadline expired");
  if (d < std::chrono::milliseconds(1)) {
    auto us = std::chrono::duration_cast<std::chrono::microseconds>(d).count();
    throw timeout_error("timed out after " + std::to_string(us) + " us");
  }
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
  throw timeout_error("timed out after " + std::to_string(ms) + " ms");
}

}  // namespace detail

time_point current_deadline() {
  return detail::scope_node::effective_deadline(detail::current_task("current_deadline").scope());
}

std::stop_token current_stop_token() {
  return detail::current_task("current_stop_token").scope()->stop_token();
}

void check_cancelled() {
  if (detail::current_task("check_cancelled").cancel_requested()) throw cancelled_error();
}

}  // namespace spindle
