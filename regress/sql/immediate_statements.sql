-- immediate_statements: IMMEDIATE stream tables stay exact when one
-- statement writes several of their sources: data-modifying CTEs, triggers
-- on a source that write another source (or the same one), and several
-- statements per transaction.
CREATE SCHEMA imst;
SET search_path = imst, public;
CREATE TABLE orders (id int PRIMARY KEY, customer int NOT NULL, amount int);
CREATE TABLE lines (id int PRIMARY KEY, order_id int NOT NULL, qty int);
CREATE TABLE audit (id serial PRIMARY KEY, order_id int, note text);
INSERT INTO orders SELECT i, i % 3, i * 10 FROM generate_series(1, 6) i;
INSERT INTO lines SELECT i, 1 + i % 6, i FROM generate_series(1, 12) i;
-- Running totals over a join, a keyed join and a join aggregate kept by
-- recomputing groups.
CREATE MATERIALIZED VIEW per_customer WITH (pgtrickle.stream, pgtrickle.refresh_mode = immediate) AS
  SELECT o.customer, count(*) AS n, sum(l.qty * o.amount) AS value FROM orders o JOIN lines l ON l.order_id = o.id GROUP BY o.customer;
CREATE MATERIALIZED VIEW order_lines WITH (pgtrickle.stream, pgtrickle.refresh_mode = immediate) AS
  SELECT l.id, o.id AS order_id, o.customer, l.qty FROM orders o JOIN lines l ON l.order_id = o.id;
CREATE MATERIALIZED VIEW biggest WITH (pgtrickle.stream, pgtrickle.refresh_mode = immediate) AS
  SELECT o.id, max(l.qty) AS top FROM orders o JOIN lines l ON l.order_id = o.id GROUP BY o.id;
SELECT refresh_mode, count(*) FROM pgtrickle.stream_tables WHERE schema = 'imst' GROUP BY 1;
-- The sources of running totals over a join also get a BEFORE STATEMENT
-- trigger, which notes statements under way.
SELECT regexp_replace(tgname, '_[0-9]+$', '') AS trigger, tgtype & 2 = 2 AS before
  FROM pg_trigger WHERE tgrelid = 'orders'::regclass AND tgisinternal ORDER BY 1;

-- Differences between each stream table and its query (0 when exact).
CREATE FUNCTION differences() RETURNS TABLE (stream_table text, missing bigint, extra bigint) LANGUAGE sql AS $$
  SELECT 'per_customer',
         (SELECT count(*) FROM (SELECT o.customer, count(*), sum(l.qty * o.amount) FROM orders o JOIN lines l ON l.order_id = o.id GROUP BY o.customer
                                EXCEPT ALL SELECT * FROM per_customer) x),
         (SELECT count(*) FROM (SELECT * FROM per_customer EXCEPT ALL
                                SELECT o.customer, count(*), sum(l.qty * o.amount) FROM orders o JOIN lines l ON l.order_id = o.id GROUP BY o.customer) x)
  UNION ALL
  SELECT 'order_lines',
         (SELECT count(*) FROM (SELECT l.id, o.id, o.customer, l.qty FROM orders o JOIN lines l ON l.order_id = o.id EXCEPT ALL SELECT * FROM order_lines) x),
         (SELECT count(*) FROM (SELECT * FROM order_lines EXCEPT ALL SELECT l.id, o.id, o.customer, l.qty FROM orders o JOIN lines l ON l.order_id = o.id) x)
  UNION ALL
  SELECT 'biggest',
         (SELECT count(*) FROM (SELECT o.id, max(l.qty) FROM orders o JOIN lines l ON l.order_id = o.id GROUP BY o.id EXCEPT ALL SELECT * FROM biggest) x),
         (SELECT count(*) FROM (SELECT * FROM biggest EXCEPT ALL SELECT o.id, max(l.qty) FROM orders o JOIN lines l ON l.order_id = o.id GROUP BY o.id) x)
$$;

-- One statement writing both sides of the join (a data-modifying CTE).
WITH o AS (INSERT INTO orders VALUES (7, 1, 5), (8, 2, 7) RETURNING id)
INSERT INTO lines SELECT 100 + id, id, 3 FROM o;
SELECT * FROM differences();
WITH gone AS (DELETE FROM lines WHERE order_id = 2 RETURNING order_id)
UPDATE orders SET amount = amount + 1 WHERE id IN (SELECT order_id FROM gone) OR id = 3;
SELECT * FROM differences();

