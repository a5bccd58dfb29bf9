-- Stream tables reading stream tables. A DIFFERENTIAL stream table's
-- refreshes write the rows they delete and insert into a change buffer when
-- other stream tables read it, so those are maintained differentially too.
CREATE SCHEMA chain;
SET search_path = chain, public;
-- Small tables: keep every refresh differential (see DIFFERENTIAL.md).
SET pg_trickle.differential_max_change_fraction = 1000;
CREATE TABLE orders (id int PRIMARY KEY, customer int NOT NULL, amount int);
INSERT INTO orders SELECT i, i % 4, i * 10 FROM generate_series(1, 12) i;
CREATE MATERIALIZED VIEW big_orders WITH (pgtrickle.stream, pgtrickle.refresh_mode = differential)
    AS SELECT id, customer, amount FROM orders WHERE amount >= 50;
CREATE MATERIALIZED VIEW per_customer WITH (pgtrickle.stream)
    AS SELECT customer, count(*) AS n, sum(amount) AS total FROM big_orders GROUP BY customer;
CREATE MATERIALIZED VIEW vip WITH (pgtrickle.stream)
    AS SELECT customer, total FROM per_customer WHERE total > 200;
SELECT name, refresh_mode FROM pgtrickle.stream_tables WHERE schema = 'chain' ORDER BY name;
-- The upstream has a change buffer, read by its consumers.
SELECT source, consumers FROM pgtrickle.change_buffers WHERE source::text LIKE '%orders%' OR source::text LIKE 'per_%' ORDER BY source::text;

-- Changes flow down one refresh at a time, upstream first.
INSERT INTO orders VALUES (13, 1, 500), (14, 3, 40);
UPDATE orders SET customer = 2 WHERE id = 5;
DELETE FROM orders WHERE id = 12;
REFRESH MATERIALIZED VIEW big_orders;
REFRESH MATERIALIZED VIEW per_customer;
REFRESH MATERIALIZED VIEW vip;
SELECT * FROM per_customer ORDER BY customer;
SELECT * FROM vip ORDER BY customer;
SELECT st.relid::regclass AS stream_table, h.mode, h.rows_applied, h.changes_consumed
  FROM pgtrickle.pgt_refresh_history h JOIN pgtrickle.pgt_stream_tables st USING (relid)
 WHERE h.trigger = 'manual' ORDER BY h.id;

-- A FULL refresh of the upstream (here forced by the change fraction) is
-- applied as differences, which its readers still receive as changes.
SET pg_trickle.differential_max_change_fraction = 0;
INSERT INTO orders VALUES (15, 0, 900);
REFRESH MATERIALIZED VIEW big_orders;
SELECT mode, rows_applied FROM pgtrickle.refresh_history('big_orders', 1);
SET pg_trickle.differential_max_change_fraction = 1000;
REFRESH MATERIALIZED VIEW per_customer;
SELECT mode, rows_applied, changes_consumed FROM pgtrickle.refresh_history('per_customer', 1);
SELECT * FROM per_customer ORDER BY customer;
-- Emptied WITH NO DATA, the upstream is repopulated whole: its readers
-- recompute in full.
REFRESH MATERIALIZED VIEW big_orders WITH NO DATA;
REFRESH MATERIALIZED VIEW big_orders;
REFRESH MATERIALIZED VIEW per_customer;
SELECT mode, message FROM pgtrickle.refresh_history('per_customer', 1);

-- An IMMEDIATE stream table cannot read a DIFFERENTIAL one: its changes
-- arrive with its refreshes, not with the statements on its sources.
CREATE MATERIALIZED VIEW imm WITH (pgtrickle.stream, pgtrickle.refresh_mode = immediate)
    AS SELECT customer, n FROM per_customer;
