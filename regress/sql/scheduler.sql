-- Scheduling state and monitoring. The background schedulers are paused
-- while pg_regress runs (see scripts/regress.sh); their behaviour over time
-- is covered by the end-to-end tests.
CREATE SCHEMA sched;
SET search_path = sched, public;
CREATE TABLE src (id int PRIMARY KEY, g int NOT NULL, v int);
INSERT INTO src SELECT i, i % 3, i FROM generate_series(1, 9) i;
CREATE MATERIALIZED VIEW per_row WITH (pgtrickle.stream, pgtrickle.refresh_mode = differential, pgtrickle.schedule = '0s')
    AS SELECT id, g, v FROM src WHERE v > 2;
CREATE MATERIALIZED VIEW per_group WITH (pgtrickle.stream, pgtrickle.schedule = 'calculated')
    AS SELECT g, count(*) AS n FROM per_row GROUP BY g;
CREATE MATERIALIZED VIEW top WITH (pgtrickle.stream, pgtrickle.refresh_mode = full, pgtrickle.schedule = '*/5 * * * *')
    AS SELECT max(n) AS most FROM per_group;

-- What reads what.
SELECT stream_table, depth, source, source_is_stream_table, path
  FROM pgtrickle.dependency_tree() WHERE path LIKE 'sched.%';

-- Monitoring: nothing is behind yet.
SELECT name, refresh_mode, schedule, status, last_refresh_mode, refreshes, failed_refreshes,
       staleness < '1 min' AS recent, stale, consecutive_errors
  FROM pgtrickle.pg_stat_stream_tables WHERE schema = 'sched' ORDER BY name;

-- A committed change makes the differential stream table stale by the age
-- of its oldest unapplied change (pending, not yet overdue).
INSERT INTO src VALUES (10, 1, 10);
SELECT name, staleness > '0'::interval AS behind, stale
  FROM pgtrickle.pg_stat_stream_tables WHERE name = 'per_row';
REFRESH MATERIALIZED VIEW per_row;
SELECT name, staleness, stale FROM pgtrickle.pg_stat_stream_tables WHERE name = 'per_row';

-- The history, newest first.
SELECT mode, trigger, outcome, rows_applied, changes_consumed
  FROM pgtrickle.refresh_history('per_row', 2);

-- The history keeps pg_trickle.history_limit rows per stream table.
SET pg_trickle.history_limit = 2;
REFRESH MATERIALIZED VIEW per_row;
REFRESH MATERIALIZED VIEW per_row;
REFRESH MATERIALIZED VIEW per_row;
SELECT count(*) FROM pgtrickle.refresh_history('per_row', 100);
RESET pg_trickle.history_limit;

-- Suspend and resume, by DDL or function.
ALTER MATERIALIZED VIEW top SET (pgtrickle.status = 'suspended');
SELECT name, status FROM pgtrickle.stream_tables WHERE schema = 'sched' ORDER BY name;
ALTER MATERIALIZED VIEW top RESET (pgtrickle.status);
SELECT pgtrickle.suspend_stream_table('sched.per_group');
SELECT name, status FROM pgtrickle.stream_tables WHERE schema = 'sched' ORDER BY name;
SELECT pgtrickle.resume_stream_table('sched.per_group');
SELECT name, status FROM pgtrickle.stream_tables WHERE schema = 'sched' ORDER BY name;
-- The status is not a stored setting: it stays out of reloptions.
SELECT reloptions FROM pg_class WHERE oid = 'top'::regclass;

-- Error messages can show data: roles that may not read a stream table do
-- not see them (nor its staleness, which reads the change buffers).
UPDATE pgtrickle.pgt_stream_tables SET last_error = 'secret value 42', consecutive_errors = 1
 WHERE relid = 'per_row'::regclass;
INSERT INTO pgtrickle.pgt_refresh_history (relid, mode, trigger, started_at, finished_at, outcome, message)
VALUES ('per_row'::regclass, 'differential', 'scheduled', now(), now(), 'error', 'secret value 42');
CREATE ROLE sched_outsider;
GRANT USAGE ON SCHEMA sched TO sched_outsider;
SET ROLE sched_outsider;
SELECT name, consecutive_errors, last_error, staleness FROM pgtrickle.pg_stat_stream_tables WHERE name = 'per_row';
SELECT outcome, message FROM pgtrickle.refresh_history('sched.per_row', 1);
SELECT last_error FROM pgtrickle.pgt_stream_tables;
SELECT pgtrickle._staleness('sched.per_row'::regclass);
RESET ROLE;
SELECT name, consecutive_errors, last_error FROM pgtrickle.pg_stat_stream_tables WHERE name = 'per_row';
SELECT outcome, message FROM pgtrickle.refresh_history('sched.per_row', 1);
UPDATE pgtrickle.pgt_stream_tables SET last_error = NULL, consecutive_errors = 0 WHERE relid = 'per_row'::regclass;
REVOKE USAGE ON SCHEMA sched FROM sched_outsider;
DROP ROLE sched_outsider;

-- Errors.
ALTER MATERIALIZED VIEW top SET (pgtrickle.status = 'error');
CREATE MATERIALIZED VIEW bad WITH (pgtrickle.stream, pgtrickle.status = 'active') AS SELECT 1 AS one;
CREATE MATERIALIZED VIEW plain AS SELECT 1 AS one;
ALTER MATERIALIZED VIEW plain SET (pgtrickle.status = 'active');
SELECT pgtrickle.resume_stream_table('plain');

-- Is a staleness overdue for a schedule? Twice the period, and at least 5 s.
SELECT s, pgtrickle._is_stale(s, 30) AS at_30s, pgtrickle._is_stale(s, 7300) AS at_2h
  FROM unnest(ARRAY['0s', '10s', '1m', '@hourly', '*/5 * * * *', 'calculated', NULL]) s;

-- One-row health summary (the schedulers are paused during this test).
SELECT erroring, suspended, stale, scheduler_enabled, status
  FROM pgtrickle.quick_health;

DROP SCHEMA sched CASCADE;
RESET search_path;
