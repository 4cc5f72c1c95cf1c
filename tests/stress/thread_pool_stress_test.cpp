// Repeated under ThreadSanitizer in CI: two loops on two threads hammer one
// pool with calls that succeed, fail, ignore or honour their stop token,
// under timeouts and cancellations, while the pool is shut down at a random
// moment. The shutdown report must add up exactly, and every awaiter must
// get exactly one answer.
#include <gtest/gtest.h>

#include <atomic>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

#include "spindle/spindle.hpp"

namespace spindle {
namespace {

using namespace std::chrono_literals;

TEST(ThreadPoolStress, ShutdownReportAddsUpUnderRandomLoad) {
  for (int round = 0; round < 5; ++round) {
    thread_pool pool({.name = "stress",
                      .threads = 3,
                      .queue_capacity = 16,
                      .full = round % 2 == 0 ? when_full::wait : when_full::reject,
                      .abandon_grace = 2ms,
                      .max_zombies = 8});
    std::atomic<long> answered{0}, started{0};
    // Shared by value: zombie threads may outlive this round's stack frame.
    auto release_zombies = std::make_shared<std::atomic<bool>>(false);
    auto client = [&](int seed) {
      event_loop loop({.name = "client"});
      auto one = [&](int i) -> task<void> {
        std::minstd_rand rng(static_cast<unsigned>(seed * 100'000 + i));
        const unsigned kind = rng() % 5;
        ++started;
        try {
          auto call = run_blocking(pool, [release_zombies, kind](std::stop_token t) {
            if (kind == 1) throw std::runtime_error("fails");
            if (kind == 2) {  // honours its token
              while (!t.stop_requested()) std::this_thread::sleep_for(100us);
            }
            if (kind == 3) {  // ignores it (until the test ends)
              while (!release_zombies->load()) std::this_thread::sleep_for(100us);
            }
            return static_cast<int>(kind);
          });
          co_await with_timeout(std::chrono::microseconds(200 + rng() % 2000), std::move(call));
        } catch (const error&) {
        } catch (const std::runtime_error&) {
        }
        ++answered;
      };
      auto main = [&]() -> task<void> {
        co_await with_task_group([&](task_group& g) -> task<void> {
          for (int i = 0; i < 150; ++i) {
            g.spawn(one(i));
            if (i % 10 == 0) co_await sleep_for(100us);
          }
        });
      };
      loop.run(main());
    };
    std::thread a(client, 1), b(client, 2);
    std::this_thread::sleep_for(std::chrono::milliseconds(5 + round * 3));
    shutdown_report r =
        pool.shutdown(round % 2 == 0 ? shutdown_policy::drain : shutdown_policy::cancel_queued, 5ms);
    a.join();
    b.join();
    release_zombies->store(true);
    // Zombies come back once released (bounded wait: 5 s).
    for (int i = 0; i < 5000 && pool.statistics().zombies != 0; ++i) std::this_thread::sleep_for(1ms);
    EXPECT_EQ(pool.statistics().zombies, 0u);
    EXPECT_EQ(answered.load(), started.load()) << "every awaiter gets exactly one answer";
    EXPECT_EQ(answered.load(), 300);
    // Taken at shutdown time: nothing still running (everything left was abandoned).
    EXPECT_EQ(r.still_running, 0u) << r.to_string();
    EXPECT_TRUE(r.balanced()) << r.to_string();
    auto s = pool.statistics();
    EXPECT_EQ(s.submitted, s.completed + s.failed + s.cancelled + s.abandoned) << "round " << round;
  }
}

}  // namespace
}  // namespace spindle