-- A stream table that is not differential is read like any materialized
-- view: its readers are refreshed in full.
ALTER MATERIALIZED VIEW big_orders SET (pgtrickle.refresh_mode = full);
REFRESH MATERIALIZED VIEW per_customer;
SELECT name, refresh_mode FROM pgtrickle.stream_tables WHERE schema = 'chain' ORDER BY name;
ALTER MATERIALIZED VIEW big_orders SET (pgtrickle.refresh_mode = differential);
REFRESH MATERIALIZED VIEW per_customer;
SELECT name, refresh_mode FROM pgtrickle.stream_tables WHERE schema = 'chain' ORDER BY name;

-- IMMEDIATE all the way: an IMMEDIATE stream table hands the rows its
-- maintenance changed to the IMMEDIATE stream tables that read it, within
-- the same statement (a materialized view cannot carry triggers).
CREATE TABLE events (id int PRIMARY KEY, kind text NOT NULL, amount int);
INSERT INTO events SELECT i, (ARRAY['a', 'b', 'c'])[i % 3 + 1], i FROM generate_series(1, 9) i;
CREATE MATERIALIZED VIEW per_kind WITH (pgtrickle.stream, pgtrickle.refresh_mode = immediate)
    AS SELECT kind, count(*) AS n, sum(amount) AS total FROM events GROUP BY kind;
CREATE MATERIALIZED VIEW kind_sizes WITH (pgtrickle.stream, pgtrickle.refresh_mode = immediate)
    AS SELECT n, count(*) AS kinds FROM per_kind GROUP BY n;
CREATE MATERIALIZED VIEW big_kinds WITH (pgtrickle.stream, pgtrickle.refresh_mode = immediate)
    AS SELECT kind, total FROM per_kind WHERE total > 15;
SELECT * FROM kind_sizes ORDER BY n;
BEGIN;
INSERT INTO events VALUES (10, 'a', 100), (11, 'd', 1);
-- Visible to the writing transaction at once, three levels down.
SELECT * FROM per_kind ORDER BY kind;
SELECT * FROM kind_sizes ORDER BY n;
SELECT * FROM big_kinds ORDER BY kind;
ROLLBACK;
SELECT * FROM kind_sizes ORDER BY n;
SELECT * FROM big_kinds ORDER BY kind;
DELETE FROM events WHERE kind = 'c';
SELECT * FROM kind_sizes ORDER BY n;
SELECT * FROM big_kinds ORDER BY kind;
-- TRUNCATE recomputes the upstream, and its readers with it.
TRUNCATE events;
SELECT count(*) FROM kind_sizes;
INSERT INTO events VALUES (1, 'a', 50);
SELECT * FROM big_kinds;
-- The upstream must stay IMMEDIATE while IMMEDIATE stream tables read it.
ALTER MATERIALIZED VIEW per_kind SET (pgtrickle.refresh_mode = differential);
ALTER MATERIALIZED VIEW per_kind SET (pgtrickle.stream = false);
-- A DIFFERENTIAL stream table reads it too: the IMMEDIATE maintenance
-- writes the rows it changes into per_kind's change buffer, which the
-- reader's refreshes consume.
CREATE MATERIALIZED VIEW kind_totals WITH (pgtrickle.stream) AS
    SELECT count(*) AS kinds, sum(total) AS total FROM per_kind;
SELECT name, refresh_mode FROM pgtrickle.stream_tables WHERE schema = 'chain' AND name LIKE '%kind%' ORDER BY name;
INSERT INTO events VALUES (2, 'b', 7), (3, 'c', 9);
UPDATE events SET amount = amount + 1 WHERE id = 1;
SELECT source, pending_rows, consumers FROM pgtrickle.change_buffers WHERE source::text = 'per_kind';
REFRESH MATERIALIZED VIEW kind_totals;
SELECT * FROM kind_totals;
SELECT mode, changes_consumed FROM pgtrickle.refresh_history('kind_totals', 1);

DROP SCHEMA chain CASCADE;
RESET search_path;
