#!/usr/bin/env bash
# `spindle fetch` against the well-known ways of fetching a URL list (issue
# #7): Python asyncio + aiohttp (on asyncio and on uvloop), `curl --parallel`
# and a Tokio/hyper client, over the same URL list file against the same
# loopback server in one run; wrk as the ceiling. Everything on 127.0.0.1.
#
#   bench/run_fetch.sh [repeats] [plot.png]
#       repeats: default 5 (run by bench/run_core.sh); plot: default
#       build/bench/fetch_bench.png (docs/img/fetch_bench.png for the docs).
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
# Every client writes one JSON line per result (curl: -w, one line per
# transfer) to /dev/null; every run is checked (exit 0, and N results ok).
# Output: build/bench/fetch.jsonl (one line per timed run), fetch.md (the
# table and the ratios) and the plot (python3-matplotlib; skipped if absent).
. "$(dirname "$0")/common.sh" "$@"
plot=${2:-$out/fetch_bench.png}
mkdir -p "$(dirname "$plot")"
delay_ms=50
delayed_items=200
delayed_concurrency=200
requests=20000
concurrency=64
wrk_seconds=5
run_timeout=120  # seconds: any one command is killed after this
server_seconds=$((repeats * 120 + 180))  # each server stops by itself after this at the latest

spindle_bin=build/release/apps/spindle/spindle
hyper_bin=build/peers/hyper/release/hyper_http
[ -x "$spindle_bin" ] || { echo "build first: cmake --build build/release --target spindle_cli" >&2; exit 1; }
command -v wrk >/dev/null || { echo "wrk missing: scripts/install-deps.sh bench" >&2; exit 1; }
command -v curl >/dev/null || { echo "curl missing" >&2; exit 1; }
detect_peers fetch

server_pid=""
trap '[ -n "$server_pid" ] && stop_server "$server_pid"' EXIT

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
# checks it (exit 0; "ok=N" in its summary on stderr if it prints one; with
# --count-200, N lines "200" on its stdout, curl's -w) and prints one JSON
# line: ns_per_op = wall / N, wall_s, self_s (the client's own elapsed_s from
# its summary, if any). A failed check prints the reason on stderr, no line.
# Python's start-up is outside the timed region; the fork+exec is inside.
timer='
import json, re, subprocess, sys, time
args = sys.argv[1:]
count_200 = args[0] == "--count-200"
if count_200:
    args = args[1:]
impl, op, n, note, timeout = args[0], args[1], int(args[2]), args[3], float(args[4])
cmd = args[args.index("--") + 1:]
t0 = time.perf_counter()
try:
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
except subprocess.TimeoutExpired:
    sys.exit(f"fetch: {impl} {op}: killed after {timeout:.0f} s")
wall = time.perf_counter() - t0
err = p.stderr.decode(errors="replace")
if p.returncode != 0:
    sys.exit(f"fetch: {impl} {op}: exit {p.returncode}: {err.strip()[-500:]}")
m = re.search(r"ok=(\d+) failed=(\d+) elapsed_s=([0-9.]+)", err)
if m and (int(m.group(1)) != n or int(m.group(2)) != 0):
    sys.exit(f"fetch: {impl} {op}: {m.group(0)}, expected ok={n}")
if count_200:
    got = p.stdout.split().count(b"200")
    if got != n:
        sys.exit(f"fetch: {impl} {op}: {got} transfers answered 200, expected {n}")
rec = {"impl": impl, "op": op, "ns_per_op": wall * 1e9 / n, "wall_s": wall,
       "self_s": float(m.group(3)) if m else None, "note": note}
print(json.dumps(rec))
'

# run_client IMPL OP N URLS CONCURRENCY [--warmup]: one run of client IMPL
# over the URL list file URLS; appends its JSON line to $out/fetch.jsonl
# (with --warmup: to nothing).
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
    asyncio | uvloop)
      cmd=($py bench/peers/aiohttp_fetch.py --urls "$urls" --concurrency "$c" --out /dev/null)
      [ "$impl" = uvloop ] && cmd+=(--uvloop)
      note="aiohttp $($py -c 'import aiohttp; print(aiohttp.__version__)') on $impl: Semaphore($c) + gather, TCPConnector(limit=$c)" ;;
    curl)
      # The same list as a config file: url + output per line of the list.
      awk '!/^[[:space:]]*(#|$)/ { printf "url = \"%s\"\noutput = \"/dev/null\"\n", $1 }' "$urls" >"$urls.curl"
      cmd=(curl -sS --fail --parallel --parallel-immediate --parallel-max "$c" -w '%{http_code}\n' -K "$urls.curl")
      count=(--count-200)
      note="$(curl --version | head -1 | cut -d' ' -f1-2) --parallel --parallel-immediate --parallel-max $c -K (one url + output = /dev/null per line), -w one line per transfer" ;;
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
port=$(free_port)
if start_server mock "$port"; then
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
port=$(free_port)
if start_server "$target" "$port"; then
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

# --------------------------------------------------------------- summary ---
spindle_note="spindle binary: sha256 $spindle_start; source: $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- src include apps 2>/dev/null || echo ' + uncommitted changes in src/include/apps')"
if [ "$(spindle_id)" != "$spindle_start" ]; then
  spindle_note="$spindle_note. **WARNING: the spindle binary changed during the run (now $(spindle_id)): the numbers mix two builds**"
  echo "fetch: the spindle binary changed during the run" >&2
fi
echo
$py - "$out/fetch.jsonl" "$plot" "$delay_ms" "$delayed_items" "$delayed_concurrency" "$requests" "$concurrency" \
  "$target_note" "$repeats" "$load_start" "$(cut -d' ' -f1-3 /proc/loadavg)" "$spindle_note" <<'EOF' | tee "$out/fetch.md"
import json, statistics, sys
from collections import defaultdict

path, plot, delay_ms, items, dconc, requests, conc, target_note, repeats, load0, load1, spindle_note = sys.argv[1:]
runs = defaultdict(list)
self_s = defaultdict(list)
notes = {}
for line in open(path):
    if line.strip():
        r = json.loads(line)
        runs[(r["impl"], r["op"])].append(r["ns_per_op"])
        if r.get("self_s") is not None:
            self_s[(r["impl"], r["op"])].append(r["self_s"])
        notes[r["impl"]] = r.get("note", "")

names = {"spindle": "spindle fetch", "spindle_r0": "spindle fetch --retries 0", "asyncio": "aiohttp (asyncio)",
         "uvloop": "aiohttp (uvloop)", "curl": "curl --parallel", "tokio": "hyper (tokio)", "wrk": "wrk (ceiling)"}
order = ["spindle", "spindle_r0", "asyncio", "uvloop", "curl", "tokio", "wrk"]
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


print(f"Medians of {repeats} runs; each client is a whole command (wall time, start-up included) on CPU 1, "
      f"the server on CPU 0. \"own\": the client's own elapsed time from its summary line "
      f"(first request to last result). Load average (1, 5, 15 min) at the start: {load0}; at the end: {load1}. The {spindle_note}.")
print()
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
print("Clients:")
for impl in order:
    if impl in notes:
        print(f"- {names[impl]}: {notes[impl]}")

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
