// blocking: blocking work on named, isolated pools (docs/blocking-work.md).
//
// A "reports" pool is saturated by slow calls; the "lookups" pool keeps
// answering. A call that honours its stop token is stopped by a timeout; one
// that ignores it is abandoned after the grace period and counted as a
// zombie. The shutdown report accounts for every job.

#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <thread>

#include "spindle/spindle.hpp"

using namespace std::chrono_literals;
using spindle::task;

namespace {

task<int> demo(spindle::thread_pool& reports, spindle::thread_pool& lookups) {
  int failures = 0;
  std::atomic<bool> release{false};

  // 1. Isolation: saturate `reports`, then time a call on `lookups`.
  auto slow_report = [&]() -> task<void> {
    co_await spindle::run_blocking(reports, [&] {
      while (!release) std::this_thread::sleep_for(1ms);
    });
  };
  auto& loop = *spindle::event_loop::current();
  std::vector<spindle::join_handle<void>> busy;
  for (int i = 0; i < 2; ++i) busy.push_back(loop.spawn(slow_report(), "report"));
  co_await spindle::sleep_for(5ms);
  auto t0 = std::chrono::steady_clock::now();
  int answer = co_await spindle::run_blocking(lookups, [] { return 42; });
  auto took = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0);
  std::printf("lookups pool answered %d in %lld us while reports pool is saturated\n", answer,
              static_cast<long long>(took.count()));
  release = true;
  for (auto& h : busy) co_await h;

  // 2. A call that honours its stop token stops at the timeout.
  try {
    co_await spindle::with_timeout(20ms, spindle::run_blocking(lookups, [](std::stop_token st) {
                                     while (!st.stop_requested()) std::this_thread::sleep_for(1ms);
                                   }));
    ++failures;
  } catch (const spindle::timeout_error&) {
    std::printf("cooperative call: stopped by its stop token at the timeout\n");
  }

  // 3. A call that ignores it is abandoned after the grace period. An
  // abandoned call outlives this frame: it must own what it uses (here a
  // shared flag), never refer to the awaiting coroutine's locals. (The
  // timeout leaves a loaded machine time to start the job: one still
  // queued at the timeout is cancelled, not abandoned. 10 ms was not
  // always enough under ASan in CI.)
  auto let_go = std::make_shared<std::atomic<bool>>(false);
  try {
    co_await spindle::with_timeout(200ms,
                                   spindle::run_blocking(lookups, spindle::job_name{"stubborn"}, [let_go] {
                                     while (!*let_go) std::this_thread::sleep_for(1ms);
                                   }));
    ++failures;
  } catch (const spindle::timeout_error&) {
    auto s = lookups.statistics();
    std::printf("stubborn call: abandoned (zombies=%zu abandoned=%llu)\n", s.zombies,
                static_cast<unsigned long long>(s.abandoned));
    if (s.zombies != 1) ++failures;
  }
  *let_go = true;
  co_return failures;
}

}  // namespace

int main() {
  spindle::event_loop loop({.name = "blocking"});
  // Attached pools are shut down by the loop's shutdown phase: run()
  // returning gives one report for the loop's tasks and both pools.
  spindle::thread_pool reports({.name = "reports", .threads = 2, .queue_capacity = 8, .attach_to = &loop});
  spindle::thread_pool lookups({.name = "lookups", .threads = 2, .abandon_grace = 20ms, .attach_to = &loop});
  int failures = loop.run(demo(reports, lookups));
  const spindle::loop_shutdown_report& r = loop.last_shutdown_report();
  std::printf("shutdown: %s\n(pools balanced: %s)\n", r.to_string().c_str(),
              r.pools_balanced() ? "yes" : "NO");
  if (!r.pools_balanced() || r.pools.size() != 2) ++failures;
  return failures == 0 ? 0 : 1;
}
