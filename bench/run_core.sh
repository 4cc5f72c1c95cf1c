#!/usr/bin/env bash
# Runs the core-runtime and fan-out benchmarks of spindle and its peers in
# one go and prints Markdown comparisons (bench/compare.py).
#
#   bench/run_core.sh [repeats]     (default 5)
#
# The one runtime table of issue #17 (spindle / Tokio / asyncio / uvloop and
# the ratios to Tokio) is bench/run_runtime.sh; `make bench` runs it first.
#
# Single-loop ops are pinned to CPU 1 (taskset -c 1); the threadsafe ops are
# not pinned (a foreign thread on the other CPU is the point of them).
# glibc malloc: M_TRIM_THRESHOLD and M_MMAP_THRESHOLD are raised so that
# memory freed between rounds is not returned to the kernel and faulted in
# again (the same settings for every peer, via GLIBC_TUNABLES).
. "$(dirname "$0")/common.sh" "$@"
single=spawn_await,await_chain,timer_fire
threaded=threadsafe_throughput,threadsafe_roundtrip

[ -x build/release/bench/core_bench ] || { echo "build first: make build" >&2; exit 1; }
echo "spindle..." >&2
taskset -c 1 build/release/bench/core_bench --benchmark_filter='BM_(spawn_await|await_chain|timer_)' \
  --benchmark_repetitions="$repeats" --benchmark_format=json >"$out/spindle_single.json"
build/release/bench/core_bench --benchmark_filter='BM_threadsafe' \
  --benchmark_repetitions="$repeats" --benchmark_format=json >"$out/spindle_threaded.json"

echo "asyncio / uvloop..." >&2
: >"$out/asyncio.jsonl"
: >"$out/uvloop.jsonl"
taskset -c 1 $py bench/peers/asyncio_core.py --repeat "$repeats" --ops $single >>"$out/asyncio.jsonl"
$py bench/peers/asyncio_core.py --repeat "$repeats" --ops $threaded >>"$out/asyncio.jsonl"
if $py -c 'import uvloop' 2>/dev/null; then
  taskset -c 1 $py bench/peers/asyncio_core.py --uvloop --repeat "$repeats" --ops $single >>"$out/uvloop.jsonl"
  $py bench/peers/asyncio_core.py --uvloop --repeat "$repeats" --ops $threaded >>"$out/uvloop.jsonl"
fi

echo "tokio..." >&2
: >"$out/tokio.jsonl"
if command -v cargo >/dev/null && [ -d /usr/share/cargo/registry/tokio-1.24.2 ] || ls -d /usr/share/cargo/registry/tokio-* >/dev/null 2>&1; then
  (cd bench/peers/tokio_core && CARGO_TARGET_DIR="$PWD/../../../build/peers/tokio" cargo build --release --offline -q)
  taskset -c 1 build/peers/tokio/release/tokio_core --repeat "$repeats" --ops $single >>"$out/tokio.jsonl"
  build/peers/tokio/release/tokio_core --repeat "$repeats" --ops $threaded >>"$out/tokio.jsonl"
fi

$py bench/compare.py "$out/spindle_single.json" "$out/spindle_threaded.json" "$out"/asyncio.jsonl \
  "$out"/uvloop.jsonl "$out"/tokio.jsonl | tee "$out/core.md"

# Fan-out and sync primitives (issue #3): spindle vs asyncio / uvloop, pinned.
echo "fan-out..." >&2
taskset -c 1 build/release/bench/fanout_bench --benchmark_repetitions="$repeats" --benchmark_format=json \
  >"$out/spindle_fanout.json"
taskset -c 1 $py bench/peers/asyncio_fanout.py --repeat "$repeats" >"$out/asyncio_fanout.jsonl"
if $py -c 'import uvloop' 2>/dev/null; then
  taskset -c 1 $py bench/peers/asyncio_fanout.py --uvloop --repeat "$repeats" >"$out/uvloop_fanout.jsonl"
fi
echo
$py bench/compare.py "$out/spindle_fanout.json" "$out"/*_fanout.jsonl | tee "$out/fanout.md"

# Blocking work on pools (issue #4): unpinned (the workers are threads).
echo "blocking..." >&2
blocking_ops=blocking_roundtrip,blocking_roundtrip_to_thread,blocking_throughput_1,blocking_throughput_2,blocking_throughput_4
build/release/bench/blocking_bench --benchmark_repetitions="$repeats" --benchmark_format=json >"$out/spindle_blocking.json"
$py bench/peers/asyncio_core.py --repeat "$repeats" --ops $blocking_ops >"$out/asyncio_blocking.jsonl"
if [ -x build/peers/tokio/release/tokio_core ]; then
  build/peers/tokio/release/tokio_core --repeat "$repeats" --ops blocking_roundtrip,blocking_throughput_1,blocking_throughput_2,blocking_throughput_4 \
    >"$out/tokio_blocking.jsonl"
fi
echo
$py bench/compare.py "$out/spindle_blocking.json" "$out"/*_blocking.jsonl | tee "$out/blocking.md"

# The portal and the watchdog (issue #5), pinned.
bench/run_portal.sh "$repeats"

# HTTP client and server (issue #6): each server pinned to CPU 0, wrk / the clients to CPU 1.
bench/run_http.sh "$repeats"

# spindle fetch against aiohttp, curl --parallel and hyper (issue #7): servers on CPU 0, clients on CPU 1.
bench/run_fetch.sh "$repeats"
