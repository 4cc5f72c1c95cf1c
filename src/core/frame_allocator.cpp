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

#ifdef SPINDLE_RECYCLER_OFF

void* frame_allocate(std::size_t size) { return ::operator new(size); }
void frame_deallocate(void* block, std::size_t) noexcept { ::operator delete(block); }
frame_allocator_stats frame_allocator_statistics() noexcept { return {}; }
bool frame_recycler_enabled() noexcept { return false; }

#else

namespace {

constexpr std::size_t granule = 16;
// Up to 4 KiB: an HTTP exchange's frame (a request, a response, their
// strings) is over 1 KiB.
constexpr std::size_t max_size = 4096;
constexpr std::size_t classes = max_size / granule;
// Bounds what an idle thread keeps: at most 4,096 blocks per class, and at
// most 4 MiB per class of the larger ones.
constexpr std::size_t max_cached(std::size_t c) {
  const std::size_t block = (c + 1) * granule;
  return block <= 1024 ? 4096 : (4u << 20) / block;
}

struct free_block {
  free_block* next;
};

// Trivially destructible, so that the hot path reads it with a plain
// fs-relative access (no thread_local init guard). The lists are freed at
// thread exit by `reaper`, armed the first time a block is cached.
struct recycler {
  free_block* heads[classes];
  std::size_t counts[classes];
  frame_allocator_stats stats;
  bool reaper_armed;
  bool dead;  // set at thread exit: later frees bypass the lists
};
thread_local recycler tls_recycler{};

void free_all(recycler& r) noexcept {
  for (std::size_t c = 0; c < classes; ++c) {
    while (free_block* b = r.heads[c]) {
      r.heads[c] = b->next;
      ::operator delete(b);
    }
    r.counts[c] = 0;
  }
}

struct reaper {
  ~reaper() {
    free_all(tls_recycler);
    tls_recycler.dead = true;
  }
};

void arm_reaper(recycler& r) {
  r.reaper_armed = true;
  thread_local reaper instance;
  (void)&instance;
}

}  // namespace

void* frame_allocate(std::size_t size) {
  if (size <= max_size) {
    std::size_t c = (size - 1) / granule;
    recycler& r = tls_recycler;
    // Always round up, even when not recycling: the block may be freed on
    // another thread into a list that serves any size of its class.
    if (r.dead) return ::operator new((c + 1) * granule);
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
  recycler& r = tls_recycler;
  if (size <= max_size && !r.dead) {
    std::size_t c = (size - 1) / granule;
    if (r.counts[c] < max_cached(c)) {
      if (!r.reaper_armed) [[unlikely]] {
        try {
          arm_reaper(r);
        } catch (...) {
          ::operator delete(block);  // cannot register cleanup: do not cache
          return;
        }
      }
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
  recycler& r = tls_recycler;
  frame_allocator_stats s = r.stats;
  s.cached = 0;
  for (std::size_t n : r.counts) s.cached += n;
  return s;
}

bool frame_recycler_enabled() noexcept { return true; }

#endif

}  // namespace spindle::detail
