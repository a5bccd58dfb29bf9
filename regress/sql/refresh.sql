-- refresh: REFRESH MATERIALIZED VIEW on a stream table recomputes it (FULL
-- in this version) and records the refresh in pgtrickle.pgt_refresh_history;
-- ordinary materialized views refresh as always.
CREATE TABLE src (k int, v int);
INSERT INTO src SELECT g % 4, g FROM generate_series(1, 20) g;
CREATE MATERIALIZED VIEW agg WITH (pgtrickle.stream = true, pgtrickle.refresh_mode = 'full') AS
  SELECT k, sum(v) AS s, count(*) AS n FROM src GROUP BY k;
SELECT * FROM agg ORDER BY k;

INSERT INTO src VALUES (9, 100), (1, 1000);
DELETE FROM src WHERE k = 0;
UPDATE src SET v = v + 1 WHERE k = 2;
SELECT * FROM agg ORDER BY k;  -- not refreshed yet
REFRESH MATERIALIZED VIEW agg;
SELECT * FROM agg ORDER BY k;
-- The stream table equals a fresh run of its query.
(SELECT k, sum(v), count(*) FROM src GROUP BY k EXCEPT ALL SELECT * FROM agg)
UNION ALL
(SELECT * FROM agg EXCEPT ALL SELECT k, sum(v), count(*) FROM src GROUP BY k);

-- CONCURRENTLY is accepted on a stream table (no unique index needed).
REFRESH MATERIALIZED VIEW CONCURRENTLY agg;
-- The function form returns the number of rows.
SELECT pgtrickle.refresh_stream_table('agg');
SELECT mode, trigger, rows_applied, outcome, finished_at >= started_at AS timed
  FROM pgtrickle.pgt_refresh_history WHERE relid = 'agg'::regclass ORDER BY id;
SELECT last_refresh IS NOT NULL AS refreshed FROM pgtrickle.stream_tables WHERE name = 'agg';

-- WITH NO DATA empties it, as for any materialized view.
REFRESH MATERIALIZED VIEW agg WITH NO DATA;
SELECT populated FROM pgtrickle.stream_tables WHERE name = 'agg';
SELECT * FROM agg;
REFRESH MATERIALIZED VIEW agg;
SELECT count(*) FROM agg;

-- A failing refresh rolls back whole: contents and history unchanged (the
-- one history row is the first population by CREATE).
CREATE TABLE div (a int, b int);
INSERT INTO div VALUES (1, 1);
CREATE MATERIALIZED VIEW q WITH (pgtrickle.stream = true, pgtrickle.refresh_mode = 'full') AS SELECT a / b AS r FROM div;
INSERT INTO div VALUES (1, 0);
REFRESH MATERIALIZED VIEW q;
SELECT * FROM q;
SELECT count(*) FROM pgtrickle.pgt_refresh_history WHERE relid = 'q'::regclass;

-- Ordinary materialized views are untouched by pg_trickle.
CREATE MATERIALIZED VIEW plain AS SELECT count(*) AS n FROM src;
INSERT INTO src VALUES (5, 5);
REFRESH MATERIALIZED VIEW plain;
SELECT * FROM plain;
REFRESH MATERIALIZED VIEW CONCURRENTLY plain;  -- PostgreSQL's own rule: needs a unique index
SELECT count(*) FROM pgtrickle.pgt_refresh_history WHERE relid = 'plain'::regclass;

DROP MATERIALIZED VIEW agg, q, plain;
DROP TABLE src, div;
SELECT count(*) FROM pgtrickle.pgt_refresh_history;
