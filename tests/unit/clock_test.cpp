#include "spindle/clock.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

namespace spindle {
namespace {

using namespace std::chrono_literals;

TEST(ManualClock, MovesOnlyWhenAdvancedAndNeverBackwards) {
  manual_clock c;
  time_point t0 = c.now();
  EXPECT_EQ(c.now(), t0);
  c.advance(5ms);
  EXPECT_EQ(c.now(), t0 + 5ms);
  c.advance_to(t0);  // earlier: ignored
  EXPECT_EQ(c.now(), t0 + 5ms);
}

TEST(ManualClock, NotifiesSubscribersOnAdvance) {
  manual_clock c;
  int calls = 0;
  std::size_t token = c.subscribe([&] { ++calls; });
  c.advance(1ms);
  c.advance(1ms);
  c.unsubscribe(token);
  c.advance(1ms);
  EXPECT_EQ(calls, 2);
}

TEST(ManualClock, AutoAdvanceOnlyInThatMode) {
  manual_clock manual;
  manual_clock automatic(manual_clock::mode::auto_advance);
  time_point target = manual.now() + 1s;
  EXPECT_FALSE(manual.advance_idle(target));
  EXPECT_EQ(manual.now(), target - 1s);
  EXPECT_TRUE(automatic.advance_idle(automatic.now() + 1s));
}

TEST(ManualClock, ConcurrentAdvancesAddUp) {
  manual_clock c;
  time_point t0 = c.now();
  std::thread a([&] {
    for (int i = 0; i < 10000; ++i) c.advance(1ns);
  });
  // A reader on another thread never sees time go backwards.
  time_point last = c.now();
  for (int i = 0; i < 10000; ++i) {
    time_point now = c.now();
    EXPECT_GE(now, last);
    last = now;
  }
  a.join();
  EXPECT_EQ(c.now(), t0 + 10000ns);
}

TEST(SteadyClock, IsMonotonic) {
  steady_clock c;
  time_point a = c.now();
  time_point b = c.now();
  EXPECT_LE(a, b);
  EXPECT_FALSE(c.is_manual());
}

}  // namespace
}  // namespace spindle
