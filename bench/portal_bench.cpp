// Portal and watchdog benchmarks (issue #5).
//
//   BM_portal_roundtrip         a foreign thread: portal.call(trivial task), blocking until the answer
//   BM_portal_roundtrip_submit  the same through submit() + get()
//   BM_portal_call_sync         portal.call_sync(plain function)
//   BM_portal_throughput/N      N foreign threads share 16,000 blocking calls into one background loop
//   BM_loop_steps/W             one million one-step yields on a loop, watchdog off (W=0) or on (W=1)
//   BM_spawn_await_watchdog/W   spawn + await of an empty task (two steps), watchdog off or on
//
// Round trips report p50_us / p99_us counters (bench/compare.py uses p50).

#include <benchmark/benchmark.h>

#include <algorithm>
#include <barrier>
#include <chrono>
#include <thread>
#include <vector>

#include "spindle/spindle.hpp"

namespace {

using namespace std::chrono_literals;
using spindle::task;

template <class Call>
void roundtrip(benchmark::State& state, Call call) {
  std::vector<double> latencies;
  latencies.reserve(1 << 16);
  for (int i = 0; i < 100; ++i) call();  // warm-up
  for (auto _ : state) {
    auto t0 = std::chrono::steady_clock::now();
    benchmark::DoNotOptimize(call());
    latencies.push_back(
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(latencies.begin(), latencies.end());
  if (!latencies.empty()) {
    state.counters["p50_us"] = latencies[latencies.size() / 2];
    state.counters["p99_us"] = latencies[latencies.size() * 99 / 100];
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_portal_roundtrip(benchmark::State& state) {
  spindle::background_loop bg({.loop = {.name = "bench"}});
  spindle::portal p = bg.portal();
  roundtrip(state, [&] { return p.call([]() -> task<int> { co_return 1; }, 10s); });
}
BENCHMARK(BM_portal_roundtrip)->UseRealTime()->Iterations(10'000);

void BM_portal_roundtrip_submit(benchmark::State& state) {
  spindle::background_loop bg({.loop = {.name = "bench"}});
  spindle::portal p = bg.portal();
  roundtrip(state, [&] { return p.submit([]() -> task<int> { co_return 1; }).get(); });
}
BENCHMARK(BM_portal_roundtrip_submit)->UseRealTime()->Iterations(10'000);

void BM_portal_call_sync(benchmark::State& state) {
  spindle::background_loop bg({.loop = {.name = "bench"}});
  spindle::portal p = bg.portal();
  roundtrip(state, [&] { return p.call_sync([] { return 1; }); });
}
BENCHMARK(BM_portal_call_sync)->UseRealTime()->Iterations(10'000);

void BM_portal_throughput(benchmark::State& state) {
  constexpr int total = 16'000;
  const int threads = static_cast<int>(state.range(0));
  spindle::background_loop bg({.loop = {.name = "bench"}});
  spindle::portal p = bg.portal();
  for (auto _ : state) {
    std::barrier start(threads + 1);
    std::vector<std::thread> callers;
    for (int t = 0; t < threads; ++t) {
      callers.emplace_back([&] {
        start.arrive_and_wait();
        for (int i = 0; i < total / threads; ++i)
          benchmark::DoNotOptimize(p.call([]() -> task<int> { co_return 1; }, 10s));
      });
    }
    start.arrive_and_wait();
    auto t0 = std::chrono::steady_clock::now();
    for (auto& c : callers) c.join();
    state.SetIterationTime(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  state.SetItemsProcessed(state.iterations() * total);
}
BENCHMARK(BM_portal_throughput)->Arg(1)->Arg(4)->Arg(16)->UseManualTime()->Unit(benchmark::kMillisecond);

// The watchdog's cost on the hot path: a million steps with it off and on.
void BM_loop_steps(benchmark::State& state) {
  constexpr int steps = 1'000'000;
  spindle::event_loop loop({.name = "steps",
                            .watchdog = {.threshold = state.range(0) != 0 ? spindle::duration(100ms)
                                                                          : spindle::duration::zero()}});
  auto body = [&]() -> task<void> {
    for (auto _ : state) {
      for (int i = 0; i < steps; ++i) co_await spindle::yield();
    }
  };
  loop.run(body());
  state.SetItemsProcessed(state.iterations() * steps);
}
BENCHMARK(BM_loop_steps)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);

// The cheapest steps there are: spawn + await of an empty task (two steps
// per op), watchdog off and on.
task<void> empty() { co_return; }
void BM_spawn_await_watchdog(benchmark::State& state) {
  spindle::event_loop loop({.name = "spawn",
                            .watchdog = {.threshold = state.range(0) != 0 ? spindle::duration(100ms)
                                                                          : spindle::duration::zero()}});
  auto body = [&]() -> task<void> {
    for (auto _ : state) co_await loop.spawn(empty());
  };
  loop.run(body());
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_spawn_await_watchdog)->Arg(0)->Arg(1);

}  // namespace

BENCHMARK_MAIN();
