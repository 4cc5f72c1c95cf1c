#!/usr/bin/env bash
# Installs the built library into a scratch prefix and builds and runs two
# consumer projects against it with find_package(spindle):
#   package_consumer       find_package(spindle): every component, http too
#   package_consumer_core  find_package(spindle COMPONENTS core), configured
#                          with OpenSSL, zlib and pkg-config made unfindable,
#                          and its binary checked to link none of them
#   package_test.sh <build-dir> <consumer-source-dir> <c++ compiler>
set -euo pipefail
build=$1 consumer=$2 cxx=$3
core_consumer="$(dirname "$consumer")/package_consumer_core"
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

run cmake -S "$core_consumer" -B "$scratch/build-core" -G Ninja -DCMAKE_CXX_COMPILER="$cxx" \
  -DCMAKE_PREFIX_PATH="$scratch/prefix" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_DISABLE_FIND_PACKAGE_OpenSSL=ON -DCMAKE_DISABLE_FIND_PACKAGE_ZLIB=ON \
  -DCMAKE_DISABLE_FIND_PACKAGE_PkgConfig=ON
run cmake --build "$scratch/build-core"
out=$("$scratch/build-core/consumer_core")
echo "$out"
[ "$out" = "core consumer: 43" ]
if ldd "$scratch/build-core/consumer_core" | grep -E 'libssl|libcrypto|libz\.|libcares|libbrotli|libzstd|libidn2'; then
  echo "package_test: the core-only consumer links a network dependency" >&2
  exit 1
fi
