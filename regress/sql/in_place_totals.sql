-- Running totals in the stream table's own columns: a GROUP BY whose
-- outputs are the grouping columns and bare count(*), count(x), sum(x) and
-- avg(x), where every sum and average knows how many non-NULL values it
-- adds up (x declared NOT NULL, or count(x) beside it) and every avg(x)
-- has its sum(x), needs no state table: a change adds to the rows of the
-- groups it touches, one write per group. (x of an integer type: a numeric
-- sum counts its infinities and NaNs apart, in a state table.)
CREATE SCHEMA ipt;
SET search_path = ipt, public;
SET pg_trickle.differential_max_change_fraction = 1000;
CREATE TABLE orders (id int PRIMARY KEY, region text, qty int NOT NULL, price int);
INSERT INTO orders SELECT i, CASE WHEN i % 5 = 0 THEN NULL ELSE 'r' || (i % 3) END, i % 7,
                          CASE WHEN i % 4 = 0 THEN NULL ELSE i * 0.5 END
  FROM generate_series(1, 40) i;
CREATE MATERIALIZED VIEW per_region WITH (pgtrickle.stream, pgtrickle.refresh_mode = differential) AS
SELECT region, count(*) AS n, sum(qty) AS qty, avg(qty) AS avg_qty,
       count(price) AS priced, sum(price) AS revenue, avg(price) AS avg_price
  FROM orders WHERE id <> 13 GROUP BY region;
SELECT value AS strategy FROM pgtrickle.explain_stream_table('per_region') WHERE property = 'strategy';
SELECT value ~ '^WITH d AS \(SELECT .* GROUP BY b\.region\),' AS sums_the_changes,
       value ~ 'u AS \(INSERT INTO ipt\.per_region AS o \(region, n, qty, avg_qty, priced, revenue, avg_price\)' AS into_its_rows,
       value ~ 'ON CONFLICT \(region\) DO UPDATE SET n = o\.n OPERATOR\(pg_catalog\.\+\) EXCLUDED\.n' AS adds
  FROM pgtrickle.explain_stream_table('per_region') WHERE property = 'apply';
-- (no state table)
SELECT count(*) AS state_tables FROM pg_class
 WHERE relnamespace = 'pgtrickle_state'::regnamespace AND relname = 'agg_' || 'per_region'::regclass::oid;
