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
CARGO_TERM_COLOR=never NO_COLOR=1 cargo pgrx install --pg-config "$PGT_PG_CONFIG" "$@" 2>&1 | grep -vE '^\s+(Compiling|Copying|Discovered|Writing|Finished)' || true
test -f "$("$PGT_PG_CONFIG" --pkglibdir)/pg_trickle.so"
