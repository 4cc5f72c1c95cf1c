#!/usr/bin/env bash
# `spindle fetch` against the well-known ways of fetching a URL list (issue
# #7): Python asyncio + aiohttp (on asyncio and on uvloop), `curl --parallel`
# and a Tokio/hyper client, over the same URL list file against the same
# loopback server in one run; wrk as the ceiling. Everything on 127.0.0.1.
#
#   [SCENARIOS="delayed keepalive multi"] [SPINDLE_BIN=path] bench/run_fetch.sh [repeats] [plot.png]
#       repeats: default 5 (run by bench/run_core.sh); plot: default
#       build/bench/fetch_bench.png (docs/img/fetch_bench.png for the docs).
#       SCENARIOS: which of the scenarios below to run (space- or
#       comma-separated; default all), e.g. `SCENARIOS=multi bench/run_fetch.sh 3`.
#       SPINDLE_BIN: the spindle binary (default build/release/apps/spindle/spindle).
#
# Every client is a whole command, timed by its wall time (start to exit,
# process start-up included: what a user waits for), pinned to CPU 1; the
# server is pinned to CPU 0. Each command is run once untimed (warm caches),
# then `repeats` times, the clients taking turns; medians.
#  1. delayed: the spindle mock API (`spindle serve-mock`) answers
#     GET /items/{id}?delay_ms=50 after 50 ms; 200 such URLs, concurrency
#     200. The physical limit is one delay (50 ms). spindle fetch with
#     --concurrency 1 is run once for reference (the sequential time).
#  2. keepalive: 20,000 GETs of the hyper server's GET / ("hello") at
#     concurrency 64 (one keep-alive connection per slot); wrk -t1 -c64 -d5s
#     against the same server is the ceiling (ns per request = 1e9 / req/s).
#     Without cargo/hyper, the mock API's GET / is the server (said in the
#     notes).
#  3. multi: one pool shared across origins (issue: a list round-robin over
#     several hosts closed and reopened a connection per request). One nginx
#     (a single process on CPU 0, config generated in a temp dir) listens on
#     39 loopback ports, each port an origin. `spindle fetch` at DEFAULT
#     settings (no --concurrency/--per-host; the per-origin limit is then
#     --concurrency, 64) over: 30,000 URLs to one origin; 3 origins x 10,000
#     round-robin (u1,u2,u3,u1,...); 39 origins x 5,000 round-robin. Each
#     run's connections come from the summary's `connections opened=N` line.
#     Checks (PASS/FAIL): ok = number of URLs in every run; connections <=
#     origins x 64 in every run; the 3-origin median wall time <= 1.2 x the
#     single-origin median. `curl --parallel --parallel-max 64` is run once
#     on the 39-origin list for its connection count (the sum of
#     %{num_connects}). Without nginx, 39 `spindle serve-mock` processes
#     (all on CPU 0) stand in (said in the notes).
# Every client writes one JSON line per result (curl: -w, one line per
# transfer) to /dev/null; every run is checked (exit 0, and N results ok).
# Output: build/bench/fetch.jsonl (one line per timed run, one per failed
# run with its "error", one per multi-origin check), fetch.md (the tables,
# the ratios and the checks, for the scenarios run) and the plot
# (python3-matplotlib; skipped if absent or if delayed/keepalive were not run).
. "$(dirname "$0")/common.sh" "$@"
plot=${2:-$out/fetch_bench.png}
mkdir -p "$(dirname "$plot")"
delay_ms=50
delayed_items=200
delayed_concurrency=200
requests=20000
concurrency=64
wrk_seconds=5
multi_origins=39         # the big multi-origin list: 39 origins x 5,000 URLs, round-robin
multi_per_origin=5000
multi_small=3            # the small one: 3 origins x 10,000, against 30,000 URLs to one origin
multi_requests=30000
multi_time_ratio=1.2     # the 3-origin wall time may be at most this x the single-origin one
run_timeout=120  # seconds: any one command is killed after this
server_seconds=$((repeats * 120 + 180))  # each server stops by itself after this at the latest

scenarios=" ${SCENARIOS:-delayed keepalive multi} "
scenarios=${scenarios//,/ }
for sc in $scenarios; do
  case $sc in delayed | keepalive | multi) ;; *) echo "fetch: unknown scenario '$sc' in SCENARIOS (delayed, keepalive, multi)" >&2; exit 2 ;; esac
done
want() { [[ $scenarios == *" $1 "* ]]; }

