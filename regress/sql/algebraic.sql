-- Running totals: a GROUP BY over one table whose other outputs are
-- count(*), count(col), and sum/avg of integer or numeric columns is kept
-- from per-group totals; a refresh reads only the changes, never the groups.
CREATE SCHEMA alg;
SET search_path = alg, public;
SET pg_trickle.differential_max_change_fraction = 1000;
CREATE TABLE sales (id int PRIMARY KEY, shop int, qty int, price numeric(10,2), note text);
INSERT INTO sales SELECT i, i % 3, CASE WHEN i % 4 = 0 THEN NULL ELSE i END, i * 1.25, 'n' || i
  FROM generate_series(1, 12) i;
CREATE MATERIALIZED VIEW per_shop WITH (pgtrickle.stream) AS
SELECT shop, count(*) AS n, count(qty) AS with_qty, sum(qty) AS qty, avg(qty) AS avg_qty,
       sum(price) AS revenue, avg(price) AS avg_price, count(note) AS notes
  FROM sales WHERE id > 1 GROUP BY shop;
SELECT property, regexp_replace(value, 'agg_[0-9]+', 'agg_<oid>') AS value
  FROM pgtrickle.explain_stream_table('per_shop') WHERE property = 'strategy';
TABLE per_shop ORDER BY shop;
-- The totals table belongs to the stream table's owner.
SELECT c.relname ~ '^agg_[0-9]+$' AS named_by_oid, pg_get_userbyid(c.relowner) = current_user AS owned
  FROM pg_class c WHERE c.relnamespace = 'pgtrickle_state'::regnamespace AND c.relkind = 'r';

-- Inserts, updates of grouped and summed columns, NULLs, rows leaving the
-- WHERE clause, a shop losing all its rows, a new shop.
INSERT INTO sales VALUES (20, 1, 5, 2.50, NULL), (21, 7, NULL, NULL, 'new shop');
UPDATE sales SET shop = 2 WHERE id = 3;
UPDATE sales SET qty = NULL WHERE shop = 1;
UPDATE sales SET id = 0 WHERE id = 5;
DELETE FROM sales WHERE shop = 0;
REFRESH MATERIALIZED VIEW per_shop;
SELECT mode, rows_applied FROM pgtrickle.refresh_history('per_shop', 1);
TABLE per_shop ORDER BY shop;
SELECT count(*) AS differences FROM (
    (TABLE per_shop EXCEPT ALL
     SELECT shop, count(*), count(qty), sum(qty), avg(qty), sum(price), avg(price), count(note) FROM sales WHERE id > 1 GROUP BY shop)
    UNION ALL
    (SELECT shop, count(*), count(qty), sum(qty), avg(qty), sum(price), avg(price), count(note) FROM sales WHERE id > 1 GROUP BY shop
     EXCEPT ALL TABLE per_shop)) d;

-- A refresh adds the changes to the totals and writes the rows of the
-- groups they touched in one statement (a row whose values stay is not
-- written); the rows of groups left without rows are deleted after it. A
-- NULL key is one group.
CREATE TABLE visits (id int PRIMARY KEY, site text, ms int);
INSERT INTO visits VALUES (1, 'a', 10), (2, NULL, 20), (3, NULL, 30), (4, 'b', 40), (5, 'd', 1);
CREATE MATERIALIZED VIEW per_site WITH (pgtrickle.stream) AS
SELECT site, count(*) AS n, sum(ms) AS total, avg(ms) AS mean FROM visits GROUP BY site;
SELECT value ~ '^WITH u AS \(INSERT INTO pgtrickle_state\.agg_[0-9]+ AS s' AS adds_to_totals,
       value ~ 'put AS \(INSERT INTO alg\.per_site AS o SELECT .* FROM u s WHERE s\.__n OPERATOR\(pg_catalog\.>\) 0' AS from_new_totals,
       value ~ 'ON CONFLICT \(site\) DO UPDATE SET site = EXCLUDED\.site, n = EXCLUDED\.n' AS upserts_rows
  FROM pgtrickle.explain_stream_table('per_site') WHERE property = 'apply';
