#!/usr/bin/env bash
# Builds the third-party versions the compatibility stage tests against, once, into a cache
# outside the clone: hiredis 1.2.0 and Catch2 3.7.1 (Debian 13), Redis 8.0.2 and Valkey 8.1.1
# (Debian 13), Redis 6.0.16 (Debian 11). Sources are the upstream tarballs of Debian's source
# packages, fetched from the archive this machine's apt already uses, checked against the
# SHA-256 the signed source index names, and built unpatched. A second run reuses the cache.
#
#   bash scripts/deps.sh [NAME...]   NAME: hiredis catch2 redis-8.0.2 valkey-8.1.1 redis-6.0.16
#                                    (default: all); prints nothing else on a warm cache.
#   CACHEASIDE_DEPS_CACHE            the cache (default ~/.cache/cacheaside-deps)
#
# Each NAME installs into $CACHEASIDE_DEPS_CACHE/NAME-VERSION; the servers into its bin/.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$root/scripts/lib.sh"

cache=${CACHEASIDE_DEPS_CACHE:-$HOME/.cache/cacheaside-deps}

# name -> "source-package/suite upstream-version"
declare -A spec=(
  [hiredis]="hiredis/trixie 1.2.0"
  [catch2]="catch2/trixie 3.7.1"
  [redis-8.0.2]="redis/trixie 8.0.2"
  [valkey-8.1.1]="valkey/trixie 8.1.1"
  [redis-6.0.16]="redis/bullseye 6.0.16"
)
names=("$@")
if [ "${#names[@]}" -eq 0 ]; then
  names=(hiredis catch2 redis-8.0.2 valkey-8.1.1 redis-6.0.16)
fi

