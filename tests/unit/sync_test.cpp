// semaphore, limiter, mutex, event, channel, rate_limiter.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "spindle/cancel_scope.hpp"
#include "spindle/channel.hpp"
#include "spindle/event.hpp"
#include "spindle/event_loop.hpp"
#include "spindle/mutex.hpp"
#include "spindle/rate_limiter.hpp"
#include "spindle/semaphore.hpp"
#include "spindle/sleep.hpp"
#include "spindle/task_group.hpp"
#include "support/test_support.hpp"

namespace spindle {
namespace {

using namespace std::chrono_literals;

using fixture = test::manual_loop;

TEST(Semaphore, LimitsConcurrencyAndHandsOffInFifoOrder) {
  fixture f;
  semaphore sem(2, "db");
  int inside = 0, peak = 0;
  std::vector<int> order;
  auto worker = [&](int id) -> task<void> {
    semaphore_permit p = co_await sem.acquire_permit();
    order.push_back(id);
    peak = std::max(peak, ++inside);
    co_await sleep_for(1s);
    --inside;
  };
  auto main = [&]() -> task<void> {
    co_await with_task_group([&](task_group& g) -> task<void> {
      for (int i = 0; i < 6; ++i) g.spawn(worker(i));
      co_return;
    });
  };
  f.loop.run(main());
  EXPECT_EQ(peak, 2);
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3, 4, 5}));
  EXPECT_EQ(f.elapsed(), 3s);
  auto s = sem.statistics();
  EXPECT_EQ(s.name, "db");
  EXPECT_EQ(s.available, 2u);
  EXPECT_EQ(s.acquired, 6u);
  EXPECT_EQ(s.waited, 4u);
  EXPECT_EQ(s.waiting, 0u);
}

TEST(Semaphore, CancelledWaitTakesNoPermitAndLeavesTheQueue) {
  fixture f;
  semaphore sem(1);
  auto main = [&]() -> task<void> {
    co_await sem.acquire();
    auto waiter = [&]() -> task<void> { co_await sem.acquire(); };
    bool got = co_await move_on_after(1s, waiter());
    EXPECT_FALSE(got);
    EXPECT_EQ(sem.statistics().waiting, 0u);
    EXPECT_EQ(sem.statistics().cancelled, 1u);
    sem.release();
    EXPECT_EQ(sem.statistics().available, 1u);  // nobody took it on the cancelled waiter's behalf
  };
  f.loop.run(main());
}

TEST(Limiter, LimitsPerKey) {
  fixture f;
  limiter per_host(1, "per-host");
  std::vector<std::string> log;
  auto fetch = [&](std::string host, int n) -> task<void> {
    semaphore_permit p = co_await per_host.acquire(host);
    log.push_back(host + std::to_string(n) + "@" + std::to_string(f.elapsed() / 1s));
    co_await sleep_for(1s);
  };
  auto main = [&]() -> task<void> {
    co_await with_task_group([&](task_group& g) -> task<void> {
      g.spawn(fetch("a", 1));
      g.spawn(fetch("a", 2));
      g.spawn(fetch("b", 1));
      co_return;
    });
  };
  f.loop.run(main());
  EXPECT_EQ(log, (std::vector<std::string>{"a1@0", "b1@0", "a2@1"}));
  EXPECT_EQ(per_host.keys(), 2u);
  EXPECT_EQ(per_host.of("a").statistics().name, "per-host[a]");
}

TEST(Mutex, SerialisesAcrossAwaits) {
  fixture f;
  mutex m;
  std::string trace;
  auto writer = [&](char c) -> task<void> {
    semaphore_permit g = co_await m.scoped_lock();
    trace += c;
    co_await sleep_for(1s);
    trace += c;
  };
  auto main = [&]() -> task<void> {
    co_await with_task_group([&](task_group& g) -> task<void> {
      g.spawn(writer('a'));
      g.spawn(writer('b'));
      co_return;
    });
  };
  f.loop.run(main());
  EXPECT_EQ(trace, "aabb");
  EXPECT_FALSE(m.locked());
}

TEST(Event, WakesAllWaitersAndCancelledWaitLeaves) {
  fixture f;
  event ev("ready");
  int woken = 0;
  auto waiter = [&]() -> task<void> {
    co_await ev.wait();
    ++woken;
  };
  auto main = [&]() -> task<void> {
    auto cancelled = f.loop.spawn(waiter());
    co_await with_task_group([&](task_group& g) -> task<void> {
      for (int i = 0; i < 3; ++i) g.spawn(waiter());
      co_await sleep_for(1s);
      cancelled.cancel();
      EXPECT_THROW(co_await cancelled, cancelled_error);
      EXPECT_EQ(ev.statistics().waiting, 3u);
      ev.set();
    });
    co_await ev.wait();  // set: no suspension
  };
  f.loop.run(main());
  EXPECT_EQ(woken, 3);
  EXPECT_EQ(ev.statistics().cancelled, 1u);
}