-- A trigger on one source that writes the other: each order gets a line.
CREATE FUNCTION add_line() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO lines VALUES (1000 + NEW.id, NEW.id, 2);
  RETURN NULL;
END $$;
CREATE TRIGGER order_gets_line AFTER INSERT ON orders FOR EACH ROW EXECUTE FUNCTION add_line();
INSERT INTO orders VALUES (9, 0, 11), (10, 1, 13);
SELECT * FROM differences();
BEGIN;
INSERT INTO orders VALUES (11, 2, 17);
SELECT * FROM per_customer ORDER BY customer;
SELECT * FROM differences();
ROLLBACK;
SELECT * FROM differences();
-- A statement-level trigger writing the other source, and a BEFORE ROW
-- trigger that changes the written row.
CREATE FUNCTION bump_orders() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE orders SET amount = amount * 2 WHERE id IN (SELECT order_id FROM lines WHERE qty > 10);
  RETURN NULL;
END $$;
CREATE TRIGGER lines_bump AFTER UPDATE ON lines FOR EACH STATEMENT EXECUTE FUNCTION bump_orders();
CREATE FUNCTION at_least_one() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.qty := greatest(NEW.qty, 1);
  RETURN NEW;
END $$;
CREATE TRIGGER lines_min BEFORE INSERT OR UPDATE ON lines FOR EACH ROW EXECUTE FUNCTION at_least_one();
UPDATE lines SET qty = qty + 5 WHERE order_id IN (1, 4);
SELECT * FROM differences();
INSERT INTO lines VALUES (200, 5, -3);
SELECT qty FROM order_lines WHERE id = 200;
-- A trigger on a source that writes the same source.
CREATE FUNCTION split_big() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.qty > 50 THEN
    UPDATE lines SET qty = NEW.qty / 2 WHERE id = NEW.id;
    INSERT INTO lines VALUES (NEW.id + 5000, NEW.order_id, NEW.qty - NEW.qty / 2);
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER lines_split AFTER INSERT ON lines FOR EACH ROW EXECUTE FUNCTION split_big();
INSERT INTO lines VALUES (300, 6, 99), (301, 6, 4);
SELECT * FROM differences();
-- Several statements on several sources in one transaction, with a
-- savepoint rolled back in the middle.
BEGIN;
DELETE FROM orders WHERE id = 6;
DELETE FROM lines WHERE order_id = 6;
SAVEPOINT s;
WITH o AS (UPDATE orders SET customer = 2 RETURNING id) DELETE FROM lines WHERE order_id IN (SELECT id FROM o WHERE id < 3);
SELECT * FROM differences();
ROLLBACK TO SAVEPOINT s;
UPDATE lines SET order_id = 1 WHERE order_id = 3;
SELECT * FROM differences();
COMMIT;
SELECT * FROM differences();
SELECT * FROM per_customer ORDER BY customer;

-- An INSERT alone into a source of order_lines (keyed by both tables'
-- primary keys) adds the rows of its new rows joined to orders, without
-- recomputing by key; an INSERT with another statement under way (a WITH
-- query inserting into both tables) is recomputed by key. Both exact.
INSERT INTO lines SELECT 70000 + i, 1 + i % 6, i FROM generate_series(1, 50) i;
WITH o AS (INSERT INTO orders VALUES (50, 2, 5) RETURNING id)
INSERT INTO lines SELECT 80000 + i, 50, i FROM generate_series(1, 3) i;
WITH l AS (INSERT INTO lines VALUES (90000, 51, 7) RETURNING id)
INSERT INTO orders VALUES (51, 1, 9);
SELECT * FROM differences();
SELECT count(*) AS order_lines FROM order_lines;

-- A table without a key kept from its changed rows alone, whose row
-- trigger deletes some of the rows its statement inserted: the nested
-- DELETE is maintained before the INSERT that fired it, and would remove
-- rows not there yet. The stream table is recomputed instead, once no
-- statement on the table is under way.
CREATE TABLE readings (sensor int, v int);
CREATE MATERIALIZED VIEW positive WITH (pgtrickle.stream, pgtrickle.refresh_mode = immediate) AS
  SELECT sensor, v FROM readings WHERE v > 0;
