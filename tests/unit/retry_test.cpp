#include "spindle/retry.hpp"

#include <gtest/gtest.h>

#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "spindle/event_loop.hpp"
#include "spindle/gather.hpp"
#include "support/test_support.hpp"

namespace spindle {
namespace {

using namespace std::chrono_literals;

using fixture = test::manual_loop;

// The expected full-jitter schedule, computed independently.
// The documented jitter: splitmix64 from the seed, modulo the window.
std::vector<duration> expected_delays(std::uint64_t seed, duration base, duration cap, int n) {
  std::uint64_t state = seed;
  auto rng = [&state] {
    std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  };
  std::vector<duration> out;
  for (int i = 0; i < n; ++i) {
    duration upper = std::min<duration>(cap, base * (1LL << i));
    out.push_back(
        duration(static_cast<duration::rep>(rng() % (static_cast<std::uint64_t>(upper.count()) + 1))));
  }
  return out;
}

TEST(Retry, ASharedPolicyServesManyCallsWithoutBeingCopied) {
  fixture f;
  int copies_seen = 0;
  retry_policy p{.max_attempts = 3, .base_delay = 10ms, .seed = 3};
  p.on_retry = [&copies_seen](unsigned, const std::exception_ptr&, duration) { ++copies_seen; };
  auto shared = std::make_shared<const retry_policy>(std::move(p));
  std::vector<int> attempts(4, 0);
  auto item = [&](int i) -> task<int> {
    co_return co_await retry(shared, [&attempts, i]() -> task<int> {
      if (++attempts[i] < 3) throw timeout_error("flaky");
      co_return i * 10;
    });
  };
  auto main = [&]() -> task<std::vector<int>> {
    EXPECT_EQ(shared.use_count(), 1);
    auto a = f.loop.spawn(item(0));
    auto b = f.loop.spawn(item(1));
    co_await yield();
    EXPECT_EQ(shared.use_count(), 3);  // held by each running retry, not copied
    std::vector<int> out;              // (not a braced list of co_awaits: g++ 12, DEVELOPERS.md)
    out.push_back(co_await a);
    out.push_back(co_await b);
    out.push_back(co_await item(2));
    out.push_back(co_await item(3));
    co_return out;
  };
  EXPECT_EQ(f.loop.run(main()), (std::vector<int>{0, 10, 20, 30}));
  EXPECT_EQ(attempts, (std::vector<int>{3, 3, 3, 3}));
  EXPECT_EQ(copies_seen, 8);  // two retries per call, through the one policy
  EXPECT_EQ(shared.use_count(), 1);
  auto null = [&]() -> task<void> {
    co_await retry(std::shared_ptr<const retry_policy>{}, []() -> task<void> { co_return; });
  };
  EXPECT_THROW(f.loop.run(null()), usage_error);
  // `{}` is still a default policy (the shared overload takes no braced list).
  int calls = 0;
  auto braced = [&]() -> task<int> {
    co_return co_await retry({}, [&calls]() -> task<int> {
      if (++calls < 2) throw timeout_error("once");
      co_return calls;
    });
  };
  EXPECT_EQ(f.loop.run(braced()), 2);
}

TEST(Retry, AttemptTimesFollowTheSeededSchedule) {
  fixture f;
  std::vector<duration> attempt_times;
  auto flaky = [&]() -> task<int> {
    attempt_times.push_back(f.elapsed());
    if (attempt_times.size() < 5) throw timeout_error("slow backend");
    co_return 42;
  };
  retry_policy p{.max_attempts = 6, .base_delay = 100ms, .max_delay = 500ms, .seed = 7};
  auto main = [&]() -> task<int> { co_return co_await retry(p, flaky); };
  EXPECT_EQ(f.loop.run(main()), 42);
  auto delays = expected_delays(7, 100ms, 500ms, 4);
  ASSERT_EQ(attempt_times.size(), 5u);
  duration t = duration::zero();
  EXPECT_EQ(attempt_times[0], t);
  for (int i = 0; i < 4; ++i) {
    t += delays[i];
    EXPECT_EQ(attempt_times[i + 1], t) << "attempt " << i + 2;
    EXPECT_LE(delays[i], std::min<duration>(500ms, 100ms * (1 << i)));
  }
}

TEST(Retry, GivesUpAfterMaxAttemptsWithTheLastError) {
  fixture f;
  int calls = 0;
  auto failing = [&]() -> task<int> {
    ++calls;
    throw timeout_error("attempt " + std::to_string(calls));
    co_return 0;
  };
  auto main = [&]() -> task<std::string> {
    try {
      co_await retry({.max_attempts = 3, .seed = 1}, failing);
    } catch (const timeout_error& e) {
      co_return e.what();
    }
    co_return "";
  };
  EXPECT_EQ(f.loop.run(main()), "attempt 3");
  EXPECT_EQ(calls, 3);
}

TEST(Retry, NonRetryableFailureIsRethrownAtOnce) {
  fixture f;
  int calls = 0;
  auto failing = [&]() -> task<int> {
    ++calls;
    throw std::invalid_argument("bad request");
    co_return 0;
  };
  auto main = [&]() -> task<void> { co_await retry({.max_attempts = 5}, failing); };
  EXPECT_THROW(f.loop.run(main()), std::invalid_argument);
  EXPECT_EQ(calls, 1);
}

TEST(Retry, CustomPredicateAndRetryAfter) {
  fixture f;
  std::vector<duration> at;
  auto failing = [&]() -> task<int> {
    at.push_back(f.elapsed());
    if (at.size() < 3) throw std::runtime_error("429");
    co_return 1;
  };
  retry_policy p{.max_attempts = 5,
                 .base_delay = 1ms,
                 .retryable = [](const std::exception_ptr&) { return true; },
                 .retry_after = [](const std::exception_ptr&) -> std::optional<duration> { return 2s; },
                 .seed = 3};
  auto main = [&]() -> task<int> { co_return co_await retry(p, failing); };
  EXPECT_EQ(f.loop.run(main()), 1);
  EXPECT_EQ(at, (std::vector<duration>{0s, 2s, 4s}));  // Retry-After beats the 1 ms backoff
}

TEST(Retry, StopsAtTheOverallDeadlineWithoutASleepPastIt) {
  fixture f;
  int calls = 0;
  auto failing = [&]() -> task<int> {
    ++calls;
    co_await sleep_for(400ms);
    throw timeout_error("attempt timed out");
  };
  retry_policy p{.max_attempts = 100,
                 .base_delay = 300ms,
                 .max_delay = 300ms,
                 .overall_timeout = 2s,
                 .retryable = [](const std::exception_ptr&) { return true; },
                 .seed = 11};
  auto main = [&]() -> task<std::string> {
    try {
      co_await retry(p, failing);
    } catch (const timeout_error& e) {
      co_return e.what();
    }
    co_return "";
  };
  std::string what = f.loop.run(main());
  EXPECT_LE(f.elapsed(), 2s);  // never past the overall deadline
  EXPECT_GE(calls, 3);         // each try is 400 ms + at most 300 ms
  EXPECT_LE(calls, 5);
  EXPECT_FALSE(what.empty());
}

TEST(Retry, OverallDeadlineCutsALongAttempt) {
  fixture f;
  auto slow = [&]() -> task<int> {
    co_await sleep_for(1h);
    co_return 0;
  };
  auto main = [&]() -> task<void> { co_await retry({.overall_timeout = 3s}, slow); };
  EXPECT_THROW(f.loop.run(main()), timeout_error);
  EXPECT_EQ(f.elapsed(), 3s);
}

TEST(Retry, CancellationIsNeverRetried) {
  fixture f;
  int calls = 0;
  auto slow = [&]() -> task<int> {
    ++calls;
    co_await sleep_for(1h);
    co_return 0;
  };
  auto main = [&]() -> task<void> {
    auto h = f.loop.spawn(retry({.max_attempts = 10, .retryable = [](auto&) { return true; }}, slow));
    co_await sleep_for(1s);
    h.cancel();
    EXPECT_THROW(co_await h, cancelled_error);
  };
  f.loop.run(main());
  EXPECT_EQ(calls, 1);
}

TEST(Retry, FanOutRetriesEachItemAndCountsAttempts) {
  fixture f;
  std::vector<int> attempts(6, 0);
  auto item = [&](int i) -> task<int> {
    ++attempts[i];
    if (i % 2 == 1 && attempts[i] < 3) throw timeout_error("flaky");
    if (i == 4) throw std::invalid_argument("permanent");
    co_await sleep_for(10ms);
    co_return i;
  };
  std::vector<int> inputs{0, 1, 2, 3, 4, 5};
  auto main = [&]() -> task<std::vector<outcome<int>>> {
    co_return co_await gather_settled(inputs, item,
                                      {.limit = 2, .retry = retry_policy{.max_attempts = 3, .seed = 5}});
  };
  auto out = f.loop.run(main());
  ASSERT_EQ(out.size(), 6u);
  EXPECT_EQ(attempts, (std::vector<int>{1, 3, 1, 3, 1, 3}));
  for (int i : {0, 1, 2, 3, 5}) EXPECT_EQ(out[i].value(), i);
  EXPECT_EQ(out[4].error_message(), "permanent");
}

}  // namespace
}  // namespace spindle
