#pragma once
/// \file
/// The error hierarchy. Every error the runtime raises derives from
/// spindle::error and carries a stable kind() string that tools (the CLI's
/// JSON output, metrics) can rely on.

#include <stdexcept>
#include <string>

namespace spindle {

/// Base of every error spindle raises.
///
/// **Thread safety:** immutable after construction; safe to share.
/// **Cancellation:** not applicable.
class error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
  /// A stable, lower-case identifier of the error family (`timeout`,
  /// `cancelled`, `wrong_thread`, ...). Never localised, never reworded.
  [[nodiscard]] virtual const char* kind() const noexcept = 0;
};

/// Defines a final error class with a fixed kind string.
#define SPINDLE_DEFINE_ERROR(NAME, KIND)                                      \
  class NAME : public ::spindle::error {                                      \
   public:                                                                    \
    using ::spindle::error::error;                                            \
    [[nodiscard]] const char* kind() const noexcept override { return KIND; } \
  }

/// The awaiting task was cancelled. Delivered at a suspension point.
class cancelled_error : public error {
 public:
  cancelled_error() : error("operation cancelled") {}
  using error::error;
  [[nodiscard]] const char* kind() const noexcept override { return "cancelled"; }
};

/// A deadline expired.
SPINDLE_DEFINE_ERROR(timeout_error, "timeout");
/// A loop method that is not thread-safe was called from a thread other than
/// the loop's owner. The message names both threads.
SPINDLE_DEFINE_ERROR(wrong_thread_error, "wrong_thread");
/// An attempt to run a loop that is already running (or to run a loop while
/// another loop is running on the same thread).
SPINDLE_DEFINE_ERROR(loop_running_error, "loop_running");
/// The loop was stopped (or is shutting down) before the operation finished.
SPINDLE_DEFINE_ERROR(shutdown_error, "shutdown");
/// The API was used in a way that cannot work (for example awaiting a
/// loop primitive outside any running loop, or joining a task twice).
SPINDLE_DEFINE_ERROR(usage_error, "usage");
/// An operating-system call failed; the message carries the call and errno text.
class system_error : public error {
 public:
  system_error(const std::string& what_call, int errno_value);
  [[nodiscard]] const char* kind() const noexcept override { return "system"; }
  [[nodiscard]] int code() const noexcept { return code_; }

 private:
  int code_;
};

}  // namespace spindle
