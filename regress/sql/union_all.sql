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

-- UNION (without ALL) and branches without a key are refreshed in FULL.
CREATE MATERIALIZED VIEW customers WITH (pgtrickle.stream) AS
SELECT customer FROM web UNION SELECT customer FROM shop;
CREATE MATERIALIZED VIEW all_amounts WITH (pgtrickle.stream) AS
SELECT amount FROM web UNION ALL SELECT amount FROM shop;

DROP SCHEMA uni CASCADE;
