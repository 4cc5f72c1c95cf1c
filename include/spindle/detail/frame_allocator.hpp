#pragma once
/// \file
/// Per-thread recycler for coroutine frames and task nodes.
///
/// Coroutine frames of one program come in a handful of sizes and are
/// created and destroyed at a high rate. Each thread keeps a free list per
/// 16-byte size class (up to 1 KiB); larger blocks and overflow go to
/// ::operator new. A block freed on another thread joins that thread's list,
/// which is correct (blocks are plain memory) and keeps every path lock-free.
///
/// Under AddressSanitizer or ThreadSanitizer the recycler is compiled out so
/// the sanitizers see every allocation and free.

#include <cstddef>

namespace spindle::detail {

/// Allocates `size` bytes, aligned to __STDCPP_DEFAULT_NEW_ALIGNMENT__.
[[nodiscard]] void* frame_allocate(std::size_t size);
/// Frees a block from frame_allocate; `size` must be the size asked for.
void frame_deallocate(void* block, std::size_t size) noexcept;

/// Counters of the calling thread's recycler (for tests and benchmarks).
struct frame_allocator_stats {
  std::size_t recycled = 0;  ///< allocations served from a free list
  std::size_t fresh = 0;     ///< allocations that went to operator new
  std::size_t cached = 0;    ///< blocks currently held in free lists
};
[[nodiscard]] frame_allocator_stats frame_allocator_statistics() noexcept;

/// True when this build recycles frames (false under sanitizers).
[[nodiscard]] bool frame_recycler_enabled() noexcept;

}  // namespace spindle::detail
