-- immediate: refresh_mode = 'immediate' maintains a stream table inside the
-- statement that changes its sources: visible in the same transaction,
-- undone by ROLLBACK and ROLLBACK TO SAVEPOINT, switched to and from with
-- ALTER; queries it cannot maintain are refused.
CREATE TABLE acct (id int PRIMARY KEY, owner text, balance numeric);
CREATE TABLE owners (name text PRIMARY KEY, region text);
INSERT INTO acct VALUES (1, 'ann', 100), (2, 'bob', 50), (3, 'ann', 25);
INSERT INTO owners VALUES ('ann', 'north'), ('bob', 'south');

CREATE MATERIALIZED VIEW totals WITH (pgtrickle.stream = true, pgtrickle.refresh_mode = 'immediate') AS
  SELECT owner, count(*) AS n, sum(balance) AS total FROM acct GROUP BY owner;
CREATE MATERIALIZED VIEW placed WITH (pgtrickle.stream = true, pgtrickle.refresh_mode = 'immediate') AS
  SELECT a.id, o.name, o.region, a.balance FROM acct a JOIN owners o ON o.name = a.owner;
SELECT name, requested_mode, refresh_mode FROM pgtrickle.stream_tables ORDER BY name;

-- Every statement updates them; no REFRESH needed.
INSERT INTO acct VALUES (4, 'bob', 10);
UPDATE acct SET balance = balance - 30 WHERE id = 1;
SELECT * FROM totals ORDER BY owner;

-- Inside a transaction the writer sees its own changes ...
BEGIN;
UPDATE acct SET owner = 'cy' WHERE id = 2;
INSERT INTO owners VALUES ('cy', 'east');
SELECT * FROM totals ORDER BY owner;
SELECT id, name, region FROM placed ORDER BY id;
SAVEPOINT s;
DELETE FROM acct WHERE owner = 'ann';
SELECT * FROM totals ORDER BY owner;
ROLLBACK TO SAVEPOINT s;
SELECT * FROM totals ORDER BY owner;
ROLLBACK;
-- ... and ROLLBACK undoes the stream tables with the sources.
SELECT * FROM totals ORDER BY owner;
SELECT id, name, region FROM placed ORDER BY id;

-- Changes on the other side of a join, and TRUNCATE.
UPDATE owners SET region = 'west' WHERE name = 'bob';
SELECT id, name, region FROM placed ORDER BY id;
TRUNCATE owners;
SELECT count(*) FROM placed;
INSERT INTO owners VALUES ('ann', 'north'), ('bob', 'south');
SELECT id, name, region FROM placed ORDER BY id;

-- IMMEDIATE stream tables need no change buffer.
SELECT source, pending_rows, consumers FROM pgtrickle.change_buffers ORDER BY source::text;

-- Switching modes: to DIFFERENTIAL (changes wait for REFRESH) and back
-- (brought up to date at once).
ALTER MATERIALIZED VIEW totals SET (pgtrickle.refresh_mode = 'differential');
INSERT INTO acct VALUES (5, 'ann', 1);
SELECT * FROM totals WHERE owner = 'ann';
ALTER MATERIALIZED VIEW totals SET (pgtrickle.refresh_mode = 'immediate');
SELECT * FROM totals WHERE owner = 'ann';
SELECT pgtrickle.alter_stream_table('totals', refresh_mode => 'full');
INSERT INTO acct VALUES (6, 'ann', 1);
SELECT * FROM totals WHERE owner = 'ann';
SELECT pgtrickle.alter_stream_table('totals', refresh_mode => 'immediate');
SELECT * FROM totals WHERE owner = 'ann';
-- ... and maintained again from the next statement on.
INSERT INTO acct VALUES (8, 'ann', 1);
SELECT * FROM totals WHERE owner = 'ann';

-- Queries that cannot be maintained are refused when created or altered.
CREATE MATERIALIZED VIEW ranked WITH (pgtrickle.stream = true, pgtrickle.refresh_mode = 'immediate') AS
  SELECT id, rank() OVER (ORDER BY balance) AS r FROM acct;
CREATE MATERIALIZED VIEW plain_total WITH (pgtrickle.stream = true, pgtrickle.refresh_mode = 'full') AS
  SELECT owner, balance FROM acct ORDER BY balance DESC LIMIT 3 OFFSET 1;
ALTER MATERIALIZED VIEW plain_total SET (pgtrickle.refresh_mode = 'immediate');
DROP MATERIALIZED VIEW plain_total;

