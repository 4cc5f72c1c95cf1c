#pragma once
/// \file
/// Per-thread recycler for coroutine frames and task nodes.
///
/// Coroutine frames of one program come in a handful of sizes and are
/// created and destroyed at a high rate. Each thread keeps a free list per
/// 16-byte size class (up to 4 KiB); larger blocks and overflow go to
/// ::operator new. A block freed on another thread joins that thread's list,
/// which is correct (blocks are plain memory) and keeps every path lock-free.
///
/// The hot paths (a block from or back to its class's list) are inline: a
/// few instructions on a thread_local with no initialisation guard. Every
/// other case (the first free on a thread, a full or empty list, a block
/// over 4 KiB, thread exit) is out of line (src/core/frame_allocator.cpp).
///
/// Under AddressSanitizer or ThreadSanitizer the recycler is compiled out so
/// the sanitizers see every allocation and free.

#include <cstddef>
#include <cstdint>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SPINDLE_RECYCLER_OFF 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SPINDLE_RECYCLER_OFF 1
#endif
#endif
#if defined(SPINDLE_NO_FRAME_RECYCLER)
#define SPINDLE_RECYCLER_OFF 1
#endif

namespace spindle::detail {

/// Counters of the calling thread's recycler (for tests and benchmarks).
struct frame_allocator_stats {
  std::size_t recycled = 0;  ///< allocations served from a free list
  std::size_t fresh = 0;     ///< allocations that went to operator new
  std::size_t cached = 0;    ///< blocks currently held in free lists
};
[[nodiscard]] frame_allocator_stats frame_allocator_statistics() noexcept;

/// True when this build recycles frames (false under sanitizers).
[[nodiscard]] bool frame_recycler_enabled() noexcept;

/// The out-of-line paths of frame_allocate / frame_deallocate.
[[nodiscard]] void* frame_allocate_slow(std::size_t size);
void frame_deallocate_slow(void* block, std::size_t size) noexcept;

#ifndef SPINDLE_RECYCLER_OFF

/// One thread's free lists. Trivially destructible and constant-initialised,
/// so the inline paths read it with a plain fs-relative access. `room[c]` is
/// how many more blocks class c may cache: zero until the thread's first
/// free arms the exit-time cleanup (and again after thread exit), which
/// sends every free to the slow path then.
struct frame_recycler {
  static constexpr std::size_t granule = 16;
  static constexpr std::size_t max_size = 4096;
  static constexpr std::size_t classes = max_size / granule;
  struct free_block {
    free_block* next;
  };
  free_block* heads[classes];
  std::uint32_t room[classes];
  std::size_t recycled;
  std::size_t fresh;
  bool reaper_armed;
  bool dead;  // set at thread exit: later frees bypass the lists
};
extern constinit thread_local frame_recycler tls_frame_recycler;

/// Allocates `size` bytes, aligned to __STDCPP_DEFAULT_NEW_ALIGNMENT__.
[[nodiscard]] inline void* frame_allocate(std::size_t size) {
  if (size <= frame_recycler::max_size) [[likely]] {
    frame_recycler& r = tls_frame_recycler;
    const std::size_t c = (size - 1) / frame_recycler::granule;
    if (frame_recycler::free_block* b = r.heads[c]) [[likely]] {
      r.heads[c] = b->next;
      ++r.room[c];
      ++r.recycled;
      return b;
    }
  }
  return frame_allocate_slow(size);
}

/// Frees a block from frame_allocate; `size` must be the size asked for.
inline void frame_deallocate(void* block, std::size_t size) noexcept {
  if (size <= frame_recycler::max_size) [[likely]] {
    frame_recycler& r = tls_frame_recycler;
    const std::size_t c = (size - 1) / frame_recycler::granule;
    if (r.room[c] != 0) [[likely]] {
      auto* b = static_cast<frame_recycler::free_block*>(block);
      b->next = r.heads[c];
      r.heads[c] = b;
      --r.room[c];
      return;
    }
  }
  frame_deallocate_slow(block, size);
}

#else

[[nodiscard]] inline void* frame_allocate(std::size_t size) { return frame_allocate_slow(size); }
inline void frame_deallocate(void* block, std::size_t size) noexcept { frame_deallocate_slow(block, size); }

#endif

}  // namespace spindle::detail
