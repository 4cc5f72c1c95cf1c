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
