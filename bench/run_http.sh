#!/usr/bin/env bash
# HTTP/1.1 benchmarks (issue #6): spindle vs aiohttp (asyncio / uvloop),
# hyper (Tokio) and, for the server, nginx (one process); everything on
# 127.0.0.1 in one run.
#
#   bench/run_http.sh [repeats]     (default 5; run by bench/run_core.sh)
#
# Server: each server pinned to CPU 0, `wrk -t1 -c64 -d5s --latency` pinned to
#   CPU 1, `repeats` times -> op http_server_wrk_c64 (ns_per_op = 1e9 / req/s,
#   p50/p99 from wrk's latency distribution), and the server's user and
#   system CPU time per request (from /proc/PID/stat; ops ..._cpu_user/_sys).
# Client: the hyper server (the fastest, and nobody's own) pinned to CPU 0;
#   each client pinned to CPU 1 makes 20,000 GETs, 64 in flight, `repeats`
#   times -> op http_client_c64. wrk against the same server is the ceiling
#   (impl "wrk": only in the notes, compare.py has no column for it).
# Without cargo/hyper the spindle server is the client benchmark's target
# (said in the notes). Output: build/bench/http.md (bench/compare.py).
. "$(dirname "$0")/common.sh" "$@"
requests=20000
concurrency=64
wrk_seconds=5
server_seconds=$((repeats * (wrk_seconds + 3) + 60))  # each server stops by itself after this at the latest

spindle_bin=build/release/bench/http_bench
hyper_bin=build/peers/hyper/release/hyper_http
[ -x "$spindle_bin" ] || { echo "build first: make build (release preset, bench/ on)" >&2; exit 1; }
command -v wrk >/dev/null || { echo "wrk missing: scripts/install-deps.sh bench" >&2; exit 1; }
detect_peers http

server_pid=""
trap '[ -n "$server_pid" ] && stop_server "$server_pid"' EXIT

# start_server IMPL PORT: the server of IMPL on CPU 0; sets server_pid.
start_server() {
  local impl=$1 port=$2
  case $impl in
    spindle) taskset -c 0 "$spindle_bin" server --port "$port" --seconds "$server_seconds" 2>>"$out/http_servers.log" & ;;
    asyncio) taskset -c 0 $py bench/peers/aiohttp_http.py server --port "$port" --seconds "$server_seconds" 2>>"$out/http_servers.log" & ;;
    uvloop) taskset -c 0 $py bench/peers/aiohttp_http.py server --uvloop --port "$port" --seconds "$server_seconds" 2>>"$out/http_servers.log" & ;;
    tokio) taskset -c 0 "$hyper_bin" server --port "$port" --seconds "$server_seconds" 2>>"$out/http_servers.log" & ;;
    nginx)
      # One process (master_process off: one worker, like every other server here).
      nginx_dir=$(mktemp -d)
      cat >"$nginx_dir/nginx.conf" <<EOF
worker_processes 1;
master_process off;
daemon off;
pid $nginx_dir/nginx.pid;
error_log $nginx_dir/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 100000000;
  keepalive_timeout 60s;
  server { listen 127.0.0.1:$port; location / { default_type text/plain; return 200 "hello"; } }
}
EOF
      taskset -c 0 "$nginx_bin" -p "$nginx_dir" -c "$nginx_dir/nginx.conf" 2>>"$out/http_servers.log" & ;;
  esac
  server_pid=$!
  if ! wait_ready "$port" "$server_pid"; then
    echo "http: the $impl server did not answer on 127.0.0.1:$port" >&2
    stop_server "$server_pid"
    server_pid=""
    return 1
  fi
}

# cpu_ticks PID: "user system" clock ticks the process has used.
cpu_ticks() {
  awk '{print $14 ":" $15}' "/proc/$1/stat"
}

# wrk_json IMPL OP NOTE [TICKS0 TICKS1] < wrk output: one JSON line; with the
# server's CPU ticks before and after, two more: the server's user and system
# CPU time per request (ops <OP>_cpu_user, <OP>_cpu_sys).
wrk_json() {
  $py -c '
import json, os, re, sys
impl, op, note = sys.argv[1:4]
text = sys.stdin.read()
m = re.search(r"Requests/sec:\s+([0-9.]+)", text)
if not m:
    sys.exit("wrk: no Requests/sec in its output:\n" + text)
rps = float(m.group(1))
unit = {"us": 1.0, "ms": 1e3, "s": 1e6}
lat = {p: float(v) * unit[u] for p, v, u in re.findall(r"^\s+(50|99)%\s+([0-9.]+)(us|ms|s)\s*$", text, re.M)}
errors = [l.strip() for l in text.splitlines() if "Socket errors" in l or "Non-2xx" in l]
rec = {"impl": impl, "op": op, "ns_per_op": 1e9 / rps, "p50_us": lat.get("50"), "p99_us": lat.get("99"),
       "note": note + (" (" + "; ".join(errors) + ")" if errors else "")}
print(json.dumps(rec))
m = re.search(r"^\s*([0-9]+) requests in", text, re.M)
if len(sys.argv) >= 6 and m:
    (u0, s0), (u1, s1) = [map(int, t.split(":")) for t in sys.argv[4:6]]
    n, tick_ns = int(m.group(1)), 1e9 / os.sysconf("SC_CLK_TCK")
    for kind, ticks in (("user", u1 - u0), ("sys", s1 - s0)):
        print(json.dumps({"impl": impl, "op": f"{op}_cpu_{kind}", "ns_per_op": ticks * tick_ns / n}))
' "$@"
}

nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
servers=(spindle)
[ -x "$nginx_bin" ] && servers+=(nginx)
[ $have_aiohttp = 1 ] && servers+=(asyncio)
[ $have_uvloop = 1 ] && servers+=(uvloop)
[ $have_hyper = 1 ] && servers+=(tokio)

# ---------------------------------------------------------------- server ---
: >"$out/http_servers.log"
: >"$out/http_server.jsonl"
for impl in "${servers[@]}"; do
  echo "http server under wrk: $impl..." >&2
  port=$(free_port)
  start_server "$impl" "$port" || continue
  case $impl in
    spindle) note="spindle http::server" ;;
    asyncio) note="aiohttp web on asyncio" ;;
    uvloop) note="aiohttp web on uvloop" ;;
    tokio) note="hyper 0.14 server, current_thread" ;;
    nginx) note="nginx $("$nginx_bin" -v 2>&1 | sed 's|.*/||'), one process (master_process off), return 200" ;;
  esac
  for _ in $(seq 1 "$repeats"); do
    ticks0=$(cpu_ticks "$server_pid")
    timeout $((wrk_seconds + 20)) taskset -c 1 wrk -t1 -c$concurrency -d${wrk_seconds}s --latency "http://127.0.0.1:$port/" \
      >"$out/http_wrk.txt"
    ticks1=$(cpu_ticks "$server_pid")
    wrk_json "$impl" "http_server_wrk_c$concurrency" "$note; wrk -t1 -c$concurrency -d${wrk_seconds}s" \
      "$ticks0" "$ticks1" <"$out/http_wrk.txt" >>"$out/http_server.jsonl"
  done
  stop_server "$server_pid"
  server_pid=""
done

# ---------------------------------------------------------------- client ---
: >"$out/http_client.jsonl"
if [ $have_hyper = 1 ]; then
  target=tokio
  target_note="against the hyper server (CPU 0)"
else
  target=spindle
  target_note="against the spindle server (CPU 0): the hyper peer could not be built"
fi
port=$(free_port)
if start_server "$target" "$port"; then
  url="http://127.0.0.1:$port/"
  echo "http client ($target_note): spindle..." >&2
  timeout 600 taskset -c 1 "$spindle_bin" client --url "$url" --requests $requests --concurrency $concurrency \
    --repeat "$repeats" >>"$out/http_client.jsonl"
  if [ $have_aiohttp = 1 ]; then
    echo "http client: aiohttp (asyncio)..." >&2
    timeout 600 taskset -c 1 $py bench/peers/aiohttp_http.py client --url "$url" --requests $requests \
      --concurrency $concurrency --repeat "$repeats" >>"$out/http_client.jsonl"
  fi
  if [ $have_uvloop = 1 ]; then
    echo "http client: aiohttp (uvloop)..." >&2
    timeout 600 taskset -c 1 $py bench/peers/aiohttp_http.py client --uvloop --url "$url" --requests $requests \
      --concurrency $concurrency --repeat "$repeats" >>"$out/http_client.jsonl"
  fi
  if [ $have_hyper = 1 ]; then
    echo "http client: hyper..." >&2
    timeout 600 taskset -c 1 "$hyper_bin" client --url "$url" --requests $requests --concurrency $concurrency \
      --repeat "$repeats" >>"$out/http_client.jsonl"
  fi
  echo "http client: wrk (the ceiling)..." >&2
  : >"$out/http_client_wrk.jsonl.tmp"
  for _ in $(seq 1 "$repeats"); do
    timeout $((wrk_seconds + 20)) taskset -c 1 wrk -t1 -c$concurrency -d${wrk_seconds}s --latency "$url" |
      wrk_json wrk "http_client_c$concurrency" "ceiling" >>"$out/http_client_wrk.jsonl.tmp"
  done
  # compare.py has no wrk column: its median goes into a note.
  $py -c '
import json, statistics, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
ns = statistics.median(r["ns_per_op"] for r in recs)
print(json.dumps({"impl": "wrk", "op": recs[0]["op"], "ns_per_op": ns,
                  "note": f"the ceiling, wrk -t1 -c64 -d5s against the same server: median {ns:,.0f} ns per request = {1e9 / ns:,.0f} req/s over {len(recs)} runs"}))
' "$out/http_client_wrk.jsonl.tmp" >>"$out/http_client.jsonl"
  rm -f "$out/http_client_wrk.jsonl.tmp"
  stop_server "$server_pid"
  server_pid=""
fi
rm -f "$out/http_wrk.txt"
echo
{
  echo "http_server_wrk_c$concurrency: each server on CPU 0, wrk on CPU 1 (_cpu_user/_cpu_sys: the server's CPU time per request). http_client_c$concurrency: $requests GETs, $concurrency in flight, each client on CPU 1, $target_note."
  echo
  $py bench/compare.py "$out/http_server.jsonl" "$out/http_client.jsonl"
} | tee "$out/http.md"