INSERT INTO visits VALUES (6, NULL, 5), (7, 'c', 60);
DELETE FROM visits WHERE site = 'b';
UPDATE visits SET ms = ms + 1 WHERE id = 5;
UPDATE visits SET ms = ms - 1 WHERE id = 5;
REFRESH MATERIALIZED VIEW per_site;
-- (the NULL group changed, b deleted, c new, d unchanged: 2 rows out, 2 in)
SELECT mode, rows_applied FROM pgtrickle.refresh_history('per_site', 1);
TABLE per_site ORDER BY site NULLS FIRST;
DELETE FROM visits WHERE site IS NULL OR site = 'c';
INSERT INTO visits VALUES (8, 'b', 70);
REFRESH MATERIALIZED VIEW per_site;
TABLE per_site ORDER BY site NULLS FIRST;
INSERT INTO visits VALUES (9, NULL, 1);
REFRESH MATERIALIZED VIEW per_site;
SELECT count(*) AS differences FROM (
    (TABLE per_site EXCEPT ALL SELECT site, count(*), sum(ms), avg(ms) FROM visits GROUP BY site)
    UNION ALL
    (SELECT site, count(*), sum(ms), avg(ms) FROM visits GROUP BY site EXCEPT ALL TABLE per_site)) d;
-- (the totals keep no group without rows)
CREATE FUNCTION totals_of(st regclass, OUT groups bigint, OUT empty bigint) LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('SELECT count(*), count(*) FILTER (WHERE __n = 0) FROM pgtrickle_state.agg_%s', st::oid)
       INTO groups, empty;
END $$;
SELECT * FROM totals_of('per_site');

-- TRUNCATE: a FULL refresh, which rebuilds the totals.
TRUNCATE sales;
INSERT INTO sales VALUES (30, 1, 3, 1.00, NULL), (31, 1, 4, 2.00, NULL);
REFRESH MATERIALIZED VIEW per_shop;
INSERT INTO sales VALUES (32, 1, 5, 3.00, NULL);
REFRESH MATERIALIZED VIEW per_shop;
SELECT mode FROM pgtrickle.refresh_history('per_shop', 2);
TABLE per_shop ORDER BY shop;

-- min and max are kept too: an inserted value may become the extreme, and
-- deleting the current extreme rescans only its group.
CREATE MATERIALIZED VIEW extremes WITH (pgtrickle.stream) AS
SELECT shop, min(price) AS cheapest, max(price) AS dearest, max(note) AS last_note FROM sales GROUP BY shop;
INSERT INTO sales VALUES (33, 1, 1, 0.50, 'zz'), (34, 2, 1, 9.00, 'a');
DELETE FROM sales WHERE id = 32;
REFRESH MATERIALIZED VIEW extremes;
TABLE extremes ORDER BY shop;
DELETE FROM sales WHERE id = 33;
REFRESH MATERIALIZED VIEW extremes;
TABLE extremes ORDER BY shop;

-- Other aggregates, or sums of floating point columns: the affected
-- groups are recomputed instead. (busy, with HAVING over count(*), is
-- kept from totals: see having.sql.)
CREATE MATERIALIZED VIEW notes WITH (pgtrickle.stream) AS
SELECT shop, string_agg(note, ',' ORDER BY note) AS notes FROM sales GROUP BY shop;
CREATE MATERIALIZED VIEW busy WITH (pgtrickle.stream) AS
SELECT shop, count(*) AS n FROM sales GROUP BY shop HAVING count(*) > 1;
CREATE MATERIALIZED VIEW floats WITH (pgtrickle.stream) AS
SELECT shop, sum(price::float8) AS total FROM sales GROUP BY shop;
-- (min/max of a column with a collation other than the database's: the
-- kept extreme would compare differently)
CREATE TABLE tags (id int PRIMARY KEY, shop int, tag text COLLATE "POSIX");
CREATE MATERIALIZED VIEW collated WITH (pgtrickle.stream) AS
SELECT shop, max(tag) AS last_tag FROM tags GROUP BY shop;
SELECT s.name, regexp_replace(e.value, 'agg_[0-9]+', 'agg_<oid>') AS strategy FROM pgtrickle.stream_tables s,
       LATERAL pgtrickle.explain_stream_table(s.relation::text) e
 WHERE s.schema = 'alg' AND e.property = 'strategy' ORDER BY s.name;

