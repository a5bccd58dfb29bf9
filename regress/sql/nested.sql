-- nested: a query that aggregates an aggregate (here, the shops whose
-- total equals the largest total) cannot be maintained from its changes:
-- AUTO refreshes it in FULL. Each aggregating WITH query it has becomes an
-- inner stream table, maintained differentially in pgtrickle_state; a
-- refresh applies the changes to the inner one, then recomputes the query
-- over its rows (one per shop) instead of over the table it sums.
CREATE TABLE shops (shop int PRIMARY KEY, name text);
CREATE TABLE sales (id int PRIMARY KEY, shop int, amount numeric);
INSERT INTO shops SELECT s, 'shop ' || s FROM generate_series(1, 5) s;
INSERT INTO sales SELECT g, g % 5 + 1, g FROM generate_series(1, 50) g;
CREATE MATERIALIZED VIEW best_shop WITH (pgtrickle.stream) AS
  WITH totals AS (SELECT shop, sum(amount) AS total FROM sales GROUP BY shop)
  SELECT s.name, t.total FROM shops s JOIN totals t USING (shop)
   WHERE t.total = (SELECT max(total) FROM totals);
TABLE best_shop;
-- The inner stream table: DIFFERENTIAL, not scheduled (it is refreshed by
-- the stream table's refreshes), named after the stream table's OID and
-- the WITH query's position.
SELECT schema, regexp_replace(name, '_[0-9]+_', '_<oid>_') AS name, query, refresh_mode, schedule
  FROM pgtrickle.stream_tables WHERE name = 'best_shop' OR name LIKE 'inner\_%' ORDER BY name;
SELECT property, regexp_replace(value, '_[0-9]+_', '_<oid>_') AS value
  FROM pgtrickle.explain_stream_table('best_shop');

INSERT INTO sales VALUES (51, 2, 500);
UPDATE sales SET shop = 3 WHERE id < 5;
DELETE FROM sales WHERE id = 50;
UPDATE shops SET name = 'the second shop' WHERE shop = 2;
REFRESH MATERIALIZED VIEW best_shop;
TABLE best_shop;
-- The stream table equals a fresh run of its query.
CREATE VIEW best_shop_now AS
  WITH totals AS (SELECT shop, sum(amount) AS total FROM sales GROUP BY shop)
  SELECT s.name, t.total FROM shops s JOIN totals t USING (shop)
   WHERE t.total = (SELECT max(total) FROM totals);
(TABLE best_shop EXCEPT ALL TABLE best_shop_now) UNION ALL (TABLE best_shop_now EXCEPT ALL TABLE best_shop);
-- The inner one applied the changes differentially, in the stream table's
-- refresh (trigger 'outer'; its first refresh populated it).
SELECT regexp_replace(relid::regclass::text, '_[0-9]+_', '_<oid>_') AS stream_table, mode, trigger,
       changes_consumed, rows_applied, regexp_replace(message, '_[0-9]+_', '_<oid>_') AS message
  FROM pgtrickle.pgt_refresh_history
 WHERE relid::regclass::text = 'best_shop' OR relid::regclass::text LIKE 'pgtrickle_state.inner\_%' ORDER BY id;
UPDATE sales SET amount = amount + 100 WHERE id = 5;
REFRESH MATERIALIZED VIEW best_shop;
TABLE best_shop;
(TABLE best_shop EXCEPT ALL TABLE best_shop_now) UNION ALL (TABLE best_shop_now EXCEPT ALL TABLE best_shop);
SELECT regexp_replace(relid::regclass::text, '_[0-9]+_', '_<oid>_') AS stream_table, mode, trigger,
       changes_consumed, rows_applied
  FROM pgtrickle.pgt_refresh_history
 WHERE relid::regclass::text = 'best_shop' OR relid::regclass::text LIKE 'pgtrickle_state.inner\_%' ORDER BY id DESC LIMIT 2;

-- It is a member of the extension (pg_dump leaves it out; a restored
-- stream table creates it again at its first refresh) and cannot be
-- dropped by itself.
SELECT count(*) AS members FROM pg_depend d JOIN pg_class c ON c.oid = d.objid
 WHERE d.deptype = 'e' AND c.relname LIKE 'inner\_%';
DO $$
BEGIN
  EXECUTE 'DROP MATERIALIZED VIEW pgtrickle_state.'
          || (SELECT name FROM pgtrickle.stream_tables WHERE name LIKE 'inner\_%');
EXCEPTION WHEN dependent_objects_still_exist THEN
  RAISE NOTICE 'refused: %', SQLSTATE;
END
$$;

-- Asked for FULL, the stream table recomputes from the tables: the inner
-- stream table goes. Back to AUTO, the next refresh creates it again.
ALTER MATERIALIZED VIEW best_shop SET (pgtrickle.refresh_mode = 'full');
SELECT count(*) AS inner_stream_tables FROM pgtrickle.stream_tables WHERE name LIKE 'inner\_%';
ALTER MATERIALIZED VIEW best_shop SET (pgtrickle.refresh_mode = 'auto');
REFRESH MATERIALIZED VIEW best_shop;
SELECT count(*) AS inner_stream_tables FROM pgtrickle.stream_tables WHERE name LIKE 'inner\_%';
DELETE FROM sales WHERE shop = 2;
REFRESH MATERIALIZED VIEW best_shop;
(TABLE best_shop EXCEPT ALL TABLE best_shop_now) UNION ALL (TABLE best_shop_now EXCEPT ALL TABLE best_shop);

-- The inner stream tables follow the stream table's owner, whose rights
-- the refreshes use.
CREATE ROLE pgt_nested_owner;
GRANT SELECT, TRIGGER ON sales, shops TO pgt_nested_owner;
ALTER MATERIALIZED VIEW best_shop OWNER TO pgt_nested_owner;
UPDATE sales SET amount = amount * 2 WHERE shop = 4;
REFRESH MATERIALIZED VIEW best_shop;
SELECT regexp_replace(c.relname, '_[0-9]+_', '_<oid>_') AS relation, pg_get_userbyid(c.relowner) AS owner
  FROM pg_class c WHERE c.oid = 'best_shop'::regclass OR c.relname LIKE 'inner\_%' ORDER BY 1;
(TABLE best_shop EXCEPT ALL TABLE best_shop_now) UNION ALL (TABLE best_shop_now EXCEPT ALL TABLE best_shop);
ALTER MATERIALIZED VIEW best_shop OWNER TO CURRENT_USER;

-- Turned into a plain materialized view by its owner, an inner stream
-- table is dropped; the next refresh creates it again.
DO $$
BEGIN
  EXECUTE 'ALTER MATERIALIZED VIEW pgtrickle_state.'
          || (SELECT name FROM pgtrickle.stream_tables WHERE name LIKE 'inner\_%')
          || ' SET (pgtrickle.stream = false)';
END
$$;
SELECT count(*) AS inner_views FROM pg_class
 WHERE relnamespace = 'pgtrickle_state'::regnamespace AND relkind = 'm';
DELETE FROM sales WHERE id = 7;
REFRESH MATERIALIZED VIEW best_shop;
SELECT count(*) AS inner_stream_tables FROM pgtrickle.stream_tables WHERE name LIKE 'inner\_%';
(TABLE best_shop EXCEPT ALL TABLE best_shop_now) UNION ALL (TABLE best_shop_now EXCEPT ALL TABLE best_shop);

-- Several aggregating WITH queries, each its own inner stream table; a
-- WITH query that does not aggregate stays in the query.
CREATE MATERIALIZED VIEW spread WITH (pgtrickle.stream) AS
  WITH big AS (SELECT * FROM sales WHERE amount > 10),
       per_shop AS (SELECT shop, count(*) AS n FROM big GROUP BY shop),
       extremes AS (SELECT shop, min(amount) AS lo, max(amount) AS hi FROM sales GROUP BY shop)
  SELECT (SELECT max(n) - min(n) FROM per_shop) AS n_spread,
         (SELECT max(hi - lo) FROM extremes) AS widest,
         (SELECT count(*) FROM big) AS big_sales;
SELECT regexp_replace(name, '_[0-9]+_', '_<oid>_') AS name, query
  FROM pgtrickle.stream_tables WHERE name LIKE 'inner\_%' ORDER BY name;
TABLE spread;
DELETE FROM sales WHERE amount = (SELECT max(amount) FROM sales);
INSERT INTO sales VALUES (60, 1, 1000), (61, 4, 0.5);
REFRESH MATERIALIZED VIEW spread;
TABLE spread;

-- An aggregating subquery in FROM is kept the same way (numbered 1000 +
-- its position in the range table). (min and max over its groups, which
-- span every slice: count, sum and avg over them, or a filter of them,
-- are maintained by slices, see slices.sql.)
CREATE MATERIALIZED VIEW shop_sizes WITH (pgtrickle.stream) AS
  SELECT max(s.n) AS n, min(s.n) AS fewest FROM (SELECT shop, count(*) AS n FROM sales GROUP BY shop) s;
SELECT regexp_replace(name, '_[0-9]+_', '_<oid>_') AS name, refresh_mode
  FROM pgtrickle.stream_tables WHERE name LIKE 'inner\_%' ORDER BY name;
TABLE shop_sizes ORDER BY n;
INSERT INTO sales SELECT 100 + g, 1, g FROM generate_series(1, 3) g;
REFRESH MATERIALIZED VIEW shop_sizes;
TABLE shop_sizes ORDER BY n;
SELECT max(s.n) AS n, min(s.n) AS fewest FROM (SELECT shop, count(*) AS n FROM sales GROUP BY shop) s;

-- A WITH query that calls a volatile function cannot be maintained by
-- itself: no inner stream table; the query is recomputed from the tables.
CREATE MATERIALIZED VIEW noisy WITH (pgtrickle.stream) AS
  WITH r AS (SELECT shop, sum(amount) + (random() * 0)::int AS total FROM sales GROUP BY shop)
  SELECT max(total) AS top FROM r;
REFRESH MATERIALIZED VIEW noisy;
SELECT property, value FROM pgtrickle.explain_stream_table('noisy');

-- Dropping a table an inner stream table reads needs CASCADE, for the
-- stream table reads it too; CASCADE drops the stream table, and with it
-- its inner ones (the extension, whose members they are, stays).
CREATE TABLE visits (shop int, n int);
INSERT INTO visits VALUES (1, 10), (2, 20), (2, 5);
CREATE MATERIALIZED VIEW busiest WITH (pgtrickle.stream) AS
  SELECT max(v.total) AS top FROM (SELECT shop, sum(n) AS total FROM visits GROUP BY shop) v;
TABLE busiest;
DROP TABLE visits;
DROP TABLE visits CASCADE;
SELECT count(*) AS left_over FROM pgtrickle.stream_tables
 WHERE name = 'busiest' OR (name LIKE 'inner\_%' AND query LIKE '%visits%');
SELECT extname FROM pg_extension WHERE extname = 'pg_trickle';

-- IMMEDIATE: each statement that writes a table the stream table reads
-- refreshes its inner stream tables (their change buffers hold the
-- statement's changes) and recomputes its query over them, in the
-- statement; a rollback undoes both.
ALTER MATERIALIZED VIEW best_shop SET (pgtrickle.refresh_mode = 'immediate');
SELECT s.name, s.refresh_mode, regexp_replace(i.name, '_[0-9]+_', '_<oid>_') AS inner_table, i.refresh_mode AS inner_mode
  FROM pgtrickle.stream_tables s, pgtrickle.stream_tables i
 WHERE s.name = 'best_shop' AND i.name LIKE 'inner\_%' AND i.query LIKE '%sum(amount) AS total%' AND i.query NOT LIKE '%random%';
BEGIN;
INSERT INTO sales VALUES (600, 4, 10000);
TABLE best_shop;
SAVEPOINT before_rename;
UPDATE shops SET name = 'shop four' WHERE shop = 4;
TABLE best_shop;
ROLLBACK TO before_rename;
DELETE FROM sales WHERE id = 600;
UPDATE sales SET amount = amount + 1000 WHERE id = 1;
TABLE best_shop;
(TABLE best_shop EXCEPT ALL TABLE best_shop_now) UNION ALL (TABLE best_shop_now EXCEPT ALL TABLE best_shop);
COMMIT;
(TABLE best_shop EXCEPT ALL TABLE best_shop_now) UNION ALL (TABLE best_shop_now EXCEPT ALL TABLE best_shop);
BEGIN;
TRUNCATE sales;
TABLE best_shop;
ROLLBACK;
TABLE best_shop;
-- A statement that writes two of its tables (here a data-modifying WITH)
-- recomputes it once both tables' changes are in their buffers, not
-- after the first table's trigger (its inner join totals would read the
-- other table changed and its buffer not yet written).
CREATE TABLE regions (id int PRIMARY KEY, g int);
CREATE TABLE region_orders (id int PRIMARY KEY, region int, v int);
INSERT INTO regions VALUES (1, 1), (2, 2);
INSERT INTO region_orders VALUES (1, 1, 10), (2, 2, 5);
CREATE MATERIALIZED VIEW top_region WITH (pgtrickle.stream, pgtrickle.refresh_mode = 'immediate') AS
  WITH s AS (SELECT r.g, sum(o.v) AS total FROM regions r JOIN region_orders o ON o.region = r.id GROUP BY r.g)
  SELECT g, total FROM s WHERE total = (SELECT max(total) FROM s);
TABLE top_region;
WITH gone AS (DELETE FROM region_orders WHERE id = 1) DELETE FROM regions WHERE id = 1;
TABLE top_region;
-- DDL elsewhere keeps its inner stream table.
CREATE MATERIALIZED VIEW unrelated WITH (pgtrickle.stream) AS SELECT id FROM regions;
DROP MATERIALIZED VIEW unrelated;
SELECT count(*) AS inner_tables FROM pgtrickle.stream_tables
 WHERE name LIKE 'inner\_' || 'top_region'::regclass::oid || '\_%';
INSERT INTO region_orders VALUES (3, 2, 1);
TABLE top_region;
-- Over a DIFFERENTIAL stream table, whose changes come with its
-- refreshes: refused.
CREATE MATERIALIZED VIEW region_totals WITH (pgtrickle.stream, pgtrickle.refresh_mode = 'differential') AS
  SELECT region, sum(v) AS total FROM region_orders GROUP BY region;
CREATE MATERIALIZED VIEW busiest_total WITH (pgtrickle.stream, pgtrickle.refresh_mode = 'immediate') AS
  WITH c AS (SELECT total, count(*) AS n FROM region_totals GROUP BY total) SELECT max(n) AS top FROM c;
DROP MATERIALIZED VIEW top_region, region_totals;
DROP TABLE regions, region_orders;
-- (A query without such parts is still refused in IMMEDIATE mode.)
ALTER MATERIALIZED VIEW noisy SET (pgtrickle.refresh_mode = 'immediate');
ALTER MATERIALIZED VIEW best_shop SET (pgtrickle.refresh_mode = 'auto');

-- Dropping the stream tables drops their inner ones, and the change
-- capture nothing else needs.
DROP MATERIALIZED VIEW best_shop, spread, shop_sizes, noisy;
SELECT count(*) AS stream_tables FROM pgtrickle.stream_tables
 WHERE name LIKE 'inner\_%' OR name IN ('best_shop', 'spread', 'shop_sizes', 'noisy');
SELECT count(*) AS capture_triggers FROM pg_trigger WHERE tgrelid = 'sales'::regclass;
DROP VIEW best_shop_now;
DROP TABLE sales, shops;
DROP ROLE pgt_nested_owner;