# deps_prefix NAME: where NAME is (or will be) installed.
deps_prefix() {
  local version=${spec[$1]#* }
  echo "$cache/${1%%-*}-$version"
}

todo=()
for name in "${names[@]}"; do
  if [ -z "${spec[$name]:-}" ]; then
    echo "deps.sh: unknown name '$name' (known: ${!spec[*]})" >&2
    exit 2
  fi
  if [ ! -e "$(deps_prefix "$name")/.complete" ]; then
    todo+=("$name")
  fi
done
if [ "${#todo[@]}" -eq 0 ]; then
  exit 0
fi

install_packages dpkg-dev make gcc g++ pkg-config cmake ninja-build xz-utils
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9 # one build at a time per cache; a second caller waits, then finds the work done

# A private apt configuration that knows only Debian 13's and 11's source indexes; the
# system's own configuration is read for the archive's address only.
archive_uri() {
  local uri=""
  if [ -r /etc/apt/sources.list.d/debian.sources ]; then
    uri=$(awk 'tolower($1) == "uris:" { print $2; exit }' /etc/apt/sources.list.d/debian.sources)
  fi
  if [ -z "$uri" ] && [ -r /etc/apt/sources.list ]; then
    uri=$(awk '$1 == "deb" && $0 !~ /security/ {
                 for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' \
      /etc/apt/sources.list)
  fi
  if [ -z "$uri" ]; then
    echo "deps.sh: no Debian archive in /etc/apt/sources.list.d/debian.sources or sources.list" >&2
    return 1
  fi
  echo "${uri%/}"
}

apt_dir="$cache/apt"
mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/tarballs"
uri=$(archive_uri)
printf 'deb-src %s trixie main\ndeb-src %s bullseye main\n' "$uri" "$uri" \
  >"$apt_dir/sources.list.new"
apt_opts=(-o "Dir::Etc::sourcelist=$apt_dir/sources.list" -o Dir::Etc::sourceparts=-
  -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache"
  -o APT::Sandbox::User=root)
if ! cmp -s "$apt_dir/sources.list.new" "$apt_dir/sources.list" ||
  [ -z "$(find "$apt_dir/lists" -maxdepth 1 -name '*Sources*' -print -quit)" ]; then
  mv "$apt_dir/sources.list.new" "$apt_dir/sources.list"
  echo "== deps: reading the source indexes of Debian 13 and 11"
  apt-get "${apt_opts[@]}" -qq update
fi
rm -f "$apt_dir/sources.list.new"

# fetch_orig SOURCE/SUITE VERSION: prints the path of the verified upstream tarball. The index
# may name a newer Debian revision than the archive serves, so only the orig tarball is
# fetched: it is all an unpatched build needs.
fetch_orig() {
  local line url file hash
  line=$(apt-get "${apt_opts[@]}" -qq source --print-uris "$1" 2>/dev/null |
    grep -E "^'[^']*/[^/']*\.orig\.tar\.(gz|xz|bz2)' " | head -n 1) || true
  if [ -z "$line" ]; then
    echo "deps.sh: the archive's index names no upstream tarball for $1" >&2
    return 1
  fi
  read -r url file _ hash <<<"$line"
  url=${url//\'/}
  case "$file" in
    *_"$2".orig.* | *_"$2"+*.orig.*) ;;
    *)
      echo "deps.sh: $1 is $file in the archive, not version $2" >&2
      return 1
      ;;
  esac
  if [ ! -s "$apt_dir/tarballs/$file" ]; then
    # Explicit returns: errexit is off in the caller's `if`.
    /usr/lib/apt/apt-helper -o APT::Sandbox::User=root download-file "$url" \
      "$apt_dir/tarballs/$file.part" "$hash" >&2 || return 1
    mv "$apt_dir/tarballs/$file.part" "$apt_dir/tarballs/$file" || return 1
  fi
  echo "$apt_dir/tarballs/$file"
}

# unpack TARBALL DIR: a fresh DIR holding the tarball's top-level folder's contents.
unpack() {
  rm -rf "$2"
  mkdir -p "$2"
  tar -xf "$1" -C "$2" --strip-components=1
}

build_hiredis() { # $1 source, $2 prefix
  cmake -S "$1" -B "$1/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$2" \
    -DCMAKE_INSTALL_LIBDIR=lib -DDISABLE_TESTS=ON -DENABLE_SSL=OFF
  cmake --build "$1/build" -j 2
  cmake --install "$1/build"
}

build_catch2() {
  cmake -S "$1" -B "$1/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$2" \
    -DCMAKE_INSTALL_LIBDIR=lib -DBUILD_TESTING=OFF -DCATCH_INSTALL_DOCS=OFF \
    -DCATCH_INSTALL_EXTRAS=ON -DCMAKE_POSITION_INDEPENDENT_CODE=ON
  cmake --build "$1/build" -j 2
  cmake --install "$1/build"
}

# Redis and Valkey: the server alone, no TLS, no systemd, libc malloc (the tests need
# behaviour, not allocator speed, and it saves building jemalloc).
build_server() {
  make -C "$1" -j 2 BUILD_TLS=no USE_SYSTEMD=no MALLOC=libc
  make -C "$1" PREFIX="$2" install
}

for name in "${todo[@]}"; do
  prefix=$(deps_prefix "$name")
  if [ -e "$prefix/.complete" ]; then
    continue # another run built it while this one waited for the lock
  fi
  read -r source version <<<"${spec[$name]}"
  started=$(date +%s)
  echo "== deps: building $name from Debian source package $source"
  # Indexes read on an earlier run may name a tarball the archive has since replaced: reread.
  if ! tarball=$(fetch_orig "$source" "$version"); then
    apt-get "${apt_opts[@]}" -qq update
    tarball=$(fetch_orig "$source" "$version")
  fi
  work="$cache/build/$name"
  log="$cache/build/$name.log"
  unpack "$tarball" "$work"
  rm -rf "$prefix"
  case "$name" in
    hiredis) builder=build_hiredis ;;
    catch2) builder=build_catch2 ;;
    *) builder=build_server ;;
  esac
  if ! "$builder" "$work" "$prefix" >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "deps.sh: building $name failed; the whole log is $log" >&2
    exit 1
  fi
  rm -rf "$work"
  touch "$prefix/.complete"
  echo "== deps: $name $version installed in $prefix ($(($(date +%s) - started)) s)"
done