spindle_bin=${SPINDLE_BIN:-build/release/apps/spindle/spindle}
hyper_bin=build/peers/hyper/release/hyper_http
[ -x "$spindle_bin" ] || { echo "build first: cmake --build build/release --target spindle_cli (or set SPINDLE_BIN)" >&2; exit 1; }
if want delayed || want keepalive; then
  command -v wrk >/dev/null || { echo "wrk missing: scripts/install-deps.sh bench" >&2; exit 1; }
  command -v curl >/dev/null || { echo "curl missing" >&2; exit 1; }
  detect_peers fetch
else
  have_aiohttp=0 have_uvloop=0 have_hyper=0
fi
# The per-origin limit at default settings: --per-host defaults to
# --concurrency, whose default the help text states.
per_origin_limit=$("$spindle_bin" fetch --help | sed -n 's/.*--concurrency .*(default \([0-9][0-9]*\)).*/\1/p')
per_origin_limit=${per_origin_limit:-64}

server_pid=""
multi_pids=()  # the multi-origin servers (one nginx, or one mock per origin)
nginx_dir=""   # nginx's config, pid, logs and temp paths
cleanup() {
  [ -n "$server_pid" ] && stop_server "$server_pid"
  local p
  for p in "${multi_pids[@]}"; do stop_server "$p"; done
  [ -n "$nginx_dir" ] && rm -rf "$nginx_dir"
  return 0
}
trap cleanup EXIT

# start_server IMPL PORT: the server (mock: spindle serve-mock; tokio: the
# hyper server) on CPU 0; sets server_pid.
start_server() {
  local impl=$1 port=$2
  case $impl in
    mock) taskset -c 0 "$spindle_bin" serve-mock --port "$port" --seconds "$server_seconds" \
      >/dev/null 2>>"$out/fetch_servers.log" & ;;
    tokio) taskset -c 0 "$hyper_bin" server --port "$port" --seconds "$server_seconds" 2>>"$out/fetch_servers.log" & ;;
  esac
  server_pid=$!
  if ! wait_ready "$port" "$server_pid"; then
    echo "fetch: the $impl server did not answer on 127.0.0.1:$port" >&2
    stop_server "$server_pid"
    server_pid=""
    return 1
  fi
}

# timed IMPL OP N NOTE -- CMD...: runs CMD once (pinned to CPU 1 by the
# caller's taskset, which the command inherits; killed after run_timeout s),
# checks it (exit 0; "ok=N" in its summary on stderr if it prints one, and a
# spindle client must; with --count-200, N lines "200" on its stdout, curl's
# -w, whose second field, if any, is %{num_connects}) and prints one JSON
# line: ns_per_op = wall / N, wall_s, self_s (the client's own elapsed_s from
# its summary, if any), ok/failed, connections/reused (from spindle's
# "connections opened=N reused=M" line, printed without -q; curl: the sum of
# num_connects). A failed check prints the reason on stderr and a JSON line
# with only impl, op, error and note (which the medians skip).
# Python's start-up is outside the timed region; the fork+exec is inside.
timer='
import json, re, subprocess, sys, time
args = sys.argv[1:]
count_200 = args[0] == "--count-200"
if count_200:
    args = args[1:]
impl, op, n, note, timeout = args[0], args[1], int(args[2]), args[3], float(args[4])
cmd = args[args.index("--") + 1:]
def fail(msg):
    print(json.dumps({"impl": impl, "op": op, "error": msg, "note": note}))
    sys.exit(f"fetch: {impl} {op}: {msg}")
t0 = time.perf_counter()
try:
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
except subprocess.TimeoutExpired:
    fail(f"killed after {timeout:.0f} s")
wall = time.perf_counter() - t0
err = p.stderr.decode(errors="replace")
if p.returncode != 0:
    fail(f"exit {p.returncode}: {err.strip()[-500:]}")
rec = {"impl": impl, "op": op, "ns_per_op": wall * 1e9 / n, "wall_s": wall, "self_s": None}
m = re.search(r"ok=(\d+) failed=(\d+) elapsed_s=([0-9.]+)", err)
if m:
    rec.update(ok=int(m.group(1)), failed=int(m.group(2)), self_s=float(m.group(3)))
    if rec["ok"] != n or rec["failed"] != 0:
        fail(f"{m.group(0)}, expected ok={n}")
elif impl.startswith("spindle"):
    fail("no summary line (ok=... failed=... elapsed_s=...) on stderr")
c = re.search(r"connections opened=(\d+) reused=(\d+)", err)
if c:
    rec.update(connections=int(c.group(1)), reused=int(c.group(2)))
