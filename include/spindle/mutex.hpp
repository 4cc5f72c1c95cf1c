#pragma once
/// \file
/// mutex: mutual exclusion between tasks of one loop (across awaits).

#include <string>

#include "spindle/semaphore.hpp"

namespace spindle {

/// A FIFO mutex for tasks (a one-permit semaphore): hold it across awaits,
/// for example to serialise writes to one connection.
///
/// **Thread safety:** one loop's tasks only; this is not a thread mutex.
/// **Cancellation:** lock() is a cancellation point; a cancelled lock()
/// does not hold the mutex.
class mutex {
 public:
  explicit mutex(std::string name = "mutex") : sem_(1, std::move(name)) {}
  [[nodiscard]] semaphore::acquire_awaiter lock() noexcept { return sem_.acquire(); }
  [[nodiscard]] bool try_lock() noexcept { return sem_.try_acquire(); }
  void unlock() noexcept { sem_.release(); }
  /// Locks and returns a guard that unlocks when destroyed.
  [[nodiscard]] task<semaphore_permit> scoped_lock() { return sem_.acquire_permit(); }
  [[nodiscard]] bool locked() const { return sem_.statistics().available == 0; }
  [[nodiscard]] semaphore_statistics statistics() const { return sem_.statistics(); }

 private:
  semaphore sem_;
};

}  // namespace spindle
