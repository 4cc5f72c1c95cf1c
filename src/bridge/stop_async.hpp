#pragma once
// Shared by background_loop and loop_group: their blocking stop() refuses
// the thread of any running loop, and stop_async() joins on a thread of its
// own while the awaiting task's loop goes on.

#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "spindle/task.hpp"

namespace spindle::detail {

/// Throws usage_error when the calling thread runs a loop (`what` is what
/// stop() would join, for the message).
void refuse_blocking_stop(const char* method, const std::string& what);

/// Runs `fn` on a new thread, added to `keepers` under `m` (the owner's
/// destructor joins them all), and resumes the awaiting task on its own
/// loop once `fn` has returned, rethrowing what it threw. The wait is
/// shielded from cancellation.
task<void> run_on_new_thread(std::function<void()> fn, std::mutex& m, std::vector<std::thread>& keepers,
                             const char* method);

/// Joins every thread of `keepers` (taken under `m`).
void join_all(std::mutex& m, std::vector<std::thread>& keepers) noexcept;

}  // namespace spindle::detail
