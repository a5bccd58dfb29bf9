#!/usr/bin/env bash
# `make bench`: measured performance, as ratios against baselines measured in
# the same run. Builds pg_trickle in release mode into the PostgreSQL build
# and runs a private cluster on port 28820.
#
# Change capture write amplification: the same workload on a table without
# and with a stream table consuming its changes.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/env.sh"
port=${PGT_BENCH_PORT:-28820}
data="$PGT_CACHE/bench-data"
rows=${PGT_BENCH_ROWS:-100000}
singles=${PGT_BENCH_SINGLES:-10000}
seconds=${PGT_BENCH_SECONDS:-10}

"$here/install.sh" --release >/dev/null
# The server: a production build of the same PostgreSQL (see
# use_production_server in env.sh; PGT_BENCH_SERVER=development measures on
# the assertion-checking development build instead).
use_production_server
bin="$PGT_PREFIX/bin"
"$here/fetch-pg-ivm.sh"
rm -rf "$data"
"$here/cluster.sh" start "$data" "$port"
trap '"$here/cluster.sh" stop "$data"' EXIT
cat >>"$data/postgresql.conf" <<CONF
shared_preload_libraries = 'pg_trickle, pg_ivm'
shared_buffers = 512MB
max_wal_size = 4GB
autovacuum = off
CONF
"$here/cluster.sh" start "$data" "$port"

psql=("$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -X -q -v ON_ERROR_STOP=1)
"${psql[@]}" -d postgres -c "CREATE DATABASE bench"
"${psql[@]}" -d bench -c "CREATE EXTENSION pg_trickle"
work=$(mktemp -d)
trap '"$here/cluster.sh" stop "$data"; rm -rf "$work"' EXIT

setup_table() { # $1 = with|without
    "${psql[@]}" -d bench <<SQL
SET client_min_messages = warning;
DROP TABLE IF EXISTS t CASCADE;
CREATE TABLE t (id bigserial PRIMARY KEY, k int NOT NULL, v int NOT NULL, pad text);
SQL
    if [ "$1" = with ]; then
        "${psql[@]}" -d bench -c "SET client_min_messages = warning" \
            -c "CREATE MATERIALIZED VIEW st WITH (pgtrickle.stream = true) AS SELECT k, count(*) AS n, sum(v) AS s FROM t GROUP BY k"
    fi
}

# Milliseconds taken by one SQL statement (median of 5 runs; the table is
# rebuilt and the buffer emptied between runs, outside the timing).
time_sql() { # $1 = with|without, $2 = prepare SQL, $3 = timed SQL
    local times=()
    for _ in 1 2 3 4 5; do
        setup_table "$1"
        "${psql[@]}" -d bench -c "$2" >/dev/null
        if [ "$1" = with ]; then "${psql[@]}" -d bench -c "REFRESH MATERIALIZED VIEW st" >/dev/null; fi
        "${psql[@]}" -d bench -c "VACUUM ANALYZE t" -c "CHECKPOINT" >/dev/null
        times+=("$("${psql[@]}" -d bench -c '\timing on' -c "$3" | sed -nE 's/^Time: ([0-9.]+) ms.*/\1/p' | tail -1)")
    done
    printf '%s\n' "${times[@]}" | sort -n | sed -n 3p
}

# Transactions per second of a pgbench script.
tps() { # $1 = with|without, $2 = clients, $3 = pgbench args...
    local with=$1 clients=$2; shift 2
    setup_table "$with"
    "${psql[@]}" -d bench -c "CHECKPOINT" >/dev/null
    "$bin/pgbench" -h 127.0.0.1 -p "$port" -U postgres -n -c "$clients" -j "$clients" "$@" -f "$work/insert.sql" bench 2>/dev/null \
        | sed -nE 's/^tps = ([0-9.]+) .*/\1/p'
}

echo 'INSERT INTO t (k, v, pad) VALUES (random(1, 1000), random(1, 1000000), repeat('"'"'x'"'"', 20));' >"$work/insert.sql"
fill="INSERT INTO t (k, v, pad) SELECT g % 1000, g, repeat('x', 20) FROM generate_series(1, $rows) g"

printf '\nChange capture write amplification (PostgreSQL %s, %s; ratio = with / without)\n' \
    "$("$bin/pg_config" --version | awk '{print $2}')" \
    "$(grep -q enable-cassert <("$bin/pg_config" --configure) && echo 'assert-enabled build' || echo 'production build')"
printf '%-44s %14s %14s %8s\n' workload without with ratio
row() { printf '%-44s %14s %14s %8.2f\n' "$1" "$2" "$3" "$4"; }

for w in without with; do
    declare "single_$w=$(tps "$w" 1 -t "$singles")"
done
row "$singles single-row INSERTs, 1 client (tps)" "$single_without" "$single_with" \
    "$(echo "$single_without $single_with" | awk '{print $1 / $2}')"

for w in without with; do
    declare "conc_$w=$(tps "$w" 4 -T "$seconds")"
done
row "single-row INSERTs, 4 clients, ${seconds}s (tps)" "$conc_without" "$conc_with" \
    "$(echo "$conc_without $conc_with" | awk '{print $1 / $2}')"

for op in insert update delete; do
    case $op in
    insert) prep="SELECT 1"; sql="$fill" ;;
    update) prep="$fill"; sql="UPDATE t SET v = v + 1" ;;
    delete) prep="$fill"; sql="DELETE FROM t" ;;
    esac
    a=$(time_sql without "$prep" "$sql")
    b=$(time_sql with "$prep" "$sql")
    row "bulk $op of $rows rows (ms)" "$a" "$b" "$(echo "$b $a" | awk '{print $1 / $2}')"
