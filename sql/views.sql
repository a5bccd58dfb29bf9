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
