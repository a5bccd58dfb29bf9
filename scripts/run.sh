#!/usr/bin/env bash
# `make run`: start the development cluster and show a stream table working.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/env.sh"

"$here/cluster.sh" start "$PGT_RUN_PGDATA" "$PGT_RUN_PORT"
export PGOPTIONS="-c client_min_messages=warning"
psql=("$PGT_PREFIX/bin/psql" -h 127.0.0.1 -p "$PGT_RUN_PORT" -U postgres -X -q -v ON_ERROR_STOP=1)
"${psql[@]}" -d postgres -tc "SELECT 1 FROM pg_database WHERE datname = 'demo'" | grep -q 1 \
    || "${psql[@]}" -d postgres -c "CREATE DATABASE demo"

"${psql[@]}" -d demo <<'SQL'
\pset footer off
CREATE EXTENSION IF NOT EXISTS pg_trickle;
DROP MATERIALIZED VIEW IF EXISTS sales_by_region;
DROP TABLE IF EXISTS orders;
CREATE TABLE orders (id bigint PRIMARY KEY, region text NOT NULL, amount numeric NOT NULL);
INSERT INTO orders VALUES (1, 'north', 10), (2, 'south', 20), (3, 'north', 5);
\echo
\echo '-- a stream table: a materialized view that pg_trickle maintains'
\echo 'CREATE MATERIALIZED VIEW sales_by_region WITH (pgtrickle.stream = true, pgtrickle.refresh_mode = ''full'') AS'
\echo '  SELECT region, sum(amount) AS total, count(*) AS n FROM orders GROUP BY region;'
CREATE MATERIALIZED VIEW sales_by_region WITH (pgtrickle.stream = true, pgtrickle.refresh_mode = 'full') AS
  SELECT region, sum(amount) AS total, count(*) AS n FROM orders GROUP BY region;
SELECT * FROM sales_by_region ORDER BY region;
\echo '-- a change to the source, then a refresh'
\echo 'INSERT INTO orders VALUES (4, ''east'', 7), (5, ''south'', 1);'
INSERT INTO orders VALUES (4, 'east', 7), (5, 'south', 1);
\echo 'REFRESH MATERIALIZED VIEW sales_by_region;'
REFRESH MATERIALIZED VIEW sales_by_region;
SELECT * FROM sales_by_region ORDER BY region;
SELECT name, refresh_mode, populated, status FROM pgtrickle.stream_tables;
SQL
cat <<MSG

pg_trickle is running: PostgreSQL 18 on 127.0.0.1:$PGT_RUN_PORT (data in $PGT_RUN_PGDATA).
Connect with:
    $PGT_PREFIX/bin/psql -h 127.0.0.1 -p $PGT_RUN_PORT -U postgres demo
Stop it with:
    make stop
MSG