done

# ---------------------------------------------------------------------------
# DIFFERENTIAL vs FULL refresh. A source of $PGT_BENCH_DVM_ROWS rows; the
# same mixed changes (1/3 inserts, 1/3 updates, 1/3 deletes) are applied, then
# a DIFFERENTIAL stream table and a FULL twin of the same query are refreshed.
dvm_rows=${PGT_BENCH_DVM_ROWS:-1000000}

setup_source() { # $1 = rows
    "${psql[@]}" -d bench <<SQL
SET client_min_messages = warning;
DROP TABLE IF EXISTS t CASCADE;
DROP TABLE IF EXISTS src CASCADE;
CREATE TABLE src (id bigint PRIMARY KEY, g int NOT NULL, v int NOT NULL, pad text);
INSERT INTO src SELECT i, i % 1000, ((i::bigint * 7919) % 100000)::int, md5(i::text) FROM generate_series(1, $1) i;
CREATE INDEX ON src (g);
DROP TABLE IF EXISTS dim, cat CASCADE;
CREATE TABLE cat (c int PRIMARY KEY, label text);
INSERT INTO cat SELECT c, 'cat ' || c FROM generate_series(0, 9) c;
CREATE TABLE dim (g int PRIMARY KEY, c int NOT NULL, name text);
INSERT INTO dim SELECT g, g % 10, 'g' || g FROM generate_series(0, 999) g;
VACUUM ANALYZE src, dim, cat;
SQL
}

# Name, query pairs of the shapes measured.
shapes=(
    "filter|SELECT id, v FROM src WHERE v % 10 = 0"
    "projection|SELECT id, g, v * 2 AS v2, upper(pad) AS p FROM src"
    "group by (1000 groups)|SELECT g, count(*) AS n, sum(v) AS s, avg(v) AS a FROM src GROUP BY g"
    "2-way join|SELECT s.id, d.g, s.v, d.name FROM src s JOIN dim d ON d.g = s.g"
    "3-way join|SELECT s.id, d.g, c.c, s.v, c.label FROM src s JOIN dim d ON d.g = s.g JOIN cat c ON c.c = d.c"
    "join + aggregate|SELECT d.g, d.name, count(*) AS n, sum(s.v) AS s FROM src s JOIN dim d ON d.g = s.g GROUP BY d.g, d.name"
    "aggregate, no GROUP BY|SELECT count(*) AS n, sum(v) AS s, max(v) AS top FROM src"
    "LEFT JOIN chain|SELECT s.id, d.g, c.c, s.v, c.label FROM src s LEFT JOIN dim d ON d.g = s.g LEFT JOIN cat c ON c.c = d.c"
    "UNION ALL, no keys|SELECT g, v FROM src WHERE v % 2 = 0 UNION ALL SELECT s.g, d.c FROM src s JOIN dim d ON d.g = s.g WHERE s.v % 3 = 0"
    "group by expression|SELECT g / 10 AS band, count(*) AS n, sum(v) AS s FROM src GROUP BY g / 10"
)

