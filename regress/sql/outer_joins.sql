-- Outer joins without aggregates: one LEFT (or RIGHT) JOIN of two tables,
-- or a chain of LEFT JOINs each adding one table, recomputed per row of
-- its preserved table, and one FULL JOIN of two tables, recomputed per row
-- of either, partners included.
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

-- A WHERE condition on a nullable side may hide a row's partner while its
-- NULL-extended row shows (staff without a desk on a floor): the staff
-- rows a change of desks reaches are found by the changed desks' old and
-- new desk numbers, through the ON clause's =, and recomputed. The same
-- for a FULL JOIN, both ways.
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
REFRESH MATERIALIZED VIEW upper_floors;
SELECT h.mode FROM pgtrickle.refresh_history('oj.upper_floors', 1) h;
SELECT count(*) AS differences FROM (
    (TABLE upper_floors EXCEPT ALL
     SELECT s.id, d.id FROM staff s FULL JOIN desks d ON d.desk = s.desk WHERE d.floor > 1)
    UNION ALL
    (SELECT s.id, d.id FROM staff s FULL JOIN desks d ON d.desk = s.desk WHERE d.floor > 1
     EXCEPT ALL TABLE upper_floors)) d;

-- A chain of LEFT JOINs: each staff member, their desk and the desk's
-- floor warden (a staff member too). Recomputed per staff row; a change
-- of desks, wardens or of a warden's staff row reaches the staff rows
-- joined to it before the change (in the stream table) and after it (in
-- the query).
CREATE TABLE wardens (floor int PRIMARY KEY, staff_id int);
INSERT INTO wardens VALUES (1, 2), (2, 4), (3, 1);
UPDATE desks SET desk = 10 WHERE id = 100;
UPDATE desks SET floor = 2 WHERE id = 200;
CREATE MATERIALIZED VIEW desk_wardens WITH (pgtrickle.stream) AS
SELECT s.id, d.id AS desk_id, w.floor, x.id AS warden_id, x.name AS warden
  FROM staff s LEFT JOIN desks d ON d.desk = s.desk
               LEFT JOIN wardens w ON w.floor = d.floor
               LEFT JOIN staff x ON x.id = w.staff_id;
SELECT property, value FROM pgtrickle.explain_stream_table('desk_wardens')
 WHERE property IN ('refresh mode', 'strategy', 'row identity');
TABLE desk_wardens ORDER BY id;
-- cid becomes the warden of floor 1, dee (the warden of floor 2) is
-- renamed, desk 200 moves to floor 3, and fay joins at desk 10.
UPDATE wardens SET staff_id = 3 WHERE floor = 1;
UPDATE staff SET name = 'deedee' WHERE id = 4;
UPDATE desks SET floor = 3 WHERE id = 200;
INSERT INTO staff VALUES (6, 'fay', 10);
REFRESH MATERIALIZED VIEW desk_wardens;
SELECT h.mode FROM pgtrickle.refresh_history('oj.desk_wardens', 1) h;
TABLE desk_wardens ORDER BY id;
UPDATE staff SET name = 'ann b' WHERE id = 1;
DELETE FROM wardens WHERE floor = 1;
REFRESH MATERIALIZED VIEW desk_wardens;
TABLE desk_wardens ORDER BY id;
SELECT count(*) AS differences FROM (
    (TABLE desk_wardens EXCEPT ALL
     SELECT s.id, d.id, w.floor, x.id, x.name FROM staff s LEFT JOIN desks d ON d.desk = s.desk
       LEFT JOIN wardens w ON w.floor = d.floor LEFT JOIN staff x ON x.id = w.staff_id)
    UNION ALL
    (SELECT s.id, d.id, w.floor, x.id, x.name FROM staff s LEFT JOIN desks d ON d.desk = s.desk
       LEFT JOIN wardens w ON w.floor = d.floor LEFT JOIN staff x ON x.id = w.staff_id
     EXCEPT ALL TABLE desk_wardens)) d;
-- The same through a chain: staff whose desk has no warden (none, or
-- not on a known floor); a change of wardens reaches the staff rows by
-- floor, then desk. Kept the same way in IMMEDIATE mode.
CREATE MATERIALIZED VIEW unguarded WITH (pgtrickle.stream) AS
SELECT s.id, d.id AS desk_id, w.floor
  FROM staff s LEFT JOIN desks d ON d.desk = s.desk
               LEFT JOIN wardens w ON w.floor = d.floor
 WHERE w.staff_id IS NULL;
