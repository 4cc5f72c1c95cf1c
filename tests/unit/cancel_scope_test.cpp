#include "spindle/cancel_scope.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "spindle/event_loop.hpp"
#include "spindle/sleep.hpp"
#include "support/test_support.hpp"

namespace spindle {
namespace {

using namespace std::chrono_literals;

using fixture = test::manual_loop;

task<int> slow(duration d, int v) {
  co_await sleep_for(d);
  co_return v;
}

TEST(CancelScope, WithTimeoutReturnsWhenInTime) {
  fixture f;
  auto main = [&]() -> task<int> { co_return co_await with_timeout(2s, slow(1s, 7)); };
  EXPECT_EQ(f.loop.run(main()), 7);
  EXPECT_EQ(f.elapsed(), 1s);
  EXPECT_EQ(f.loop.statistics().timers, 0u);  // the scope's deadline timer is gone
}

TEST(CancelScope, WithTimeoutThrowsTimeoutAtTheDeadlineAndRunsCleanup) {
  fixture f;
  bool cleaned = false;
  auto inner = [&]() -> task<int> {
    struct on_exit {
      bool* b;
      ~on_exit() { *b = true; }
    } g{&cleaned};
    co_await sleep_for(10s);
    co_return 1;
  };
  auto main = [&]() -> task<std::string> {
    try {
      co_await with_timeout(3s, inner());
    } catch (const timeout_error& e) {
      co_return e.kind();
    }
    co_return "no timeout";
  };
  EXPECT_EQ(f.loop.run(main()), "timeout");
  EXPECT_EQ(f.elapsed(), 3s);
  EXPECT_TRUE(cleaned);
}

TEST(CancelScope, MoveOnAfterReturnsEmpty) {
  fixture f;
  auto main = [&]() -> task<void> {
    std::optional<int> a = co_await move_on_after(1s, slow(5s, 1));
    EXPECT_FALSE(a.has_value());
    std::optional<int> b = co_await move_on_after(5s, slow(1s, 2));
    EXPECT_EQ(b, 2);
    bool done = co_await move_on_after(1s, sleep_for(2s));
    EXPECT_FALSE(done);
  };
  f.loop.run(main());
  EXPECT_EQ(f.elapsed(), 3s);
}

TEST(CancelScope, InnerShorterDeadlineWins) {
  fixture f;
  auto main = [&]() -> task<std::string> {
    try {
      co_await with_timeout(10s, with_timeout(2s, slow(5s, 0)));
    } catch (const timeout_error& e) {
      co_return std::string(e.what());
    }
    co_return "none";
  };
  EXPECT_EQ(f.loop.run(main()), "timed out after 2000 ms");
  EXPECT_EQ(f.elapsed(), 2s);
}

// The outer deadline is earlier: the inner with_timeout must not claim it
// (its own deadline did not expire), so the outer one reports the timeout.
TEST(CancelScope, OuterShorterDeadlineIsReportedByTheOuterScope) {
  fixture f;
  std::string inner_saw;
  auto inner = [&]() -> task<int> {
    try {
      co_return co_await with_timeout(10s, slow(5s, 0));
    } catch (const timeout_error&) {
      inner_saw = "timeout";
      throw;
    } catch (const cancelled_error&) {
      inner_saw = "cancelled";
      throw;
    }
  };
  auto main = [&]() -> task<std::string> {
    try {
      co_await with_timeout(2s, inner());
    } catch (const timeout_error& e) {
      co_return std::string(e.what());
    }
    co_return "none";
  };
  EXPECT_EQ(f.loop.run(main()), "timed out after 2000 ms");
  EXPECT_EQ(inner_saw, "cancelled");
  EXPECT_EQ(f.elapsed(), 2s);
}

TEST(CancelScope, CurrentDeadlineIsTheInnermostEffectiveOne) {
  fixture f;
  std::vector<duration> seen;
  auto probe = [&]() -> task<void> {
    seen.push_back(current_deadline() - f.start);
    co_return;
  };
  auto main = [&]() -> task<void> {
    EXPECT_EQ(current_deadline(), time_point::max());
    co_await with_timeout(10s, probe());
    co_await with_timeout(10s, with_timeout(3s, probe()));
    co_await with_timeout(3s, with_timeout(10s, probe()));
    co_await with_timeout(3s, shielded(probe()));  // a shield hides outer deadlines
  };
  f.loop.run(main());
  ASSERT_EQ(seen.size(), 4u);
  EXPECT_EQ(seen[0], 10s);
  EXPECT_EQ(seen[1], 3s);
  EXPECT_EQ(seen[2], 3s);
  EXPECT_EQ(seen[3], time_point::max() - f.start);
}

TEST(CancelScope, SpawnedTaskInheritsTheDeadline) {
  fixture f;
  auto child = [&]() -> task<std::string> {
    EXPECT_EQ(current_deadline() - f.start, 2s);
    try {
      co_await sleep_for(1h);
    } catch (const cancelled_error&) {
      co_return "cancelled at " + std::to_string((f.clock.now() - f.start) / 1s) + "s";
    }
    co_return "slept";
  };
  join_handle<std::string> h;
  auto spawner = [&]() -> task<void> {
    h = f.loop.spawn(child());
    co_return;
  };
  auto main = [&]() -> task<std::string> {
    co_await with_timeout(2s, spawner());  // returns at once; the child keeps the deadline
    co_return co_await h;
  };
  EXPECT_EQ(f.loop.run(main()), "cancelled at 2s");
}

TEST(CancelScope, ShieldedCleanupCompletesInACancelledTask) {
  fixture f;
  std::vector<std::string> log;
  auto worker = [&]() -> task<void> {
    bool cancelled = false;
    try {
      co_await sleep_for(1h);
    } catch (const cancelled_error&) {
      cancelled = true;  // (C++ forbids co_await inside a handler)
    }
    if (!cancelled) co_return;
    log.push_back("cancelled");
    // Without the shield this sleep would throw at once.
    co_await shielded(sleep_for(5s));
    log.push_back("cleanup done");
    try {
      co_await sleep_for(1s);
    } catch (const cancelled_error&) {
      log.push_back("still cancelled after the shield");
      throw;
    }
  };
  auto main = [&]() -> task<void> {
    auto h = f.loop.spawn(worker());
    co_await sleep_for(1s);
    h.cancel();
    EXPECT_THROW(co_await h, cancelled_error);
  };
  f.loop.run(main());
  EXPECT_EQ(log, (std::vector<std::string>{"cancelled", "cleanup done", "still cancelled after the shield"}));
  EXPECT_EQ(f.elapsed(), 6s);
}

TEST(CancelScope, ShieldIgnoresOuterDeadlineButInnerTimeoutStillWorks) {
  fixture f;
  auto main = [&]() -> task<std::string> {
    auto inner = [&]() -> task<std::string> {
      try {
        co_await with_timeout(4s, sleep_for(10s));
      } catch (const timeout_error&) {
        co_return "inner timeout at " + std::to_string((f.clock.now() - f.start) / 1s) + "s";
      }
      co_return "none";
    };
    co_return co_await with_timeout(1s, shielded(inner()));
  };
  EXPECT_EQ(f.loop.run(main()), "inner timeout at 4s");
}

TEST(CancelScope, StopTokenFiresOnCancellation) {
  fixture f;
  bool stop_seen_in_callback = false;
  auto main = [&]() -> task<void> {
    auto inner = [&]() -> task<void> {
      std::stop_token tok = current_stop_token();
      EXPECT_FALSE(tok.stop_requested());
      std::stop_callback cb(tok, [&] { stop_seen_in_callback = true; });
      co_await sleep_for(1h);
    };
    bool done = co_await move_on_after(2s, inner());
    EXPECT_FALSE(done);
  };
  f.loop.run(main());
  EXPECT_TRUE(stop_seen_in_callback);
}

TEST(CancelScope, StopTokenOfCancelledTaskIsAlreadyRequested) {
  fixture f;
  auto worker = [&]() -> task<bool> {
    try {
      co_await sleep_for(1h);
    } catch (const cancelled_error&) {
    }
    co_return current_stop_token().stop_requested();
  };
  auto main = [&]() -> task<bool> {
    auto h = f.loop.spawn(worker());
    co_await yield();
    h.cancel();
    co_return co_await h;
  };
  EXPECT_TRUE(f.loop.run(main()));
}

TEST(CancelScope, CheckCancelledIsACheckpoint) {
  fixture f;
  int iterations = 0;
  auto busy = [&]() -> task<void> {
    co_await yield();
    for (;;) {
      ++iterations;
      check_cancelled();  // a CPU loop with no await still stops
      if (iterations == 1000) co_await yield();
    }
  };
  auto main = [&]() -> task<void> {
    auto h = f.loop.spawn(busy());
    co_await yield();
    co_await yield();
    h.cancel();
    EXPECT_THROW(co_await h, cancelled_error);
  };
  f.loop.run(main());
  EXPECT_EQ(iterations, 1000);
}

TEST(CancelScope, TimeoutOnAlreadyCompleteWorkReturnsValue) {
  fixture f;
  auto quick = []() -> task<int> { co_return 4; };
  auto main = [&]() -> task<int> { co_return co_await with_timeout(0s, quick()); };
  EXPECT_EQ(f.loop.run(main()), 4);  // no await inside: nothing to cancel
}

TEST(CancelScope, RealClockTimeout) {
  event_loop loop;
  auto main = [&]() -> task<bool> {
    try {
      co_await with_timeout(20ms, sleep_for(10s));
    } catch (const timeout_error&) {
      co_return true;
    }
    co_return false;
  };
  EXPECT_TRUE(loop.run(main()));
}

}  // namespace
}  // namespace spindle
