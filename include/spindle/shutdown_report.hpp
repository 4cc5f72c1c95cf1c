#pragma once
/// \file
/// shutdown_report: a thread pool's account of every job it accepted; and
/// the hook through which a loop shuts down the pools attached to it.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace spindle {

/// Accounts for every job a pool ever accepted.
struct shutdown_report {
  std::string name;
  std::uint64_t submitted = 0;
  std::uint64_t completed = 0;
  std::uint64_t failed = 0;
  std::uint64_t cancelled = 0;
  std::uint64_t abandoned = 0;
  std::uint64_t still_running = 0;          ///< finished neither way yet (only if a report is taken mid-life)
  std::vector<std::string> cancelled_jobs;  ///< names (or #id) of every cancelled job (first 1,000)
  std::vector<std::string> abandoned_jobs;  ///< names (or #id) of every abandoned job (first 1,000)
  /// submitted == completed + failed + cancelled + abandoned + still_running
  [[nodiscard]] bool balanced() const noexcept {
    return submitted == completed + failed + cancelled + abandoned + still_running;
  }
  [[nodiscard]] std::string to_string() const;
};

/// Something a loop shuts down in its own shutdown phase, after its tasks:
/// the interface through which the layers above the core (thread pools,
/// portals) join a loop's shutdown without the loop knowing them.
/// Registered with event_loop::attach_shutdown_participant().
class shutdown_participant {
 public:
  shutdown_participant() = default;
  shutdown_participant(const shutdown_participant&) = delete;
  shutdown_participant& operator=(const shutdown_participant&) = delete;
  /// Shuts down (cancel queued work, wait the participant's own grace for
  /// running work, abandon the rest) and returns the account; nullopt when
  /// its owner already shut it down (the owner got that report).
  virtual std::optional<shutdown_report> shutdown_for_loop() noexcept = 0;

 protected:
  ~shutdown_participant() = default;
};

}  // namespace spindle
