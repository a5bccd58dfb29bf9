-- functions: the function API mirrors the DDL and goes through the same
-- implementation (a stream table made by a function is a materialized view
-- with the same reloptions, and vice versa).
CREATE TABLE items (id int PRIMARY KEY, cat text, price numeric);
INSERT INTO items VALUES (1, 'a', 1.5), (2, 'b', 2), (3, 'a', 3);

SELECT pgtrickle.create_stream_table('cat_totals',
  'SELECT cat, sum(price) AS total FROM items GROUP BY cat', 'full', '1h');
SELECT * FROM cat_totals ORDER BY cat;
SELECT reloptions FROM pg_class WHERE oid = 'cat_totals'::regclass;
\d cat_totals
-- Defaults: refresh_mode 'auto', no schedule; a trailing semicolon is fine;
-- schema-qualified and quoted names are parsed like regclass input.
CREATE SCHEMA "My Schema";
SELECT pgtrickle.create_stream_table('"My Schema"."Cheap Items"', 'SELECT id FROM items WHERE price < 2;');
SELECT schema, name, requested_mode, refresh_mode, schedule FROM pgtrickle.stream_tables ORDER BY name;

INSERT INTO items VALUES (4, 'b', 1);
SELECT pgtrickle.refresh_stream_table('"My Schema"."Cheap Items"');
SELECT * FROM "My Schema"."Cheap Items" ORDER BY id;

SELECT pgtrickle.drop_stream_table('"My Schema"."Cheap Items"');
SELECT pgtrickle.drop_stream_table('cat_totals');
SELECT count(*) FROM pgtrickle.pgt_stream_tables;
SELECT pgtrickle.drop_stream_table('cat_totals');
DROP SCHEMA "My Schema";
DROP TABLE items;
