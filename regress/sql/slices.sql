-- Running totals over slices: count/sum/avg of rows that come through
-- EXISTS, NOT EXISTS, IN and correlated scalar subqueries, outer joins
-- and grouped subqueries in FROM. One column (the root's, here an order's
-- key) is carried by = conditions into every other table reference; a
-- change touches the slices of its rows' values there, and a refresh adds
-- those slices' rows now and subtracts them as they were before.
CREATE SCHEMA sl;
SET search_path = sl, public;
SET pg_trickle.differential_max_change_fraction = 1000;
CREATE TABLE orders (id int PRIMARY KEY, dropped int, customer int NOT NULL, priority text, day int);
ALTER TABLE orders DROP COLUMN dropped;  -- (a stand-in leaves it out)
CREATE TABLE lines (order_id int, line int, part int, qty int, shipped int, due int,
                    PRIMARY KEY (order_id, line));
CREATE TABLE customers (id int PRIMARY KEY, region text, balance numeric);
CREATE TABLE parts (id int PRIMARY KEY, brand text);
INSERT INTO customers SELECT i, CASE WHEN i % 2 = 0 THEN 'east' ELSE 'west' END, i * 10
  FROM generate_series(1, 8) i;
INSERT INTO parts SELECT i, CASE WHEN i % 3 = 0 THEN 'acme' ELSE 'other' END FROM generate_series(1, 6) i;
INSERT INTO orders SELECT i, i % 7 + 1, 'p' || (i % 3), i % 10 FROM generate_series(1, 30) i;
INSERT INTO lines SELECT o, l, (o * l) % 6 + 1, (o + l) % 9 + 1, (o * 3 + l) % 5, (o + l * 2) % 5
  FROM generate_series(1, 30) o, generate_series(1, 3) l WHERE (o + l) % 4 <> 0;

-- Orders with a late line, per priority (TPC-H Q4).
CREATE MATERIALIZED VIEW late_orders WITH (pgtrickle.stream, pgtrickle.refresh_mode = differential) AS
SELECT priority, count(*) AS n FROM orders o
 WHERE day < 8 AND EXISTS (SELECT 1 FROM lines l WHERE l.order_id = o.id AND l.shipped > l.due)
 GROUP BY priority;
-- Customers without an order, per region (TPC-H Q22, the uncorrelated
-- average read whole).
CREATE MATERIALIZED VIEW idle_customers WITH (pgtrickle.stream, pgtrickle.refresh_mode = differential) AS
SELECT region, count(*) AS n, sum(balance) AS balance FROM customers c
 WHERE balance > (SELECT avg(balance) / 2 FROM customers)
   AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.customer = c.id)
 GROUP BY region;
-- Small quantities of a brand, compared with the part's average (Q17).
CREATE MATERIALIZED VIEW small_lines WITH (pgtrickle.stream, pgtrickle.refresh_mode = differential) AS
SELECT sum(l.qty) AS qty, count(*) AS n FROM lines l JOIN parts p ON p.id = l.part
 WHERE p.brand = 'acme' AND l.qty < (SELECT avg(x.qty) FROM lines x WHERE x.part = p.id);
-- How many customers have how many orders (Q13).
CREATE MATERIALIZED VIEW order_counts WITH (pgtrickle.stream, pgtrickle.refresh_mode = differential) AS
SELECT c.orders, count(*) AS customers
  FROM (SELECT cu.id, count(o.id) AS orders FROM customers cu LEFT JOIN orders o ON o.customer = cu.id
         GROUP BY cu.id) c
 GROUP BY c.orders;
SELECT name, refresh_mode FROM pgtrickle.stream_tables WHERE schema = 'sl' ORDER BY name;
SELECT property, regexp_replace(value, 'agg_[0-9]+', 'agg_<oid>') AS value
  FROM pgtrickle.explain_stream_table('late_orders') WHERE property IN ('strategy', 'slices', 'row identity');
SELECT property, value FROM pgtrickle.explain_stream_table('idle_customers') WHERE property = 'slices';
SELECT property, value FROM pgtrickle.explain_stream_table('small_lines') WHERE property LIKE 'slice%';
SELECT property, value FROM pgtrickle.explain_stream_table('order_counts') WHERE property = 'slices';

