#include "spindle/sleep.hpp"

#include "detail/loop_access.hpp"
#include "spindle/event_loop.hpp"

namespace spindle::detail {

bool sleep_awaiter::await_suspend(std::coroutine_handle<> h) {
  task_node& t = current_task("sleep_for/sleep_until");
  if (t.cancel_requested()) {
    cancelled_ = true;
    return false;
  }
  task_ = &t;
  if (relative_ && delay_ <= duration::zero()) {
    // yield(): straight to the back of the ready queue — no timer, no clock
    // read, and no extra trip through epoll. It stays a cancellation point:
    // a cancel arriving while it waits there is thrown when it resumes.
    yielding_ = true;
    on_cancel = &on_yield_cancel;
    t.suspend(h, this);
    loop_access::schedule(t.loop(), &t);  // (not wake(): that would drop the hook)
    return true;
  }
  on_cancel = &on_cancel_hook;
  fire = &on_timer;
  event_loop& loop = t.loop();
  loop_access::add_timer(loop, this, relative_ ? saturating_add(loop.now(), delay_) : until_);
  t.suspend(h, this);
  return true;
}

void sleep_awaiter::await_resume() const {
  if (yielding_) task_->clear_hook();  // resumed from the ready queue, not by wake()
  if (cancelled_) throw cancelled_error();
}

void sleep_awaiter::on_yield_cancel(cancel_hook* self) noexcept {
  static_cast<sleep_awaiter*>(self)->cancelled_ = true;  // already queued: no second wake
}

void sleep_awaiter::on_timer(timer_entry* self) noexcept { static_cast<sleep_awaiter*>(self)->task_->wake(); }

void sleep_awaiter::on_cancel_hook(cancel_hook* self) noexcept {
  auto* s = static_cast<sleep_awaiter*>(self);
  loop_access::remove_timer(s->task_->loop(), s);
  s->cancelled_ = true;
  s->task_->wake();
}

}  // namespace spindle::detail