CREATE MATERIALIZED VIEW unguarded_now WITH (pgtrickle.stream, pgtrickle.refresh_mode = 'immediate') AS
SELECT s.id, d.id AS desk_id, w.floor
  FROM staff s LEFT JOIN desks d ON d.desk = s.desk
               LEFT JOIN wardens w ON w.floor = d.floor
 WHERE w.staff_id IS NULL;
CREATE MATERIALIZED VIEW unmatched_now WITH (pgtrickle.stream, pgtrickle.refresh_mode = 'immediate') AS
SELECT s.id, d.id AS desk_id FROM staff s FULL JOIN desks d ON d.desk = s.desk
 WHERE s.id IS NULL OR d.id IS NULL;
SELECT property, value FROM pgtrickle.explain_stream_table('unguarded')
 WHERE property IN ('refresh mode', 'strategy');
TABLE unguarded ORDER BY id;
BEGIN;
INSERT INTO wardens VALUES (4, 5);
UPDATE wardens SET staff_id = NULL WHERE floor = 3;
UPDATE desks SET floor = 4 WHERE id = 100;
TABLE unguarded_now ORDER BY id;
ROLLBACK;
UPDATE wardens SET floor = 5 WHERE floor = 3;
DELETE FROM desks WHERE id = 300;
REFRESH MATERIALIZED VIEW unguarded;
SELECT h.mode FROM pgtrickle.refresh_history('oj.unguarded', 1) h;
TABLE unguarded ORDER BY id;
CREATE VIEW unguarded_q AS
SELECT s.id, d.id AS desk_id, w.floor
  FROM staff s LEFT JOIN desks d ON d.desk = s.desk
               LEFT JOIN wardens w ON w.floor = d.floor
 WHERE w.staff_id IS NULL;
SELECT count(*) AS differences FROM (
    (TABLE unguarded EXCEPT ALL TABLE unguarded_q) UNION ALL (TABLE unguarded_q EXCEPT ALL TABLE unguarded)) d;
SELECT count(*) AS differences FROM (
    (TABLE unguarded_now EXCEPT ALL TABLE unguarded_q) UNION ALL (TABLE unguarded_q EXCEPT ALL TABLE unguarded_now)) d;
DROP VIEW unguarded_q;
TABLE unmatched_now ORDER BY id, desk_id;
SELECT count(*) AS differences FROM (
    (TABLE unmatched_now EXCEPT ALL
     SELECT s.id, d.id FROM staff s FULL JOIN desks d ON d.desk = s.desk WHERE s.id IS NULL OR d.id IS NULL)
    UNION ALL
    (SELECT s.id, d.id FROM staff s FULL JOIN desks d ON d.desk = s.desk WHERE s.id IS NULL OR d.id IS NULL
     EXCEPT ALL TABLE unmatched_now)) d;
DROP MATERIALIZED VIEW unguarded, unguarded_now, unmatched_now;
-- LEFT JOINs may start from an inner join: rows recomputed per row of its
-- first table (with a one-column key), here staff; the WHERE clause may
-- read the inner join's tables.
CREATE MATERIALIZED VIEW seated_wardens WITH (pgtrickle.stream) AS
SELECT s.id, d.id AS desk_id, w.floor, x.id AS warden_id
  FROM staff s JOIN desks d ON d.desk = s.desk
               LEFT JOIN wardens w ON w.floor = d.floor
               LEFT JOIN staff x ON x.id = w.staff_id
 WHERE d.floor IS NOT NULL;
SELECT property, value FROM pgtrickle.explain_stream_table('seated_wardens')
 WHERE property IN ('refresh mode', 'strategy');
INSERT INTO wardens VALUES (1, 6);
UPDATE desks SET floor = 1 WHERE id = 200;
REFRESH MATERIALIZED VIEW seated_wardens;
TABLE seated_wardens ORDER BY id;
-- An inner join after a LEFT JOIN: the wardens and their desks, an inner
-- join reading only staff (it joins the start: staff JOIN wardens LEFT
-- JOIN desks); the staff seated on a floor with a warden, an inner join
-- through desks that no NULL-extended desk passes (the LEFT JOIN of desks
-- is an inner join); the staff on upper floors, a WHERE condition doing
-- the same. All recomputed per staff row.
CREATE MATERIALIZED VIEW warden_seats WITH (pgtrickle.stream) AS
SELECT s.id, d.id AS desk_id, w.floor AS warden_of
  FROM staff s LEFT JOIN desks d ON d.desk = s.desk JOIN wardens w ON w.staff_id = s.id;
