-- privileges: an ordinary role that owns a materialized view may make it a
-- stream table, alter, refresh and drop it without any right on pg_trickle's
-- catalog; other roles may not.
CREATE ROLE pgt_owner LOGIN;
CREATE ROLE pgt_other LOGIN;
CREATE SCHEMA app AUTHORIZATION pgt_owner;
SET ROLE pgt_owner;
CREATE TABLE app.t (a int);
INSERT INTO app.t VALUES (1);
CREATE MATERIALIZED VIEW app.st WITH (pgtrickle.stream = true, pgtrickle.refresh_mode = 'full') AS SELECT a FROM app.t;
INSERT INTO app.t VALUES (2);
REFRESH MATERIALIZED VIEW app.st;
ALTER MATERIALIZED VIEW app.st SET (pgtrickle.schedule = '1m');
SELECT name, schedule FROM pgtrickle.stream_tables;
-- The catalog is readable, not writable, by ordinary roles.
DELETE FROM pgtrickle.pgt_stream_tables;
RESET ROLE;

GRANT USAGE ON SCHEMA app TO pgt_other;
SET ROLE pgt_other;
REFRESH MATERIALIZED VIEW app.st;
SELECT pgtrickle.refresh_stream_table('app.st');
ALTER MATERIALIZED VIEW app.st SET (pgtrickle.schedule = '2m');
DROP MATERIALIZED VIEW app.st;
RESET ROLE;

SET ROLE pgt_owner;
SELECT * FROM app.st ORDER BY a;
DROP MATERIALIZED VIEW app.st;
RESET ROLE;
SELECT count(*) FROM pgtrickle.pgt_stream_tables;
DROP SCHEMA app CASCADE;
DROP ROLE pgt_owner, pgt_other;
