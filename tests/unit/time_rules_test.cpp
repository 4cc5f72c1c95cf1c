// Issue #17 point 1 (docs/adr/0006): every API that takes a duration, with
// duration::max() (`forever`), duration::min(), zero and a negative value.
// The rule: time arithmetic saturates (max is "never", never an overflow
// that fires at once), and a value of zero or less is a deadline that has
// already passed; "no limit" in an options field is nullopt, never a value.
//
// "Never" is checked as "not within 30 ms" (a bounded wait that proves the
// value did not wrap round to the past); "already passed" as "at once"
// within a generous guard, never as a speed.

#include <gtest/gtest.h>

#include <atomic>
#include <optional>
#include <string>
#include <vector>

#include "spindle/background_loop.hpp"
#include "spindle/cancel_scope.hpp"
#include "spindle/clock.hpp"
#include "spindle/diagnostics.hpp"
#include "spindle/event_loop.hpp"
#include "spindle/gather.hpp"
#include "spindle/http/client.hpp"
#include "spindle/http/server.hpp"
#include "spindle/net/tcp.hpp"
#include "spindle/portal.hpp"
#include "spindle/retry.hpp"
#include "spindle/sleep.hpp"

namespace spindle {
namespace {

using namespace std::chrono_literals;

struct named_duration {
  const char* name;
  duration value;
};

// The values that have already passed.
const std::vector<named_duration>& passed() {
  static const std::vector<named_duration> v{
      {"zero", duration::zero()}, {"-5ms", -5ms}, {"min", duration::min()}};
  return v;
}

// "No limit" in an options field: nullopt, and forever. (A function: g++ 12
// mishandles initializer lists in coroutine bodies.)
std::vector<std::optional<duration>> no_limits() { return {std::nullopt, forever}; }

constexpr duration never_window = 30ms;  // how long "never" is watched
constexpr duration guard = 10s;          // "at once" is well within this

TEST(TimeRules, SaturatingArithmetic) {
  const time_point t{std::chrono::hours(1)};
  EXPECT_EQ(saturating_add(t, forever), time_point::max());
  EXPECT_EQ(saturating_add(t, duration::min()), time_point{duration::min() + std::chrono::hours(1)});
  EXPECT_EQ(saturating_add(time_point::min() + 1ms, duration::min()), time_point::min());
  EXPECT_EQ(saturating_add(time_point::max() - 1ms, 2ms), time_point::max());
  EXPECT_EQ(saturating_add(t, 5ms), t + 5ms);
  EXPECT_EQ(saturating_add(t, -5ms), t - 5ms);
  // A coarser unit whose max does not fit in nanoseconds.
  EXPECT_EQ(saturating_add(t, std::chrono::milliseconds::max()), time_point::max());
  EXPECT_EQ(saturating_add(time_point{}, std::chrono::hours::min()), time_point::min());
  EXPECT_EQ(saturating_cast<duration>(std::chrono::seconds::max()), duration::max());
  EXPECT_EQ(saturating_cast<duration>(3s), duration(3s));
  // The steady clock's time points too (the portal's and the pools' waits).
  const auto now = std::chrono::steady_clock::now();
  EXPECT_EQ(saturating_add(now, forever), std::chrono::steady_clock::time_point::max());
  manual_clock clock;
  clock.advance(forever);
  EXPECT_EQ(clock.now(), time_point::max());
  // And said for people.
  EXPECT_EQ(describe_duration(forever), "forever");
  EXPECT_EQ(describe_duration(250ms), "250 ms");
  EXPECT_EQ(describe_duration(1500ms), "1.5 s");
}

TEST(TimeRules, SleepFor) {
  event_loop loop;
  auto main = [&]() -> task<void> {
    const bool woke = co_await move_on_after(never_window, sleep_for(forever));
    EXPECT_FALSE(woke) << "sleep_for(max) returned: the deadline overflowed";
    for (const named_duration& each : passed()) {
      const char* name = each.name;
      const duration d = each.value;
      const bool done = co_await move_on_after(guard, sleep_for(d));
      EXPECT_TRUE(done) << name;
    }
  };
  loop.run(main());
}

TEST(TimeRules, SleepUntil) {
  event_loop loop;
  auto main = [&]() -> task<void> {
    const bool woke = co_await move_on_after(never_window, sleep_until(time_point::max()));
    EXPECT_FALSE(woke);
    const bool done = co_await move_on_after(guard, sleep_until(time_point::min()));
    EXPECT_TRUE(done);
  };
  loop.run(main());
}

TEST(TimeRules, CallLater) {
  event_loop loop;
  auto main = [&]() -> task<void> {
    bool never = false;
    timer_handle h = event_loop::current()->call_later(forever, [&] { never = true; });
    std::vector<int> fired(passed().size(), 0);
    std::vector<timer_handle> handles;
    for (std::size_t i = 0; i < passed().size(); ++i)
      handles.push_back(event_loop::current()->call_later(passed()[i].value, [&fired, i] { ++fired[i]; }));
    co_await sleep_for(never_window);
    EXPECT_FALSE(never) << "call_later(max) fired: the deadline overflowed";
    for (std::size_t i = 0; i < passed().size(); ++i) EXPECT_EQ(fired[i], 1) << passed()[i].name;
    h.cancel();
  };
  loop.run(main());
}

TEST(TimeRules, WithTimeoutAndMoveOnAfter) {
  event_loop loop;
  auto main = [&]() -> task<void> {
    auto seven = []() -> task<int> {
      co_await sleep_for(1ms);
      co_return 7;
    };
    auto body = seven();  // (named: see DEVELOPERS.md on g++ 12)
    auto limited = with_timeout(forever, std::move(body));
    const int got = co_await std::move(limited);
    EXPECT_EQ(got, 7);
    const bool finished = co_await move_on_after(forever, sleep_for(1ms));
    EXPECT_TRUE(finished);
    for (const named_duration& each : passed()) {
      const char* name = each.name;
      const duration d = each.value;
      bool threw = false;
      try {
        co_await with_timeout(d, sleep_for(guard));
      } catch (const timeout_error&) {
        threw = true;
      }
      EXPECT_TRUE(threw) << name;
      const bool moved_on = co_await move_on_after(d, sleep_for(guard));
      EXPECT_FALSE(moved_on) << name;
    }
  };
  loop.run(main());
}

TEST(TimeRules, PortalCallAndWaitFor) {
  background_loop bg;
  portal p = bg.portal();
  auto quick = []() -> task<int> {
    co_await sleep_for(1ms);
    co_return 42;
  };
  EXPECT_EQ(p.call(quick, forever), 42) << "portal.call(max) must not time out";
  for (const named_duration& each : passed()) {
    const char* name = each.name;
    const duration d = each.value;
    EXPECT_THROW((void)p.call(
                     []() -> task<int> {
                       co_await sleep_for(10s);
                       co_return 0;
                     },
                     d),
                 timeout_error)
        << name;
  }
  auto slow = p.submit([]() -> task<int> {
    co_await sleep_for(20ms);
    co_return 5;
  });
  for (const named_duration& each : passed())
    EXPECT_EQ(slow.wait_for(each.value), std::future_status::timeout) << each.name;
  EXPECT_EQ(slow.wait_for(forever), std::future_status::ready) << "wait_for(max) returned before the answer";
  EXPECT_EQ(slow.get(), 5);
}

TEST(TimeRules, PerItemTimeout) {
  event_loop loop;
  auto main = [&]() -> task<void> {
    auto item = [](int) -> task<int> {
      co_await sleep_for(1ms);
      co_return 1;
    };
    for (std::optional<duration> none : no_limits()) {
      fanout_options o;
      o.per_item_timeout = none;
      std::vector<int> items(3, 1);
      auto got = co_await gather_settled(items, item, o);
      for (auto& g : got) EXPECT_TRUE(g.ok());
    }
    for (const named_duration& each : passed()) {
      const char* name = each.name;
      const duration d = each.value;
      fanout_options o;
      o.per_item_timeout = d;
      std::vector<int> items(3, 1);
      auto got = co_await gather_settled(items, item, o);
      for (auto& g : got) EXPECT_EQ(g.error_kind(), "timeout") << name;
    }
  };
  loop.run(main());
}

TEST(TimeRules, RetryOverallTimeout) {
  event_loop loop;
  auto main = [&]() -> task<void> {
    int calls = 0;
    auto flaky = [&calls]() -> task<int> {
      co_await sleep_for(1ms);
      if (++calls < 3) throw timeout_error("not yet");
      co_return 9;
    };
    for (std::optional<duration> none : no_limits()) {
      calls = 0;
      retry_policy p;
      p.base_delay = 1ms;
      p.overall_timeout = none;
      const int value = co_await retry(p, flaky);
      EXPECT_EQ(value, 9);
    }
    for (const named_duration& each : passed()) {
      const char* name = each.name;
      const duration d = each.value;
      calls = 0;
      retry_policy p;
      p.base_delay = 1ms;
      p.overall_timeout = d;
      bool threw = false;
      try {
        (void)co_await retry(p, flaky);
      } catch (const timeout_error&) {
        threw = true;
      }
      EXPECT_TRUE(threw) << name;
      EXPECT_LE(calls, 1) << name;
    }
  };
  loop.run(main());
}

TEST(TimeRules, TcpConnectTimeout) {
  event_loop loop;
  auto main = [&]() -> task<void> {
    net::tcp_listener listener = net::tcp_listener::bind(net::socket_address::loopback_v4(0));
    const net::socket_address at = listener.local_address();
    for (std::optional<duration> none : no_limits()) {
      net::connect_options o;
      o.timeout = none;
      net::tcp_stream s = co_await net::connect(at, o);
      EXPECT_TRUE(s.is_open());
    }
    for (const named_duration& each : passed()) {
      const char* name = each.name;
      const duration d = each.value;
      net::connect_options o;
      o.timeout = d;
      bool failed = false;
      try {
        // Several addresses: the race as a whole is bounded by the timeout.
        std::vector<net::socket_address> both{at, at};
        (void)co_await net::connect(std::move(both), o);
      } catch (const timeout_error&) {
        failed = true;
      }
      EXPECT_TRUE(failed) << name;
    }
  };
  loop.run(main());
}

TEST(TimeRules, HttpRequestTimeout) {
  event_loop loop;
  auto main = [&]() -> task<void> {
    auto routes = [](http::request&) -> task<http::response> {
      http::response r;
      r.status = 200;
      r.body = "ok";
      co_return r;
    };
    http::server srv(routes);
    net::tcp_listener listener = net::tcp_listener::bind(net::socket_address::loopback_v4(0));
    const std::string url = "http://127.0.0.1:" + std::to_string(listener.local_address().port()) + "/";
    auto running = event_loop::current()->spawn(srv.serve(std::move(listener)), "server");
    {
      http::client_options co;
      co.request_timeout = std::nullopt;
      co.connect_timeout = forever;
      co.header_timeout = forever;
      http::client c(co);
      http::request_options ro;
      ro.timeout = forever;
      http::response r = co_await c.get(url, ro);
      EXPECT_EQ(r.body, "ok");
      http::response r2 = co_await c.get(url);  // no timeout at all
      EXPECT_EQ(r2.status, 200);
      for (const named_duration& each : passed()) {
        const char* name = each.name;
        const duration d = each.value;
        http::request_options expired;
        expired.timeout = d;
        bool threw = false;
        try {
          (void)co_await c.get(url, expired);
        } catch (const timeout_error&) {
          threw = true;
        }
        EXPECT_TRUE(threw) << name;
      }
    }
    srv.stop();
    co_await running;
  };
  loop.run(main());
}

}  // namespace
}  // namespace spindle
