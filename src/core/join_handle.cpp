#include "spindle/join_handle.hpp"

#include "spindle/error.hpp"

namespace spindle::detail {

bool join_wait::suspend(std::coroutine_handle<> h) {
  task_node& self = current_task("co_await join_handle");
  if (&self.loop() != &target_->loop()) {
    throw usage_error("a join_handle can only be awaited by a task on the same event_loop");
  }
  if (&self == target_) throw usage_error("a task cannot await its own join_handle");
  if (target_->joiner() != nullptr) throw usage_error("join_handle is already being awaited by another task");
  if (self.cancel_requested()) {
    cancelled_ = true;
    return false;
  }
  self_ = &self;
  on_cancel = &cancel;
  target_->set_joiner(&self);
  self.suspend(h, this);
  return true;
}

void join_wait::check_resume() const {
  if (cancelled_) throw cancelled_error();
}

void join_wait::cancel(cancel_hook* hook) noexcept {
  auto* w = static_cast<join_wait*>(hook);
  w->target_->set_joiner(nullptr);
  w->cancelled_ = true;
  w->self_->wake();
}

}  // namespace spindle::detail
