// Repeated under ThreadSanitizer in CI: the thread-safe door and stop()
// racing with a loop that keeps going to sleep and waking up.
#include <gtest/gtest.h>

#include <atomic>
#include <random>
#include <thread>
#include <vector>

#include "spindle/event_loop.hpp"
#include "spindle/sleep.hpp"

namespace spindle {
namespace {

using namespace std::chrono_literals;

// Producers post in bursts with pauses, so the loop alternates between busy
// and blocked in epoll: every wake-up path is exercised. Nothing is lost.
TEST(ThreadsafeStress, BurstyProducersNeverLoseACallback) {
  for (int round = 0; round < 20; ++round) {
    event_loop loop;
    constexpr int producers = 4;
    constexpr int per_producer = 5'000;
    long received = 0;
    std::vector<std::thread> threads;
    auto main = [&]() -> task<void> {
      for (int p = 0; p < producers; ++p) {
        threads.emplace_back([&, p] {
          std::mt19937 rng(static_cast<unsigned>(round * 31 + p));
          for (int i = 0; i < per_producer; ++i) {
            loop.call_soon_threadsafe([&] { ++received; });
            if (rng() % 512 == 0) std::this_thread::sleep_for(50us);
          }
        });
      }
      while (received < producers * per_producer) co_await sleep_for(200us);
    };
    loop.run(main());
    for (auto& t : threads) t.join();
    ASSERT_EQ(received, producers * per_producer) << "round " << round;
  }
}

// A loop in run_forever is stopped from another thread at a random moment
// while callbacks keep arriving; every callback posted before stop() runs
// either in this run or in the next.
TEST(ThreadsafeStress, StopRacingWithPostsLosesNothing) {
  event_loop loop;
  std::atomic<int> posted{0};
  int ran = 0;
  for (int round = 0; round < 50; ++round) {
    std::thread producer([&] {
      for (int i = 0; i < 1000; ++i) {
        loop.call_soon_threadsafe([&] { ++ran; });
        posted.fetch_add(1, std::memory_order_relaxed);
      }
      loop.stop();
    });
    loop.run_forever();
    producer.join();
  }
  // Drain what arrived after the last stop.
  auto main = []() -> task<void> { co_await yield(); };
  loop.run(main());
  EXPECT_EQ(ran, posted.load());
}

}  // namespace
}  // namespace spindle
