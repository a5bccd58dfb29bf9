-- count/sum/avg over inner joins: kept from running totals. A refresh
-- adds the join's change (each changed table's change rows joined to the
-- other tables, before or after their own changes) to per-group totals;
-- no group is recomputed from the tables. Grouping columns may come from
-- any table, the join conditions may be anything, and no table needs a
-- primary key.
CREATE SCHEMA jt;
SET search_path = jt, public;
SET pg_trickle.differential_max_change_fraction = 1000;
CREATE TABLE region (r int PRIMARY KEY, rname text);
CREATE TABLE shop (s int PRIMARY KEY, r int, sname text);
CREATE TABLE sale (s int, qty int, price numeric(8,2));   -- no key, duplicates
INSERT INTO region VALUES (1, 'north'), (2, 'south');
INSERT INTO shop VALUES (10, 1, 'a'), (11, 1, 'b'), (20, 2, 'c');
INSERT INTO sale VALUES (10, 1, 2.50), (10, 1, 2.50), (11, 4, 1.00), (20, 2, NULL), (20, 3, 9.99);

CREATE MATERIALIZED VIEW per_region WITH (pgtrickle.stream) AS
SELECT g.rname, count(*) AS sales, sum(x.qty) AS qty, avg(x.price) AS avg_price,
       sum(x.qty * x.price) AS revenue, count(x.price) AS priced
  FROM sale x JOIN shop USING (s) JOIN region g ON g.r = shop.r
 WHERE x.qty > 0
 GROUP BY g.rname;
SELECT property, regexp_replace(value, 'agg_[0-9]+', 'agg_<oid>') AS value
  FROM pgtrickle.explain_stream_table('per_region')
 WHERE property IN ('refresh mode', 'strategy', 'row identity', 'join rows');
TABLE per_region ORDER BY rname;

-- Changes of every table: a sale, a shop moving to the other region, a
-- region renamed (its group goes, another comes), duplicates deleted.
INSERT INTO sale VALUES (11, 5, 3.00);
UPDATE shop SET r = 2 WHERE s = 11;
UPDATE region SET rname = 'south-east' WHERE r = 2;
DELETE FROM sale WHERE s = 10;
REFRESH MATERIALIZED VIEW per_region;
SELECT mode, rows_applied, changes_consumed FROM pgtrickle.refresh_history('per_region', 1);
TABLE per_region ORDER BY rname;
SELECT count(*) AS differences FROM (
  (TABLE per_region EXCEPT ALL
   SELECT g.rname, count(*), sum(x.qty), avg(x.price), sum(x.qty * x.price), count(x.price)
     FROM sale x JOIN shop USING (s) JOIN region g ON g.r = shop.r WHERE x.qty > 0 GROUP BY g.rname)
  UNION ALL
  (SELECT g.rname, count(*), sum(x.qty), avg(x.price), sum(x.qty * x.price), count(x.price)
     FROM sale x JOIN shop USING (s) JOIN region g ON g.r = shop.r WHERE x.qty > 0 GROUP BY g.rname
   EXCEPT ALL TABLE per_region)) d;

-- Grouping columns of two tables, a self-join with a non-equality
-- condition, and an aggregate without GROUP BY, in IMMEDIATE mode: the
-- totals follow every statement.
CREATE MATERIALIZED VIEW shop_pairs WITH (pgtrickle.stream, pgtrickle.refresh_mode = 'immediate') AS
SELECT a.r, b.sname, count(*) AS pairs, sum(a.s) AS lower_ids
  FROM shop a JOIN shop b ON a.r = b.r AND a.s < b.s
 GROUP BY a.r, b.sname;
CREATE MATERIALIZED VIEW grand WITH (pgtrickle.stream, pgtrickle.refresh_mode = 'immediate') AS
SELECT count(*) AS sales, sum(x.qty) AS qty FROM sale x, shop WHERE shop.s = x.s;
SELECT regexp_replace(value, 'agg_[0-9]+', 'agg_<oid>') AS strategy
  FROM pgtrickle.explain_stream_table('shop_pairs') WHERE property = 'strategy';
TABLE shop_pairs ORDER BY r, sname;
TABLE grand;
BEGIN;
INSERT INTO shop VALUES (21, 2, 'd'), (22, 2, 'e');
INSERT INTO sale VALUES (21, 7, 1.00);
TABLE shop_pairs ORDER BY r, sname;
TABLE grand;
ROLLBACK;
TABLE shop_pairs ORDER BY r, sname;
TABLE grand;

