#pragma once
// The bridge's doors (doors.cpp): a blocking entry point (the portal's
// calls, background_loop::stop, loop_group::stop) refuses the thread of any
// running loop and names the non-blocking door; stop_async() joins on a
// thread of its own while the awaiting task's loop goes on.

#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "spindle/task.hpp"

namespace spindle::detail {

/// Throws usage_error when the calling thread runs a loop: `method` would
/// block it while `what` happens; `door` is the way that does not block.
void refuse_any_loop_thread(const char* method, std::string_view what, std::string_view door);

/// Runs `fn` on a new thread, added to `keepers` under `m` (the owner's
/// destructor joins them all), and resumes the awaiting task on its own
/// loop once `fn` has returned, rethrowing what it threw. The wait is
/// shielded from cancellation.
task<void> run_on_new_thread(std::function<void()> fn, std::mutex& m, std::vector<std::thread>& keepers,
                             const char* method);

/// Joins every thread of `keepers` (taken under `m`).
void join_all(std::mutex& m, std::vector<std::thread>& keepers) noexcept;

}  // namespace spindle::detail
