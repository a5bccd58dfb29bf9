ALTER MATERIALIZED VIEW sales_by_region SET (pgtrickle.schedule = '1m', fillfactor = 90);
INSERT INTO orders VALUES (4, 'east', 7);
REFRESH MATERIALIZED VIEW sales_by_region;
ALTER MATERIALIZED VIEW sales_by_region RENAME TO region_sales;
