#!/usr/bin/env bash
# A production build of the same PostgreSQL (no --enable-cassert), for
# `make bench` only: the development build checks assertions in every
# backend (memory context checks at every transaction end, tuple and btree
# checks), which inflates some costs far more than others and would make
# the benchmark's ratios say more about assertions than about pg_trickle.
# Built once from the source setup.sh fetched, into $PGT_CACHE/pg18-release
# (cached: an existing build is reused). Prints its prefix.
#
# pg_trickle itself is built by pgrx against the development build; the
# same major version's production server loads that library (neither the
# ABI nor the module magic depends on assertions).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/env.sh"
prefix="$PGT_CACHE/pg$PGT_PG_MAJOR-release"
if [ ! -x "$prefix/bin/postgres" ] || [ ! -f "$PGT_CACHE/stamp-pg-release-installed" ]; then
    orig=$(ls "$PGT_CACHE/src"/postgresql-"$PGT_PG_MAJOR"_*.orig.tar.* 2>/dev/null | head -n1 || true)
    [ -n "$orig" ] || { "$here/setup.sh" >&2; orig=$(ls "$PGT_CACHE/src"/postgresql-"$PGT_PG_MAJOR"_*.orig.tar.* | head -n1); }
    log "building a production PostgreSQL from $(basename "$orig") for the benchmarks (once)"
    build="$PGT_CACHE/build-release"
    rm -rf "$build"
    mkdir -p "$build"
    tar -xf "$orig" -C "$build" --strip-components=1
    (
        cd "$build"
        ./configure --prefix="$prefix" --with-icu --with-openssl --without-llvm CFLAGS="-O2 -g" >configure.log
        make -s -j"$(nproc)" >build.log 2>&1 || { tail -50 build.log; exit 1; }
        make -s install >install.log 2>&1
        for c in pg_stat_statements pgcrypto; do
            make -s -C "contrib/$c" install >>install.log 2>&1
        done
    ) >&2
    chmod -R a+rX "$prefix"
    touch "$PGT_CACHE/stamp-pg-release-installed"
    rm -rf "$build"
fi
echo "$prefix"