-- The lock a writing statement takes on the stream table (until its
-- transaction ends): EXCLUSIVE, so writers maintain it one after another;
-- only ROW EXCLUSIVE, which writers share, when the writer is READ
-- COMMITTED and each of its rows belongs to one row of its one table, by a
-- primary key checked at once, or its rows are running totals of one
-- table kept in its own columns, to which each statement adds its rows'
-- (group_sums; totals keeps its totals in a state table, for the special
-- values of a numeric sum) (concurrency: tests/e2e/immediate.rs).
CREATE TABLE deferred_key (id int PRIMARY KEY DEFERRABLE, v int);
CREATE MATERIALIZED VIEW rich WITH (pgtrickle.stream = true, pgtrickle.refresh_mode = 'immediate') AS
  SELECT id, owner, balance * 2 AS doubled FROM acct WHERE balance > 20;
CREATE MATERIALIZED VIEW above_average WITH (pgtrickle.stream = true, pgtrickle.refresh_mode = 'immediate') AS
  SELECT id, balance FROM acct a WHERE balance > (SELECT avg(balance) FROM acct);
CREATE MATERIALIZED VIEW deferred_rows WITH (pgtrickle.stream = true, pgtrickle.refresh_mode = 'immediate') AS
  SELECT id, v FROM deferred_key;
CREATE MATERIALIZED VIEW group_sums WITH (pgtrickle.stream = true, pgtrickle.refresh_mode = 'immediate') AS
  SELECT owner, count(*) AS n, sum(id) AS ids FROM acct GROUP BY owner;
SELECT st, value AS lock
  FROM unnest(ARRAY['rich', 'above_average', 'deferred_rows', 'placed', 'totals', 'group_sums']) st,
       pgtrickle.explain_stream_table(st)
 WHERE property = 'immediate lock';
BEGIN;
UPDATE acct SET balance = balance + 1 WHERE id = 1;
SELECT relation::regclass AS st, bool_or(mode = 'ExclusiveLock') AS exclusive
  FROM pg_locks WHERE pid = pg_backend_pid() AND relation IN ('rich'::regclass, 'placed'::regclass, 'group_sums'::regclass)
 GROUP BY 1 ORDER BY 1;
ROLLBACK;
BEGIN ISOLATION LEVEL REPEATABLE READ;
UPDATE acct SET balance = balance + 1 WHERE id = 1;
SELECT relation::regclass AS st, bool_or(mode = 'ExclusiveLock') AS exclusive
  FROM pg_locks WHERE pid = pg_backend_pid() AND relation IN ('rich'::regclass, 'placed'::regclass, 'group_sums'::regclass)
 GROUP BY 1 ORDER BY 1;
ROLLBACK;
SELECT * FROM rich ORDER BY id;
SELECT * FROM group_sums ORDER BY owner;
DROP MATERIALIZED VIEW rich, above_average, deferred_rows, group_sums;
DROP TABLE deferred_key;

-- Writers in REPEATABLE READ or SERIALIZABLE transactions maintain them
-- too. (One fails with a serialization failure, 40001, when a transaction
-- that maintained the same stream table committed after its snapshot:
-- tests/e2e/immediate.rs.)
BEGIN ISOLATION LEVEL REPEATABLE READ;
INSERT INTO acct VALUES (7, 'bob', 1);
SELECT * FROM totals ORDER BY owner;
ROLLBACK;

-- An INSERT alone into a table whose rows the stream table is keyed by
-- adds the rows computed from its new rows, written into the heap in
-- batches and then into every index, as COPY writes them (here an index
-- of the user's too).
CREATE INDEX placed_balance ON placed (balance);
INSERT INTO acct SELECT 100 + i, 'bob', i FROM generate_series(1, 2500) i;
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT count(*) FROM placed WHERE balance BETWEEN 1 AND 2500;
SELECT count(*) AS by_index, sum(balance) FROM placed WHERE balance BETWEEN 1 AND 2500;
RESET enable_seqscan;
SELECT count(*) AS expected, sum(a.balance) FROM acct a JOIN owners o ON o.name = a.owner
 WHERE a.balance BETWEEN 1 AND 2500;
SELECT count(*) AS differences FROM (
    (TABLE placed EXCEPT ALL SELECT a.id, o.name, o.region, a.balance FROM acct a JOIN owners o ON o.name = a.owner)
    UNION ALL
    (SELECT a.id, o.name, o.region, a.balance FROM acct a JOIN owners o ON o.name = a.owner EXCEPT ALL TABLE placed)) d;
DELETE FROM acct WHERE id > 100;

DROP MATERIALIZED VIEW totals, placed;
DROP TABLE acct, owners;
SELECT count(*) FROM pgtrickle.pgt_change_buffers;
