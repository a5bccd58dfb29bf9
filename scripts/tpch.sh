#!/usr/bin/env bash
# `make tpch`: the 22 TPC-H queries as stream tables at scale factor
# $PGT_TPCH_SF (default 1): FULL vs DIFFERENTIAL refresh time per query
# after one cycle of 0.1% and one of 1% changes, the IMMEDIATE overhead on
# the refresh functions, and the check that every stream table equals its
# query after every cycle. Builds pg_trickle in release mode and runs a
# private cluster of the production build on port 28821.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/env.sh"
root=$(cd "$here/.." && pwd)
port=${PGT_TPCH_PORT:-28821}
data="$PGT_CACHE/tpch-data"

"$here/install.sh" --release >/dev/null
# On a production build of the same PostgreSQL, as make bench (see
# use_production_server in env.sh).
use_production_server
rm -rf "$data"
"$here/cluster.sh" start "$data" "$port"
trap '"$here/cluster.sh" stop "$data"' EXIT
cat >>"$data/postgresql.conf" <<CONF
shared_buffers = 1GB
work_mem = 64MB
maintenance_work_mem = 512MB
max_wal_size = 8GB
autovacuum = off
CONF
"$here/cluster.sh" start "$data" "$port"
"$PGT_PREFIX/bin/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -X -q \
    -c "ALTER SYSTEM SET pg_trickle.enabled = off" -c "SELECT pg_reload_conf()" >/dev/null
cd "$root"
PGT_TEST_PORT=$port PGT_TPCH_SF=${PGT_TPCH_SF:-1} \
    cargo test --release --features e2e --test e2e -- --ignored --nocapture --exact tpch::tpch_benchmark 2>&1 \
    | grep -v '^running\|^test result\|^$'