CREATE MATERIALIZED VIEW guarded WITH (pgtrickle.stream) AS
SELECT s.id, d.id AS desk_id, w.floor, w.staff_id AS warden
  FROM staff s LEFT JOIN desks d ON d.desk = s.desk JOIN wardens w ON w.floor = d.floor;
CREATE MATERIALIZED VIEW upstairs WITH (pgtrickle.stream) AS
SELECT s.id, d.id AS desk_id, d.floor
  FROM staff s LEFT JOIN desks d ON d.desk = s.desk WHERE d.floor > 1;
SELECT s.name, e.value AS strategy FROM pgtrickle.stream_tables s,
       LATERAL pgtrickle.explain_stream_table(s.relation::text) e
 WHERE s.name IN ('warden_seats', 'guarded', 'upstairs') AND e.property = 'strategy' ORDER BY s.name;
-- ann becomes the warden of floor 2, desk 300 gets a desk number and
-- floor 2, eve sits there, desk 200 goes to floor 4 and cid leaves.
UPDATE wardens SET staff_id = 1 WHERE floor = 2;
UPDATE desks SET desk = 99, floor = 2 WHERE id = 300;
UPDATE desks SET floor = 4 WHERE id = 200;
DELETE FROM staff WHERE id = 3;
REFRESH MATERIALIZED VIEW warden_seats;
REFRESH MATERIALIZED VIEW guarded;
REFRESH MATERIALIZED VIEW upstairs;
SELECT s.name, h.mode FROM pgtrickle.stream_tables s,
       LATERAL pgtrickle.refresh_history(s.relation::text, 1) h
 WHERE s.name IN ('warden_seats', 'guarded', 'upstairs') ORDER BY s.name;
TABLE warden_seats ORDER BY id, warden_of;
TABLE guarded ORDER BY id;
TABLE upstairs ORDER BY id;
SELECT (SELECT count(*) FROM ((TABLE warden_seats EXCEPT ALL
          SELECT s.id, d.id, w.floor FROM staff s LEFT JOIN desks d ON d.desk = s.desk JOIN wardens w ON w.staff_id = s.id)
        UNION ALL (SELECT s.id, d.id, w.floor FROM staff s LEFT JOIN desks d ON d.desk = s.desk JOIN wardens w ON w.staff_id = s.id
          EXCEPT ALL TABLE warden_seats)) x) AS warden_seats,
       (SELECT count(*) FROM ((TABLE guarded EXCEPT ALL
          SELECT s.id, d.id, w.floor, w.staff_id FROM staff s LEFT JOIN desks d ON d.desk = s.desk JOIN wardens w ON w.floor = d.floor)
        UNION ALL (SELECT s.id, d.id, w.floor, w.staff_id FROM staff s LEFT JOIN desks d ON d.desk = s.desk JOIN wardens w ON w.floor = d.floor
          EXCEPT ALL TABLE guarded)) x) AS guarded,
       (SELECT count(*) FROM ((TABLE upstairs EXCEPT ALL
          SELECT s.id, d.id, d.floor FROM staff s LEFT JOIN desks d ON d.desk = s.desk WHERE d.floor > 1)
        UNION ALL (SELECT s.id, d.id, d.floor FROM staff s LEFT JOIN desks d ON d.desk = s.desk WHERE d.floor > 1
          EXCEPT ALL TABLE upstairs)) x) AS upstairs;
-- An inner join whose condition may pass a NULL-extended desk
-- (coalesce) is not such a chain: kept as a multiset of slices.
CREATE MATERIALIZED VIEW any_floor WITH (pgtrickle.stream) AS
SELECT s.id, d.id AS desk_id, w.floor
  FROM staff s LEFT JOIN desks d ON d.desk = s.desk JOIN wardens w ON w.floor = coalesce(d.floor, 1);
SELECT property, value FROM pgtrickle.explain_stream_table('any_floor')
 WHERE property IN ('refresh mode', 'row identity');

-- A RIGHT JOIN after another join is not a chain from one preserved
-- table: no row identity from the keys; it is kept as a multiset of the
-- rows of the slices its changes touch (wardens by floor).
CREATE MATERIALIZED VIEW warden_desks WITH (pgtrickle.stream) AS
SELECT s.id, d.id AS desk_id, w.floor
  FROM staff s LEFT JOIN desks d ON d.desk = s.desk RIGHT JOIN wardens w ON w.floor = d.floor;
SELECT property, value FROM pgtrickle.explain_stream_table('warden_desks')
 WHERE property IN ('refresh mode', 'row identity', 'slice root');

DROP SCHEMA oj CASCADE;
