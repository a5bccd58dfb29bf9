-- errors: bad options and bad queries are refused with clear errors
-- (SQLSTATE, DETAIL, HINT), and nothing is left behind.
\set VERBOSITY default
-- (After each error, psql's LAST_ERROR_SQLSTATE shows the error code.)
CREATE TABLE t (a int, b text);

-- Unknown option: the valid ones are listed.
CREATE MATERIALIZED VIEW e1 WITH (pgtrickle.stream = true, pgtrickle.colour = 'red') AS SELECT a FROM t;
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- Bad values.
CREATE MATERIALIZED VIEW e1 WITH (pgtrickle.stream = maybe) AS SELECT a FROM t;
\echo SQLSTATE :LAST_ERROR_SQLSTATE
CREATE MATERIALIZED VIEW e1 WITH (pgtrickle.stream = true, pgtrickle.refresh_mode = 'sometimes') AS SELECT a FROM t;
\echo SQLSTATE :LAST_ERROR_SQLSTATE
CREATE MATERIALIZED VIEW e1 WITH (pgtrickle.stream = true, pgtrickle.schedule = 'soon') AS SELECT a FROM t;
\echo SQLSTATE :LAST_ERROR_SQLSTATE
CREATE MATERIALIZED VIEW e1 WITH (pgtrickle.stream = true, pgtrickle.schedule = '61 * * * *') AS SELECT a FROM t;
\echo SQLSTATE :LAST_ERROR_SQLSTATE
CREATE MATERIALIZED VIEW e1 WITH (pgtrickle.stream = true, pgtrickle.schedule = '5') AS SELECT a FROM t;
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- Repeated option.
CREATE MATERIALIZED VIEW e1 WITH (pgtrickle.stream = true, "pgtrickle.stream" = true) AS SELECT a FROM t;
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- pgtrickle options without pgtrickle.stream = true.
CREATE MATERIALIZED VIEW e1 WITH (pgtrickle.refresh_mode = 'full') AS SELECT a FROM t;
\echo SQLSTATE :LAST_ERROR_SQLSTATE
CREATE MATERIALIZED VIEW e1 WITH (pgtrickle.stream = false, pgtrickle.schedule = '1m') AS SELECT a FROM t;
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- DIFFERENTIAL and IMMEDIATE need a query pg_trickle can maintain (here: a
-- window function, and an outer join of a table without a primary key,
-- whose rows have no identity and whose slices nothing chains).
CREATE MATERIALIZED VIEW e1 WITH (pgtrickle.stream = true, pgtrickle.refresh_mode = 'differential') AS
  SELECT t.a, rank() OVER (ORDER BY t.a) FROM t;
\echo SQLSTATE :LAST_ERROR_SQLSTATE
CREATE MATERIALIZED VIEW e1 WITH (pgtrickle.stream = true, pgtrickle.refresh_mode = 'immediate') AS
  SELECT t.a FROM t LEFT JOIN t u ON u.a = t.a;
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- Temporary sources are refused by PostgreSQL itself.
CREATE TEMP TABLE tmp (a int);
CREATE MATERIALIZED VIEW e1 WITH (pgtrickle.stream = true) AS SELECT a FROM tmp;
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- Function API: the query must be one SELECT.
SELECT pgtrickle.create_stream_table('e1', 'INSERT INTO t VALUES (1)');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgtrickle.create_stream_table('e1', 'SELECT 1; SELECT 2');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgtrickle.create_stream_table('e1', 'SELECT a INTO t2 FROM t');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgtrickle.create_stream_table('e1', 'SELEKT 1');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- Functions on something that is not a stream table.
CREATE MATERIALIZED VIEW mv AS SELECT a FROM t;
SELECT pgtrickle.refresh_stream_table('mv');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgtrickle.refresh_stream_table('t');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgtrickle.refresh_stream_table('no_such_thing');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- pgtrickle options on a table that is not a materialized view.
ALTER TABLE t SET (pgtrickle.stream = true);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- Nothing was created by any of the above.
SELECT count(*) FROM pgtrickle.pgt_stream_tables;
SELECT relname FROM pg_class WHERE relname = 'e1';
DROP MATERIALIZED VIEW mv;
DROP TABLE t;
