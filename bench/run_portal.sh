#!/usr/bin/env bash
# The portal and the watchdog (issue #5): spindle vs asyncio / uvloop / Tokio.
#
#   bench/run_portal.sh [repeats]     (default 5; run by bench/run_core.sh)
#
# Everything is pinned to one CPU (taskset -c 1). Unpinned, this 2-vCPU VM
# flips between two modes (a cross-CPU wake-up of the sleeping loop costs
# ~60 µs; on one CPU a hand-off costs ~2 µs) for every runtime alike, so
# unpinned ratios measure the scheduler, not the runtimes.
. "$(dirname "$0")/common.sh" "$@"
ops=portal_roundtrip,portal_throughput_1,portal_throughput_4,portal_throughput_16

[ -x build/release/bench/portal_bench ] || { echo "build first: make build" >&2; exit 1; }
echo "portal: spindle..." >&2
taskset -c 1 build/release/bench/portal_bench --benchmark_filter='BM_portal' \
  --benchmark_repetitions="$repeats" --benchmark_format=json >"$out/spindle_portal.json"
echo "portal: asyncio / uvloop..." >&2
taskset -c 1 $py bench/peers/asyncio_core.py --repeat "$repeats" --ops $ops >"$out/asyncio_portal.jsonl"
if $py -c 'import uvloop' 2>/dev/null; then
  taskset -c 1 $py bench/peers/asyncio_core.py --uvloop --repeat "$repeats" --ops $ops >"$out/uvloop_portal.jsonl"
fi
echo "portal: tokio..." >&2
(cd bench/peers/tokio_core && CARGO_TARGET_DIR="$PWD/../../../build/peers/tokio" cargo build --release --offline -q)
taskset -c 1 build/peers/tokio/release/tokio_core --repeat "$repeats" --ops $ops,portal_roundtrip_block_on \
  >"$out/tokio_portal.jsonl"
echo
$py bench/compare.py "$out/spindle_portal.json" "$out"/*_portal.jsonl | tee "$out/portal.md"

# The watchdog's hot-path cost: the same loops with it off (/0) and on (/1).
echo "watchdog overhead..." >&2
taskset -c 1 build/release/bench/portal_bench --benchmark_filter='BM_(loop_steps|spawn_await_watchdog)' \
  --benchmark_repetitions="$repeats" --benchmark_report_aggregates_only=true | tee "$out/watchdog.txt"
