#!/usr/bin/env bash
# The products API (examples/products_api) against the usual Express + ioredis middleware
# (benchmarks/http/express), same Redis, same 200 ms query delay, same response bytes; prints
# one table. Builds products_api and http_burst in Release (build/bench-http), installs the
# Express app with `npm ci`, starts a private redis-server, the service and the Express app.
#
# Placement (2 cores): redis-server, products_api and node on CPU 0; wrk and the burst client
# on CPU 1. Override with SERVER_CPUS and CLIENT_CPUS; DURATION (default 10s) is each wrk run.
#
# Rows, per server, measured one server at a time:
#   cold / warm GET    one curl: median of 5 after FLUSHALL / median of 20 once cached
#   wrk -c32 / -c1000  wrk -t2 -d$DURATION --latency on the warm list: req/s, p50, p99 (medians
#                      of REPS runs, default 3, the two servers interleaved), errors (summed)
#   100 cold at once   burst: 100 new connections released by a barrier; database queries run
#                      and the last response's time after the release
#   POST then GET      a POST, then at once a GET on another connection sees the new product
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

install_packages cmake ninja-build g++ pkg-config libhiredis-dev nlohmann-json3-dev \
  libboost-dev libsqlite3-dev libmsgpack-cxx-dev liblz4-dev libzstd-dev redis-server redis-tools \
  wrk curl util-linux nodejs
if ! command -v npm >/dev/null; then
  install_packages npm
fi

server_cpus=${SERVER_CPUS:-0}
client_cpus=${CLIENT_CPUS:-1}
duration=${DURATION:-10s}
reps=${REPS:-3}
path="/api/products?category=books"

echo "== build (Release, build/bench-http)"
cmake -S . -B build/bench-http -G Ninja -DCMAKE_BUILD_TYPE=Release -DCACHEASIDE_BUILD_TESTS=OFF \
  -DCACHEASIDE_BUILD_EXAMPLES=ON -DCACHEASIDE_BUILD_BENCHMARKS=ON >/dev/null
cmake --build build/bench-http --target products_api http_burst -j "${BENCH_JOBS:-2}" | tail -n 1
service_bin="$root/build/bench-http/examples/products_api/products_api"
burst_bin="$root/build/bench-http/benchmarks/http_burst"

echo "== npm ci (benchmarks/http/express)"
(cd benchmarks/http/express && npm ci --no-audit --no-fund --loglevel=error >/dev/null)

