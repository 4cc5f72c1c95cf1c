#!/usr/bin/env bash
# The aggregator (issue #8): GET /graph latency, fan-out vs sequential, with
# ~50 ms of latency in every backend, and throughput under wrk -c64.
#
#   bench/run_aggregator.sh [repeats]        (default 5)
#
# Uses the release build (make build; AGG_BUILD=<dir> to use another) and a
# throwaway PostgreSQL cluster (scripts/pg-cluster.sh) that it stops at the
# end. Nothing is pinned: the aggregator, PostgreSQL, the mock API and the
# load generator share the machine's CPUs, as a real deployment's would.
# Results go to build/bench/aggregator.{jsonl,md}.
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
"$bin" --pg "$conninfo" --port 0 --workers 16 --pg-connections 16 --timeout-ms 5000 >"$log" 2>&1 &
agg_pid=$!
for _ in $(seq 1 100); do grep -q "listening on" "$log" && break; sleep 0.1; done
port=$(sed -n 's|.*listening on http://127.0.0.1:\([0-9]*\).*|\1|p' "$log")
[ -n "$port" ] || { cat "$log" >&2; exit 1; }
echo "aggregator on port $port" >&2

results=$out/aggregator.jsonl
: >"$results"
echo "latency: fan-out vs sequential, 50 ms per backend..." >&2
$py bench/aggregator/latency.py --port "$port" --delay-ms 50 --repeat "$repeats" | tee -a "$results"

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
wrk_rps() {  # url -> requests/s of each run, one per line; fails on any non-2xx
  local url=$1 i outp
  for i in $(seq 1 "$repeats"); do
    outp=$(wrk -t2 -c64 -d"${duration}s" --latency "$url")
    if grep -q "Non-2xx" <<<"$outp"; then echo "wrk: non-2xx answers for $url:" >&2; echo "$outp" >&2; exit 1; fi
    grep -q "Socket errors" <<<"$outp" && { echo "wrk: socket errors for $url:" >&2; echo "$outp" >&2; }
    awk '/Requests\/sec/ {print $2}' <<<"$outp"
    echo "$outp" | awk '/ 50%/ {print "  p50 " $2 > "/dev/stderr"} / 99%/ {print "  p99 " $2 > "/dev/stderr"}'
  done
}
for target in "/graph/7" "/graph/7?delay_ms=50"; do
  echo "throughput: wrk -t2 -c64 -d${duration}s http://127.0.0.1:PORT$target ($repeats runs)..." >&2
  rps=$(wrk_rps "http://127.0.0.1:$port$target" | median)
  printf '{"wrk": "-t2 -c64 -d%ss", "target": "%s", "requests_per_s_median": %s}\n' "$duration" "$target" "$rps" |
    tee -a "$results"
done

metrics=$($py -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:$port/metrics').read().decode())")
echo "after the run: $(grep -E '^aggregator_front_responses_total.*5xx' <<<"$metrics"); $(grep -E '^aggregator_portal_errors_total' <<<"$metrics" | tr '\n' ' ')" |
  tee "$out/aggregator.md" >&2
