#include "spindle/event_loop.hpp"

#include <gtest/gtest.h>

#include <future>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "spindle/sleep.hpp"
#include "support/test_support.hpp"

namespace spindle {
namespace {

using namespace std::chrono_literals;

TEST(EventLoop, RunReturnsTheValue) {
  event_loop loop;
  auto main = []() -> task<int> { co_return 7; };
  EXPECT_EQ(loop.run(main()), 7);
  EXPECT_FALSE(loop.is_running());
}

// coarse_now() is the time of the loop's last I/O poll (issue #17 point 6:
// the clock is read where the loop polls, not every turn).
TEST(EventLoop, CoarseNowIsTheTimeOfTheLastPoll) {
  event_loop loop;
  auto main = [&]() -> task<void> {
    co_await sleep_for(std::chrono::milliseconds(1));  // a wait: the loop polled and read the clock
    const time_point polled = loop.coarse_now();
    const time_point before = loop.now();
    EXPECT_LE(polled, before);
    while (loop.now() - before < std::chrono::milliseconds(5)) {
    }
    EXPECT_EQ(loop.coarse_now(), polled);  // no clock read inside a step
    const time_point before_sleep = loop.now();
    co_await sleep_for(std::chrono::milliseconds(1));
    EXPECT_GE(loop.coarse_now(), before_sleep);  // the next poll read it again
    EXPECT_LE(loop.coarse_now(), loop.now());
    // A busy loop still reads it every poll_interval steps: 1,000 yields
    // (no wait at all) move it on.
    const time_point busy_start = loop.coarse_now();
    while (loop.now() - busy_start < std::chrono::milliseconds(2)) {
    }
    for (int i = 0; i < 1000; ++i) co_await yield();
    EXPECT_GT(loop.coarse_now(), busy_start);
  };
  loop.run(main());
}

TEST(EventLoop, RunCanBeCalledAgain) {
  event_loop loop;
  auto main = [](int v) -> task<int> { co_return v; };
  EXPECT_EQ(loop.run(main(1)), 1);
  EXPECT_EQ(loop.run(main(2)), 2);
}

TEST(EventLoop, RunRethrows) {
  event_loop loop;
  auto main = []() -> task<void> {
    co_await yield();
    throw std::out_of_range("boom");
  };
  EXPECT_THROW(loop.run(main()), std::out_of_range);
}

TEST(EventLoop, SpawnedTasksRunInSpawnOrderAndJoin) {
  event_loop loop;
  std::vector<int> order;
  auto worker = [&](int id) -> task<int> {
    order.push_back(id);
    co_await yield();
    order.push_back(id + 10);
    co_return id * 2;
  };
  auto main = [&]() -> task<int> {
    auto a = loop.spawn(worker(1), "a");
    auto b = loop.spawn(worker(2), "b");
    int x = co_await a;
    int y = co_await b;
    co_return x + y;
  };
  EXPECT_EQ(loop.run(main()), 6);
  EXPECT_EQ(order, (std::vector<int>{1, 2, 11, 12}));
}

TEST(EventLoop, JoinOfFinishedTaskDoesNotSuspend) {
  event_loop loop;
  auto quick = []() -> task<int> { co_return 5; };
  auto main = [&]() -> task<int> {
    auto h = loop.spawn(quick());
    co_await sleep_for(1ms);
    EXPECT_TRUE(h.done());
    co_return co_await h;
  };
  EXPECT_EQ(loop.run(main()), 5);
}

TEST(EventLoop, JoinRethrowsTheTaskException) {
  event_loop loop;
  auto bad = []() -> task<int> {
    throw std::logic_error("inner");
    co_return 0;
  };
  auto main = [&]() -> task<std::string> {
    auto h = loop.spawn(bad(), "bad");
    try {
      co_await h;
    } catch (const std::logic_error& e) {
      co_return e.what();
    }
    co_return "no exception";
  };
  EXPECT_EQ(loop.run(main()), "inner");
}

TEST(EventLoop, SecondJoinIsUsageError) {
  event_loop loop;
  auto quick = []() -> task<int> { co_return 5; };
  auto main = [&]() -> task<void> {
    auto h = loop.spawn(quick());
    EXPECT_EQ(co_await h, 5);
    EXPECT_THROW(co_await h, usage_error);
  };
  loop.run(main());
}

TEST(EventLoop, CallSoonRunsInOrderAfterReadyTasks) {
  event_loop loop;
  std::vector<std::string> log;
  auto main = [&]() -> task<void> {
    loop.call_soon([&] { log.push_back("cb1"); });
    loop.call_soon([&] { log.push_back("cb2"); });
    log.push_back("before yield");
    co_await yield();
    log.push_back("after yield");
  };
  loop.run(main());
  EXPECT_EQ(log, (std::vector<std::string>{"before yield", "cb1", "cb2", "after yield"}));
}

TEST(EventLoop, CallLaterFiresAfterDelayOnManualClock) {
  manual_clock clock(manual_clock::mode::auto_advance);
  event_loop loop({.name = "t", .clock = &clock});
  time_point start = clock.now();
  time_point fired{};
  auto main = [&]() -> task<void> {
    timer_handle h = loop.call_later(250ms, [&] { fired = loop.now(); });
    EXPECT_TRUE(h.pending());
    co_await sleep_for(1s);
    EXPECT_FALSE(h.pending());
  };
  loop.run(main());
  EXPECT_EQ(fired - start, 250ms);
}

TEST(EventLoop, CancelledCallLaterNeverRuns) {
  manual_clock clock(manual_clock::mode::auto_advance);
  event_loop loop({.name = "t", .clock = &clock});
  bool ran = false;
  auto main = [&]() -> task<void> {
    timer_handle h = loop.call_later(10ms, [&] { ran = true; });
    h.cancel();
    EXPECT_FALSE(h.pending());
    EXPECT_EQ(loop.statistics().timers, 0u);
    co_await sleep_for(1s);
  };
  loop.run(main());
  EXPECT_FALSE(ran);
}

TEST(EventLoop, CallbackExceptionIsReportedNotLost) {
  event_loop loop({.name = "cb-loop"});
  test::diagnostic_log log(loop);
  auto main = [&]() -> task<void> {
    loop.call_soon([] { throw std::runtime_error("callback exploded"); });
    co_await yield();
  };
  loop.run(main());
  auto entries = log.entries();
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].what, diagnostic::kind::callback_failure);
  EXPECT_EQ(entries[0].loop, "cb-loop");
  EXPECT_NE(entries[0].message.find("callback exploded"), std::string::npos);
}