if count_200:
    lines = [l.split() for l in p.stdout.decode(errors="replace").splitlines() if l.strip()]
    got = sum(1 for l in lines if l[0] == "200")
    if got != n:
        fail(f"{got} transfers answered 200, expected {n}")
    if lines and all(len(l) > 1 for l in lines):
        rec["connections"] = sum(int(l[1]) for l in lines)
rec["note"] = note
print(json.dumps(rec))
'

# run_client IMPL OP N URLS CONCURRENCY [--warmup]: one run of client IMPL
# over the URL list file URLS; appends its JSON line to $out/fetch.jsonl
# (with --warmup: to nothing). spindle_defaults ignores CONCURRENCY.
run_client() {
  local impl=$1 op=$2 n=$3 urls=$4 c=$5 dest=$out/fetch.jsonl
  [ "${6:-}" = --warmup ] && dest=/dev/null
  local -a cmd
  local count=() note
  case $impl in
    spindle)
      cmd=("$spindle_bin" fetch --urls "$urls" --concurrency "$c" --out /dev/null --no-progress -q)
      note="spindle fetch --concurrency $c (default --retries 2)" ;;
    spindle_r0)
      cmd=("$spindle_bin" fetch --urls "$urls" --concurrency "$c" --retries 0 --out /dev/null --no-progress -q)
      note="spindle fetch --concurrency $c --retries 0 (no retry policy per item)" ;;
    spindle_defaults)
      # No -q: with it only the summary's first line is printed, not the
      # connections line.
      cmd=("$spindle_bin" fetch --urls "$urls" --out /dev/null --no-progress)
      note="spindle fetch at default settings (no --concurrency/--per-host: --concurrency $per_origin_limit, per-origin limit = --concurrency; --retries 2), --no-progress, no -q" ;;
    asyncio | uvloop)
      cmd=($py bench/peers/aiohttp_fetch.py --urls "$urls" --concurrency "$c" --out /dev/null)
      [ "$impl" = uvloop ] && cmd+=(--uvloop)
      note="aiohttp $($py -c 'import aiohttp; print(aiohttp.__version__)') on $impl: Semaphore($c) + gather, TCPConnector(limit=$c)" ;;
    curl | curl_conns)
      # The same list as a config file: url + output per line of the list.
      awk '!/^[[:space:]]*(#|$)/ { printf "url = \"%s\"\noutput = \"/dev/null\"\n", $1 }' "$urls" >"$urls.curl"
      local w='%{http_code}\n'
      [ "$impl" = curl_conns ] && w='%{http_code} %{num_connects}\n'
      cmd=(curl -sS --fail --parallel --parallel-immediate --parallel-max "$c" -w "$w" -K "$urls.curl")
      count=(--count-200)
      note="$(curl --version | head -1 | cut -d' ' -f1-2) --parallel --parallel-immediate --parallel-max $c -K (one url + output = /dev/null per line), -w one line per transfer"
      [ "$impl" = curl_conns ] && note="$note (with %{num_connects}, summed: the connections opened)" ;;
    tokio)
      cmd=("$hyper_bin" fetch --urls "$urls" --concurrency "$c" --out /dev/null)
      note="hyper 0.14 client on a Tokio current_thread runtime, $c tasks sharing the list (bench/peers/hyper_http fetch)" ;;
  esac
  taskset -c 1 $py -c "$timer" "${count[@]}" "$impl" "$op" "$n" "$note" "$run_timeout" -- "${cmd[@]}" >>"$dest" || true
}

# every_client OP N URLS CONCURRENCY [--warmup]: one run of each client.
every_client() {
  local impl
  for impl in "${clients[@]}"; do
    [ "${5:-}" = --warmup ] && echo "fetch $1: $impl (warm-up)..." >&2
    run_client "$impl" "$@"
  done
}

clients=(spindle spindle_r0)
[ $have_aiohttp = 1 ] && clients+=(asyncio)
[ $have_uvloop = 1 ] && clients+=(uvloop)
clients+=(curl)
[ $have_hyper = 1 ] && clients+=(tokio)

: >"$out/fetch_servers.log"
: >"$out/fetch.jsonl"
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
spindle_id() { echo "$(sha256sum "$spindle_bin" | cut -c1-12), built $(date -u -r "$spindle_bin" '+%F %T') UTC"; }
spindle_start=$(spindle_id)