-- Expressions over those aggregates are kept too: each aggregate from
-- the totals, then the expression (TPC-H Q14's shape).
CREATE MATERIALIZED VIEW share WITH (pgtrickle.stream) AS
SELECT 100.00 * sum(CASE WHEN g.rname = 'north' THEN x.qty ELSE 0 END) / nullif(sum(x.qty), 0) AS north_pct,
       count(*) - count(x.price) AS unpriced
  FROM sale x JOIN shop USING (s) JOIN region g ON g.r = shop.r;
SELECT regexp_replace(value, 'agg_[0-9]+', 'agg_<oid>') AS strategy
  FROM pgtrickle.explain_stream_table('share') WHERE property = 'strategy';
TABLE share;
UPDATE shop SET r = 1 WHERE s = 20;
INSERT INTO sale VALUES (20, 10, NULL);
REFRESH MATERIALIZED VIEW share;
SELECT mode FROM pgtrickle.refresh_history('share', 1);
TABLE share;
SELECT 100.00 * sum(CASE WHEN g.rname = 'north' THEN x.qty ELSE 0 END) / nullif(sum(x.qty), 0) AS north_pct,
       count(*) - count(x.price) AS unpriced
  FROM sale x JOIN shop USING (s) JOIN region g ON g.r = shop.r;

-- Grouping expressions, through a subquery in FROM that filters and
-- projects the join (the shape of TPC-H Q7 to Q9): the key is the
-- expressions' output columns.
CREATE MATERIALIZED VIEW by_size WITH (pgtrickle.stream) AS
SELECT region, size, count(*) AS sales, sum(amount) AS amount
  FROM (SELECT g.rname AS region, CASE WHEN x.qty >= 5 THEN 'big' ELSE 'small' END AS size,
               x.qty * x.price AS amount
          FROM sale x JOIN shop USING (s) JOIN region g ON g.r = shop.r) AS sized
 GROUP BY region, size;
SELECT property, regexp_replace(value, 'agg_[0-9]+', 'agg_<oid>') AS value
  FROM pgtrickle.explain_stream_table('by_size') WHERE property IN ('strategy', 'row identity');
TABLE by_size ORDER BY region, size;
INSERT INTO sale VALUES (11, 9, 1.50);
UPDATE sale SET qty = 1 WHERE qty = 10;
REFRESH MATERIALIZED VIEW by_size;
SELECT mode FROM pgtrickle.refresh_history('by_size', 1);
TABLE by_size ORDER BY region, size;
SELECT count(*) AS differences FROM (
  (TABLE by_size EXCEPT ALL
   SELECT g.rname, CASE WHEN x.qty >= 5 THEN 'big' ELSE 'small' END, count(*), sum(x.qty * x.price)
     FROM sale x JOIN shop USING (s) JOIN region g ON g.r = shop.r GROUP BY 1, 2)
  UNION ALL
  (SELECT g.rname, CASE WHEN x.qty >= 5 THEN 'big' ELSE 'small' END, count(*), sum(x.qty * x.price)
     FROM sale x JOIN shop USING (s) JOIN region g ON g.r = shop.r GROUP BY 1, 2
   EXCEPT ALL TABLE by_size)) d;

-- min and max over a join are kept too: a joined row that comes may give
-- its group a new extreme; when a row at the extreme goes (or a row of the
-- change is not certain to be there: one that joins two tables' changes),
-- the group's rows are read again through the join.
CREATE MATERIALIZED VIEW dearest WITH (pgtrickle.stream) AS
SELECT shop.r, max(x.price) AS top, min(x.qty) AS fewest, count(*) AS n
  FROM sale x JOIN shop USING (s) GROUP BY shop.r;
SELECT regexp_replace(value, 'agg_[0-9]+', 'agg_<oid>') AS strategy
  FROM pgtrickle.explain_stream_table('dearest') WHERE property = 'strategy';
TABLE dearest ORDER BY r;
-- The dearest sale of region 2 goes; a new shop with a cheap sale joins
-- region 1 in the same refresh (both tables' change rows joined), and a
-- shop moves with its sales to region 3.
DELETE FROM sale WHERE price = (SELECT max(x.price) FROM sale x JOIN shop USING (s) WHERE shop.r = 2);
INSERT INTO shop VALUES (12, 1, 'd');
INSERT INTO sale VALUES (12, 1, 0.10);
UPDATE shop SET r = 3 WHERE s = 20;
REFRESH MATERIALIZED VIEW dearest;
SELECT mode FROM pgtrickle.refresh_history('dearest', 1);
TABLE dearest ORDER BY r;
SELECT count(*) AS differences FROM (
  (TABLE dearest EXCEPT ALL
   SELECT shop.r, max(x.price), min(x.qty), count(*) FROM sale x JOIN shop USING (s) GROUP BY shop.r)
  UNION ALL
  (SELECT shop.r, max(x.price), min(x.qty), count(*) FROM sale x JOIN shop USING (s) GROUP BY shop.r
   EXCEPT ALL TABLE dearest)) d;

-- Groups without aggregates over a join, by columns of several tables (a
-- SELECT DISTINCT here): a count per group of the join's rows, kept from
-- the change terms like the totals above; a group goes with its last row.
CREATE MATERIALIZED VIEW region_sizes WITH (pgtrickle.stream, pgtrickle.refresh_mode = 'differential') AS
SELECT DISTINCT g.rname, x.qty >= 5 AS big FROM sale x JOIN shop USING (s) JOIN region g ON g.r = shop.r;
SELECT regexp_replace(value, 'agg_[0-9]+', 'agg_<oid>') AS strategy
  FROM pgtrickle.explain_stream_table('region_sizes') WHERE property = 'strategy';
DELETE FROM sale WHERE qty >= 5 AND s = (SELECT min(s) FROM sale);
UPDATE region SET rname = upper(rname) WHERE r = (SELECT min(r) FROM region);
REFRESH MATERIALIZED VIEW region_sizes;
SELECT h.mode FROM pgtrickle.refresh_history('jt.region_sizes', 1) h;
SELECT count(*) AS differences FROM (
  (TABLE region_sizes EXCEPT ALL
   SELECT DISTINCT g.rname, x.qty >= 5 FROM sale x JOIN shop USING (s) JOIN region g ON g.r = shop.r)
  UNION ALL
  (SELECT DISTINCT g.rname, x.qty >= 5 FROM sale x JOIN shop USING (s) JOIN region g ON g.r = shop.r
   EXCEPT ALL TABLE region_sizes)) d;

DROP SCHEMA jt CASCADE;
RESET search_path;
