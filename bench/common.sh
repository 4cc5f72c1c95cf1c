# Sourced by the bench/run_*.sh scripts: the settings every run shares.
#   . "$(dirname "$0")/common.sh" "$@"
# Leaves the shell in the repository root with: repeats (first argument,
# default 5), out (build/bench, created), py (/usr/bin/python3, which has
# the Debian uvloop and aiohttp), and glibc malloc's trim and mmap
# thresholds raised for every program (memory freed between rounds is not
# returned to the kernel and faulted in again).
set -euo pipefail
cd "$(dirname "$0")/.."
repeats=${1:-5}
out=build/bench
mkdir -p "$out"
export GLIBC_TUNABLES=glibc.malloc.trim_threshold=1073741824:glibc.malloc.mmap_threshold=1073741824
py=/usr/bin/python3

# ---- Shared by the loopback HTTP benchmarks (run_http.sh, run_fetch.sh) ----

# detect_peers TAG: sets have_aiohttp, have_uvloop, have_hyper (building the
# hyper peer offline; TAG prefixes the messages).
detect_peers() {
  have_aiohttp=0
  $py -c 'import aiohttp' 2>/dev/null && have_aiohttp=1
  have_uvloop=0
  [ $have_aiohttp = 1 ] && $py -c 'import uvloop' 2>/dev/null && have_uvloop=1
  echo "$1: building the hyper peer..." >&2
  if command -v cargo >/dev/null &&
    (cd bench/peers/hyper_http && CARGO_TARGET_DIR="$PWD/../../../build/peers/hyper" cargo build --release --offline -q); then
    have_hyper=1
  else
    echo "$1: the hyper peer did not build (librust-hyper-dev missing?); skipping it" >&2
    have_hyper=0
  fi
}

free_port() {
  $py -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# wait_ready PORT PID: until GET / answers "hello" (at most 10 s).
wait_ready() {
  local i
  for i in $(seq 1 100); do
    kill -0 "$2" 2>/dev/null || return 1
    if $py -c 'import sys, urllib.request as u
sys.exit(0 if u.urlopen(sys.argv[1], timeout=1).read() == b"hello" else 1)' "http://127.0.0.1:$1/" 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  return 1
}

# stop_server PID: SIGTERM, then at most 10 s for a graceful stop, then SIGKILL.
stop_server() {
  local i
  kill -TERM "$1" 2>/dev/null || return 0
  for i in $(seq 1 100); do
    kill -0 "$1" 2>/dev/null || { wait "$1" 2>/dev/null || true; return 0; }
    sleep 0.1
  done
  echo "bench: server $1 ignored SIGTERM for 10 s; killing it" >&2
  kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
