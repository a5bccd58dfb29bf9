SELECT pgtrickle.create_stream_table('big_orders', 'SELECT id, amount FROM orders WHERE amount >= 10', 'full');
CREATE MATERIALIZED VIEW doomed WITH (pgtrickle.stream = true, pgtrickle.refresh_mode = 'full') AS SELECT id FROM orders;
