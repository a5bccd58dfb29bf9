-- transactions: creating, altering, refreshing and dropping stream tables is
-- transactional; ROLLBACK leaves no trace.
CREATE TABLE tx (a int);
INSERT INTO tx VALUES (1), (2);

BEGIN;
CREATE MATERIALIZED VIEW tx_st WITH (pgtrickle.stream = true, pgtrickle.refresh_mode = 'full') AS SELECT a FROM tx;
SELECT count(*) FROM pgtrickle.pgt_stream_tables;
ROLLBACK;
SELECT count(*) FROM pgtrickle.pgt_stream_tables;
SELECT to_regclass('tx_st');

CREATE MATERIALIZED VIEW tx_st WITH (pgtrickle.stream = true, pgtrickle.refresh_mode = 'full') AS SELECT a FROM tx;
BEGIN;
INSERT INTO tx VALUES (3);
REFRESH MATERIALIZED VIEW tx_st;
ALTER MATERIALIZED VIEW tx_st SET (pgtrickle.schedule = '5m');
SELECT count(*) FROM tx_st;
ROLLBACK;
SELECT count(*) FROM tx_st;
SELECT schedule, (SELECT count(*) FROM pgtrickle.pgt_refresh_history) AS refreshes
  FROM pgtrickle.stream_tables;
SELECT reloptions FROM pg_class WHERE oid = 'tx_st'::regclass;

-- Savepoints.
BEGIN;
SAVEPOINT s1;
ALTER MATERIALIZED VIEW tx_st SET (pgtrickle.stream = false);
SELECT count(*) FROM pgtrickle.pgt_stream_tables;
ROLLBACK TO SAVEPOINT s1;
SELECT count(*) FROM pgtrickle.pgt_stream_tables;
SAVEPOINT s2;
DROP MATERIALIZED VIEW tx_st;
ROLLBACK TO SAVEPOINT s2;
COMMIT;
SELECT name, status FROM pgtrickle.stream_tables;

-- An error inside a transaction block aborts it; nothing half-done remains.
BEGIN;
CREATE MATERIALIZED VIEW tx_st2 WITH (pgtrickle.stream = true, pgtrickle.refresh_mode = 'full') AS SELECT a FROM tx;
CREATE MATERIALIZED VIEW tx_st3 WITH (pgtrickle.stream = true, pgtrickle.bogus = 1) AS SELECT a FROM tx;
COMMIT;
SELECT name FROM pgtrickle.stream_tables ORDER BY name;

DROP MATERIALIZED VIEW tx_st;
DROP TABLE tx;
