#include "spindle/gather.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <list>
#include <memory>
#include <numeric>
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

// 10,000 items, 10% failing: exactly 10,000 outcomes, in input order.
TEST(GatherSettled, TenThousandItemsTenPercentFailuresAllAccountedInOrder) {
  fixture f;
  std::vector<int> inputs(10'000);
  std::iota(inputs.begin(), inputs.end(), 0);
  auto item = [](int i) -> task<int> {
    co_await sleep_for(std::chrono::milliseconds((i * 37) % 100));  // finish out of order
    if (i % 10 == 3) throw std::runtime_error("item " + std::to_string(i));
    co_return i * 2;
  };
  auto main = [&]() -> task<std::vector<outcome<int>>> {
    co_return co_await gather_settled(inputs, item, {.limit = 100});
  };
  auto out = f.loop.run(main());
  ASSERT_EQ(out.size(), 10'000u);
  std::size_t failures = 0;
  for (int i = 0; i < 10'000; ++i) {
    if (i % 10 == 3) {
      ASSERT_FALSE(out[i].ok());
      EXPECT_EQ(out[i].error_message(), "item " + std::to_string(i));
      EXPECT_EQ(out[i].error_kind(), "exception");
      ++failures;
    } else {
      ASSERT_TRUE(out[i].ok());
      EXPECT_EQ(out[i].value(), i * 2);
    }
  }
  EXPECT_EQ(failures, 1000u);
}

// The limit is a window: never more than N in flight, and a slot is reused
// as soon as an item ends (not in batches).
TEST(GatherSettled, LimitIsRespectedAndIsAWindow) {
  fixture f;
  int in_flight = 0, peak = 0;
  std::vector<time_point> starts;
  auto item = [&](int i) -> task<int> {
    starts.push_back(f.clock.now());
    peak = std::max(peak, ++in_flight);
    co_await sleep_for(i == 0 ? 10s : 1s);  // item 0 is slow
    --in_flight;
    co_return i;
  };
  std::vector<int> inputs(20);
  std::iota(inputs.begin(), inputs.end(), 0);
  auto main = [&]() -> task<void> {
    auto out = co_await gather_settled(inputs, item, {.limit = 4});
    EXPECT_EQ(out.size(), 20u);
  };
  f.loop.run(main());
  EXPECT_EQ(peak, 4);
  // With batches, items 4..7 would wait for the slow item 0 (10 s); with a
  // window they start at 1 s, and everything is done by 10 s.
  EXPECT_EQ(starts[4] - f.start, 1s);
  EXPECT_EQ(f.elapsed(), 10s);
}

TEST(GatherSettled, PerItemTimeoutBecomesTheItemsOutcome) {
  fixture f;
  auto item = [](int seconds) -> task<int> {
    co_await sleep_for(std::chrono::seconds(seconds));
    co_return seconds;
  };
  std::vector<int> inputs{1, 5, 2, 9};
  auto main = [&]() -> task<std::vector<outcome<int>>> {
    co_return co_await gather_settled(inputs, item, {.per_item_timeout = 3s});
  };
  auto out = f.loop.run(main());
  ASSERT_EQ(out.size(), 4u);
  EXPECT_EQ(out[0].value(), 1);
  EXPECT_EQ(out[1].error_kind(), "timeout");
  EXPECT_EQ(out[2].value(), 2);
  EXPECT_EQ(out[3].error_kind(), "timeout");
  EXPECT_EQ(f.elapsed(), 3s);
}

TEST(GatherSettled, FactoryThrowingIsThatItemsOutcome) {
  fixture f;
  auto make = [](int i) -> task<int> {
    if (i == 1) throw std::invalid_argument("bad input 1");
    return [](int v) -> task<int> { co_return v; }(i);
  };
  std::vector<int> inputs{0, 1, 2};
  auto main = [&]() -> task<std::vector<outcome<int>>> { co_return co_await gather_settled(inputs, make); };
  auto out = f.loop.run(main());
  ASSERT_EQ(out.size(), 3u);
  EXPECT_TRUE(out[0].ok());
  EXPECT_EQ(out[1].error_message(), "bad input 1");
  EXPECT_EQ(out[2].value(), 2);
}

// With a limit, tasks are created only as slots free up: a million inputs
// never have more than `limit` frames alive at once.
TEST(GatherSettled, MillionItemsWithLimitCreateFramesLazily) {
  event_loop loop;
  int alive = 0, peak_alive = 0;
  struct frame_counter {
    int* alive;
    int* peak;
    explicit frame_counter(int* a, int* p) : alive(a), peak(p) { *peak = std::max(*peak, ++*alive); }
    ~frame_counter() { --*alive; }
  };
  auto item = [&](int i) -> task<int> {
    frame_counter c(&alive, &peak_alive);
    if (i % 64 == 0) co_await yield();
    co_return i & 1;
  };
  auto inputs = std::views::iota(0, 1'000'000);
  auto main = [&]() -> task<long> {
    auto out = co_await gather_settled(inputs, item, {.limit = 1000});
    long sum = 0;
    for (auto& o : out) sum += o.value();
    co_return sum;
  };
  EXPECT_EQ(loop.run(main()), 500'000);
  EXPECT_LE(peak_alive, 1000);
}

TEST(GatherSettled, WorksOverAnUnsizedInputRange) {
  fixture f;
  std::list<std::string> words{"a", "bb", "ccc"};
  auto filtered = words | std::views::filter([](const std::string& w) { return w.size() != 2; });
  auto item = [](const std::string& w) -> task<std::size_t> { co_return w.size(); };
  auto main = [&]() -> task<std::vector<outcome<std::size_t>>> {
    co_return co_await gather_settled(filtered, item);
  };
  auto out = f.loop.run(main());
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].value(), 1u);
  EXPECT_EQ(out[1].value(), 3u);
}

// Items that end without waiting run one after another in one worker: the
// window grows only when an item suspends (no task per limit slot).
TEST(GatherSettled, ItemsThatNeverWaitRunInOneWorker) {
  fixture f;
  std::uint64_t most_tasks = 0;
  auto item = [&](int i) -> task<int> {
    most_tasks = std::max(most_tasks, event_loop::current()->statistics().tasks_alive);
    co_return i;
  };
  auto main = [&]() -> task<std::size_t> {
    auto out = co_await gather_settled(std::views::iota(0, 10'000), item, {.limit = 1000});
    auto values = co_await gather(std::views::iota(0, 10'000), item, {.limit = 1000});
    EXPECT_EQ(values[9'999], 9'999);
    co_return out.size();
  };
  EXPECT_EQ(f.loop.run(main()), 10'000u);
  EXPECT_LE(most_tasks, 3u) << "workers were started for the limit, not for the work";
}

TEST(GatherSettled, EmptyInputs) {
  fixture f;
  auto item = [](int i) -> task<int> { co_return i; };
  std::vector<int> none;
  auto main = [&]() -> task<std::size_t> {
    auto out = co_await gather_settled(none, item, {.limit = 4});
    auto values = co_await gather(none, item);
    co_return out.size() + values.size();
  };
  EXPECT_EQ(f.loop.run(main()), 0u);
}

// A retry needs to copy the input; a move-only input is then each item's
// usage_error (and the fan-out still moves on to the next input).
TEST(GatherSettled, RetryOverMoveOnlyInputsFailsEachItem) {
  fixture f;
  std::vector<std::unique_ptr<int>> inputs;
  for (int i = 0; i < 3; ++i) inputs.push_back(std::make_unique<int>(i));
  auto item = [](std::unique_ptr<int>& p) -> task<int> {
    int v = *p;
    co_return v;
  };
  auto main = [&]() -> task<std::vector<outcome<int>>> {
    fanout_options options;  // named: g++ 12 (DEVELOPERS.md)
    options.retry = retry_policy{};
    co_return co_await gather_settled(inputs, item, options);
  };
  auto out = f.loop.run(main());
  ASSERT_EQ(out.size(), 3u);
  for (auto& o : out) EXPECT_THROW(o.value(), usage_error);
}

TEST(GatherSettled, CancellingTheCallerCancelsItemsAndThrows) {
  fixture f;
  int cancelled_items = 0;
  auto item = [&](int) -> task<int> {
    try {
      co_await sleep_for(1h);
    } catch (const cancelled_error&) {
      ++cancelled_items;
      throw;
    }
    co_return 0;
  };
  std::vector<int> inputs(10);
  auto main = [&]() -> task<bool> {
    try {
      co_await with_timeout(1s, gather_settled(inputs, item));
    } catch (const timeout_error&) {
      co_return true;
    }
    co_return false;
  };
  EXPECT_TRUE(f.loop.run(main()));
  EXPECT_EQ(cancelled_items, 10);
}

TEST(Gather, ReturnsValuesInInputOrder) {
  fixture f;
  auto item = [](int i) -> task<int> {
    co_await sleep_for(std::chrono::seconds(5 - i));
    co_return i* i;
  };
  std::vector<int> inputs{0, 1, 2, 3, 4};
  auto main = [&]() -> task<std::vector<int>> { co_return co_await gather(inputs, item); };
  EXPECT_EQ(f.loop.run(main()), (std::vector<int>{0, 1, 4, 9, 16}));
  EXPECT_EQ(f.elapsed(), 5s);
}

TEST(Gather, FirstErrorCancelsSiblingsAndIsRethrown) {
  fixture f;
  int started = 0, cancelled = 0;
  auto item = [&](int i) -> task<int> {
    ++started;
    try {
      co_await sleep_for(std::chrono::seconds(i == 2 ? 1 : 100));
    } catch (const cancelled_error&) {
      ++cancelled;
      throw;
    }
    if (i == 2) throw std::runtime_error("item 2 failed");
    co_return i;
  };
  std::vector<int> inputs(10);
  std::iota(inputs.begin(), inputs.end(), 0);
  auto main = [&]() -> task<std::string> {
    try {
      co_await gather(inputs, item, {.limit = 5});
    } catch (const std::runtime_error& e) {
      co_return e.what();
    }
    co_return "no error";
  };
  EXPECT_EQ(f.loop.run(main()), "item 2 failed");
  EXPECT_EQ(started, 5);    // no new item started after the failure
  EXPECT_EQ(cancelled, 4);  // the other four in flight were cancelled
  EXPECT_EQ(f.elapsed(), 1s);
}

TEST(Gather, VectorOfReadyMadeTasks) {
  fixture f;
  auto item = [](int i) -> task<int> {
    co_await sleep_for(std::chrono::seconds(3 - i));
    if (i == 1) throw std::runtime_error("one");
    co_return i;
  };
  auto main = [&]() -> task<void> {
    std::vector<task<int>> tasks;
    for (int i = 0; i < 3; ++i) tasks.push_back(item(i));
    auto out = co_await gather_settled(std::move(tasks), {.limit = 2});
    EXPECT_EQ(out.size(), 3u);
    EXPECT_EQ(out[0].value(), 0);
    EXPECT_EQ(out[1].error_message(), "one");
    EXPECT_EQ(out[2].value(), 2);
    std::vector<task<int>> ok;
    ok.push_back(item(0));
    ok.push_back(item(2));
    std::vector<int> values = co_await gather(std::move(ok));
    EXPECT_EQ(values, (std::vector<int>{0, 2}));
  };
  f.loop.run(main());
}

TEST(Gather, VariadicTasksOfDifferentTypes) {
  fixture f;
  auto num = []() -> task<int> {
    co_await sleep_for(2s);
    co_return 3;
  };
  auto text = []() -> task<std::string> {
    co_await sleep_for(1s);
    co_return "x";
  };
  auto nothing = []() -> task<void> { co_return; };
  auto main = [&]() -> task<std::string> {
    auto [a, b, c] = co_await gather(num(), text(), nothing());
    (void)c;
    co_return std::to_string(a) + b;
  };
  EXPECT_EQ(f.loop.run(main()), "3x");
  EXPECT_EQ(f.elapsed(), 2s);
}

}  // namespace
}  // namespace spindle
