// Core runtime benchmarks (issue #2). Op names match bench/peers/ so that
// bench/compare.py can put spindle beside asyncio, uvloop and Tokio.
//
//   BM_spawn_await           spawn an empty task and await it, from a task
//   BM_await_chain           1,000,000 awaits of a synchronously completing task
//   BM_timer_fire            100,000 call_later timers, delays (i*7919 % 1000) us, real clock
//   BM_timer_insert_fire     the same on an auto-advancing manual clock: pure timer cost
//   BM_timer_insert_cancel   insert then cancel 100,000 timers (the timeout pattern)
//   BM_threadsafe_throughput 4 threads x 100,000 call_soon_threadsafe no-ops
//   BM_threadsafe_roundtrip  a foreign thread posts, the loop answers, the thread wakes
//   BM_empty_steps/K/W       1,000,000 empty steps, the stall watchdog off (W=0) or on
//                            (W=1, 100 ms): K=0 yields of one task, K=1 call_soon of
//                            empty callbacks (issue #17: the watchdog's cost <= 2%)

#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "spindle/spindle.hpp"

namespace {

using namespace std::chrono_literals;
using spindle::event_loop;
using spindle::task;

task<void> empty() { co_return; }
task<int> ready_value(int i) { co_return i; }

void BM_spawn_await(benchmark::State& state) {
  event_loop loop;
  auto body = [&]() -> task<void> {
    for (auto _ : state) co_await loop.spawn(empty());
  };
  loop.run(body());
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_spawn_await);

void BM_await_chain(benchmark::State& state) {
  constexpr int n = 1'000'000;
  event_loop loop;
  auto body = [&]() -> task<void> {
    for (auto _ : state) {
      long sum = 0;
      for (int i = 0; i < n; ++i) sum += co_await ready_value(i);
      benchmark::DoNotOptimize(sum);
    }
  };
  loop.run(body());
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_await_chain)->Unit(benchmark::kMillisecond);

void timers_round(event_loop& loop, int n) {
  int fired = 0;
  auto body = [&]() -> task<void> {
    for (int i = 0; i < n; ++i) {
      (void)loop.call_later(std::chrono::microseconds((i * 7919) % 1000), [&fired] { ++fired; });
    }
    while (fired < n) co_await spindle::sleep_for(1ms);
  };
  loop.run(body());
}

void BM_timer_fire(benchmark::State& state) {
  constexpr int n = 100'000;
  event_loop loop;
  for (auto _ : state) timers_round(loop, n);
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_timer_fire)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_timer_insert_fire(benchmark::State& state) {
  constexpr int n = 100'000;
  spindle::manual_clock clock(spindle::manual_clock::mode::auto_advance);
  event_loop loop({.name = "bench", .clock = &clock});
  for (auto _ : state) timers_round(loop, n);
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_timer_insert_fire)->Unit(benchmark::kMillisecond);

void BM_timer_insert_cancel(benchmark::State& state) {
  constexpr int n = 100'000;
  event_loop loop;
  std::vector<spindle::timer_handle> handles(n);
  auto body = [&]() -> task<void> {
    for (auto _ : state) {
      for (int i = 0; i < n; ++i) handles[i] = loop.call_later(std::chrono::seconds(1 + i % 1000), [] {});
      for (auto& h : handles) h.cancel();
    }
    co_return;
  };
  loop.run(body());
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_timer_insert_cancel)->Unit(benchmark::kMillisecond);

void BM_threadsafe_throughput(benchmark::State& state) {
  constexpr int threads = 4;
  constexpr int per_thread = 100'000;
  for (auto _ : state) {
    event_loop loop;
    int ran = 0;
    std::vector<std::thread> producers;
    auto body = [&]() -> task<void> {
      for (int t = 0; t < threads; ++t) {
        producers.emplace_back([&] {
          for (int i = 0; i < per_thread; ++i) loop.call_soon_threadsafe([&ran] { ++ran; });
        });
      }
      while (ran < threads * per_thread) co_await spindle::sleep_for(100us);
    };
    loop.run(body());
    for (auto& p : producers) p.join();
  }
  state.SetItemsProcessed(state.iterations() * threads * per_thread);
}
BENCHMARK(BM_threadsafe_throughput)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_threadsafe_roundtrip(benchmark::State& state) {
  // The loop runs forever on its own thread; this thread is the foreign one.
  event_loop* loop_ptr = nullptr;
  std::atomic<bool> ready{false};
  std::thread loop_thread([&] {
    event_loop loop({.name = "roundtrip"});
    loop_ptr = &loop;
    ready.store(true, std::memory_order_release);
    ready.notify_one();
    loop.run_forever();
  });
  ready.wait(false, std::memory_order_acquire);
  event_loop& loop = *loop_ptr;

  std::atomic<std::uint32_t> answered{0};
  std::vector<double> latencies;
  latencies.reserve(1 << 20);
  std::uint32_t sent = 0;
  for (auto _ : state) {
    auto t0 = std::chrono::steady_clock::now();
    ++sent;
    loop.call_soon_threadsafe([&answered] {
      answered.fetch_add(1, std::memory_order_release);
      answered.notify_one();
    });
    // Block (futex) until the loop has run the callback.
    for (std::uint32_t seen = answered.load(std::memory_order_acquire); seen != sent;
         seen = answered.load(std::memory_order_acquire)) {
      answered.wait(seen, std::memory_order_acquire);
    }
    latencies.push_back(
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
  }
  loop.call_soon_threadsafe([&loop] { loop.stop(); });
  loop_thread.join();
  std::sort(latencies.begin(), latencies.end());
  if (!latencies.empty()) {
    state.counters["p50_us"] = latencies[latencies.size() / 2];
    state.counters["p99_us"] = latencies[latencies.size() * 99 / 100];
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_threadsafe_roundtrip)->UseRealTime()->Iterations(10'000);

// The step hook's cost: empty steps with the watchdog (the default step
// observer) off and on. Yields keep one task running (what runs is
// published once); callbacks change what runs at every step.
void BM_empty_steps(benchmark::State& state) {
  constexpr int steps = 1'000'000;
  constexpr int per_yield = 100;  // callbacks queued per yield of the driving task
  const bool callbacks = state.range(0) != 0;
  spindle::step_watch_options watch;
  if (state.range(1) == 0) watch.threshold = std::nullopt;
  event_loop loop({.name = "steps", .watchdog = watch});
  long ran = 0;
  auto body = [&]() -> task<void> {
    for (auto _ : state) {
      if (callbacks) {
        for (int i = 0; i < steps; i += per_yield) {
          for (int j = 0; j < per_yield; ++j) loop.call_soon([&ran] { ++ran; });
          co_await spindle::yield();
        }
      } else {
        for (int i = 0; i < steps; ++i) co_await spindle::yield();
      }
    }
  };
  loop.run(body());
  benchmark::DoNotOptimize(ran);
  state.SetItemsProcessed(state.iterations() * steps);
}
BENCHMARK(BM_empty_steps)->ArgsProduct({{0, 1}, {0, 1}})->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
