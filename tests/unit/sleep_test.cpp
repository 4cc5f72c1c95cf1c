#include "spindle/sleep.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <random>
#include <thread>
#include <utility>
#include <vector>

#include "spindle/event_loop.hpp"

namespace spindle {
namespace {

using namespace std::chrono_literals;

TEST(Sleep, WakesAtTheDeadlineOnTheManualClock) {
  manual_clock clock(manual_clock::mode::auto_advance);
  event_loop loop({.name = "t", .clock = &clock});
  const time_point start = clock.now();
  auto main = [&]() -> task<duration> {
    co_await sleep_for(90s);
    co_await sleep_until(start + 100s);
    co_return clock.now() - start;
  };
  EXPECT_EQ(loop.run(main()), 100s);
}

TEST(Sleep, SleepUntilThePastStillYields) {
  event_loop loop;
  std::vector<int> order;
  auto other = [&]() -> task<void> {
    order.push_back(2);
    co_return;
  };
  auto main = [&]() -> task<void> {
    auto h = loop.spawn(other());
    order.push_back(1);
    co_await sleep_until(loop.now() - 1s);
    order.push_back(3);
    co_await h;
  };
  loop.run(main());
  EXPECT_EQ(order, (std::vector<int>{1, 2, 3}));
}

TEST(Sleep, ManualClockWithoutAutoAdvanceWaitsForAdvance) {
  manual_clock clock;  // manual mode: only advance() moves time
  event_loop loop({.name = "t", .clock = &clock});
  int stage = 0;
  auto sleeper = [&]() -> task<void> {
    co_await sleep_for(10s);
    stage = 2;
  };
  auto main = [&]() -> task<void> {
    auto h = loop.spawn(sleeper());
    co_await yield();
    stage = 1;
    clock.advance(9s);
    co_await yield();
    EXPECT_EQ(stage, 1);  // 9 s is not enough
    clock.advance(1s);
    co_await h;
  };
  loop.run(main());
  EXPECT_EQ(stage, 2);
}

TEST(Sleep, ManualClockAdvancedFromAnotherThreadWakesTheLoop) {
  manual_clock clock;
  event_loop loop({.name = "t", .clock = &clock});
  std::atomic<bool> woke{false};
  std::thread advancer;
  auto main = [&]() -> task<void> {
    // The advancer keeps moving time from outside; the loop, with nothing
    // else to do, blocks in epoll_wait until an advance wakes it.
    advancer = std::thread([&] {
      while (!woke.load()) {
        clock.advance(10min);
        std::this_thread::sleep_for(1ms);
      }
    });
    co_await sleep_for(1h);
    woke = true;
  };
  loop.run(main());
  advancer.join();
  EXPECT_TRUE(woke.load());
}

// 100,000 timers with pseudo-random deadlines (many equal): they fire in
// deadline order, and in spawn order among equal deadlines.
TEST(Sleep, HundredThousandTimersFireInOrder) {
  manual_clock clock(manual_clock::mode::auto_advance);
  event_loop loop({.name = "t", .clock = &clock});
  constexpr int n = 100'000;
  std::mt19937 rng(7);
  std::vector<std::pair<duration, int>> expected;
  std::vector<std::pair<duration, int>> fired;
  expected.reserve(n);
  fired.reserve(n);
  const time_point start = clock.now();
  auto sleeper = [&](duration d, int id) -> task<void> {
    co_await sleep_for(d);
    EXPECT_EQ(clock.now() - start, d);
    fired.emplace_back(d, id);
  };
  auto main = [&]() -> task<void> {
    std::vector<join_handle<void>> handles;
    handles.reserve(n);
    for (int i = 0; i < n; ++i) {
      duration d = std::chrono::milliseconds(rng() % 5000);
      expected.emplace_back(d, i);
      handles.push_back(loop.spawn(sleeper(d, i)));
    }
    for (auto& h : handles) co_await h;
  };
  loop.run(main());
  // All tasks were spawned at `start` (time does not move while the loop is
  // busy), so registration order is spawn order.
  std::stable_sort(expected.begin(), expected.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  ASSERT_EQ(fired.size(), expected.size());
  EXPECT_TRUE(fired == expected);
}

TEST(Sleep, CallLaterTimersFireInOrder) {
  manual_clock clock(manual_clock::mode::auto_advance);
  event_loop loop({.name = "t", .clock = &clock});
  std::vector<int> fired;
  std::vector<timer_handle> handles;
  auto main = [&]() -> task<void> {
    for (int i = 0; i < 1000; ++i) {
      handles.push_back(
          loop.call_later(std::chrono::milliseconds((i * 7) % 100), [&fired, i] { fired.push_back(i); }));
    }
    co_await sleep_for(1s);
  };
  loop.run(main());
  ASSERT_EQ(fired.size(), 1000u);
  for (std::size_t k = 1; k < fired.size(); ++k) {
    int a = fired[k - 1], b = fired[k];
    int da = (a * 7) % 100, db = (b * 7) % 100;
    EXPECT_TRUE(da < db || (da == db && a < b)) << a << " before " << b;
  }
}

TEST(Sleep, CancelledSleepRemovesItsTimer) {
  manual_clock clock(manual_clock::mode::auto_advance);
  event_loop loop({.name = "t", .clock = &clock});
  auto sleeper = []() -> task<void> { co_await sleep_for(1h); };
  auto main = [&]() -> task<void> {
    auto h = loop.spawn(sleeper());
    co_await yield();
    EXPECT_EQ(loop.statistics().timers, 1u);
    h.cancel();
    EXPECT_EQ(loop.statistics().timers, 0u);  // removed at once, not at expiry
    EXPECT_THROW(co_await h, cancelled_error);
  };
  const time_point start = clock.now();
  loop.run(main());
  EXPECT_LT(clock.now() - start, 1h);  // the hour never had to pass
}

TEST(Sleep, RealClockSleepTakesAtLeastTheDuration) {
  event_loop loop;
  auto main = [&]() -> task<duration> {
    time_point a = loop.now();
    co_await sleep_for(20ms);
    co_return loop.now() - a;
  };
  EXPECT_GE(loop.run(main()), 20ms);  // a lower bound only: no speed asserted
}

}  // namespace
}  // namespace spindle
