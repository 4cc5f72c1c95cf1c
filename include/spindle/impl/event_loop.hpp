#pragma once
// Template bodies of event_loop (included from event_loop.hpp).

#include "spindle/join_handle.hpp"
#include "spindle/timer_handle.hpp"

namespace spindle {

template <class T>
T event_loop::run(task<T> main, std::string name, std::source_location where) {
  enter_run("run");
  struct leave_guard {
    event_loop* loop;
    ~leave_guard() { loop->leave_run(); }
  } guard{this};
  auto* node = new detail::typed_task_node<T>(*this, std::move(main), std::move(name), where);
  add_task(node);
  join_handle<T> handle(node);
  schedule(node);
  const bool stopped_early = run_main(node);
  if (!node->done()) {
    node->mark_observed();
    throw shutdown_error("event_loop '" + opts_.name +
                         "' stopped before the main task finished, which did not end on cancellation");
  }
  if (stopped_early && detail::is_cancellation(node->exception())) {
    node->mark_observed();
    throw shutdown_error("event_loop '" + opts_.name + "' stopped before the main task finished");
  }
  return node->take();
}

template <class T>
join_handle<T> event_loop::spawn(task<T> t, std::string name, std::source_location where) {
  check_owner("spawn");
  auto* node = new detail::typed_task_node<T>(*this, std::move(t), std::move(name), where);
  add_task(node);
  join_handle<T> h(node);
  schedule(node);
  return h;
}

template <class T>
void event_loop::spawn_detached(task<T> t, std::string name, std::source_location where) {
  check_owner("spawn_detached");
  auto* node = new detail::typed_task_node<T>(*this, std::move(t), std::move(name), where);
  add_task(node);
  schedule(node);
}

template <class F>
void event_loop::call_soon(F&& fn) {
  check_owner("call_soon");
  detail::callback_node* n = detail::make_callback(std::forward<F>(fn));
  n->loop = this;
  schedule(n);
}

template <class F>
timer_handle event_loop::call_at(time_point when, F&& fn) {
  check_owner("call_at");
  auto* t = new detail::timer_callback_impl<std::decay_t<F>>(std::forward<F>(fn));
  t->loop = this;
  timer_handle h(t);
  add_timer(t, when);
  return h;
}

template <class F>
timer_handle event_loop::call_later(duration delay, F&& fn) {
  check_owner("call_later");
  return call_at(saturating_add(now(), delay), std::forward<F>(fn));
}

template <class F>
void event_loop::call_soon_threadsafe(F&& fn) {
  detail::callback_node* n = detail::make_callback(std::forward<F>(fn));
  n->loop = this;
  post_remote(n);
}

}  // namespace spindle
