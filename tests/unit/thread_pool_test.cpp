#include "spindle/thread_pool.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "spindle/cancel_scope.hpp"
#include "spindle/event_loop.hpp"
#include "spindle/sleep.hpp"
#include "spindle/task_group.hpp"
#include "support/test_support.hpp"

namespace spindle {
namespace {

using namespace std::chrono_literals;

// A gate blocking threads until opened (no sleeps in the tests' logic).
class gate {
 public:
  void wait() {
    std::unique_lock lock(m_);
    ++waiting_;
    cv_.notify_all();
    cv_.wait(lock, [&] { return open_; });
    ++exited_;
    cv_.notify_all();
  }
  // Until `n` waiters have left wait(): then no thread touches the gate any
  // more and it may be destroyed (abandoned calls outlive their awaiters).
  void wait_for_exits(int n) {
    std::unique_lock lock(m_);
    cv_.wait(lock, [&] { return exited_ >= n; });
  }
  void open() {
    std::lock_guard lock(m_);
    open_ = true;
    cv_.notify_all();
  }
  void wait_for_waiters(int n) {
    std::unique_lock lock(m_);
    cv_.wait(lock, [&] { return waiting_ >= n; });
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  int waiting_ = 0;
  int exited_ = 0;
  bool open_ = false;
};

TEST(ThreadPool, ReturnsValueOnTheLoopAndRunsOnAWorker) {
  thread_pool pool({.name = "calc", .threads = 2});
  event_loop loop;
  auto main = [&]() -> task<bool> {
    auto loop_thread = std::this_thread::get_id();
    std::thread::id ran_on;
    int v = co_await run_blocking(
        pool,
        [&](int a, int b) {
          ran_on = std::this_thread::get_id();
          return a * b;
        },
        6, 7);
    EXPECT_EQ(v, 42);
    co_return ran_on != loop_thread&& std::this_thread::get_id() == loop_thread;
  };
  EXPECT_TRUE(loop.run(main()));
  auto s = pool.statistics();
  EXPECT_EQ(s.submitted, 1u);
  EXPECT_EQ(s.completed, 1u);
  EXPECT_EQ(s.threads, 2u);
}

TEST(ThreadPool, ElasticPoolGrowsUnderLoadAndShrinksWhenIdle) {
  thread_pool pool({.name = "elastic", .threads = 1, .max_threads = 4, .idle_timeout = 20ms});
  event_loop loop;
  gate g;
  auto main = [&]() -> task<void> {
    co_await with_task_group([&](task_group& tg) -> task<void> {
      for (int i = 0; i < 6; ++i) {
        tg.spawn([](thread_pool& p, gate& gt) -> task<void> { co_await run_blocking(p, [&] { gt.wait(); }); }(
                                                  pool, g));
      }
      co_await sleep_for(1ms);
      g.wait_for_waiters(4);  // four run at once: the pool grew to its bound
      auto s = pool.statistics();
      EXPECT_EQ(s.threads, 4u);
      EXPECT_EQ(s.busy, 4u);
      EXPECT_EQ(s.queued, 2u);  // and no further
      g.open();
    });
    // Idle extras leave after idle_timeout; the floor stays.
    for (int i = 0; i < 2000 && pool.statistics().threads > 1; ++i) co_await sleep_for(1ms);
    EXPECT_EQ(pool.statistics().threads, 1u);
  };
  loop.run(main());
  EXPECT_EQ(pool.statistics().completed, 6u);
}

TEST(ThreadPool, ExceptionTypeIsPreserved) {
  thread_pool pool({.name = "p", .threads = 1});
  event_loop loop;
  auto main = [&]() -> task<std::string> {
    try {
      co_await run_blocking(pool, [] { throw std::out_of_range("index 9"); });
    } catch (const std::out_of_range& e) {
      co_return e.what();
    }
    co_return "";
  };
  EXPECT_EQ(loop.run(main()), "index 9");
  EXPECT_EQ(pool.statistics().failed, 1u);
}

TEST(ThreadPool, PassesAStopToken) {
  thread_pool pool({.name = "p", .threads = 1});
  event_loop loop;
  auto main = [&]() -> task<bool> {
    co_return co_await run_blocking(
        pool, [](std::stop_token t) { return t.stop_possible() && !t.stop_requested(); });
  };
  EXPECT_TRUE(loop.run(main()));
}

// A pool saturated by 8 blocked calls does not delay another pool's calls:
// the fast pool's 20 calls all finish while every slow call is still blocked.
TEST(ThreadPool, IsolationBetweenPools) {
  thread_pool slow({.name = "slow", .threads = 8, .queue_capacity = 8});
  thread_pool fast({.name = "fast", .threads = 2});
  event_loop loop;
  gate g;
  std::atomic<int> slow_done{0};
  auto main = [&]() -> task<int> {
    int fast_done_while_slow_blocked = 0;
    co_await with_task_group([&](task_group& tg) -> task<void> {
      for (int i = 0; i < 8; ++i) {
        tg.spawn([](thread_pool& p, gate& gt, std::atomic<int>& done) -> task<void> {
          co_await run_blocking(p, [&] { gt.wait(); });
          ++done;
        }(slow, g, slow_done));
      }
      co_await run_blocking(fast, [&] { g.wait_for_waiters(8); });  // the slow pool is saturated
      for (int i = 0; i < 20; ++i) {
        co_await run_blocking(fast, [] {});
        if (slow_done.load() == 0) ++fast_done_while_slow_blocked;
      }
      g.open();
    });
    co_return fast_done_while_slow_blocked;
  };
  EXPECT_EQ(loop.run(main()), 20);
  EXPECT_EQ(slow_done.load(), 8);
}

TEST(ThreadPool, RejectPolicyFailsWhenTheQueueIsFull) {
  thread_pool pool({.name = "small", .threads = 1, .queue_capacity = 4, .full = when_full::reject});
  event_loop loop;
  gate g;
  auto main = [&]() -> task<std::string> {
    std::string error;
    co_await with_task_group([&](task_group& tg) -> task<void> {
      auto blocked = [](thread_pool& p, gate& gt) -> task<void> {
        co_await run_blocking(p, [&] { gt.wait(); });
      };
      tg.spawn(blocked(pool, g));
      co_await sleep_for(1ms);
      g.wait_for_waiters(1);  // (a brief block of the loop, in a test) the one worker is busy
      for (int i = 0; i < 4; ++i) tg.spawn(blocked(pool, g));  // fill the queue of 4
      co_await sleep_for(10ms);
      EXPECT_EQ(pool.statistics().queued, 4u);
      try {
        co_await run_blocking(pool, [] {});
      } catch (const rejected_error& e) {
        error = std::string(e.kind()) + ": " + e.what();
      }
      g.open();
    });
    co_return error;
  };
  std::string error = loop.run(main());
  EXPECT_EQ(error.rfind("rejected: thread_pool 'small' is full", 0), 0u) << error;
  auto s = pool.statistics();
  EXPECT_EQ(s.rejected, 1u);
  EXPECT_EQ(s.completed, 5u);
}

TEST(ThreadPool, WaitPolicySuspendsWithoutBlockingTheLoop) {
  thread_pool pool({.name = "small", .threads = 1, .queue_capacity = 1, .full = when_full::wait});
  event_loop loop;
  gate g;
  auto main = [&]() -> task<int> {
    int ticks_while_waiting = 0;
    bool extra_done = false;
    co_await with_task_group([&](task_group& tg) -> task<void> {
      tg.spawn([](thread_pool& p, gate& gt) -> task<void> { co_await run_blocking(p, [&] { gt.wait(); }); }(
                                                pool, g));
      tg.spawn(
          [](thread_pool& p) -> task<void> { co_await run_blocking(p, [] {}); }(pool));  // fills the queue
      co_await sleep_for(10ms);
      tg.spawn([](thread_pool& p, bool& done) -> task<void> {
        co_await run_blocking(p, [] {});  // no room: waits
        done = true;
      }(pool, extra_done));
      for (int i = 0; i < 5; ++i) {
        co_await sleep_for(2ms);  // the loop keeps running other work
        if (!extra_done) ++ticks_while_waiting;
      }
      g.open();
    });
    EXPECT_TRUE(extra_done);
    co_return ticks_while_waiting;
  };
  EXPECT_EQ(loop.run(main()), 5);
  EXPECT_EQ(pool.statistics().rejected, 0u);
  EXPECT_EQ(pool.statistics().completed, 3u);
}

TEST(ThreadPool, CancelledQueuedWorkNeverRuns) {
  thread_pool pool({.name = "p", .threads = 1});
  event_loop loop;
  gate g;
  std::atomic<bool> ran{false};
  auto main = [&]() -> task<void> {
    auto blocker = loop.spawn([](thread_pool& p, gate& gt) -> task<void> {
      co_await run_blocking(p, [&] { gt.wait(); });
    }(pool, g));
    co_await sleep_for(1ms);
    g.wait_for_waiters(1);  // the blocker holds the only thread
    auto queued = loop.spawn([](thread_pool& p, std::atomic<bool>& r) -> task<void> {
      co_await run_blocking(p, [&] { r = true; });
    }(pool, ran));
    co_await sleep_for(10ms);
    EXPECT_EQ(pool.statistics().queued, 1u);
    queued.cancel();
    EXPECT_THROW(co_await queued, cancelled_error);
    EXPECT_EQ(pool.statistics().queued, 0u);
    g.open();
    co_await blocker;
  };
  loop.run(main());
  EXPECT_FALSE(ran.load());
  EXPECT_EQ(pool.statistics().cancelled, 1u);
}

TEST(ThreadPool, RunningCallStopsCooperativelyOnTimeout) {
  thread_pool pool({.name = "p", .threads = 1, .abandon_grace = 10s});
  event_loop loop;
  std::atomic<bool> saw_stop{false};
  auto main = [&]() -> task<std::string> {
    try {
      co_await with_timeout(20ms, run_blocking(pool, [&](std::stop_token t) {
                              while (!t.stop_requested()) std::this_thread::sleep_for(1ms);
                              saw_stop = true;
                            }));
    } catch (const timeout_error& e) {
      co_return e.kind();
    }
    co_return "no timeout";
  };
  EXPECT_EQ(loop.run(main()), "timeout");
  EXPECT_TRUE(saw_stop.load());
  auto s = pool.statistics();
  EXPECT_EQ(s.abandoned, 0u);
  EXPECT_EQ(s.zombies, 0u);
}

TEST(ThreadPool, CallIgnoringStopIsAbandonedAndCountedAsZombie) {
  thread_pool pool({.name = "p", .threads = 1, .abandon_grace = 20ms, .max_zombies = 1});
  event_loop loop;
  gate g;
  auto main = [&]() -> task<void> {
    bool timed_out = false;
    try {
      co_await with_timeout(10ms, run_blocking(pool, [&] { g.wait(); }));  // ignores its token
    } catch (const timeout_error&) {
      timed_out = true;
    }
    EXPECT_TRUE(timed_out);
    auto s = pool.statistics();
    EXPECT_EQ(s.zombies, 1u);
    EXPECT_EQ(s.abandoned, 1u);
    EXPECT_EQ(s.threads, 1u);  // a replacement took the zombie's place
    // The zombie cap (1) is reached: further submissions are refused.
    EXPECT_THROW(co_await run_blocking(pool, [] {}), rejected_error);
    g.open();  // the zombie's call returns
    while (pool.statistics().zombies != 0) co_await sleep_for(1ms);
    EXPECT_EQ(co_await run_blocking(pool, [] { return 5; }), 5);
  };
  loop.run(main());
}

TEST(ThreadPool, ShutdownReportAccountsForEveryJob) {
  thread_pool pool({.name = "report", .threads = 1, .queue_capacity = 8});
  event_loop loop;
  gate g;
  shutdown_report report;
  auto main = [&]() -> task<std::vector<std::string>> {
    std::vector<std::string> kinds;
    co_await run_blocking(pool, [] {});  // completed
    try {
      co_await run_blocking(pool, [] { throw std::runtime_error("x"); });
    } catch (const std::runtime_error&) {  // failed
    }
    co_await with_task_group([&](task_group& tg) -> task<void> {
      for (int i = 0; i < 3; ++i) {  // 1 running (stuck) + 2 queued
        tg.spawn([](thread_pool& p, gate& gt, std::vector<std::string>& k, int n) -> task<void> {
          try {
            // (a std::string temporary in the awaited expression: once crashed g++ 12 builds)
            co_await run_blocking(p, job_name{"job-" + std::to_string(n)}, [&] { gt.wait(); });
            k.push_back("ok");
          } catch (const error& e) {
            k.push_back(e.kind());
          }
        }(pool, g, kinds, i));
      }
      co_await sleep_for(5ms);
      g.wait_for_waiters(1);  // one running, two queued
      report = pool.shutdown(shutdown_policy::cancel_queued, 20ms);
      co_return;
    });
    g.open();
    co_return kinds;
  };
  auto kinds = loop.run(main());
  g.wait_for_exits(1);  // the abandoned call returns before the gate goes
  EXPECT_EQ(kinds, (std::vector<std::string>{"shutdown", "shutdown", "shutdown"}));
  EXPECT_EQ(report.submitted, 5u);
  EXPECT_EQ(report.completed, 1u);
  EXPECT_EQ(report.failed, 1u);
  EXPECT_EQ(report.cancelled, 2u);
  EXPECT_EQ(report.abandoned, 1u);
  EXPECT_TRUE(report.balanced()) << report.to_string();
  EXPECT_EQ(report.abandoned_jobs, (std::vector<std::string>{"job-0"}));
  EXPECT_EQ(report.cancelled_jobs, (std::vector<std::string>{"job-1", "job-2"}));
  EXPECT_NE(report.to_string().find("abandoned_jobs=[job-0]"), std::string::npos) << report.to_string();
}

TEST(ThreadPool, DestructorCancelsQueuedWorkAndReports) {
  std::vector<diagnostic> seen;
  gate g;
  {
    thread_pool pool(
        {.name = "doomed", .threads = 1, .abandon_grace = 20ms, .on_report = [&](const diagnostic& d) {
           seen.push_back(d);
         }});
    event_loop loop;
    auto main = [&]() -> task<void> {
      loop.spawn_detached(
          [](thread_pool& p, gate& gt) -> task<void> { co_await run_blocking(p, [&] { gt.wait(); }); }(pool,
                                                                                                       g),
          "stuck");
      co_await sleep_for(1ms);
      g.wait_for_waiters(1);
    };
    loop.run(main());
  }
  g.open();
  g.wait_for_exits(1);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_NE(seen[0].message.find("abandoned=1"), std::string::npos) << seen[0].message;
}

TEST(ThreadPool, RunReturningGivesOneCombinedReportOfTasksAndAttachedPools) {
  event_loop loop({.name = "svc", .shutdown_grace = 5s});
  test::diagnostic_log log(loop);
  gate g;
  thread_pool db(
      {.name = "db", .threads = 1, .queue_capacity = 8, .abandon_grace = 10ms, .attach_to = &loop});
  thread_pool idle({.name = "idle", .threads = 1, .attach_to = &loop});
  auto main = [&]() -> task<void> {
    // Left running when main ends: awaiting a call that ignores its stop
    // token (abandoned after db's grace), with two more calls queued behind.
    loop.spawn_detached(
        [](thread_pool& p, gate& gt) -> task<void> {
          co_await run_blocking(p, job_name{"stuck-query"}, [&] { gt.wait(); });
        }(db, g),
        "stuck");
    for (int i = 0; i < 2; ++i) {
      loop.spawn_detached(
          [](thread_pool& p) -> task<void> { co_await run_blocking(p, job_name{"queued-query"}, [] {}); }(db),
          "queued");
    }
    co_await run_blocking(idle, [] {});
    co_await sleep_for(1ms);
    g.wait_for_waiters(1);
  };
  loop.run(main());
  const loop_shutdown_report& r = loop.last_shutdown_report();
  EXPECT_EQ(r.cancelled, 3u);
  EXPECT_EQ(r.ended_cancelled, 3u);
  EXPECT_TRUE(r.abandoned_tasks.empty());
  ASSERT_EQ(r.pools.size(), 2u);
  EXPECT_EQ(r.pools[0].name, "db");
  EXPECT_EQ(r.pools[0].submitted, 3u);
  EXPECT_EQ(r.pools[0].cancelled, 2u);  // the queued ones, never run
  EXPECT_EQ(r.pools[0].abandoned, 1u);
  EXPECT_EQ(r.pools[0].abandoned_jobs, std::vector<std::string>{"stuck-query"});
  EXPECT_EQ(r.pools[1].name, "idle");
  EXPECT_EQ(r.pools[1].completed, 1u);
  EXPECT_TRUE(r.pools_balanced());
  EXPECT_FALSE(r.clean());
  EXPECT_NE(r.to_string().find("pool=db submitted=3"), std::string::npos) << r.to_string();
  // The pools are shut: later work is rejected, and their destructors stay
  // silent (the loop's report has their account).
  auto later = [&]() -> task<bool> {
    try {
      co_await run_blocking(idle, [] {});
    } catch (const rejected_error&) {
      co_return true;
    }
    co_return false;
  };
  EXPECT_TRUE(loop.run(later()));
  g.open();
  g.wait_for_exits(1);
  EXPECT_TRUE(log.entries().empty());
}

TEST(ThreadPool, ShutdownOnDemandAfterRunForever) {
  event_loop loop({.name = "bg"});
  thread_pool pool({.name = "files", .threads = 1, .attach_to = &loop});
  int ran = 0;
  // The work stops the loop once done (a 5 ms timer did before: on a
  // loaded sanitizer machine the job had not run by then, and the report
  // counted it cancelled). The long timer only bounds a failure.
  loop.call_soon([&] {
    loop.spawn_detached(
        [](thread_pool& p, int& n, event_loop& l) -> task<void> {
          co_await run_blocking(p, [&n] { ++n; });
          l.stop();
        }(pool, ran, loop),
        "work");
  });
  loop.call_later(30s, [&] { loop.stop(); });
  loop.run_forever();
  loop_shutdown_report r = loop.shutdown();
  EXPECT_EQ(ran, 1);
  EXPECT_EQ(r.cancelled, 0u);
  ASSERT_EQ(r.pools.size(), 1u);
  EXPECT_EQ(r.pools[0].completed, 1u);
  EXPECT_TRUE(r.clean());
  EXPECT_EQ(loop.last_shutdown_report().pools.size(), 1u);
  // A second shutdown has nothing left to shut.
  EXPECT_TRUE(loop.shutdown().pools.empty());
}

TEST(ThreadPool, PoolShutDownByItsOwnerIsNotInTheLoopsReport) {
  event_loop loop;
  thread_pool pool({.name = "own", .threads = 1, .attach_to = &loop});
  EXPECT_TRUE(pool.shutdown(shutdown_policy::drain, 1s).balanced());
  EXPECT_TRUE(loop.shutdown().pools.empty());
}

TEST(ThreadPool, DestroyedAttachedPoolReportsToItsLoop) {
  event_loop loop({.name = "svc"});
  test::diagnostic_log log(loop);
  gate g;
  auto main = [&]() -> task<void> {
    thread_pool pool({.name = "scoped", .threads = 1, .abandon_grace = 10ms, .attach_to = &loop});
    loop.spawn_detached(
        [](thread_pool& p, gate& gt) -> task<void> {
          try {
            co_await run_blocking(p, job_name{"stuck-job"}, [&] { gt.wait(); });
          } catch (const shutdown_error&) {
          }
        }(pool, g),
        "stuck");
    co_await sleep_for(1ms);
    g.wait_for_waiters(1);
  };  // the pool's destructor runs on the loop thread: reported at once
  loop.run(main());
  g.open();
  g.wait_for_exits(1);
  auto entries = log.entries();
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].loop, "scoped");
  EXPECT_NE(entries[0].message.find("abandoned_jobs=[stuck-job]"), std::string::npos) << entries[0].message;
  EXPECT_TRUE(loop.last_shutdown_report().pools.empty());
}

TEST(ThreadPool, AttachedPoolMayOutliveItsLoopAndTheOtherWayRound) {
  auto rejects = [](thread_pool& p) {
    event_loop probe;
    auto t = [&]() -> task<bool> {
      try {
        co_await run_blocking(p, [] {});
      } catch (const rejected_error&) {
        co_return true;
      }
      co_return false;
    };
    return probe.run(t());
  };
  std::optional<event_loop> loop(std::in_place);
  thread_pool outlives({.name = "outlives", .threads = 1, .attach_to = &*loop});
  {
    thread_pool gone({.name = "gone", .threads = 1, .attach_to = &*loop});
  }  // destroyed first: the loop skips it
  EXPECT_FALSE(rejects(outlives));
  loop.reset();  // the destructor's shutdown phase shuts `outlives` down
  EXPECT_TRUE(rejects(outlives));
  shutdown_report r = outlives.shutdown(shutdown_policy::drain, 0s);
  EXPECT_EQ(r.submitted, 1u);
  EXPECT_EQ(r.completed, 1u);
}

}  // namespace
}  // namespace spindle
