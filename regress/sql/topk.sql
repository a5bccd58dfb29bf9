-- ORDER BY ... LIMIT n: the stream table holds the first n rows of the
-- query without them. A refresh ranks the affected keys' new rows with
-- the stream table's other rows; only when rows leave the top and too few
-- replace them is the query ranked whole.
CREATE SCHEMA topk;
SET search_path = topk, public;
SET pg_trickle.differential_max_change_fraction = 1000;
CREATE TABLE players (id int PRIMARY KEY, team text NOT NULL, score int);
INSERT INTO players SELECT i, 't' || (i % 4), (i * 37) % 100 FROM generate_series(1, 40) i;
-- The five best players (ties decided by id).
CREATE MATERIALIZED VIEW leaders WITH (pgtrickle.stream, pgtrickle.refresh_mode = differential) AS
SELECT id, team, score FROM players ORDER BY score DESC NULLS LAST, id LIMIT 5;
-- The two best teams by total score, kept from running totals.
CREATE MATERIALIZED VIEW best_teams WITH (pgtrickle.stream, pgtrickle.refresh_mode = differential) AS
SELECT team, sum(score) AS total, count(*) AS players FROM players GROUP BY team ORDER BY total DESC, team LIMIT 2;
SELECT name, refresh_mode FROM pgtrickle.stream_tables WHERE schema = 'topk' ORDER BY name;
SELECT property, value FROM pgtrickle.explain_stream_table('leaders')
 WHERE property IN ('strategy', 'order and limit', 'row identity');
TABLE leaders ORDER BY score DESC, id;
TABLE best_teams ORDER BY total DESC;

-- A new leader enters, an old one drops out of the top: decided from the
-- changed rows and the stream table alone.
INSERT INTO players VALUES (41, 't1', 99);
UPDATE players SET score = 10 WHERE id = 8;
REFRESH MATERIALIZED VIEW leaders;
REFRESH MATERIALIZED VIEW best_teams;
TABLE leaders ORDER BY score DESC, id;
TABLE best_teams ORDER BY total DESC;
-- Leaders leave and nobody new enters: the query is ranked whole.
DELETE FROM players WHERE id IN (41, 19, 11);
REFRESH MATERIALIZED VIEW leaders;
TABLE leaders ORDER BY score DESC, id;
SELECT (SELECT count(*) FROM ((TABLE leaders EXCEPT ALL
          (SELECT id, team, score FROM players ORDER BY score DESC NULLS LAST, id LIMIT 5))
        UNION ALL ((SELECT id, team, score FROM players ORDER BY score DESC NULLS LAST, id LIMIT 5)
          EXCEPT ALL TABLE leaders)) d) AS leaders_differ;
SELECT mode, changes_consumed, rows_applied FROM pgtrickle.pgt_refresh_history
 WHERE relid = 'leaders'::regclass ORDER BY id;

-- IMMEDIATE: the writing statement ranks its changed rows the same way.
ALTER MATERIALIZED VIEW leaders SET (pgtrickle.refresh_mode = immediate);
ALTER MATERIALIZED VIEW best_teams SET (pgtrickle.refresh_mode = immediate);
BEGIN;
UPDATE players SET score = 100 WHERE id = 1;
DELETE FROM players WHERE id = 27;
TABLE leaders ORDER BY score DESC, id;
UPDATE players SET team = 't3' WHERE team = 't0';
TABLE best_teams ORDER BY total DESC;
ROLLBACK;
TABLE leaders ORDER BY score DESC, id;