TEST(EventLoop, UnobservedTaskFailureIsReportedWhenHandleIsDropped) {
  event_loop loop({.name = "obs"});
  test::diagnostic_log log(loop);
  auto bad = []() -> task<void> {
    throw std::runtime_error("nobody looked");
    co_return;
  };
  auto main = [&]() -> task<void> {
    {
      auto h = loop.spawn(bad(), "doomed");
      co_await yield();
      co_await yield();
      EXPECT_TRUE(h.done());
      EXPECT_EQ(log.count(diagnostic::kind::unobserved_failure), 0u);  // still could be awaited
    }
    EXPECT_EQ(log.count(diagnostic::kind::unobserved_failure), 1u);
  };
  loop.run(main());
  auto entries = log.entries();
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].task, "doomed");
  EXPECT_NE(format_line(entries[0]).find("event=unobserved_failure task=doomed"), std::string::npos);
  EXPECT_NE(entries[0].message.find("nobody looked"), std::string::npos);
}

TEST(EventLoop, DetachedFailureIsReportedWithSpawnSite) {
  event_loop loop;
  test::diagnostic_log log(loop);
  auto bad = []() -> task<void> {
    throw std::runtime_error("detached boom");
    co_return;
  };
  auto main = [&]() -> task<void> {
    loop.spawn(bad()).detach();  // unnamed: identified by file:line
    co_await yield();
    co_await yield();
  };
  loop.run(main());
  auto entries = log.entries();
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_NE(format_line(entries[0]).find("event_loop_test.cpp:"), std::string::npos)
      << format_line(entries[0]);
}

TEST(EventLoop, ObservedFailureIsNotReported) {
  event_loop loop;
  test::diagnostic_log log(loop);
  auto bad = []() -> task<void> {
    throw std::runtime_error("seen");
    co_return;
  };
  auto main = [&]() -> task<void> {
    auto h = loop.spawn(bad());
    EXPECT_THROW(co_await h, std::runtime_error);
  };
  loop.run(main());
  EXPECT_TRUE(log.entries().empty());
}

