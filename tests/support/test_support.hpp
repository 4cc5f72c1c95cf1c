#pragma once
// Helpers shared by the tests.

#include <cstddef>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "spindle/diagnostics.hpp"
#include "spindle/event_loop.hpp"

namespace spindle::test {

/// Collects a loop's diagnostics instead of printing them.
class diagnostic_log {
 public:
  explicit diagnostic_log(event_loop& loop);
  [[nodiscard]] std::vector<diagnostic> entries() const;
  [[nodiscard]] std::size_t count(diagnostic::kind k) const;

 private:
  mutable std::mutex mutex_;  // the handler runs on the loop thread; tests read from theirs
  std::vector<diagnostic> entries_;
};

/// Runs `fn` on a new thread with a small stack (to prove constant stack
/// use) and rethrows what it throws.
void run_on_small_stack(std::size_t stack_bytes, const std::function<void()>& fn);

/// Number of open file descriptors of this process.
[[nodiscard]] std::size_t open_fd_count();

}  // namespace spindle::test
