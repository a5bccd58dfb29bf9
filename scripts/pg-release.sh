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
    build_postgres "$orig" "$prefix" "$PGT_CACHE/build-release" >&2
    touch "$PGT_CACHE/stamp-pg-release-installed"
fi
echo "$prefix"