TEST(EventLoop, RunCancelsLeftoverTasksAndWaitsForTheirCleanup) {
  event_loop loop;
  bool cleaned = false;
  auto forever = [&]() -> task<void> {
    struct on_exit {
      bool* flag;
      ~on_exit() { *flag = true; }
    } guard{&cleaned};
    co_await sleep_for(24h);
  };
  auto main = [&]() -> task<void> {
    loop.spawn_detached(forever(), "forever");
    co_await yield();
  };
  loop.run(main());
  EXPECT_TRUE(cleaned);
  auto s = loop.statistics();
  EXPECT_EQ(s.tasks_alive, 0u);
  EXPECT_EQ(s.tasks_cancelled, 1u);
  EXPECT_EQ(s.tasks_completed, 1u);
  const loop_shutdown_report& r = loop.last_shutdown_report();
  EXPECT_EQ(r.cancelled, 1u);
  EXPECT_EQ(r.ended_cancelled, 1u);
  EXPECT_TRUE(r.abandoned_tasks.empty());
}

// An awaiter that registers no cancel hook and is never resumed: a task
// stuck on it cannot be cancelled, and must be reported as abandoned.
struct never_resumed {
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<>) const noexcept {}
  void await_resume() const noexcept {}
};

// Issue #17 point 3: "N tasks left at exit" can be traced to code.
TEST(EventLoop, ShutdownReportNamesWhatItCancelled) {
  event_loop loop({.name = "names"});
  auto waiter = []() -> task<void> { co_await sleep_for(std::chrono::hours(1)); };
  auto main = [&]() -> task<void> {
    for (int i = 0; i < 3; ++i) loop.spawn_detached(waiter(), "fetch-worker");
    for (int i = 0; i < 2; ++i) loop.spawn_detached(waiter(), "flusher");
    for (int i = 0; i < 2; ++i) loop.spawn_detached(waiter(), "");  // unnamed: its spawn site
    for (int i = 0; i < 150; ++i) loop.spawn_detached(waiter(), "bulk-" + std::to_string(i));
    co_await yield();
  };
  loop.run(main());
  const loop_shutdown_report& r = loop.last_shutdown_report();
  EXPECT_EQ(r.cancelled, 157u);
  EXPECT_EQ(r.cancelled_tasks.size(), loop_shutdown_report::max_named_tasks);  // bounded
  EXPECT_EQ(r.cancelled_by_name.at("fetch-worker"), 3u);
  EXPECT_EQ(r.cancelled_by_name.at("flusher"), 2u);
  bool site = false;
  for (const auto& [name, n] : r.cancelled_by_name)
    site = site || name.find("event_loop_test.cpp:") != std::string::npos;
  EXPECT_TRUE(site) << "an unnamed task is named by its spawn site";
  EXPECT_EQ(r.cancelled_by_name.size(), loop_shutdown_report::max_named_tasks + 1);  // + "(other names)"
  // The most frequent names are kept: 3 + 97 of the 150 single bulk names.
  EXPECT_EQ(r.cancelled_by_name.at("(other names)"), 53u);
  std::uint64_t counted = 0;
  for (const auto& [name, n] : r.cancelled_by_name) counted += n;
  EXPECT_EQ(counted, r.cancelled);
  EXPECT_GT(r.cancelled_by_name.at("(other names)"), 0u);
  const std::string text = r.to_string();
  EXPECT_NE(text.find("fetch-worker (3)"), std::string::npos) << text;
  EXPECT_NE(text.find("more names"), std::string::npos) << text;
}