-- Expressions of the table's columns are kept too: count/min/max of any,
-- sum of integers and numerics, avg of integers and fixed-scale numerics.
-- An avg of a division (values of varying scales) is recomputed per group.
CREATE TABLE lines (id int PRIMARY KEY, shop int, price numeric(10,2), discount numeric(4,2), note text);
INSERT INTO lines SELECT i, i % 2, i * 10.50, (i % 5) / 100.0, 'n' || i FROM generate_series(1, 8) i;
CREATE MATERIALIZED VIEW revenue WITH (pgtrickle.stream) AS
SELECT shop, sum(price * (1 - discount)) AS net, avg(price * discount) AS avg_cut,
       max(upper(note)) AS last_note, count(CASE WHEN discount > 0 THEN 1 END) AS discounted
  FROM lines GROUP BY shop;
CREATE MATERIALIZED VIEW halves WITH (pgtrickle.stream) AS
SELECT shop, avg(price / 3) AS third FROM lines GROUP BY shop;
SELECT s.name, regexp_replace(e.value, 'agg_[0-9]+', 'agg_<oid>') AS strategy FROM pgtrickle.stream_tables s,
       LATERAL pgtrickle.explain_stream_table(s.relation::text) e
 WHERE s.name IN ('revenue', 'halves') AND e.property = 'strategy' ORDER BY s.name;
UPDATE lines SET discount = 0.10 WHERE id IN (2, 3);
DELETE FROM lines WHERE id = 8;
INSERT INTO lines VALUES (9, 1, 99.99, 0.05, 'zz');
REFRESH MATERIALIZED VIEW revenue;
REFRESH MATERIALIZED VIEW halves;
SELECT mode FROM pgtrickle.refresh_history('revenue', 1);
TABLE revenue ORDER BY shop;
SELECT count(*) AS differences FROM (
    (TABLE revenue EXCEPT ALL
     SELECT shop, sum(price * (1 - discount)), avg(price * discount), max(upper(note)),
            count(CASE WHEN discount > 0 THEN 1 END) FROM lines GROUP BY shop)
    UNION ALL
    (SELECT shop, sum(price * (1 - discount)), avg(price * discount), max(upper(note)),
            count(CASE WHEN discount > 0 THEN 1 END) FROM lines GROUP BY shop
     EXCEPT ALL TABLE revenue)) d;

-- numeric values Infinity, -Infinity and NaN: the totals keep the sum of
-- the finite values and count the others apart, so deleting an infinity
-- leaves the sum of the rest (not NaN), as a fresh sum computes it.
CREATE TABLE readings (id int PRIMARY KEY, probe int, x numeric);
INSERT INTO readings VALUES (1, 1, 1.5), (2, 1, 'Infinity'), (3, 2, 2), (4, 2, '-Infinity'),
                            (5, 2, 'Infinity'), (6, 3, 'NaN'), (7, 3, 4);
CREATE MATERIALIZED VIEW per_probe WITH (pgtrickle.stream) AS
SELECT probe, count(*) AS n, sum(x) AS total, avg(x) AS mean FROM readings GROUP BY probe;
TABLE per_probe ORDER BY probe;
DELETE FROM readings WHERE x IN ('Infinity', 'NaN');
INSERT INTO readings VALUES (8, 4, '-Infinity');
REFRESH MATERIALIZED VIEW per_probe;
SELECT mode FROM pgtrickle.refresh_history('per_probe', 1);
TABLE per_probe ORDER BY probe;
ALTER MATERIALIZED VIEW per_probe SET (pgtrickle.refresh_mode = immediate);
BEGIN;
INSERT INTO readings VALUES (9, 1, 'Infinity'), (10, 4, 'Infinity');
TABLE per_probe ORDER BY probe;
DELETE FROM readings WHERE id IN (8, 9);
TABLE per_probe ORDER BY probe;
SELECT count(*) AS differences FROM (
    (TABLE per_probe EXCEPT ALL SELECT probe, count(*), sum(x), avg(x) FROM readings GROUP BY probe)
    UNION ALL
    (SELECT probe, count(*), sum(x), avg(x) FROM readings GROUP BY probe EXCEPT ALL TABLE per_probe)) d;
COMMIT;
DROP MATERIALIZED VIEW per_probe;

-- Grouped by expressions (here the price band, and the lower-cased first
-- letter of the note): count/sum/avg/min/max kept from running totals of
-- the table's rows read as a join of one table, grouped by the
-- expressions' values. Deleting a band's largest qty reads that band's
-- rows again (the rows whose expression has its value).
CREATE MATERIALIZED VIEW per_band WITH (pgtrickle.stream) AS
SELECT (price / 5)::int AS band, lower(left(note, 1)) AS initial, count(*) AS n, sum(qty) AS qty, count(qty) AS with_qty
  FROM sales GROUP BY (price / 5)::int, lower(left(note, 1));
