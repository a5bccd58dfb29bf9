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
          SELECT id, team, score FROM players ORDER BY score DESC NULLS LAST, id LIMIT 5)
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

-- Not maintained incrementally: OFFSET, LIMIT without ORDER BY, ORDER BY
-- an expression that is not selected, rows without a key.
CREATE MATERIALIZED VIEW x WITH (pgtrickle.stream, pgtrickle.refresh_mode = differential) AS
SELECT id, score FROM players ORDER BY score LIMIT 5 OFFSET 5;
CREATE MATERIALIZED VIEW x WITH (pgtrickle.stream, pgtrickle.refresh_mode = differential) AS
SELECT id, score FROM players LIMIT 5;
CREATE MATERIALIZED VIEW x WITH (pgtrickle.stream, pgtrickle.refresh_mode = differential) AS
SELECT id, score FROM players ORDER BY abs(score - 50), id LIMIT 5;
CREATE MATERIALIZED VIEW x WITH (pgtrickle.stream, pgtrickle.refresh_mode = differential) AS
SELECT team, score FROM players ORDER BY score DESC LIMIT 5;

RESET pg_trickle.differential_max_change_fraction;
DROP SCHEMA topk CASCADE;
RESET search_path;
