#pragma once
/// \file
/// The loop's step hook: what an event_loop publishes about each step (one
/// task resumption or callback) for an observer on another thread, and the
/// interface such an observer implements. The stall watchdog
/// (spindle/watchdog.hpp, the diag layer) is the observer every loop gets by
/// default; the core knows only this interface.
///
/// Cost on the loop's hot path while an observer is attached: a few relaxed
/// stores per step (the step counter, and what runs when that changes) and
/// one relaxed load after it. The observer is called (virtually) only when a
/// run starts or stops and after a step it flagged — never per step.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <source_location>
#include <string>
#include <string_view>

#include "spindle/clock.hpp"

namespace spindle {

// The stall watchdog's types (spindle/watchdog.hpp, diag). Named here only
// so that event_loop::options::watchdog keeps its fields; the core never
// defines, calls or inspects them.
struct stall_report;
class stall_monitor;

class step_observer;

/// What a loop publishes per step. The loop writes the first three fields;
/// the observer samples them from its own thread and writes flagged_seq.
///
/// Protocol: per step the loop writes what runs (task id and spawn
/// location, relaxed, only when the running task changes), then
/// `seq = S` (release) where S grows by `step` per step; after the step it
/// loads flagged_seq and, if it equals S, calls
/// step_observer::on_flagged_step_end. After a batch: `seq = S | idle_bit`.
/// An observer reads seq, the fields, an acquire fence, then seq again (a
/// seqlock read) to learn what has been running since it last saw seq move.
struct step_slot {
  static constexpr std::uint64_t idle_bit = 1;  ///< between batches: nothing runs
  static constexpr std::uint64_t step = 2;      ///< the counter's unit
  std::atomic<std::uint64_t> seq{idle_bit};     ///< (step counter * step) | idle_bit
  std::atomic<std::uint64_t> task_id{0};        ///< the running task's id (0: a plain callback)
  std::atomic<std::source_location> where{};    ///< its spawn site (one pointer to static data)
  /// Written by the observer: the seq of a step it wants to hear the end of.
  std::atomic<std::uint64_t> flagged_seq{0};
};

/// What the loop knows at the end of a flagged step (loop thread).
struct flagged_step {
  std::uint64_t seq = 0;
  std::uint64_t task_id = 0;  ///< 0: a plain callback
  std::source_location where{};
  std::string task_name;  ///< the task's name (empty if unnamed or a callback)
};

/// Per-loop settings of the step observer (event_loop::options::watchdog).
/// The default observer is the stall watchdog when the diag layer is linked
/// (spindle::spindle always links it); its fields are read by it.
struct step_watch_options {
  /// A step longer than this is a stall; nullopt: no default observer
  /// (a value of zero or less: every step counts).
  std::optional<duration> threshold = std::chrono::milliseconds(100);
  /// Where the watchdog's reports go (see spindle/watchdog.hpp); null: one
  /// line on stderr.
  std::function<void(const stall_report&)> on_stall{};
  /// The watchdog's monitor; null: the process's shared monitor thread.
  stall_monitor* monitor = nullptr;
  /// An observer of the loop's own instead of the default one (attached
  /// whatever `threshold` says). One observer may watch several loops: it
  /// gets one slot per loop.
  std::shared_ptr<step_observer> observer{};
};

/// An observer of a loop's steps, typically sampling from another thread.
/// Every member is called on the loop's thread.
class step_observer {
 public:
  virtual ~step_observer() = default;
  /// A run of `loop_name` starts: sample `slot` until detach(). The slot
  /// lives as long as the loop.
  virtual void attach(step_slot& slot, std::string_view loop_name) = 0;
  /// The run ends: stop sampling `slot` before returning.
  virtual void detach(step_slot& slot) noexcept = 0;
  /// The step the observer flagged (slot.flagged_seq == step.seq) has
  /// ended. Returns how long it held the loop when the observer counts it
  /// as a stall (the loop's statistics count it), nullopt otherwise.
  virtual std::optional<duration> on_flagged_step_end(step_slot& slot, flagged_step step) noexcept = 0;
};

namespace detail {
/// Makes a loop's default observer from its options (nullptr: none).
using step_observer_factory = std::shared_ptr<step_observer> (*)(std::string_view loop_name,
                                                                 const step_watch_options& opts);
/// Installs the process-wide default observer factory (the diag layer
/// installs the stall watchdog's from a static initializer). Thread-safe.
void set_default_step_observer(step_observer_factory f) noexcept;
/// The installed factory, or null.
[[nodiscard]] step_observer_factory default_step_observer() noexcept;
}  // namespace detail

}  // namespace spindle