# --------------------------------------------------------------- delayed ---
if want delayed && port=$(free_port) && start_server mock "$port"; then
  delayed_urls=$out/fetch_delayed_urls.txt
  for i in $(seq 0 $((delayed_items - 1))); do
    echo "http://127.0.0.1:$port/items/$i?delay_ms=$delay_ms"
  done >"$delayed_urls"
  op=fetch_delayed_${delayed_items}
  every_client "$op" "$delayed_items" "$delayed_urls" "$delayed_concurrency" --warmup
  for r in $(seq 1 "$repeats"); do
    echo "fetch delayed: round $r of $repeats..." >&2
    every_client "$op" "$delayed_items" "$delayed_urls" "$delayed_concurrency"
  done
  echo "fetch delayed: spindle, sequential (--concurrency 1, once)..." >&2
  run_client spindle "${op}_sequential" "$delayed_items" "$delayed_urls" 1
  stop_server "$server_pid"
  server_pid=""
fi

# ------------------------------------------------------------- keepalive ---
if [ $have_hyper = 1 ]; then
  target=tokio
  target_note="the hyper server (GET / -> hello), CPU 0"
else
  target=mock
  target_note="the spindle mock API's GET / (hello), CPU 0: the hyper peer could not be built"
fi
if want keepalive && port=$(free_port) && start_server "$target" "$port"; then
  url="http://127.0.0.1:$port/"
  keepalive_urls=$out/fetch_keepalive_urls.txt
  $py -c 'import sys; sys.stdout.write((sys.argv[1] + "\n") * int(sys.argv[2]))' "$url" "$requests" >"$keepalive_urls"
  op=fetch_keepalive_c$concurrency
  every_client "$op" "$requests" "$keepalive_urls" "$concurrency" --warmup
  for r in $(seq 1 "$repeats"); do
    echo "fetch keep-alive: round $r of $repeats (+ wrk ${wrk_seconds}s)..." >&2
    every_client "$op" "$requests" "$keepalive_urls" "$concurrency"
    timeout $((wrk_seconds + 20)) taskset -c 1 wrk -t1 -c$concurrency -d${wrk_seconds}s "$url" |
      $py -c '
import json, re, sys
text = sys.stdin.read()
m = re.search(r"Requests/sec:\s+([0-9.]+)", text)
if not m:
    sys.exit("fetch: wrk: no Requests/sec in its output:\n" + text)
errors = [l.strip() for l in text.splitlines() if "Socket errors" in l or "Non-2xx" in l]
print(json.dumps({"impl": "wrk", "op": sys.argv[1], "ns_per_op": 1e9 / float(m.group(1)),
                  "note": sys.argv[2] + (" (" + "; ".join(errors) + ")" if errors else "")}))
' "$op" "the ceiling: wrk -t1 -c$concurrency -d${wrk_seconds}s against the same server" >>"$out/fetch.jsonl" || true
  done
  stop_server "$server_pid"
  server_pid=""
fi

# ---------------------------------------------------------- multi-origin ---
# free_ports N: N distinct free loopback ports (bound all at once, so that no
# two are the same).
free_ports() {
  $py -c 'import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()' "$1"
}

# all_ready PORT...: every port answers GET / with "hello".
all_ready() {
  $py -c 'import sys, urllib.request as u
for p in sys.argv[1:]:
    if u.urlopen(f"http://127.0.0.1:{p}/", timeout=2).read() != b"hello":
        sys.exit(f"fetch: 127.0.0.1:{p} did not answer hello")' "$@"
}

# start_nginx PORT...: one nginx listening on every PORT, a single process
# (master_process off) on CPU 0; its config, pid, error log and temp paths in
# a temp dir (nothing root-owned is touched); `timeout` stops it after
# server_seconds at the latest. Sets multi_pids, nginx_dir, multi_note.
start_nginx() {
  local nginx p
  nginx=$(PATH=$PATH:/usr/sbin command -v nginx) || return 1
  nginx_dir=$(mktemp -d "${TMPDIR:-/tmp}/spindle-fetch-nginx.XXXXXX")
  mkdir "$nginx_dir/tmp"
  {
    echo "daemon off;"
    echo "master_process off;"
    echo "worker_processes 1;"
    echo "worker_rlimit_nofile 8192;"
    echo "pid $nginx_dir/nginx.pid;"
    echo "error_log $nginx_dir/error.log warn;"
    echo "events { worker_connections 4096; }"
    echo "http {"
    echo "  access_log off;"
    for p in client_body proxy fastcgi uwsgi scgi; do echo "  ${p}_temp_path $nginx_dir/tmp/$p;"; done
    echo "  keepalive_requests 100000;"
    echo "  keepalive_timeout 60s;"
    echo "  server {"
    for p in "$@"; do echo "    listen 127.0.0.1:$p;"; done
    echo '    location / { return 200 "hello"; }'
    echo "  }"
    echo "}"
  } >"$nginx_dir/nginx.conf"
  timeout "$server_seconds" taskset -c 0 "$nginx" -p "$nginx_dir/" -c "$nginx_dir/nginx.conf" -e "$nginx_dir/error.log" \
    2>>"$out/fetch_servers.log" &
  multi_pids=($!)
  wait_ready "$1" "${multi_pids[0]}" && all_ready "$@" || return 1
  multi_note="one nginx $("$nginx" -v 2>&1 | sed 's|.*nginx/||') (a single process: master_process off, on CPU 0) listening on $# loopback ports, one origin each: return 200 \"hello\", keepalive_requests 100000, keepalive_timeout 60s, access_log off"
}

