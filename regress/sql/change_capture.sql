-- change_capture: stream tables refreshed differentially capture their
-- sources' changes with
-- internal statement-level triggers into change buffers; one trigger set per
-- source, invisible to \d, removed with the last consumer; refreshes consume
-- the buffers up to a frontier and trim them.
CREATE TABLE src (id int PRIMARY KEY, grp text, v int);
CREATE TABLE other (id int PRIMARY KEY, note text);
INSERT INTO src SELECT g, 'g' || (g % 3), g FROM generate_series(1, 6) g;

-- A FULL stream table captures nothing.
CREATE MATERIALIZED VIEW full_st WITH (pgtrickle.stream = true, pgtrickle.refresh_mode = 'full') AS
  SELECT grp, count(*) AS n FROM src GROUP BY grp;
SELECT count(*) FROM pg_trigger WHERE tgrelid = 'src'::regclass;
SELECT * FROM pgtrickle.change_buffers;

-- Differential stream tables on two sources: one trigger set on each.
CREATE MATERIALIZED VIEW cap WITH (pgtrickle.stream = true) AS SELECT id, grp, v FROM src;
CREATE MATERIALIZED VIEW cap_o WITH (pgtrickle.stream = true) AS SELECT id, note FROM other;
SELECT tgrelid::regclass, regexp_replace(tgname, '_[0-9]+$', '') AS trigger, tgisinternal, tgenabled
  FROM pg_trigger WHERE tgrelid IN ('src'::regclass, 'other'::regclass) ORDER BY 1, 2;
-- Internal triggers are not shown by \d.
\d src
SELECT source, pending_rows, consumers FROM pgtrickle.change_buffers ORDER BY source::text;
SELECT relid::regclass, refresh_mode, consumes_changes, needs_full, frontier IS NOT NULL AS has_frontier
  FROM pgtrickle.pgt_stream_tables ORDER BY relid::regclass::text;
-- The buffer's columns: bookkeeping, then the source columns its consumers
-- need, by attnum: here every column cap selects, since a refresh of a
-- filter and projection of one table computes the changed rows' images
-- from the buffer.
SELECT a.attname, format_type(a.atttypid, a.atttypmod)
  FROM pgtrickle.pgt_change_buffers b JOIN pg_attribute a ON a.attrelid = b.buffer_relid
 WHERE b.source_relid = 'src'::regclass AND a.attnum > 0 ORDER BY a.attnum;

-- A second consumer of the same source adds no trigger.
CREATE MATERIALIZED VIEW cap2 WITH (pgtrickle.stream = true) AS SELECT id, v FROM src WHERE v > 2;
SELECT count(*) FROM pg_trigger WHERE tgrelid = 'src'::regclass;

-- INSERT, UPDATE (old and new row), DELETE are captured, as one statement each:
-- one buffer row per statement and action, holding arrays of the changed rows'
-- captured columns.
INSERT INTO src VALUES (7, 'g1', 70);
UPDATE src SET v = v * 10 WHERE id IN (1, 2);
DELETE FROM src WHERE id = 3;
CREATE FUNCTION buffer_rows(regclass) RETURNS TABLE (action "char", id int)
LANGUAGE plpgsql AS $$
BEGIN
  RETURN QUERY EXECUTE format('SELECT b.__pgt_action, u.c1 FROM %s b, unnest(b.c1) AS u(c1) WHERE __pgt_action <> ''S'' ORDER BY __pgt_cid, c1, __pgt_action',
    (SELECT buffer_relid::regclass FROM pgtrickle.pgt_change_buffers WHERE source_relid = $1));
END $$;
SELECT * FROM buffer_rows('src');
CREATE FUNCTION buffer_statements(regclass) RETURNS TABLE (action "char", n int, ids int[])
LANGUAGE plpgsql AS $$
BEGIN
  RETURN QUERY EXECUTE format('SELECT __pgt_action, __pgt_n, c1 FROM %s WHERE __pgt_action <> ''S'' ORDER BY __pgt_xid, __pgt_cid, __pgt_action',
    (SELECT buffer_relid::regclass FROM pgtrickle.pgt_change_buffers WHERE source_relid = $1));
END $$;
SELECT * FROM buffer_statements('src');
SELECT source, pending_rows, consumers FROM pgtrickle.change_buffers ORDER BY source::text;

-- Buffers are unlogged; a sentinel row (never trimmed, not counted) tells a
-- refresh whether crash recovery emptied the buffer.
SELECT b.source_relid::regclass, c.relpersistence
  FROM pgtrickle.pgt_change_buffers b JOIN pg_class c ON c.oid = b.buffer_relid ORDER BY 1::text;
SELECT count(*) FROM buffer_rows('src');

-- Rolled-back transactions and savepoints leave nothing behind.
BEGIN;
INSERT INTO src VALUES (100, 'x', 1);
ROLLBACK;
BEGIN;
INSERT INTO src VALUES (101, 'x', 1);
SAVEPOINT s;
INSERT INTO src VALUES (102, 'x', 1);
ROLLBACK TO SAVEPOINT s;
DELETE FROM src WHERE id = 101;
COMMIT;
SELECT action, id FROM buffer_rows('src') WHERE id >= 100;

