// run_blocking benchmarks (issue #4). Op names match bench/peers/ for
// bench/compare.py.
//
//   BM_blocking_roundtrip       submit a trivial call from a task, resume on the loop (1 worker)
//   BM_blocking_throughput/N    20,000 trivial calls, 256 in flight, N workers

#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <ranges>
#include <vector>

#include "spindle/spindle.hpp"

namespace {

using spindle::task;

void BM_blocking_roundtrip(benchmark::State& state) {
  spindle::thread_pool pool({.name = "bench", .threads = 1});
  spindle::event_loop loop;
  std::vector<double> latencies;
  latencies.reserve(1 << 20);
  auto body = [&]() -> task<void> {
    for (int i = 0; i < 100; ++i) co_await spindle::run_blocking(pool, [] { return 1; });  // warm-up
    for (auto _ : state) {
      auto t0 = std::chrono::steady_clock::now();
      int v = co_await spindle::run_blocking(pool, [] { return 1; });
      benchmark::DoNotOptimize(v);
      latencies.push_back(
          std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
    }
  };
  loop.run(body());
  std::sort(latencies.begin(), latencies.end());
  if (!latencies.empty()) {
    state.counters["p50_us"] = latencies[latencies.size() / 2];
    state.counters["p99_us"] = latencies[latencies.size() * 99 / 100];
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_blocking_roundtrip)->UseRealTime()->Iterations(10'000);

void BM_blocking_throughput(benchmark::State& state) {
  constexpr int n = 20'000;
  const auto threads = static_cast<std::size_t>(state.range(0));
  spindle::thread_pool pool({.name = "bench", .threads = threads, .queue_capacity = 256});
  spindle::event_loop loop;
  auto call = [&](int i) -> task<int> { co_return co_await spindle::run_blocking(pool, [i] { return i; }); };
  auto body = [&]() -> task<void> {
    for (auto _ : state) {
      auto out = co_await spindle::gather_settled(std::views::iota(0, n), call, {.limit = 256});
      benchmark::DoNotOptimize(out.data());
    }
  };
  loop.run(body());
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_blocking_throughput)->Arg(1)->Arg(2)->Arg(4)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
