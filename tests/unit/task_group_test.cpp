#include "spindle/task_group.hpp"

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "spindle/event_loop.hpp"
#include "spindle/sleep.hpp"
#include "support/test_support.hpp"

namespace spindle {
namespace {

using namespace std::chrono_literals;

using fixture = test::manual_loop;

TEST(TaskGroup, WaitsForEveryChild) {
  fixture f;
  std::vector<int> done;
  auto child = [&](int i) -> task<void> {
    co_await sleep_for(std::chrono::seconds(i));
    done.push_back(i);
  };
  auto main = [&]() -> task<void> {
    co_await with_task_group([&](task_group& g) -> task<void> {
      for (int i = 3; i >= 1; --i) g.spawn(child(i));
      EXPECT_EQ(g.running(), 3u);
      co_return;
    });
    EXPECT_EQ(done.size(), 3u);  // nothing outlives the group
  };
  f.loop.run(main());
  EXPECT_EQ(done, (std::vector<int>{1, 2, 3}));
  EXPECT_EQ(f.elapsed(), 3s);  // concurrent: the slowest, not the sum
}

// One failing child among 1,000: every other child is cancelled (its
// cleanup runs), the group rethrows the failure itself, nothing leaks.
TEST(TaskGroup, OneFailureAmongThousandCancelsTheRest) {
  fixture f;
  test::diagnostic_log log(f.loop);
  int cleaned = 0, finished = 0;
  auto child = [&](int i) -> task<void> {
    struct on_exit {
      int* n;
      ~on_exit() { ++*n; }
    } g{&cleaned};
    if (i == 500) {
      co_await sleep_for(1s);
      throw std::runtime_error("child 500 failed");
    }
    co_await sleep_for(1h);
    ++finished;
  };
  auto main = [&]() -> task<std::string> {
    try {
      co_await with_task_group([&](task_group& g) -> task<void> {
        for (int i = 0; i < 1000; ++i) g.spawn(child(i));
        co_await sleep_for(2h);  // the body is cancelled too
      });
    } catch (const std::runtime_error& e) {
      co_return e.what();
    }
    co_return "no error";
  };
  EXPECT_EQ(f.loop.run(main()), "child 500 failed");
  EXPECT_EQ(cleaned, 1000);
  EXPECT_EQ(finished, 0);
  EXPECT_EQ(f.elapsed(), 1s);
  EXPECT_TRUE(log.entries().empty());  // the failure was observed by the group
  EXPECT_EQ(f.loop.statistics().tasks_alive, 0u);
  EXPECT_EQ(f.loop.statistics().timers, 0u);
}

TEST(TaskGroup, SeveralFailuresAreAllKept) {
  fixture f;
  auto failing = [&](int i) -> task<void> {
    // Shielded, so the first failure's cancellation cannot stop the others
    // from reaching their own throw.
    co_await shielded(sleep_for(std::chrono::seconds(1 + i)));
    throw std::runtime_error("failure " + std::to_string(i));
  };
  auto main = [&]() -> task<std::vector<std::string>> {
    std::vector<std::string> msgs;
    try {
      co_await with_task_group([&](task_group& g) -> task<void> {
        for (int i = 0; i < 3; ++i) g.spawn(failing(i));
        co_return;
      });
    } catch (const task_group_error& e) {
      EXPECT_STREQ(e.kind(), "group");
      for (auto& ep : e.errors()) {
        try {
          std::rethrow_exception(ep);
        } catch (const std::exception& x) {
          msgs.push_back(x.what());
        }
      }
    }
    co_return msgs;
  };
  EXPECT_EQ(f.loop.run(main()), (std::vector<std::string>{"failure 0", "failure 1", "failure 2"}));
}

TEST(TaskGroup, BodyFailureCancelsChildren) {
  fixture f;
  bool child_cancelled = false;
  auto child = [&]() -> task<void> {
    try {
      co_await sleep_for(1h);
    } catch (const cancelled_error&) {
      child_cancelled = true;
      throw;
    }
  };
  auto main = [&]() -> task<void> {
    co_await with_task_group([&](task_group& g) -> task<void> {
      g.spawn(child());
      co_await sleep_for(1s);
      throw std::invalid_argument("body failed");
    });
  };
  EXPECT_THROW(f.loop.run(main()), std::invalid_argument);
  EXPECT_TRUE(child_cancelled);
}

TEST(TaskGroup, ExplicitCancelEndsTheGroupWithoutError) {
  fixture f;
  int cancelled = 0;
  auto child = [&]() { return test::sleep_counting_cancellation(cancelled); };
  auto main = [&]() -> task<void> {
    co_await with_task_group([&](task_group& g) -> task<void> {
      for (int i = 0; i < 5; ++i) g.spawn(child());
      co_await sleep_for(1s);
      g.cancel();
      co_await sleep_for(1s);  // throws cancelled: swallowed by the group
    });
  };
  f.loop.run(main());
  EXPECT_EQ(cancelled, 5);
  EXPECT_EQ(f.elapsed(), 1s);
}

// Regression: inside a scope with a deadline, children used to be re-rooted
// with the inherited deadline, which cut them off from group.cancel() (a
// Happy Eyeballs race then waited for its losers until the deadline).
TEST(TaskGroup, CancelFromAChildReachesSiblingsInsideADeadlineScope) {
  fixture f;
  int cancelled = 0;
  auto main = [&]() -> task<bool> {
    co_return co_await move_on_after(1h, with_task_group([&](task_group& g) -> task<void> {
                                       for (int i = 0; i < 3; ++i)
                                         g.spawn(test::sleep_counting_cancellation(cancelled));
                                       g.spawn(
                                           [](task_group& group) -> task<void> {
                                             co_await sleep_for(1s);
                                             group.cancel();
                                           }(g),
                                           "winner");
                                       co_return;
                                     }));
  };
  EXPECT_TRUE(f.loop.run(main()));
  EXPECT_EQ(cancelled, 3);
  EXPECT_EQ(f.elapsed(), 1s);
}

TEST(TaskGroup, OuterTimeoutReachesChildren) {
  fixture f;
  int cancelled = 0;
  auto child = [&]() { return test::sleep_counting_cancellation(cancelled); };
  auto main = [&]() -> task<bool> {
    try {
      co_await with_timeout(3s, with_task_group([&](task_group& g) -> task<void> {
                              for (int i = 0; i < 10; ++i) g.spawn(child());
                              co_return;  // the body ends at once; the children are the wait
                            }));
    } catch (const timeout_error&) {
      co_return true;
    }
    co_return false;
  };
  EXPECT_TRUE(f.loop.run(main()));
  EXPECT_EQ(cancelled, 10);
  EXPECT_EQ(f.elapsed(), 3s);
}

TEST(TaskGroup, ChildrenCanSpawnSiblings) {
  fixture f;
  int ran = 0;
  // The coroutine lambdas live outside the body: a child may run after the
  // body's frame (and anything declared in it) is gone.
  task_group* group = nullptr;
  auto leaf = [&]() -> task<void> {
    co_await sleep_for(1s);
    ++ran;
  };
  auto parent = [&]() -> task<void> {
    co_await sleep_for(1s);
    group->spawn(leaf());
    ++ran;
  };
  auto main = [&]() -> task<void> {
    co_await with_task_group([&](task_group& g) -> task<void> {
      group = &g;
      g.spawn(parent());
      co_return;
    });
  };
  f.loop.run(main());
  EXPECT_EQ(ran, 2);
  EXPECT_EQ(f.elapsed(), 2s);
}

}  // namespace
}  // namespace spindle
