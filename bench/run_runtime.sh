#!/usr/bin/env bash
# The runtime table of issue #17 in one run: spindle's core runtime ops and
# the same ops of Tokio (bench/peers/tokio_core), asyncio and uvloop
# (bench/peers/asyncio_core.py, asyncio_fanout.py), one Markdown table.
#
#   bench/run_runtime.sh [repeats]     (default 5; `make bench-runtime`, first part of `make bench`)
#
# Rows: spawn_await, await_chain, timer_fire, threadsafe_throughput,
# threadsafe_roundtrip, gather_100k, gather_settled_100k, semaphore,
# semaphore_handoff, channel (what one op is: bench/peers/README.md), then
# the stall watchdog's cost on empty steps (spindle only, BM_empty_steps,
# off against on, CPU time). Columns: wall-clock ns per op for spindle / Tokio /
# asyncio / uvloop, spindle's time over Tokio's and issue #17's goal for
# that ratio (spawn_await <= 0.5x, gather_100k
# <= 0.8x, await_chain <= 1.2x, every other row <= 1.0x; watchdog <= +2%).
# Tokio's gather_100k figure is its buffer_unordered form
# (gather_100k_inline); the JoinSet form is given in a footnote.
#
# The run is `repeats` rounds; each round runs every implementation once
# (one Google Benchmark repetition, one peer run per op), so that a burst of
# load from other processes lands on all of them alike. The table takes the
# median of the rounds.
# Single-loop ops are pinned to CPU 1 (taskset -c 1); the threadsafe ops are
# not (a foreign thread on the other CPU is the point of them). glibc malloc
# thresholds as every bench/run_*.sh (GLIBC_TUNABLES, bench/common.sh).
# The header names the machine (lscpu), the commit, the date and the load
# average (uptime) before and after. Output: stdout and build/bench/runtime.md.
# Uses the binaries in build/release (make build); the Tokio peer is built
# offline (Debian's librust-tokio-dev), and skipped if it cannot be.
. "$(dirname "$0")/common.sh" "$@"
single=spawn_await,await_chain,timer_fire
threaded=threadsafe_throughput,threadsafe_roundtrip
fanout=gather_100k,gather_settled_100k,semaphore,semaphore_handoff,channel
core_bench=build/release/bench/core_bench
fanout_bench=build/release/bench/fanout_bench
tokio=build/peers/tokio/release/tokio_core
r=$out/runtime  # the raw results of this script
mkdir -p "$r"

for b in $core_bench $fanout_bench; do
  [ -x "$b" ] || { echo "run_runtime: $b missing; build first: make build" >&2; exit 1; }
done
load_before=$(uptime | sed 's/.*load average: //')
started=$(date -u '+%Y-%m-%d %H:%M UTC')

# The Tokio peer, built once before the rounds.
have_tokio=0
if command -v cargo >/dev/null && ls -d /usr/share/cargo/registry/tokio-* >/dev/null 2>&1; then
  echo "run_runtime: building the Tokio peer..." >&2
  (cd bench/peers/tokio_core && CARGO_TARGET_DIR="$PWD/../../../build/peers/tokio" cargo build --release --offline -q) ||
    echo "run_runtime: the Tokio peer did not build; using $tokio as it is, if any" >&2
fi
[ -x $tokio ] && have_tokio=1 ||
  echo "run_runtime: no Tokio peer (cargo / librust-tokio-dev missing?); its column stays n/a" >&2
loops=(asyncio)
$py -c 'import uvloop' 2>/dev/null && loops+=(uvloop) ||
  echo "run_runtime: no uvloop (python3-uvloop); its column stays n/a" >&2
have_clock=0  # the cost of a clock read, if core_bench has a benchmark of it (BM_clock...)
$core_bench --benchmark_list_tests | grep -q '^BM_clock' && have_clock=1

# The benchmark bodies hold the loop for longer than the stall watchdog's
# 100 ms, so its reports go to a log, not the terminal.
rm -f "$r"/*.json "$r"/*.jsonl
: >"$r/spindle.stderr"
gb() {
  "$@" --benchmark_format=json 2>>"$r/spindle.stderr" || { tail -20 "$r/spindle.stderr" >&2; return 1; }
}

# Rounds, each one run of every implementation, so that a burst of load from
# other processes lands on all of them alike; the table takes the medians.
for i in $(seq 1 "$repeats"); do
  echo "run_runtime: round $i of $repeats: spindle, Tokio, ${loops[*]}..." >&2
  gb taskset -c 1 $core_bench --benchmark_filter='BM_(spawn_await|await_chain|timer_fire)(/|$)' >"$r/spindle_single.$i.json"
  gb $core_bench --benchmark_filter='BM_threadsafe' >"$r/spindle_threaded.$i.json"
  gb taskset -c 1 $core_bench --benchmark_filter='BM_empty_steps' >"$r/spindle_steps.$i.json"
  gb taskset -c 1 $fanout_bench >"$r/spindle_fanout.$i.json"
  [ $have_clock = 0 ] || gb taskset -c 1 $core_bench --benchmark_filter='^BM_clock' >"$r/spindle_clock.$i.json"
  if [ $have_tokio = 1 ]; then
    taskset -c 1 $tokio --ops $single,$fanout,gather_100k_inline >>"$r/tokio.jsonl"
    $tokio --ops $threaded >>"$r/tokio.jsonl"
  fi
  for impl in "${loops[@]}"; do
    flag=()
    [ "$impl" = uvloop ] && flag=(--uvloop)
    f="$r/$impl.jsonl"
    taskset -c 1 $py bench/peers/asyncio_core.py "${flag[@]}" --repeat 1 --ops $single >>"$f"
    $py bench/peers/asyncio_core.py "${flag[@]}" --repeat 1 --ops $threaded >>"$f"
    taskset -c 1 $py bench/peers/asyncio_fanout.py "${flag[@]}" --repeat 1 --ops $fanout >>"$f"
  done
done
: >>"$r/tokio.jsonl"

model=$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1)
{
  echo "## spindle against Tokio, asyncio and uvloop (issue #17)"
  echo
  echo "Machine: ${model:-unknown CPU}, $(nproc) CPUs, $(uname -sr); spindle $(git rev-parse --short HEAD 2>/dev/null || echo '?')."
  echo "Run: $started, interleaved rounds: $repeats; load average $load_before before, $(uptime | sed 's/.*load average: //') after."
  echo "Single-loop ops pinned (\`taskset -c 1\`), threadsafe ops unpinned; \`GLIBC_TUNABLES=$GLIBC_TUNABLES\`."
  echo
  $py bench/compare.py --runtime "$r"/spindle_*.json "$r"/*.jsonl
} | tee "$out/runtime.md"
