#pragma once
// Human-readable identification of threads for wrong_thread_error messages.

#include <string>

namespace spindle::detail {

/// The kernel thread id of the calling thread (what `ps -L` and gdb show).
[[nodiscard]] int current_tid() noexcept;
/// The calling thread's name (pthread_getname_np), or "?" when unavailable.
[[nodiscard]] std::string current_thread_name();
/// "thread 1234 (name)" for the calling thread.
[[nodiscard]] std::string describe_current_thread();

}  // namespace spindle::detail
