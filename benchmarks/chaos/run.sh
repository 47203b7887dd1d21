#!/usr/bin/env bash
# The chaos run: builds `chaos` with the release preset (build/release) and runs it; it starts
# and stops its own two redis-servers on free loopback ports. Arguments go to the program
# (default: --seconds 300). Prints the machine, the command and the table.
#   bash benchmarks/chaos/run.sh                         # 5 minutes, default workload
#   bash benchmarks/chaos/run.sh --seconds 60 --processes 2
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

install_packages cmake ninja-build g++ pkg-config libhiredis-dev nlohmann-json3-dev catch2 \
  redis-server redis-tools libcpp-httplib-dev libsqlite3-dev libboost-dev libmsgpack-cxx-dev \
  liblz4-dev libzstd-dev

echo "== build (release preset, target chaos)"
cmake --preset release >/dev/null
cmake --build --preset release --target chaos -j "${CHAOS_JOBS:-2}"

args=("$@")
if [ "${#args[@]}" -eq 0 ]; then
  args=(--seconds 300)
fi
echo "== machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')," \
  "Linux $(uname -r), redis $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/')," \
  "hiredis $(pkg-config --modversion hiredis 2>/dev/null || echo unknown)," \
  "$(c++ --version | head -n1), load average $(cut -d' ' -f1-3 /proc/loadavg), not pinned"
echo "== command: build/release/benchmarks/chaos/chaos ${args[*]}"
build/release/benchmarks/chaos/chaos "${args[@]}"
