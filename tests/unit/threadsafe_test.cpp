// call_soon_threadsafe: the loop's one thread-safe door.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "spindle/event_loop.hpp"
#include "spindle/sleep.hpp"

namespace spindle {
namespace {

using namespace std::chrono_literals;

// 4 threads x 100,000 calls: every callback runs exactly once, and each
// producer's callbacks run in the order it posted them.
TEST(CallSoonThreadsafe, FourThreadsHundredThousandEachRunExactlyOnce) {
  constexpr int threads = 4;
  constexpr int per_thread = 100'000;
  event_loop loop;
  std::vector<std::vector<int>> seen(threads);  // touched only on the loop thread
  for (auto& s : seen) s.reserve(per_thread);
  int total = 0;
  std::vector<std::thread> producers;
  auto main = [&]() -> task<void> {
    for (int t = 0; t < threads; ++t) {
      producers.emplace_back([&, t] {
        for (int i = 0; i < per_thread; ++i) {
          loop.call_soon_threadsafe([&seen, &total, t, i] {
            seen[t].push_back(i);
            ++total;
          });
        }
      });
    }
    while (total < threads * per_thread) co_await sleep_for(1ms);
  };
  loop.run(main());
  for (auto& p : producers) p.join();
  EXPECT_EQ(total, threads * per_thread);
  for (int t = 0; t < threads; ++t) {
    ASSERT_EQ(seen[t].size(), static_cast<std::size_t>(per_thread));
    for (int i = 0; i < per_thread; ++i) ASSERT_EQ(seen[t][i], i) << "producer " << t;
  }
  EXPECT_EQ(loop.statistics().threadsafe_calls, static_cast<std::uint64_t>(threads * per_thread));
}

TEST(CallSoonThreadsafe, WakesALoopBlockedInEpoll) {
  event_loop loop;
  std::atomic<bool> posted{false};
  std::thread poster;
  auto main = [&]() -> task<int> {
    // Nothing else to do: the loop will block in epoll_wait with no timeout
    // until the foreign thread's callback wakes it.
    int value = 0;
    bool done = false;
    auto waiter = [&]() -> task<void> {
      while (!done) co_await sleep_for(1h);
    };
    auto h = loop.spawn(waiter());
    poster = std::thread([&] {
      loop.call_soon_threadsafe([&] {
        value = 42;
        done = true;
        h.cancel();
      });
      posted = true;
    });
    EXPECT_THROW(co_await h, cancelled_error);
    co_return value;
  };
  EXPECT_EQ(loop.run(main()), 42);
  poster.join();
  EXPECT_TRUE(posted);
}

TEST(CallSoonThreadsafe, CallbacksPostedBeforeRunRunWhenItStarts) {
  event_loop loop;
  int ran = 0;
  std::thread t([&] {
    for (int i = 0; i < 10; ++i) loop.call_soon_threadsafe([&] { ++ran; });
  });
  t.join();
  auto main = [&]() -> task<int> {
    co_await yield();
    co_return ran;
  };
  EXPECT_EQ(loop.run(main()), 10);
}

}  // namespace
}  // namespace spindle
