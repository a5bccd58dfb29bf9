-- Partitioned source tables: the capture triggers go on the partitioned
-- table and on every partition below it (a statement fires the statement
-- triggers of the table it names only), and a statement naming a
-- partition is captured for the partitioned table. Partitions created or
-- attached later get the triggers; attaching, detaching or dropping a
-- partition (rows come or go without a statement) and TRUNCATE of a
-- partition refresh the stream tables in FULL next (IMMEDIATE ones are
-- recomputed at once).
CREATE SCHEMA part;
SET search_path = part, public;
SET pg_trickle.differential_max_change_fraction = 1000;
CREATE TABLE events (id int, day date, kind text, amount int, PRIMARY KEY (id, day, kind)) PARTITION BY RANGE (day);
CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01') PARTITION BY LIST (kind);
CREATE TABLE events_2026_a PARTITION OF events_2026 FOR VALUES IN ('a');
CREATE TABLE events_2026_other PARTITION OF events_2026 DEFAULT;
INSERT INTO events SELECT i, date '2025-06-01' + i * 2, CASE WHEN i % 2 = 0 THEN 'a' ELSE 'b' END, i
  FROM generate_series(1, 200) i;
CREATE MATERIALIZED VIEW per_kind WITH (pgtrickle.stream, pgtrickle.refresh_mode = differential) AS
SELECT kind, count(*) AS n, sum(amount) AS total FROM events GROUP BY kind;
CREATE MATERIALIZED VIEW big_events WITH (pgtrickle.stream, pgtrickle.refresh_mode = immediate) AS
SELECT id, day, kind, amount FROM events WHERE amount > 100;
CREATE FUNCTION differences() RETURNS TABLE (stream_table text, differ bigint) LANGUAGE sql AS $$
  SELECT 'per_kind', (SELECT count(*) FROM (
           (TABLE per_kind EXCEPT ALL SELECT kind, count(*), sum(amount) FROM events GROUP BY kind)
           UNION ALL (SELECT kind, count(*), sum(amount) FROM events GROUP BY kind EXCEPT ALL TABLE per_kind)) d)
  UNION ALL
  SELECT 'big_events', (SELECT count(*) FROM (
           (TABLE big_events EXCEPT ALL SELECT id, day, kind, amount FROM events WHERE amount > 100)
           UNION ALL (SELECT id, day, kind, amount FROM events WHERE amount > 100 EXCEPT ALL TABLE big_events)) d)
$$;
CREATE FUNCTION last_refresh() RETURNS TABLE (mode text, message text) LANGUAGE sql AS $$
  SELECT mode, message FROM pgtrickle.pgt_refresh_history
   WHERE relid = 'part.per_kind'::regclass ORDER BY id DESC LIMIT 1
$$;
-- Every member of the tree carries the capture triggers.
SELECT c.relname, count(t.oid) AS capture_triggers
  FROM pg_class c LEFT JOIN pg_trigger t
       ON t.tgrelid = c.oid AND t.tgfoid = 'pgtrickle._capture()'::regprocedure
 WHERE c.relnamespace = 'part'::regnamespace AND c.relkind IN ('r', 'p') GROUP BY 1 ORDER BY 1;

-- Statements naming the partitioned table, a partition, a sub-partition;
-- an UPDATE moving rows between partitions.
INSERT INTO events VALUES (500, '2026-03-01', 'a', 500), (501, '2025-03-01', 'b', 7);
INSERT INTO events_2026_a VALUES (502, '2026-04-01', 'a', 120);
UPDATE events SET day = day + 365 WHERE id BETWEEN 1 AND 20;
UPDATE events_2026_other SET amount = amount + 1000 WHERE id % 5 = 0;
DELETE FROM events_2025 WHERE id % 7 = 0;
SELECT * FROM differences() WHERE stream_table = 'big_events';
REFRESH MATERIALIZED VIEW per_kind;
SELECT * FROM last_refresh();
SELECT * FROM differences();
TABLE per_kind ORDER BY kind;

-- TRUNCATE of a partition.
TRUNCATE events_2026_a;
REFRESH MATERIALIZED VIEW per_kind;
SELECT * FROM last_refresh();
SELECT * FROM differences();

-- A partition created later is captured.
CREATE TABLE events_2027 PARTITION OF events FOR VALUES FROM ('2027-01-01') TO ('2028-01-01');
INSERT INTO events_2027 VALUES (600, '2027-02-01', 'c', 999);
INSERT INTO events VALUES (601, '2027-03-01', 'c', 1);
REFRESH MATERIALIZED VIEW per_kind;
SELECT * FROM last_refresh();
SELECT * FROM differences();

-- Detached, attached again, dropped: FULL refreshes; a detached
-- partition loses the triggers, and gets them back when attached.
ALTER TABLE events DETACH PARTITION events_2025;
SELECT count(*) AS triggers_on_detached FROM pg_trigger
 WHERE tgrelid = 'events_2025'::regclass AND tgfoid = 'pgtrickle._capture()'::regprocedure;
INSERT INTO events_2025 VALUES (700, '2025-05-05', 'b', 5000);
SELECT * FROM differences() WHERE stream_table = 'big_events';
REFRESH MATERIALIZED VIEW per_kind;
SELECT * FROM last_refresh();
SELECT * FROM differences();
ALTER TABLE events ATTACH PARTITION events_2025 FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
SELECT count(*) AS triggers_on_attached FROM pg_trigger
 WHERE tgrelid = 'events_2025'::regclass AND tgfoid = 'pgtrickle._capture()'::regprocedure;
SELECT * FROM differences() WHERE stream_table = 'big_events';
REFRESH MATERIALIZED VIEW per_kind;
SELECT * FROM last_refresh();
UPDATE events_2025 SET amount = amount + 1 WHERE id = 700;
REFRESH MATERIALIZED VIEW per_kind;
SELECT * FROM last_refresh();
SELECT * FROM differences();
DROP TABLE events_2027;
SELECT * FROM differences() WHERE stream_table = 'big_events';
REFRESH MATERIALIZED VIEW per_kind;
SELECT * FROM last_refresh();
SELECT * FROM differences();

-- A partition is not a source by itself (statements naming its parent
-- would not be seen).
CREATE MATERIALIZED VIEW from_partition WITH (pgtrickle.stream, pgtrickle.refresh_mode = differential) AS
SELECT id FROM events_2025;

-- DETACH ... CONCURRENTLY (two transactions) as well.
ALTER TABLE events DETACH PARTITION events_2025 CONCURRENTLY;
SELECT count(*) AS triggers_on_detached FROM pg_trigger
 WHERE tgrelid = 'events_2025'::regclass AND tgfoid = 'pgtrickle._capture()'::regprocedure;
SELECT * FROM differences() WHERE stream_table = 'big_events';
REFRESH MATERIALIZED VIEW per_kind;
SELECT * FROM last_refresh();
SELECT * FROM differences();

-- The last stream table gone, no trigger is left in the tree.
DROP MATERIALIZED VIEW per_kind;
DROP MATERIALIZED VIEW big_events;
SELECT count(*) AS triggers_left FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
 WHERE c.relnamespace = 'part'::regnamespace AND t.tgisinternal;

RESET pg_trickle.differential_max_change_fraction;
DROP SCHEMA part CASCADE;
RESET search_path;
