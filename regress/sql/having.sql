-- HAVING over running totals: when HAVING reads only aggregates that
-- running totals keep (count, sum, avg, and min/max over one table by
-- plain columns) and constants, the totals are kept for every group, and
-- a group has a row in the stream table while its totals pass HAVING. A
-- change moves a group in or out of the stream table without reading the
-- group's rows.
CREATE SCHEMA hv;
SET search_path = hv, public;
SET pg_trickle.differential_max_change_fraction = 1000;
CREATE TABLE sales (id int PRIMARY KEY, shop int, qty int, price numeric(8,2));
INSERT INTO sales VALUES
  (1, 1, 2, 1.50), (2, 1, 3, 2.00), (3, 2, 1, 9.99), (4, 3, NULL, 4.00),
  (5, 3, 5, NULL), (6, NULL, 7, 1.00), (7, NULL, 1, 1.00);

-- Shops with more than one sale and at least 4 units sold.
CREATE MATERIALIZED VIEW busy WITH (pgtrickle.stream) AS
SELECT shop, count(*) AS n, sum(qty) AS qty
  FROM sales GROUP BY shop HAVING count(*) > 1 AND sum(qty) >= 4;
-- HAVING may read aggregates the select list does not show.
CREATE MATERIALIZED VIEW pricey WITH (pgtrickle.stream) AS
SELECT shop, count(*) AS n
  FROM sales GROUP BY shop HAVING avg(price) > 1.75 OR max(price) IS NULL;
SELECT name, regexp_replace(value, 'agg_[0-9]+', 'agg_<oid>') AS strategy
  FROM pgtrickle.stream_tables, LATERAL pgtrickle.explain_stream_table(name)
 WHERE schema = 'hv' AND property = 'strategy' ORDER BY name;
TABLE busy ORDER BY shop NULLS FIRST;
TABLE pricey ORDER BY shop NULLS FIRST;

-- Shop 2 comes in (a second sale), shop 1 goes out (its units drop below
-- 4), the NULL shop stays with new totals, shop 3's NULL price goes (it
-- stays for its average) and a new shop 4 comes with one sale.
INSERT INTO sales VALUES (8, 2, 4, 3.00), (9, 4, 1, 8.00);
UPDATE sales SET qty = 1 WHERE id = 2;
UPDATE sales SET qty = qty + 1 WHERE shop IS NULL;
UPDATE sales SET price = 1.00 WHERE id = 5;
REFRESH MATERIALIZED VIEW busy;
REFRESH MATERIALIZED VIEW pricey;
SELECT name, h.mode, h.rows_applied
  FROM unnest(ARRAY['busy', 'pricey']) name, LATERAL pgtrickle.refresh_history('hv.' || name, 1) h;
TABLE busy ORDER BY shop NULLS FIRST;
TABLE pricey ORDER BY shop NULLS FIRST;

-- A group leaves and comes back without rows in between; a group loses
-- all its rows.
DELETE FROM sales WHERE id = 8;
INSERT INTO sales VALUES (10, 2, 9, 0.50);
DELETE FROM sales WHERE shop = 3;
REFRESH MATERIALIZED VIEW busy;
REFRESH MATERIALIZED VIEW pricey;
TABLE busy ORDER BY shop NULLS FIRST;
TABLE pricey ORDER BY shop NULLS FIRST;
-- The totals keep groups that fail HAVING (shop 4 in busy), not groups
-- without rows (shop 3).
DO $$ BEGIN
  EXECUTE format('CREATE TEMP VIEW busy_totals AS SELECT shop, __n FROM pgtrickle_state.agg_%s', 'busy'::regclass::oid);
END $$;
TABLE busy_totals ORDER BY shop NULLS FIRST;
DROP VIEW busy_totals;
SELECT count(*) AS differences FROM (
  (TABLE busy EXCEPT ALL
   SELECT shop, count(*), sum(qty) FROM sales GROUP BY shop HAVING count(*) > 1 AND sum(qty) >= 4)
  UNION ALL
  (SELECT shop, count(*), sum(qty) FROM sales GROUP BY shop HAVING count(*) > 1 AND sum(qty) >= 4
   EXCEPT ALL TABLE busy)) d;

