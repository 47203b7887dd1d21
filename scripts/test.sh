#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what it needs, starts a private redis-server and
# a private Redis Cluster (3 masters, 3 replicas), checks formatting, then builds and tests every
# configuration (GCC C++17, Clang C++20, ASan+UBSan, TSan; the cluster-chaos and near-coherence
# labels in the first only), then the compatibility stage: GCC C++17 against hiredis 1.2.0 and
# Catch2 3.7.1, its integration tests against every server in SERVERS (built once by
# scripts/deps.sh into $CACHEASIDE_DEPS_CACHE, default ~/.cache/cacheaside-deps); the server and
# the cluster are restarted as each of them.
#   PRESETS="dev"                          fewer configurations; without "compat", no stage
#   SERVERS="redis-7.0.15 valkey-8.1.1"    the stage's servers (default: all four below)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

install_packages cmake ninja-build g++ clang pkg-config clang-format libhiredis-dev \
  nlohmann-json3-dev catch2 redis-server redis-tools libcpp-httplib-dev libsqlite3-dev curl \
  libmsgpack-cxx-dev liblz4-dev libzstd-dev libboost-dev

presets=${PRESETS:-gcc-cxx17 clang-cxx20 asan tsan compat}
# redis-7.0.15 is Debian 12's redis-server; the others come from scripts/deps.sh.
servers=${SERVERS:-redis-7.0.15 redis-8.0.2 valkey-8.1.1 redis-6.0.16}
deps_cache=${CACHEASIDE_DEPS_CACHE:-$HOME/.cache/cacheaside-deps}
export CACHEASIDE_DEPS_CACHE=$deps_cache

# server_binary NAME: the server binary for a SERVERS entry.
server_binary() {
  case "$1" in
    redis-7.0.15) command -v redis-server ;;
    redis-*) echo "$deps_cache/$1/bin/redis-server" ;;
    valkey-*) echo "$deps_cache/$1/bin/valkey-server" ;;
    *)
      echo "unknown server '$1' (known: redis-7.0.15 redis-8.0.2 valkey-8.1.1 redis-6.0.16)" >&2
      return 1
      ;;
  esac
}

# use_server NAME: (re)starts the shared test server and the shared test cluster (3 masters,
# 3 replicas) as NAME; tests' private servers and clusters follow.
use_server() {
  stop_redis
  stop_cluster
  CACHEASIDE_REDIS_SERVER=$(server_binary "$1")
  export CACHEASIDE_REDIS_SERVER
  start_redis
  export CACHEASIDE_TEST_REDIS="127.0.0.1:$REDIS_PORT"
  start_cluster
  export CACHEASIDE_TEST_CLUSTER="127.0.0.1:$CLUSTER_PORT"
  echo "== server: $("$CACHEASIDE_REDIS_SERVER" --version)"
}

trap 'stop_redis; stop_cluster' EXIT
trap 'exit 130' INT TERM

bash scripts/check-format.sh

# compat_stage: builds the compat preset against the cached hiredis 1.2.0 and Catch2 3.7.1,
# runs the whole suite against the first server and the integration tests against the rest.
compat_stage() {
  local deps=(hiredis catch2) server
  for server in $servers; do
    server_binary "$server" >/dev/null
    if [ "$server" != redis-7.0.15 ]; then
      deps+=("$server")
    fi
  done
  local stage_started
  stage_started=$(date +%s)
  bash scripts/deps.sh "${deps[@]}"
  echo "== compat: third-party builds ready in $(($(date +%s) - stage_started)) s"
  cmake --preset compat \
    -DCMAKE_PREFIX_PATH="$deps_cache/hiredis-1.2.0;$deps_cache/catch2-3.7.1" >/dev/null
  cmake --build --preset compat -j 2
  # The build really used them, not Debian's hiredis 0.14 and Catch2 2.13.
  local libs # not piped into grep -q: its early exit fails the pipeline under pipefail
  libs=$(ldd build/compat/tests/integration_tests)
  if [[ "$libs" != *"$deps_cache/hiredis-1.2.0/lib/"* ]]; then
    echo "compat: integration_tests is not linked against hiredis 1.2.0" >&2
    return 1
  fi
  if ! grep -q "^Catch2_DIR:PATH=$deps_cache/catch2-3.7.1/" build/compat/CMakeCache.txt; then
    echo "compat: the build did not find Catch2 3.7.1" >&2
    return 1
  fi
  local failed=() labels=()
  for server in $servers; do
    echo "== compat: hiredis 1.2.0, Catch2 3.7.1, $server"
    use_server "$server"
    if ! ctest --preset compat -LE "cluster-chaos|near-coherence" "${labels[@]}"; then
      failed+=("$server")
    fi
    labels=(-L integration) # unit and packaging tests do not depend on the server
  done
  use_server redis-7.0.15
  echo "== compat: stage took $(($(date +%s) - stage_started)) s"
  if [ "${#failed[@]}" -gt 0 ]; then
    echo "compat: tests failed against: ${failed[*]}" >&2
    return 1
  fi
}

use_server redis-7.0.15
started=$(date +%s)
chaos_preset=${presets%% *}
for preset in $presets; do
  if [ "$preset" = compat ]; then
    compat_stage
    continue
  fi
  echo "== $preset: configure, build, test"
  cmake --preset "$preset" >/dev/null
  cmake --build --preset "$preset" -j 2
  # Failover and resharding under load (~20 s) and the near-cache coherence run (12 s) run in
  # the first configuration only.
  if [ "$preset" = "$chaos_preset" ]; then
    ctest --preset "$preset"
  else
    ctest --preset "$preset" -LE "cluster-chaos|near-coherence"
  fi
done
echo "== all configurations passed in $(($(date +%s) - started)) s"