# start_mocks PORT...: the fallback without nginx: one spindle serve-mock per
# port, all on CPU 0. Sets multi_pids.
start_mocks() {
  local p
  for p in "$@"; do
    taskset -c 0 "$spindle_bin" serve-mock --port "$p" --seconds "$server_seconds" >/dev/null 2>>"$out/fetch_servers.log" &
    multi_pids+=($!)
  done
  local i=0
  for p in "$@"; do
    wait_ready "$p" "${multi_pids[i]}" || return 1
    i=$((i + 1))
  done
}

stop_multi_servers() {
  local p
  for p in "${multi_pids[@]}"; do stop_server "$p"; done
  multi_pids=()
  if [ -n "$nginx_dir" ]; then
    [ -s "$nginx_dir/error.log" ] && sed 's/^/nginx: /' "$nginx_dir/error.log" >>"$out/fetch_servers.log"
    rm -rf "$nginx_dir"
    nginx_dir=""
  fi
}

# start_multi_servers PORT...: nginx, else the mocks (and multi_note says so).
start_multi_servers() {
  if start_nginx "$@"; then
    return 0
  fi
  if [ -n "$nginx_dir" ]; then
    echo "fetch multi-origin: nginx did not start (see $out/fetch_servers.log); falling back to spindle serve-mock" >&2
    stop_multi_servers
    multi_note="nginx did not start (see fetch_servers.log), so "
  else
    echo "fetch multi-origin: nginx is not installed (scripts/install-deps.sh bench); falling back to spindle serve-mock" >&2
    multi_note="nginx is not installed, so "
  fi
  multi_note="$multi_note$# spindle serve-mock processes (one per loopback port, one origin each, all on CPU 0) instead of the reference nginx"
  if ! start_mocks "$@"; then
    echo "fetch multi-origin: the mock servers did not answer; skipping the scenario" >&2
    stop_multi_servers
    return 1
  fi
}

multi_note=""
if want multi; then
  read -r -a multi_ports <<<"$(free_ports "$multi_origins")"
  if start_multi_servers "${multi_ports[@]}"; then
    multi_base=$out/fetch_multi
    # round_robin K ROUNDS: ROUNDS rounds of one URL per origin over the
    # first K ports (u1, u2, ..., uK, u1, ...).
    round_robin() {
      $py -c 'import sys
sys.stdout.write("".join(f"http://127.0.0.1:{p}/\n" for p in sys.argv[2:]) * int(sys.argv[1]))' "$2" "${multi_ports[@]:0:$1}"
    }
    round_robin 1 "$multi_requests" >"${multi_base}1_urls.txt"
    round_robin "$multi_small" $((multi_requests / multi_small)) >"${multi_base}${multi_small}_urls.txt"
    round_robin "$multi_origins" "$multi_per_origin" >"${multi_base}${multi_origins}_urls.txt"
    # multi_round [--warmup]: one default-settings spindle fetch per list.
    multi_round() {
      local k n
      for k in 1 "$multi_small" "$multi_origins"; do
        n=$(wc -l <"${multi_base}${k}_urls.txt")
        [ "${1:-}" = --warmup ] && echo "fetch multi-origin: $k origin(s), $n URLs (warm-up)..." >&2
        run_client spindle_defaults "fetch_origins${k}_$n" "$n" "${multi_base}${k}_urls.txt" - "$@"
      done
    }
    multi_round --warmup
    for r in $(seq 1 "$repeats"); do
      echo "fetch multi-origin: round $r of $repeats..." >&2
      multi_round
    done
    if command -v curl >/dev/null; then
      n=$(wc -l <"${multi_base}${multi_origins}_urls.txt")
      echo "fetch multi-origin: curl --parallel-max $concurrency on the $multi_origins-origin list (once, for its connections)..." >&2
      run_client curl_conns "fetch_origins${multi_origins}_$n" "$n" "${multi_base}${multi_origins}_urls.txt" "$concurrency"
    fi
    stop_multi_servers
  fi
