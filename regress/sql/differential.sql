-- differential: which queries pg_trickle maintains incrementally, how AUTO
-- falls back to FULL (with the reason), how explicit 'differential' refuses,
-- and what a differential refresh does and records.
CREATE TABLE items (id int PRIMARY KEY, cat text, price numeric, qty int);
INSERT INTO items SELECT g, 'c' || (g % 4), g * 1.5, g % 7 FROM generate_series(1, 40) g;
CREATE TABLE log (at int, msg text);   -- no primary key
-- These tables are tiny, so most windows of changes touch more than the
-- default quarter of a stream table, where pg_trickle prefers a FULL
-- refresh; keep differential refreshes here (the limit is shown below).
SET pg_trickle.differential_max_change_fraction = 1000;

-- Maintained differentially (AUTO resolves to DIFFERENTIAL silently):
-- filters/projections that keep the primary key ...
CREATE MATERIALIZED VIEW expensive WITH (pgtrickle.stream = true) AS
  SELECT id, cat, price * qty AS total FROM items WHERE price > 30;
-- ... grouped aggregates whose GROUP BY columns are selected ...
CREATE MATERIALIZED VIEW by_cat WITH (pgtrickle.stream = true, pgtrickle.refresh_mode = 'differential') AS
  SELECT cat, count(*) AS n, sum(qty) AS q, max(price) AS top, string_agg(id::text, ',' ORDER BY id) AS ids
    FROM items GROUP BY cat HAVING count(*) > 0;
