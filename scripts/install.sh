#!/usr/bin/env bash
# Build pg_trickle and install it into the PostgreSQL 18 build.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/env.sh"
cd "$here/.."
# A running server must not have its library overwritten under it (its
# processes map the file): stop the `make run` cluster; `make run` restarts it.
"$here/cluster.sh" stop "$PGT_RUN_PGDATA"
log "building and installing pg_trickle ${1:-(debug)}"
cargo pgrx install --pg-config "$PGT_PG_CONFIG" "$@" 2>&1 | sed 's/\x1b\[[0-9;]*m//g' \
    | grep -vE '^\s*(Compiling|Copying|Discovered|Writing|Finished|Using|Building|Running|Installing)' || true
test -f "$("$PGT_PG_CONFIG" --pkglibdir)/pg_trickle.so"
