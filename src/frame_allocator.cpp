#include "spindle/detail/frame_allocator.hpp"

#include <new>

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
namespace {

constexpr std::size_t granule = 16;
constexpr std::size_t max_size = 1024;
constexpr std::size_t classes = max_size / granule;
// Bounds what an idle thread keeps: at most this many blocks per class.
constexpr std::size_t max_cached_per_class = 4096;

struct free_block {
  free_block* next;
};

struct recycler {
  free_block* heads[classes] = {};
  std::size_t counts[classes] = {};
  frame_allocator_stats stats;

  ~recycler() {
    for (std::size_t c = 0; c < classes; ++c) {
      while (free_block* b = heads[c]) {
        heads[c] = b->next;
        ::operator delete(b);
      }
    }
    dead = true;
  }
  // Set when the thread's recycler has been destroyed (thread exit): frames
  // freed after that point (by other thread_local destructors) bypass it.
  static thread_local bool dead;
};
thread_local bool recycler::dead = false;

[[maybe_unused]] recycler& local() noexcept {
  thread_local recycler r;
  return r;
}

}  // namespace

#ifdef SPINDLE_RECYCLER_OFF

void* frame_allocate(std::size_t size) { return ::operator new(size); }
void frame_deallocate(void* block, std::size_t) noexcept { ::operator delete(block); }
frame_allocator_stats frame_allocator_statistics() noexcept { return {}; }
bool frame_recycler_enabled() noexcept { return false; }

#else

void* frame_allocate(std::size_t size) {
  if (size <= max_size) {
    std::size_t c = (size - 1) / granule;
    // Always round up, even when not recycling: the block may be freed on
    // another thread into a list that serves any size of its class.
    if (recycler::dead) return ::operator new((c + 1) * granule);
    recycler& r = local();
    if (free_block* b = r.heads[c]) {
      r.heads[c] = b->next;
      --r.counts[c];
      ++r.stats.recycled;
      return b;
    }
    ++r.stats.fresh;
    // Round up so any block of the class can serve any size in it.
    return ::operator new((c + 1) * granule);
  }
  return ::operator new(size);
}

void frame_deallocate(void* block, std::size_t size) noexcept {
  if (size <= max_size && !recycler::dead) {
    std::size_t c = (size - 1) / granule;
    recycler& r = local();
    if (r.counts[c] < max_cached_per_class) {
      auto* b = static_cast<free_block*>(block);
      b->next = r.heads[c];
      r.heads[c] = b;
      ++r.counts[c];
      return;
    }
  }
  ::operator delete(block);
}

frame_allocator_stats frame_allocator_statistics() noexcept {
  recycler& r = local();
  frame_allocator_stats s = r.stats;
  s.cached = 0;
  for (std::size_t n : r.counts) s.cached += n;
  return s;
}

bool frame_recycler_enabled() noexcept { return true; }

#endif

}  // namespace spindle::detail
