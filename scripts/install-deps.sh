#!/usr/bin/env bash
# Installs the Debian packages spindle needs, and only those that are missing.
#
#   scripts/install-deps.sh [group ...]      groups: build (default), sanitize, bench, format, all
#
# Runs apt-get directly as root, through `sudo -n` otherwise; when neither
# works it prints the exact command to run and exits 1.
set -euo pipefail

declare -A groups=(
  # libpq-dev, libsqlite3-dev, nlohmann-json3-dev and postgresql: the aggregator example and its
  # tests (scripts/pg-cluster.sh runs a throwaway cluster from the postgresql package).
  # libcli11-dev and nlohmann-json3-dev: the spindle CLI (apps/spindle).
  # python3-matplotlib: the plot of bench/run_fetch.sh (docs/img/fetch_bench.png).
  [build]="cmake ninja-build g++ make googletest libbenchmark-dev ccache mold prometheus node-llhttp libc-ares-dev libssl-dev zlib1g-dev openssl pkg-config libpq-dev libsqlite3-dev nlohmann-json3-dev postgresql libcli11-dev libbrotli-dev libzstd-dev libidn2-dev nginx-light curl"
  [sanitize]="clang-16 libclang-rt-16-dev"
  [bench]="libbenchmark-dev python3 python3-uvloop python3-aiohttp python3-matplotlib librust-tokio-dev librust-hyper-dev cargo wrk hyperfine util-linux nginx-light"
  [format]="clang-format-14"
)

wanted=()
[ $# -eq 0 ] && set -- build
for g in "$@"; do
  if [ "$g" = all ]; then
    for k in "${!groups[@]}"; do wanted+=(${groups[$k]}); done
  elif [ -n "${groups[$g]+x}" ]; then
    wanted+=(${groups[$g]})
  else
    echo "install-deps: unknown group '$g' (known: ${!groups[*]} all)" >&2
    exit 2
  fi
done

if ! command -v dpkg-query >/dev/null 2>&1; then
  echo "install-deps: this is not a Debian-based system; install by hand: ${wanted[*]}" >&2
  exit 1
fi

missing=()
for p in $(printf '%s\n' "${wanted[@]}" | sort -u); do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [ "$status" = "install ok installed" ] || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: installing missing Debian packages: ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  as_root=(sudo -n)
else
  echo "install-deps: need root to install packages. Run:" >&2
  echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# Try without refreshing the package lists first (fast when they are fresh);
# on failure, update them and try again.
if ! "${as_root[@]}" apt-get install -y --no-install-recommends "${missing[@]}" >/tmp/spindle-apt.log 2>&1; then
  "${as_root[@]}" apt-get update >/tmp/spindle-apt.log 2>&1
  if ! "${as_root[@]}" apt-get install -y --no-install-recommends "${missing[@]}" >>/tmp/spindle-apt.log 2>&1; then
    echo "install-deps: apt-get failed; last lines of /tmp/spindle-apt.log:" >&2
    tail -20 /tmp/spindle-apt.log >&2
    exit 1
  fi
fi
echo "install-deps: done"
