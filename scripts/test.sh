#!/usr/bin/env bash
# Set up everything the tests need (Debian packages, Python environment, PostgreSQL), check the package
# layering and lint (failing the run when broken), and run the whole suite: once against SQLite (the
# embedded default) and once against PostgreSQL.
# Extra arguments go to pytest (e.g. -k registry).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh test
# The package layering (import-linter contracts in pyproject.toml) and ruff, before any test runs.
echo "== lint: package layers (import-linter)"
.venv/bin/lint-imports --no-cache
echo "== lint: ruff"
.venv/bin/ruff check --no-cache .
bash scripts/postgres.sh
export SLIPWAY_TEST_PG_ADMIN_URL="postgresql://slipway:slipway@127.0.0.1:5432/postgres"
echo "== tests on SQLite"
SLIPWAY_TEST_DATABASE=sqlite .venv/bin/python -m pytest "$@"
echo "== tests on PostgreSQL"
SLIPWAY_TEST_DATABASE=postgres .venv/bin/python -m pytest "$@"
