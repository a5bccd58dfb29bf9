-- UNION ALL of keyed branches (filters, projections and inner joins that
-- select their tables' primary keys, GROUP BY or DISTINCT over one table).
-- Two branches can produce equal rows, so the stream table is a multiset:
-- a refresh finds the affected rows through each branch's key, and
-- compares them whole, copies included.
CREATE SCHEMA uni;
SET search_path = uni, public;
SET pg_trickle.differential_max_change_fraction = 1000;
CREATE TABLE web (id int PRIMARY KEY, customer text, amount numeric);
CREATE TABLE shop (id int PRIMARY KEY, customer text, amount numeric);
INSERT INTO web VALUES (1, 'ann', 10), (2, 'bob', 20), (3, 'ann', 5);
INSERT INTO shop VALUES (1, 'ann', 10), (2, 'cid', 7);

CREATE MATERIALIZED VIEW sales WITH (pgtrickle.stream) AS
SELECT id, customer, amount, 'web' AS channel FROM web
UNION ALL
SELECT id, customer, amount, 'shop' FROM shop;
CREATE MATERIALIZED VIEW per_customer WITH (pgtrickle.stream) AS
SELECT customer, sum(amount) AS total FROM web GROUP BY customer
UNION ALL
SELECT customer, sum(amount) FROM shop GROUP BY customer;
-- Equal rows from both branches: (1, ann, 10) twice.
CREATE MATERIALIZED VIEW amounts WITH (pgtrickle.stream) AS
SELECT id, customer, amount FROM web UNION ALL SELECT id, customer, amount FROM shop;
SELECT name, refresh_mode FROM pgtrickle.stream_tables WHERE schema = 'uni' ORDER BY name;
SELECT property, value FROM pgtrickle.explain_stream_table('amounts')
 WHERE property IN ('strategy', 'row identity');
-- No unique index: an index on each branch's key columns.
SELECT regexp_replace(pg_get_indexdef(indexrelid), '__pgt_key_[0-9]+', '__pgt_key_<oid>') AS index
  FROM pg_index WHERE indrelid = 'amounts'::regclass;
TABLE amounts ORDER BY id, customer;

-- Changes: one of the two equal rows goes, the other stays.
UPDATE web SET amount = 11 WHERE id = 1;
INSERT INTO shop VALUES (3, 'ann', 5);
DELETE FROM web WHERE id = 2;
INSERT INTO web VALUES (4, 'dee', 1);
REFRESH MATERIALIZED VIEW sales;
REFRESH MATERIALIZED VIEW per_customer;
REFRESH MATERIALIZED VIEW amounts;
SELECT s.name, h.mode, h.rows_applied FROM pgtrickle.stream_tables s,
       LATERAL pgtrickle.refresh_history(s.relation::text, 1) h
 WHERE s.schema = 'uni' ORDER BY s.name;
TABLE amounts ORDER BY id, customer, amount;
TABLE per_customer ORDER BY customer, total;
SELECT count(*) AS differences FROM (
    (TABLE sales EXCEPT ALL
     (SELECT id, customer, amount, 'web' FROM web UNION ALL SELECT id, customer, amount, 'shop' FROM shop))
    UNION ALL
    ((SELECT id, customer, amount, 'web' FROM web UNION ALL SELECT id, customer, amount, 'shop' FROM shop)
     EXCEPT ALL TABLE sales)) d;

-- IMMEDIATE: maintained by the writing statements, copies included.
CREATE MATERIALIZED VIEW live WITH (pgtrickle.stream, pgtrickle.refresh_mode = 'immediate') AS
SELECT id, amount FROM web UNION ALL SELECT id, amount FROM shop;
BEGIN;
INSERT INTO shop VALUES (4, 'dee', 1);
SELECT * FROM live WHERE id = 4;
ROLLBACK;
UPDATE web SET amount = 5 WHERE id = 3;
TABLE live ORDER BY id, amount;

-- Branches that select no key (filters, projections and inner joins of
-- tables): the union's rows are the rows each branch's changes add and
-- remove, counted per image and applied (the tables are not read again
-- for a one-table branch; a join's other tables through their indexes).
CREATE TABLE refunds (order_id int, amount numeric);
INSERT INTO refunds VALUES (1, 4), (1, 4), (2, 20);
CREATE MATERIALIZED VIEW all_amounts WITH (pgtrickle.stream) AS
SELECT amount FROM web UNION ALL SELECT amount FROM shop;
CREATE MATERIALIZED VIEW ledger WITH (pgtrickle.stream) AS
SELECT customer, amount FROM web WHERE amount > 1
UNION ALL
SELECT w.customer, -r.amount FROM refunds r JOIN web w ON w.id = r.order_id
UNION ALL
SELECT customer, 0 FROM shop;
SELECT name, refresh_mode FROM pgtrickle.stream_tables WHERE name IN ('all_amounts', 'ledger') ORDER BY name;
SELECT property, value FROM pgtrickle.explain_stream_table('ledger')
 WHERE property IN ('strategy', 'row identity');
TABLE ledger ORDER BY customer, amount;
-- A refund of a duplicate row goes, ann's order 1 becomes bob's, a shop
-- sale and a refund of a new order come.
DELETE FROM refunds WHERE ctid = (SELECT min(ctid) FROM refunds WHERE order_id = 1);
UPDATE web SET customer = 'bob' WHERE id = 1;
INSERT INTO shop VALUES (5, 'eve', 3);
INSERT INTO web VALUES (5, 'eve', 30);
INSERT INTO refunds VALUES (5, 30), (5, 30);
REFRESH MATERIALIZED VIEW all_amounts;
REFRESH MATERIALIZED VIEW ledger;
SELECT s.name, h.mode, h.rows_applied FROM pgtrickle.stream_tables s,
       LATERAL pgtrickle.refresh_history(s.relation::text, 1) h
 WHERE s.name IN ('all_amounts', 'ledger') ORDER BY s.name;
TABLE ledger ORDER BY customer, amount;
SELECT count(*) AS differences FROM (
    (TABLE ledger EXCEPT ALL
     (SELECT customer, amount FROM web WHERE amount > 1
      UNION ALL SELECT w.customer, -r.amount FROM refunds r JOIN web w ON w.id = r.order_id
      UNION ALL SELECT customer, 0 FROM shop))
    UNION ALL
    ((SELECT customer, amount FROM web WHERE amount > 1
      UNION ALL SELECT w.customer, -r.amount FROM refunds r JOIN web w ON w.id = r.order_id
      UNION ALL SELECT customer, 0 FROM shop)
     EXCEPT ALL TABLE ledger)) d;
SELECT count(*) AS differences FROM (
    (TABLE all_amounts EXCEPT ALL (SELECT amount FROM web UNION ALL SELECT amount FROM shop))
    UNION ALL
    ((SELECT amount FROM web UNION ALL SELECT amount FROM shop) EXCEPT ALL TABLE all_amounts)) d;
-- IMMEDIATE too: a statement on one table applies its branches' rows.
ALTER MATERIALIZED VIEW ledger SET (pgtrickle.refresh_mode = 'immediate');
BEGIN;
UPDATE web SET amount = amount + 100 WHERE id = 5;
SELECT * FROM ledger WHERE customer = 'eve' ORDER BY amount;
ROLLBACK;

-- Equal values that print differently are different rows of a multiset:
-- an UPDATE from 5 to 5.00 is applied (the stream table shows 5.00), and
-- the row's DELETE later finds it.
UPDATE web SET amount = 5.00 WHERE id = 3;
REFRESH MATERIALIZED VIEW all_amounts;
SELECT amount::text FROM all_amounts WHERE amount = 5 ORDER BY 1;
DELETE FROM web WHERE id = 3;
REFRESH MATERIALIZED VIEW all_amounts;
SELECT count(*) AS fives FROM all_amounts WHERE amount = 5;
-- A branch with LIMIT or TABLESAMPLE is not kept from its rows' changes:
-- refreshed in FULL.
CREATE MATERIALIZED VIEW limited WITH (pgtrickle.stream) AS
(SELECT amount FROM web ORDER BY amount LIMIT 1) UNION ALL SELECT amount FROM shop;
CREATE MATERIALIZED VIEW sampled WITH (pgtrickle.stream) AS
SELECT amount FROM web TABLESAMPLE BERNOULLI (50) REPEATABLE (1) UNION ALL SELECT amount FROM shop;

-- UNION (without ALL) is refreshed in FULL, and so is a UNION ALL with
-- a branch aggregating without GROUP BY (next to another that selects no
-- key).
CREATE MATERIALIZED VIEW customers WITH (pgtrickle.stream) AS
SELECT customer FROM web UNION SELECT customer FROM shop;
CREATE MATERIALIZED VIEW totals WITH (pgtrickle.stream) AS
SELECT amount FROM web UNION ALL SELECT sum(amount) FROM shop;
SELECT name, refresh_mode FROM pgtrickle.stream_tables WHERE name IN ('customers', 'totals', 'limited', 'sampled') ORDER BY name;

DROP SCHEMA uni CASCADE;
