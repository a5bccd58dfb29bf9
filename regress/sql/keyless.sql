-- A filter and projection of one table without a primary key (or that
-- does not select it): the stream table is a multiset of rows, maintained
-- from the changed rows alone. Duplicate rows are kept as copies.
CREATE SCHEMA kl;
SET search_path = kl, public;
SET pg_trickle.differential_max_change_fraction = 1000;
CREATE TABLE events (at int, kind text, payload jsonb);
INSERT INTO events VALUES (1, 'click', '{"x": 1}'), (1, 'click', '{"x": 1}'), (2, 'view', NULL), (3, NULL, '{}');

CREATE MATERIALIZED VIEW clicks WITH (pgtrickle.stream) AS
SELECT at, upper(kind) AS kind, payload FROM events WHERE kind IS DISTINCT FROM 'view';
SELECT property, value FROM pgtrickle.explain_stream_table('clicks')
 WHERE property IN ('refresh mode', 'strategy', 'row identity');
-- No unique index: an ordinary one on the first columns btree can index.
SELECT regexp_replace(pg_get_indexdef(indexrelid), '__pgt_key_[0-9]+', '__pgt_key_<oid>') AS index
  FROM pg_index WHERE indrelid = 'clicks'::regclass;
TABLE clicks ORDER BY at, kind;

-- One of two equal rows deleted, one updated into a third copy's place,
-- NULLs, a row leaving the filter: applied from the changed rows, without
-- reading the table.
DELETE FROM events WHERE ctid = (SELECT min(ctid) FROM events WHERE at = 1);
INSERT INTO events VALUES (1, 'click', '{"x": 1}'), (1, 'click', '{"x": 1}');
UPDATE events SET kind = 'view' WHERE at = 3;
UPDATE events SET payload = '{"x": 2}' WHERE ctid = (SELECT max(ctid) FROM events WHERE at = 1);
REFRESH MATERIALIZED VIEW clicks;
SELECT mode, rows_applied FROM pgtrickle.refresh_history('clicks', 1);
TABLE clicks ORDER BY at, kind, payload::text;
SELECT count(*) AS differences FROM (
    (TABLE clicks EXCEPT ALL
     SELECT at, upper(kind), payload FROM events WHERE kind IS DISTINCT FROM 'view')
    UNION ALL
    (SELECT at, upper(kind), payload FROM events WHERE kind IS DISTINCT FROM 'view'
     EXCEPT ALL TABLE clicks)) d;

-- IMMEDIATE too, and a rollback.
CREATE MATERIALIZED VIEW live WITH (pgtrickle.stream, pgtrickle.refresh_mode = 'immediate') AS
SELECT at, kind FROM events;
BEGIN;
INSERT INTO events VALUES (5, 'buy', NULL), (5, 'buy', NULL);
SELECT * FROM live WHERE at = 5;
ROLLBACK;
DELETE FROM events WHERE at = 1;
TABLE live ORDER BY at, kind;

-- A join whose select list lacks a table's primary key: a multiset of the
-- join's rows, copies included, from the rows the changes add and remove
-- (DIFFERENTIAL and IMMEDIATE).
CREATE TABLE kinds (kind text PRIMARY KEY, weight int);
INSERT INTO kinds VALUES ('buy', 3), ('view', 1), ('click', 2);
CREATE MATERIALIZED VIEW weighted WITH (pgtrickle.stream) AS
SELECT e.at, k.weight FROM events e JOIN kinds k ON k.kind = e.kind;
CREATE MATERIALIZED VIEW weighted_now WITH (pgtrickle.stream, pgtrickle.refresh_mode = 'immediate') AS
SELECT e.at, k.weight FROM events e JOIN kinds k ON k.kind = e.kind;
SELECT name, refresh_mode FROM pgtrickle.stream_tables WHERE name LIKE 'weighted%' ORDER BY name;
INSERT INTO events VALUES (6, 'buy', NULL), (6, 'buy', NULL), (6, 'view', NULL);
UPDATE kinds SET weight = 5 WHERE kind = 'buy';
BEGIN;
DELETE FROM events WHERE at = 6 AND kind = 'view';
SELECT * FROM weighted_now WHERE at = 6 ORDER BY weight;
ROLLBACK;
-- One statement writing both tables: recomputed at its end.
WITH k AS (UPDATE kinds SET weight = weight + 1 WHERE kind = 'view' RETURNING kind)
INSERT INTO events SELECT 7, kind, NULL FROM k;
REFRESH MATERIALIZED VIEW weighted;
SELECT mode, rows_applied FROM pgtrickle.refresh_history('weighted', 1);
TABLE weighted ORDER BY at, weight;
SELECT count(*) AS differences FROM (
    (TABLE weighted EXCEPT ALL SELECT e.at, k.weight FROM events e JOIN kinds k ON k.kind = e.kind)
    UNION ALL
    (SELECT e.at, k.weight FROM events e JOIN kinds k ON k.kind = e.kind EXCEPT ALL TABLE weighted)
    UNION ALL
    (TABLE weighted_now EXCEPT ALL SELECT e.at, k.weight FROM events e JOIN kinds k ON k.kind = e.kind)
    UNION ALL
    (SELECT e.at, k.weight FROM events e JOIN kinds k ON k.kind = e.kind EXCEPT ALL TABLE weighted_now)) d;

DROP SCHEMA kl CASCADE;
