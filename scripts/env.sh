# Shared settings for pg_trickle's scripts. Source it; do not run it.
#
# Everything the project downloads or builds lives in one cache directory
# outside the repository, so a fresh clone reuses it and `git clean` never
# throws hours of builds away.  When running as root the cache defaults to
# /var/cache/pg_trickle rather than ~/.cache: root's home is mode 700 and the
# unprivileged OS user that runs PostgreSQL must be able to read the binaries.

if [ "$(id -u)" = 0 ]; then
    : "${PGT_CACHE:=/var/cache/pg_trickle}"
else
    : "${PGT_CACHE:=${XDG_CACHE_HOME:-$HOME/.cache}/pg_trickle}"
fi
: "${PGT_PG_MAJOR:=18}"
: "${PGT_PREFIX:=$PGT_CACHE/pg$PGT_PG_MAJOR}"
: "${PGT_PG_CONFIG:=$PGT_PREFIX/bin/pg_config}"
: "${PGT_PGRX_VERSION:=0.18.0}"
# The OS user that owns data directories and runs postgres.
: "${PGT_OS_USER:=postgres}"
# The demo cluster started by `make run`.
: "${PGT_RUN_PORT:=28818}"
: "${PGT_RUN_PGDATA:=$PGT_CACHE/run-data}"
export PGT_CACHE PGT_PG_MAJOR PGT_PREFIX PGT_PG_CONFIG PGT_PGRX_VERSION PGT_OS_USER \
       PGT_RUN_PORT PGT_RUN_PGDATA
export PATH="$HOME/.cargo/bin:$PATH"

# Run a command as the unprivileged OS user when we are root.
as_pg_user() {
    if [ "$(id -u)" = 0 ]; then
        sudo -u "$PGT_OS_USER" -- "$@"
    else
        "$@"
    fi
}

log() { printf '==> %s\n' "$*" >&2; }
