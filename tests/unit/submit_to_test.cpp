// Issue #17 points 4 and 5: the blocking portal entry points refuse the
// thread of any loop (usage_error naming it), and submit_to is the
// non-blocking door between loops.

#include <gtest/gtest.h>

#include <atomic>
#include <stdexcept>
#include <string>

#include "spindle/background_loop.hpp"
#include "spindle/cancel_scope.hpp"
#include "spindle/event_loop.hpp"
#include "spindle/portal.hpp"
#include "spindle/sleep.hpp"

namespace spindle {
namespace {

using namespace std::chrono_literals;

TEST(SubmitTo, ReturnsTheValueWithoutBlockingTheCallersLoop) {
  background_loop other({.loop = {.name = "other"}});
  portal p = other.portal();
  event_loop loop({.name = "caller"});
  int ticks = 0;
  auto main = [&]() -> task<void> {
    bool stop = false;
    auto ticker = [&]() -> task<void> {
      while (!stop) {
        co_await sleep_for(1ms);
        ++ticks;
      }
    };
    auto ticking = event_loop::current()->spawn(ticker(), "ticker");
    const std::thread::id caller_thread = std::this_thread::get_id();
    std::thread::id ran_on;
    auto work = [&]() -> task<int> {
      ran_on = std::this_thread::get_id();
      co_await sleep_for(50ms);
      co_return 42;
    };
    const int got = co_await submit_to(p, work);
    EXPECT_EQ(got, 42);
    EXPECT_NE(ran_on, caller_thread);
    EXPECT_EQ(std::this_thread::get_id(), caller_thread);  // resumed on its own loop
    EXPECT_GT(ticks, 5) << "the caller's loop was blocked while the other loop worked";
    stop = true;
    co_await ticking;
  };
  loop.run(main());
}

TEST(SubmitTo, ExceptionsKeepTheirTypeAndVoidWorks) {
  background_loop other;
  event_loop loop;
  portal p = other.portal();
  auto main = [&]() -> task<void> {
    bool threw = false;
    auto failing = []() -> task<int> {
      co_await sleep_for(1ms);
      throw std::invalid_argument("bad input");
    };
    try {
      co_await submit_to(p, failing);
    } catch (const std::invalid_argument& e) {
      threw = std::string(e.what()) == "bad input";
    }
    EXPECT_TRUE(threw);
    int side = 0;
    auto setting = [&side]() -> task<void> {
      side = 3;
      co_return;
    };
    co_await submit_to(p, setting);
    EXPECT_EQ(side, 3);
  };
  loop.run(main());
}

TEST(SubmitTo, CancellingTheCallerCancelsTheTargetTaskAndWaitsForIt) {
  background_loop other;
  portal p = other.portal();
  event_loop loop;
  std::atomic<bool> target_ended{false};
  auto main = [&]() -> task<void> {
    struct on_exit {
      std::atomic<bool>& flag;
      ~on_exit() { flag = true; }
    };
    auto long_work = [&]() -> task<int> {
      on_exit mark{target_ended};
      co_await sleep_for(30s);
      co_return 1;
    };
    auto sub = submit_to(p, long_work);  // (named: DEVELOPERS.md on g++ 12)
    auto limited = move_on_after(20ms, std::move(sub));
    const auto finished = co_await std::move(limited);
    EXPECT_FALSE(finished.has_value());
    EXPECT_TRUE(target_ended.load()) << "submit_to returned before the target's task ended";
  };
  loop.run(main());
}

TEST(SubmitTo, IntoALoopThatStoppedIsShutdownError) {
  auto other = std::make_unique<background_loop>();
  portal p = other->portal();
  other->stop();
  event_loop loop;
  auto main = [&]() -> task<void> {
    bool shut = false;
    auto nothing = []() -> task<void> { co_return; };
    try {
      co_await submit_to(p, nothing);
    } catch (const shutdown_error&) {
      shut = true;
    }
    EXPECT_TRUE(shut);
  };
  loop.run(main());
}

TEST(SubmitTo, IntoTheCallersOwnLoop) {
  event_loop loop({.name = "self"});
  portal self(loop);
  auto main = [&]() -> task<void> {
    auto seven = []() -> task<int> { co_return 7; };
    const int got = co_await submit_to(self, seven);
    EXPECT_EQ(got, 7);
  };
  loop.run(main());
}

// The trap: a task on one loop calling a blocking portal entry into
// another freezes its own loop. Each blocking entry refuses instead.
TEST(SubmitTo, BlockingEntriesRefuseAnyLoopThread) {
  background_loop other({.loop = {.name = "other"}});
  portal p = other.portal();
  event_loop loop({.name = "front"});
  auto main = [&]() -> task<void> {
    auto expect_refused = [](auto&& blocking, const char* what) {
      try {
        blocking();
        ADD_FAILURE() << what << " did not refuse";
      } catch (const usage_error& e) {
        const std::string m = e.what();
        EXPECT_NE(m.find("loop 'front'"), std::string::npos) << m;
        EXPECT_NE(m.find("submit_to"), std::string::npos) << m;
      }
    };
    expect_refused([&] { (void)p.call([]() -> task<int> { co_return 1; }, 1s); }, "portal::call");
    expect_refused([&] { (void)p.call([]() -> task<int> { co_return 1; }); }, "portal::call (no timeout)");
    expect_refused([&] { p.call_sync([] {}); }, "portal::call_sync");
    auto fut = p.submit([]() -> task<int> { co_return 2; });  // submitting never blocks: allowed
    expect_refused([&] { (void)fut.wait_for(1s); }, "portal_future::wait_for");
    expect_refused([&] { fut.wait(); }, "portal_future::wait");
    expect_refused([&] { (void)fut.get(); }, "portal_future::get");
    fut.cancel();
    co_return;
  };
  loop.run(main());
  // Outside any loop the same calls work.
  EXPECT_EQ(p.call([]() -> task<int> { co_return 5; }, 5s), 5);
}

}  // namespace
}  // namespace spindle