CREATE MATERIALIZED VIEW top_band WITH (pgtrickle.stream) AS
SELECT (price / 5)::int AS band, max(qty) AS most FROM sales GROUP BY (price / 5)::int;
SELECT name, refresh_mode,
       (SELECT regexp_replace(value, 'agg_[0-9]+', 'agg_<oid>') FROM pgtrickle.explain_stream_table(name) WHERE property = 'strategy') AS strategy
  FROM pgtrickle.stream_tables WHERE name IN ('per_band', 'top_band') ORDER BY name;
UPDATE sales SET price = price + 7 WHERE id % 3 = 0;
DELETE FROM sales WHERE id = 4;
INSERT INTO sales VALUES (40, 1, 3, 2.50, 'X'), (41, 2, NULL, NULL, NULL);
REFRESH MATERIALIZED VIEW per_band;
REFRESH MATERIALIZED VIEW top_band;
SELECT h.mode FROM pgtrickle.refresh_history('alg.per_band', 1) h;
SELECT h.mode FROM pgtrickle.refresh_history('alg.top_band', 1) h;
TABLE per_band ORDER BY band NULLS FIRST, initial NULLS FIRST;
TABLE top_band ORDER BY band NULLS FIRST;
-- The row holding the largest qty of a band of several rows goes: the
-- band's rows are read again for its new largest.
SELECT (price / 5)::int AS band, array_agg(qty ORDER BY qty DESC NULLS LAST) AS qtys FROM sales GROUP BY 1 ORDER BY 1;
DELETE FROM sales WHERE id = (
  SELECT id FROM sales s WHERE (SELECT count(*) FROM sales x WHERE (x.price / 5)::int = (s.price / 5)::int) > 1
   ORDER BY qty DESC NULLS LAST, id LIMIT 1);
REFRESH MATERIALIZED VIEW top_band;
REFRESH MATERIALIZED VIEW per_band;
SELECT h.mode FROM pgtrickle.refresh_history('alg.top_band', 1) h;
TABLE top_band ORDER BY band NULLS FIRST;
SELECT count(*) AS differences FROM (
    (TABLE top_band EXCEPT ALL SELECT (price / 5)::int, max(qty) FROM sales GROUP BY 1)
    UNION ALL
    (SELECT (price / 5)::int, max(qty) FROM sales GROUP BY 1 EXCEPT ALL TABLE top_band)) d;
SELECT count(*) AS differences FROM (
    (TABLE per_band EXCEPT ALL
     SELECT (price / 5)::int, lower(left(note, 1)), count(*), sum(qty), count(qty) FROM sales GROUP BY 1, 2)
    UNION ALL
    (SELECT (price / 5)::int, lower(left(note, 1)), count(*), sum(qty), count(qty) FROM sales GROUP BY 1, 2
     EXCEPT ALL TABLE per_band)) d;
DROP MATERIALIZED VIEW per_band, top_band;

-- SELECT DISTINCT of expressions is a GROUP BY of every output: kept from
-- the same running totals, a count per group in the totals table (a
-- group goes when its count reaches 0). So is a GROUP BY of expressions
-- without aggregates.
CREATE MATERIALIZED VIEW initials WITH (pgtrickle.stream, pgtrickle.refresh_mode = 'differential') AS
SELECT DISTINCT lower(left(note, 1)) AS initial, qty IS NULL AS no_qty FROM sales;
CREATE MATERIALIZED VIEW bands WITH (pgtrickle.stream, pgtrickle.refresh_mode = 'differential') AS
SELECT (price / 5)::int AS band FROM sales GROUP BY (price / 5)::int;
SELECT name, refresh_mode,
       (SELECT regexp_replace(value, 'agg_[0-9]+', 'agg_<oid>') FROM pgtrickle.explain_stream_table(name) WHERE property = 'strategy') AS strategy
  FROM pgtrickle.stream_tables WHERE name IN ('initials', 'bands') ORDER BY name;
TABLE initials ORDER BY 1 NULLS FIRST, 2;
-- New groups (one of them NULL), then the last rows of groups deleted or
-- moved to another group.
INSERT INTO sales VALUES (42, 1, 4, 99.00, 'zebra'), (43, 2, 1, NULL, NULL),
                         (44, 0, NULL, 3.00, 'apple'), (45, 0, 2, 8.00, 'Avocado');
