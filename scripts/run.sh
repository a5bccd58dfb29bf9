#!/usr/bin/env bash
# `make run`: start the development cluster and show a stream table working.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/env.sh"

"$here/cluster.sh" start "$PGT_RUN_PGDATA" "$PGT_RUN_PORT"
export PGOPTIONS="-c client_min_messages=warning"
psql=("$PGT_PREFIX/bin/psql" -h 127.0.0.1 -p "$PGT_RUN_PORT" -U postgres -X -q -v ON_ERROR_STOP=1)
# The demo database is made afresh each time, with the extension as built now.
"${psql[@]}" -d postgres -c "DROP DATABASE IF EXISTS demo WITH (FORCE)" -c "CREATE DATABASE demo"

"${psql[@]}" -d demo <<'SQL'
\pset footer off
CREATE EXTENSION pg_trickle;
CREATE TABLE orders (id bigint PRIMARY KEY, region text NOT NULL, amount numeric NOT NULL);
INSERT INTO orders VALUES (1, 'north', 10), (2, 'south', 20), (3, 'north', 5);
\echo
\echo '-- a stream table: a materialized view that pg_trickle maintains'
\echo 'CREATE MATERIALIZED VIEW sales_by_region WITH (pgtrickle.stream = true) AS'
\echo '  SELECT region, sum(amount) AS total, count(*) AS n FROM orders GROUP BY region;'
CREATE MATERIALIZED VIEW sales_by_region WITH (pgtrickle.stream = true) AS
  SELECT region, sum(amount) AS total, count(*) AS n FROM orders GROUP BY region;
SELECT * FROM sales_by_region ORDER BY region;
\echo '-- a change to the source, then a refresh'
\echo 'INSERT INTO orders VALUES (4, ''east'', 7), (5, ''south'', 1);'
INSERT INTO orders VALUES (4, 'east', 7), (5, 'south', 1);
\echo 'REFRESH MATERIALIZED VIEW sales_by_region;'
REFRESH MATERIALIZED VIEW sales_by_region;
SELECT * FROM sales_by_region ORDER BY region;
\echo '-- it was refreshed differentially: only the changed regions were updated'
SELECT name, refresh_mode, populated, status FROM pgtrickle.stream_tables;
SELECT trigger, mode, changes_consumed, rows_applied FROM pgtrickle.pgt_refresh_history ORDER BY id;
\echo
\echo '-- with a schedule, the background scheduler keeps it fresh: 0s = as soon as changes commit'
\echo 'ALTER MATERIALIZED VIEW sales_by_region SET (pgtrickle.schedule = ''0s'');'
ALTER MATERIALIZED VIEW sales_by_region SET (pgtrickle.schedule = '0s');
\echo 'INSERT INTO orders VALUES (6, ''west'', 42);   -- no REFRESH'
INSERT INTO orders VALUES (6, 'west', 42);
SELECT pg_sleep(0.5) \g /dev/null
TABLE sales_by_region ORDER BY region;
SELECT trigger, mode, changes_consumed, rows_applied FROM pgtrickle.refresh_history('sales_by_region', 1);
SQL
cat <<MSG

pg_trickle is running: PostgreSQL 18 on 127.0.0.1:$PGT_RUN_PORT (data in $PGT_RUN_PGDATA).
Connect with:
    $PGT_PREFIX/bin/psql -h 127.0.0.1 -p $PGT_RUN_PORT -U postgres demo
Stop it with:
    make stop
MSG