CREATE FUNCTION sl.check(st text, query text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE n bigint;
BEGIN
  EXECUTE format('SELECT count(*) FROM ((TABLE sl.%I EXCEPT ALL (%s)) UNION ALL ((%s) EXCEPT ALL TABLE sl.%I)) d',
                 st, query, query, st) INTO n;
  RETURN st || CASE WHEN n = 0 THEN ': equal to its query' ELSE ': differs by ' || n || ' rows' END;
END $$;
-- Refresh every stream table of the schema; how each was refreshed.
CREATE FUNCTION sl.refresh_all() RETURNS TABLE (name text, mode text, message text) LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pgtrickle.refresh_stream_table(st.name) FROM pgtrickle.stream_tables st WHERE st.schema = 'sl';
  RETURN QUERY SELECT st.name::text, h.mode, h.message FROM pgtrickle.stream_tables st,
                      pgtrickle.refresh_history(('sl.' || st.name)::regclass, 1) h
                WHERE st.schema = 'sl' ORDER BY st.name;
END $$;
CREATE FUNCTION sl.check_all() RETURNS SETOF text LANGUAGE sql AS $$
  SELECT sl.check(c.relname, rtrim(pg_get_viewdef(c.oid), ';'))
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname = 'sl' AND c.relkind = 'm' ORDER BY c.relname
$$;

-- Changes of the chained tables: new and deleted orders and lines,
-- updates of keys, priorities, quantities and dates.
INSERT INTO orders VALUES (31, 2, 'p1', 3), (32, 8, 'p2', 9);
INSERT INTO lines VALUES (31, 1, 3, 2, 4, 1), (31, 2, 6, 9, 0, 1), (32, 1, 3, 1, 3, 0);
UPDATE lines SET shipped = due + 1 WHERE order_id IN (2, 3) AND line = 1;
UPDATE lines SET qty = 1 WHERE part = 6 AND order_id < 10;
UPDATE orders SET priority = 'p9' WHERE id = 5;
UPDATE orders SET customer = 8 WHERE id IN (7, 14);
DELETE FROM lines WHERE order_id = 9;
DELETE FROM orders WHERE id IN (9, 10);
UPDATE lines SET part = 3 WHERE order_id = 11;
SELECT * FROM sl.refresh_all();
SELECT * FROM sl.check_all();
TABLE late_orders ORDER BY priority;
TABLE order_counts ORDER BY orders;

-- A change of a table read whole (customers, in the average of
-- idle_customers) recomputes the stream tables that read it whole;
-- order_counts reads customers by their key, the root of its slices.
UPDATE customers SET balance = balance * 3 WHERE id = 2;
SELECT * FROM sl.refresh_all();
SELECT * FROM sl.check_all();

-- Conditions a changed row must pass to take part (TPC-H Q20): a line of
-- acme_orders is looked at only when its part is an acme one, and by the
-- correlated count only when it shipped late too: `x.part = l.part`
-- carries the IN of the level above to the subquery's lines. A changed
-- line that fails them both times touches no slice, and the rule that
-- falls back to FULL when the changes are many against the root table
-- (orders) counts only the others.
CREATE MATERIALIZED VIEW acme_orders WITH (pgtrickle.stream, pgtrickle.refresh_mode = differential) AS
SELECT o.priority, o.day FROM orders o
 WHERE o.id IN (SELECT l.order_id FROM lines l
                 WHERE l.part IN (SELECT id FROM parts WHERE brand = 'acme')
                   AND l.qty > (SELECT count(*) FROM lines x
                                 WHERE x.order_id = l.order_id AND x.part = l.part AND x.shipped > 1));
SELECT property, value FROM pgtrickle.explain_stream_table('acme_orders') WHERE property LIKE 'slice%';
ANALYZE orders;
SET pg_trickle.differential_max_change_fraction = 0.25;
-- 7.5 changes are a quarter of the 30 orders: these are many more, but
-- only two lines of order 4 can touch a slice.
UPDATE lines SET qty = qty + 1 WHERE part NOT IN (3, 6);
UPDATE lines SET qty = 9 WHERE order_id = 4 AND part IN (3, 6);
REFRESH MATERIALIZED VIEW acme_orders;
SELECT mode, changes_consumed, message FROM pgtrickle.refresh_history('acme_orders', 1);
SELECT sl.check('acme_orders', rtrim(pg_get_viewdef('acme_orders'), ';'));
-- Lines of acme parts, many of them: FULL.
UPDATE lines SET shipped = 0 WHERE part IN (3, 6) AND order_id < 20;
UPDATE lines SET due = 1 WHERE part NOT IN (3, 6);
REFRESH MATERIALIZED VIEW acme_orders;
SELECT mode, changes_consumed, message FROM pgtrickle.refresh_history('acme_orders', 1);
SELECT sl.check('acme_orders', rtrim(pg_get_viewdef('acme_orders'), ';'));
SET pg_trickle.differential_max_change_fraction = 1000;
-- Parts are read whole: a brand changing recomputes the query.
UPDATE parts SET brand = 'acme' WHERE id = 1;
UPDATE lines SET qty = 0 WHERE order_id = 5;
REFRESH MATERIALIZED VIEW acme_orders;
SELECT mode, message FROM pgtrickle.refresh_history('acme_orders', 1);
UPDATE lines SET qty = 8, shipped = 4 WHERE order_id IN (6, 7) AND part = 1;
REFRESH MATERIALIZED VIEW acme_orders;
SELECT mode, message FROM pgtrickle.refresh_history('acme_orders', 1);
SELECT sl.check('acme_orders', rtrim(pg_get_viewdef('acme_orders'), ';'));
UPDATE parts SET brand = 'other' WHERE id = 1;
-- IMMEDIATE: the same conditions on the statement's changed rows.
ALTER MATERIALIZED VIEW acme_orders SET (pgtrickle.refresh_mode = immediate);
UPDATE lines SET qty = 9 WHERE order_id IN (8, 13);
UPDATE lines SET part = 3 WHERE order_id = 14 AND line = 1;
UPDATE lines SET qty = 5 WHERE part = 2;
SELECT sl.check('acme_orders', rtrim(pg_get_viewdef('acme_orders'), ';'));
DROP MATERIALIZED VIEW acme_orders;
-- An EXISTS correlated twice answers per order, not per slice: every
-- changed line of a touched order touches its slice.
CREATE MATERIALIZED VIEW odd_lines WITH (pgtrickle.stream, pgtrickle.refresh_mode = differential) AS
SELECT o.priority, count(*) AS n FROM orders o
 WHERE EXISTS (SELECT 1 FROM lines l WHERE l.order_id = o.id AND l.line <> o.day)
 GROUP BY o.priority;
SELECT property, value FROM pgtrickle.explain_stream_table('odd_lines') WHERE property = 'slices';
DELETE FROM lines WHERE order_id = 3 AND line = 3;
UPDATE orders SET day = 1 WHERE id IN (1, 2, 4);
REFRESH MATERIALIZED VIEW odd_lines;
SELECT sl.check('odd_lines', rtrim(pg_get_viewdef('odd_lines'), ';'));
DROP MATERIALIZED VIEW odd_lines;
-- A condition that could fail is not used: `100 / k > 1` carried to the
-- lines' column would divide by the 0 of a line the query never divides
-- by (it divides by orders' ids, which are never 0).
CREATE MATERIALIZED VIEW divided WITH (pgtrickle.stream, pgtrickle.refresh_mode = differential) AS
SELECT count(*) AS n FROM orders o
 WHERE 100 / o.id > 3 AND EXISTS (SELECT 1 FROM lines l WHERE l.order_id = o.id);
SELECT property, value FROM pgtrickle.explain_stream_table('divided') WHERE property = 'slices';
INSERT INTO lines VALUES (0, 1, 1, 1, 1, 1);
REFRESH MATERIALIZED VIEW divided;
SELECT sl.check('divided', rtrim(pg_get_viewdef('divided'), ';'));
DELETE FROM lines WHERE order_id = 0;
DROP MATERIALIZED VIEW divided;
SELECT name, mode FROM sl.refresh_all();
SELECT * FROM sl.check_all();

-- Running totals that are missing (their table dropped here; a newer
-- version giving an existing stream table running totals is the same
-- case): created and filled by a FULL refresh, differential again next.
DO $$
DECLARE state regclass := format('pgtrickle_state.agg_%s', 'sl.idle_customers'::regclass::oid)::regclass;
BEGIN
  DELETE FROM pg_depend WHERE classid = 'pg_class'::regclass AND objid = state
     AND refclassid = 'pg_extension'::regclass;
  EXECUTE format('DROP TABLE %s', state);
END $$;
DELETE FROM orders WHERE id = 11;
REFRESH MATERIALIZED VIEW idle_customers;
SELECT mode, message FROM pgtrickle.refresh_history('idle_customers', 1);
INSERT INTO orders VALUES (11, 3, 'p0', 1);
REFRESH MATERIALIZED VIEW idle_customers;
SELECT mode, message FROM pgtrickle.refresh_history('idle_customers', 1);
REFRESH MATERIALIZED VIEW order_counts;
SELECT * FROM sl.check_all();

-- IMMEDIATE: the same, inside the writing statement, rolled back with it.
ALTER MATERIALIZED VIEW late_orders SET (pgtrickle.refresh_mode = immediate);
ALTER MATERIALIZED VIEW small_lines SET (pgtrickle.refresh_mode = immediate);
BEGIN;
DELETE FROM lines WHERE order_id = 12;
INSERT INTO lines VALUES (12, 1, 6, 1, 4, 0);
UPDATE parts SET brand = 'acme' WHERE id = 2;
SELECT * FROM sl.check_all();
ROLLBACK;
SELECT * FROM sl.check_all();
TABLE late_orders ORDER BY priority;

-- Grouped subqueries in FROM and WITH queries grouped by a NOT NULL column
-- (orders.customer): slices rooted at that table by it. A filter over the
-- groups, the groups joined to a table, two of them joined, and an
-- aggregate over the groups.
CREATE MATERIALIZED VIEW busy WITH (pgtrickle.stream, pgtrickle.refresh_mode = differential) AS
SELECT b.customer, b.n FROM (SELECT customer, count(*) AS n FROM orders GROUP BY customer) b WHERE b.n > 4;
CREATE MATERIALIZED VIEW busy_regions WITH (pgtrickle.stream, pgtrickle.refresh_mode = differential) AS
WITH per AS (SELECT customer, count(*) AS n, max(day) AS last_day FROM orders GROUP BY customer)
SELECT c.region, per.n, per.last_day FROM per JOIN customers c ON c.id = per.customer;
CREATE MATERIALIZED VIEW early_share WITH (pgtrickle.stream, pgtrickle.refresh_mode = differential) AS
SELECT a.customer, a.n, e.n AS early FROM (SELECT customer, count(*) AS n FROM orders GROUP BY customer) a
  JOIN (SELECT customer, count(*) AS n FROM orders WHERE day < 5 GROUP BY customer) e ON e.customer = a.customer;
CREATE MATERIALIZED VIEW order_histogram WITH (pgtrickle.stream, pgtrickle.refresh_mode = differential) AS
WITH per AS (SELECT customer, count(*) AS n FROM orders GROUP BY customer)
SELECT n, count(*) AS customers FROM per GROUP BY n;
SELECT name, property, value FROM unnest(ARRAY['busy', 'busy_regions', 'early_share', 'order_histogram']) name,
       pgtrickle.explain_stream_table('sl.' || name) WHERE property IN ('refresh mode', 'slice root');
INSERT INTO orders VALUES (101, 2, 'p1', 3), (102, 2, 'p2', 9), (103, 8, 'p0', 1);
UPDATE orders SET customer = 3 WHERE id IN (1, 2, 5);
UPDATE orders SET day = day + 4 WHERE customer = 4;
DELETE FROM orders WHERE customer = 6;
UPDATE customers SET region = 'north' WHERE id = 2;
SELECT * FROM sl.refresh_all() WHERE name IN ('busy', 'busy_regions', 'early_share', 'order_histogram');
SELECT * FROM sl.check_all();
-- IMMEDIATE: after every statement.
ALTER MATERIALIZED VIEW busy SET (pgtrickle.refresh_mode = immediate);
ALTER MATERIALIZED VIEW busy_regions SET (pgtrickle.refresh_mode = immediate);
BEGIN;
UPDATE orders SET customer = 1 WHERE customer = 7;
SELECT * FROM sl.check_all() c WHERE c LIKE 'busy%';
DELETE FROM orders WHERE id > 25;
SELECT * FROM sl.check_all() c WHERE c LIKE 'busy%';
ROLLBACK;
TABLE busy ORDER BY customer;
-- Grouped by a column that may be NULL: NULL is a slice too, the rows
-- whose column IS NULL.
CREATE MATERIALIZED VIEW by_part WITH (pgtrickle.stream, pgtrickle.refresh_mode = differential) AS
SELECT p.part, p.q FROM (SELECT part, sum(qty) AS q FROM lines GROUP BY part) p WHERE p.q > 10;
SELECT value FROM pgtrickle.explain_stream_table('sl.by_part') WHERE property = 'slice root';
INSERT INTO lines VALUES (40, 1, NULL, 7, 0, 0), (40, 2, NULL, 8, 0, 0);
UPDATE lines SET part = NULL WHERE order_id = 3;
SELECT * FROM sl.refresh_all() WHERE name = 'by_part';
SELECT * FROM sl.check_all() c WHERE c LIKE 'by_part%';
UPDATE lines SET part = 2 WHERE part IS NULL AND line = 1;
UPDATE lines SET qty = qty + 20 WHERE part IS NULL AND line = 2;
SELECT * FROM sl.refresh_all() WHERE name = 'by_part';
SELECT * FROM sl.check_all() c WHERE c LIKE 'by_part%';
TABLE by_part ORDER BY part NULLS FIRST;
DROP MATERIALIZED VIEW busy, busy_regions, early_share, order_histogram, by_part;

DROP SCHEMA sl CASCADE;
