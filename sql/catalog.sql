-- pg_trickle catalog. Everything lives in schema "pgtrickle", created here so
-- that it is a member of the extension and DROP EXTENSION removes it.
CREATE SCHEMA pgtrickle;

-- One row per stream table. Settings also live in the relation's
-- pg_class.reloptions (pgtrickle.*), which pg_dump carries; this table holds
-- them for quick access plus the runtime state.
CREATE TABLE pgtrickle.pgt_stream_tables (
    relid              oid PRIMARY KEY,
    requested_mode     text NOT NULL
        CHECK (requested_mode IN ('full', 'differential', 'immediate', 'auto')),
    refresh_mode       text NOT NULL
        CHECK (refresh_mode IN ('full', 'differential', 'immediate')),
    schedule           text,
    status             text NOT NULL DEFAULT 'active'
        CHECK (status IN ('active', 'suspended', 'error')),
    needs_full         boolean NOT NULL DEFAULT false,
    consecutive_errors integer NOT NULL DEFAULT 0,
    last_error         text,
    next_retry_at      timestamptz,   -- scheduler backoff after a failed refresh
    created_at         timestamptz NOT NULL DEFAULT now(),
    last_refresh_at    timestamptz,
    row_count          bigint,   -- rows after the last refresh (kept by pg_trickle)
    -- Change capture: whether it reads its sources' change buffers, and the
    -- frontier up to which it has applied them (see src/cdc/frontier.rs).
    consumes_changes   boolean NOT NULL DEFAULT false,
    frontier           pg_snapshot,
    frontier_xid       xid8,
    frontier_cid       bigint,
    -- How the stream table is maintained (the analysis of its query) when
    -- its key index, running totals and buffer columns were set up; a
    -- different analysis at a refresh sets them up again.
    plan_signature     text
);

-- The relations each stream table reads: directly, or through a view (via_relid).
CREATE TABLE pgtrickle.pgt_sources (
    relid          oid NOT NULL REFERENCES pgtrickle.pgt_stream_tables ON DELETE CASCADE,
    source_relid   oid NOT NULL,
    source_relkind text NOT NULL,
    via_relid      oid,
    PRIMARY KEY (relid, source_relid)
);
CREATE INDEX ON pgtrickle.pgt_sources (source_relid);

-- One row per refresh.
CREATE TABLE pgtrickle.pgt_refresh_history (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    relid        oid NOT NULL REFERENCES pgtrickle.pgt_stream_tables ON DELETE CASCADE,
    mode         text NOT NULL,
    trigger      text NOT NULL,
    started_at   timestamptz NOT NULL,
    finished_at  timestamptz,
    rows_applied bigint,
    changes_consumed bigint,
    outcome      text NOT NULL DEFAULT 'running'
        CHECK (outcome IN ('running', 'ok', 'error')),
    message      text,
    -- A differential refresh that recomputed rows by key: how many keys
    -- (those reached through joins included), the measure its cost is
    -- predicted by (refresh::adaptive).
    keys_affected bigint
);
CREATE INDEX ON pgtrickle.pgt_refresh_history (relid, id);

-- Change buffers: one per captured source, in schema pgtrickle_changes.
CREATE SCHEMA pgtrickle_changes;
REVOKE ALL ON SCHEMA pgtrickle_changes FROM PUBLIC;
-- Running totals of algebraic aggregates (src/dvm/algebraic.rs): each
-- table is owned by its stream table's owner, with no rights for others.
CREATE SCHEMA pgtrickle_state;
GRANT USAGE ON SCHEMA pgtrickle_state TO PUBLIC;
CREATE TABLE pgtrickle.pgt_change_buffers (
    source_relid oid PRIMARY KEY,
    buffer_relid oid NOT NULL,
    columns      smallint[] NOT NULL,   -- source attnums captured, as c<attnum>
    created_at   timestamptz NOT NULL DEFAULT now()
);

REVOKE ALL ON pgtrickle.pgt_stream_tables, pgtrickle.pgt_sources, pgtrickle.pgt_refresh_history,
              pgtrickle.pgt_change_buffers FROM PUBLIC;
GRANT SELECT ON pgtrickle.pgt_sources, pgtrickle.pgt_change_buffers TO PUBLIC;
-- Error messages may show data: last_error and the history's message are
-- left out, and the views show them to those who may read the stream table.
GRANT SELECT (id, relid, mode, trigger, started_at, finished_at, rows_applied, changes_consumed, outcome, keys_affected)
   ON pgtrickle.pgt_refresh_history TO PUBLIC;
