-- Views over functions, created after them.

-- Change buffers: one row per captured source the current user may read.
CREATE VIEW pgtrickle.change_buffers AS
SELECT b.source_relid::regclass AS source,
       b.buffer_relid::regclass AS buffer,
       s.pending_rows,
       s.oldest_change,
       ARRAY(SELECT st.relid::regclass
               FROM pgtrickle.pgt_sources src
               JOIN pgtrickle.pgt_stream_tables st ON st.relid = src.relid
              WHERE src.source_relid = b.source_relid AND st.consumes_changes
              ORDER BY st.relid::regclass::text) AS consumers
  FROM pgtrickle.pgt_change_buffers b,
       LATERAL pgtrickle._buffer_stats(b.source_relid) s
 WHERE pg_catalog.has_table_privilege(b.source_relid, 'SELECT');
GRANT SELECT ON pgtrickle.change_buffers TO PUBLIC;

-- Internal helpers are not for direct use.
REVOKE ALL ON FUNCTION pgtrickle._cleanup_change_capture() FROM PUBLIC;

-- Per stream table: settings, the last successful refresh, error state and
-- how far behind its sources it is.
CREATE VIEW pgtrickle.pg_stat_stream_tables AS
SELECT n.nspname                                   AS schema,
       c.relname                                   AS name,
       st.relid::regclass                          AS relation,
       st.refresh_mode,
       st.schedule,
       st.status,
       h.started_at                                AS last_refresh_start,
       h.finished_at                               AS last_refresh_end,
       h.finished_at - h.started_at                AS last_refresh_duration,
       h.mode                                      AS last_refresh_mode,
       h.rows_applied                              AS last_rows_applied,
       h.changes_consumed                          AS last_changes_consumed,
       (SELECT count(*) FROM pgtrickle.pgt_refresh_history x
         WHERE x.relid = st.relid AND x.outcome = 'ok')    AS refreshes,
       (SELECT count(*) FROM pgtrickle.pgt_refresh_history x
         WHERE x.relid = st.relid AND x.outcome = 'error') AS failed_refreshes,
       pg_catalog.make_interval(secs => s.seconds) AS staleness,
       pgtrickle._is_stale(st.schedule, s.seconds) AND st.status = 'active' AS stale,
       st.consecutive_errors,
       CASE WHEN pg_catalog.has_table_privilege(st.relid, 'SELECT') THEN st.last_error END AS last_error,
       st.next_retry_at
  FROM pgtrickle.pgt_stream_tables st
  JOIN pg_catalog.pg_class c ON c.oid = st.relid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN LATERAL (SELECT * FROM pgtrickle.pgt_refresh_history x
                      WHERE x.relid = st.relid AND x.outcome = 'ok'
                      ORDER BY x.id DESC LIMIT 1) h ON true
  -- Staleness reads the change buffers: shown to those who may read the
  -- stream table.
  CROSS JOIN LATERAL (SELECT CASE WHEN pg_catalog.has_table_privilege(st.relid, 'SELECT')
                                  THEN pgtrickle._staleness(st.relid) END AS seconds) s;
GRANT SELECT ON pgtrickle.pg_stat_stream_tables TO PUBLIC;

-- The refresh history, with messages shown to those who may read the
-- stream table.
CREATE VIEW pgtrickle.refresh_history_all AS
SELECT h.id, h.relid, h.relid::regclass AS stream_table, h.mode, h.trigger, h.started_at, h.finished_at,
       h.rows_applied, h.changes_consumed, h.outcome,
       CASE WHEN pg_catalog.has_table_privilege(h.relid, 'SELECT') THEN h.message END AS message
  FROM pgtrickle.pgt_refresh_history h;
GRANT SELECT ON pgtrickle.refresh_history_all TO PUBLIC;

-- The last n refreshes of a stream table, newest first.
CREATE FUNCTION pgtrickle.refresh_history(name regclass, n integer DEFAULT 10)
RETURNS TABLE (started_at timestamptz, finished_at timestamptz, duration interval, mode text,
               trigger text, outcome text, rows_applied bigint, changes_consumed bigint, message text)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT h.started_at, h.finished_at, h.finished_at - h.started_at, h.mode, h.trigger, h.outcome,
           h.rows_applied, h.changes_consumed, h.message
      FROM pgtrickle.refresh_history_all h
     WHERE h.relid = name::oid
     ORDER BY h.id DESC
     LIMIT n
$$;

-- One row: is everything fine?
CREATE VIEW pgtrickle.quick_health AS
SELECT count(*)                                                    AS stream_tables,
       count(*) FILTER (WHERE s.status = 'error' OR s.consecutive_errors > 0) AS erroring,
       count(*) FILTER (WHERE s.status = 'suspended')              AS suspended,
       count(*) FILTER (WHERE s.stale)                             AS stale,
       pgtrickle.scheduler_pid() IS NOT NULL                       AS scheduler_running,
       pg_catalog.current_setting('pg_trickle.enabled')::boolean   AS scheduler_enabled,
       CASE WHEN count(*) FILTER (WHERE s.schedule IS NOT NULL AND s.refresh_mode <> 'immediate') > 0
                 AND (pgtrickle.scheduler_pid() IS NULL
                      OR NOT pg_catalog.current_setting('pg_trickle.enabled')::boolean)
                 THEN 'scheduler not running'
            WHEN count(*) FILTER (WHERE s.status = 'error' OR s.consecutive_errors > 0) > 0 THEN 'error'
            WHEN count(*) FILTER (WHERE s.stale) > 0 THEN 'stale'
            ELSE 'ok' END                                          AS status
  FROM pgtrickle.pg_stat_stream_tables s;
GRANT SELECT ON pgtrickle.quick_health TO PUBLIC;

-- What each stream table reads, transitively: one row per (stream table,
-- source) with the depth and the path from the stream table down.
CREATE FUNCTION pgtrickle.dependency_tree()
RETURNS TABLE (stream_table regclass, depth integer, source regclass, source_is_stream_table boolean,
               path text)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH RECURSIVE tree(root, source, depth, path) AS (
        SELECT s.relid, s.source_relid, 1,
               s.relid::regclass::text || ' <- ' || s.source_relid::regclass::text
          FROM pgtrickle.pgt_sources s
        UNION ALL
        SELECT t.root, s.source_relid, t.depth + 1,
               t.path || ' <- ' || s.source_relid::regclass::text
          FROM tree t JOIN pgtrickle.pgt_sources s ON s.relid = t.source
         WHERE t.depth < 100
    )
    SELECT t.root::regclass, t.depth, t.source::regclass,
           EXISTS (SELECT 1 FROM pgtrickle.pgt_stream_tables st WHERE st.relid = t.source), t.path
      FROM tree t
     ORDER BY t.root::regclass::text, t.path
$$;

-- Start a scheduler for this database once CREATE EXTENSION commits.
SELECT pgtrickle._request_scheduler();
REVOKE ALL ON FUNCTION pgtrickle._request_scheduler() FROM PUBLIC;
