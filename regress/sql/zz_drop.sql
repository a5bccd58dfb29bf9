-- drop: every way a stream table can disappear cleans up pg_trickle's
-- catalog; DROP EXTENSION refuses while stream tables exist (they depend on
-- it) and drops them with CASCADE, leaving nothing behind.
-- (Runs last: it drops and re-creates the extension.)
CREATE TABLE d (a int);
CREATE MATERIALIZED VIEW d1 WITH (pgtrickle.stream = true, pgtrickle.refresh_mode = 'full') AS SELECT a FROM d;
DROP MATERIALIZED VIEW IF EXISTS d1, no_such_mv;
SELECT count(*) FROM pgtrickle.pgt_stream_tables;

-- Dropping a source with CASCADE drops the stream table.
CREATE MATERIALIZED VIEW d2 WITH (pgtrickle.stream = true, pgtrickle.refresh_mode = 'full') AS SELECT a FROM d;
DROP TABLE d CASCADE;
SELECT count(*) FROM pgtrickle.pgt_stream_tables;

-- DROP SCHEMA ... CASCADE.
CREATE SCHEMA s;
CREATE TABLE s.d (a int);
CREATE MATERIALIZED VIEW s.d3 WITH (pgtrickle.stream = true, pgtrickle.refresh_mode = 'full') AS SELECT a FROM s.d;
DROP SCHEMA s CASCADE;
SELECT count(*) FROM pgtrickle.pgt_stream_tables, pgtrickle.pgt_sources;

-- DROP EXTENSION: refused while stream tables exist ...
CREATE TABLE e (a int);
CREATE MATERIALIZED VIEW e1 WITH (pgtrickle.stream = true, pgtrickle.refresh_mode = 'full') AS SELECT a FROM e;
CREATE MATERIALIZED VIEW e_plain AS SELECT a FROM e;
DROP EXTENSION pg_trickle;
-- ... and with CASCADE the stream tables go too; plain matviews stay.
DROP EXTENSION pg_trickle CASCADE;
SELECT relname FROM pg_class WHERE relname IN ('e1', 'e_plain') ORDER BY 1;
SELECT nspname FROM pg_namespace WHERE nspname LIKE 'pgtrickle%';
-- Without the extension, stream table options are refused and plain DDL works.
CREATE MATERIALIZED VIEW e2 WITH (pgtrickle.stream = true) AS SELECT a FROM e;
REFRESH MATERIALIZED VIEW e_plain;
CREATE EXTENSION pg_trickle;
DROP MATERIALIZED VIEW e_plain;
DROP TABLE e;
