#!/usr/bin/env bash
# The aggregator binary end to end: start it on an ephemeral port against
# the fixture's cluster, GET /graph/7 and /metrics over bash's /dev/tcp,
# then SIGTERM: it must stop gracefully and exit 0.
#   smoke.sh AGGREGATOR_BINARY CLUSTER_SCRIPT STATE_FILE
set -euo pipefail
bin=$1 cluster=$2 state=$3
work=$(mktemp -d)
trap 'kill -KILL $pid 2>/dev/null || true; rm -rf "$work"' EXIT
"$bin" --pg "$("$cluster" conninfo "$state")" --port 0 --workers 4 >"$work/out" 2>&1 &
pid=$!
for _ in $(seq 1 100); do grep -q "listening on" "$work/out" && break; sleep 0.1; done
port=$(sed -n 's|.*listening on http://127.0.0.1:\([0-9]*\).*|\1|p' "$work/out")
[ -n "$port" ] || { cat "$work/out"; exit 1; }

get() {  # HTTP/1.0: the server closes the connection after the answer
  exec 3<>"/dev/tcp/127.0.0.1/$port"
  printf 'GET %s HTTP/1.0\r\n\r\n' "$1" >&3
  timeout 30 cat <&3
  exec 3<&-
}
graph=$(get /graph/7)
grep -q '^HTTP/1.1 200' <<<"$graph" || { echo "GET /graph/7: $graph"; exit 1; }
grep -q '"ok":12' <<<"$graph" || { echo "incomplete: $graph"; exit 1; }
grep -q '"name":"user 7"' <<<"$graph" || { echo "wrong data: $graph"; exit 1; }
metrics=$(get /metrics)
grep -q '^aggregator_graph_requests_total{mode="fan_out"} 1$' <<<"$metrics" || { echo "$metrics"; exit 1; }

kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
cat "$work/out"
[ "$rc" -eq 0 ] || { echo "exit status $rc after SIGTERM"; exit 1; }
grep -q "served 2 requests (0 5xx)" "$work/out"
echo "smoke: ok"
