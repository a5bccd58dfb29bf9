CREATE MATERIALIZED VIEW half_done WITH (pgtrickle.stream = true, pgtrickle.refresh_mode = 'full') AS SELECT id FROM orders;
ALTER MATERIALIZED VIEW region_sales SET (pgtrickle.schedule = '2m');
SELECT 1 / 0;
