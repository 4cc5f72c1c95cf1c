// The frame recycler's slow paths (the fast ones are inline in
// spindle/detail/frame_allocator.hpp).

#include "spindle/detail/frame_allocator.hpp"

#include <new>

namespace spindle::detail {

#ifdef SPINDLE_RECYCLER_OFF

void* frame_allocate_slow(std::size_t size) { return ::operator new(size); }
void frame_deallocate_slow(void* block, std::size_t) noexcept { ::operator delete(block); }
frame_allocator_stats frame_allocator_statistics() noexcept { return {}; }
bool frame_recycler_enabled() noexcept { return false; }

#else

constinit thread_local frame_recycler tls_frame_recycler{};

namespace {

using block_t = frame_recycler::free_block;
constexpr std::size_t granule = frame_recycler::granule;
constexpr std::size_t max_size = frame_recycler::max_size;
constexpr std::size_t classes = frame_recycler::classes;

// Bounds what an idle thread keeps: at most 4,096 blocks per class, and at
// most 4 MiB per class of the larger ones.
constexpr std::uint32_t max_cached(std::size_t c) {
  const std::size_t block = (c + 1) * granule;
  return static_cast<std::uint32_t>(block <= 1024 ? 4096 : (4u << 20) / block);
}

void free_all(frame_recycler& r) noexcept {
  for (std::size_t c = 0; c < classes; ++c) {
    while (block_t* b = r.heads[c]) {
      r.heads[c] = b->next;
      ::operator delete(b);
    }
    r.room[c] = 0;
  }
}

struct reaper {
  ~reaper() {
    tls_frame_recycler.dead = true;
    free_all(tls_frame_recycler);
  }
};

// Registers the exit-time cleanup, then opens every class's room.
void arm_reaper(frame_recycler& r) {
  thread_local reaper instance;
  (void)&instance;
  r.reaper_armed = true;
  for (std::size_t c = 0; c < classes; ++c) r.room[c] = max_cached(c);
}

}  // namespace

void* frame_allocate_slow(std::size_t size) {
  if (size <= max_size) {
    const std::size_t c = (size - 1) / granule;
    frame_recycler& r = tls_frame_recycler;
    // Always round up, even when not recycling: the block may be freed on
    // another thread into a list that serves any size of its class.
    if (!r.dead) ++r.fresh;
    return ::operator new((c + 1) * granule);
  }
  return ::operator new(size);
}

void frame_deallocate_slow(void* block, std::size_t size) noexcept {
  frame_recycler& r = tls_frame_recycler;
  if (size <= max_size && !r.dead && !r.reaper_armed) {
    try {
      arm_reaper(r);
    } catch (...) {
      ::operator delete(block);  // cannot register cleanup: do not cache
      return;
    }
    frame_deallocate(block, size);  // now with room
    return;
  }
  ::operator delete(block);  // over 4 KiB, a full list, or after thread exit
}

frame_allocator_stats frame_allocator_statistics() noexcept {
  frame_recycler& r = tls_frame_recycler;
  frame_allocator_stats s;
  s.recycled = r.recycled;
  s.fresh = r.fresh;
  if (r.reaper_armed && !r.dead)
    for (std::size_t c = 0; c < classes; ++c) s.cached += max_cached(c) - r.room[c];
  return s;
}

bool frame_recycler_enabled() noexcept { return true; }

#endif

}  // namespace spindle::detail
