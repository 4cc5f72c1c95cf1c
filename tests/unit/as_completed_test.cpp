#include "spindle/as_completed.hpp"

#include <gtest/gtest.h>

#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "spindle/channel.hpp"
#include "spindle/first_of.hpp"
#include "spindle/sleep.hpp"
#include "support/test_support.hpp"

namespace spindle {
namespace {

using namespace std::chrono_literals;

using fixture = test::manual_loop;

TEST(AsCompleted, YieldsInCompletionOrderWithInputIndices) {
  fixture f;
  std::vector<int> delays{5, 1, 4, 2, 3};
  auto item = [](int d) -> task<int> {
    co_await sleep_for(std::chrono::seconds(d));
    if (d == 4) throw std::runtime_error("four");
    co_return d * 10;
  };
  auto main = [&]() -> task<std::vector<std::string>> {
    std::vector<std::string> seen;
    auto stream = as_completed(delays, item);
    while (auto c = co_await stream.next()) {
      seen.push_back(std::to_string(c->index) + ":" +
                     (c->result.ok() ? std::to_string(c->result.value()) : c->result.error_message()) + "@" +
                     std::to_string(f.elapsed() / 1s));
    }
    co_return seen;
  };
  EXPECT_EQ(f.loop.run(main()),
            (std::vector<std::string>{"1:10@1", "3:20@2", "4:30@3", "2:four@4", "0:50@5"}));
}

TEST(AsCompleted, RespectsTheLimitAndDeliversEveryItemOnce) {
  fixture f;
  int in_flight = 0, peak = 0;
  auto item = [&](int i) -> task<int> {
    peak = std::max(peak, ++in_flight);
    co_await sleep_for(std::chrono::milliseconds(1 + (i * 7) % 13));
    --in_flight;
    co_return i;
  };
  auto main = [&]() -> task<std::set<std::size_t>> {
    std::set<std::size_t> indices;
    auto stream = as_completed(std::views::iota(0, 500), item, {.limit = 8});
    while (auto c = co_await stream.next()) {
      EXPECT_EQ(c->result.value(), static_cast<int>(c->index));
      EXPECT_TRUE(indices.insert(c->index).second) << "duplicate " << c->index;
    }
    co_return indices;
  };
  auto indices = f.loop.run(main());
  EXPECT_EQ(indices.size(), 500u);
  EXPECT_LE(peak, 8);
}

TEST(AsCompleted, DroppingTheStreamCancelsWhatIsRunning) {
  fixture f;
  int cancelled = 0;
  auto item = [&](int i) -> task<int> {
    try {
      co_await sleep_for(std::chrono::seconds(i == 0 ? 1 : 100));
    } catch (const cancelled_error&) {
      ++cancelled;
      throw;
    }
    co_return i;
  };
  std::vector<int> inputs{0, 1, 2, 3};
  auto main = [&]() -> task<void> {
    {
      auto stream = as_completed(inputs, item);
      auto first = co_await stream.next();
      EXPECT_EQ(first->index, 0u);
    }  // the consumer has what it needs
    co_await sleep_for(1s);
  };
  f.loop.run(main());
  EXPECT_EQ(cancelled, 3);
  EXPECT_EQ(f.elapsed(), 2s);
}

// Inputs arriving over time through a channel: the window takes each as it
// frees up, failures and retries are per item, and the stream ends when
// the producer closes the channel and the last item is delivered.
TEST(AsCompleted, OverAChannelOfInputsArrivingOverTime) {
  fixture f;
  int in_flight = 0, peak = 0;
  std::map<int, int> attempts;
  auto item = [&](int& i) -> task<int> {
    peak = std::max(peak, ++in_flight);
    ++attempts[i];
    co_await sleep_for(std::chrono::milliseconds(10 + (i * 7) % 13));
    --in_flight;
    if (i % 10 == 3 && attempts[i] < 2) throw std::runtime_error("flaky");  // one retry fixes it
    if (i % 10 == 7) throw std::runtime_error("always");
    co_return i;
  };
  auto main = [&]() -> task<std::string> {
    channel<int> inputs(4);
    auto producer = [&]() -> task<void> {
      for (int i = 0; i < 100; ++i) {
        co_await inputs.send(i);
        if (i % 25 == 0) co_await sleep_for(50ms);  // a slow source
      }
      inputs.close();
    };
    auto produced = event_loop::current()->spawn(producer(), "producer");
    retry_policy once;
    once.max_attempts = 2;
    once.base_delay = 1ms;
    once.retryable = [](const std::exception_ptr&) { return true; };
    fanout_options options;  // named: an aggregate temporary in a coroutine trips g++ 12 (DEVELOPERS.md)
    options.limit = 8;
    options.retry = once;
    auto stream = as_completed(inputs, item, options);
    std::set<int> ok, failed;
    std::set<std::size_t> indices;
    while (auto c = co_await stream.next()) {
      EXPECT_TRUE(indices.insert(c->index).second) << "duplicate " << c->index;
      if (c->result.ok()) {
        ok.insert(c->result.value());
      } else {
        EXPECT_EQ(c->result.error_message(), "always");
        failed.insert(static_cast<int>(c->index));
      }
    }
    co_await produced;
    co_return std::to_string(indices.size()) + " ok=" + std::to_string(ok.size()) +
        " failed=" + std::to_string(failed.size());
  };
  EXPECT_EQ(f.loop.run(main()), "100 ok=90 failed=10");
  EXPECT_LE(peak, 8);
  EXPECT_EQ(attempts[3], 2);
  EXPECT_EQ(attempts[7], 2);  // retried, still failing
  EXPECT_EQ(attempts[5], 1);
}

// Workers start as inputs arrive: a limit of a million over three inputs
// costs a handful of tasks, not a million frames (issue #16: `spindle fetch
// -c 1000000` with one URL used 757 MB). And the limit still binds: 8
// inputs at once under a limit of 3 run 3 at a time.
TEST(AsCompleted, OverAChannelWorkersFollowTheInputsNotTheLimit) {
  fixture f;
  int in_flight = 0, peak = 0;
  std::uint64_t most_tasks = 0;
  auto item = [&](int& i) -> task<int> {
    peak = std::max(peak, ++in_flight);
    most_tasks = std::max(most_tasks, event_loop::current()->statistics().tasks_alive);
    co_await sleep_for(5ms);
    --in_flight;
    co_return i;
  };
  auto run = [&](std::size_t limit, int count) -> task<int> {
    channel<int> inputs(static_cast<std::size_t>(count));
    for (int i = 0; i < count; ++i) inputs.try_send(i);
    inputs.close();
    fanout_options options;  // named: g++ 12 (DEVELOPERS.md)
    options.limit = limit;
    auto stream = as_completed(inputs, item, options);
    int delivered = 0;
    while (auto c = co_await stream.next()) ++delivered;
    co_return delivered;
  };
  EXPECT_EQ(f.loop.run(run(1'000'000, 3)), 3);
  EXPECT_EQ(peak, 3);
  EXPECT_LE(most_tasks, 10u) << "workers were started for the limit, not for the inputs";
  peak = 0;
  EXPECT_EQ(f.loop.run(run(3, 8)), 8);
  EXPECT_EQ(peak, 3);
}

TEST(AsCompleted, OverAChannelNeedsALimit) {
  fixture f;
  auto main = [&]() -> task<void> {
    channel<int> inputs(1);
    auto fn = [](int& i) -> task<int> { co_return i; };
    EXPECT_THROW((void)as_completed(inputs, fn, {}), usage_error);
    co_return;
  };
  f.loop.run(main());
}

TEST(FirstOf, FirstSuccessWinsAndOthersAreCancelled) {
  fixture f;
  int cancelled = 0;
  auto mirror = [&](int id, int secs, bool fail) -> task<int> {
    try {
      co_await sleep_for(std::chrono::seconds(secs));
    } catch (const cancelled_error&) {
      ++cancelled;
      throw;
    }
    if (fail) throw std::runtime_error("mirror " + std::to_string(id) + " down");
    co_return id;
  };
  auto main = [&]() -> task<int> {
    co_return co_await first_of(mirror(1, 5, false), mirror(2, 1, true), mirror(3, 2, false));
  };
  EXPECT_EQ(f.loop.run(main()), 3);  // 2 failed first, 3 succeeded next
  EXPECT_EQ(cancelled, 1);
  EXPECT_EQ(f.elapsed(), 2s);
}

TEST(FirstOf, AllFailingRethrows) {
  fixture f;
  auto bad = [](int i) -> task<int> {
    co_await sleep_for(std::chrono::seconds(i));
    throw std::runtime_error("bad " + std::to_string(i));
  };
  auto one = [&]() -> task<int> { co_return co_await first_of(bad(1)); };
  EXPECT_THROW(f.loop.run(one()), std::runtime_error);
  auto two = [&]() -> task<int> { co_return co_await first_of(bad(1), bad(2)); };
  EXPECT_THROW(f.loop.run(two()), task_group_error);
}

}  // namespace
}  // namespace spindle
