#!/usr/bin/env bash
# README's main job: the products API (examples/products_api) with its GET responses cached in
# Redis. Installs what it needs (Debian 12), builds the service in Release (build/demo), starts
# its own redis-server and the service on free loopback ports with a fresh SQLite file, then
# shows: a first GET from the database (MISS), a second from Redis (HIT), the Redis key with
# redis-cli, a POST, and the next GET missing again. Stops everything it started, by PID.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

install_packages cmake ninja-build g++ pkg-config libhiredis-dev nlohmann-json3-dev catch2 \
  redis-server redis-tools libcpp-httplib-dev libsqlite3-dev libboost-dev curl

echo "== building products_api (Release, build/demo)"
cmake -S . -B build/demo -G Ninja -DCMAKE_BUILD_TYPE=Release -DCACHEASIDE_BUILD_TESTS=OFF \
  -DCACHEASIDE_BUILD_BENCHMARKS=OFF >/dev/null
cmake --build build/demo --target products_api | tail -n 1
service_bin="$root/build/demo/examples/products_api/products_api"

work=$(mktemp -d)
SERVICE_PID=""
stop_service() {
  if [ -n "$SERVICE_PID" ] && kill -0 "$SERVICE_PID" 2>/dev/null; then
    kill "$SERVICE_PID" 2>/dev/null || true
    wait "$SERVICE_PID" 2>/dev/null || true
    echo "== products_api pid $SERVICE_PID stopped"
  fi
  SERVICE_PID=""
}
cleanup() {
  stop_service
  stop_redis
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_redis

# The service on a free loopback port; retried if another program takes the port first.
start_service() {
  local _attempt _i
  for _attempt in 1 2 3 4 5 6 7 8 9 10; do
    API_PORT=$((20000 + RANDOM % 30000))
    if (exec 3<>"/dev/tcp/127.0.0.1/$API_PORT") 2>/dev/null; then
      continue
    fi
    "$service_bin" --port "$API_PORT" --redis "127.0.0.1:$REDIS_PORT" --db "$work/products.db" \
      --delay-ms 200 >"$work/service.log" 2>&1 &
    SERVICE_PID=$!
    for _i in $(seq 1 200); do
      if curl -fs "http://127.0.0.1:$API_PORT/healthz" >/dev/null 2>&1; then
        echo "== products_api pid $SERVICE_PID on http://127.0.0.1:$API_PORT" \
          "(SQLite $work/products.db, 200 ms query delay)"
        return 0
      fi
      if ! kill -0 "$SERVICE_PID" 2>/dev/null; then
        break
      fi
      sleep 0.05
    done
    cat "$work/service.log" >&2
    stop_service
  done
  echo "could not start products_api" >&2
  return 1
}
start_service
api="http://127.0.0.1:$API_PORT"

# request METHOD PATH [BODY]: prints status, time, size and X-Cache; leaves headers and body in
# $work/headers and $work/body, and the X-Cache value in $xcache.
request() {
  local method=$1 path=$2 body=${3:-}
  local args=(-s -X "$method" -o "$work/body" -D "$work/headers"
    -w '%{http_code} %{time_total} %{size_download}')
  if [ -n "$body" ]; then
    args+=(-H 'Content-Type: application/json' --data "$body")
  fi
  local out status seconds size
  out=$(curl "${args[@]}" "$api$path")
  read -r status seconds size <<<"$out"
  xcache=$(tr -d '\r' <"$work/headers" | awk -F': ' 'tolower($1) == "x-cache" { print $2 }')
  printf '   %s %s -> HTTP %s, %s bytes in %s ms, X-Cache: %s\n' "$method" "$path" "$status" \
    "$size" "$(awk -v s="$seconds" 'BEGIN { printf "%.1f", s * 1000 }')" "${xcache:--}"
}

expect() {
  if [ "$xcache" != "$1" ]; then
    echo "!! expected X-Cache: $1, got '${xcache}'" >&2
    exit 1
  fi
}

path="/api/products?category=books"
key="products_api:{GET $path}"

echo
echo "== 1. first GET: the list comes from SQLite (each query waits 200 ms)"
request GET "$path"
expect MISS
echo "   first product: $(head -c 90 "$work/body")..."

echo
echo "== 2. second GET: the same response, served from Redis"
request GET "$path"
expect HIT

echo
echo "== 3. the cached response in Redis (12-byte envelope header, response head, body)"
echo "   \$ redis-cli -p $REDIS_PORT --scan --pattern 'products_api:*'"
redis-cli -p "$REDIS_PORT" --scan --pattern 'products_api:*' | sed 's/^/   /'
echo "   \$ redis-cli -p $REDIS_PORT GET '$key'   (first 230 characters)"
echo "   $(redis-cli -p "$REDIS_PORT" --no-raw GET "$key" | cut -c1-230)..."
echo "   TTL: $(redis-cli -p "$REDIS_PORT" TTL "$key") s"

echo
echo "== 4. a write: POST a product in books (invalidates the item, the all list, books)"
request POST /api/products '{"name": "Demo field guide", "category": "books", "price": 19.9}'
echo "   $(cat "$work/body")"
id=$(sed -n 's/.*"id":\([0-9]*\).*/\1/p' "$work/body")
echo "   key still in Redis after the POST: $(redis-cli -p "$REDIS_PORT" EXISTS "$key")"

echo
echo "== 5. the next GET misses again and loads the new list"
request GET "$path"
expect MISS
if grep -q "\"id\":$id," "$work/body"; then
  echo "   the new product $id is in the list"
else
  echo "!! the new product $id is missing from the list" >&2
  exit 1
fi
request GET "$path"
expect HIT

echo
echo "== 6. GET /metrics (excerpt)"
curl -s "$api/metrics" | grep -E '^(cacheaside_(hits|misses|loads|redis_errors)_total|products_api_db)' |
  sed 's/^/   /'

echo
echo "== done; stopping what this script started"
