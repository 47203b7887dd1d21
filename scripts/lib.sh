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
