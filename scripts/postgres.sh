#!/usr/bin/env bash
# Start Debian's PostgreSQL cluster and make sure the test role exists. Prints nothing on success.
set -euo pipefail
version=$(ls /usr/lib/postgresql | sort -n | tail -1)
if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -q "^$version main$"; then
  pg_createcluster "$version" main >/dev/null
fi
if ! pg_lsclusters -h | awk '$1=="'"$version"'" && $2=="main" {print $4}' | grep -q online; then
  pg_ctlcluster "$version" main start
fi
for _ in $(seq 1 50); do
  su postgres -c "psql -qAtc 'select 1'" >/dev/null 2>&1 && break
  sleep 0.2
done
su postgres -c "psql -qAtc \"SELECT 1 FROM pg_roles WHERE rolname='slipway'\"" | grep -q 1 ||
  su postgres -c "psql -qc \"CREATE ROLE slipway LOGIN CREATEDB PASSWORD 'slipway'\""
# Leftover databases of earlier test runs.
for db in $(su postgres -c "psql -qAtc \"SELECT datname FROM pg_database WHERE datname LIKE 'slipway_test_%'\""); do
  su postgres -c "psql -qc 'DROP DATABASE \"$db\"'" >/dev/null
done
