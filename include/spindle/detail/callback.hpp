#pragma once
/// \file
/// Type-erased callbacks for the ready queue, the thread-safe inbox and
/// call_later timers. One allocation each (from the frame recycler).

#include <cstdint>
#include <type_traits>
#include <utility>

#include "spindle/detail/frame_allocator.hpp"
#include "spindle/detail/task_node.hpp"
#include "spindle/detail/timer_heap.hpp"

namespace spindle::detail {

/// A queued plain callback. run_ready invokes and deletes it; a callback
/// that is never run is deleted by its owner (which reports it).
class callback_node : public ready_node {
 public:
  callback_node() noexcept {
    run_ready = &run;
    drop = &drop_node;
  }
  callback_node(const callback_node&) = delete;
  callback_node& operator=(const callback_node&) = delete;
  virtual ~callback_node() = default;
  virtual void invoke() = 0;

  static void* operator new(std::size_t size) { return frame_allocate(size); }
  static void operator delete(void* p, std::size_t size) noexcept { frame_deallocate(p, size); }

  event_loop* loop = nullptr;

 private:
  static void run(ready_node* self) noexcept;  // invoke, report a throw, delete
  static void drop_node(ready_node* self) noexcept;
};

template <class F>
class callback_impl final : public callback_node {
 public:
  template <class G>
  explicit callback_impl(G&& g) : fn_(std::forward<G>(g)) {}
  void invoke() override { fn_(); }

 private:
  F fn_;
};

template <class F>
callback_node* make_callback(F&& fn) {
  return new callback_impl<std::decay_t<F>>(std::forward<F>(fn));
}

/// A call_later timer. Shared by the loop (while queued or ready) and the
/// timer_handle; freed when both let go.
class timer_callback : public timer_entry, public ready_node {
 public:
  timer_callback() noexcept {
    fire = &on_fire;
    dispose = &on_dispose;
    run_ready = &run;
    drop = &on_drop;
  }
  timer_callback(const timer_callback&) = delete;
  timer_callback& operator=(const timer_callback&) = delete;
  virtual ~timer_callback() = default;
  virtual void invoke() = 0;

  static void* operator new(std::size_t size) { return frame_allocate(size); }
  static void operator delete(void* p, std::size_t size) noexcept { frame_deallocate(p, size); }

  void add_ref() noexcept { ++refs_; }
  void release() noexcept {
    if (--refs_ == 0) delete this;
  }
  /// Stops the callback from running; removes it from the timer heap.
  void cancel() noexcept;
  [[nodiscard]] bool pending() const noexcept { return !cancelled_ && !ran_; }

  event_loop* loop = nullptr;

 private:
  static void on_fire(timer_entry* self) noexcept;
  static void on_dispose(timer_entry* self) noexcept;
  static void run(ready_node* self) noexcept;
  static void on_drop(ready_node* self) noexcept;

  std::uint32_t refs_ = 1;  // the loop's
  bool cancelled_ = false;
  bool ran_ = false;
};

template <class F>
class timer_callback_impl final : public timer_callback {
 public:
  template <class G>
  explicit timer_callback_impl(G&& g) : fn_(std::forward<G>(g)) {}
  void invoke() override { fn_(); }

 private:
  F fn_;
};

}  // namespace spindle::detail
