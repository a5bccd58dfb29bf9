-- nested_lookups: a scalar subquery that aggregates, correlated to the
-- rows around it by = (TPC-H Q20: a stock above half of what was shipped
-- of that part by that supplier in a year), is an aggregate per value of
-- the correlated columns, looked up. A stream table that AUTO refreshes in
-- FULL (here for its window function) keeps it as an inner stream table
-- grouped by those columns: a refresh applies the changes to it, then
-- recomputes the query with the subquery looking its value up there,
-- instead of aggregating the table again for every row.
CREATE TABLE stock (part int, supplier int, qty int, PRIMARY KEY (part, supplier));
CREATE TABLE shipped (id int PRIMARY KEY, part int, supplier int, qty numeric, day date);
INSERT INTO stock SELECT p, s, (p * 7 + s * 3) % 8 FROM generate_series(1, 8) p, generate_series(1, 40) s;
INSERT INTO shipped
SELECT g, g % 7 + 1, g % 40 + 1, g % 9 + 1, date '2024-01-01' + g % 700 FROM generate_series(1, 1500) g;
CREATE MATERIALIZED VIEW well_stocked WITH (pgtrickle.stream) AS
  SELECT st.supplier, st.part, st.qty,
         rank() OVER (PARTITION BY st.supplier ORDER BY st.qty DESC, st.part) AS place
    FROM stock st
   WHERE st.qty > (SELECT 0.5 * sum(sh.qty) FROM shipped sh
                    WHERE sh.part = st.part AND sh.supplier = st.supplier
                      AND sh.day >= date '2024-01-01' AND sh.day < date '2025-01-01');
CREATE VIEW well_stocked_now AS
  SELECT st.supplier, st.part, st.qty,
         rank() OVER (PARTITION BY st.supplier ORDER BY st.qty DESC, st.part) AS place
    FROM stock st
   WHERE st.qty > (SELECT 0.5 * sum(sh.qty) FROM shipped sh
                    WHERE sh.part = st.part AND sh.supplier = st.supplier
                      AND sh.day >= date '2024-01-01' AND sh.day < date '2025-01-01');
SELECT count(*) AS stocks, count(DISTINCT supplier) AS suppliers FROM well_stocked;
-- The inner stream table: the aggregates (a_1) per correlated columns
-- (k_1, k_2), over the rows that pass the subquery's own conditions;
-- numbered 2000 + the subquery's place among the query's scalar
-- subqueries.
SELECT regexp_replace(name, '_[0-9]+_', '_<oid>_') AS name, query, refresh_mode
  FROM pgtrickle.stream_tables WHERE name = 'well_stocked' OR name LIKE 'inner\_%' ORDER BY name;
SELECT property, regexp_replace(value, '_[0-9]+_', '_<oid>_') AS value
  FROM pgtrickle.explain_stream_table('well_stocked')
 WHERE property IN ('refresh mode', 'inner stream table', 'query over inner stream tables');

-- Changes: part 8 is shipped by nobody (its subquery is NULL: no row
-- passes the comparison); now part 5 is shipped by nobody in the year;
-- new parts, one shipped and one not.
UPDATE shipped SET day = day + 400 WHERE part = 5;
UPDATE shipped SET qty = qty * 3 WHERE supplier = 1;
DELETE FROM shipped WHERE part = 6 AND supplier = 2;
UPDATE stock SET qty = 0 WHERE part = 3 AND supplier = 4;
INSERT INTO stock VALUES (9, 1, 5), (9, 2, 0), (10, 3, 7);
INSERT INTO shipped VALUES (1501, 9, 1, 4, date '2024-03-01'), (1502, 9, 2, 1, date '2024-03-01');
REFRESH MATERIALIZED VIEW well_stocked;
SELECT count(*) AS stocks, count(DISTINCT supplier) AS suppliers FROM well_stocked;
(TABLE well_stocked EXCEPT ALL TABLE well_stocked_now) UNION ALL (TABLE well_stocked_now EXCEPT ALL TABLE well_stocked);
SELECT regexp_replace(relid::regclass::text, '_[0-9]+_', '_<oid>_') AS stream_table, mode, trigger,
       changes_consumed, regexp_replace(message, '_[0-9]+_', '_<oid>_') AS message
  FROM pgtrickle.pgt_refresh_history
 WHERE relid::regclass::text = 'well_stocked' OR relid::regclass::text LIKE 'pgtrickle_state.inner\_%' ORDER BY id;
