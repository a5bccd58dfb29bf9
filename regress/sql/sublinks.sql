-- Subqueries in WHERE (EXISTS, NOT EXISTS, IN, NOT IN, scalar
-- subqueries) tied to the outer query by = conditions: a change of a
-- table inside one reaches the outer rows it is compared with, which are
-- recomputed; nothing else is read.
CREATE SCHEMA subl;
SET search_path = subl, public;
SET pg_trickle.differential_max_change_fraction = 1000;
CREATE TABLE customers (id int PRIMARY KEY, name text, region text);
CREATE TABLE orders (id int PRIMARY KEY, customer int NOT NULL, amount numeric, status text);
CREATE TABLE returns (order_id int NOT NULL, reason text);
INSERT INTO customers SELECT i, 'cust ' || i, CASE WHEN i % 2 = 0 THEN 'east' ELSE 'west' END
  FROM generate_series(1, 6) i;
INSERT INTO orders SELECT i, i % 5 + 1, i * 10, CASE WHEN i % 3 = 0 THEN 'open' ELSE 'done' END
  FROM generate_series(1, 12) i;
INSERT INTO returns VALUES (2, 'broken'), (7, 'late');

-- Customers with an open order.
CREATE MATERIALIZED VIEW with_open WITH (pgtrickle.stream, pgtrickle.refresh_mode = differential) AS
SELECT id, name FROM customers c
 WHERE EXISTS (SELECT 1 FROM orders o WHERE o.customer = c.id AND o.status = 'open');
-- Customers without any order.
CREATE MATERIALIZED VIEW without_orders WITH (pgtrickle.stream, pgtrickle.refresh_mode = differential) AS
SELECT id, name FROM customers c WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.customer = c.id);
-- Orders above their customer's average.
CREATE MATERIALIZED VIEW above_average WITH (pgtrickle.stream, pgtrickle.refresh_mode = differential) AS
SELECT id, customer, amount FROM orders o
 WHERE amount > (SELECT avg(amount) FROM orders a WHERE a.customer = o.customer);
-- Customers with a large order, per region.
CREATE MATERIALIZED VIEW big_buyers WITH (pgtrickle.stream, pgtrickle.refresh_mode = differential) AS
SELECT region, count(*) AS customers FROM customers
 WHERE id IN (SELECT customer FROM orders WHERE amount >= 100) GROUP BY region;
-- Orders not returned (NOT IN between NOT NULL columns).
CREATE MATERIALIZED VIEW kept_orders WITH (pgtrickle.stream, pgtrickle.refresh_mode = differential) AS
SELECT id, amount FROM orders WHERE id NOT IN (SELECT order_id FROM returns);
SELECT name, refresh_mode FROM pgtrickle.stream_tables WHERE schema = 'subl' ORDER BY name;
SELECT property, value FROM pgtrickle.explain_stream_table('with_open')
 WHERE property IN ('strategy', 'row identity', 'sources');

-- Changes inside the subqueries and outside, refreshed differentially.
INSERT INTO orders VALUES (13, 6, 40, 'open'), (14, 1, 500, 'done');
UPDATE orders SET status = 'open' WHERE id = 4;
UPDATE orders SET customer = 2 WHERE id = 5;
DELETE FROM orders WHERE customer = 3;
INSERT INTO customers VALUES (7, 'cust 7', 'east');
UPDATE customers SET region = 'west' WHERE id = 2;
INSERT INTO returns VALUES (14, 'wrong size');
DELETE FROM returns WHERE order_id = 2;
REFRESH MATERIALIZED VIEW with_open;
REFRESH MATERIALIZED VIEW without_orders;
REFRESH MATERIALIZED VIEW above_average;
REFRESH MATERIALIZED VIEW big_buyers;
REFRESH MATERIALIZED VIEW kept_orders;
SELECT s.name, h.mode, h.changes_consumed FROM pgtrickle.stream_tables s,
       LATERAL (SELECT mode, changes_consumed FROM pgtrickle.pgt_refresh_history r
                 WHERE r.relid = (s.schema || '.' || s.name)::regclass ORDER BY id DESC LIMIT 1) h
 WHERE s.schema = 'subl' ORDER BY s.name;
TABLE with_open ORDER BY id;
TABLE without_orders ORDER BY id;
TABLE above_average ORDER BY id;
TABLE big_buyers ORDER BY region;
TABLE kept_orders ORDER BY id;
-- Each equals a fresh run of its query.
SELECT (SELECT count(*) FROM ((TABLE with_open EXCEPT ALL
          SELECT id, name FROM customers c WHERE EXISTS (SELECT 1 FROM orders o WHERE o.customer = c.id AND o.status = 'open'))
        UNION ALL (SELECT id, name FROM customers c WHERE EXISTS (SELECT 1 FROM orders o WHERE o.customer = c.id AND o.status = 'open')
          EXCEPT ALL TABLE with_open)) d) AS with_open,
       (SELECT count(*) FROM ((TABLE above_average EXCEPT ALL
          SELECT id, customer, amount FROM orders o WHERE amount > (SELECT avg(amount) FROM orders a WHERE a.customer = o.customer))
        UNION ALL (SELECT id, customer, amount FROM orders o WHERE amount > (SELECT avg(amount) FROM orders a WHERE a.customer = o.customer)
          EXCEPT ALL TABLE above_average)) d) AS above_average;