create_shapes() {
    local i=0
    for s in "${shapes[@]}"; do
        "${psql[@]}" -d bench -c "SET client_min_messages = warning" \
            -c "CREATE MATERIALIZED VIEW d$i WITH (pgtrickle.stream = true, pgtrickle.refresh_mode = 'differential') AS ${s#*|}" \
            -c "CREATE MATERIALIZED VIEW f$i WITH (pgtrickle.stream = true, pgtrickle.refresh_mode = 'full') AS ${s#*|}" >/dev/null
        i=$((i + 1))
    done
}

change() { # $1 = rows to change in total, $2 = offset for new ids
    local n=$(( $1 / 3 )) base=$2
    "${psql[@]}" -d bench >/dev/null <<SQL
INSERT INTO src SELECT $base + i, i % 1000, i, md5(i::text) FROM generate_series(1, $n) i;
UPDATE src SET v = v + 1, g = (g + 1) % 1000 WHERE id IN (SELECT id FROM src WHERE id % 1000 = 7 AND id < $base ORDER BY id LIMIT $n);
DELETE FROM src WHERE id IN (SELECT id FROM src WHERE id % 1000 = 501 AND id < $base ORDER BY id LIMIT $n);
SQL
}

# Milliseconds of statement $1, the median of three runs in one session,
# each rolled back (so each does the same work).
ms() {
    "${psql[@]}" -d bench -c '\timing on' \
        -c "BEGIN" -c "$1" -c "ROLLBACK" -c "BEGIN" -c "$1" -c "ROLLBACK" -c "BEGIN" -c "$1" -c "ROLLBACK" |
        sed -nE 's/^Time: ([0-9.]+) ms.*/\1/p' | awk 'NR % 3 == 2' | sort -n | sed -n 2p
}
# A refresh of stream table $1 timed in a session that is warm, as the
# scheduler's long-lived backend is: the session first runs the same
# refresh and rolls it back (untimed), which loads the catalogs, the
# plans pg_trickle keeps and the pages the refresh reads; then the same
# refresh runs three times more, each rolled back, and the median is
# printed (one refresh of a few milliseconds varies by a third from run
# to run on this machine). A last refresh commits, untimed.
refresh_ms() {
    "${psql[@]}" -d bench -c "BEGIN" -c "REFRESH MATERIALIZED VIEW $1" -c "ROLLBACK" -c '\timing on' \
        -c "BEGIN" -c "REFRESH MATERIALIZED VIEW $1" -c "ROLLBACK" \
        -c "BEGIN" -c "REFRESH MATERIALIZED VIEW $1" -c "ROLLBACK" \
        -c "BEGIN" -c "REFRESH MATERIALIZED VIEW $1" -c "ROLLBACK" |
        sed -nE 's/^Time: ([0-9.]+) ms.*/\1/p' | awk 'NR % 3 == 2' | sort -n | sed -n 2p
    "${psql[@]}" -d bench -c "REFRESH MATERIALIZED VIEW $1" >/dev/null
}

