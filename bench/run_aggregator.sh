#!/usr/bin/env bash
# The aggregator (issue #8): GET /graph latency, fan-out vs sequential, with
# ~50 ms of latency in every backend, and throughput under wrk -c64.
#
#   bench/run_aggregator.sh [repeats]        (default 5)
#
# Uses the release build (make build; AGG_BUILD=<dir> to use another) and a
# throwaway PostgreSQL cluster (scripts/pg-cluster.sh) that it stops at the
# end. AGG_WRK_SECONDS sets each wrk run's length (default 5). Nothing is pinned: the aggregator, PostgreSQL, the mock API and the
# load generator share the machine's CPUs, as a real deployment's would.
# Results go to build/bench/aggregator.jsonl; any non-2xx answer or socket
# error under wrk fails the run.
. "$(dirname "$0")/common.sh" "$@"
build=${AGG_BUILD:-build/release}
bin=$build/examples/aggregator/aggregator
[ -x "$bin" ] || { echo "build first: make build (or AGG_BUILD=<build dir>)" >&2; exit 1; }
command -v wrk >/dev/null || { echo "wrk is missing: scripts/install-deps.sh bench" >&2; exit 1; }
duration=${AGG_WRK_SECONDS:-5}

state=$PWD/$out/aggregator_pg.state
log=$out/aggregator.log
agg_pid=
cleanup() {
  [ -n "$agg_pid" ] && kill -TERM "$agg_pid" 2>/dev/null && wait "$agg_pid" 2>/dev/null || true
  scripts/pg-cluster.sh stop "$state" >/dev/null
}
trap cleanup EXIT
scripts/pg-cluster.sh start "$state" >&2
conninfo=$(scripts/pg-cluster.sh conninfo "$state")

# The service, on an ephemeral port (its first line names it).
start_service() {  # extra aggregator options...
  "$bin" --pg "$conninfo" --port 0 --timeout-ms 5000 "$@" >"$log" 2>&1 &
  agg_pid=$!
  for _ in $(seq 1 100); do grep -q "listening on" "$log" && break; sleep 0.1; done
  port=$(sed -n 's|.*listening on http://127.0.0.1:\([0-9]*\).*|\1|p' "$log")
  [ -n "$port" ] || { cat "$log" >&2; exit 1; }
  echo "aggregator $* on port $port" >&2
}
stop_service() {
  kill -TERM "$agg_pid" && wait "$agg_pid" || true
  agg_pid=
  tail -1 "$log" >&2
}

results=$out/aggregator.jsonl
: >"$results"
# The defaults: 16 front workers, 8 PostgreSQL connections, 4 SQLite threads.
start_service
echo "latency: fan-out vs sequential, 50 ms per backend..." >&2
$py bench/aggregator/latency.py --port "$port" --delay-ms 50 --repeat "$repeats" | tee -a "$results"

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
to_ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us$/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v*=1000}; print v}'; }
run_wrk() {  # target config-label
  local target=$1 config=$2
  echo "throughput: wrk -t2 -c64 -d${duration}s --timeout 10s http://127.0.0.1:PORT$target ($repeats runs)..." >&2
  : >"$out/wrk_runs.txt"
  local i outp
  for i in $(seq 1 "$repeats"); do
    outp=$(wrk -t2 -c64 -d"${duration}s" --timeout 10s --latency "http://127.0.0.1:$port$target")
    if grep -qE "Non-2xx|Socket errors" <<<"$outp"; then echo "wrk: errors for $target:" >&2; echo "$outp" >&2; exit 1; fi
    echo "$(awk '/Requests\/sec/ {print $2}' <<<"$outp") $(awk '/ 50%/ {print $2}' <<<"$outp" | to_ms) $(awk '/ 99%/ {print $2}' <<<"$outp" | to_ms)" >>"$out/wrk_runs.txt"
    # Requests of this run still in flight when wrk stops hold workers for
    # up to one request time: let them drain, or they queue in front of
    # the next run's first wave (seen as a p99 ~120 ms higher with 50 ms
    # delays and back-to-back runs).
    sleep 1
  done
  local rps p50 p99
  rps=$(awk '{print $1}' "$out/wrk_runs.txt" | median)
  p50=$(awk '{print $2}' "$out/wrk_runs.txt" | median)
  p99=$(awk '{print $3}' "$out/wrk_runs.txt" | median)
  # The front's own view over its last 1,024 requests: the wait for a
  # worker, and the time from request read to response written.
  local m q50 q99 s50 s99
  m=$($py -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:$port/metrics').read().decode())")
  q50=$(awk '/^aggregator_front_queue_wait_seconds\{.*quantile="0.5"/ {printf "%.2f", $2 * 1000}' <<<"$m")
  q99=$(awk '/^aggregator_front_queue_wait_seconds\{.*quantile="0.99"/ {printf "%.2f", $2 * 1000}' <<<"$m")
  s50=$(awk '/^aggregator_front_service_seconds\{.*quantile="0.5"/ {printf "%.2f", $2 * 1000}' <<<"$m")
  s99=$(awk '/^aggregator_front_service_seconds\{.*quantile="0.99"/ {printf "%.2f", $2 * 1000}' <<<"$m")
  printf '{"wrk": "-t2 -c64 -d%ss --timeout 10s", "target": "%s", "config": "%s", "requests_per_s_median": %s, "latency_ms_p50": %s, "latency_ms_p99": %s, "front_queue_wait_ms_p50_p99": [%s, %s], "front_service_ms_p50_p99": [%s, %s]}\n' \
    "$duration" "$target" "$config" "$rps" "$p50" "$p99" "$q50" "$q99" "$s50" "$s99" | tee -a "$results"
}
run_wrk /graph/7 "defaults"
stop_service

# With 50 ms in every backend a request holds, for ~50 ms, a front worker,
# 4 PostgreSQL connections, 4 SQLite threads and 4 HTTP connections, so the
# requests in flight are bounded by min(workers, pg/4, sqlite/4, http/4) and
# throughput by that over 50 ms. With the defaults (4 SQLite threads) that
# is 1 request: 20 requests/s (the pool is the bound, as it should be).
# Two sizings: 16 in flight (16 / 50 ms = 320 requests/s at most), then 32.
start_service --pg-connections 64 --sqlite-threads 64 --http-connections 64
run_wrk "/graph/7?delay_ms=50" "16 in flight: --workers 16 --pg-connections 64 --sqlite-threads 64 --http-connections 64"
stop_service
start_service --workers 64 --pg-connections 128 --sqlite-threads 128 --http-connections 128
run_wrk "/graph/7?delay_ms=50" "32 in flight: --workers 64 --pg-connections 128 --sqlite-threads 128 --http-connections 128"
metrics=$($py -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:$port/metrics').read().decode())")
echo "after the run: $(grep -E '^aggregator_front_responses_total.*5xx' <<<"$metrics"); $(grep -E '^aggregator_portal_errors_total' <<<"$metrics" | tr '\n' ' ')" |
  tee "$out/aggregator.md" >&2
stop_service
