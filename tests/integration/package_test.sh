#!/usr/bin/env bash
# Installs the built library into a scratch prefix and builds and runs a
# consumer project against it with find_package(spindle).
#   package_test.sh <build-dir> <consumer-source-dir> <c++ compiler>
set -euo pipefail
build=$1 consumer=$2 cxx=$3
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
log="$scratch/log"
run() { "$@" >>"$log" 2>&1 || { cat "$log"; echo "package_test: failed: $*" >&2; exit 1; }; }
run cmake --install "$build" --prefix "$scratch/prefix"
run cmake -S "$consumer" -B "$scratch/build" -G Ninja -DCMAKE_CXX_COMPILER="$cxx" \
  -DCMAKE_PREFIX_PATH="$scratch/prefix" -DCMAKE_BUILD_TYPE=Release
run cmake --build "$scratch/build"
out=$("$scratch/build/consumer")
echo "$out"
[ "$out" = "consumer: 42" ]