work=$(mktemp -d)
CPP_PID=""
NODE_PID=""
cleanup() {
  local pid
  for pid in "$CPP_PID" "$NODE_PID"; do
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  stop_redis
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_redis
taskset -pc "$server_cpus" "$REDIS_PID" >/dev/null

free_port() {
  local port
  while :; do
    port=$((20000 + RANDOM % 30000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return
    fi
  done
}

# wait_http URL PID: until URL answers 200, or the process exits (10 s at most).
wait_http() {
  local i
  for i in $(seq 1 200); do
    if curl -fs -o /dev/null "$1"; then
      return 0
    fi
    if ! kill -0 "$2" 2>/dev/null; then
      break
    fi
    sleep 0.05
  done
  echo "bench: $1 did not answer" >&2
  return 1
}

CPP_PORT=$(free_port)
taskset -c "$server_cpus" "$service_bin" --port "$CPP_PORT" --redis "127.0.0.1:$REDIS_PORT" \
  --db "$work/products.db" --delay-ms 200 >"$work/cpp.log" 2>&1 &
CPP_PID=$!
wait_http "http://127.0.0.1:$CPP_PORT/healthz" "$CPP_PID"

# The Express app serves the service's products: both answer the same bytes.
curl -fs "http://127.0.0.1:$CPP_PORT/api/products" >"$work/products.json"
NODE_PORT=$(free_port)
PORT=$NODE_PORT REDIS_PORT=$REDIS_PORT PRODUCTS_FILE="$work/products.json" DELAY_MS=200 \
  taskset -c "$server_cpus" node benchmarks/http/express/app.js >"$work/node.log" 2>&1 &
NODE_PID=$!
wait_http "http://127.0.0.1:$NODE_PORT/stats" "$NODE_PID"

curl -fs "http://127.0.0.1:$CPP_PORT$path" >"$work/cpp.body"
curl -fs "http://127.0.0.1:$NODE_PORT$path" >"$work/node.body"
if ! cmp -s "$work/cpp.body" "$work/node.body"; then
  echo "bench: the two servers answer $path with different bytes" >&2
  exit 1
fi
body_bytes=$(wc -c <"$work/cpp.body")

queries() { # queries PORT: database queries the server has run
  if [ "$1" = "$CPP_PORT" ]; then
    curl -fs "http://127.0.0.1:$1/metrics" | awk '/^products_api_db_queries_total /{print $2}'
  else
    curl -fs "http://127.0.0.1:$1/stats" | sed 's/.*"queries":\([0-9]*\).*/\1/'
  fi
}

median() { sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }

# one_get PORT: milliseconds for one GET of $path on a new connection (curl, on the client CPU).
one_get() {
  taskset -c "$client_cpus" curl -fs -o /dev/null -w '%{time_total}\n' \
    "http://127.0.0.1:$1$path" | awk '{printf "%.2f\n", $1 * 1000}'
}

# to_ms VALUE: wrk's 1.10ms / 950.00us / 1.20s as milliseconds.
to_ms() {
  awk -v v="$1" 'BEGIN {
    if (v ~ /us$/) { sub(/us$/, "", v); printf "%.2f", v / 1000 }
    else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.2f", v }
    else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.2f", v * 1000 }
    else { printf "?" } }'
}

declare -A R

# wrk_run NAME PORT CONNS: one wrk run; appends req/s, p50 and p99 to R[NAME.rpsCONNS] etc. and
# adds its socket errors and non-2xx responses to R[NAME.errCONNS].
wrk_run() {
  local name=$1 port=$2 conns=$3 out
  if [ "$name" = cpp ]; then
    curl -fs "http://127.0.0.1:$port/metrics" >"$work/metrics-before"
  fi
  R[load$conns]+=" $name $(cut -d' ' -f1 /proc/loadavg)"
  out=$(taskset -c "$client_cpus" wrk -t2 -c"$conns" -d"$duration" --latency \
    "http://127.0.0.1:$port$path")
  R[$name.rps$conns]+=" $(echo "$out" | awk '/^Requests\/sec:/ {printf "%.0f", $2}')"
  R[$name.p50_$conns]+=" $(to_ms "$(echo "$out" | awk '$1 == "50%" {print $2}')")"
  R[$name.p99_$conns]+=" $(to_ms "$(echo "$out" | awk '$1 == "99%" {print $2}')")"
  if echo "$out" | grep -q 'Socket errors'; then
    R[errors]+="$name -c$conns:$(echo "$out" | sed -n 's/.*Socket errors:\(.*\)/\1/p');"
  fi
  R[$name.sock$conns]=$(($(echo "$out" | awk '
    /Socket errors:/ { gsub(",", ""); s = $4 + $6 + $8 + $10 } END { print s + 0 }') +
    ${R[$name.sock$conns]:-0}))
  R[$name.non2xx$conns]=$(($(echo "$out" | awk '/Non-2xx/ { n = $5 } END { print n + 0 }') +
    ${R[$name.non2xx$conns]:-0}))
  if [ "$name" = cpp ]; then # responses the cache did not answer during the run
    R[cpp.miss$conns]=$(($(curl -fs "http://127.0.0.1:$port/metrics" | awk '
      NR == FNR { if ($1 ~ /x_cache="MISS"|redis_errors/) before[$1] = $2; next }
      $1 ~ /x_cache="MISS"|redis_errors/ { d += $2 - before[$1] }
      END { print d + 0 }' "$work/metrics-before" -) + ${R[cpp.miss$conns]:-0}))
  fi
}

# latencies NAME PORT: cold and warm single requests, 100 cold at once.
latencies() {
  local name=$1 port=$2 i out
  local samples=()
  for i in 1 2 3 4 5; do
    redis-cli -p "$REDIS_PORT" FLUSHALL >/dev/null
    samples+=("$(one_get "$port")")
  done
  R[$name.cold]=$(printf '%s\n' "${samples[@]}" | median)
  one_get "$port" >/dev/null
  samples=()
  for i in $(seq 1 20); do
    samples+=("$(one_get "$port")")
  done
  R[$name.warm]=$(printf '%s\n' "${samples[@]}" | median)

  redis-cli -p "$REDIS_PORT" FLUSHALL >/dev/null
  local before after
  before=$(queries "$port")
  out=$(taskset -c "$client_cpus" "$burst_bin" "$port" "$path" 100) || true
  after=$(queries "$port")
  R[$name.burstq]=$((after - before))
  R[$name.burstmax]=$(echo "$out" | sed -n 's/.*max_ms=\([0-9.]*\).*/\1/p')
  R[$name.burstok]=$(echo "$out" | sed -n 's/.*ok=\([0-9]*\).*/\1/p')
}

# post_then_get NAME PORT: a POST, then at once a GET on another connection (a new curl).
post_then_get() {
  local name=$1 port=$2 id
  curl -fs "http://127.0.0.1:$port$path" >/dev/null
  id=$(curl -fs -X POST -H 'Content-Type: application/json' \
    --data '{"name":"Bench atlas","category":"books","price":12.5}' \
    "http://127.0.0.1:$port/api/products" | sed -n 's/.*"id":\([0-9]*\).*/\1/p')
  if curl -fs "http://127.0.0.1:$port$path" | grep -q "\"id\":$id,"; then
    R[$name.post]=yes
  else
    R[$name.post]=no
  fi
}

echo "== measuring products_api (pid $CPP_PID) and Express (pid $NODE_PID); servers and" \
  "redis-server on CPU $server_cpus, clients on CPU $client_cpus; load average $(cut -d' ' -f1-3 /proc/loadavg)"
latencies cpp "$CPP_PORT"
latencies node "$NODE_PORT"
# The servers interleaved, $REPS times, so that other load on the machine hits both alike. The
# FLUSHALLs above emptied both caches: warm them first.
curl -fs -o /dev/null "http://127.0.0.1:$CPP_PORT$path"
curl -fs -o /dev/null "http://127.0.0.1:$NODE_PORT$path"
for rep in $(seq 1 "$reps"); do
  for conns in 32 1000; do
    wrk_run cpp "$CPP_PORT" "$conns"
    wrk_run node "$NODE_PORT" "$conns"
  done
done
post_then_get cpp "$CPP_PORT"
post_then_get node "$NODE_PORT"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.1fx", a / b; else print "-" }'; }
row() { printf '| %-46s | %17s | %17s | %9s |\n' "$1" "$2" "$3" "$4"; }

med() { echo "$1" | tr ' ' '\n' | grep . | median; }

echo
echo "machine: $(nproc) CPUs, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)," \
  "$(uname -r); node $(node --version), redis $(redis-server --version | awk '{print $3}');" \
  "load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"
echo "GET $path ($body_bytes bytes, same bytes from both), 200 ms per database query;" \
  "wrk rows: median of $reps interleaved runs of -d$duration"
echo
row "" "products_api" "Express+ioredis" "ratio"
row "---" "---" "---" "---"
row "cold GET, one request (ms, median of 5)" "${R[cpp.cold]}" "${R[node.cold]}" ""
row "warm GET, one request (ms, median of 20)" "${R[cpp.warm]}" "${R[node.warm]}" \
  "$(ratio "${R[node.warm]}" "${R[cpp.warm]}")"
for conns in 32 1000; do
  cpp_rps=$(med "${R[cpp.rps$conns]}")
  node_rps=$(med "${R[node.rps$conns]}")
  row "warm, wrk -t2 -c$conns: req/s" "$cpp_rps" "$node_rps" "$(ratio "$cpp_rps" "$node_rps")"
  row "warm, wrk -t2 -c$conns: p50 / p99 (ms)" \
    "$(med "${R[cpp.p50_$conns]}") / $(med "${R[cpp.p99_$conns]}")" \
    "$(med "${R[node.p50_$conns]}") / $(med "${R[node.p99_$conns]}")" ""
  row "warm, wrk -t2 -c$conns: socket errors, non-2xx" \
    "${R[cpp.sock$conns]}, ${R[cpp.non2xx$conns]}" "${R[node.sock$conns]}, ${R[node.non2xx$conns]}" ""
done
row "100 cold at once: database queries" "${R[cpp.burstq]}" "${R[node.burstq]}" ""
row "100 cold at once: last response (ms), ok" "${R[cpp.burstmax]}, ${R[cpp.burstok]}/100" \
  "${R[node.burstmax]}, ${R[node.burstok]}/100" ""
row "POST, then GET on another connection: new" "${R[cpp.post]}" "${R[node.post]}" ""
echo
echo "each run, req/s at -c32: products_api${R[cpp.rps32]}; Express${R[node.rps32]}"
echo "each run, p99 ms at -c32: products_api${R[cpp.p99_32]}; Express${R[node.p99_32]}"
echo "1-minute load average before each wrk run: -c32${R[load32]}; -c1000${R[load1000]}"
echo "products_api GETs answered with an identical GET's response in progress (collapsed):" \
  "$(curl -fs "http://127.0.0.1:$CPP_PORT/metrics" | awk '/^products_api_collapsed_total /{print $2}')"
if [ -n "${R[errors]:-}" ]; then
  echo "wrk socket errors: ${R[errors]}"
fi
echo "products_api responses not from the cache (MISS or Redis error) during the wrk runs:" \
  "${R[cpp.miss32]} at -c32, ${R[cpp.miss1000]} at -c1000"
