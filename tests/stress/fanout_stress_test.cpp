// Repeated under ThreadSanitizer in CI: several loops on several threads,
// each running fan-outs with timeouts, failures, retries, a shared-in-loop
// semaphore and channel, while another thread cancels rounds through
// call_soon_threadsafe. Every round ends with every input accounted for, or
// as a whole with cancelled_error; nothing is left alive.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <random>
#include <ranges>
#include <thread>
#include <vector>

#include "spindle/spindle.hpp"

namespace spindle {
namespace {

using namespace std::chrono_literals;

struct loop_result {
  int rounds_completed = 0;
  int rounds_cancelled = 0;
  long outcomes = 0;
  long expected_outcomes = 0;
  std::uint64_t alive_at_end = 1;
};

void run_loop(int id, std::atomic<bool>& done, loop_result& r) {
  event_loop loop({.name = "stress-" + std::to_string(id)});
  semaphore sem(8, "shared");
  join_handle<void> current;  // the running round (touched on the loop thread only)
  auto item = [&](int i) -> task<int> {
    semaphore_permit p = co_await sem.acquire_permit();
    std::minstd_rand rng(static_cast<unsigned>(i * 7919 + id));
    co_await sleep_for(std::chrono::microseconds(rng() % 300));
    if (rng() % 10 == 0) throw timeout_error("flaky");
    if (rng() % 17 == 0) throw std::runtime_error("broken");
    co_return i;
  };
  auto round = [&](int n) -> task<void> {
    auto out =
        co_await gather_settled(std::views::iota(0, n), item,
                                {.limit = 32,
                                 .per_item_timeout = 250us,
                                 .retry = retry_policy{.max_attempts = 2, .base_delay = 10us, .seed = 1}});
    r.outcomes += static_cast<long>(out.size());
    r.expected_outcomes += n;
    for (std::size_t i = 0; i < out.size(); ++i) {
      if (out[i].ok()) {
        EXPECT_EQ(out[i].value(), static_cast<int>(i));
      }
    }
  };
  auto main = [&]() -> task<void> {
    for (int k = 0; k < 30; ++k) {
      current = loop.spawn(round(200), "round");
      try {
        co_await current;
        ++r.rounds_completed;
      } catch (const cancelled_error&) {
        ++r.rounds_cancelled;
      }
    }
    done.store(true, std::memory_order_release);
  };
  // The controller reaches `current` only through the loop's door.
  std::thread controller([&] {
    std::minstd_rand rng(static_cast<unsigned>(id));
    while (!done.load(std::memory_order_acquire)) {
      std::this_thread::sleep_for(std::chrono::microseconds(5000 + rng() % 15000));
      if (rng() % 3 != 0) continue;  // leave most rounds alone
      loop.call_soon_threadsafe([&] {
        if (current.valid() && !current.done()) current.cancel();
      });
    }
  });
  loop.run(main());
  controller.join();
  r.alive_at_end = loop.statistics().tasks_alive;
}

TEST(FanoutStress, LoopsOnThreadsWithCrossThreadCancellation) {
  constexpr int loops = 3;
  std::vector<loop_result> results(loops);
  std::vector<std::atomic<bool>> done(loops);
  std::vector<std::thread> threads;
  for (int i = 0; i < loops; ++i) {
    done[i] = false;
    threads.emplace_back([&, i] { run_loop(i, done[i], results[i]); });
  }
  for (auto& t : threads) t.join();
  for (const auto& r : results) {
    std::printf("loop: %d rounds completed, %d cancelled\n", r.rounds_completed, r.rounds_cancelled);
    EXPECT_EQ(r.rounds_completed + r.rounds_cancelled, 30);
    EXPECT_EQ(r.outcomes, r.expected_outcomes);  // a completed round accounts for every input
    EXPECT_EQ(r.alive_at_end, 0u);
  }
}

}  // namespace
}  // namespace spindle