-- Rows without a key (a table's key not selected): the stream table is a
-- multiset. The rows that may rank first are its rows less the copies the
-- changes remove, and the copies they add; when too few of them rank
-- before its last row, the query is ranked whole.
CREATE TABLE cities (team text PRIMARY KEY, city text);
INSERT INTO cities VALUES ('t0', 'Oslo'), ('t1', 'Lima'), ('t2', 'Pune'), ('t3', 'Rome');
CREATE MATERIALIZED VIEW team_scores WITH (pgtrickle.stream, pgtrickle.refresh_mode = differential) AS
SELECT team, score FROM players ORDER BY score DESC, team LIMIT 4;
CREATE MATERIALIZED VIEW city_scores WITH (pgtrickle.stream, pgtrickle.refresh_mode = differential) AS
SELECT c.city, p.score FROM players p JOIN cities c ON c.team = p.team ORDER BY p.score DESC, c.city LIMIT 3;
SELECT s.name, e.value FROM pgtrickle.stream_tables s, LATERAL pgtrickle.explain_stream_table(s.relation::text) e
 WHERE s.schema = 'topk' AND s.name IN ('team_scores', 'city_scores') AND e.property IN ('row identity', 'order and limit')
 ORDER BY s.name, e.property;
TABLE team_scores ORDER BY score DESC, team;
-- Copies of a ranked row come and go; a new best row; the second best
-- leaves (too few rank before the last row: ranked whole).
INSERT INTO players VALUES (50, 't2', 99), (51, 't2', 99), (52, 't3', 98);
REFRESH MATERIALIZED VIEW team_scores;
REFRESH MATERIALIZED VIEW city_scores;
TABLE team_scores ORDER BY score DESC, team;
TABLE city_scores ORDER BY score DESC, city;
DELETE FROM players WHERE id = 50;
UPDATE cities SET city = 'Bern' WHERE team = 't2';
REFRESH MATERIALIZED VIEW team_scores;
REFRESH MATERIALIZED VIEW city_scores;
SELECT mode FROM pgtrickle.refresh_history('team_scores', 1);
TABLE team_scores ORDER BY score DESC, team;
TABLE city_scores ORDER BY score DESC, city;
DELETE FROM players WHERE id IN (51, 52) OR score >= 95;
REFRESH MATERIALIZED VIEW team_scores;
REFRESH MATERIALIZED VIEW city_scores;
SELECT mode FROM pgtrickle.refresh_history('team_scores', 1);
SELECT (SELECT count(*) FROM ((TABLE team_scores EXCEPT ALL
          (SELECT team, score FROM players ORDER BY score DESC, team LIMIT 4))
        UNION ALL ((SELECT team, score FROM players ORDER BY score DESC, team LIMIT 4)
          EXCEPT ALL TABLE team_scores)) d) AS team_differences,
       (SELECT count(*) FROM ((TABLE city_scores EXCEPT ALL
          (SELECT c.city, p.score FROM players p JOIN cities c ON c.team = p.team ORDER BY p.score DESC, c.city LIMIT 3))
        UNION ALL ((SELECT c.city, p.score FROM players p JOIN cities c ON c.team = p.team ORDER BY p.score DESC, c.city LIMIT 3)
          EXCEPT ALL TABLE city_scores)) d) AS city_differences;
-- IMMEDIATE too.
ALTER MATERIALIZED VIEW team_scores SET (pgtrickle.refresh_mode = immediate);
ALTER MATERIALIZED VIEW city_scores SET (pgtrickle.refresh_mode = immediate);
BEGIN;
INSERT INTO players VALUES (60, 't0', 97), (61, 't0', 97);
TABLE team_scores ORDER BY score DESC, team;
UPDATE cities SET city = 'Oulu' WHERE team = 't0';
TABLE city_scores ORDER BY score DESC, city;
DELETE FROM players WHERE id = 60;
TABLE team_scores ORDER BY score DESC, team;
ROLLBACK;
TABLE team_scores ORDER BY score DESC, team;
DROP MATERIALIZED VIEW team_scores, city_scores;

-- Not maintained incrementally: OFFSET, LIMIT without ORDER BY, ORDER BY
-- an expression that is not selected, UNION ALL.
CREATE MATERIALIZED VIEW x WITH (pgtrickle.stream, pgtrickle.refresh_mode = differential) AS
SELECT id, score FROM players ORDER BY score LIMIT 5 OFFSET 5;
CREATE MATERIALIZED VIEW x WITH (pgtrickle.stream, pgtrickle.refresh_mode = differential) AS
SELECT id, score FROM players LIMIT 5;
CREATE MATERIALIZED VIEW x WITH (pgtrickle.stream, pgtrickle.refresh_mode = differential) AS
SELECT id, score FROM players ORDER BY abs(score - 50), id LIMIT 5;
CREATE MATERIALIZED VIEW x WITH (pgtrickle.stream, pgtrickle.refresh_mode = differential) AS
SELECT team, score FROM players UNION ALL SELECT team, 0 FROM cities ORDER BY score DESC LIMIT 5;

RESET pg_trickle.differential_max_change_fraction;
DROP SCHEMA topk CASCADE;
RESET search_path;
