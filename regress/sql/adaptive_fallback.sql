-- pg_trickle.adaptive_fallback: a differential refresh that would take
-- longer, at the rate of the last differential refresh, than the last
-- FULL refresh took recomputes in FULL. The refresh times are taken from
-- the history; here two entries stand for a slow past.
CREATE SCHEMA af;
SET search_path = af, public;
SET pg_trickle.differential_max_change_fraction = 1000;
CREATE TABLE t (id int PRIMARY KEY, v int);
INSERT INTO t SELECT i, i FROM generate_series(1, 100) i;
CREATE MATERIALIZED VIEW big_v WITH (pgtrickle.stream, pgtrickle.refresh_mode = differential) AS
SELECT id, v FROM t WHERE v > 10;
-- A past refresh of big_v in the history (`n` of them): `mode`, taking
-- `ms`, having applied `changes` changes.
CREATE FUNCTION af.past(mode text, ms int, changes int, n int DEFAULT 1) RETURNS void LANGUAGE sql AS $$
  INSERT INTO pgtrickle.pgt_refresh_history
         (relid, mode, trigger, started_at, finished_at, outcome, changes_consumed, rows_applied)
  SELECT 'big_v'::regclass, mode, 'manual', now() - make_interval(secs => ms / 1000.0), now(), 'ok',
         changes, CASE WHEN mode = 'full' THEN 90 ELSE changes END
    FROM generate_series(1, n)
$$;
-- The last refresh of big_v.
CREATE FUNCTION af.last() RETURNS TABLE (mode text, changes_consumed bigint, message text) LANGUAGE sql AS $$
  SELECT mode, changes_consumed, message FROM pgtrickle.pgt_refresh_history
   WHERE relid = 'big_v'::regclass ORDER BY id DESC LIMIT 1
$$;
-- A FULL refresh of 500 ms, then a differential one of 400 ms for 10 changes.
SELECT af.past('full', 500, 0);
SELECT af.past('differential', 400, 10);
-- 40 changes (20 updated rows): 1600 ms predicted, more than 500.
UPDATE t SET v = v + 1 WHERE id <= 20;
REFRESH MATERIALIZED VIEW big_v;
SELECT * FROM af.last();
-- 10 changes: 400 ms predicted, less than the last FULL refresh's 500.
SELECT af.past('full', 500, 0);
UPDATE t SET v = v + 1 WHERE id <= 5;
REFRESH MATERIALIZED VIEW big_v;
SELECT * FROM af.last();
-- Scaled up to more changes than were applied, the time grows faster
-- than their number (to the power 1.15): after 100 ms for 10 changes, 46
-- changes are predicted to take 578 ms, not 460, more than 500.
SELECT af.past('full', 500, 0);
SELECT af.past('differential', 100, 10);
UPDATE t SET v = v + 1 WHERE id <= 23;
REFRESH MATERIALIZED VIEW big_v;
SELECT * FROM af.last();
-- 40 changes: 492 ms predicted, less.
SELECT af.past('full', 500, 0);
SELECT af.past('differential', 100, 10);
UPDATE t SET v = v + 1 WHERE id <= 20;
REFRESH MATERIALIZED VIEW big_v;
SELECT * FROM af.last();
-- Off: differential whatever the prediction.
SELECT af.past('differential', 400, 10);
SET pg_trickle.adaptive_fallback = off;
UPDATE t SET v = v + 1 WHERE id <= 20;
REFRESH MATERIALIZED VIEW big_v;
SELECT * FROM af.last();
-- A FULL refresh under 100 ms is never avoided.
RESET pg_trickle.adaptive_fallback;
SELECT af.past('full', 50, 0);
SELECT af.past('differential', 400, 10);
UPDATE t SET v = v + 1 WHERE id <= 20;
REFRESH MATERIALIZED VIEW big_v;
SELECT * FROM af.last();
-- After 8 full refreshes in a row since the last differential one, a
-- differential refresh is tried again (and measures itself).
SELECT af.past('differential', 400, 10);
SELECT af.past('full', 500, 0, 7);
UPDATE t SET v = v + 1 WHERE id <= 20;
REFRESH MATERIALIZED VIEW big_v;
SELECT * FROM af.last();
UPDATE t SET v = v + 1 WHERE id <= 20;
REFRESH MATERIALIZED VIEW big_v;
SELECT mode, changes_consumed FROM af.last();
SELECT count(*) AS differ FROM ((TABLE big_v EXCEPT ALL SELECT id, v FROM t WHERE v > 10)
  UNION ALL (SELECT id, v FROM t WHERE v > 10 EXCEPT ALL TABLE big_v)) d;

