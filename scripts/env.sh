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

# Build PostgreSQL from the source tarball $1 into prefix $2 (work dir $3),
# configured with the remaining arguments on top of the common ones, with
# the contrib modules the clusters preload; a stamp file is the caller's.
build_postgres() {
    local orig=$1 prefix=$2 build=$3
    shift 3
    rm -rf "$build"
    mkdir -p "$build"
    tar -xf "$orig" -C "$build" --strip-components=1
    (
        cd "$build"
        # Called from `make setup`, the environment carries the outer make's
        # MAKELEVEL: PostgreSQL generates its headers (utils/errcodes.h, ...)
        # only in a top-level make, and the build fails without them.
        unset MAKELEVEL MAKEFLAGS MFLAGS
        ./configure --prefix="$prefix" "$@" --with-icu --with-openssl --without-llvm CFLAGS="-O2 -g" >configure.log
        make -s -j"$(nproc)" >build.log 2>&1 || { tail -50 build.log; exit 1; }
        make -s install >install.log 2>&1
        for c in pg_stat_statements pgcrypto; do
            make -s -C "contrib/$c" install >>install.log 2>&1
        done
    )
    chmod -R a+rX "$prefix"
    rm -rf "$build"
}

# Point PGT_PREFIX and PGT_PG_CONFIG at a production build of the same
# PostgreSQL (scripts/pg-release.sh, built once) with pg_trickle as pgrx
# built it against the development build, for the benchmarks; unless
# PGT_BENCH_SERVER=development. Call after install.sh.
use_production_server() {
    [ "${PGT_BENCH_SERVER:-production}" = production ] || return 0
    local here release
    here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
    release=$("$here/pg-release.sh")
    # Copied beside, then renamed: a server running on the production build
    # keeps the file it mapped instead of crashing on a rewritten one.
    local lib
    lib=$("$release/bin/pg_config" --pkglibdir)
    cp "$("$PGT_PG_CONFIG" --pkglibdir)/pg_trickle.so" "$lib/pg_trickle.so.new"
    mv "$lib/pg_trickle.so.new" "$lib/pg_trickle.so"
    cp "$("$PGT_PG_CONFIG" --sharedir)/extension/"pg_trickle* "$("$release/bin/pg_config" --sharedir)/extension/"
    export PGT_PREFIX="$release" PGT_PG_CONFIG="$release/bin/pg_config"
}
