#include "spindle/detail/wait_queue.hpp"

namespace spindle::detail {

bool wait_queue::park(waiter& w, std::coroutine_handle<> h, const char* what) {
  task_node& t = current_task(what);
  if (t.cancel_requested()) {
    w.cancelled = true;
    return false;
  }
  w.task = &t;
  w.queue = this;
  w.on_cancel = &on_cancel;
  w.next = nullptr;
  w.prev = tail_;
  if (tail_ != nullptr) {
    tail_->next = &w;
  } else {
    head_ = &w;
  }
  tail_ = &w;
  ++size_;
  t.suspend(h, &w);
  return true;
}

void wait_queue::unlink(waiter& w) noexcept {
  if (w.prev != nullptr) {
    w.prev->next = w.next;
  } else {
    head_ = w.next;
  }
  if (w.next != nullptr) {
    w.next->prev = w.prev;
  } else {
    tail_ = w.prev;
  }
  w.prev = w.next = nullptr;
  w.queue = nullptr;
  --size_;
}

waiter* wait_queue::pop_front() noexcept {
  waiter* w = head_;
  if (w != nullptr) unlink(*w);
  return w;
}

void wait_queue::on_cancel(cancel_hook* h) noexcept {
  auto* w = static_cast<waiter*>(h);
  wait_queue* q = w->queue;
  q->unlink(*w);
  ++q->cancelled_;
  w->cancelled = true;
  w->task->wake();
}

}  // namespace spindle::detail
