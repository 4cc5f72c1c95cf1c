#pragma once
/// \file
/// event: a flag tasks can wait for.

#include <coroutine>
#include <cstdint>
#include <string>

#include "spindle/detail/wait_queue.hpp"
#include "spindle/error.hpp"

namespace spindle {

struct event_statistics {
  std::string name;
  bool is_set = false;
  std::size_t waiting = 0;
  std::uint64_t sets = 0;
  std::uint64_t cancelled = 0;
};

/// Set once, wakes every waiter; stays set until clear().
///
/// **Thread safety:** one loop's tasks only (from another thread, set it
/// through call_soon_threadsafe).
/// **Cancellation:** wait() is a cancellation point.
class event {
 public:
  explicit event(std::string name = "event") : name_(std::move(name)) {}
  event(const event&) = delete;
  event& operator=(const event&) = delete;

  class wait_awaiter : public detail::waiter {
   public:
    explicit wait_awaiter(event& e) noexcept : e_(&e) {}
    [[nodiscard]] bool await_ready() const noexcept { return e_->set_ && !detail::cancel_pending(); }
    bool await_suspend(std::coroutine_handle<> h) { return e_->queue_.park(*this, h, "event::wait"); }
    void await_resume() const {
      if (cancelled) throw cancelled_error();
    }

   private:
    event* e_;
  };

  [[nodiscard]] wait_awaiter wait() noexcept { return wait_awaiter(*this); }
  void set() noexcept {
    if (set_) return;
    set_ = true;
    ++sets_;
    while (detail::waiter* w = queue_.pop_front()) detail::wait_queue::wake(*w);
  }
  void clear() noexcept { set_ = false; }
  [[nodiscard]] bool is_set() const noexcept { return set_; }
  [[nodiscard]] event_statistics statistics() const {
    return {name_, set_, queue_.size(), sets_, queue_.cancelled_waits()};
  }

 private:
  std::string name_;
  bool set_ = false;
  std::uint64_t sets_ = 0;
  detail::wait_queue queue_;
};

}  // namespace spindle
