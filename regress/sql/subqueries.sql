-- Subqueries in FROM and WITH queries that filter, project and join are
-- read as if their tables were joined in their place: the stream table is
-- keyed and maintained as the same query written without them.
CREATE SCHEMA subq;
SET search_path = subq, public;
SET pg_trickle.differential_max_change_fraction = 1000;
CREATE TABLE orders (id int PRIMARY KEY, customer int, amount numeric, status text);
CREATE TABLE customers (id int PRIMARY KEY, name text, region text);
INSERT INTO customers SELECT i, 'cust ' || i, CASE WHEN i % 2 = 0 THEN 'east' ELSE 'west' END
  FROM generate_series(1, 4) i;
INSERT INTO orders SELECT i, i % 4 + 1, i * 10, CASE WHEN i % 3 = 0 THEN 'open' ELSE 'done' END
  FROM generate_series(1, 10) i;

-- A subquery in FROM.
CREATE MATERIALIZED VIEW big_orders WITH (pgtrickle.stream) AS
SELECT o.id, o.doubled FROM (SELECT id, amount * 2 AS doubled FROM orders WHERE status = 'done') o
 WHERE o.doubled > 40;
-- WITH queries joined, keyed by the primary keys they pass on.
CREATE MATERIALIZED VIEW open_orders WITH (pgtrickle.stream) AS
WITH open AS (SELECT id, customer, amount FROM orders WHERE status = 'open'),
     east AS (SELECT id AS cid, name FROM customers WHERE region = 'east')
SELECT open.id, east.cid, east.name, open.amount FROM open JOIN east ON east.cid = open.customer;
-- An aggregate over a subquery that joins.
CREATE MATERIALIZED VIEW per_region WITH (pgtrickle.stream) AS
SELECT j.region, count(*) AS n, sum(j.amount) AS total
  FROM (SELECT c.region, o.amount FROM orders o JOIN customers c ON c.id = o.customer) j
 GROUP BY j.region;
SELECT name, refresh_mode FROM pgtrickle.stream_tables WHERE schema = 'subq' ORDER BY name;
SELECT property, value FROM pgtrickle.explain_stream_table('open_orders')
 WHERE property IN ('strategy', 'row identity', 'sources');

-- Changes to both tables, refreshed differentially.
INSERT INTO orders VALUES (11, 2, 500, 'open'), (12, 3, 35, 'done');
UPDATE orders SET status = 'open' WHERE id = 4;
UPDATE customers SET region = 'east' WHERE id = 1;
DELETE FROM orders WHERE id = 6;
REFRESH MATERIALIZED VIEW big_orders;
REFRESH MATERIALIZED VIEW open_orders;
REFRESH MATERIALIZED VIEW per_region;
SELECT s.name, h.mode FROM pgtrickle.stream_tables s,
       LATERAL pgtrickle.refresh_history(s.relation::text, 1) h
 WHERE s.schema = 'subq' ORDER BY s.name;
TABLE big_orders ORDER BY id;
TABLE open_orders ORDER BY id;
TABLE per_region ORDER BY region;
SELECT count(*) AS differences FROM (
    (TABLE open_orders EXCEPT ALL
     SELECT o.id, c.id, c.name, o.amount FROM orders o JOIN customers c ON c.id = o.customer
      WHERE o.status = 'open' AND c.region = 'east')
    UNION ALL
    (SELECT o.id, c.id, c.name, o.amount FROM orders o JOIN customers c ON c.id = o.customer
      WHERE o.status = 'open' AND c.region = 'east'
     EXCEPT ALL TABLE open_orders)) d;

-- A subquery that aggregates is maintained through slices when it groups
-- by a column (slices.sql); one that limits or ranks, and recursive WITH
-- queries, are not maintained incrementally yet: AUTO refreshes them in
-- FULL.
CREATE MATERIALIZED VIEW busy WITH (pgtrickle.stream) AS
SELECT s.customer, s.n FROM (SELECT customer, count(*) AS n FROM orders GROUP BY customer) s WHERE s.n > 2;
SELECT refresh_mode FROM pgtrickle.stream_tables WHERE name = 'busy';
CREATE MATERIALIZED VIEW first_orders WITH (pgtrickle.stream) AS
SELECT f.id FROM (SELECT id FROM orders ORDER BY id LIMIT 3) f;
-- (A function in FROM next to a table, with a WHERE clause on it.)
CREATE MATERIALIZED VIEW numbered WITH (pgtrickle.stream) AS
SELECT o.id, g FROM orders o, generate_series(1, 2) g WHERE g > 1;
CREATE MATERIALIZED VIEW levels WITH (pgtrickle.stream) AS
WITH RECURSIVE l(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM l WHERE n < 3) SELECT c.id, l.n FROM customers c, l;
CREATE MATERIALIZED VIEW refused WITH (pgtrickle.stream, pgtrickle.refresh_mode = 'differential') AS
SELECT f.id FROM (SELECT id FROM orders ORDER BY id LIMIT 3) f;

DROP SCHEMA subq CASCADE;