-- Rows recomputed by key are predicted by their changes plus their
-- affected keys when the last differential refresh counted keys: a
-- change of a table joined by its primary key (dim) reaches every row
-- joined to it, so few changes may recompute many rows.
CREATE TABLE dim (k int PRIMARY KEY, label text);
INSERT INTO dim SELECT k, 'k' || k FROM generate_series(0, 4) k;
CREATE TABLE u (id int PRIMARY KEY, k int, v int);
INSERT INTO u SELECT i, i % 5, i FROM generate_series(1, 100) i;
CREATE MATERIALIZED VIEW joined WITH (pgtrickle.stream, pgtrickle.refresh_mode = differential) AS
SELECT u.id, u.v, dim.label FROM u JOIN dim ON dim.k = u.k;
CREATE FUNCTION af.past_joined(mode text, ms int, changes int, keys int) RETURNS void LANGUAGE sql AS $$
  INSERT INTO pgtrickle.pgt_refresh_history
         (relid, mode, trigger, started_at, finished_at, outcome, changes_consumed, rows_applied, keys_affected)
  VALUES ('joined'::regclass, mode, 'manual', now() - make_interval(secs => ms / 1000.0), now(), 'ok',
          changes, changes, keys)
$$;
CREATE FUNCTION af.last_joined() RETURNS TABLE (mode text, changes_consumed bigint, keys_affected bigint, message text)
LANGUAGE sql AS $$
  SELECT mode, changes_consumed, keys_affected, message FROM pgtrickle.pgt_refresh_history
   WHERE relid = 'joined'::regclass ORDER BY id DESC LIMIT 1
$$;
-- After 2 changes (one row of dim) that recomputed 60 keys in 400 ms, 40
-- changes of u reaching 20 keys: 387 ms predicted (60 against 62), less
-- than 500.
SELECT af.past_joined('full', 500, 0, NULL);
SELECT af.past_joined('differential', 400, 2, 60);
UPDATE u SET v = v + 1 WHERE id <= 20;
REFRESH MATERIALIZED VIEW joined;
SELECT * FROM af.last_joined();
-- Without keys counted, by changes: 40 times 2 changes, FULL.
SELECT af.past_joined('full', 500, 0, NULL);
SELECT af.past_joined('differential', 400, 2, NULL);
UPDATE u SET v = v + 1 WHERE id <= 20;
REFRESH MATERIALIZED VIEW joined;
SELECT * FROM af.last_joined();
-- A change of dim counts the rows of u it reaches (20 with k = 1).
SELECT af.past_joined('differential', 400, 10, 100);
UPDATE dim SET label = 'one' WHERE k = 1;
REFRESH MATERIALIZED VIEW joined;
SELECT * FROM af.last_joined();
-- It may fall back too: 40 changes and 20 keys after 10 and 2 in 400 ms.
SELECT af.past_joined('full', 500, 0, NULL);
SELECT af.past_joined('differential', 400, 10, 2);
UPDATE u SET v = v + 1 WHERE id <= 20;
REFRESH MATERIALIZED VIEW joined;
SELECT * FROM af.last_joined();
SELECT count(*) AS differ FROM ((TABLE joined EXCEPT ALL SELECT u.id, u.v, dim.label FROM u JOIN dim ON dim.k = u.k)
  UNION ALL (SELECT u.id, u.v, dim.label FROM u JOIN dim ON dim.k = u.k EXCEPT ALL TABLE joined)) d;

RESET pg_trickle.differential_max_change_fraction;
DROP SCHEMA af CASCADE;
RESET search_path;
