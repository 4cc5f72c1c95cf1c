#include "spindle/detail/frame_allocator.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <thread>
#include <vector>

#include "spindle/event_loop.hpp"

namespace spindle::detail {
namespace {

// Under ASan/TSan the recycler is compiled out so that the sanitizers see
// every allocation: then nothing may be served from a free list.
TEST(FrameAllocator, RecyclerIsOffExactlyUnderSanitizers) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  EXPECT_FALSE(frame_recycler_enabled());
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
  EXPECT_FALSE(frame_recycler_enabled());
#else
  EXPECT_TRUE(frame_recycler_enabled());
#endif
#else
  EXPECT_TRUE(frame_recycler_enabled());
#endif
}

TEST(FrameAllocator, RecyclesFreedBlocksOfTheSameClass) {
  void* a = frame_allocate(100);
  frame_deallocate(a, 100);
  auto before = frame_allocator_statistics();
  void* b = frame_allocate(110);  // same 16-byte class (97..112)
  auto after = frame_allocator_statistics();
  if (frame_recycler_enabled()) {
    EXPECT_EQ(a, b);
    EXPECT_EQ(after.recycled, before.recycled + 1);
  } else {
    EXPECT_EQ(after.recycled, 0u);
  }
  frame_deallocate(b, 110);
}

TEST(FrameAllocator, FramesUpTo4KiBAreRecycled) {
  void* a = frame_allocate(3000);  // an HTTP exchange's frame is this large
  frame_deallocate(a, 3000);
  const auto before = frame_allocator_statistics();
  void* b = frame_allocate(2990);  // the class below (2977..2992): a fresh block
  void* c = frame_allocate(3000);
  const auto after = frame_allocator_statistics();
  if (frame_recycler_enabled()) {
    EXPECT_EQ(a, c);  // the freed 3000-byte block served the next 3000-byte frame
    EXPECT_NE(a, b);
    EXPECT_EQ(after.recycled, before.recycled + 1);
  }
  frame_deallocate(b, 2990);
  frame_deallocate(c, 3000);
  void* d = frame_allocate(5000);  // above 4 KiB: the heap, never cached
  const auto with_big = frame_allocator_statistics();
  frame_deallocate(d, 5000);
  EXPECT_EQ(frame_allocator_statistics().cached, with_big.cached);
}

TEST(FrameAllocator, BlocksAreUsableForTheirWholeSize) {
  std::vector<std::pair<void*, std::size_t>> blocks;
  for (std::size_t n = 1; n <= 2048; n += 7) {
    void* p = frame_allocate(n);
    std::memset(p, 0xAB, n);  // ASan (recycler off) or the class rounding checks this
    blocks.emplace_back(p, n);
  }
  for (auto [p, n] : blocks) frame_deallocate(p, n);
}

TEST(FrameAllocator, BlockFreedOnAnotherThreadIsSafe) {
  void* p = frame_allocate(64);
  std::thread t([p] { frame_deallocate(p, 64); });
  t.join();
  void* q = frame_allocate(64);
  frame_deallocate(q, 64);
}

TEST(FrameAllocator, TaskFramesAreRecycledInSteadyState) {
  event_loop loop;
  auto leaf = [](int x) -> task<int> { co_return x; };
  auto main = [&]() -> task<int> {
    int s = 0;
    for (int i = 0; i < 1000; ++i) s += co_await leaf(i);
    co_return s;
  };
  (void)loop.run(main());
  auto before = frame_allocator_statistics();
  (void)loop.run(main());
  auto after = frame_allocator_statistics();
  if (frame_recycler_enabled()) {
    // The second run allocates nothing new: every frame and node is recycled.
    EXPECT_EQ(after.fresh, before.fresh);
    EXPECT_GE(after.recycled - before.recycled, 1001u);
  } else {
    EXPECT_EQ(after.recycled, 0u);
    EXPECT_EQ(after.fresh, 0u);
  }
}

}  // namespace
}  // namespace spindle::detail
