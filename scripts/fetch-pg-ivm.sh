#!/usr/bin/env bash
# Install pg_ivm (for `make bench` only) into the PostgreSQL build: Debian's
# postgresql-18-pg-ivm binary package from the unstable suite, fetched with a
# private apt configuration (the machine's own mirror, as setup.sh does for
# the PostgreSQL source) and unpacked into the build's lib and share dirs.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/env.sh"
libdir=$("$PGT_PG_CONFIG" --pkglibdir)
sharedir=$("$PGT_PG_CONFIG" --sharedir)
[ -f "$libdir/pg_ivm.so" ] && [ -f "$sharedir/extension/pg_ivm.control" ] && exit 0

aptdir="$PGT_CACHE/apt-bin"
mkdir -p "$aptdir/lists/partial" "$aptdir/cache/archives/partial" "$aptdir/parts" "$aptdir/pkg"
mirror=$(awk '{print $3}' "$PGT_CACHE/apt/sources.list")
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror unstable main" >"$aptdir/sources.list"
opts=(-o "Dir::Etc::SourceList=$aptdir/sources.list" -o "Dir::Etc::SourceParts=$aptdir/parts"
      -o "Dir::State::Lists=$aptdir/lists" -o "Dir::Cache=$aptdir/cache" -o "APT::Sandbox::User=root")
log "fetching postgresql-$PGT_PG_MAJOR-pg-ivm (unstable)"
apt-get "${opts[@]}" update -qq
(cd "$aptdir/pkg" && rm -f ./*.deb && apt-get "${opts[@]}" download -qq "postgresql-$PGT_PG_MAJOR-pg-ivm")
rm -rf "$aptdir/x" && dpkg-deb -x "$aptdir"/pkg/*.deb "$aptdir/x"
cp "$aptdir/x/usr/lib/postgresql/$PGT_PG_MAJOR/lib/pg_ivm.so" "$libdir/"
cp "$aptdir/x/usr/share/postgresql/$PGT_PG_MAJOR/extension/"pg_ivm* "$sharedir/extension/"
chmod a+r "$libdir/pg_ivm.so" "$sharedir/extension/"pg_ivm*
