#!/usr/bin/env bash
# `make test`: every test suite, in order, with one closing count.
#   1. cargo test            pure Rust unit tests (no server)
#   2. cargo pgrx test       #[pg_test]s inside a backend
#   3. pg_regress            regress/sql/*.sql against regress/expected/*.out
#   4. end-to-end            tests/*.rs against a running server (pg_dump, JDBC, ...)
# Exits non-zero if anything failed; the last line is "N passed, N failed".
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/env.sh"
root=$(cd "$here/.." && pwd)
cd "$root"

logs="$root/target/test-logs"
mkdir -p "$logs"
passed=0
failed=0
status=0

# Sum cargo's "test result: ... N passed; M failed" lines from a log.
count_cargo() {
    local p f
    read -r p f < <(awk '/^test result:/ {
            for (i = 1; i <= NF; i++) {
                if ($(i+1) ~ /^passed/) p += $i
                if ($(i+1) ~ /^failed/) f += $i
            }
        } END { print p + 0, f + 0 }' "$1")
    passed=$((passed + p))
    failed=$((failed + f))
}

phase() {
    local name=$1; shift
    log "$name"
    local start=$SECONDS
    if "$@" >"$logs/$name.log" 2>&1; then
        log "$name: ok ($((SECONDS - start))s)"
    else
        log "$name: FAILED ($((SECONDS - start))s), last lines of $logs/$name.log:"
        tail -n 60 "$logs/$name.log" >&2
        status=1
        # A phase that failed without reporting a failed test still counts once.
        if ! grep -qE '^test result: FAILED|^not ok' "$logs/$name.log"; then
            failed=$((failed + 1))
        fi
    fi
}

# The pgrx and install phases replace the installed library: stop the
# `make run` cluster first (a running server must not have it overwritten).
"$here/cluster.sh" stop "$PGT_RUN_PGDATA"

phase cargo-test cargo test --lib
count_cargo "$logs/cargo-test.log"

pgrx_data="$PGT_CACHE/pgrx-test"
mkdir -p "$pgrx_data" && chown "$PGT_OS_USER": "$pgrx_data" 2>/dev/null || true
rm -rf "$pgrx_data/data"
runas=()
[ "$(id -u)" = 0 ] && runas=(--runas "$PGT_OS_USER")
phase pgrx-test cargo pgrx test pg18 "${runas[@]}" --pgdata "$pgrx_data/data"
count_cargo "$logs/pgrx-test.log"

# Phases 3 and 4 share one temporary cluster with the installed extension.
phase install "$here/install.sh"
test_port=${PGT_TEST_PORT:-28819}
test_data=$(mktemp -d /tmp/pgt-test-XXXXXX)
chown "$PGT_OS_USER": "$test_data" 2>/dev/null || true
cleanup() { "$here/cluster.sh" stop "$test_data/data" >/dev/null 2>&1; rm -rf "$test_data"; }
trap cleanup EXIT
if "$here/cluster.sh" start "$test_data/data" "$test_port" >"$logs/cluster.log" 2>&1; then
    phase regress "$here/regress.sh" "$test_port"
    passed=$((passed + $(grep -cE '^ok [0-9]+' "$logs/regress.log")))
    failed=$((failed + $(grep -cE '^not ok [0-9]+' "$logs/regress.log")))

    export PGT_TEST_PORT=$test_port
    phase e2e cargo test --features e2e --test e2e -- --test-threads=2
    count_cargo "$logs/e2e.log"
    # Restarts the server: runs alone, last.
    PGT_TEST_DATADIR="$test_data/data" phase e2e-restart \
        cargo test --features e2e --test e2e -- --ignored scheduling_resumes_after_a_server_restart
    count_cargo "$logs/e2e-restart.log"
else
    log "could not start the test cluster:"; cat "$logs/cluster.log" >&2
    status=1; failed=$((failed + 1))
fi

echo
echo "$passed passed, $failed failed"
exit $status
