#pragma once
/// \file
/// timer_handle: the result of call_later / call_at.

#include <utility>

#include "spindle/detail/callback.hpp"

namespace spindle {

/// Cancels a pending call_later/call_at callback. Dropping the handle does
/// not cancel the callback.
///
/// **Thread safety:** use only on the loop's thread (checked).
/// **Cancellation:** cancel() after the callback ran is a no-op.
class timer_handle {
 public:
  timer_handle() noexcept = default;
  explicit timer_handle(detail::timer_callback* t) noexcept : t_(t) { t_->add_ref(); }
  timer_handle(timer_handle&& o) noexcept : t_(std::exchange(o.t_, nullptr)) {}
  timer_handle& operator=(timer_handle&& o) noexcept {
    if (this != &o) {
      reset();
      t_ = std::exchange(o.t_, nullptr);
    }
    return *this;
  }
  timer_handle(const timer_handle&) = delete;
  timer_handle& operator=(const timer_handle&) = delete;
  ~timer_handle() { reset(); }

  /// True while the callback has neither run nor been cancelled.
  [[nodiscard]] bool pending() const noexcept { return t_ != nullptr && t_->pending(); }
  /// Prevents the callback from running (if it has not run yet).
  void cancel();

 private:
  void reset() noexcept {
    if (t_ != nullptr) std::exchange(t_, nullptr)->release();
  }
  detail::timer_callback* t_ = nullptr;
};

}  // namespace spindle