CREATE FUNCTION differences(st regclass, query text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE n bigint;
BEGIN
    EXECUTE format('SELECT count(*) FROM ((TABLE %s EXCEPT ALL %s) UNION ALL (%s EXCEPT ALL TABLE %s)) d',
                   st, query, query, st) INTO n;
    RETURN n;
END $$;
CREATE FUNCTION per_region_differences() RETURNS bigint LANGUAGE sql AS $$
    SELECT ipt.differences('ipt.per_region',
        'SELECT region, count(*), sum(qty), avg(qty), count(price), sum(price), avg(price)
           FROM ipt.orders WHERE id <> 13 GROUP BY region')
$$;

-- Inserts into a new group and the NULL group, updates of the grouped and
-- summed columns, prices set to NULL (r1 keeps no price: its sum is NULL),
-- a group emptied (r2), a row leaving the WHERE clause, a group emptied
-- and refilled within the window (r9), a row whose values stay.
INSERT INTO orders VALUES (100, 'r7', 3, 1.25), (101, NULL, 2, NULL), (102, 'r9', 1, 1.00);
UPDATE orders SET region = 'r0' WHERE id IN (1, 4);
UPDATE orders SET qty = qty + 10 WHERE region = 'r0';
UPDATE orders SET price = NULL WHERE region = 'r1';
DELETE FROM orders WHERE region = 'r2';
DELETE FROM orders WHERE id = 13;
UPDATE orders SET id = 13 WHERE id = 3;
DELETE FROM orders WHERE id = 102;
INSERT INTO orders VALUES (103, 'r9', 4, NULL);
UPDATE orders SET qty = qty WHERE id = 7;
REFRESH MATERIALIZED VIEW per_region;
-- (r0, r1 and NULL updated, r2 deleted, r7 and r9 new: 4 rows out, 5 in)
SELECT mode, rows_applied FROM pgtrickle.refresh_history('per_region', 1);
TABLE per_region ORDER BY region NULLS FIRST;
SELECT per_region_differences();
-- A group whose last priced row loses its price, then all its rows.
UPDATE orders SET price = NULL WHERE region = 'r7';
REFRESH MATERIALIZED VIEW per_region;
SELECT region, n, priced, revenue, avg_price FROM per_region WHERE region = 'r7';
DELETE FROM orders WHERE region IN ('r7', 'r9');
REFRESH MATERIALIZED VIEW per_region;
SELECT count(*) AS left_r7_r9 FROM per_region WHERE region IN ('r7', 'r9');
SELECT per_region_differences();

-- A stream table reading this one through its change buffer receives the
-- rows it changed.
CREATE MATERIALIZED VIEW big_regions WITH (pgtrickle.stream, pgtrickle.refresh_mode = differential) AS
SELECT region, qty FROM per_region WHERE n >= 5;
INSERT INTO orders SELECT 200 + i, 'r5', i, i FROM generate_series(1, 6) i;
DELETE FROM orders WHERE region IS NULL;
UPDATE orders SET qty = qty + 1 WHERE region = 'r0';
REFRESH MATERIALIZED VIEW per_region;
REFRESH MATERIALIZED VIEW big_regions;
SELECT mode FROM pgtrickle.refresh_history('big_regions', 1);
SELECT differences('big_regions', 'SELECT region, qty FROM ipt.per_region WHERE n >= 5');
SELECT per_region_differences();
DROP MATERIALIZED VIEW big_regions;

-- IMMEDIATE: the same statement inside the writing statement, rolled back
-- with it; an IMMEDIATE stream table reading this one follows it.
ALTER MATERIALIZED VIEW per_region SET (pgtrickle.refresh_mode = immediate);
CREATE MATERIALIZED VIEW region_qty WITH (pgtrickle.stream, pgtrickle.refresh_mode = immediate) AS
SELECT region, qty FROM per_region;
BEGIN;
INSERT INTO orders VALUES (300, 'r8', 5, 2.00), (301, 'r8', 6, NULL);
SELECT region, n, qty, priced, revenue FROM per_region WHERE region = 'r8';
SAVEPOINT s;
DELETE FROM orders WHERE region = 'r8';
SELECT count(*) AS r8_rows FROM per_region WHERE region = 'r8';
ROLLBACK TO SAVEPOINT s;
UPDATE orders SET price = 3.50 WHERE id = 301;
SELECT region, n, qty, priced, revenue, avg_price FROM per_region WHERE region = 'r8';
SELECT per_region_differences(),
       differences('region_qty', 'SELECT region, qty FROM ipt.per_region');
COMMIT;
BEGIN;
DELETE FROM orders WHERE region = 'r0';
UPDATE orders SET region = 'r1' WHERE region = 'r5';
ROLLBACK;
DELETE FROM orders WHERE region = 'r0';
UPDATE orders SET region = 'r1' WHERE region = 'r5';
SELECT per_region_differences(),
       differences('region_qty', 'SELECT region, qty FROM ipt.per_region');
DROP MATERIALIZED VIEW region_qty;

-- A NOT NULL the totals rely on dropped: the next statement (or refresh)
-- creates a state table and recomputes; set again, the state table goes.
CREATE FUNCTION state_tables() RETURNS bigint LANGUAGE sql AS $$
    SELECT count(*) FROM pg_class
     WHERE relnamespace = 'pgtrickle_state'::regnamespace AND relname = 'agg_' || 'ipt.per_region'::regclass::oid
$$;
ALTER TABLE orders ALTER COLUMN qty DROP NOT NULL;
-- (a state table created by a statement rolled back goes with it)
BEGIN;
INSERT INTO orders VALUES (399, 'r1', NULL, 1.00);
ROLLBACK;
SELECT state_tables();
-- (one statement firing two captures, INSERT and UPDATE: the stream
-- table is recomputed once, after both)
INSERT INTO orders VALUES (400, 'r1', NULL, 1.00), (301, 'r8', 9, 9.00)
    ON CONFLICT (id) DO UPDATE SET qty = EXCLUDED.qty, price = EXCLUDED.price;
SELECT state_tables();
SELECT per_region_differences();
UPDATE orders SET qty = NULL WHERE region = 'r8';
SELECT region, n, qty, avg_qty FROM per_region WHERE region = 'r8';
SELECT per_region_differences();
DELETE FROM orders WHERE qty IS NULL;
ALTER TABLE orders ALTER COLUMN qty SET NOT NULL;
-- (a state table dropped by a statement rolled back comes back with it)
BEGIN;
INSERT INTO orders VALUES (402, 'r1', 1, 1.00);
ROLLBACK;
INSERT INTO orders VALUES (403, 'r1', 10, 1.00);
SELECT state_tables();
ALTER TABLE orders ALTER COLUMN qty DROP NOT NULL;
INSERT INTO orders VALUES (404, 'r1', NULL, 1.00);
SELECT state_tables();
SELECT per_region_differences();
ALTER MATERIALIZED VIEW per_region SET (pgtrickle.refresh_mode = differential);
DELETE FROM orders WHERE qty IS NULL;
ALTER TABLE orders ALTER COLUMN qty SET NOT NULL;
INSERT INTO orders VALUES (401, 'r1', 2, 2.00);
REFRESH MATERIALIZED VIEW per_region;
SELECT mode, message FROM pgtrickle.refresh_history('per_region', 1);
SELECT state_tables();
SELECT per_region_differences();
-- A reader that needs no column of it still hears of its rows' changes.
CREATE MATERIALIZED VIEW how_many WITH (pgtrickle.stream, pgtrickle.refresh_mode = differential) AS
SELECT count(*) AS regions FROM per_region;
INSERT INTO orders VALUES (405, 'r4', 1, NULL), (406, 'r6', 1, NULL);
DELETE FROM orders WHERE region = 'r8';
REFRESH MATERIALIZED VIEW per_region;
REFRESH MATERIALIZED VIEW how_many;
SELECT mode FROM pgtrickle.refresh_history('how_many', 1);
SELECT regions, (SELECT count(*) FROM per_region) AS expected FROM how_many;
DROP MATERIALIZED VIEW how_many;
-- (a NOT NULL constraint NOT VALID does not count: rows before it may be
-- NULL)
CREATE TABLE marks (id int PRIMARY KEY, g int, v int);
INSERT INTO marks VALUES (1, 1, NULL), (2, 1, NULL);
ALTER TABLE marks ADD CONSTRAINT v_set NOT NULL v NOT VALID;
CREATE MATERIALIZED VIEW per_g WITH (pgtrickle.stream, pgtrickle.refresh_mode = differential) AS
SELECT g, count(*) AS n, sum(v) AS v FROM marks GROUP BY g;
SELECT value ~ 'own columns' AS in_own_columns FROM pgtrickle.explain_stream_table('per_g')
 WHERE property = 'strategy';
INSERT INTO marks VALUES (3, 1, 5);
DELETE FROM marks WHERE id = 3;
REFRESH MATERIALIZED VIEW per_g;
TABLE per_g;

-- Over an inner join: the join's change rows add to the rows too.
CREATE TABLE regions (name text PRIMARY KEY, zone text NOT NULL);
INSERT INTO regions VALUES ('r0', 'z1'), ('r1', 'z1'), ('r8', 'z2');
CREATE MATERIALIZED VIEW per_zone WITH (pgtrickle.stream, pgtrickle.refresh_mode = differential) AS
SELECT g.zone, count(*) AS n, sum(o.qty) AS qty FROM orders o JOIN regions g ON g.name = o.region
 GROUP BY g.zone;
SELECT value AS strategy FROM pgtrickle.explain_stream_table('per_zone') WHERE property = 'strategy';
UPDATE regions SET zone = 'z3' WHERE name = 'r8';
INSERT INTO orders VALUES (500, 'r0', 7, NULL);
DELETE FROM orders WHERE region = 'r1';
REFRESH MATERIALIZED VIEW per_zone;
TABLE per_zone ORDER BY zone;
SELECT differences('per_zone', 'SELECT g.zone, count(*), sum(o.qty) FROM ipt.orders o
                                  JOIN ipt.regions g ON g.name = o.region GROUP BY g.zone');
ALTER MATERIALIZED VIEW per_zone SET (pgtrickle.refresh_mode = immediate);
UPDATE regions SET zone = 'z1' WHERE name = 'r8';
INSERT INTO orders VALUES (501, 'r8', 1, NULL);
SELECT differences('per_zone', 'SELECT g.zone, count(*), sum(o.qty) FROM ipt.orders o
                                  JOIN ipt.regions g ON g.name = o.region GROUP BY g.zone');

-- count(x) and avg(x) beside sum(x) over a join share x's column of the
-- join's rows, as over one table: kept in the rows too (so IMMEDIATE
-- writers lock the join's key values, not the whole stream table).
CREATE MATERIALIZED VIEW zone_qty WITH (pgtrickle.stream, pgtrickle.refresh_mode = immediate) AS
SELECT g.zone, count(*) AS n, count(o.price) AS priced, sum(o.price) AS price, avg(o.price) AS mean
  FROM orders o JOIN regions g ON g.name = o.region GROUP BY g.zone;
SELECT property, value FROM pgtrickle.explain_stream_table('zone_qty')
 WHERE property IN ('strategy', 'immediate lock') ORDER BY property;
INSERT INTO orders VALUES (502, 'r0', 2, NULL), (503, 'r1', 4, 30), (504, 'r8', 1, 12);
UPDATE orders SET price = 5 WHERE id = 500;
DELETE FROM orders WHERE id = 501;
TABLE zone_qty ORDER BY zone;
SELECT differences('zone_qty', 'SELECT g.zone, count(*), count(o.price), sum(o.price), avg(o.price) FROM ipt.orders o
                                  JOIN ipt.regions g ON g.name = o.region GROUP BY g.zone');

DROP SCHEMA ipt CASCADE;
RESET search_path;
RESET pg_trickle.differential_max_change_fraction;
