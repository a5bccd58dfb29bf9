-- create: CREATE MATERIALIZED VIEW ... WITH (pgtrickle.stream = true) makes a
-- stream table: a real materialized view (\dm, \d+, pg_get_viewdef show the
-- user's query), its settings kept in reloptions, registered in the catalog.
CREATE TABLE orders (id int PRIMARY KEY, region text, amount numeric);
INSERT INTO orders VALUES (1, 'north', 10), (2, 'south', 20), (3, 'north', 5);

CREATE MATERIALIZED VIEW sales WITH (pgtrickle.stream = true, pgtrickle.refresh_mode = 'full') AS
  SELECT region, sum(amount) AS total, count(*) AS n FROM orders GROUP BY region;
SELECT * FROM sales ORDER BY region;
\dm
\d+ sales
SELECT pg_get_viewdef('sales'::regclass);
SELECT reloptions FROM pg_class WHERE oid = 'sales'::regclass;
SELECT name, requested_mode, refresh_mode, schedule, populated, status FROM pgtrickle.stream_tables;
SELECT source_relid::regclass, source_relkind FROM pgtrickle.pgt_sources WHERE relid = 'sales'::regclass;

-- The spelling pg_dump writes: one quoted name per option.
CREATE MATERIALIZED VIEW sales2 WITH ("pgtrickle.stream"='true', "pgtrickle.refresh_mode"='full', "pgtrickle.schedule"='5m') AS
  SELECT id, amount FROM orders WHERE amount > 5;
SELECT reloptions FROM pg_class WHERE oid = 'sales2'::regclass;

-- A bare option means true; refresh_mode defaults to 'auto': DIFFERENTIAL
-- when pg_trickle can maintain the query (here: rows keyed by the primary key).
CREATE MATERIALIZED VIEW sales3 WITH (pgtrickle.stream) AS SELECT id FROM orders;
SELECT name, requested_mode, refresh_mode FROM pgtrickle.stream_tables WHERE name = 'sales3';

-- Rows that refreshes update in place (groups) get room on their pages for
-- the new versions (fillfactor 60: HOT updates), unless a fillfactor was
-- given; rows keyed by a table's key do not.
CREATE MATERIALIZED VIEW sales4 WITH (pgtrickle.stream) AS
  SELECT region, sum(amount) AS total, count(*) AS n FROM orders GROUP BY region;
CREATE MATERIALIZED VIEW sales5 WITH (pgtrickle.stream, fillfactor = 90) AS
  SELECT region, count(*) AS n FROM orders GROUP BY region;
SELECT relname, reloptions FROM pg_class WHERE relname IN ('sales3', 'sales4', 'sales5') ORDER BY relname;

-- Column names, WITH NO DATA (not populated until refreshed), schemas.
CREATE SCHEMA reports;
CREATE MATERIALIZED VIEW reports.by_region (r, t) WITH (pgtrickle.stream = true, pgtrickle.refresh_mode = full) AS
  SELECT region, sum(amount) FROM orders GROUP BY region WITH NO DATA;
SELECT schema, name, populated FROM pgtrickle.stream_tables WHERE schema = 'reports';
SELECT * FROM reports.by_region;
REFRESH MATERIALIZED VIEW reports.by_region;
SELECT * FROM reports.by_region ORDER BY r;

-- Through a view: the view's base table is recorded as a source too.
CREATE VIEW big_orders AS SELECT * FROM orders WHERE amount >= 10;
CREATE MATERIALIZED VIEW big WITH (pgtrickle.stream = true, pgtrickle.refresh_mode = full) AS
  SELECT count(*) AS n FROM big_orders;
SELECT source_relid::regclass, source_relkind, via_relid::regclass
  FROM pgtrickle.pgt_sources WHERE relid = 'big'::regclass ORDER BY 1::text;

-- IF NOT EXISTS on an existing stream table does nothing.
CREATE MATERIALIZED VIEW IF NOT EXISTS sales WITH (pgtrickle.stream = true) AS SELECT 1 AS x;
SELECT count(*) FROM pgtrickle.pgt_stream_tables WHERE relid = 'sales'::regclass;

-- pgtrickle.stream = false alone: an ordinary materialized view.
CREATE MATERIALIZED VIEW plain_mv WITH (pgtrickle.stream = false) AS SELECT id FROM orders;
SELECT reloptions, EXISTS (SELECT 1 FROM pgtrickle.pgt_stream_tables WHERE relid = 'plain_mv'::regclass) AS is_stream
  FROM pg_class WHERE oid = 'plain_mv'::regclass;

-- Sources are protected by PostgreSQL's own dependencies.
DROP TABLE orders;

-- Writes by users are refused, as on any materialized view.
INSERT INTO sales VALUES ('east', 1, 1);
DELETE FROM sales;

DROP SCHEMA reports CASCADE;
DROP MATERIALIZED VIEW sales, sales2, sales3, sales4, sales5, big, plain_mv;
DROP VIEW big_orders;
DROP TABLE orders;
SELECT count(*) FROM pgtrickle.pgt_stream_tables;
