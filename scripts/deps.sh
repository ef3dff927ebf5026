# Sourced by scripts/test (and the later run/bench scripts): installs the
# Debian packages grove's build needs, if any is missing. Runs apt-get update
# first, and only when something is missing.
grove_packages=(
  meson ninja-build g++ pkg-config ccache python3
  libboost1.81-dev libssl-dev openssl nlohmann-json3-dev libsimdjson-dev libsqlite3-dev zlib1g-dev doctest-dev libbenchmark-dev
  clang libclang-rt-14-dev
  testssl.sh bsdextrautils
)

grove_install_deps() {
  local missing=()
  local pkg
  for pkg in "${grove_packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
      missing+=("$pkg")
    fi
  done
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
