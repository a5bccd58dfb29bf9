-- Window functions over one table, every window partitioned by a column the
-- select list shows: a change of a row changes only the partitions of its
-- old and new values, so a refresh recomputes those partitions (the query
-- filtered by their values, which PostgreSQL pushes below the windows) and
-- applies the differences, rows compared whole with their multiplicity.
CREATE SCHEMA win;
SET search_path = win, public;
SET pg_trickle.differential_max_change_fraction = 1000;
CREATE TABLE scores (id int PRIMARY KEY, player text, game int, points int);
CREATE INDEX ON scores (player);
INSERT INTO scores VALUES
  (1, 'ann', 1, 10), (2, 'ann', 2, 30), (3, 'ann', 3, 20),
  (4, 'bob', 1, 15), (5, 'bob', 2, 15),
  (6, 'cid', 1, 5), (7, NULL, 1, 8), (8, NULL, 2, 9);

-- A rank within each player's games, a running total and a share of the
-- player's points.
CREATE MATERIALIZED VIEW ranked WITH (pgtrickle.stream, pgtrickle.refresh_mode = 'differential') AS
SELECT player, game, points,
       rank() OVER (PARTITION BY player ORDER BY points DESC) AS place,
       sum(points) OVER (PARTITION BY player ORDER BY game) AS running,
       round(100.0 * points / sum(points) OVER (PARTITION BY player), 1) AS pct
  FROM scores WHERE points > 0;
SELECT property, value FROM pgtrickle.explain_stream_table('ranked')
 WHERE property IN ('strategy', 'row identity');
-- No unique index: an index on the partition column, to find a
-- partition's rows.
SELECT regexp_replace(pg_get_indexdef(indexrelid), '__pgt_key_[0-9]+', '__pgt_key_<oid>') AS index
  FROM pg_index WHERE indrelid = 'ranked'::regclass;
TABLE ranked ORDER BY player NULLS FIRST, game;

