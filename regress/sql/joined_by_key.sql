-- A table joined by its primary key to columns of another (a dimension
-- joined to a fact table) has at most one row for each row of that one:
-- the fact table's key identifies the joined rows alone. The stream table
-- needs neither the dimension's key in its select list nor an index on it,
-- and a change of a dimension row reaches the rows joined to it through
-- the fact table's join column.
CREATE SCHEMA jbk;
SET search_path = jbk, public;
SET pg_trickle.differential_max_change_fraction = 1000;
CREATE TABLE categories (id int PRIMARY KEY, label text);
CREATE TABLE products (id int PRIMARY KEY, name text, category_id int);
CREATE TABLE sales (id int PRIMARY KEY, product_id int, qty int);
INSERT INTO categories VALUES (1, 'fruit'), (2, 'tools'), (3, 'toys');
INSERT INTO products SELECT i, 'product ' || i, i % 3 + 1 FROM generate_series(1, 6) i;
INSERT INTO sales SELECT i, CASE WHEN i % 9 = 0 THEN NULL ELSE i % 7 + 1 END, i FROM generate_series(1, 40) i;

-- A chain: categories by products, products by sales.
CREATE MATERIALIZED VIEW sold WITH (pgtrickle.stream) AS
SELECT s.id, p.name, c.label, s.qty
  FROM sales s JOIN products p ON p.id = s.product_id JOIN categories c ON c.id = p.category_id;
SELECT property, value FROM pgtrickle.explain_stream_table('sold')
 WHERE property IN ('strategy', 'row identity', 'sources');
SELECT regexp_replace(indexdef, '__pgt_key_[0-9]+', '__pgt_key_<oid>') AS index
  FROM pg_indexes WHERE tablename = 'sold';