# One row per shape: FULL and DIFFERENTIAL refresh times of the pending
# changes ($1 of them) and their ratio; then both must agree.
compare_shapes() { # $1 = changes
    local i=0 full diff
    for s in "${shapes[@]}"; do
        full=$(refresh_ms "f$i")
        diff=$(refresh_ms "d$i")
        printf '%-24s %8s %12s %12s %8.1f\n' "${s%%|*}" "$1" "$full" "$diff" \
            "$(echo "$full $diff" | awk '{print $1 / $2}')"
        i=$((i + 1))
    done
    for j in $(seq 0 $((i - 1))); do
        bad=$("${psql[@]}" -d bench -tA -c "SELECT count(*) FROM ((TABLE d$j EXCEPT ALL TABLE f$j) UNION ALL (TABLE f$j EXCEPT ALL TABLE d$j)) x")
        [ "$bad" = 0 ] || { echo "MISMATCH between d$j and f$j" >&2; exit 1; }
    done
}

printf '\nDIFFERENTIAL vs FULL refresh, %s source rows (ms; ratio = full / differential)\n' "$dvm_rows"
printf '%-24s %8s %12s %12s %8s\n' shape changes full differential ratio
setup_source "$dvm_rows"
create_shapes
offset=$((dvm_rows * 10))
for frac in 0.001 0.01; do
    changes=$(awk -v r="$dvm_rows" -v f="$frac" 'BEGIN { printf "%d", r * f }')
    change "$changes" "$offset"
    offset=$((offset + changes))
    compare_shapes "$changes"
done

printf '\nDIFFERENTIAL refresh time as the source grows 10x, 1000 changes (ms)\n'
printf '%-24s %12s %12s %8s\n' shape "$((dvm_rows / 10)) rows" "$dvm_rows rows" growth
declare -A small
setup_source $((dvm_rows / 10))
create_shapes
change 1000 $((dvm_rows * 10))
i=0
for s in "${shapes[@]}"; do small[$i]=$(refresh_ms "d$i"); i=$((i + 1)); done
setup_source "$dvm_rows"
create_shapes
change 1000 $((dvm_rows * 10))
i=0
for s in "${shapes[@]}"; do
    big=$(refresh_ms "d$i")
    printf '%-24s %12s %12s %8.2f\n' "${s%%|*}" "${small[$i]}" "$big" "$(echo "$big ${small[$i]}" | awk '{print $1 / $2}')"
    i=$((i + 1))
done

# The same number of changes made the way an OLTP application makes them:
# each row inserted, updated or deleted by a transaction of its own (the
# change buffer then holds one row per statement, not three).
change_singly() { # $1 = rows to change in total, $2 = offset for new ids
    local n=$(( $1 / 3 )) base=$2
    for i in $(seq 1 "$n"); do
        echo "INSERT INTO src VALUES ($base + $i, $i % 1000, $i, md5('$i'));"
        echo "UPDATE src SET v = v + 1, g = (g + 1) % 1000 WHERE id = $((i * 1000 + 13));"
        echo "DELETE FROM src WHERE id = $((i * 1000 + 29));"
    done | "${psql[@]}" -d bench >/dev/null
}
printf '\nDIFFERENTIAL vs FULL refresh, %s source rows, 999 changes made by 999 single-row transactions (ms)\n' "$dvm_rows"
printf '%-24s %8s %12s %12s %8s\n' shape changes full differential ratio
change_singly 1000 $((dvm_rows * 20))
compare_shapes 999

# ---------------------------------------------------------------------------
# IMMEDIATE maintenance against pg_ivm (Debian's postgresql-18-pg-ivm) and
# against no view at all, on the same server and data: single-row UPDATEs
# (pgbench, 1 and 8 clients) and a 100,000-row bulk INSERT, with an
# aggregate view and with a join view over $dvm_rows rows.
"${psql[@]}" -d bench -c "CREATE EXTENSION IF NOT EXISTS pg_ivm" >/dev/null
agg_q="SELECT g, count(*) AS n, sum(v) AS s FROM src GROUP BY g"
join_q="SELECT s.id, d.g, d.name, s.v FROM src s JOIN dim d ON d.g = s.g"
# One table keyed by its primary key: our READ COMMITTED writers share ROW
# EXCLUSIVE on it (docs/IMMEDIATE.md), pg_ivm's UPDATEs take EXCLUSIVE.
filter_q="SELECT id, g, v FROM src WHERE v % 2 = 0"
echo "\\set id random(1, $dvm_rows)" >"$work/update.sql"
echo 'UPDATE src SET v = v + 1 WHERE id = :id;' >>"$work/update.sql"