TEST(EventLoop, TaskThatIgnoresCancellationIsReportedAsAbandoned) {
  event_loop loop({.name = "grace", .shutdown_grace = 20ms});
  test::diagnostic_log log(loop);
  auto stuck = []() -> task<void> { co_await never_resumed{}; };
  auto main = [&]() -> task<void> {
    loop.spawn_detached(stuck(), "stuck-task");
    co_await yield();
  };
  loop.run(main());
  auto entries = log.entries();
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].what, diagnostic::kind::abandoned_task);
  EXPECT_EQ(entries[0].task, "stuck-task");
  auto s = loop.statistics();
  EXPECT_EQ(s.tasks_abandoned, 1u);
  EXPECT_EQ(s.tasks_alive, 0u);
  const loop_shutdown_report& r = loop.last_shutdown_report();
  EXPECT_EQ(r.cancelled, 1u);
  EXPECT_EQ(r.abandoned_tasks, (std::vector<std::string>{"stuck-task"}));
  EXPECT_NE(r.to_string().find("abandoned_tasks=[stuck-task]"), std::string::npos) << r.to_string();
  // A later run does not wait for it, nor report it again.
  auto again = []() -> task<int> { co_return 2; };
  EXPECT_EQ(loop.run(again()), 2);
  EXPECT_EQ(log.entries().size(), 1u);
}

TEST(EventLoop, StopFromAnotherThreadEndsRunForever) {
  event_loop loop;
  std::promise<void> started;
  auto f = started.get_future();
  loop.call_soon([&] { started.set_value(); });
  std::thread stopper([&] {
    f.wait();
    loop.stop();
  });
  loop.run_forever();
  stopper.join();
  EXPECT_FALSE(loop.is_running());
}

TEST(EventLoop, StopBeforeMainFinishesThrowsShutdownAndCancelsMain) {
  event_loop loop;
  bool cancelled = false;
  auto main = [&]() -> task<void> {
    loop.call_soon([&] { loop.stop(); });
    try {
      co_await sleep_for(24h);
    } catch (const cancelled_error&) {
      cancelled = true;
      throw;
    }
  };
  EXPECT_THROW(loop.run(main()), shutdown_error);
  EXPECT_TRUE(cancelled);
}

TEST(EventLoop, RunInsideRunningLoopThrowsLoopRunning) {
  event_loop loop({.name = "outer"});
  auto inner = []() -> task<int> { co_return 1; };
  auto main = [&]() -> task<std::string> {
    try {
      (void)loop.run(inner());
    } catch (const loop_running_error& e) {
      co_return e.what();
    }
    co_return "";
  };
  std::string msg = loop.run(main());
  EXPECT_NE(msg.find("'outer' is already running"), std::string::npos) << msg;
}

TEST(EventLoop, RunningAnotherLoopOnTheSameThreadThrowsLoopRunning) {
  event_loop outer({.name = "outer"});
  event_loop inner({.name = "inner"});
  auto leaf = []() -> task<int> { co_return 1; };
  auto main = [&]() -> task<std::string> {
    try {
      (void)inner.run(leaf());
    } catch (const loop_running_error& e) {
      co_return e.what();
    }
    co_return "";
  };
  std::string msg = outer.run(main());
  EXPECT_NE(msg.find("'outer' is already running"), std::string::npos) << msg;
  EXPECT_FALSE(inner.is_running());
  EXPECT_EQ(inner.run(leaf()), 1);  // and the inner loop is still usable
}

// Every non-thread-safe method rejects a foreign thread, naming both.
TEST(EventLoop, WrongThreadIsRejectedNamingBothThreads) {
  event_loop loop({.name = "owned"});
  auto t = []() -> task<void> { co_return; };
  std::vector<std::string> messages;
  std::thread other([&] {
    pthread_setname_np(pthread_self(), "intruder");
    auto expect_wrong_thread = [&](auto&& call) {
      try {
        call();
        messages.push_back("no error");
      } catch (const wrong_thread_error& e) {
        messages.push_back(e.what());
      }
    };
    expect_wrong_thread([&] { loop.spawn(t()).detach(); });
    expect_wrong_thread([&] { loop.spawn_detached(t(), "x"); });
    expect_wrong_thread([&] { loop.call_soon([] {}); });
    expect_wrong_thread([&] { (void)loop.call_later(1ms, [] {}); });
    expect_wrong_thread([&] { (void)loop.run(t()); });
    expect_wrong_thread([&] { loop.run_forever(); });
    expect_wrong_thread([&] { (void)loop.statistics(); });
    expect_wrong_thread([&] { loop.set_diagnostic_handler({}); });
  });
  other.join();
  ASSERT_EQ(messages.size(), 8u);
  for (const auto& m : messages) {
    EXPECT_NE(m.find("event_loop 'owned' belongs to thread"), std::string::npos) << m;
    EXPECT_NE(m.find("(intruder)"), std::string::npos) << m;
  }
  EXPECT_NE(messages[0].find("spawn was called"), std::string::npos);
  EXPECT_NE(messages[2].find("call_soon was called"), std::string::npos);
  // Thread-safe members work from anywhere.
  std::thread ok([&] {
    EXPECT_FALSE(loop.is_running());
    EXPECT_EQ(loop.name(), "owned");
    loop.call_soon_threadsafe([] {});
  });
  ok.join();
}

