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
-- DIFFERENTIAL and IMMEDIATE stream tables too: created, maintained,
-- refreshed and dropped by their owner alone.
CREATE TABLE app.k (id int PRIMARY KEY, g int, v int);
INSERT INTO app.k SELECT i, i % 3, i FROM generate_series(1, 10) i;
CREATE MATERIALIZED VIEW app.by_g WITH (pgtrickle.stream, pgtrickle.refresh_mode = differential) AS
  SELECT g, count(*) AS n, max(v) AS top FROM app.k GROUP BY g;
CREATE MATERIALIZED VIEW app.big WITH (pgtrickle.stream, pgtrickle.refresh_mode = immediate) AS
  SELECT id, v FROM app.k WHERE v > 5;
INSERT INTO app.k VALUES (11, 0, 11), (12, 1, 12);
UPDATE app.k SET v = v + 100 WHERE id = 3;
DELETE FROM app.k WHERE id = 10;
REFRESH MATERIALIZED VIEW app.by_g;
SELECT name, refresh_mode FROM pgtrickle.stream_tables WHERE schema = 'app' ORDER BY name;
-- (Its owner may not read the change buffers: the groups are recomputed
-- from the table, not kept from running totals read from the buffer.)
SELECT value AS strategy FROM pgtrickle.explain_stream_table('app.by_g') WHERE property = 'strategy';
TABLE app.by_g ORDER BY g;
TABLE app.big ORDER BY id;
DROP MATERIALIZED VIEW app.by_g, app.big;
DROP TABLE app.k;
RESET ROLE;
SELECT count(*) FROM pgtrickle.pgt_stream_tables;
DROP SCHEMA app CASCADE;
DROP ROLE pgt_owner, pgt_other;
