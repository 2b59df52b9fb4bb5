#!/usr/bin/env bash
# Set up everything the tests need (Debian packages, Python environment, PostgreSQL), check the package
# layering and lint (failing the run when broken), and run the whole suite against SQLite (the embedded
# default), then against PostgreSQL every test whose outcome can depend on the database (the ones marked
# db_agnostic run on SQLite only: docs/ARCHITECTURE.md, Tests).
# Each run spreads its test files over SLIPWAY_TEST_WORKERS pytest-xdist workers (default 2; 0 runs them
# in this process, one after the other). Extra arguments go to pytest (e.g. -k registry).
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
# A file's tests stay together on one worker (--dist loadfile): they share its module's server.
workers=(-n "${SLIPWAY_TEST_WORKERS:-2}" --dist loadfile)
echo "== tests on SQLite"
SLIPWAY_TEST_DATABASE=sqlite .venv/bin/python -m pytest "${workers[@]}" "$@"
echo "== tests on PostgreSQL"
SLIPWAY_TEST_DATABASE=postgres .venv/bin/python -m pytest "${workers[@]}" "$@"
