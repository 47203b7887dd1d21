# Shared by the scripts in this folder: idempotent package installs and a private redis-server.
# Source it; it defines functions only.

# install_packages PKG...: installs the Debian packages that are missing, as root or with sudo.
install_packages() {
  local missing=()
  local pkg
  for pkg in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$pkg")
    fi
  done
  if [ "${#missing[@]}" -eq 0 ]; then
    return 0
  fi
  echo "== installing: ${missing[*]}"
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
  fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
}

# start_redis: starts redis-server ($CACHEASIDE_REDIS_SERVER when set, e.g. a valkey-server) on
# a free loopback port, without persistence, and sets REDIS_PORT and REDIS_PID. The caller stops
# it with stop_redis (trap it on EXIT).
start_redis() {
  local attempt port
  local server=${CACHEASIDE_REDIS_SERVER:-redis-server}
  REDIS_DIR=$(mktemp -d)
  for attempt in 1 2 3 4 5 6 7 8 9 10; do
    port=$(( 20000 + RANDOM % 30000 ))
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      continue # something listens there already
    fi
    "$server" --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
      --dir "$REDIS_DIR" --logfile "$REDIS_DIR/redis.log" &
    REDIS_PID=$!
    local i
    for i in $(seq 1 200); do
      if redis-cli -p "$port" ping 2>/dev/null | grep -q PONG; then
        REDIS_PORT=$port
        echo "== redis-server pid $REDIS_PID on 127.0.0.1:$REDIS_PORT"
        return 0
      fi
      if ! kill -0 "$REDIS_PID" 2>/dev/null; then
        break # exited: the port was taken after all
      fi
      sleep 0.05
    done
    kill "$REDIS_PID" 2>/dev/null || true
    wait "$REDIS_PID" 2>/dev/null || true
  done
  echo "could not start $server" >&2
  return 1
}

# stop_redis: stops the server start_redis started, by its PID.
stop_redis() {
  if [ -n "${REDIS_PID:-}" ] && kill -0 "$REDIS_PID" 2>/dev/null; then
    kill "$REDIS_PID" 2>/dev/null || true
    wait "$REDIS_PID" 2>/dev/null || true
    echo "== redis-server pid $REDIS_PID stopped"
  fi
  REDIS_PID=""
  if [ -n "${REDIS_DIR:-}" ]; then
    rm -rf "$REDIS_DIR"
  fi
}

# start_cluster: starts a Redis Cluster of 3 masters and 3 replicas ($CACHEASIDE_REDIS_SERVER
# or redis-server) on free loopback ports, without persistence, creates it with redis-cli
# --cluster create, waits (30 s at most) until every node reports cluster_state:ok, and sets
# CLUSTER_PORT (a seed) and CLUSTER_PIDS. The caller stops it with stop_cluster.
start_cluster() {
  local server=${CACHEASIDE_REDIS_SERVER:-redis-server}
  local ports=() port attempt i node_dir
  CLUSTER_DIR=$(mktemp -d)
  CLUSTER_PIDS=()
  for i in 0 1 2 3 4 5; do
    for attempt in 1 2 3 4 5 6 7 8 9 10; do
      port=$(( 20000 + RANDOM % 30000 ))
      if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        continue
      fi
      node_dir="$CLUSTER_DIR/$i"
      mkdir -p "$node_dir"
      "$server" --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
        --repl-diskless-sync-delay 0 --cluster-enabled yes \
        --cluster-config-file "$node_dir/nodes.conf" \
        --cluster-node-timeout 2000 --dir "$node_dir" --logfile "$node_dir/redis.log" &
      local pid=$!
      local up=0 j
      for j in $(seq 1 200); do
        if redis-cli -p "$port" ping 2>/dev/null | grep -q PONG; then
          up=1
          break
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
          break
        fi
        sleep 0.05
      done
      if [ "$up" = 1 ]; then
        CLUSTER_PIDS+=("$pid")
        ports+=("$port")
        break
      fi
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    done
  done
  if [ "${#ports[@]}" -ne 6 ]; then
    echo "could not start 6 cluster nodes with $server" >&2
    stop_cluster
    return 1
  fi
  local addresses=()
  for port in "${ports[@]}"; do
    addresses+=("127.0.0.1:$port")
  done
  if ! redis-cli --cluster create "${addresses[@]}" --cluster-replicas 1 --cluster-yes \
    >"$CLUSTER_DIR/create.log" 2>&1; then
    cat "$CLUSTER_DIR/create.log" >&2
    stop_cluster
    return 1
  fi
  local deadline=$(( $(date +%s) + 30 )) ok
  while :; do
    ok=1
    for port in "${ports[@]}"; do
      if ! redis-cli -p "$port" cluster info 2>/dev/null | grep -q "cluster_state:ok"; then
        ok=0
        break
      fi
    done
    if [ "$ok" = 1 ]; then
      break
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
      echo "the cluster did not reach cluster_state:ok within 30 s" >&2
      stop_cluster
      return 1
    fi
    sleep 0.1
  done
  CLUSTER_PORT=${ports[0]}
  echo "== redis cluster pids ${CLUSTER_PIDS[*]} on 127.0.0.1:${ports[*]}"
}

# stop_cluster: stops every node start_cluster started, by PID.
stop_cluster() {
  local pid
  for pid in ${CLUSTER_PIDS[@]+"${CLUSTER_PIDS[@]}"}; do
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  if [ -n "${CLUSTER_PIDS[*]+x}" ] && [ "${#CLUSTER_PIDS[@]}" -gt 0 ]; then
    echo "== redis cluster pids ${CLUSTER_PIDS[*]} stopped"
  fi
  CLUSTER_PIDS=()
  if [ -n "${CLUSTER_DIR:-}" ]; then
    rm -rf "$CLUSTER_DIR"
  fi
  CLUSTER_DIR=""
}
