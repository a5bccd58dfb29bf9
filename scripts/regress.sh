#!/usr/bin/env bash
# Run the pg_regress suite against the server on 127.0.0.1:$1.
# The client runs as the invoking user; the server belongs to $PGT_OS_USER.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/env.sh"
root=$(cd "$here/.." && pwd)
port=${1:?port}
out="$root/target/regress"
rm -rf "$out" && mkdir -p "$out"
tests=$(cd "$root/regress/sql" && ls *.sql | sed 's/\.sql$//' | sort)
pg_regress="$("$PGT_PG_CONFIG" --pkglibdir)/pgxs/src/test/regress/pg_regress"
# Expected outputs must not depend on when a background refresh happens:
# the schedulers are paused for the run (the scheduler has end-to-end tests).
psql=("$PGT_PREFIX/bin/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -X -q)
"${psql[@]}" -c "ALTER SYSTEM SET pg_trickle.enabled = off" -c "SELECT pg_reload_conf()" >/dev/null
trap '"${psql[@]}" -c "ALTER SYSTEM RESET pg_trickle.enabled" -c "SELECT pg_reload_conf()" >/dev/null' EXIT
"$pg_regress" --bindir="$PGT_PREFIX/bin" --host=127.0.0.1 --port="$port" --user=postgres \
    --inputdir="$root/regress" --outputdir="$out" --dbname=pgt_regress \
    --load-extension=pg_trickle $tests
