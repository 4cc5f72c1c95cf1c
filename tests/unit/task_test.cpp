#include "spindle/task.hpp"  // first: proves the header is self-contained

#include <gtest/gtest.h>

#include <memory>
#include <stdexcept>
#include <string>

#include "spindle/event_loop.hpp"
#include "support/test_support.hpp"

namespace spindle {
namespace {

task<int> answer() { co_return 42; }
task<void> nothing() { co_return; }
task<int> add_one(int x) { co_return x + 1; }
task<int> fail_with(std::string what) {
  throw std::invalid_argument(what);
  co_return 0;
}
task<std::string> chained() {
  int a = co_await answer();
  int b = co_await add_one(a);
  co_return std::to_string(b);
}

TEST(Task, ReturnsValueThroughAwait) {
  event_loop loop;
  EXPECT_EQ(loop.run(chained()), "43");
}

TEST(Task, VoidTaskRuns) {
  event_loop loop;
  bool ran = false;
  auto body = [&]() -> task<void> {
    co_await nothing();
    ran = true;
  };
  loop.run(body());
  EXPECT_TRUE(ran);
}

TEST(Task, IsLazy) {
  bool started = false;
  auto make = [&]() -> task<int> {
    started = true;
    co_return 1;
  };
  {
    task<int> t = make();
    EXPECT_FALSE(started);
    EXPECT_FALSE(t.done());
  }  // destroyed without running: frame freed, body never ran
  EXPECT_FALSE(started);
}

TEST(Task, ExceptionPropagatesWithItsType) {
  event_loop loop;
  auto outer = []() -> task<int> { co_return co_await fail_with("bad input"); };
  try {
    (void)loop.run(outer());
    FAIL() << "expected an exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "bad input");
  }
}

TEST(Task, ExceptionCanBeCaughtByTheAwaiter) {
  event_loop loop;
  auto outer = []() -> task<std::string> {
    try {
      co_await fail_with("x");
    } catch (const std::invalid_argument&) {
      co_return "caught";
    }
    co_return "not caught";
  };
  EXPECT_EQ(loop.run(outer()), "caught");
}

TEST(Task, ReferenceResult) {
  event_loop loop;
  int storage = 5;
  auto ref = [&]() -> task<int&> { co_return storage; };
  auto outer = [&]() -> task<void> {
    int& r = co_await ref();
    r = 9;
  };
  loop.run(outer());
  EXPECT_EQ(storage, 9);
}

TEST(Task, MoveOnlyValue) {
  event_loop loop;
  auto make = []() -> task<std::unique_ptr<int>> { co_return std::make_unique<int>(7); };
  auto outer = [&]() -> task<int> {
    std::unique_ptr<int> p = co_await make();
    co_return *p;
  };
  EXPECT_EQ(loop.run(outer()), 7);
}

TEST(Task, NonDefaultConstructibleValue) {
  struct no_default {
    explicit no_default(int v) : value(v) {}
    int value;
  };
  event_loop loop;
  auto make = []() -> task<no_default> { co_return no_default{3}; };
  EXPECT_EQ(loop.run(make()).value, 3);
}

TEST(Task, AwaitingEmptyTaskIsUsageError) {
  event_loop loop;
  auto outer = []() -> task<void> {
    task<int> empty;
    co_await std::move(empty);
  };
  EXPECT_THROW(loop.run(outer()), usage_error);
}

TEST(Task, MoveAssignmentDestroysPreviousFrame) {
  int destroyed = 0;
  struct guard {
    int* n;
    ~guard() { ++*n; }
  };
  auto make = [&]() -> task<int> {
    guard g{&destroyed};
    co_return 1;
  };
  // A frame that never started has not constructed `g` yet: nothing counted.
  task<int> a = make();
  a = make();
  EXPECT_EQ(destroyed, 0);
  event_loop loop;
  EXPECT_EQ(loop.run(std::move(a)), 1);
  EXPECT_EQ(destroyed, 1);
}

// 1,000,000 sequential awaits of synchronously completing tasks, on a 256
// KiB stack: symmetric transfer must keep stack use constant.
TEST(Task, MillionSequentialSynchronousAwaitsUseConstantStack) {
  long long sum = 0;
  test::run_on_small_stack(256 * 1024, [&] {
    event_loop loop;
    auto body = []() -> task<long long> {
      long long s = 0;
      for (int i = 0; i < 1'000'000; ++i) s += co_await add_one(i);
      co_return s;
    };
    sum = loop.run(body());
  });
  EXPECT_EQ(sum, 1'000'000LL * 999'999 / 2 + 1'000'000);
}

task<int> nested(int depth) {
  if (depth == 0) co_return 0;
  co_return 1 + co_await nested(depth - 1);
}

// A chain 1,000,000 frames deep: each resumes its parent at final suspend.
TEST(Task, MillionDeepNestedChainUsesConstantStack) {
  int depth = 0;
  test::run_on_small_stack(256 * 1024, [&] {
    event_loop loop;
    depth = loop.run(nested(1'000'000));
  });
  EXPECT_EQ(depth, 1'000'000);
}

}  // namespace
}  // namespace spindle
