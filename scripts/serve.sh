#!/usr/bin/env bash
# Set up (Debian packages, Python environment) and run Slipway on http://localhost:8080
# with the embedded default: SQLite and local files under ./slipway-data. Extra arguments go to
# `slipway serve` (e.g. --port 9000); settings also come from SLIPWAY_* variables or SLIPWAY_CONFIG.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh runtime
exec .venv/bin/slipway serve "$@"