fi

# --------------------------------------------------------------- summary ---
spindle_note="spindle binary ($spindle_bin): sha256 $spindle_start; source: $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- src include apps 2>/dev/null || echo ' + uncommitted changes in src/include/apps')"
if [ "$(spindle_id)" != "$spindle_start" ]; then
  spindle_note="$spindle_note. **WARNING: the spindle binary changed during the run (now $(spindle_id)): the numbers mix two builds**"
  echo "fetch: the spindle binary changed during the run" >&2
fi
machine="$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1), $(nproc) CPUs"
echo
$py - "$out/fetch.jsonl" "$plot" "$delay_ms" "$delayed_items" "$delayed_concurrency" "$requests" "$concurrency" \
  "$target_note" "$repeats" "$load_start" "$(cut -d' ' -f1-3 /proc/loadavg)" "$spindle_note" "$machine" \
  "$per_origin_limit" "$multi_small" "$multi_origins" "$multi_requests" "$multi_per_origin" "$multi_time_ratio" \
  "$multi_note" <<'EOF' | tee "$out/fetch.md"
import json, statistics, sys
from collections import defaultdict

(path, plot, delay_ms, items, dconc, requests, conc, target_note, repeats, load0, load1, spindle_note, machine,
 per_origin, m_small, m_origins, m_requests, m_per_origin, m_ratio, multi_note) = sys.argv[1:]
runs = defaultdict(list)
self_s = defaultdict(list)
conns = defaultdict(list)
reused = defaultdict(list)
errors = defaultdict(list)
notes = {}
for line in open(path):
    if line.strip():
        r = json.loads(line)
        key = (r["impl"], r["op"])
        notes[r["impl"]] = r.get("note", "")
        if "error" in r:
            errors[key].append(r["error"])
            continue
        runs[key].append(r["ns_per_op"])
        if r.get("self_s") is not None:
            self_s[key].append(r["self_s"])
        if r.get("connections") is not None:
            conns[key].append(r["connections"])
        if r.get("reused") is not None:
            reused[key].append(r["reused"])

names = {"spindle": "spindle fetch", "spindle_r0": "spindle fetch --retries 0", "asyncio": "aiohttp (asyncio)",
         "uvloop": "aiohttp (uvloop)", "curl": "curl --parallel", "tokio": "hyper (tokio)", "wrk": "wrk (ceiling)",
         "spindle_defaults": "spindle fetch (defaults)", "curl_conns": "curl --parallel (connections counted)"}
order = ["spindle", "spindle_r0", "asyncio", "uvloop", "curl", "tokio", "wrk", "spindle_defaults", "curl_conns"]
delayed_op, keep_op = f"fetch_delayed_{items}", f"fetch_keepalive_c{conc}"
n_delayed, n_keep = int(items), int(requests)


def med(impl, op):
    v = runs.get((impl, op))
    return statistics.median(v) if v else None


def med_self(impl, op):
    v = self_s.get((impl, op))
    return statistics.median(v) if v else None


def fmt(x, digits=0):
    return "" if x is None else f"{x:,.{digits}f}"


have_delayed = any(op == delayed_op for _, op in runs)
have_keep = any(op == keep_op for _, op in runs)
print(f"Medians of {repeats} runs; each client is a whole command (wall time, start-up included) on CPU 1, "
      f"the server on CPU 0. \"own\": the client's own elapsed time from its summary line "
      f"(first request to last result). Machine: {machine}. Load average (1, 5, 15 min) at the start: {load0}; "
      f"at the end: {load1}. The {spindle_note}.")
print()
for (impl, op), errs in sorted(errors.items()):
    print(f"- **{len(errs)} failed run(s)** of {names.get(impl, impl)} on {op}: {errs[0][:300]}")
if errors:
    print()
if have_delayed:
    print(f"**{items} items, each answered after {delay_ms} ms, concurrency {dconc}** "
          f"(spindle serve-mock; physical limit: one delay, {delay_ms} ms)")
    print()
    print("| client | wall ms | x the 50 ms limit | own ms | vs spindle fetch (wall) |")
    print("|---|---:|---:|---:|---:|")
    sp_d = med("spindle", delayed_op)
    for impl in order:
        ns = med(impl, delayed_op)
        if ns is None:
            continue
        wall_ms = ns * n_delayed / 1e6
        own = med_self(impl, delayed_op)
        ratio = f"{ns / sp_d:.2f}x" if sp_d and impl != "spindle" else ""
        print(f"| {names[impl]} | {wall_ms:,.1f} | {wall_ms / float(delay_ms):.2f}x | "
              f"{fmt(own * 1e3 if own else None, 1)} | {ratio} |")
    seq = med("spindle", delayed_op + "_sequential")
    if seq is not None:
        print(f"| spindle fetch --concurrency 1 (sequential, once) | {seq * n_delayed / 1e6:,.1f} | "
              f"{seq * n_delayed / 1e6 / float(delay_ms):.2f}x | | |")
    print()