-- A new best game for ann (her ranks and shares change, bob's do not), a
-- game moved from bob to cid, the NULL player's partition emptied, and a
-- tie created.
INSERT INTO scores VALUES (9, 'ann', 4, 40);
UPDATE scores SET player = 'cid' WHERE id = 5;
DELETE FROM scores WHERE player IS NULL;
UPDATE scores SET points = 20 WHERE id = 1;
REFRESH MATERIALIZED VIEW ranked;
SELECT h.mode, h.rows_applied FROM pgtrickle.refresh_history('win.ranked', 1) h;
TABLE ranked ORDER BY player NULLS FIRST, game;
SELECT count(*) AS differences FROM (
    (TABLE ranked EXCEPT ALL
     SELECT player, game, points, rank() OVER (PARTITION BY player ORDER BY points DESC),
            sum(points) OVER (PARTITION BY player ORDER BY game),
            round(100.0 * points / sum(points) OVER (PARTITION BY player), 1)
       FROM scores WHERE points > 0)
    UNION ALL
    (SELECT player, game, points, rank() OVER (PARTITION BY player ORDER BY points DESC),
            sum(points) OVER (PARTITION BY player ORDER BY game),
            round(100.0 * points / sum(points) OVER (PARTITION BY player), 1)
       FROM scores WHERE points > 0
     EXCEPT ALL TABLE ranked)) d;

-- The recomputation reads only the changed partitions: the partition
-- filter is below the window (an index scan by player here).
SET enable_seqscan = off;
EXPLAIN (COSTS OFF)
SELECT n.* FROM (SELECT player, game, points, rank() OVER (PARTITION BY player ORDER BY points DESC) AS place
                   FROM scores) n
 WHERE n.player = ANY ('{ann}'::text[]);
RESET enable_seqscan;

-- Several windows: the partition columns they all share are the key.
CREATE MATERIALIZED VIEW two_windows WITH (pgtrickle.stream, pgtrickle.refresh_mode = 'differential') AS
SELECT player, game, points,
       row_number() OVER (PARTITION BY player, game ORDER BY id) AS nth,
       count(*) OVER (PARTITION BY player) AS games
  FROM scores;
SELECT property, value FROM pgtrickle.explain_stream_table('two_windows') WHERE property = 'row identity';
UPDATE scores SET game = 1 WHERE id = 9;
REFRESH MATERIALIZED VIEW two_windows;
SELECT count(*) AS differences FROM (
    (TABLE two_windows EXCEPT ALL
     SELECT player, game, points, row_number() OVER (PARTITION BY player, game ORDER BY id),
            count(*) OVER (PARTITION BY player) FROM scores)
    UNION ALL
    (SELECT player, game, points, row_number() OVER (PARTITION BY player, game ORDER BY id),
            count(*) OVER (PARTITION BY player) FROM scores
     EXCEPT ALL TABLE two_windows)) d;

-- IMMEDIATE: each statement recomputes the partitions it touched.
CREATE MATERIALIZED VIEW ranked_now WITH (pgtrickle.stream, pgtrickle.refresh_mode = 'immediate') AS
SELECT player, points, dense_rank() OVER (PARTITION BY player ORDER BY points DESC) AS place FROM scores;
BEGIN;
UPDATE scores SET points = points + 25 WHERE id = 4;
INSERT INTO scores VALUES (10, 'bob', 3, 15), (11, 'dan', 1, 1);
TABLE ranked_now ORDER BY player, place, points;
ROLLBACK;
TABLE ranked_now ORDER BY player, place, points;

-- Over a join, partitioned by columns of one table: a change of another
-- table reaches the partitions of the rows joined to its changed rows,
-- old and new (followed along the = conditions), which are recomputed.
CREATE TABLE games (game int PRIMARY KEY, venue text);
INSERT INTO games VALUES (1, 'home'), (2, 'away'), (3, 'home');
CREATE MATERIALIZED VIEW by_venue WITH (pgtrickle.stream, pgtrickle.refresh_mode = 'differential') AS
SELECT s.player, s.game, g.venue, rank() OVER (PARTITION BY s.player ORDER BY g.venue, s.points DESC, s.id) AS place
  FROM scores s JOIN games g ON g.game = s.game;
CREATE MATERIALIZED VIEW by_venue_now WITH (pgtrickle.stream, pgtrickle.refresh_mode = 'immediate') AS
SELECT s.player, s.game, g.venue, rank() OVER (PARTITION BY s.player ORDER BY g.venue, s.points DESC, s.id) AS place
  FROM scores s JOIN games g ON g.game = s.game;
UPDATE games SET venue = 'neutral' WHERE game = 2;
INSERT INTO scores VALUES (20, 'bob', 3, 1);
REFRESH MATERIALIZED VIEW by_venue;
SELECT mode FROM pgtrickle.refresh_history('win.by_venue', 1);
TABLE by_venue ORDER BY player, place;
SELECT count(*) AS differences FROM (
    (TABLE by_venue_now EXCEPT ALL TABLE by_venue) UNION ALL (TABLE by_venue EXCEPT ALL TABLE by_venue_now)) d;
SELECT count(*) AS differences FROM (
    (TABLE by_venue EXCEPT ALL
     SELECT s.player, s.game, g.venue, rank() OVER (PARTITION BY s.player ORDER BY g.venue, s.points DESC, s.id)
       FROM scores s JOIN games g ON g.game = s.game)
    UNION ALL
    (SELECT s.player, s.game, g.venue, rank() OVER (PARTITION BY s.player ORDER BY g.venue, s.points DESC, s.id)
       FROM scores s JOIN games g ON g.game = s.game
     EXCEPT ALL TABLE by_venue)) d;
DROP MATERIALIZED VIEW by_venue, by_venue_now;

-- Refused (FULL in AUTO mode, with the reason): a window without PARTITION
-- BY (every change may move every row), windows partitioned by no common
-- column, a partition column not selected, and windows over a join not
-- connected by = to the partitioning table.
CREATE MATERIALIZED VIEW overall WITH (pgtrickle.stream) AS
SELECT id, rank() OVER (ORDER BY points DESC) AS place FROM scores;
CREATE MATERIALIZED VIEW mixed WITH (pgtrickle.stream) AS
SELECT id, player, game, rank() OVER (PARTITION BY player ORDER BY points) AS a,
       rank() OVER (PARTITION BY game ORDER BY points) AS b FROM scores;
CREATE MATERIALIZED VIEW unselected WITH (pgtrickle.stream) AS
SELECT id, rank() OVER (PARTITION BY player ORDER BY points) AS place FROM scores;
CREATE MATERIALIZED VIEW strict_mode WITH (pgtrickle.stream, pgtrickle.refresh_mode = 'differential') AS
SELECT a.player, rank() OVER (PARTITION BY a.player ORDER BY b.points) AS place
  FROM scores a JOIN scores b ON b.points > a.points;
SELECT name, refresh_mode FROM pgtrickle.stream_tables WHERE schema = 'win' ORDER BY name;

DROP SCHEMA win CASCADE;
RESET search_path;
RESET pg_trickle.differential_max_change_fraction;
