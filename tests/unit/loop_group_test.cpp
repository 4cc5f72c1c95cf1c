// Issue #17 point 5: loop_group (N loops on N threads, optionally pinned,
// a portal each, one combined stop report), listen_options::reuse_port,
// and http::group_server (one acceptor per loop on one port).

#include <gtest/gtest.h>
#include <pthread.h>
#include <sched.h>

#include <set>
#include <string>
#include <thread>

#include "spindle/background_loop.hpp"
#include "spindle/cancel_scope.hpp"
#include "spindle/event_loop.hpp"
#include "spindle/http/client.hpp"
#include "spindle/http/group_server.hpp"
#include "spindle/loop_group.hpp"
#include "spindle/net/tcp.hpp"
#include "spindle/portal.hpp"
#include "spindle/sleep.hpp"

namespace spindle {
namespace {

using namespace std::chrono_literals;

TEST(LoopGroup, LoopsOnThreadsOfTheirOwnWithNamesAndPortals) {
  loop_group group({.loops = 3, .name = "core"});
  ASSERT_EQ(group.size(), 3u);
  std::set<std::thread::id> threads;
  for (std::size_t i = 0; i < group.size(); ++i) {
    EXPECT_EQ(group.loop(i).name(), "core-" + std::to_string(i));
    threads.insert(group.portal(i).call_sync([] { return std::this_thread::get_id(); }));
    EXPECT_EQ(group.cpu(i), -1);  // not pinned unless asked
  }
  EXPECT_EQ(threads.size(), 3u);
  EXPECT_FALSE(threads.contains(std::this_thread::get_id()));
  EXPECT_THROW((void)group.portal(3), usage_error);
}

TEST(LoopGroup, PinnedLoopsRunOnTheirCpu) {
  cpu_set_t mine;
  CPU_ZERO(&mine);
  ASSERT_EQ(::sched_getaffinity(0, sizeof mine, &mine), 0);
  loop_group group({.loops = 2, .name = "pinned", .pin = true});
  for (std::size_t i = 0; i < group.size(); ++i) {
    const int cpu = group.cpu(i);
    ASSERT_GE(cpu, 0);
    EXPECT_TRUE(CPU_ISSET(cpu, &mine));
    const int count = group.portal(i).call_sync([] {
      cpu_set_t set;
      CPU_ZERO(&set);
      ::pthread_getaffinity_np(::pthread_self(), sizeof set, &set);
      return CPU_COUNT(&set);
    });
    EXPECT_EQ(count, 1) << "loop " << i << " is not pinned to one CPU";
    EXPECT_EQ(group.portal(i).call_sync([] { return ::sched_getcpu(); }), cpu);
  }
  if (CPU_COUNT(&mine) >= 2) {
    EXPECT_NE(group.cpu(0), group.cpu(1));
  }
}

TEST(LoopGroup, LoopsReachEachOtherWithSubmitTo) {
  loop_group group({.loops = 2});
  portal second = group.portal(1);
  const auto [first_thread, second_thread] =
      group.portal(0).call([second]() -> task<std::pair<std::thread::id, std::thread::id>> {
        auto where = []() -> task<std::thread::id> { co_return std::this_thread::get_id(); };
        const std::thread::id there = co_await submit_to(second, where);
        co_return std::make_pair(std::this_thread::get_id(), there);
      });
  EXPECT_NE(first_thread, second_thread);
  EXPECT_EQ(second_thread, group.portal(1).call_sync([] { return std::this_thread::get_id(); }));
}

TEST(LoopGroup, StopGivesOneCombinedReport) {
  loop_group group({.loops = 2, .name = "svc"});
  for (std::size_t i = 0; i < group.size(); ++i) {
    group.portal(i).call_sync([i] {
      auto sleeper = []() -> task<void> { co_await sleep_for(std::chrono::hours(1)); };
      event_loop::current()->spawn_detached(sleeper(), "worker-" + std::to_string(i));
    });
  }
  const group_shutdown_report r = group.stop();
  ASSERT_EQ(r.loops.size(), 2u);
  EXPECT_EQ(r.cancelled(), 2u);
  EXPECT_FALSE(r.clean());
  EXPECT_EQ(r.loops[0].loop, "svc-0");
  EXPECT_EQ(r.loops[1].cancelled_by_name.at("worker-1"), 1u);
  EXPECT_NE(r.to_string().find("svc-1"), std::string::npos) << r.to_string();
  EXPECT_EQ(group.stop().loops.size(), 2u);  // idempotent
}

// Point 4 for the stops: stop() joins threads and waits up to the shutdown
// grace, so from a task on a loop it is refused (naming that loop) and
// stop_async() is the door: the caller's loop keeps running its other
// tasks while the group (and a background loop) stop.
TEST(LoopGroup, BlockingStopsRefuseALoopThreadAndStopAsyncLetsItRun) {
  loop_group group({.loops = 2, .name = "far"});
  background_loop bg({.loop = {.name = "bg"}});
  for (std::size_t i = 0; i < group.size(); ++i) {
    group.portal(i).call_sync([] {
      // Takes 50 ms to end when cancelled: the stop has something to wait for.
      auto slow = []() -> task<void> {
        try {
          co_await sleep_for(std::chrono::hours(1));
        } catch (const cancelled_error&) {
        }
        co_await shielded(sleep_for(50ms));
      };
      event_loop::current()->spawn_detached(slow(), "slow-to-stop");
    });
  }
  event_loop here({.name = "caller"});
  here.run([&]() -> task<void> {
    try {
      (void)group.stop();
      ADD_FAILURE() << "loop_group::stop() on a loop thread";
    } catch (const usage_error& e) {
      EXPECT_NE(std::string(e.what()).find("'caller'"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("stop_async"), std::string::npos) << e.what();
    }
    EXPECT_THROW((void)bg.stop(), usage_error);
    EXPECT_TRUE(bg.running());  // the refused stop did nothing
    // While the group stops (at least 50 ms), this loop runs other tasks.
    int ticks = 0;
    auto tick = [&ticks]() -> task<void> {  // (named: it outlives the statement)
      for (;;) {
        co_await sleep_for(5ms);
        ++ticks;
      }
    };
    auto ticker = event_loop::current()->spawn(tick());
    const group_shutdown_report r = co_await group.stop_async();
    EXPECT_GT(ticks, 2) << "the caller's loop was blocked while the group stopped";
    ticker.cancel();
    EXPECT_EQ(r.loops.size(), 2u);
    EXPECT_EQ(r.cancelled(), 2u);
    if (!r.loops.empty()) {
      EXPECT_EQ(r.loops[0].ended_completed, 1u);
    }  // caught the cancellation, ended within the grace
    const group_shutdown_report again = co_await group.stop_async();  // idempotent
    EXPECT_EQ(again.loops.size(), 2u);
    const loop_shutdown_report b = co_await bg.stop_async();
    EXPECT_EQ(b.loop, "bg");
    EXPECT_FALSE(bg.running());
  }());
  // Off any loop, the blocking form is fine (and returns the same report).
  EXPECT_EQ(group.stop().loops.size(), 2u);
}

// Two loops awaiting the same group's stop_async() at once: one stop, the
// same report for both, every thread joined (TSan checks the sharing).
TEST(LoopGroup, StopAsyncFromTwoLoopsAtOnce) {
  loop_group group({.loops = 2, .name = "shared"});
  std::size_t seen[2] = {0, 0};
  std::vector<std::thread> callers;
  for (int k = 0; k < 2; ++k) {
    callers.emplace_back([&group, &seen, k] {
      event_loop here({.name = "caller-" + std::to_string(k)});
      here.run([&]() -> task<void> {
        const group_shutdown_report r = co_await group.stop_async();
        seen[k] = r.loops.size();
      }());
    });
  }
  for (auto& t : callers) t.join();
  EXPECT_EQ(seen[0], 2u);
  EXPECT_EQ(seen[1], 2u);
  EXPECT_EQ(group.stop().loops.size(), 2u);
}

TEST(ReusePort, TwoListenersShareAPortOnlyWhenBothAsk) {
  event_loop loop;
  auto main = [&]() -> task<void> {
    net::listen_options shared;
    shared.reuse_port = true;
    net::tcp_listener a = net::tcp_listener::bind(net::socket_address::loopback_v4(0), shared);
    const net::socket_address at = a.local_address();
    net::tcp_listener b = net::tcp_listener::bind(at, shared);
    EXPECT_EQ(b.local_address().port(), at.port());
    EXPECT_THROW((void)net::tcp_listener::bind(at), system_error);  // without reuse_port: in use
    co_return;
  };
  loop.run(main());
}

TEST(GroupServer, EveryLoopAcceptsOnTheSamePort) {
  loop_group group({.loops = 2, .name = "http"});
  auto hello = [](http::request&) -> task<http::response> {
    http::response r;
    r.status = 200;
    r.body = "hello";
    co_return r;
  };
  http::group_server srv(group, hello);
  const std::string url = srv.base_url() + "/";
  constexpr int n = 100;
  event_loop client_loop;
  auto fetch_all = [&]() -> task<int> {
    int ok = 0;
    http::client c;
    for (int i = 0; i < n; ++i) {
      http::headers h;
      h.add("Connection", "close");  // a new connection each: the kernel picks a loop each time
      http::response r = co_await c.send("GET", url, std::move(h));
      ok += r.body == "hello";
    }
    co_return ok;
  };
  EXPECT_EQ(client_loop.run(fetch_all()), n);
  const auto stats = srv.statistics();
  ASSERT_EQ(stats.size(), 2u);
  EXPECT_EQ(stats[0].requests + stats[1].requests, static_cast<std::uint64_t>(n));
  // 100 connections hashed over two listeners: both get some (all on one
  // has a chance of 2^-99).
  EXPECT_GT(stats[0].requests, 0u);
  EXPECT_GT(stats[1].requests, 0u);
  srv.stop();
  EXPECT_TRUE(group.stop().clean()) << "the servers stopped before the loops";
}

}  // namespace
}  // namespace spindle