if have_keep:
    print(f"**{requests} keep-alive GETs, concurrency {conc}** (against {target_note})")
    print()
    print("| client | ns per request | requests/s | own requests/s | spindle fetch is (x faster) | vs wrk |")
    print("|---|---:|---:|---:|---:|---:|")
    sp_k = med("spindle", keep_op)
    wrk = med("wrk", keep_op)
    for impl in order:
        ns = med(impl, keep_op)
        if ns is None:
            continue
        own = med_self(impl, keep_op)
        ratio = f"{ns / sp_k:.2f}x" if sp_k and impl not in ("spindle", "wrk") else ""
        vs_wrk = f"{wrk / ns:.2f}x" if wrk and impl != "wrk" else ""
        print(f"| {names[impl]} | {ns:,.0f} | {1e9 / ns:,.0f} | {fmt(n_keep / own if own else None)} | {ratio} | {vs_wrk} |")
    print()
    print("Targets (issue #7), from the keep-alive medians:")
    def target(label, ok, text):
        print(f"- {label}: {'met' if ok else '**not met**'} ({text})")
    if sp_k:
        for impl, want, label in (("asyncio", 5.0, "at least 5x aiohttp (asyncio)"),
                                  ("uvloop", 5.0, "at least 5x aiohttp (uvloop)"),
                                  ("curl", 1.0, "ahead of curl --parallel"),
                                  ("tokio", 1.0, "ahead of hyper (tokio)")):
            ns = med(impl, keep_op)
            if ns is not None:
                target(label, ns / sp_k >= want, f"{ns / sp_k:.2f}x")
        if wrk:
            target("at least 0.8x wrk", wrk / sp_k >= 0.8, f"{wrk / sp_k:.2f}x")
    print()

