#include "spindle/task_group.hpp"

#include "detail/loop_access.hpp"
#include "spindle/event_loop.hpp"
#include "spindle/outcome.hpp"

namespace spindle {

task_group_error::task_group_error(std::vector<std::exception_ptr> errors)
    : error(std::to_string(errors.size()) +
            " tasks of a task group failed; first: " + detail::error_message(errors.front())),
      errors_(std::move(errors)) {}

task_group::task_group()
    : loop_(&detail::current_task("with_task_group").loop()),
      scope_(detail::scope_node::no_deadline, false, "with_task_group") {}

void task_group::adopt(detail::task_node* child) {
  detail::check_loop_owner(*child, "task_group::spawn");
  // Children live in the group's scope: its cancellation (a failure,
  // cancel(), or an enclosing scope) reaches them.
  child->root_scope().detach();
  child->root_scope().attach(*loop_, &scope_.node(), false, detail::scope_node::no_deadline);
  child->on_done_hook = &on_child_done;
  child->on_done_arg = this;
  ++alive_;
  detail::loop_access::add_task(*loop_, child);
  detail::loop_access::schedule(*loop_, child);
}

void task_group::on_child_done(detail::task_node* child, void* self) noexcept {
  auto* g = static_cast<task_group*>(self);
  const std::exception_ptr& e = child->exception();
  child->mark_observed();  // the group reports it
  if (e && !detail::is_cancellation(e)) g->record_failure(e);
  if (--g->alive_ == 0 && g->waiter_ != nullptr) {
    detail::task_node* w = g->waiter_;
    g->waiter_ = nullptr;
    w->wake();
  }
}

void task_group::record_failure(std::exception_ptr e) noexcept {
  try {
    failures_.push_back(std::move(e));
  } catch (...) {
    // Out of memory: keep the first failure at least (it is already there
    // unless this is the first, in which case the vector had room for none).
  }
  scope_.node().cancel();
}

void task_group::wait_all::await_suspend(std::coroutine_handle<> h) noexcept {
  detail::task_node* t = detail::tls_context.task;
  // No cancel hook: waiting for the children cannot be interrupted; a
  // cancellation reaches the children through the group's scope instead.
  t->suspend(h, nullptr);
  g->waiter_ = t;
}

void task_group::on_body_exception(std::exception_ptr e) noexcept {
  if (detail::is_cancellation(e)) {
    body_cancelled_ = std::move(e);
  } else {
    record_failure(std::move(e));
  }
}

void task_group::finish() {
  // A cancellation the group did not cause (it came from outside) is not
  // ours to swallow; one it caused (failure, cancel()) ends here.
  if (body_cancelled_ && !scope_.node().cancelled() && failures_.empty())
    std::rethrow_exception(body_cancelled_);
  if (failures_.size() == 1) std::rethrow_exception(failures_.front());
  if (failures_.size() > 1) throw task_group_error(std::move(failures_));
  // A cancellation from outside also reaches a body that did not see it.
  if (detail::scope_node::effectively_cancelled(scope_.node().parent()) && !scope_.node().cancelled()) {
    throw cancelled_error();
  }
}

}  // namespace spindle
