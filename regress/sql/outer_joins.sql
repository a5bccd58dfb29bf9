-- Outer joins without aggregates: one LEFT (or RIGHT) JOIN of two tables,
-- recomputed per row of its preserved table, and one FULL JOIN of two
-- tables, recomputed per row of either, partners included.
CREATE SCHEMA oj;
SET search_path = oj, public;
SET pg_trickle.differential_max_change_fraction = 1000;
CREATE TABLE staff (id int PRIMARY KEY, name text, desk int);
CREATE TABLE desks (id int PRIMARY KEY, desk int, floor int);
INSERT INTO staff VALUES (1, 'ann', 10), (2, 'bob', 20), (3, 'cid', NULL);
INSERT INTO desks VALUES (100, 10, 1), (200, 30, 2);

CREATE MATERIALIZED VIEW seating WITH (pgtrickle.stream) AS
SELECT s.id, d.id AS desk_id, s.name, d.floor FROM staff s FULL JOIN desks d ON d.desk = s.desk;
CREATE MATERIALIZED VIEW staff_desks WITH (pgtrickle.stream) AS
SELECT s.id, d.id AS desk_id, s.name, d.floor FROM staff s LEFT JOIN desks d ON d.desk = s.desk WHERE s.name <> 'zed';
SELECT name, refresh_mode FROM pgtrickle.stream_tables WHERE schema = 'oj' ORDER BY name;
SELECT property, value FROM pgtrickle.explain_stream_table('seating')
 WHERE property IN ('strategy', 'row identity');
TABLE seating ORDER BY id, desk_id;

-- bob moves to desk 30, which frees nothing and fills desk 200; ann's
-- desk 100 moves to desk 40, leaving ann without a desk and desk 100
-- without anyone; a new desk for cid's NULL desk never matches.
UPDATE staff SET desk = 30 WHERE id = 2;
UPDATE desks SET desk = 40 WHERE id = 100;
INSERT INTO desks VALUES (300, NULL, 3);
REFRESH MATERIALIZED VIEW seating;
REFRESH MATERIALIZED VIEW staff_desks;
SELECT s.name, h.mode FROM pgtrickle.stream_tables s,
       LATERAL pgtrickle.refresh_history(s.relation::text, 1) h
 WHERE s.schema = 'oj' ORDER BY s.name;
TABLE seating ORDER BY id, desk_id;
TABLE staff_desks ORDER BY id;
SELECT count(*) AS differences FROM (
    (TABLE seating EXCEPT ALL
     SELECT s.id, d.id, s.name, d.floor FROM staff s FULL JOIN desks d ON d.desk = s.desk)
    UNION ALL
    (SELECT s.id, d.id, s.name, d.floor FROM staff s FULL JOIN desks d ON d.desk = s.desk
     EXCEPT ALL TABLE seating)) d;

-- A WHERE condition on a nullable side could hide a row's partner while
-- its NULL-extended row shows: no row identity from the keys. The LEFT
-- JOIN is kept as a multiset of the rows of the slices its changes touch
-- (staff by id; a change of desks, read whole, recomputes it); the FULL
-- JOIN is refreshed in FULL.
CREATE MATERIALIZED VIEW free_staff WITH (pgtrickle.stream) AS
SELECT s.id, d.id AS desk_id FROM staff s LEFT JOIN desks d ON d.desk = s.desk WHERE d.floor IS NULL;
CREATE MATERIALIZED VIEW upper_floors WITH (pgtrickle.stream) AS
SELECT s.id, d.id AS desk_id FROM staff s FULL JOIN desks d ON d.desk = s.desk WHERE d.floor > 1;
SELECT property, value FROM pgtrickle.explain_stream_table('free_staff')
 WHERE property IN ('refresh mode', 'strategy', 'slices');
INSERT INTO staff VALUES (4, 'dee', 30), (5, 'eve', 99);
UPDATE staff SET desk = 10 WHERE id = 3;
REFRESH MATERIALIZED VIEW free_staff;
UPDATE desks SET floor = NULL WHERE id = 200;
REFRESH MATERIALIZED VIEW free_staff;
SELECT h.mode, h.message FROM pgtrickle.refresh_history('oj.free_staff', 2) h;
TABLE free_staff ORDER BY id;
SELECT count(*) AS differences FROM (
    (TABLE free_staff EXCEPT ALL
     SELECT s.id, d.id FROM staff s LEFT JOIN desks d ON d.desk = s.desk WHERE d.floor IS NULL)
    UNION ALL
    (SELECT s.id, d.id FROM staff s LEFT JOIN desks d ON d.desk = s.desk WHERE d.floor IS NULL
     EXCEPT ALL TABLE free_staff)) d;

DROP SCHEMA oj CASCADE;