setup_imm() { # $1 = none|pg_ivm|pg_trickle, $2 = query
    setup_source "$dvm_rows" >/dev/null
    "${psql[@]}" -d bench >/dev/null <<SQL
SET client_min_messages = warning;
DROP TABLE IF EXISTS dim CASCADE;
CREATE TABLE dim (g int PRIMARY KEY, name text);
INSERT INTO dim SELECT g, 'g' || g FROM generate_series(0, 999) g;
SQL
    case $1 in
    pg_ivm) "${psql[@]}" -d bench -c "SELECT pgivm.create_immv('v', \$q\$$2\$q\$)" >/dev/null ;;
    pg_trickle) "${psql[@]}" -d bench -c "SET client_min_messages = warning" \
        -c "CREATE MATERIALIZED VIEW v WITH (pgtrickle.stream = true, pgtrickle.refresh_mode = 'immediate') AS $2" >/dev/null ;;
    esac
    "${psql[@]}" -d bench -c "VACUUM ANALYZE" -c "CHECKPOINT" >/dev/null
}

pgb() { # $1 = clients; prints "tps latency_ms"
    "$bin/pgbench" -h 127.0.0.1 -p "$port" -U postgres -n -c "$1" -j "$1" -T "$seconds" -f "$work/update.sql" bench 2>/dev/null \
        | awk '/^latency average/ {lat = $4} /^tps = / {tps = $3} END {print tps, lat}'
}

printf '\nIMMEDIATE vs pg_ivm, %s rows: single-row UPDATE (pgbench %ss) and a 100000-row INSERT\n' "$dvm_rows" "$seconds"
# The bulk INSERT's maintenance: the time EXPLAIN ANALYZE reports for the
# triggers the INSERT fires (pg_ivm's and ours maintain the view in
# statement triggers; both make PostgreSQL fill the statement's transition
# table, which is in the INSERT's own time), the median of three, each
# rolled back. Far steadier than the difference of two INSERT timings,
# which moves by a third between runs here.
trigger_ms() {
    local sql="EXPLAIN (ANALYZE, COSTS OFF) $1"
    "${psql[@]}" -d bench -c "BEGIN" -c "$sql" -c "ROLLBACK" -c "BEGIN" -c "$sql" -c "ROLLBACK" -c "BEGIN" -c "$sql" -c "ROLLBACK" |
        awk '$1 == "Trigger" { for (i = 1; i <= NF; i++) if ($i ~ /^time=/) { sub("time=", "", $i); t += $i } }
             $1 == "Execution" { print t + 0; t = 0 }' | sort -n | sed -n 2p
}
ins_sql="INSERT INTO src SELECT 20000000 + i, i % 1000, i, 'x' FROM generate_series(1, 100000) i"
printf '%-6s %-11s %10s %10s %10s %12s %12s %14s\n' view impl "tps c=1" "lat ms c=1" "tps c=8" "insert ms" "trigger ms" "added ms/upd"
declare -A base_lat
declare -A tps8s
for shape in aggregate join filter; do
    case $shape in aggregate) q=$agg_q ;; join) q=$join_q ;; filter) q=$filter_q ;; esac
    declare -A added trig
    for impl in none pg_ivm pg_trickle; do
        setup_imm "$impl" "$q"
        # (The INSERT first: the UPDATE runs leave each table in another
        # state, after 10 to 50 times more updates without a view.)
        ins=$(ms "$ins_sql")
        trig[$impl]=$(trigger_ms "$ins_sql")
        "${psql[@]}" -d bench -c "VACUUM src" >/dev/null
        read -r tps1 lat1 < <(pgb 1)
        read -r tps8 _ < <(pgb 8)
        [ "$impl" = none ] && base_lat[$shape]=$lat1
        tps8s[$impl]=$tps8
        added[$impl]=$(echo "$lat1 ${base_lat[$shape]}" | awk '{printf "%.3f", $1 - $2}')
        printf '%-6s %-11s %10.0f %10.3f %10.0f %12.1f %12.1f %14s\n' "$shape" "$impl" "$tps1" "$lat1" "$tps8" "$ins" "${trig[$impl]}" "${added[$impl]}"
    done
    printf '%-6s pg_trickle added latency / pg_ivm added latency: %s\n' "$shape" \
        "$(echo "${added[pg_trickle]} ${added[pg_ivm]}" | awk '{ if ($2 > 0) printf "%.2f", $1 / $2; else print "n/a" }')"
    printf '%-6s pg_trickle / pg_ivm maintenance time of the 100000-row INSERT (its triggers): %s\n' "$shape" \
        "$(echo "${trig[pg_trickle]} ${trig[pg_ivm]}" | awk '{ if ($2 > 0) printf "%.2f", $1 / $2; else print "n/a" }')"
    printf '%-6s 8-client UPDATE throughput, pg_trickle / pg_ivm: %s, pg_trickle / no view: %s\n' "$shape" \
        "$(echo "${tps8s[pg_trickle]} ${tps8s[pg_ivm]}" | awk '{ if ($2 > 0) printf "%.2f", $1 / $2; else print "n/a" }')" \
        "$(echo "${tps8s[pg_trickle]} ${tps8s[none]}" | awk '{ if ($2 > 0) printf "%.2f", $1 / $2; else print "n/a" }')"