GRANT SELECT (relid, requested_mode, refresh_mode, schedule, status, needs_full, consecutive_errors,
              next_retry_at, created_at, last_refresh_at, row_count, consumes_changes, frontier,
              frontier_xid, frontier_cid)
   ON pgtrickle.pgt_stream_tables TO PUBLIC;

-- The capture trigger function (native; see src/cdc/capture.rs). It runs as
-- the extension owner with a fixed search_path.
CREATE FUNCTION pgtrickle._capture() RETURNS trigger
LANGUAGE c SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pgt_capture';
REVOKE ALL ON FUNCTION pgtrickle._capture() FROM PUBLIC;
-- Its BEFORE STATEMENT companion: notes the statement as pending in backend
-- memory (src/cdc/statements.rs); runs no SQL, needs no rights.
CREATE FUNCTION pgtrickle._statement_start() RETURNS trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'pgt_statement_start';
REVOKE ALL ON FUNCTION pgtrickle._statement_start() FROM PUBLIC;
-- 1..n, as generate_series(1, n), with the planner told to expect
-- `expected` rows per call (src/cdc/estimate.rs): a refresh reads a change
-- buffer's statement rows through it, knowing how many rows they hold.
CREATE FUNCTION pgtrickle._rows_estimate(internal) RETURNS internal
LANGUAGE c STRICT AS 'MODULE_PATHNAME', 'pgt_rows_estimate';
CREATE FUNCTION pgtrickle._change_rows(n bigint, expected bigint) RETURNS SETOF bigint
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE SUPPORT pgtrickle._rows_estimate
AS 'MODULE_PATHNAME', 'pgt_change_rows';
-- n = 1, with the planner told that `share` of the rows pass: a refresh
-- reads the statement rows of one changed row apart, knowing their share.
CREATE FUNCTION pgtrickle._one_change(n integer, share double precision) RETURNS boolean
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE SUPPORT pgtrickle._rows_estimate
AS 'MODULE_PATHNAME', 'pgt_one_change';

-- Has frontier (snapshot, xid, cid) applied a change row (xid, cid)? Rows of
-- the refreshing transaction itself (frontier_xid) are applied when written
-- before the refresh (cid < frontier_cid); others when their transaction had
-- committed when the snapshot was taken.
CREATE FUNCTION pgtrickle._applied(xid xid8, cid bigint, frontier pg_snapshot, frontier_xid xid8, frontier_cid bigint)
RETURNS boolean LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN xid OPERATOR(pg_catalog.=) frontier_xid THEN cid OPERATOR(pg_catalog.<) frontier_cid
                ELSE pg_catalog.pg_visible_in_snapshot(xid, frontier) END
$$;
GRANT USAGE ON SCHEMA pgtrickle TO PUBLIC;

-- The user-facing view of stream tables.
CREATE VIEW pgtrickle.stream_tables AS
SELECT n.nspname                              AS schema,
       c.relname                              AS name,
       st.relid::regclass                     AS relation,
       pg_catalog.pg_get_viewdef(st.relid)    AS query,
       st.requested_mode,
       st.refresh_mode,
       st.schedule,
       c.relispopulated                       AS populated,
       st.last_refresh_at                     AS last_refresh,
       st.status
  FROM pgtrickle.pgt_stream_tables st
  JOIN pg_catalog.pg_class c ON c.oid = st.relid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace;
GRANT SELECT ON pgtrickle.stream_tables TO PUBLIC;

-- Forget stream tables that are dropped, however they are dropped
-- (DROP MATERIALIZED VIEW, DROP SCHEMA ... CASCADE, DROP OWNED, DROP TABLE of
-- a source ... CASCADE).
CREATE FUNCTION pgtrickle._on_sql_drop() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    DELETE FROM pgtrickle.pgt_stream_tables st
     USING pg_catalog.pg_event_trigger_dropped_objects() d
     WHERE d.classid = 'pg_catalog.pg_class'::regclass
       AND d.objsubid = 0
       AND st.relid = d.objid;
    IF FOUND OR EXISTS (SELECT 1 FROM pgtrickle.pgt_change_buffers b
                         WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = b.source_relid)) THEN
        PERFORM pgtrickle._cleanup_change_capture();
    END IF;
END
$$;
REVOKE ALL ON FUNCTION pgtrickle._on_sql_drop() FROM PUBLIC;
CREATE EVENT TRIGGER pgtrickle_sql_drop ON sql_drop EXECUTE FUNCTION pgtrickle._on_sql_drop();
