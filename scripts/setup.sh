#!/usr/bin/env bash
# Idempotent platform setup: Debian packages, PostgreSQL 18 built from the
# Debian unstable source package, cargo-pgrx, and an unprivileged OS user.
# Every step checks whether its result is already there and skips itself if
# so (installed packages, the built PostgreSQL with its stamp file, the
# cargo-pgrx version, the pgrx config), so running it again is cheap.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/env.sh"

mkdir -p "$PGT_CACHE"
chmod 755 "$PGT_CACHE"
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

# ---------------------------------------------------------------- packages
PACKAGES=(bison flex libreadline-dev zlib1g-dev libicu-dev libclang-dev clang
          pkg-config libssl-dev sudo make gcc bzip2 xz-utils ca-certificates
          default-jdk-headless libpostgresql-jdbc-java)
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# ---------------------------------------------------------------- OS user
if ! id "$PGT_OS_USER" >/dev/null 2>&1; then
    log "creating OS user $PGT_OS_USER"
    $SUDO useradd --system --user-group --home-dir /var/lib/postgresql --create-home \
        --shell /bin/bash "$PGT_OS_USER"
fi

# ---------------------------------------------------------------- PostgreSQL
# The Debian mirror comes from the machine's own apt sources; the unstable
# suite's source index is fetched into a private apt state under the cache,
# never touching the system's configuration.
debian_mirror() {
    local uri=""
    if compgen -G "/etc/apt/sources.list.d/*.sources" >/dev/null; then
        uri=$(awk 'tolower($1)=="uris:" {for (i=2;i<=NF;i++) print $i}' /etc/apt/sources.list.d/*.sources \
              | grep -v -- '-security' | grep -E '/debian/?$' | head -n1 || true)
    fi
    if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
        uri=$(awk '$1=="deb" {for (i=2;i<=NF;i++) if ($i ~ /^[a-z]+:\/\//) {print $i; break}}' /etc/apt/sources.list \
              | grep -v -- '-security' | head -n1 || true)
    fi
    [ -n "$uri" ] || { echo "cannot find a Debian mirror in the apt sources" >&2; exit 1; }
    echo "${uri%/}"
}

fetch_pg_source() {
    local aptdir="$PGT_CACHE/apt" srcdir="$PGT_CACHE/src"
    mkdir -p "$aptdir/lists/partial" "$aptdir/cache/archives/partial" "$aptdir/sources.list.d" \
             "$aptdir/preferences.d" "$srcdir"
    local keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    echo "deb-src [signed-by=$keyring] $(debian_mirror) unstable main" > "$aptdir/sources.list"
    local opts=(-o "Dir::Etc::SourceList=$aptdir/sources.list"
                -o "Dir::Etc::SourceParts=$aptdir/sources.list.d"
                -o "Dir::Etc::PreferencesParts=$aptdir/preferences.d"
                -o "Dir::State::Lists=$aptdir/lists"
                -o "Dir::Cache=$aptdir/cache"
                -o "APT::Sandbox::User=root")
    log "fetching the postgresql-$PGT_PG_MAJOR source index (unstable)"
    apt-get "${opts[@]}" update -qq
    (cd "$srcdir" && apt-get "${opts[@]}" source --download-only -qq "postgresql-$PGT_PG_MAJOR")
}

if [ ! -x "$PGT_PREFIX/bin/postgres" ] || [ ! -f "$PGT_CACHE/stamp-pg-installed" ]; then
    srcdir="$PGT_CACHE/src"
    orig=$(ls "$srcdir"/postgresql-"$PGT_PG_MAJOR"_*.orig.tar.* 2>/dev/null | head -n1 || true)
    if [ -z "$orig" ]; then
        fetch_pg_source
        orig=$(ls "$srcdir"/postgresql-"$PGT_PG_MAJOR"_*.orig.tar.* | head -n1)
    fi
    log "building PostgreSQL from $(basename "$orig")"
    build_postgres "$orig" "$PGT_PREFIX" "$PGT_CACHE/build" --enable-debug --enable-cassert
    touch "$PGT_CACHE/stamp-pg-installed"
fi

# ---------------------------------------------------------------- cargo-pgrx
if ! cargo pgrx --version 2>/dev/null | grep -q " $PGT_PGRX_VERSION"; then
    log "installing cargo-pgrx $PGT_PGRX_VERSION"
    cargo install --locked cargo-pgrx --version "$PGT_PGRX_VERSION"
fi
if ! grep -qs "pg$PGT_PG_MAJOR = \"$PGT_PG_CONFIG\"" "$HOME/.pgrx/config.toml"; then
    log "cargo pgrx init --pg$PGT_PG_MAJOR=$PGT_PG_CONFIG"
    cargo pgrx init --pg"$PGT_PG_MAJOR"="$PGT_PG_CONFIG"
fi
log "setup complete: PostgreSQL $("$PGT_PG_CONFIG" --version), $(cargo pgrx --version)"
