#!/usr/bin/env bash
# Install what Slipway needs on Debian 12 (run as root), then the Python environment in .venv.
#   scripts/install.sh runtime   - to run Slipway (embedded default: SQLite + local files)
#   scripts/install.sh clients   - runtime, plus the clients the README's tour uses (podman, skopeo, curl)
#   scripts/install.sh test      - to run the test suite (adds skopeo, podman, PostgreSQL, sshd, ...)
#   scripts/install.sh bench     - to run the benchmarks (adds docker-registry, wrk)
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-runtime}"

runtime_packages=(python3 python3-venv python3-pip git ca-certificates buildah fuse-overlayfs uidmap slirp4netns
                  runc iproute2 util-linux openssh-client)
client_packages=(skopeo podman curl)
test_packages=(skopeo podman curl postgresql openssh-server busybox-static procps gcc libc6-dev chromium chromium-driver)
bench_packages=(docker-registry wrk apache2-utils)

packages=("${runtime_packages[@]}")
case "$mode" in
  runtime) ;;
  clients) packages+=("${client_packages[@]}") ;;
  test) packages+=("${test_packages[@]}") ;;
  bench) packages+=("${test_packages[@]}" "${bench_packages[@]}") ;;
  *) echo "usage: $0 runtime|clients|test|bench" >&2; exit 2 ;;
esac

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "Missing Debian packages: ${missing[*]}. Run this script as root (or: sudo $0 $mode)." >&2
    exit 1
  fi
  echo "Installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Wait (up to 10 min) for another apt/dpkg run to finish instead of failing at once.
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Builds run buildah rootless as this unprivileged user, with a subordinate uid/gid range of its own
# (uid 0 inside a build is an unprivileged uid on the host): see "Builds" in docs/ARCHITECTURE.md.
build_user=slipway-build
if [ "$(id -u)" -eq 0 ]; then
  if ! id "$build_user" >/dev/null 2>&1; then
    useradd --system --home-dir /var/lib/$build_user --create-home --shell /usr/sbin/nologin "$build_user"
  fi
  # Its home holds buildah's own settings and caches and, by default, Slipway's build storage.
  install -d -o "$build_user" -g "$build_user" -m 0755 "/var/lib/$build_user"
  if ! grep -q "^$build_user:" /etc/subuid; then usermod --add-subuids 524288-589823 "$build_user"; fi
  if ! grep -q "^$build_user:" /etc/subgid; then usermod --add-subgids 524288-589823 "$build_user"; fi
fi

# Debian's Python, not whatever python3 happens to be first on PATH.
python=/usr/bin/python3
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
# Optional dependencies are pyproject.toml extras (postgres, s3, docker, uvloop): the tests use them
# all; running Slipway takes uvloop and, once the package is in, what the configuration names
# (SLIPWAY_CONFIG / SLIPWAY_* : a PostgreSQL database, S3 storage, the docker build backend).
case "$mode" in
  test) extras="test,postgres,s3,docker,uvloop" ;;
  bench) extras="test,postgres,s3,docker,uvloop,bench" ;;
  *) extras="uvloop" ;;
esac
stamp=".venv/.installed-$mode-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e ".[$extras]"
  touch "$stamp"
fi
case "$mode" in
  runtime|clients)
    configured="$(.venv/bin/python -m slipway.extras 2>/dev/null || echo uvloop)"
    stamp=".venv/.installed-extras-${configured//,/-}-$(sha256sum pyproject.toml | cut -c1-16)"
    if [ ! -f "$stamp" ]; then
      echo "Installing the Python extras the configuration uses: $configured"
      .venv/bin/pip install -q -e ".[$configured]"
      touch "$stamp"
    fi
    ;;
esac

# The scanner's end-to-end test installs old Python releases (tests/scanner/old-wheels.txt) with
# `pip install --target` into an image layer, offline: their wheels are fetched from PyPI once, here.
case "$mode" in
  test|bench)
    wheels=.cache/scanner-wheels
    if ! .venv/bin/pip download -q --no-deps --only-binary=:all: --no-index --find-links "$wheels" -d "$wheels" \
         -r tests/scanner/old-wheels.txt >/dev/null 2>&1; then
      echo "Downloading the wheels of the scanner's tests into $wheels"
      .venv/bin/pip download -q --no-deps --only-binary=:all: -d "$wheels" -r tests/scanner/old-wheels.txt
    fi
    ;;
esac
