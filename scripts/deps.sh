# Sourced by scripts/test (and the later run/bench scripts): installs the
# Debian packages grove's build needs, if any is missing. Runs apt-get update
# first, and only when something is missing.
grove_packages=(
  meson ninja-build g++ pkg-config ccache python3
  libboost1.81-dev libssl-dev openssl nlohmann-json3-dev libsimdjson-dev libsqlite3-dev zlib1g-dev doctest-dev libbenchmark-dev
  clang libclang-rt-14-dev
  testssl.sh bsdextrautils
  curl prometheus chromium erlang-nox
  etcd-server etcd-client
  gdb
)

# Extra packages (a benchmark's own, e.g. libcaf-dev) may be named as arguments.
grove_install_deps() {
  local missing=()
  local pkg
  for pkg in "${grove_packages[@]}" "$@"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
      missing+=("$pkg")
    fi
  done
  # Node.js and npm (for s3rver, the S3 fetcher's test server): Debian's,
  # unless the machine already has a node and an npm of its own.
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    missing+=(nodejs npm)
  fi
  [ "${#missing[@]}" -eq 0 ] && return 0
  echo "== installing: ${missing[*]}"
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
      sudo=(sudo)
    else
      echo "scripts: need root (or sudo) to install: ${missing[*]}" >&2
      return 1
    fi
  fi
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# s3rver (an S3-compatible server, for the remote_term S3 tests) at the
# versions tests/remote_term/s3rver/package-lock.json pins, under
# .cache/s3rver of the checkout given; reinstalled when the lock changes.
grove_install_s3rver() {
  local root=$1
  local lock="$root/tests/remote_term/s3rver/package-lock.json"
  local into="$root/.cache/s3rver"
  if [ -x "$into/node_modules/.bin/s3rver" ] && cmp -s "$lock" "$into/package-lock.json"; then
    return 0
  fi
  echo "== installing s3rver (npm ci) into $into"
  mkdir -p "$into"
  cp "$root/tests/remote_term/s3rver/package.json" "$lock" "$into/"
  (cd "$into" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
}
