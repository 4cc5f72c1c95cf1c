#include "spindle/portal.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "spindle/background_loop.hpp"
#include "spindle/cancel_scope.hpp"
#include "spindle/event.hpp"
#include "spindle/sleep.hpp"
#include "spindle/thread_pool.hpp"

namespace spindle {
namespace {

using namespace std::chrono_literals;

// Bounds a wait so a broken test fails instead of hanging (not a timing
// assertion: the event is expected long before).
template <class F>
bool eventually(F done, std::chrono::seconds limit = 10s) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

struct on_exit {
  std::atomic<int>* counter;
  ~on_exit() { counter->fetch_add(1); }
};

// Holds a background loop's thread inside one call_sync until release().
class loop_staller {
 public:
  explicit loop_staller(const portal& p) {
    auto entered = entered_.get_future();
    thread_ = std::thread([this, p] {
      p.call_sync([this] {
        entered_.set_value();
        released_.wait();
      });
    });
    entered.wait();
  }
  ~loop_staller() { release(); }
  void release() {
    if (!thread_.joinable()) return;
    release_.set_value();
    thread_.join();
  }

 private:
  std::promise<void> entered_;
  std::promise<void> release_;
  std::shared_future<void> released_ = release_.get_future().share();
  std::thread thread_;
};

class custom_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

TEST(Portal, SubmitRunsOnTheLoopThreadAndReturnsTheValue) {
  background_loop bg({.loop = {.name = "portal-bg"}});
  portal p = bg.portal();
  auto f = p.submit([]() -> task<std::thread::id> { co_return std::this_thread::get_id(); });
  EXPECT_EQ(f.get(), bg.thread_id());
  EXPECT_FALSE(f.valid());
  EXPECT_EQ(p.call([]() -> task<int> {
    co_await sleep_for(1ms);
    co_return 42;
  }),
            42);
  EXPECT_EQ(p.loop_name(), "portal-bg");
}

TEST(Portal, ExceptionsKeepTheirType) {
  background_loop bg;
  portal p = bg.portal();
  EXPECT_THROW(p.call([]() -> task<void> {
    throw custom_error("boom");
    co_return;
  }),
               custom_error);
  auto f = p.submit([]() -> task<int> {
    co_await yield();
    throw custom_error("later");
  });
  try {
    (void)f.get();
    ADD_FAILURE() << "no exception";
  } catch (const custom_error& e) {
    EXPECT_STREQ(e.what(), "later");
  }
  // A factory that throws before making its task is answered too.
  EXPECT_THROW(p.call([]() -> task<void> { throw custom_error("factory"); }), custom_error);
}

TEST(Portal, CallTimeoutCancelsTheTaskOnTheLoop) {
  background_loop bg;
  portal p = bg.portal();
  std::atomic<int> cleaned{0};
  std::atomic<bool> saw_deadline{false};
  std::atomic<bool> finished{false};
  auto slow = [&]() -> task<void> {
    on_exit guard{&cleaned};
    saw_deadline = current_deadline() != time_point::max();
    co_await sleep_for(10s);
    finished = true;
  };
  // The loop's own deadline and the caller's fire together: either may
  // answer, and both answer timeout_error. (300 ms: the task has started.)
  EXPECT_THROW(p.call(slow, 300ms), timeout_error);
  EXPECT_TRUE(eventually([&] { return cleaned.load() == 1; }));
  EXPECT_FALSE(finished.load());
  EXPECT_TRUE(saw_deadline.load());
  EXPECT_TRUE(eventually([&] { return bg.statistics().tasks_alive == 0; }));
  EXPECT_EQ(p.statistics().timed_out, 1u);
}

TEST(Portal, CallerIsNotHeldPastItsTimeoutByAStalledLoop) {
  background_loop bg;
  portal p = bg.portal();
  loop_staller staller(p);  // blocks the loop thread (what the stall watchdog exists to catch)
  std::atomic<int> cleaned{0};
  EXPECT_THROW(p.call(
                   [&]() -> task<int> {
                     on_exit guard{&cleaned};
                     co_return 1;
                   },
                   10ms),
               timeout_error);
  staller.release();
  // The timed-out call's task never ran (it timed out before it started).
  bg.stop();
  EXPECT_EQ(cleaned.load(), 0);
}

TEST(Portal, FutureCancelCancelsTheTask) {
  background_loop bg;
  portal p = bg.portal();
  std::atomic<int> cleaned{0};
  std::atomic<bool> started{false};
  auto f = p.submit([&]() -> task<int> {
    on_exit guard{&cleaned};
    started = true;
    co_await sleep_for(10s);
    co_return 1;
  });
  // Cancel a task that is running (waiting 5 ms was not always enough for
  // it to start under TSan; one cancelled before it starts never runs its
  // body, so nothing would be cleaned up).
  EXPECT_TRUE(eventually([&] { return started.load(); }));
  EXPECT_EQ(f.wait_for(5ms), std::future_status::timeout);
  f.cancel();
  EXPECT_THROW((void)f.get(), cancelled_error);
  EXPECT_TRUE(eventually([&] { return cleaned.load() == 1; }));
  EXPECT_EQ(p.statistics().cancelled, 1u);
}

TEST(Portal, CallSyncRunsAPlainFunctionOnTheLoop) {
  background_loop bg;
  portal p = bg.portal();
  EXPECT_EQ(p.call_sync([] { return std::this_thread::get_id(); }), bg.thread_id());
  EXPECT_TRUE(p.call_sync([] { return event_loop::current() != nullptr; }));
  EXPECT_THROW(p.call_sync([]() -> int { throw custom_error("sync"); }), custom_error);
}

TEST(Portal, BlockingCallsFromTheLoopThreadRaiseInsteadOfDeadlocking) {
  background_loop bg;
  portal p = bg.portal();
  auto misuse = [p]() -> task<int> {
    int errors = 0;
    try {
      p.call([]() -> task<void> { co_return; }, 1s);
    } catch (const wrong_thread_error&) {
      ++errors;
    }
    try {
      p.call_sync([] {});
    } catch (const wrong_thread_error&) {
      ++errors;
    }
    auto f = p.submit([]() -> task<int> { co_return 7; });  // submitting is fine
    try {
      f.wait();
    } catch (const wrong_thread_error&) {
      ++errors;
    }
    co_return errors;
  };
  EXPECT_EQ(p.call(misuse, 5s), 3);
  EXPECT_THROW(bg.portal().call_sync([&bg] { bg.stop(); }), wrong_thread_error);
}

TEST(Portal, PendingCallsFailWithShutdownWhenTheLoopStops) {
  background_loop bg({.loop = {.name = "stopping", .shutdown_grace = 50ms}});
  portal p = bg.portal();
  std::vector<portal_future<int>> waiting;
  std::atomic<int> started{0};
  for (int i = 0; i < 8; ++i) {
    waiting.push_back(p.submit([&started]() -> task<int> {
      ++started;
      co_await sleep_for(10s);
      co_return 1;
    }));
  }
  // One ignores cancellation: abandoned after the grace, still answered.
  auto stubborn = p.submit([&started]() -> task<int> {
    ++started;
    co_await shielded(sleep_for(10s));
    co_return 2;
  });
  ASSERT_TRUE(eventually([&] { return started.load() == 9; }));
  loop_shutdown_report r = bg.stop();
  for (auto& f : waiting) EXPECT_THROW((void)f.get(), shutdown_error);
  try {
    (void)stubborn.get();
    ADD_FAILURE() << "no exception";
  } catch (const shutdown_error& e) {
    EXPECT_NE(std::string(e.what()).find("abandoned"), std::string::npos) << e.what();
  }
  EXPECT_EQ(r.cancelled, 9u);
  EXPECT_EQ(r.abandoned_tasks.size(), 1u);
  // Closed: later calls fail at once.
  EXPECT_TRUE(p.closed());
  EXPECT_THROW(p.call([]() -> task<void> { co_return; }, 1s), shutdown_error);
  EXPECT_THROW(p.call_sync([] {}), shutdown_error);
  auto s = p.statistics();
  EXPECT_EQ(s.shut_down, 11u);
  EXPECT_EQ(s.submitted, s.completed + s.failed + s.cancelled + s.timed_out + s.shut_down);
  // stop() is idempotent.
  EXPECT_EQ(bg.stop().cancelled, 9u);
  EXPECT_FALSE(bg.running());
}

TEST(Portal, CallsQueuedBehindAStallAreAnsweredAtStop) {
  background_loop bg;
  portal p = bg.portal();
  loop_staller staller(p);
  std::vector<portal_future<int>> queued;
  for (int i = 0; i < 16; ++i) queued.push_back(p.submit([i]() -> task<int> { co_return i; }));
  std::thread stopper([&] { bg.stop(); });
  // stop() has asked the loop to stop; let the stalled step end.
  std::this_thread::sleep_for(5ms);
  staller.release();
  stopper.join();
  int answered = 0;
  for (auto& f : queued) {
    try {
      (void)f.get();
      ++answered;  // ran before the stop was seen: a value is an answer too
    } catch (const shutdown_error&) {
      ++answered;
    }
  }
  EXPECT_EQ(answered, 16);
}

TEST(Portal, IntoAnyRunningLoopAndClosedByItsShutdown) {
  event_loop loop({.name = "main-loop"});
  portal p(loop);
  event done("done");
  int seen = 0;
  std::thread worker([&] {
    seen = p.call([&]() -> task<int> {
      done.set();
      co_return 5;
    });
  });
  auto main = [&]() -> task<void> { co_await done.wait(); };
  loop.run(main());
  worker.join();
  EXPECT_EQ(seen, 5);
  EXPECT_TRUE(p.closed());
  std::thread late([&] { EXPECT_THROW(p.call([]() -> task<void> { co_return; }, 1s), shutdown_error); });
  late.join();
  // On the loop's own thread, even a closed portal's blocking call is misuse.
  EXPECT_THROW(p.call([]() -> task<void> { co_return; }, 1s), wrong_thread_error);
}

TEST(Portal, OutlivesItsLoop) {
  std::optional<portal> p;
  {
    background_loop bg;
    p.emplace(bg.portal());
  }
  EXPECT_THROW(p->call([]() -> task<void> { co_return; }, 1s), shutdown_error);
  auto f = p->submit([]() -> task<int> { co_return 1; });
  EXPECT_THROW((void)f.get(), shutdown_error);
}

TEST(BackgroundLoop, StopShutsDownAttachedPoolsInOneReport) {
  background_loop bg({.loop = {.name = "svc"}});
  thread_pool db({.name = "db", .threads = 1, .attach_to = &bg.loop()});
  portal p = bg.portal();
  EXPECT_EQ(p.call([&db]() -> task<int> { co_return co_await run_blocking(db, [] { return 3; }); }, 5s), 3);
  loop_statistics s = bg.statistics();
  EXPECT_EQ(s.name, "svc");
  EXPECT_GE(s.tasks_completed, 1u);
  loop_shutdown_report r = bg.stop();
  ASSERT_EQ(r.pools.size(), 1u);
  EXPECT_EQ(r.pools[0].completed, 1u);
  EXPECT_TRUE(r.clean());
  EXPECT_THROW((void)bg.statistics(), shutdown_error);
}

}  // namespace
}  // namespace spindle