CREATE FUNCTION drop_13() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.v = 13 THEN EXECUTE format('DELETE FROM %I.%I WHERE v = 13', TG_TABLE_SCHEMA, TG_TABLE_NAME); END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER unlucky AFTER INSERT ON readings FOR EACH ROW EXECUTE FUNCTION drop_13();
-- The same for running totals with a max, which would keep the deleted
-- 13 as the largest value.
CREATE TABLE logged (id serial PRIMARY KEY, sensor int, v int);
CREATE MATERIALIZED VIEW highest WITH (pgtrickle.stream, pgtrickle.refresh_mode = immediate) AS
  SELECT sensor, max(v) AS top, count(*) AS n FROM logged GROUP BY sensor;
CREATE TRIGGER unlucky AFTER INSERT ON logged FOR EACH ROW EXECUTE FUNCTION drop_13();
INSERT INTO readings VALUES (1, 5), (1, 13), (2, 5);
TABLE positive ORDER BY sensor, v;
INSERT INTO logged (sensor, v) VALUES (1, 5), (1, 13), (2, 5);
TABLE highest ORDER BY sensor;
-- (An INSERT ... ON CONFLICT's insert and update are maintained as usual.)
CREATE UNIQUE INDEX ON logged (sensor, v);
INSERT INTO logged (sensor, v) VALUES (1, 5), (2, 9) ON CONFLICT (sensor, v) DO UPDATE SET v = excluded.v + 1;
TABLE highest ORDER BY sensor;
INSERT INTO readings VALUES (3, 7);
SELECT count(*) AS differ FROM ((TABLE positive EXCEPT ALL SELECT sensor, v FROM readings WHERE v > 0)
  UNION ALL (SELECT sensor, v FROM readings WHERE v > 0 EXCEPT ALL TABLE positive)) d;
SELECT count(*) AS differ FROM ((TABLE highest EXCEPT ALL SELECT sensor, max(v), count(*) FROM logged GROUP BY sensor)
  UNION ALL (SELECT sensor, max(v), count(*) FROM logged GROUP BY sensor EXCEPT ALL TABLE highest)) d;
-- The same through a partition named by the statement (its triggers fire
-- on the partition, the stream table reads the partitioned table).
CREATE TABLE parted (id int, part int, v int, PRIMARY KEY (id, part)) PARTITION BY LIST (part);
CREATE TABLE parted_1 PARTITION OF parted FOR VALUES IN (1);
CREATE TABLE parted_2 PARTITION OF parted FOR VALUES IN (2);
CREATE MATERIALIZED VIEW parted_top WITH (pgtrickle.stream, pgtrickle.refresh_mode = immediate) AS
  SELECT part, max(v) AS top, count(*) AS n FROM parted GROUP BY part;
CREATE TRIGGER unlucky AFTER INSERT ON parted_1 FOR EACH ROW EXECUTE FUNCTION drop_13();
INSERT INTO parted_1 VALUES (1, 1, 5), (2, 1, 13);
INSERT INTO parted VALUES (3, 1, 13), (4, 2, 7);
TABLE parted_top ORDER BY part;
DROP MATERIALIZED VIEW positive, highest, parted_top;
DROP TABLE readings, logged, parted;
DROP FUNCTION drop_13();

-- The new rows are read as the stream table's owner reads the table:
-- under row level security that applies to the owner, an INSERT is
-- recomputed by key, and rows the policy hides stay out.
CREATE ROLE pgt_rls_owner;
GRANT CREATE, USAGE ON SCHEMA imst TO pgt_rls_owner;
SET ROLE pgt_rls_owner;
CREATE TABLE secret (id int PRIMARY KEY, team text, v int);
ALTER TABLE secret ENABLE ROW LEVEL SECURITY;
ALTER TABLE secret FORCE ROW LEVEL SECURITY;
CREATE POLICY team_a ON secret USING (team = 'a') WITH CHECK (true);
INSERT INTO secret VALUES (1, 'a', 1), (2, 'b', 2);
CREATE MATERIALIZED VIEW secret_rows WITH (pgtrickle.stream, pgtrickle.refresh_mode = immediate) AS
  SELECT id, team, v FROM secret;
INSERT INTO secret VALUES (3, 'a', 3), (4, 'b', 4);
TABLE secret_rows ORDER BY id;
SELECT count(*) AS differ FROM ((TABLE secret_rows EXCEPT ALL SELECT id, team, v FROM secret)
  UNION ALL (SELECT id, team, v FROM secret EXCEPT ALL TABLE secret_rows)) d;
DROP MATERIALIZED VIEW secret_rows;
DROP TABLE secret;
RESET ROLE;
REVOKE ALL ON SCHEMA imst FROM pgt_rls_owner;
DROP ROLE pgt_rls_owner;

DROP SCHEMA imst CASCADE;
RESET search_path;