TEST(Channel, BackpressureOrderAndClose) {
  fixture f;
  channel<int> ch(2, "jobs");
  std::vector<int> got;
  std::vector<duration> sent_at;
  auto producer = [&]() -> task<void> {
    for (int i = 0; i < 6; ++i) {
      co_await ch.send(i);
      sent_at.push_back(f.elapsed());
    }
    ch.close();
  };
  auto consumer = [&]() -> task<void> {
    while (auto v = co_await ch.receive()) {
      got.push_back(*v);
      co_await sleep_for(1s);
    }
  };
  auto main = [&]() -> task<void> {
    co_await with_task_group([&](task_group& g) -> task<void> {
      g.spawn(producer());
      g.spawn(consumer());
      co_return;
    });
  };
  f.loop.run(main());
  EXPECT_EQ(got, (std::vector<int>{0, 1, 2, 3, 4, 5}));
  // The first three fit (one taken at once, two buffered); then one per second.
  EXPECT_EQ(sent_at, (std::vector<duration>{0s, 0s, 0s, 1s, 2s, 3s}));
  auto s = ch.statistics();
  EXPECT_EQ(s.sent, 6u);
  EXPECT_EQ(s.received, 6u);
  EXPECT_TRUE(s.closed);
}

TEST(Channel, SendOnClosedThrowsAndWaitingSenderIsWoken) {
  fixture f;
  channel<std::string> ch(1);
  auto main = [&]() -> task<void> {
    co_await ch.send("fills it");
    auto blocked = [&]() -> task<void> { co_await ch.send("waits"); };
    auto h = f.loop.spawn(blocked());
    co_await sleep_for(1s);
    ch.close();
    EXPECT_THROW(co_await h, channel_closed_error);
    EXPECT_THROW(co_await ch.send("late"), channel_closed_error);
    // What was buffered before close can still be drained.
    EXPECT_EQ(co_await ch.receive(), std::optional<std::string>("fills it"));
    EXPECT_EQ(co_await ch.receive(), std::nullopt);
  };
  f.loop.run(main());
}

TEST(Channel, CancelledSendDoesNotSendAndCancelledReceiveTakesNothing) {
  fixture f;
  channel<int> ch(1);
  auto main = [&]() -> task<void> {
    auto recv = [&]() -> task<std::optional<int>> { co_return co_await ch.receive(); };
    auto r = co_await move_on_after(1s, recv());
    EXPECT_FALSE(r.has_value());
    co_await ch.send(1);
    auto send = [&]() -> task<void> { co_await ch.send(2); };
    bool sent = co_await move_on_after(1s, send());
    EXPECT_FALSE(sent);
    EXPECT_EQ(ch.size(), 1u);
    EXPECT_EQ(*co_await ch.receive(), 1);
    EXPECT_EQ(ch.try_receive(), std::nullopt);  // the cancelled 2 was never sent
  };
  f.loop.run(main());
}

TEST(Channel, TrySendLeavesTheValueWhenItCannotSend) {
  fixture f;
  channel<std::string> ch(1);
  auto main = [&]() -> task<void> {
    // A waiting receiver gets the value at once.
    auto recv = [&]() -> task<std::optional<std::string>> { co_return co_await ch.receive(); };
    auto r = f.loop.spawn(recv());
    co_await sleep_for(1ms);
    std::string a = "to the receiver";
    EXPECT_TRUE(ch.try_send(std::move(a)));
    EXPECT_EQ(co_await r, std::optional<std::string>("to the receiver"));
    // Then the buffer; once full, the value stays with the caller.
    std::string b = "buffered", c = "left with the caller";
    EXPECT_TRUE(ch.try_send(std::move(b)));
    EXPECT_FALSE(ch.try_send(std::move(c)));
    EXPECT_EQ(c, "left with the caller");
    const std::string d = "a copy";
    EXPECT_FALSE(ch.try_send(d));
    EXPECT_EQ(ch.try_receive(), std::optional<std::string>("buffered"));
    EXPECT_TRUE(ch.try_send(d));
    EXPECT_EQ(d, "a copy");
    EXPECT_EQ(ch.try_receive(), std::optional<std::string>("a copy"));
    ch.close();
    EXPECT_FALSE(ch.try_send(std::move(c)));
    EXPECT_EQ(c, "left with the caller");
    EXPECT_EQ(ch.statistics().sent, 3u);
  };
  f.loop.run(main());
}

TEST(RateLimiter, SpacesAcquisitionsAtTheRateAfterTheBurst) {
  fixture f;
  rate_limiter rl(10.0, 3.0, "api");  // 10/s, bursts of 3
  std::vector<duration> at;
  auto main = [&]() -> task<void> {
    for (int i = 0; i < 6; ++i) {
      co_await rl.acquire();
      at.push_back(f.elapsed());
    }
  };
  f.loop.run(main());
  EXPECT_EQ(at, (std::vector<duration>{0ms, 0ms, 0ms, 100ms, 200ms, 300ms}));
  EXPECT_EQ(rl.statistics().delayed, 3u);
}

}  // namespace
}  // namespace spindle
