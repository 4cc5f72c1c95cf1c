#pragma once
// Private access to event_loop internals for the runtime's own awaitables.

#include "spindle/event_loop.hpp"

namespace spindle::detail {

struct loop_access {
  static void schedule(event_loop& loop, ready_node* n) noexcept { loop.schedule(n); }
  static void check_owner(const event_loop& loop, const char* method) { loop.check_owner(method); }
  static void add_timer(event_loop& loop, timer_entry* e, time_point when) { loop.add_timer(e, when); }
  static void remove_timer(event_loop& loop, timer_entry* e) noexcept { loop.remove_timer(e); }
  static void add_task(event_loop& loop, task_node* n) { loop.add_task(n); }
  static void on_task_done(event_loop& loop, task_node* n) noexcept { loop.on_task_done(n); }
  static void leave_run(event_loop& loop) noexcept { loop.leave_run(); }
  static int epoll_fd(const event_loop& loop) noexcept { return loop.epoll_fd_; }
  static std::size_t& io_registrations(event_loop& loop) noexcept { return loop.io_registrations_; }
};

// Leaves the running state however the scope ends.
struct leave_run_guard {
  event_loop* loop;
  ~leave_run_guard() { loop_access::leave_run(*loop); }
};

// The loop's intrusive lists of live and abandoned tasks.
inline void live_list_push(task_node*& head, task_node* n) noexcept {
  n->live_prev = nullptr;
  n->live_next = head;
  if (head != nullptr) head->live_prev = n;
  head = n;
}
inline void live_list_unlink(task_node*& head, task_node* n) noexcept {
  if (n->live_prev != nullptr) {
    n->live_prev->live_next = n->live_next;
  } else {
    head = n->live_next;
  }
  if (n->live_next != nullptr) n->live_next->live_prev = n->live_prev;
  n->live_prev = n->live_next = nullptr;
}

}  // namespace spindle::detail