REFRESH MATERIALIZED VIEW initials;
TABLE initials ORDER BY 1 NULLS FIRST, 2;
DELETE FROM sales WHERE id IN (43, 44);
UPDATE sales SET note = 'Kiwi', qty = NULL WHERE id % 4 = 1;
REFRESH MATERIALIZED VIEW initials;
REFRESH MATERIALIZED VIEW bands;
SELECT h.mode FROM pgtrickle.refresh_history('alg.initials', 1) h;
TABLE initials ORDER BY 1 NULLS FIRST, 2;
SELECT count(*) AS differences FROM (
    (TABLE initials EXCEPT ALL SELECT DISTINCT lower(left(note, 1)), qty IS NULL FROM sales)
    UNION ALL
    (SELECT DISTINCT lower(left(note, 1)), qty IS NULL FROM sales EXCEPT ALL TABLE initials)) d;
SELECT count(*) AS differences FROM (
    (TABLE bands EXCEPT ALL SELECT (price / 5)::int FROM sales GROUP BY 1)
    UNION ALL
    (SELECT (price / 5)::int FROM sales GROUP BY 1 EXCEPT ALL TABLE bands)) d;
DROP MATERIALIZED VIEW initials, bands;

-- Grouped by expressions with other aggregates (string_agg, bool_and,
-- here beside a plain column and under a HAVING): the groups whose
-- expression values the changed rows had or have are recomputed, as
-- groups by columns are. Their values are computed from the change rows;
-- the groups are read again from the table (through an index on the
-- expressions, if there is one, as here).
CREATE INDEX ON sales (((price / 5)::int));
CREATE MATERIALIZED VIEW band_notes WITH (pgtrickle.stream, pgtrickle.refresh_mode = 'differential') AS
SELECT (price / 5)::int AS band, shop, string_agg(note, ',' ORDER BY note, id) AS notes, bool_and(qty > 1) AS all_many
  FROM sales GROUP BY (price / 5)::int, shop HAVING count(*) FILTER (WHERE note IS NOT NULL) > 0;
SELECT (SELECT value FROM pgtrickle.explain_stream_table('band_notes') WHERE property = 'strategy') AS strategy;
TABLE band_notes ORDER BY band NULLS FIRST, shop;
-- Rows move between bands, a band's last note goes, a new band and a NULL
-- band appear.
UPDATE sales SET price = price + 5 WHERE id % 5 = 2;
UPDATE sales SET note = NULL WHERE id = 42;
INSERT INTO sales VALUES (46, 1, 3, 500.00, 'new band'), (47, 2, 2, NULL, 'no price');
DELETE FROM sales WHERE id % 7 = 3;
REFRESH MATERIALIZED VIEW band_notes;
SELECT h.mode FROM pgtrickle.refresh_history('alg.band_notes', 1) h;
TABLE band_notes ORDER BY band NULLS FIRST, shop;
SELECT count(*) AS differences FROM (
    (TABLE band_notes EXCEPT ALL
     SELECT (price / 5)::int, shop, string_agg(note, ',' ORDER BY note, id), bool_and(qty > 1) FROM sales
      GROUP BY 1, 2 HAVING count(*) FILTER (WHERE note IS NOT NULL) > 0)
    UNION ALL
    (SELECT (price / 5)::int, shop, string_agg(note, ',' ORDER BY note, id), bool_and(qty > 1) FROM sales
      GROUP BY 1, 2 HAVING count(*) FILTER (WHERE note IS NOT NULL) > 0
     EXCEPT ALL TABLE band_notes)) d;
-- In IMMEDIATE mode, the groups each statement's old and new rows name.
ALTER MATERIALIZED VIEW band_notes SET (pgtrickle.refresh_mode = 'immediate');
BEGIN;
UPDATE sales SET price = 9.00, note = 'moved' WHERE id = 46;
DELETE FROM sales WHERE id = 47;
TABLE band_notes ORDER BY band NULLS FIRST, shop;
ROLLBACK;
TABLE band_notes ORDER BY band NULLS FIRST, shop;
DROP MATERIALIZED VIEW band_notes;

-- Dropping the stream table drops its totals.
DROP MATERIALIZED VIEW per_shop;
SELECT count(*) AS totals_left FROM pg_class WHERE relnamespace = 'pgtrickle_state'::regnamespace AND relkind = 'r';
DROP SCHEMA alg CASCADE;
RESET search_path;
RESET pg_trickle.differential_max_change_fraction;
