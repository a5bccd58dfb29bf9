-- alter: ALTER MATERIALIZED VIEW ... SET/RESET (pgtrickle.*) changes a
-- stream table's settings; PostgreSQL's own options, RENAME, SET SCHEMA and
-- OWNER TO keep working; pgtrickle.stream = false turns a stream table back
-- into a plain materialized view, and = true turns a plain one into a stream table.
CREATE TABLE base (id int, v int);
INSERT INTO base VALUES (1, 10), (2, 20);
CREATE MATERIALIZED VIEW st WITH (pgtrickle.stream = true, pgtrickle.refresh_mode = 'full') AS
  SELECT b.id, b.v FROM base b JOIN base x ON x.id = b.id;

ALTER MATERIALIZED VIEW st SET (pgtrickle.schedule = '30s');
SELECT reloptions FROM pg_class WHERE oid = 'st'::regclass;
SELECT requested_mode, refresh_mode, schedule FROM pgtrickle.stream_tables WHERE name = 'st';
ALTER MATERIALIZED VIEW st SET ("pgtrickle.schedule" = '@hourly');
SELECT schedule FROM pgtrickle.stream_tables WHERE name = 'st';
ALTER MATERIALIZED VIEW st RESET (pgtrickle.schedule);
SELECT reloptions FROM pg_class WHERE oid = 'st'::regclass;
-- RESET refresh_mode goes back to the default, 'auto'.
ALTER MATERIALIZED VIEW st RESET (pgtrickle.refresh_mode);
SELECT requested_mode, refresh_mode FROM pgtrickle.stream_tables WHERE name = 'st';
-- Bad values are refused and change nothing.
ALTER MATERIALIZED VIEW st SET (pgtrickle.schedule = 'whenever');
ALTER MATERIALIZED VIEW st SET (pgtrickle.refresh_mode = 'sometimes');
ALTER MATERIALIZED VIEW st SET (pgtrickle.nonsense = 1);
SELECT reloptions FROM pg_class WHERE oid = 'st'::regclass;

-- PostgreSQL's own storage options, alone or mixed with ours.
ALTER MATERIALIZED VIEW st SET (fillfactor = 70);
ALTER MATERIALIZED VIEW st SET (autovacuum_enabled = false, pgtrickle.schedule = '1m');
SELECT reloptions FROM pg_class WHERE oid = 'st'::regclass;
ALTER MATERIALIZED VIEW st RESET (fillfactor, autovacuum_enabled);
SELECT reloptions FROM pg_class WHERE oid = 'st'::regclass;
ALTER MATERIALIZED VIEW st SET (fillfactor = 500);  -- PostgreSQL's own check still applies

-- Rename, move, change owner: still a stream table, still refreshes.
ALTER MATERIALIZED VIEW st RENAME TO st_renamed;
CREATE SCHEMA other;
ALTER MATERIALIZED VIEW st_renamed SET SCHEMA other;
CREATE ROLE pgt_alter_owner;
GRANT SELECT ON base TO pgt_alter_owner;
ALTER MATERIALIZED VIEW other.st_renamed OWNER TO pgt_alter_owner;
INSERT INTO base VALUES (3, 30);
REFRESH MATERIALIZED VIEW other.st_renamed;
SELECT schema, name, schedule FROM pgtrickle.stream_tables;
SELECT * FROM other.st_renamed ORDER BY id;
ALTER MATERIALIZED VIEW other.st_renamed OWNER TO CURRENT_USER;
REVOKE SELECT ON base FROM pgt_alter_owner;
DROP ROLE pgt_alter_owner;

-- Back to a plain materialized view, and forward again.
ALTER MATERIALIZED VIEW other.st_renamed SET (pgtrickle.stream = false);
SELECT reloptions FROM pg_class WHERE oid = 'other.st_renamed'::regclass;
SELECT count(*) FROM pgtrickle.pgt_stream_tables;
ALTER MATERIALIZED VIEW other.st_renamed SET (pgtrickle.schedule = '1m');  -- not a stream table
ALTER MATERIALIZED VIEW other.st_renamed SET (pgtrickle.stream = true, pgtrickle.refresh_mode = 'full');
SELECT name, requested_mode, populated FROM pgtrickle.stream_tables;
ALTER MATERIALIZED VIEW other.st_renamed RESET (pgtrickle.stream);
SELECT count(*) FROM pgtrickle.pgt_stream_tables;

-- The function form: NULL keeps a setting, '' removes the schedule.
CREATE MATERIALIZED VIEW st2 WITH (pgtrickle.stream = true, pgtrickle.refresh_mode = 'full') AS SELECT id FROM base;
SELECT pgtrickle.alter_stream_table('st2', schedule => '10s');
SELECT requested_mode, schedule FROM pgtrickle.stream_tables WHERE name = 'st2';
SELECT pgtrickle.alter_stream_table('st2', refresh_mode => 'auto');
SELECT requested_mode, schedule FROM pgtrickle.stream_tables WHERE name = 'st2';
SELECT pgtrickle.alter_stream_table('st2', schedule => '');
SELECT requested_mode, schedule FROM pgtrickle.stream_tables WHERE name = 'st2';

DROP SCHEMA other CASCADE;
DROP MATERIALIZED VIEW st2;
DROP TABLE base;
