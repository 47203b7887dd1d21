#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what it needs, starts a private redis-server,
# checks formatting, then builds and tests every configuration (GCC C++17, Clang C++20,
# ASan+UBSan, TSan). Set PRESETS="dev" to run fewer.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

install_packages cmake ninja-build g++ clang pkg-config clang-format libhiredis-dev \
  nlohmann-json3-dev catch2 redis-server redis-tools libcpp-httplib-dev libsqlite3-dev curl \
  libmsgpack-cxx-dev liblz4-dev libzstd-dev libboost-dev

trap stop_redis EXIT
trap 'exit 130' INT TERM
start_redis
export CACHEASIDE_TEST_REDIS="127.0.0.1:$REDIS_PORT"

bash scripts/check-format.sh

started=$(date +%s)
for preset in ${PRESETS:-gcc-cxx17 clang-cxx20 asan tsan}; do
  echo "== $preset: configure, build, test"
  cmake --preset "$preset" >/dev/null
  cmake --build --preset "$preset" -j 2
  ctest --preset "$preset"
done
echo "== all configurations passed in $(( $(date +%s) - started )) s"