-- GROUP BY expressions with HAVING: the table's rows read as a join of
-- one table, grouped by the expressions' values.
CREATE MATERIALIZED VIEW bands WITH (pgtrickle.stream) AS
SELECT (price / 5)::int AS band, count(*) AS n, sum(qty) AS qty
  FROM sales GROUP BY (price / 5)::int HAVING sum(qty) > 2;
SELECT regexp_replace(value, 'agg_[0-9]+', 'agg_<oid>') AS strategy
  FROM pgtrickle.explain_stream_table('bands') WHERE property = 'strategy';
TABLE bands ORDER BY band NULLS FIRST;
UPDATE sales SET price = price + 5 WHERE id IN (1, 6);
INSERT INTO sales VALUES (11, 5, 3, NULL);
DELETE FROM sales WHERE id = 10;
REFRESH MATERIALIZED VIEW bands;
SELECT h.mode FROM pgtrickle.refresh_history('hv.bands', 1) h;
TABLE bands ORDER BY band NULLS FIRST;
SELECT count(*) AS differences FROM (
  (TABLE bands EXCEPT ALL
   SELECT (price / 5)::int, count(*), sum(qty) FROM sales GROUP BY 1 HAVING sum(qty) > 2)
  UNION ALL
  (SELECT (price / 5)::int, count(*), sum(qty) FROM sales GROUP BY 1 HAVING sum(qty) > 2
   EXCEPT ALL TABLE bands)) d;

-- Over an inner join: groups of any table's columns.
CREATE TABLE shops (shop int PRIMARY KEY, region text);
INSERT INTO shops VALUES (1, 'north'), (2, 'south'), (4, 'north'), (5, 'east');
CREATE MATERIALIZED VIEW regions WITH (pgtrickle.stream) AS
SELECT s.region, count(*) AS n, sum(x.qty) AS qty
  FROM sales x JOIN shops s USING (shop) GROUP BY s.region HAVING count(*) >= 2;
SELECT regexp_replace(value, 'agg_[0-9]+', 'agg_<oid>') AS strategy
  FROM pgtrickle.explain_stream_table('regions') WHERE property = 'strategy';
TABLE regions ORDER BY region;
UPDATE shops SET region = 'east' WHERE shop = 4;
INSERT INTO sales VALUES (12, 2, 1, 1.00);
REFRESH MATERIALIZED VIEW regions;
SELECT h.mode FROM pgtrickle.refresh_history('hv.regions', 1) h;
TABLE regions ORDER BY region;

-- IMMEDIATE: a group crosses HAVING inside the writing transaction, and a
-- rollback undoes it.
ALTER MATERIALIZED VIEW busy SET (pgtrickle.refresh_mode = 'immediate');
BEGIN;
INSERT INTO sales VALUES (13, 4, 5, 1.00);
TABLE busy ORDER BY shop NULLS FIRST;
ROLLBACK;
TABLE busy ORDER BY shop NULLS FIRST;
INSERT INTO sales VALUES (13, 4, 5, 1.00);
UPDATE sales SET qty = 0 WHERE shop IS NULL;
TABLE busy ORDER BY shop NULLS FIRST;

-- HAVING that reads a column outside an aggregate, or an aggregate the
-- totals do not keep: the affected groups are recomputed from the table.
CREATE MATERIALIZED VIEW odd WITH (pgtrickle.stream) AS
SELECT shop, count(*) AS n FROM sales GROUP BY shop HAVING shop IS NOT NULL AND count(*) > 0;
CREATE MATERIALIZED VIEW listed WITH (pgtrickle.stream) AS
SELECT shop, count(*) AS n FROM sales GROUP BY shop HAVING string_agg(qty::text, ',') <> '';
SELECT name, refresh_mode, regexp_replace(value, 'agg_[0-9]+', 'agg_<oid>') AS strategy
  FROM pgtrickle.stream_tables, LATERAL pgtrickle.explain_stream_table(name)
 WHERE schema = 'hv' AND name IN ('odd', 'listed') AND property = 'strategy' ORDER BY name;

DROP SCHEMA hv CASCADE;
RESET search_path;