-- When no table it reads changed, nothing is recomputed, and the inner
-- stream table is not refreshed either.
REFRESH MATERIALIZED VIEW well_stocked;
SELECT regexp_replace(relid::regclass::text, '_[0-9]+_', '_<oid>_') AS stream_table, mode, message
  FROM pgtrickle.pgt_refresh_history
 WHERE relid::regclass::text = 'well_stocked' OR relid::regclass::text LIKE 'pgtrickle_state.inner\_%'
 ORDER BY id DESC LIMIT 1;

-- An uncorrelated aggregate (one row) is kept too, whatever it computes.
-- Correlated, an aggregate that is not NULL over no rows (count), or an
-- item that is not NULL when its aggregate is (coalesce), is not: the
-- lookup of a missing group would give NULL where the subquery gives 0.
CREATE MATERIALIZED VIEW above_average WITH (pgtrickle.stream) AS
  SELECT st.part, st.supplier, count(*) OVER () AS of_all FROM stock st
   WHERE st.qty > (SELECT avg(qty) FROM stock)
     AND (SELECT count(*) FROM shipped sh WHERE sh.part = st.part) < 220
     AND st.qty >= (SELECT coalesce(max(sh.qty), 0) FROM shipped sh WHERE sh.supplier = st.supplier);
SELECT regexp_replace(name, '_[0-9]+_', '_<oid>_') AS name, query
  FROM pgtrickle.stream_tables WHERE name LIKE 'inner\_' || 'above_average'::regclass::oid || '\_%' ORDER BY name;
CREATE VIEW above_average_now AS
  SELECT st.part, st.supplier, count(*) OVER () AS of_all FROM stock st
   WHERE st.qty > (SELECT avg(qty) FROM stock)
     AND (SELECT count(*) FROM shipped sh WHERE sh.part = st.part) < 220
     AND st.qty >= (SELECT coalesce(max(sh.qty), 0) FROM shipped sh WHERE sh.supplier = st.supplier);
SELECT count(*) AS rows FROM above_average;
UPDATE stock SET qty = qty + 10 WHERE supplier = 3;
DELETE FROM shipped WHERE supplier = 5;
REFRESH MATERIALIZED VIEW above_average;
SELECT count(*) AS rows FROM above_average;
(TABLE above_average EXCEPT ALL TABLE above_average_now) UNION ALL (TABLE above_average_now EXCEPT ALL TABLE above_average);

-- Asked for FULL (not AUTO), a stream table has no inner stream tables.
-- AUTO again: the next refresh makes them.
ALTER MATERIALIZED VIEW well_stocked SET (pgtrickle.refresh_mode = 'full');
SELECT count(*) AS inner_stream_tables FROM pgtrickle.stream_tables
 WHERE name LIKE 'inner\_' || 'well_stocked'::regclass::oid || '\_%';
ALTER MATERIALIZED VIEW well_stocked SET (pgtrickle.refresh_mode = 'auto');
DELETE FROM shipped WHERE id % 3 = 0;
REFRESH MATERIALIZED VIEW well_stocked;
SELECT count(*) AS inner_stream_tables FROM pgtrickle.stream_tables
 WHERE name LIKE 'inner\_' || 'well_stocked'::regclass::oid || '\_%';
(TABLE well_stocked EXCEPT ALL TABLE well_stocked_now) UNION ALL (TABLE well_stocked_now EXCEPT ALL TABLE well_stocked);

-- A stream table that AUTO maintains differentially has none: its
-- refreshes apply the changes to the subquery's rows themselves.
CREATE MATERIALIZED VIEW well_stocked_parts WITH (pgtrickle.stream) AS
  SELECT st.part, st.supplier FROM stock st
   WHERE st.qty > (SELECT 0.5 * sum(sh.qty) FROM shipped sh
                    WHERE sh.part = st.part AND sh.supplier = st.supplier);
SELECT refresh_mode FROM pgtrickle.stream_tables WHERE name = 'well_stocked_parts';
SELECT count(*) AS inner_stream_tables FROM pgtrickle.stream_tables
 WHERE name LIKE 'inner\_' || 'well_stocked_parts'::regclass::oid || '\_%';

DROP MATERIALIZED VIEW well_stocked, above_average, well_stocked_parts;
SELECT count(*) AS stream_tables FROM pgtrickle.stream_tables;
DROP VIEW well_stocked_now, above_average_now;
DROP TABLE stock, shipped;