# ---- multi-origin: the table, then the checks (also appended to the jsonl).
per_origin, m_small, m_origins = int(per_origin), int(m_small), int(m_origins)
m_lists = [(1, int(m_requests)), (m_small, int(m_requests)), (m_origins, m_origins * int(m_per_origin))]
m_op = {k: f"fetch_origins{k}_{n}" for k, n in m_lists}
if multi_note:
    checks = []
    def check(k, what, ok, value, limit, text):
        checks.append({"impl": "check", "op": m_op[k], "check": what, "result": "PASS" if ok else "FAIL",
                       "value": value, "limit": limit, "text": text})
    print(f"**multi-origin: one pool across origins** (spindle fetch at default settings: per-origin limit = "
          f"--concurrency = {per_origin}; against {multi_note}). Connections: from the summary's "
          f"`connections opened=N` line of each run.")
    print()
    print(f"| list | URLs | wall ms | own ms | wall per URL vs 1 origin | connections opened (median; max) | "
          f"limit: origins x {per_origin} | reused (median) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    single = med("spindle_defaults", m_op[1])
    for k, n in m_lists:
        key = ("spindle_defaults", m_op[k])
        ns = med(*key)
        own = med_self(*key)
        c = conns.get(key, [])
        label = "1 origin" if k == 1 else f"{k} origins, round-robin"
        vs = f"{ns / single:.2f}x" if ns and single and k != 1 else ""
        print(f"| {label} | {n:,} | {fmt(ns * n / 1e6 if ns else None, 1)} | {fmt(own * 1e3 if own else None, 1)} | "
              f"{vs} | {fmt(statistics.median(c)) if c else ''}{'; ' + fmt(max(c)) if c else ''} | "
              f"{k * per_origin:,} | {fmt(statistics.median(reused[key])) if reused.get(key) else ''} |")
    curl_key = ("curl_conns", m_op[m_origins])
    if curl_key in runs:
        c = conns.get(curl_key, [])
        print(f"| curl --parallel --parallel-max {conc}, {m_origins} origins (once) | {m_lists[2][1]:,} | "
              f"{fmt(runs[curl_key][0] * m_lists[2][1] / 1e6, 1)} | | | {fmt(c[0]) if c else '?'} | | |")
    print()
    for k, n in m_lists:
        key = ("spindle_defaults", m_op[k])
        good, bad = len(runs.get(key, [])), len(errors.get(key, []))
        label = "1 origin" if k == 1 else f"{k} origins"
        check(k, "ok", good == int(repeats) and bad == 0, good, int(repeats),
              f"{label}: ok = {n:,} (and failed = 0) in every run: {good} of {repeats} runs"
              + (f"; {bad} failed: {errors[key][0][:200]}" if bad else ""))
        c = conns.get(key, [])
        limit = k * per_origin
        check(k, "connections", bool(c) and len(c) == good and good > 0 and max(c) <= limit, max(c) if c else None, limit,
              f"{label}: connections opened <= {k} x {per_origin} = {limit:,} in every run: "
              + (f"max {max(c):,}, median {statistics.median(c):,.0f}" if c else "no connections line read"))
    multi = med("spindle_defaults", m_op[m_small])
    ratio = float(m_ratio)
    def walls(k):
        n = dict(m_lists)[k]
        return ", ".join(f"{ns * n / 1e6:,.0f}" for ns in runs.get(("spindle_defaults", m_op[k]), []))
    check(m_small, "time", bool(single and multi) and multi <= ratio * single,
          multi / single if single and multi else None, ratio,
          f"{m_small} origins: median wall <= {ratio} x the single-origin median: "
          + (f"{multi * m_lists[1][1] / 1e6:,.1f} ms vs {single * m_lists[0][1] / 1e6:,.1f} ms = {multi / single:.2f}x "
             f"(each run, in turn: {walls(m_small)} ms vs {walls(1)} ms)"
             if single and multi else "missing runs"))
    print("Checks (the issue's requirements; also in fetch.jsonl as \"impl\": \"check\" lines):")
    for c in checks:
        print(f"- {'PASS' if c['result'] == 'PASS' else '**FAIL**'} {c['text']}")
    print()
    with open(path, "a") as f:
        for c in checks:
            f.write(json.dumps(c) + "\n")

print("Clients:")
for impl in order:
    if impl in notes:
        print(f"- {names[impl]}: {notes[impl]}")

if not (have_delayed and have_keep):
    print("fetch: the delayed and keepalive scenarios were not both run; no plot", file=sys.stderr)
    sys.exit(0)
try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    print("fetch: no matplotlib (python3-matplotlib: scripts/install-deps.sh bench); no plot", file=sys.stderr)
    sys.exit(0)
fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.8))
impls = [i for i in order if i != "wrk" and med(i, delayed_op) is not None]
vals = [med(i, delayed_op) * n_delayed / 1e6 for i in impls]
bars = a1.bar([names[i].replace(" ", "\n", 1) for i in impls], vals, color=["#2a6f97" if i.startswith("spindle") else "#999999" for i in impls])
a1.bar_label(bars, fmt="%.0f", fontsize=8)
a1.axhline(float(delay_ms), color="#c0392b", linestyle="--", label=f"physical limit: one delay ({delay_ms} ms)")
a1.set_ylabel("wall time, ms (lower is better)")
a1.set_title(f"{items} items, each after {delay_ms} ms, concurrency {dconc}")
a1.set_ylim(0, max(vals) * 1.2)
a1.legend(loc="upper right", fontsize=8)
a1.tick_params(axis="x", labelsize=8)
impls = [i for i in order if i != "wrk" and med(i, keep_op) is not None]
vals = [1e9 / med(i, keep_op) for i in impls]
bars = a2.bar([names[i].replace(" ", "\n", 1) for i in impls], vals, color=["#2a6f97" if i.startswith("spindle") else "#999999" for i in impls])
a2.bar_label(bars, labels=[f"{v / 1e3:,.1f}k" for v in vals], fontsize=8)
if wrk:
    a2.axhline(1e9 / wrk, color="#c0392b", linestyle="--", label=f"wrk -t1 -c{conc} (ceiling): {1e9 / wrk / 1e3:,.0f}k/s")
    a2.axhline(0.8e9 / wrk, color="#c0392b", linestyle=":", label="0.8x wrk (target)")
a2.set_ylabel("requests/s (higher is better)")
a2.set_title(f"{requests} keep-alive GETs, concurrency {conc}")
a2.set_ylim(0, max(vals + ([1e9 / wrk] if wrk else [])) * 1.2)
a2.legend(loc="upper right", fontsize=8)
a2.tick_params(axis="x", labelsize=8)
fig.suptitle(f"spindle fetch vs peers: whole commands, wall time, medians of {repeats} runs (loopback, client CPU 1, server CPU 0)", fontsize=10)
fig.tight_layout()
fig.savefig(plot, dpi=110)
print(f"fetch: plot written to {plot}", file=sys.stderr)
EOF
