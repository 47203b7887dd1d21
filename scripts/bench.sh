#!/usr/bin/env bash
# Benchmarks: cacheaside against hand-written hiredis and the naive pattern, in one table.
# Builds `bench` in Release (build/bench), starts a private redis-server on a free loopback port,
# prints the machine, then runs the benchmark for each CPU placement (PLACEMENTS, default
# "shared split"):
#   shared  redis-server (and the cluster nodes) and the benchmark pinned to CPU 0
#   split   redis-server and the cluster nodes on CPU 0, the benchmark on CPU 1
#   none    no pinning (the scheduler decides)
# Extra arguments go to the benchmark (e.g. --reps 3, --quick).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

install_packages cmake ninja-build g++ pkg-config libhiredis-dev nlohmann-json3-dev \
  libmsgpack-cxx-dev liblz4-dev libzstd-dev libcereal-dev \
  redis-server redis-tools util-linux

data="${BENCH_DATA:-$root/benchmarks/data/products-20.json}"
if [ ! -f "$data" ]; then
  echo "bench: payload not found: $data (set BENCH_DATA)" >&2
  exit 1
fi

echo "== build (Release, build/bench)"
cmake -S . -B build/bench -G Ninja -DCMAKE_BUILD_TYPE=Release -DCACHEASIDE_BUILD_TESTS=OFF \
  -DCACHEASIDE_BUILD_EXAMPLES=OFF -DCACHEASIDE_BUILD_BENCHMARKS=ON >/dev/null
cmake --build build/bench --target bench -j "${BENCH_JOBS:-1}"

trap 'stop_redis; stop_cluster' EXIT
trap 'exit 130' INT TERM
start_redis
start_cluster # for the cluster section (6): 3 masters, 3 replicas, placed as redis-server

# pin_servers CPUS: the server and every cluster node on CPUS.
pin_servers() {
  local pid
  for pid in "$REDIS_PID" "${CLUSTER_PIDS[@]}"; do
    taskset -pc "$1" "$pid" >/dev/null
  done
}

cpus=$(nproc)
hiredis_version=$(pkg-config --modversion hiredis 2>/dev/null || echo unknown)
echo "== machine: $cpus CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')," \
  "Linux $(uname -r), redis $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/')," \
  "hiredis $hiredis_version, $(c++ --version | head -n1), load average $(cut -d' ' -f1-3 /proc/loadavg)"

for placement in ${PLACEMENTS:-shared split}; do
  client_pin=()
  case "$placement" in
    shared)
      if [ "$cpus" -lt 1 ]; then continue; fi
      pin_servers 0
      client_pin=(taskset -c 0)
      text="redis-server and bench both pinned to CPU 0"
      ;;
    split)
      if [ "$cpus" -lt 2 ]; then
        echo "== placement split skipped: one CPU"
        continue
      fi
      pin_servers 0
      client_pin=(taskset -c 1)
      text="redis-server pinned to CPU 0, bench to CPU 1"
      ;;
    none)
      pin_servers "0-$((cpus - 1))"
      text="not pinned"
      ;;
    *)
      echo "bench: unknown placement $placement (shared, split, none)" >&2
      exit 2
      ;;
  esac
  echo
  echo "== placement: $text"
  echo "== command: ${client_pin[*]} build/bench/benchmarks/bench --port $REDIS_PORT" \
    "--cluster $CLUSTER_PORT --data $data $*"
  "${client_pin[@]}" build/bench/benchmarks/bench --port "$REDIS_PORT" --cluster "$CLUSTER_PORT" \
    --data "$data" \
    --placement "$text" "$@"
done
