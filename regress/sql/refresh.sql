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

-- A stream table that `auto` resolves to FULL, whose query calls no
-- volatile or stable function and reads only tables, keeps change capture
-- on them: a refresh when none changed recomputes nothing.
CREATE TABLE d1 (k int, v int);
CREATE TABLE d2 (k int PRIMARY KEY, w text);
INSERT INTO d1 VALUES (1, 10), (1, 10), (2, 20);
INSERT INTO d2 VALUES (1, 'one'), (2, 'two');
CREATE MATERIALIZED VIEW same WITH (pgtrickle.stream = true) AS
    SELECT d2.w, d1.v, sum(d1.v) OVER (PARTITION BY upper(d2.w)) AS s FROM d1 JOIN d2 ON d1.k = d2.k;
CREATE MATERIALIZED VIEW clock WITH (pgtrickle.stream = true) AS
    SELECT d2.w, d1.v, sum(d1.v) OVER (PARTITION BY upper(d2.w)) AS s, now() IS NOT NULL AS t
      FROM d1 JOIN d2 ON d1.k = d2.k;
CREATE MATERIALIZED VIEW asked WITH (pgtrickle.stream = true, pgtrickle.refresh_mode = 'full') AS
    SELECT d2.w, d1.v, sum(d1.v) OVER (PARTITION BY upper(d2.w)) AS s FROM d1 JOIN d2 ON d1.k = d2.k;
SELECT name, t.refresh_mode, consumes_changes FROM pgtrickle.stream_tables t
  JOIN pgtrickle.pgt_stream_tables s ON s.relid = t.relation
 WHERE name IN ('same', 'clock', 'asked') ORDER BY name;
SELECT source, consumers FROM pgtrickle.change_buffers WHERE source::text IN ('d1', 'd2') ORDER BY 1;
CREATE FUNCTION refresh_three() RETURNS TABLE (name text, mode text, rows_applied bigint, message text)
LANGUAGE plpgsql AS $$
BEGIN
    REFRESH MATERIALIZED VIEW same;
    REFRESH MATERIALIZED VIEW clock;
    REFRESH MATERIALIZED VIEW asked;
    RETURN QUERY SELECT v, h.mode, h.rows_applied, h.message
      FROM unnest(ARRAY['same', 'clock', 'asked']) v, pgtrickle.refresh_history(v::regclass, 1) h;
END $$;
SELECT * FROM refresh_three();
-- A change (here one that a rollback undoes: nothing), an UPDATE, a
-- TRUNCATE: each makes the next refresh recompute.
BEGIN; INSERT INTO d1 VALUES (2, 30); ROLLBACK;
SELECT * FROM refresh_three();
UPDATE d2 SET w = 'TWO' WHERE k = 2;
SELECT * FROM refresh_three();
SELECT * FROM same ORDER BY 1, 2, 3;
SELECT * FROM refresh_three();
TRUNCATE d1;
INSERT INTO d1 VALUES (1, 5);
SELECT * FROM refresh_three();
SELECT * FROM same;
-- Switched to `full`, it stops consuming changes and always recomputes;
-- back to `auto`, its next refresh establishes a new frontier.
ALTER MATERIALIZED VIEW same SET (pgtrickle.refresh_mode = 'full');
SELECT source, consumers FROM pgtrickle.change_buffers WHERE source::text IN ('d1', 'd2') ORDER BY 1;
ALTER MATERIALIZED VIEW same SET (pgtrickle.refresh_mode = 'auto');
SELECT * FROM refresh_three();
SELECT * FROM refresh_three();

DROP MATERIALIZED VIEW agg, q, plain, same, clock, asked;
DROP FUNCTION refresh_three();
DROP TABLE src, div, d1, d2;
SELECT count(*) FROM pgtrickle.pgt_refresh_history;
SELECT count(*) FROM pgtrickle.change_buffers;