-- ... DISTINCT on plain columns ...
CREATE MATERIALIZED VIEW cats WITH (pgtrickle.stream = true) AS SELECT DISTINCT cat FROM items;
-- ... and inner joins that select the primary key of every joined table
-- (a table joined by its primary key, cat_names here, is identified by the
-- rows it is joined to: the key is items' alone; see joined_by_key).
CREATE TABLE cat_names (code text PRIMARY KEY, label text);
INSERT INTO cat_names VALUES ('c0', 'zero'), ('c1', 'one'), ('c2', 'two');
CREATE MATERIALIZED VIEW labelled WITH (pgtrickle.stream = true) AS
  SELECT i.id, n.code, n.label, i.price FROM items i JOIN cat_names n ON n.code = i.cat WHERE i.qty > 2;
SELECT name, requested_mode, refresh_mode FROM pgtrickle.stream_tables ORDER BY name;
-- Each carries a unique index on its row identity (named after its OID).
SELECT tablename, regexp_replace(indexdef, '__pgt_key_[0-9]+', '__pgt_key_<oid>') AS index
  FROM pg_indexes WHERE tablename IN ('expensive', 'by_cat', 'cats', 'labelled') ORDER BY 1;

-- A join whose select list lacks a table's primary key (log has none) is
-- kept as a multiset: the rows its changes add and remove, with copies.
CREATE MATERIALIZED VIEW joined WITH (pgtrickle.stream = true) AS
  SELECT i.id, l.msg FROM items i JOIN log l ON l.at = i.id;

-- Not (yet) maintained differentially: AUTO says why and uses FULL ...
CREATE MATERIALIZED VIEW no_key WITH (pgtrickle.stream = true) AS SELECT cat, price FROM items;
CREATE MATERIALIZED VIEW cheapest WITH (pgtrickle.stream = true) AS
  SELECT DISTINCT ON (cat) cat, price FROM items ORDER BY cat, price;
CREATE MATERIALIZED VIEW logs WITH (pgtrickle.stream = true) AS SELECT at, msg FROM log;
CREATE MATERIALIZED VIEW ranked WITH (pgtrickle.stream = true) AS
  SELECT id, rank() OVER (ORDER BY price) AS r FROM items;
CREATE MATERIALIZED VIEW rnd WITH (pgtrickle.stream = true) AS SELECT id, random() AS r FROM items;
CREATE TABLE inh_parent (id int PRIMARY KEY, v int);
CREATE TABLE inh_child () INHERITS (inh_parent);
CREATE MATERIALIZED VIEW from_inherited WITH (pgtrickle.stream = true) AS SELECT id, v FROM inh_parent;
-- ... stable functions are allowed, with a warning ...
CREATE MATERIALIZED VIEW recent WITH (pgtrickle.stream = true) AS
  SELECT id, price FROM items WHERE now() > '2000-01-01';
DROP MATERIALIZED VIEW recent;
-- ... and an explicit 'differential' is refused, naming the reason.
CREATE MATERIALIZED VIEW bad WITH (pgtrickle.stream = true, pgtrickle.refresh_mode = 'differential') AS
  SELECT string_agg(cat, ',') AS cats FROM items GROUP BY upper(cat);
SELECT name, refresh_mode FROM pgtrickle.stream_tables WHERE refresh_mode = 'full' ORDER BY name;

-- A differential refresh recomputes only the affected keys.
UPDATE items SET price = price + 100 WHERE id IN (3, 4);   -- 4 now passes the filter
DELETE FROM items WHERE cat = 'c1';                        -- a whole group disappears
INSERT INTO items VALUES (100, 'c9', 99, 1), (101, NULL, 5, 2);  -- a new group, a NULL group
REFRESH MATERIALIZED VIEW expensive;
REFRESH MATERIALIZED VIEW by_cat;
REFRESH MATERIALIZED VIEW cats;
UPDATE cat_names SET label = 'ZERO' WHERE code = 'c0';           -- changes on the other side of a join
INSERT INTO cat_names VALUES ('c9', 'nine');
REFRESH MATERIALIZED VIEW labelled;
SELECT count(*) AS rows, count(*) FILTER (WHERE label = 'ZERO') AS zero, count(*) FILTER (WHERE code = 'c9') AS nine
  FROM labelled;
(SELECT * FROM labelled EXCEPT ALL
   SELECT i.id, n.code, n.label, i.price FROM items i JOIN cat_names n ON n.code = i.cat WHERE i.qty > 2)
UNION ALL
(SELECT i.id, n.code, n.label, i.price FROM items i JOIN cat_names n ON n.code = i.cat WHERE i.qty > 2
 EXCEPT ALL SELECT * FROM labelled);
-- One LEFT JOIN of two tables (both primary keys selected) is maintained
-- too: rows are recomputed per item, and a change of a category reaches
-- the items joined to it before and after the change.
CREATE MATERIALIZED VIEW all_items WITH (pgtrickle.stream = true) AS
  SELECT i.id, n.code, n.label FROM items i LEFT JOIN cat_names n ON n.code = i.cat;
SELECT refresh_mode FROM pgtrickle.stream_tables WHERE name = 'all_items';
DELETE FROM cat_names WHERE code = 'c2';
INSERT INTO cat_names VALUES ('c3', 'three');
REFRESH MATERIALIZED VIEW all_items;
(SELECT * FROM all_items EXCEPT ALL
   SELECT i.id, n.code, n.label FROM items i LEFT JOIN cat_names n ON n.code = i.cat)
UNION ALL
(SELECT i.id, n.code, n.label FROM items i LEFT JOIN cat_names n ON n.code = i.cat
 EXCEPT ALL SELECT * FROM all_items);
SELECT count(*) FILTER (WHERE code IS NULL) AS unmatched, count(*) FILTER (WHERE code = 'c3') AS threes FROM all_items;
DROP MATERIALIZED VIEW all_items;
SELECT * FROM by_cat ORDER BY cat;
SELECT * FROM cats ORDER BY cat;
SELECT relid::regclass, mode, trigger, rows_applied, changes_consumed
  FROM pgtrickle.pgt_refresh_history
 WHERE relid IN ('expensive'::regclass, 'by_cat'::regclass, 'cats'::regclass) ORDER BY id;
-- Same contents as a fresh run of the query.
(SELECT * FROM expensive EXCEPT ALL SELECT id, cat, price * qty FROM items WHERE price > 30)
UNION ALL
(SELECT id, cat, price * qty FROM items WHERE price > 30 EXCEPT ALL SELECT * FROM expensive);

-- No changes: nothing written.
REFRESH MATERIALIZED VIEW by_cat;
SELECT rows_applied, changes_consumed FROM pgtrickle.pgt_refresh_history
 WHERE relid = 'by_cat'::regclass ORDER BY id DESC LIMIT 1;

-- Too many changes at once, or too many affected rows of the stream table:
-- that refresh recomputes in FULL, and says why.
SET pg_trickle.differential_max_change_fraction = 0.1;
ANALYZE items;
UPDATE items SET qty = qty + 1;
REFRESH MATERIALIZED VIEW by_cat;
SELECT mode, message FROM pgtrickle.pgt_refresh_history
 WHERE relid = 'by_cat'::regclass ORDER BY id DESC LIMIT 1;
SET pg_trickle.differential_max_change_fraction = 0.25;
UPDATE items SET qty = qty + 1 WHERE id IN (2, 3);   -- 2 of 5 groups
REFRESH MATERIALIZED VIEW by_cat;
SELECT mode, message FROM pgtrickle.pgt_refresh_history
 WHERE relid = 'by_cat'::regclass ORDER BY id DESC LIMIT 1;
SET pg_trickle.differential_max_change_fraction = 1000;

-- A key the plan uses is dropped, then added back: the next refresh sets
-- the stream table up again (key index, buffer columns, one FULL refresh)
-- at both changes. Without items' primary key, the join labelled and the
-- filter expensive go on differentially as multisets of rows.
ALTER TABLE items DROP CONSTRAINT items_pkey;
REFRESH MATERIALIZED VIEW labelled;
REFRESH MATERIALIZED VIEW expensive;
SELECT relid::regclass AS stream_table, refresh_mode, consumes_changes FROM pgtrickle.pgt_stream_tables
 WHERE relid IN ('labelled'::regclass, 'expensive'::regclass) ORDER BY 1;
SELECT tablename, regexp_replace(indexdef, '__pgt_key_[0-9]+', '__pgt_key_<oid>') AS index
  FROM pg_indexes WHERE tablename IN ('labelled', 'expensive') ORDER BY 1;
UPDATE items SET price = price + 1 WHERE id = 1;
REFRESH MATERIALIZED VIEW expensive;
ALTER TABLE items ADD PRIMARY KEY (id);
REFRESH MATERIALIZED VIEW labelled;
REFRESH MATERIALIZED VIEW labelled;
REFRESH MATERIALIZED VIEW expensive;
REFRESH MATERIALIZED VIEW expensive;
SELECT relid::regclass AS stream_table, mode, trigger FROM pgtrickle.pgt_refresh_history
 WHERE relid IN ('labelled'::regclass, 'expensive'::regclass) ORDER BY id DESC LIMIT 7;
SELECT count(*) AS differences FROM (
    (TABLE expensive EXCEPT ALL SELECT id, cat, price * qty FROM items WHERE price > 30)
    UNION ALL
    (SELECT id, cat, price * qty FROM items WHERE price > 30 EXCEPT ALL TABLE expensive)) d;

-- REFRESH ... WITH NO DATA empties it; the next refresh is FULL.
REFRESH MATERIALIZED VIEW cats WITH NO DATA;
INSERT INTO items VALUES (200, 'c7', 1, 1);
REFRESH MATERIALIZED VIEW cats;
SELECT mode, message FROM pgtrickle.pgt_refresh_history WHERE relid = 'cats'::regclass ORDER BY id DESC LIMIT 1;
SELECT count(*) FROM cats WHERE cat = 'c7';

-- The owner must be allowed to put triggers on the source.
CREATE ROLE pgt_reader;
GRANT SELECT ON items TO pgt_reader;
GRANT CREATE ON SCHEMA public TO pgt_reader;
SET ROLE pgt_reader;
CREATE MATERIALIZED VIEW theirs WITH (pgtrickle.stream = true) AS SELECT id, price FROM items;
DROP MATERIALIZED VIEW theirs;
RESET ROLE;
REVOKE CREATE ON SCHEMA public FROM pgt_reader;
REVOKE SELECT ON items FROM pgt_reader;
DROP ROLE pgt_reader;

-- explain_stream_table shows the plan.
SELECT property, value FROM pgtrickle.explain_stream_table('by_cat') WHERE property <> 'apply';
SELECT value AS apply FROM pgtrickle.explain_stream_table('by_cat') WHERE property = 'apply';
SELECT * FROM pgtrickle.explain_stream_table('ranked');
-- The operator tree of a query, from PostgreSQL's analyzed query: joins,
-- filters, set operations, DISTINCT, ORDER BY ... LIMIT, subqueries in
-- FROM and WITH queries, each input under the operator that reads it.
CREATE MATERIALIZED VIEW shapes WITH (pgtrickle.stream = true) AS
  WITH cheap AS (SELECT id, cat FROM items WHERE price < 10)
  SELECT DISTINCT i.cat, n.label FROM items i LEFT JOIN cat_names n ON n.code = i.cat
   WHERE i.id IN (SELECT id FROM cheap)
  UNION ALL
  SELECT c.cat, 'cheap' FROM (SELECT * FROM cheap ORDER BY id DESC LIMIT 3) c;
SELECT value AS tree FROM pgtrickle.explain_stream_table('shapes') WHERE property = 'operator tree';
DROP MATERIALIZED VIEW shapes;
-- A join whose select list lacks a table's primary key (log has none): a
-- multiset, from the rows its changes add and remove.
SELECT property, value FROM pgtrickle.explain_stream_table('joined')
 WHERE property IN ('refresh mode', 'strategy', 'row identity', 'sources');
SELECT property, value FROM pgtrickle.explain_stream_table('labelled') WHERE property IN ('strategy', 'row identity', 'sources');

DROP MATERIALIZED VIEW expensive, by_cat, cats, labelled, no_key, cheapest, joined, logs, ranked, rnd, from_inherited;
DROP TABLE items, log, cat_names, inh_parent CASCADE;
RESET pg_trickle.differential_max_change_fraction;
SELECT count(*) FROM pgtrickle.pgt_change_buffers;