-- Refreshing one consumer applies its window; rows stay until every
-- consumer has applied them.
REFRESH MATERIALIZED VIEW cap;
SELECT relid::regclass, trigger, changes_consumed FROM pgtrickle.pgt_refresh_history
 WHERE relid = 'cap'::regclass ORDER BY id;
SELECT source, pending_rows FROM pgtrickle.change_buffers ORDER BY source::text;
REFRESH MATERIALIZED VIEW cap2;
SELECT relid::regclass, trigger, changes_consumed FROM pgtrickle.pgt_refresh_history
 WHERE relid = 'cap2'::regclass ORDER BY id;
SELECT source, pending_rows FROM pgtrickle.change_buffers ORDER BY source::text;

-- A transaction that writes, refreshes, and writes again: the later change
-- is not taken as applied.
BEGIN;
INSERT INTO src VALUES (8, 'g2', 80);
REFRESH MATERIALIZED VIEW cap;
INSERT INTO src VALUES (9, 'g0', 90);
COMMIT;
REFRESH MATERIALIZED VIEW cap;
SELECT changes_consumed FROM pgtrickle.pgt_refresh_history WHERE relid = 'cap'::regclass ORDER BY id;

-- TRUNCATE marks the consumers for a full refresh.
TRUNCATE other;
SELECT relid::regclass, needs_full FROM pgtrickle.pgt_stream_tables WHERE consumes_changes ORDER BY relid::regclass::text;
REFRESH MATERIALIZED VIEW cap;
SELECT needs_full FROM pgtrickle.pgt_stream_tables WHERE relid = 'cap'::regclass;

-- DDL on a source: other columns may change; a renamed key column is still
-- captured (the capture statement is prepared again).
ALTER TABLE src ADD COLUMN extra text;
INSERT INTO src VALUES (10, 'g1', 100, 'e');
ALTER TABLE src RENAME COLUMN extra TO extra2;
ALTER TABLE src ALTER COLUMN extra2 TYPE varchar(10);
UPDATE src SET extra2 = 'f' WHERE id = 10;
ALTER TABLE src DROP COLUMN extra2;
DELETE FROM src WHERE id = 10;
ALTER TABLE src RENAME COLUMN id TO ident;
INSERT INTO src VALUES (11, 'g1', 110);
ALTER TABLE src RENAME COLUMN ident TO id;
SELECT a.attname, format_type(a.atttypid, a.atttypmod)
  FROM pgtrickle.pgt_change_buffers b JOIN pg_attribute a ON a.attrelid = b.buffer_relid
 WHERE b.source_relid = 'src'::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum;
SELECT action, id FROM buffer_rows('src') WHERE id IN (10, 11);
-- Columns a stream table reads cannot be dropped or retyped; nor the table.
ALTER TABLE src DROP COLUMN v;
-- (Terse: PostgreSQL names whichever dependent rule it finds first.)
\set VERBOSITY terse
ALTER TABLE src ALTER COLUMN v TYPE bigint;
\set VERBOSITY default
DROP TABLE other;
DROP MATERIALIZED VIEW cap_o;

-- Writers need no rights on the buffers, and RLS does not hide rows from capture.
CREATE ROLE pgt_writer;
GRANT SELECT, INSERT, UPDATE, DELETE ON src TO pgt_writer;
ALTER TABLE src ENABLE ROW LEVEL SECURITY;
ALTER TABLE src FORCE ROW LEVEL SECURITY;
CREATE POLICY only_g1 ON src USING (grp = 'g1') WITH CHECK (true);
SET ROLE pgt_writer;
INSERT INTO src VALUES (20, 'g2', 200);
SELECT count(*) FROM pgtrickle_changes.changes_0;  -- no access to the schema
RESET ROLE;
SELECT action, id FROM buffer_rows('src') WHERE id = 20;
ALTER TABLE src DISABLE ROW LEVEL SECURITY;
DROP POLICY only_g1 ON src;
REVOKE ALL ON src FROM pgt_writer;
DROP ROLE pgt_writer;

-- Switching to 'full' detaches; the last consumer takes the triggers along.
ALTER MATERIALIZED VIEW cap2 SET (pgtrickle.refresh_mode = 'full');
SELECT count(*) FROM pg_trigger WHERE tgrelid = 'src'::regclass;
DROP MATERIALIZED VIEW cap;
SELECT count(*) FROM pg_trigger WHERE tgrelid IN ('src'::regclass, 'other'::regclass);
SELECT count(*) FROM pgtrickle.pgt_change_buffers;
SELECT count(*) FROM pg_class WHERE relnamespace = 'pgtrickle_changes'::regnamespace;
-- And back: 'auto' attaches again, needing a full refresh first.
ALTER MATERIALIZED VIEW cap2 SET (pgtrickle.refresh_mode = 'auto');
SELECT consumes_changes, needs_full FROM pgtrickle.pgt_stream_tables WHERE relid = 'cap2'::regclass;
SELECT count(*) FROM pg_trigger WHERE tgrelid = 'src'::regclass;

-- Dropping a source with CASCADE drops its stream tables and the capture.
DROP TABLE src CASCADE;
SELECT count(*) FROM pgtrickle.pgt_change_buffers;
SELECT count(*) FROM pg_class WHERE relnamespace = 'pgtrickle_changes'::regnamespace;
DROP FUNCTION buffer_rows(regclass);
DROP TABLE other;