CREATE FUNCTION jbk.check(st regclass, q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE missing bigint; extra bigint; total bigint;
BEGIN
    EXECUTE format('SELECT count(*) FROM ((%s) EXCEPT ALL SELECT * FROM %s) x', q, st) INTO missing;
    EXECUTE format('SELECT count(*) FROM (SELECT * FROM %s EXCEPT ALL (%s)) x', st, q) INTO extra;
    EXECUTE format('SELECT count(*) FROM %s', st) INTO total;
    RETURN format('%s rows, %s missing, %s extra', total, missing, extra);
END $$;
CREATE VIEW sold_now AS
SELECT s.id, p.name, c.label, s.qty
  FROM sales s JOIN products p ON p.id = s.product_id JOIN categories c ON c.id = p.category_id;

-- Dimension changes: a product renamed, one moved to another category, a
-- category relabelled, one deleted (its rows go), a product deleted, a
-- product's key changed (its sales lose it; a new product takes it).
UPDATE products SET name = 'renamed' WHERE id = 2;
UPDATE products SET category_id = 3 WHERE id = 4;
UPDATE categories SET label = 'garden' WHERE id = 2;
DELETE FROM categories WHERE id = 1;
DELETE FROM products WHERE id = 5;
UPDATE products SET id = 8 WHERE id = 6;
REFRESH MATERIALIZED VIEW sold;
SELECT jbk.check('sold', 'SELECT * FROM sold_now');
SELECT mode, rows_applied FROM pgtrickle.refresh_history('jbk.sold', 1);

-- Dimension rows that arrive: a category back, a product for the sales
-- that named product 8 and 1 (now missing 1's category), then fact and
-- dimension changes together in one window.
INSERT INTO categories VALUES (1, 'fruit again');
INSERT INTO products VALUES (6, 'six', 1);
UPDATE sales SET product_id = 6 WHERE id IN (3, 9);
UPDATE sales SET qty = qty * 10 WHERE product_id = 8;
DELETE FROM sales WHERE id BETWEEN 30 AND 33;
INSERT INTO sales VALUES (41, 6, 1), (42, NULL, 2), (43, 99, 3);
UPDATE products SET category_id = 2 WHERE id = 6;
REFRESH MATERIALIZED VIEW sold;
SELECT jbk.check('sold', 'SELECT * FROM sold_now');
SELECT label, count(*), sum(qty) FROM sold GROUP BY label ORDER BY label;

-- The dimension's key may be selected: it is still not part of the key.
CREATE MATERIALIZED VIEW sold_keys WITH (pgtrickle.stream) AS
SELECT s.id, p.id AS product, p.name FROM sales s JOIN products p ON p.id = s.product_id;
SELECT value FROM pgtrickle.explain_stream_table('sold_keys') WHERE property = 'row identity';
UPDATE products SET id = 9 WHERE id = 8;
REFRESH MATERIALIZED VIEW sold_keys;
SELECT jbk.check('sold_keys', 'SELECT s.id, p.id AS product, p.name FROM sales s JOIN products p ON p.id = s.product_id');

-- Two tables joined by both primary keys: the first keys the rows.
CREATE TABLE notes (id int PRIMARY KEY, note text);
INSERT INTO notes SELECT i, 'note ' || i FROM generate_series(1, 40, 3) i;
CREATE MATERIALIZED VIEW noted WITH (pgtrickle.stream) AS
SELECT s.id, s.qty, n.note FROM sales s JOIN notes n ON n.id = s.id;
SELECT value FROM pgtrickle.explain_stream_table('noted') WHERE property = 'row identity';
UPDATE notes SET note = 'changed' WHERE id = 4;
DELETE FROM notes WHERE id = 7;
INSERT INTO notes VALUES (2, 'two');
DELETE FROM sales WHERE id = 10;
REFRESH MATERIALIZED VIEW noted;
SELECT jbk.check('noted', 'SELECT s.id, s.qty, n.note FROM sales s JOIN notes n ON n.id = s.id');

-- A key of two columns is implied only when both are joined.
CREATE TABLE stores (region text, code int, city text, PRIMARY KEY (region, code));
CREATE TABLE visits (id int PRIMARY KEY, region text, code int);
INSERT INTO stores VALUES ('north', 1, 'Oslo'), ('north', 2, 'Bergen'), ('south', 1, 'Rome');
INSERT INTO visits VALUES (1, 'north', 1), (2, 'north', 2), (3, 'south', 1), (4, 'south', 2);
CREATE MATERIALIZED VIEW visited WITH (pgtrickle.stream) AS
SELECT v.id, s.city FROM visits v JOIN stores s ON s.region = v.region AND s.code = v.code;
SELECT value FROM pgtrickle.explain_stream_table('visited') WHERE property = 'row identity';
INSERT INTO stores VALUES ('south', 2, 'Naples');
UPDATE stores SET city = 'Trondheim' WHERE region = 'north' AND code = 2;
REFRESH MATERIALIZED VIEW visited;
SELECT * FROM visited ORDER BY id;
-- (Joined by one of them, a store has several rows per visit: both keys.)
CREATE MATERIALIZED VIEW visited_region WITH (pgtrickle.stream) AS
SELECT v.id, s.region, s.code, s.city FROM visits v JOIN stores s ON s.region = v.region;
SELECT value FROM pgtrickle.explain_stream_table('visited_region') WHERE property = 'row identity';

-- Equal under a nondeterministic collation is not equal keys: 'A' and
-- 'a' are two rows of tags, both joined to a row of labels.
CREATE COLLATION jbk.nocase (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
CREATE TABLE tags (code text PRIMARY KEY, label text);
CREATE TABLE labelled_items (id int PRIMARY KEY, code text);
INSERT INTO tags VALUES ('A', 'upper'), ('a', 'lower'), ('b', 'bee');
INSERT INTO labelled_items VALUES (1, 'a'), (2, 'B');
CREATE MATERIALIZED VIEW tagged WITH (pgtrickle.stream) AS
SELECT i.id, t.code, t.label FROM labelled_items i JOIN tags t ON t.code = i.code COLLATE jbk.nocase;
SELECT value FROM pgtrickle.explain_stream_table('tagged') WHERE property = 'row identity';
INSERT INTO tags VALUES ('B', 'big bee');
REFRESH MATERIALIZED VIEW tagged;
SELECT * FROM tagged ORDER BY id, code;

-- Only the equality of one type with itself implies the key: a bigint
-- column joined to an integer key keeps both keys.
CREATE TABLE big_sales (id int PRIMARY KEY, product_id bigint);
CREATE MATERIALIZED VIEW big_sold WITH (pgtrickle.stream) AS
SELECT s.id, p.id AS product, p.name FROM big_sales s JOIN products p ON p.id = s.product_id;
SELECT value FROM pgtrickle.explain_stream_table('big_sold') WHERE property = 'row identity';

-- The first rows by a fact table's column, named by a dimension.
CREATE MATERIALIZED VIEW top_sales WITH (pgtrickle.stream) AS
SELECT s.id, s.qty, p.name FROM sales s JOIN products p ON p.id = s.product_id ORDER BY s.qty DESC, s.id LIMIT 4;
UPDATE products SET name = 'top product' WHERE id = (SELECT product_id FROM sales WHERE product_id IS NOT NULL ORDER BY qty DESC, id LIMIT 1);
DELETE FROM products WHERE id = (SELECT product_id FROM sales WHERE product_id IS NOT NULL ORDER BY qty DESC, id OFFSET 3 LIMIT 1);
REFRESH MATERIALIZED VIEW top_sales;
SELECT jbk.check('top_sales', 'SELECT s.id, s.qty, p.name FROM sales s JOIN products p ON p.id = s.product_id ORDER BY s.qty DESC, s.id LIMIT 4');

-- IMMEDIATE: a statement's rows are applied before it returns; an INSERT
-- into the fact table or into a dimension adds rows computed from its
-- new rows alone.
CREATE MATERIALIZED VIEW sold_now_st WITH (pgtrickle.stream, pgtrickle.refresh_mode = 'immediate') AS
SELECT s.id, p.name, c.label, s.qty
  FROM sales s JOIN products p ON p.id = s.product_id JOIN categories c ON c.id = p.category_id;
BEGIN;
INSERT INTO products VALUES (99, 'late product', 3);
SELECT * FROM sold_now_st WHERE id = 43;
INSERT INTO sales SELECT i, i % 7 + 1, i FROM generate_series(100, 120) i;
UPDATE categories SET label = 'toys!' WHERE id = 3;
SELECT jbk.check('sold_now_st', 'SELECT * FROM sold_now');
SAVEPOINT s;
DELETE FROM products WHERE id IN (1, 2);
UPDATE products SET id = 50 WHERE id = 3;
SELECT jbk.check('sold_now_st', 'SELECT * FROM sold_now');
ROLLBACK TO SAVEPOINT s;
SELECT jbk.check('sold_now_st', 'SELECT * FROM sold_now');
COMMIT;
DELETE FROM categories WHERE id = 2;
INSERT INTO categories VALUES (2, 'tools back');
SELECT jbk.check('sold_now_st', 'SELECT * FROM sold_now');

DROP SCHEMA jbk CASCADE;
RESET search_path;
RESET pg_trickle.differential_max_change_fraction;
