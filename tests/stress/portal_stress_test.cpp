// Run under ThreadSanitizer in CI: 16 foreign threads make 10,000 portal
// calls each into one background loop, mixing submit/get, call with a
// timeout that expires, call that succeeds, calls that throw, cancelled
// futures and call_sync. Every call must get exactly its own answer, the
// portal's counters must add up, and no task may be left running after its
// timeout (the loop ends with no task alive, and no timed-out task ever
// reached the end of its body).
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "spindle/spindle.hpp"

namespace spindle {
namespace {

using namespace std::chrono_literals;

class tagged_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

std::string tag(int thread, int i) { return std::to_string(thread) + "/" + std::to_string(i); }

TEST(PortalStress, SixteenThreadsTenThousandCallsEachEveryAnswerIsItsOwn) {
  constexpr int threads = 16;
  const int calls = [] {
    // SPINDLE_STRESS_CALLS lowers the count for quick local runs; CI uses the default.
    const char* env = std::getenv("SPINDLE_STRESS_CALLS");
    return env != nullptr ? std::atoi(env) : 10'000;
  }();
  background_loop bg({.loop = {.name = "stress-bg"}});
  portal p = bg.portal();
  std::atomic<long> wrong{0}, timeouts{0}, values{0}, errors{0}, cancels{0}, finished_late{0};
  std::atomic<long> bodies_alive{0};
  auto client = [&](int t) {
    std::minstd_rand rng(static_cast<unsigned>(t + 1));
    for (int i = 0; i < calls; ++i) {
      const unsigned kind = rng() % 8;
      const long expect = static_cast<long>(t) * 1'000'000 + i;
      try {
        switch (kind) {
          case 0:
          case 1: {  // call that completes well within its timeout
            long v = p.call(
                [expect]() -> task<long> {
                  co_await yield();
                  co_return expect;
                },
                30s);
            if (v != expect) ++wrong;
            ++values;
            break;
          }
          case 2: {  // call whose timeout always expires: the task must be cancelled
            p.call(
                [&]() -> task<void> {
                  ++bodies_alive;
                  struct leave {
                    std::atomic<long>& n;
                    ~leave() { --n; }
                  } guard{bodies_alive};
                  co_await sleep_for(30s);
                  ++finished_late;
                },
                std::chrono::microseconds(200 + rng() % 2000));
            ++wrong;  // no timeout
            break;
          }
          case 3: {  // throws its own error
            p.call([t, i]() -> task<void> {
              co_await yield();
              throw tagged_error(tag(t, i));
            });
            ++wrong;
            break;
          }
          case 4:
          case 5: {  // submit + get
            auto f = p.submit([expect]() -> task<long> { co_return expect; });
            if (f.get() != expect) ++wrong;
            ++values;
            break;
          }
          case 6: {  // submit, then cancel: cancelled, or done first
            auto f = p.submit([expect]() -> task<long> {
              co_await sleep_for(30s);
              co_return expect;
            });
            if (rng() % 2 == 0) std::this_thread::yield();
            f.cancel();
            (void)f.get();
            ++wrong;  // a 30 s sleep cannot have finished
            break;
          }
          default: {  // plain function on the loop thread
            long v = p.call_sync([expect] { return expect; });
            if (v != expect) ++wrong;
            ++values;
            break;
          }
        }
      } catch (const timeout_error&) {
        if (kind != 2) ++wrong;
        ++timeouts;
      } catch (const tagged_error& e) {
        if (kind != 3 || e.what() != tag(t, i)) ++wrong;
        ++errors;
      } catch (const cancelled_error&) {
        if (kind != 6) ++wrong;
        ++cancels;
      } catch (...) {
        ++wrong;
      }
    }
  };
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) pool.emplace_back(client, t);
  for (auto& th : pool) th.join();

  const long total = static_cast<long>(threads) * calls;
  // Taken before anything else uses the portal (statistics() below does).
  const portal_statistics s = p.statistics();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(values + timeouts + errors + cancels, total);
  EXPECT_EQ(finished_late.load(), 0);
  // Every timed-out or cancelled task is cancelled on the loop: soon none is
  // alive (the bound only guards against a hang).
  const auto until = std::chrono::steady_clock::now() + 60s;
  while (bg.statistics().tasks_alive != 0 && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(1ms);
  EXPECT_EQ(bg.statistics().tasks_alive, 0u);
  EXPECT_EQ(bodies_alive.load(), 0);
  EXPECT_EQ(s.submitted, static_cast<std::uint64_t>(total));
  EXPECT_EQ(s.completed, static_cast<std::uint64_t>(values.load()));
  EXPECT_EQ(s.failed, static_cast<std::uint64_t>(errors.load()));
  EXPECT_EQ(s.timed_out, static_cast<std::uint64_t>(timeouts.load()));
  EXPECT_EQ(s.cancelled, static_cast<std::uint64_t>(cancels.load()));
  EXPECT_EQ(s.shut_down, 0u);
  loop_shutdown_report r = bg.stop();
  EXPECT_EQ(r.cancelled, 0u);  // nothing was left running
}

}  // namespace
}  // namespace spindle
