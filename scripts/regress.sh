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
exec "$pg_regress" --bindir="$PGT_PREFIX/bin" --host=127.0.0.1 --port="$port" --user=postgres \
    --inputdir="$root/regress" --outputdir="$out" --dbname=pgt_regress \
    --load-extension=pg_trickle $tests
