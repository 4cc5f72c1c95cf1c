#!/usr/bin/env bash
# `spindle fetch --loops 1` against `--loops N` (issue #17 point 5): the
# same URL list, the same local nginx, each command timed by its wall time
# (process start to exit), run once untimed, then `repeats` times taking
# turns; medians. Everything on 127.0.0.1.
#
#   [SPINDLE_BIN=path] [LOOPS="1 2"] bench/run_fetch_loops.sh [repeats]
#       repeats: default 5. SPINDLE_BIN: default build/release/apps/spindle/spindle.
#
#  1. keepalive: 20,000 GETs of nginx's `return 200 "hello"` over plain
#     HTTP at --concurrency 64 (keep-alive: about 64 connections in all).
#  2. tls-close: 3,000 HTTPS GETs of the same route with
#     `-H 'Connection: close'`: every request is a new TCP connection and a
#     full TLS 1.3 handshake (ECDSA P-256 self-signed certificate, trusted
#     with --cacert; no session tickets, no session cache: nothing is
#     resumed), at --concurrency 64.
# nginx: one master and `NGINX_WORKERS` workers (default 2: one per vCPU of
# the 2-vCPU benchmark machine), access log off, config and certificate
# generated in a temporary directory. Client and server are not pinned:
# they share the machine's CPUs (on a 2-vCPU machine the server takes a
# good part of them, which caps what a second client loop can add).
# Every run is checked: exit 0 and every result ok. The client's CPU time
# (user + sys, /usr/bin/time) is reported beside the wall time: on a busy
# machine it is the steadier figure. Output: a table on stdout and
# build/bench/fetch_loops.jsonl (one line per timed run).
set -euo pipefail
repeats=${1:-5}
spindle_bin=${SPINDLE_BIN:-build/release/apps/spindle/spindle}
loops_list=${LOOPS:-"1 2"}
workers=${NGINX_WORKERS:-2}
keepalive_requests=20000
tls_requests=3000
concurrency=64
out=build/bench
mkdir -p "$out"
[ -x "$spindle_bin" ] || { echo "build first (or set SPINDLE_BIN): $spindle_bin" >&2; exit 1; }
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { echo "nginx missing: scripts/install-deps.sh" >&2; exit 1; }
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)

dir=$(mktemp -d /tmp/spindle-loops-bench.XXXXXX)
nginx_pid=
cleanup() {
  [ -n "$nginx_pid" ] && kill "$nginx_pid" 2>/dev/null && wait "$nginx_pid" 2>/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
plain=$(free_port)
tls=$(free_port)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=127.0.0.1 \
  -addext subjectAltName=IP:127.0.0.1 -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>/dev/null
mkdir -p "$dir/tmp"
cat >"$dir/nginx.conf" <<EOF
daemon off;
worker_processes $workers;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $dir/tmp/cb; proxy_temp_path $dir/tmp/p; fastcgi_temp_path $dir/tmp/f;
  uwsgi_temp_path $dir/tmp/u; scgi_temp_path $dir/tmp/s;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$plain;
    listen 127.0.0.1:$tls ssl;
    ssl_certificate $dir/cert.pem;
    ssl_certificate_key $dir/key.pem;
    ssl_protocols TLSv1.3;
    ssl_session_tickets off;
    ssl_session_cache off;
    location / { return 200 "hello"; }
  }
}
EOF
"$nginx_bin" -p "$dir/" -c "$dir/nginx.conf" -e "$dir/error.log" &
nginx_pid=$!
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$tls") 2>/dev/null && break
  sleep 0.05
done

seq "$keepalive_requests" | sed "s|.*|http://127.0.0.1:$plain/|" >"$dir/keepalive.txt"
seq "$tls_requests" | sed "s|.*|https://127.0.0.1:$tls/|" >"$dir/tls.txt"

# run NAME LOOPS LIST EXTRA...: one timed run; prints the wall seconds.
run() {
  local name=$1 loops=$2 list=$3
  shift 3
  local n
  n=$(wc -l <"$list")
  /usr/bin/time -f "%e %U %S" -o "$dir/time.txt" "$spindle_bin" fetch --urls "$list" --loops "$loops" -c "$concurrency" --no-progress -q --out "$dir/out.jsonl" \
    "$@" 2>"$dir/err.txt" || { echo "$name loops=$loops failed: $(cat "$dir/err.txt")" >&2; exit 1; }
  local ok
  ok=$(grep -c '"ok":true' "$dir/out.jsonl" || true)
  [ "$ok" = "$n" ] || { echo "$name loops=$loops: $ok of $n ok: $(cat "$dir/err.txt")" >&2; exit 1; }
  # "wall cpu": the client's wall and CPU (user + sys) seconds
  awk 'END {printf "%.3f %.3f\n", $1, $2 + $3}' "$dir/time.txt"
}

declare -A times cpus
scenario() {
  local name=$1 list=$2
  shift 2
  for l in $loops_list; do run "$name" "$l" "$list" "$@" >/dev/null; done  # warm-up
  for r in $(seq "$repeats"); do
    for l in $loops_list; do
      read -r t c < <(run "$name" "$l" "$list" "$@")
      times[$name/$l]+="$t "
      cpus[$name/$l]+="$c "
      printf '{"scenario":"%s","loops":%s,"requests":%s,"wall_s":%s,"client_cpu_s":%s,"load1":%s}\n' "$name" \
        "$l" "$(wc -l <"$list")" "$t" "$c" "$(cut -d' ' -f1 /proc/loadavg)" >>"$out/fetch_loops.jsonl"
    done
  done
}

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) CPUs; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
scenario keepalive "$dir/keepalive.txt"
scenario tls-close "$dir/tls.txt" --cacert "$dir/cert.pem" -H "Connection: close"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
printf '\n| scenario | requests | loops | median wall s | req/s | client CPU s (median) | runs, wall s |\n|---|---:|---:|---:|---:|---:|---|\n'
for name in keepalive tls-close; do
  n=$keepalive_requests
  [ "$name" = tls-close ] && n=$tls_requests
  for l in $loops_list; do
    m=$(echo "${times[$name/$l]}" | median)
    cm=$(echo "${cpus[$name/$l]}" | median)
    printf '| %s | %s | %s | %s | %.0f | %s | %s|\n' "$name" "$n" "$l" "$m" "$(python3 -c "print($n / $m)")" "$cm" \
      "${times[$name/$l]}"
  done
done