TEST(EventLoop, JoinHandleCancelFromWrongThreadIsRejected) {
  event_loop loop;
  auto sleeper = []() -> task<void> { co_await sleep_for(1h); };
  auto main = [&]() -> task<void> {
    auto h = loop.spawn(sleeper());
    std::string msg;
    std::thread other([&] {
      try {
        h.cancel();
      } catch (const wrong_thread_error& e) {
        msg = e.what();
      }
    });
    other.join();
    EXPECT_NE(msg.find("join_handle::cancel"), std::string::npos);
    h.cancel();
    EXPECT_THROW(co_await h, cancelled_error);
  };
  loop.run(main());
}

TEST(EventLoop, AwaitingLoopPrimitivesOutsideATaskIsUsageError) {
  event_loop loop;
  bool threw = false;
  auto main = [&]() -> task<void> {
    loop.call_soon([&] {
      // A plain callback is not a task: there is nothing to suspend.
      auto body = []() -> task<void> { co_await sleep_for(1ms); };
      task<void> t = body();
      t.handle().resume();  // drive it by hand, outside the loop's task context
      threw = t.done() && t.handle().promise().exception() != nullptr;
    });
    co_await yield();
  };
  loop.run(main());
  EXPECT_TRUE(threw);
}

TEST(EventLoop, StatisticsCountOutcomes) {
  event_loop loop({.name = "stats"});
  test::diagnostic_log log(loop);
  auto ok = []() -> task<void> { co_return; };
  auto bad = []() -> task<void> {
    throw std::runtime_error("x");
    co_return;
  };
  auto sleeper = []() -> task<void> { co_await sleep_for(1h); };
  auto main = [&]() -> task<void> {
    auto a = loop.spawn(ok());
    auto b = loop.spawn(bad());
    auto c = loop.spawn(sleeper());
    co_await a;
    EXPECT_THROW(co_await b, std::runtime_error);
    auto s = loop.statistics();
    EXPECT_EQ(s.name, "stats");
    EXPECT_EQ(s.tasks_alive, 2u);  // main and the sleeper
    EXPECT_EQ(s.timers, 1u);
    c.cancel();
    EXPECT_THROW(co_await c, cancelled_error);
  };
  loop.run(main());
  auto s = loop.statistics();
  EXPECT_EQ(s.tasks_spawned, 4u);
  EXPECT_EQ(s.tasks_completed, 2u);
  EXPECT_EQ(s.tasks_failed, 1u);
  EXPECT_EQ(s.tasks_cancelled, 1u);
  EXPECT_EQ(s.tasks_alive, 0u);
  EXPECT_EQ(s.timers, 0u);
  EXPECT_GT(s.steps, 0u);
}

TEST(EventLoop, CurrentIsSetOnlyWhileRunning) {
  event_loop loop;
  EXPECT_EQ(event_loop::current(), nullptr);
  auto main = [&]() -> task<bool> { co_return event_loop::current() == &loop; };
  EXPECT_TRUE(loop.run(main()));
  EXPECT_EQ(event_loop::current(), nullptr);
}

TEST(EventLoop, DestroyingLoopReportsDroppedCallbacks) {
  std::vector<diagnostic> seen;
  {
    event_loop loop;
    loop.set_diagnostic_handler([&](const diagnostic& d) { seen.push_back(d); });
    loop.call_soon([] {});
    loop.call_soon_threadsafe([] {});
    (void)loop.call_later(1h, [] {});
  }
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].what, diagnostic::kind::dropped_callback);
  EXPECT_NE(seen[0].message.find("3 callback(s)"), std::string::npos) << seen[0].message;
}

}  // namespace
}  // namespace spindle
