#include "spindle/join_handle.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "spindle/event_loop.hpp"
#include "spindle/sleep.hpp"
#include "support/test_support.hpp"

namespace spindle {
namespace {

using namespace std::chrono_literals;

struct flag_on_exit {
  bool* flag;
  ~flag_on_exit() { *flag = true; }
};

TEST(JoinHandle, CancelWhileSleepingDeliversCancelledAndRunsDestructors) {
  manual_clock clock(manual_clock::mode::auto_advance);
  event_loop loop({.name = "t", .clock = &clock});
  bool destroyed = false;
  bool reached_after_sleep = false;
  auto sleeper = [&]() -> task<int> {
    flag_on_exit guard{&destroyed};
    co_await sleep_for(1h);
    reached_after_sleep = true;
    co_return 1;
  };
  auto main = [&]() -> task<void> {
    auto h = loop.spawn(sleeper(), "sleeper");
    co_await sleep_for(1s);
    EXPECT_FALSE(h.done());
    h.cancel();
    EXPECT_THROW(co_await h, cancelled_error);
    EXPECT_TRUE(h.done());
  };
  loop.run(main());
  EXPECT_TRUE(destroyed);
  EXPECT_FALSE(reached_after_sleep);
}

TEST(JoinHandle, CancellationIsStickyAtEveryLaterAwait) {
  event_loop loop;
  int caught = 0;
  auto stubborn = [&]() -> task<void> {
    for (int i = 0; i < 3; ++i) {
      try {
        co_await sleep_for(1h);
      } catch (const cancelled_error&) {
        ++caught;  // swallowing it does not un-cancel the task
      }
    }
  };
  auto main = [&]() -> task<void> {
    auto h = loop.spawn(stubborn());
    co_await yield();
    h.cancel();
    co_await h;  // the task swallowed every cancellation: it ends normally
  };
  loop.run(main());
  EXPECT_EQ(caught, 3);
}

TEST(JoinHandle, CancelAfterFinishIsNoop) {
  event_loop loop;
  auto quick = []() -> task<int> { co_return 3; };
  auto main = [&]() -> task<int> {
    auto h = loop.spawn(quick());
    co_await yield();
    EXPECT_TRUE(h.done());
    h.cancel();
    co_return co_await h;
  };
  EXPECT_EQ(loop.run(main()), 3);
}

TEST(JoinHandle, CancelBeforeStartNeverRunsTheBody) {
  event_loop loop;
  bool ran = false;
  auto body = [&]() -> task<void> {
    ran = true;
    co_return;
  };
  auto main = [&]() -> task<void> {
    auto h = loop.spawn(body());
    h.cancel();
    EXPECT_THROW(co_await h, cancelled_error);
  };
  loop.run(main());
  EXPECT_FALSE(ran);
}

TEST(JoinHandle, CancellingTheJoinerLeavesTheJoinedTaskRunning) {
  manual_clock clock(manual_clock::mode::auto_advance);
  event_loop loop({.name = "t", .clock = &clock});
  bool worker_finished = false;
  auto worker = [&]() -> task<int> {
    co_await sleep_for(10s);
    worker_finished = true;
    co_return 5;
  };
  auto main = [&]() -> task<int> {
    auto w = loop.spawn(worker(), "worker");
    auto waiter_body = [&]() -> task<void> { co_await w; };
    auto waiter = loop.spawn(waiter_body(), "waiter");
    co_await sleep_for(1s);
    waiter.cancel();
    EXPECT_THROW(co_await waiter, cancelled_error);
    EXPECT_FALSE(worker_finished);
    co_return co_await w;  // the join registration was removed: we can await it now
  };
  EXPECT_EQ(loop.run(main()), 5);
  EXPECT_TRUE(worker_finished);
}

TEST(JoinHandle, TaskCanCancelItself) {
  event_loop loop;
  join_handle<void> self;
  bool after = false;
  auto body = [&]() -> task<void> {
    self.cancel();  // delivered at the next await
    co_await yield();
    after = true;
  };
  auto main = [&]() -> task<void> {
    self = loop.spawn(body());
    EXPECT_THROW(co_await self, cancelled_error);
  };
  loop.run(main());
  EXPECT_FALSE(after);
}

TEST(JoinHandle, DroppingTheHandleDoesNotCancel) {
  manual_clock clock(manual_clock::mode::auto_advance);
  event_loop loop({.name = "t", .clock = &clock});
  bool finished = false;
  auto body = [&]() -> task<void> {
    co_await sleep_for(1s);
    finished = true;
  };
  auto main = [&]() -> task<void> {
    { auto h = loop.spawn(body()); }
    co_await sleep_for(2s);
  };
  loop.run(main());
  EXPECT_TRUE(finished);
}

TEST(JoinHandle, TwoJoinersAtOnceIsUsageError) {
  event_loop loop;
  auto sleeper = []() -> task<void> { co_await sleep_for(10ms); };
  auto main = [&]() -> task<void> {
    auto h = loop.spawn(sleeper());
    auto first_body = [&]() -> task<void> { co_await h; };
    auto first = loop.spawn(first_body());
    co_await yield();
    EXPECT_THROW(co_await h, usage_error);
    co_await first;
  };
  loop.run(main());
}

}  // namespace
}  // namespace spindle
