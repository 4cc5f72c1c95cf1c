#include "spindle/detail/callback.hpp"

#include "detail/loop_access.hpp"
#include "spindle/event_loop.hpp"
#include "spindle/outcome.hpp"
#include "spindle/timer_handle.hpp"

namespace spindle::detail {

namespace {
void report_callback_failure(event_loop& loop) noexcept {
  std::exception_ptr e = std::current_exception();
  loop.report(
      {diagnostic::kind::callback_failure, loop.name(), {}, {}, "callback threw: " + error_message(e), e});
}
}  // namespace

void callback_node::run(ready_node* self) noexcept {
  auto* c = static_cast<callback_node*>(self);
  try {
    c->invoke();
  } catch (...) {
    report_callback_failure(*c->loop);
  }
  delete c;
}

void callback_node::drop_node(ready_node* self) noexcept { delete static_cast<callback_node*>(self); }

void timer_callback::on_fire(timer_entry* self) noexcept {
  auto* t = static_cast<timer_callback*>(self);
  loop_access::schedule(*t->loop, t);
}

void timer_callback::on_dispose(timer_entry* self) noexcept {
  auto* t = static_cast<timer_callback*>(self);
  t->cancelled_ = true;
  t->release();
}

void timer_callback::on_drop(ready_node* self) noexcept {
  auto* t = static_cast<timer_callback*>(self);
  t->cancelled_ = true;
  t->release();
}

void timer_callback::run(ready_node* self) noexcept {
  auto* t = static_cast<timer_callback*>(self);
  if (!t->cancelled_) {
    t->ran_ = true;
    try {
      t->invoke();
    } catch (...) {
      report_callback_failure(*t->loop);
    }
  }
  t->release();  // the loop's reference
}

void timer_callback::cancel() noexcept {
  if (cancelled_ || ran_) return;
  cancelled_ = true;
  if (queued()) {
    // Still in the heap: take it out and drop the loop's reference. (If it
    // already fired it sits in the ready queue and run() releases it.)
    loop_access::remove_timer(*loop, this);
    release();
  }
}

}  // namespace spindle::detail

namespace spindle {

void timer_handle::cancel() {
  if (t_ == nullptr) return;
  detail::loop_access::check_owner(*t_->loop, "timer_handle::cancel");
  t_->cancel();
}

}  // namespace spindle