done

# ---------------------------------------------------------------------------
# Scheduler latency: a stream table with schedule '0s' (refresh as soon as
# changes commit) over a 100,000-row table; one session inserts a row and
# polls the stream table until the row shows, $PGT_BENCH_LATENCY_SAMPLES
# times. Measured from just before COMMIT to the first poll that sees it
# (polls every 0.5 ms).
samples=${PGT_BENCH_LATENCY_SAMPLES:-300}
"${psql[@]}" -d bench >/dev/null <<'SQL'
SET client_min_messages = warning;
DROP TABLE IF EXISTS lat_src, lat_result CASCADE;
CREATE TABLE lat_src (id bigint PRIMARY KEY, v int);
INSERT INTO lat_src SELECT i, i FROM generate_series(1, 100000) i;
CREATE TABLE lat_result (ms float8);
CREATE MATERIALIZED VIEW lat_st WITH (pgtrickle.stream, pgtrickle.refresh_mode = differential,
    pgtrickle.schedule = '0s') AS SELECT id, v FROM lat_src;
CREATE PROCEDURE lat_measure(n int) LANGUAGE plpgsql AS $$
DECLARE
    t0 timestamptz;
    k bigint;
BEGIN
    FOR i IN 1..n LOOP
        k := 1000000 + i;
        INSERT INTO lat_src VALUES (k, i);
        t0 := clock_timestamp();
        COMMIT;
        LOOP
            EXIT WHEN EXISTS (SELECT 1 FROM lat_st WHERE id = k);
            PERFORM pg_sleep(0.0005);
        END LOOP;
        INSERT INTO lat_result VALUES (extract(epoch FROM clock_timestamp() - t0) * 1000);
        COMMIT;
    END LOOP;
END $$;
VACUUM ANALYZE;
SQL
sleep 1
"${psql[@]}" -d bench -c "CALL lat_measure($samples)" >/dev/null
printf '\nScheduler latency, schedule 0s, commit -> visible in the stream table (%s samples, ms)\n' "$samples"
"${psql[@]}" -d bench -tA -F ' ' -c "SELECT round(p[1]::numeric, 2), round(p[2]::numeric, 2), round(p[3]::numeric, 2)
    FROM (SELECT percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY ms) AS p FROM lat_result) x" |
    awk '{printf "p50 %s   p95 %s   p99 %s\n", $1, $2, $3}'
