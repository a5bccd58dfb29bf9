#!/usr/bin/env bash
# Manage a local PostgreSQL 18 cluster with pg_trickle preloaded.
#   cluster.sh start DATADIR PORT   initdb if needed, then start (idempotent)
#   cluster.sh stop DATADIR         stop if running
# The cluster runs as $PGT_OS_USER, listens on 127.0.0.1:PORT only, and
# trusts local connections: it is for development and tests.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/env.sh"

cmd=${1:?usage: cluster.sh start|stop DATADIR [PORT]}
datadir=${2:?data directory}
# (A data directory right under / is a path whose prefix expanded to
# nothing, such as "$PGT_CACHE/run-data" in a shell without env.sh: a
# cluster there would take the port of the one meant.)
if [ "$(dirname "$datadir")" = / ]; then
    echo "cluster.sh: refusing data directory $datadir directly under /" >&2
    exit 2
fi
bin="$PGT_PREFIX/bin"

case "$cmd" in
start)
    port=${3:?port}
    if [ ! -f "$datadir/PG_VERSION" ]; then
        mkdir -p "$datadir"
        chown "$PGT_OS_USER": "$datadir" 2>/dev/null || true
        chmod 700 "$datadir"
        as_pg_user "$bin/initdb" -D "$datadir" -U postgres --auth=trust --no-instructions \
            --encoding=UTF8 --locale=C.UTF-8 >/dev/null
        cat >>"$datadir/postgresql.conf" <<CONF

# pg_trickle development cluster
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '/tmp'
shared_preload_libraries = 'pg_trickle, pg_stat_statements'
max_connections = 100
fsync = off
log_min_messages = warning
CONF
    fi
    # The launcher, and one scheduler per database with scheduled stream
    # tables (the tests create many databases).
    grep -q '^max_worker_processes' "$datadir/postgresql.conf" ||
        echo "max_worker_processes = 64" >>"$datadir/postgresql.conf"
    sed -i 's/^max_worker_processes = 32$/max_worker_processes = 64/' "$datadir/postgresql.conf"
    if as_pg_user "$bin/pg_ctl" -D "$datadir" status >/dev/null 2>&1; then
        # Running: restart so a freshly installed library is loaded.
        as_pg_user "$bin/pg_ctl" -D "$datadir" -l "$datadir/server.log" -w -m fast restart >/dev/null
    else
        as_pg_user "$bin/pg_ctl" -D "$datadir" -l "$datadir/server.log" -w start >/dev/null
    fi
    ;;
stop)
    if [ -f "$datadir/PG_VERSION" ] && as_pg_user "$bin/pg_ctl" -D "$datadir" status >/dev/null 2>&1; then
        as_pg_user "$bin/pg_ctl" -D "$datadir" -w -m fast stop >/dev/null
    fi
    ;;
*)
    echo "usage: cluster.sh start|stop DATADIR [PORT]" >&2
    exit 2
    ;;
esac