-- IMMEDIATE: the writing statement updates it.
ALTER MATERIALIZED VIEW with_open SET (pgtrickle.refresh_mode = immediate);
BEGIN;
UPDATE orders SET status = 'done' WHERE customer = 6;
TABLE with_open ORDER BY id;
ROLLBACK;
TABLE with_open ORDER BY id;

-- A subquery not tied to the outer query by =, NOT IN over a column that
-- may be NULL, subqueries in the select list and HAVING: maintained too;
-- a change of a table that no = ties to the outer rows recomputes the
-- whole query (the refresh history says so), other changes are followed.
ALTER MATERIALIZED VIEW with_open SET (pgtrickle.refresh_mode = differential);
CREATE MATERIALIZED VIEW above_all WITH (pgtrickle.stream, pgtrickle.refresh_mode = differential) AS
SELECT id FROM orders WHERE amount > (SELECT avg(amount) FROM orders);
CREATE MATERIALIZED VIEW unreturned WITH (pgtrickle.stream, pgtrickle.refresh_mode = differential) AS
SELECT id FROM customers WHERE name NOT IN (SELECT reason FROM returns);
CREATE MATERIALIZED VIEW with_count WITH (pgtrickle.stream, pgtrickle.refresh_mode = differential) AS
SELECT id, (SELECT count(*) FROM orders o WHERE o.customer = c.id) AS n FROM customers c;
CREATE MATERIALIZED VIEW busy_regions WITH (pgtrickle.stream, pgtrickle.refresh_mode = differential) AS
SELECT region, count(*) AS customers FROM customers GROUP BY region
HAVING count(*) >= (SELECT count(*) FROM returns);
INSERT INTO returns VALUES (3, 'cust 1');
UPDATE orders SET customer = 4 WHERE id = 1;
INSERT INTO customers VALUES (8, 'cust 8', 'east');
REFRESH MATERIALIZED VIEW above_all;
REFRESH MATERIALIZED VIEW unreturned;
REFRESH MATERIALIZED VIEW with_count;
REFRESH MATERIALIZED VIEW busy_regions;
SELECT s.name, h.mode, h.message FROM pgtrickle.stream_tables s,
       LATERAL (SELECT mode, message FROM pgtrickle.pgt_refresh_history r
                 WHERE r.relid = (s.schema || '.' || s.name)::regclass ORDER BY id DESC LIMIT 1) h
 WHERE s.schema = 'subl' AND s.name IN ('above_all', 'unreturned', 'with_count', 'busy_regions') ORDER BY s.name;
TABLE unreturned ORDER BY id;
TABLE with_count ORDER BY id;
TABLE busy_regions ORDER BY region;

-- An IN over a grouped subquery compared with a key column (TPC-H Q18's
-- form): the affected keys are pushed into the subquery too, which then
-- aggregates only their groups (PostgreSQL would not push a list of keys
-- there itself), in DIFFERENTIAL and IMMEDIATE alike.
CREATE MATERIALIZED VIEW big_spenders WITH (pgtrickle.stream, pgtrickle.refresh_mode = differential) AS
SELECT c.id, c.name, count(*) AS orders, sum(o.amount) AS spent
  FROM customers c JOIN orders o ON o.customer = c.id
 WHERE c.id IN (SELECT customer FROM orders GROUP BY customer HAVING sum(amount) >= 200)
 GROUP BY c.id, c.name;
CREATE MATERIALIZED VIEW big_spenders_now WITH (pgtrickle.stream, pgtrickle.refresh_mode = immediate) AS
SELECT c.id, c.name, count(*) AS orders, sum(o.amount) AS spent
  FROM customers c JOIN orders o ON o.customer = c.id
 WHERE c.id IN (SELECT customer FROM orders GROUP BY customer HAVING sum(amount) >= 200)
 GROUP BY c.id, c.name;
SELECT (regexp_match(value, 'WHERE \((\w+\.customer = ANY \([^)]*\))\)'))[1] AS pushed_into_subquery
  FROM pgtrickle.explain_stream_table('big_spenders') WHERE property = 'apply';
TABLE big_spenders ORDER BY id;
INSERT INTO orders VALUES (20, 6, 150, 'open'), (21, 2, 5, 'done');
UPDATE orders SET amount = amount + 100 WHERE id = 4;
DELETE FROM orders WHERE id = 14;
UPDATE orders SET customer = 1 WHERE id = 12;
REFRESH MATERIALIZED VIEW big_spenders;
SELECT mode, changes_consumed FROM pgtrickle.pgt_refresh_history
 WHERE relid = 'big_spenders'::regclass ORDER BY id DESC LIMIT 1;
TABLE big_spenders ORDER BY id;
CREATE VIEW big_spenders_query AS
SELECT c.id, c.name, count(*) AS orders, sum(o.amount) AS spent
  FROM customers c JOIN orders o ON o.customer = c.id
 WHERE c.id IN (SELECT customer FROM orders GROUP BY customer HAVING sum(amount) >= 200)
 GROUP BY c.id, c.name;
SELECT (SELECT count(*) FROM ((TABLE big_spenders EXCEPT ALL TABLE big_spenders_query)
          UNION ALL (TABLE big_spenders_query EXCEPT ALL TABLE big_spenders)) d) AS differential_differs,
       (SELECT count(*) FROM ((TABLE big_spenders_now EXCEPT ALL TABLE big_spenders_query)
          UNION ALL (TABLE big_spenders_query EXCEPT ALL TABLE big_spenders_now)) d) AS immediate_differs;

RESET pg_trickle.differential_max_change_fraction;
DROP SCHEMA subl CASCADE;
RESET search_path;
