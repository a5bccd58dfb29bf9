-- Aggregates without GROUP BY: a stream table of one row (none when a
-- HAVING clause rejects it). Over one table, count/sum/avg/min/max are kept
-- from running totals, so a refresh reads only the changes; other
-- aggregates, HAVING and joins recompute the row when a source changed.
CREATE SCHEMA scal;
SET search_path = scal, public;
SET pg_trickle.differential_max_change_fraction = 1000;
CREATE TABLE items (id int PRIMARY KEY, cat text, qty int, price numeric(8,2));
INSERT INTO items SELECT i, 'c' || (i % 3), i, i * 1.5 FROM generate_series(1, 9) i;

CREATE MATERIALIZED VIEW totals WITH (pgtrickle.stream) AS
SELECT count(*) AS n, sum(qty) AS qty, avg(price) AS avg_price,
       min(price) AS cheapest, max(cat) AS last_cat
  FROM items WHERE qty > 1;
SELECT property, regexp_replace(value, 'agg_[0-9]+', 'agg_<oid>') AS value
  FROM pgtrickle.explain_stream_table('totals')
 WHERE property IN ('refresh mode', 'strategy', 'row identity');
-- Its key index is on a constant: at most one row.
SELECT pg_get_indexdef(indexrelid) ~ '\(true\)' AS on_constant FROM pg_index
 WHERE indrelid = 'totals'::regclass;
TABLE totals;

-- Changes, including deleting the cheapest row (which rescans the table
-- for the new minimum) and rows leaving the WHERE clause.
INSERT INTO items VALUES (10, 'c9', 10, 0.50);
UPDATE items SET qty = 0 WHERE id IN (2, 3);
DELETE FROM items WHERE id = 10;
REFRESH MATERIALIZED VIEW totals;
SELECT mode, rows_applied FROM pgtrickle.refresh_history('totals', 1);
TABLE totals;

-- Every row deleted: the row stays, with a count of 0 and NULL sums, as
-- the query gives.
DELETE FROM items;
REFRESH MATERIALIZED VIEW totals;
TABLE totals;
SELECT count(*) AS differences FROM (
    (TABLE totals EXCEPT ALL
     SELECT count(*), sum(qty), avg(price), min(price), max(cat) FROM items WHERE qty > 1)
    UNION ALL
    (SELECT count(*), sum(qty), avg(price), min(price), max(cat) FROM items WHERE qty > 1
     EXCEPT ALL TABLE totals)) d;
INSERT INTO items SELECT i, 'c' || (i % 3), i, i * 1.5 FROM generate_series(1, 9) i;
REFRESH MATERIALIZED VIEW totals;
TABLE totals;

-- Other aggregates are recomputed when a source changed.
CREATE MATERIALIZED VIEW listing WITH (pgtrickle.stream) AS
SELECT string_agg(cat || ':' || qty::text, ',' ORDER BY id) AS all_items, count(DISTINCT cat) AS cats FROM items;
SELECT property, value FROM pgtrickle.explain_stream_table('listing')
 WHERE property IN ('refresh mode', 'strategy', 'row identity');
UPDATE items SET cat = 'c0' WHERE id > 6;
REFRESH MATERIALIZED VIEW listing;
SELECT mode FROM pgtrickle.refresh_history('listing', 1);
TABLE listing;

-- HAVING: the row comes and goes.
CREATE MATERIALIZED VIEW big_total WITH (pgtrickle.stream) AS
SELECT sum(qty) AS qty FROM items HAVING sum(qty) > 40;
TABLE big_total;
DELETE FROM items WHERE id > 7;
REFRESH MATERIALIZED VIEW big_total;
TABLE big_total;
INSERT INTO items VALUES (20, 'c2', 30, 1.00);
REFRESH MATERIALIZED VIEW big_total;
TABLE big_total;

-- Over a join.
CREATE TABLE cats (cat text PRIMARY KEY, label text);
INSERT INTO cats VALUES ('c0', 'zero'), ('c1', 'one');
CREATE MATERIALIZED VIEW labelled WITH (pgtrickle.stream) AS
SELECT count(*) AS n, sum(i.qty) AS qty FROM items i JOIN cats c ON c.cat = i.cat;
TABLE labelled;
INSERT INTO cats VALUES ('c2', 'two');
REFRESH MATERIALIZED VIEW labelled;
SELECT mode FROM pgtrickle.refresh_history('labelled', 1);
TABLE labelled;

-- IMMEDIATE: maintained by the writing statements, undone with them.
CREATE MATERIALIZED VIEW live WITH (pgtrickle.stream, pgtrickle.refresh_mode = 'immediate') AS
SELECT count(*) AS n, sum(qty) AS qty, max(price) AS dearest FROM items;
TABLE live;
BEGIN;
INSERT INTO items VALUES (21, 'c1', 1, 99.00);
TABLE live;
ROLLBACK;
TABLE live;
DELETE FROM items WHERE price = (SELECT max(price) FROM items);
TABLE live;
TRUNCATE items;
TABLE live;

DROP SCHEMA scal CASCADE;
