#pragma once
/// \file
/// A handle to a loop that other threads may keep beyond the loop's life:
/// post() reaches the loop while it exists and reports false afterwards, so
/// a blocking call finishing after its loop is gone cannot touch freed memory.

#include <memory>
#include <mutex>

#include "spindle/detail/callback.hpp"

namespace spindle {
class event_loop;
namespace detail {

class loop_remote {
 public:
  explicit loop_remote(event_loop* loop) noexcept : loop_(loop) {}
  /// Queues `cb` on the loop (taking ownership); false (and deletes it,
  /// without running it) when the loop has been destroyed.
  bool post(callback_node* cb) noexcept;
  /// Called by the loop's destructor.
  void detach() noexcept {
    std::lock_guard lock(mutex_);
    loop_ = nullptr;
  }

 private:
  // Held while posting so the loop cannot be destroyed mid-post; the
  // critical section is a lock-free push and at most one eventfd write.
  std::mutex mutex_;
  event_loop* loop_;
};

}  // namespace detail
}  // namespace spindle
