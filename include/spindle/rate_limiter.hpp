#pragma once
/// \file
/// rate_limiter: a token bucket for "at most N per second" (with bursts).

#include <cstdint>
#include <string>

#include "spindle/clock.hpp"
#include "spindle/mutex.hpp"
#include "spindle/task.hpp"

namespace spindle {

struct rate_limiter_statistics {
  std::string name;
  double rate_per_second = 0;
  double burst = 0;
  double tokens = 0;
  std::size_t waiting = 0;
  std::uint64_t acquired = 0;
  std::uint64_t delayed = 0;  ///< acquisitions that had to wait for a token
};

/// Token bucket: `rate` tokens per second, at most `burst` banked. Waiters
/// are served in FIFO order on the loop's clock.
///
/// **Thread safety:** one loop's tasks only.
/// **Cancellation:** acquire() is a cancellation point and takes no token
/// when cancelled.
class rate_limiter {
 public:
  rate_limiter(double rate_per_second, double burst, std::string name = "rate_limiter");
  /// Waits until a token is available and takes it.
  [[nodiscard]] task<void> acquire();
  /// Takes a token if one is available now and nobody waits.
  [[nodiscard]] bool try_acquire();
  [[nodiscard]] rate_limiter_statistics statistics() const;

 private:
  void refill(time_point now);

  std::string name_;
  double rate_;
  double burst_;
  double tokens_;
  time_point last_{};
  bool started_ = false;
  mutex turn_;  // FIFO among waiters
  std::uint64_t acquired_ = 0;
  std::uint64_t delayed_ = 0;
};

}  // namespace spindle
