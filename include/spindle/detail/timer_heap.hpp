#pragma once
/// \file
/// The loop's timer queue: a 4-ary min-heap of intrusive entries ordered by
/// (deadline, sequence). The sequence number makes timers with equal
/// deadlines fire in the order they were added. Each entry knows its heap
/// index, so removal (cancellation) is O(log n) and leaves nothing behind.
///
/// Why a 4-ary heap and not a timing wheel: see docs/design.md ("Timers")
/// and bench/core_bench.cpp (BM_timer_*).

#include <cstddef>
#include <cstdint>
#include <vector>

#include "spindle/clock.hpp"

namespace spindle::detail {

struct timer_entry {
  static constexpr std::size_t not_queued = static_cast<std::size_t>(-1);
  time_point deadline{};
  std::uint64_t seq = 0;
  std::size_t heap_index = not_queued;
  /// Called when the deadline passes (after removal from the heap).
  void (*fire)(timer_entry*) noexcept = nullptr;
  /// Called instead of fire() for entries still queued when the loop is
  /// destroyed; null for entries owned by a task (a sleeping task's timer).
  void (*dispose)(timer_entry*) noexcept = nullptr;

  [[nodiscard]] bool queued() const noexcept { return heap_index != not_queued; }
};

class timer_heap {
 public:
  void push(timer_entry* e);
  /// Removes `e` if queued; a no-op otherwise.
  void erase(timer_entry* e) noexcept;
  [[nodiscard]] timer_entry* top() const noexcept { return heap_.empty() ? nullptr : heap_.front().entry; }
  timer_entry* pop() noexcept;
  [[nodiscard]] std::size_t size() const noexcept { return heap_.size(); }
  [[nodiscard]] bool empty() const noexcept { return heap_.empty(); }
  /// Removes and returns every entry (loop destruction).
  std::vector<timer_entry*> take_all() noexcept;

 private:
  // The key is copied into the heap array so that sifting compares
  // contiguous memory instead of chasing a pointer per comparison (with
  // 100,000 timers that was a cache miss per compare; see benchmarks.md).
  struct slot {
    time_point deadline;
    std::uint64_t seq;
    timer_entry* entry;
  };
  static bool before(const slot& a, const slot& b) noexcept {
    return a.deadline < b.deadline || (a.deadline == b.deadline && a.seq < b.seq);
  }
  void sift_up(std::size_t i) noexcept;
  void sift_down(std::size_t i) noexcept;
  void place(std::size_t i, const slot& s) noexcept {
    heap_[i] = s;
    s.entry->heap_index = i;
  }

  std::vector<slot> heap_;
  std::uint64_t next_seq_ = 0;
};

}  // namespace spindle::detail
