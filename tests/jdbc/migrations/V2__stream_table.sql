CREATE MATERIALIZED VIEW sales_by_region
  WITH (pgtrickle.stream = true, pgtrickle.refresh_mode = 'full', pgtrickle.schedule = '5m') AS
  SELECT region, sum(amount) AS total, count(*) AS n FROM orders GROUP BY region;
CREATE UNIQUE INDEX ON sales_by_region (region);
