//! Typed access to `pgtrickle.pgt_stream_tables`, `pgt_sources` and
//! `pgt_refresh_history`.
//!
//! Reads run as the current user (the tables are readable by everyone);
//! writes are wrapped by callers in [`super::sys::as_extension_owner`].

use pgrx::pg_sys;
use pgrx::prelude::*;

use super::options::{RefreshMode, StreamSettings};
use crate::cdc::frontier::Frontier;
use crate::error::{PgtError, PgtResult};

/// One row of `pgtrickle.pgt_stream_tables`.
#[derive(Clone, Debug)]
pub struct StreamTable {
    pub relid: pg_sys::Oid,
    pub settings: StreamSettings,
    /// The mode refreshes actually use (`auto` resolved).
    pub effective_mode: RefreshMode,
    pub status: String,
    /// Whether it consumes its sources' change buffers.
    pub consumes_changes: bool,
    /// Whether the next refresh must recompute (TRUNCATE, new consumer, ...).
    pub needs_full: bool,
    /// What it has applied so far (consumers only; `None` before the first
    /// refresh that established one).
    pub frontier: Option<Frontier>,
    /// Rows after the last refresh, if known.
    pub row_count: Option<i64>,
}

/// A relation the stream table's query reads (directly or through views).
#[derive(Clone, Debug)]
pub struct Source {
    pub relid: pg_sys::Oid,
    pub relkind: String,
    /// The view through which it is read, if not directly.
    pub via: Option<pg_sys::Oid>,
    /// It is a stream table refreshed differentially (whose refreshes
    /// capture their changes for the stream tables reading it).
    pub differential_stream_table: bool,
    /// It is an IMMEDIATE stream table (whose maintenance hands its changes
    /// to the IMMEDIATE stream tables reading it).
    pub immediate_stream_table: bool,
}

pub fn exists(relid: pg_sys::Oid) -> PgtResult<bool> {
    Ok(crate::catalog::sys::kept_one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pgtrickle.pgt_stream_tables WHERE relid OPERATOR(pg_catalog.=) $1)",
        &[relid.into()],
    )?
    .unwrap_or(false))
}

pub fn get(relid: pg_sys::Oid) -> PgtResult<Option<StreamTable>> {
    crate::catalog::sys::kept(
        "SELECT requested_mode, refresh_mode, schedule, status, consumes_changes, needs_full, \
                frontier::text, frontier_xid::text, frontier_cid, row_count \
         FROM pgtrickle.pgt_stream_tables WHERE relid OPERATOR(pg_catalog.=) $1",
        &[relid.into()],
        |rows| {
            let Some(row) = rows.into_iter().next() else {
                return Ok(None);
            };
            let requested: String = row.get(1)?.unwrap_or_default();
            let effective: String = row.get(2)?.unwrap_or_default();
            Ok(Some(StreamTable {
                relid,
                settings: StreamSettings {
                    refresh_mode: RefreshMode::parse(&requested)?,
                    schedule: row.get(3)?,
                },
                effective_mode: RefreshMode::parse(&effective)?,
                status: row.get(4)?.unwrap_or_default(),
                consumes_changes: row.get(5)?.unwrap_or(false),
                needs_full: row.get(6)?.unwrap_or(false),
                frontier: match row.get::<String>(7)? {
                    Some(snapshot) => {
                        Some(Frontier { snapshot, xid: row.get(8)?, cid: row.get(9)?.unwrap_or(0) })
                    }
                    None => None,
                },
                row_count: row.get(10)?,
            }))
        },
    )
}

pub fn insert(
    relid: pg_sys::Oid,
    settings: &StreamSettings,
    effective: RefreshMode,
    consumes_changes: bool,
    sources: &[Source],
) -> PgtResult<()> {
    crate::catalog::sys::kept_run(
        "INSERT INTO pgtrickle.pgt_stream_tables \
             (relid, requested_mode, refresh_mode, schedule, consumes_changes, needs_full) \
         VALUES ($1, $2, $3, $4, $5, $5)",
        &[
            relid.into(),
            settings.refresh_mode.as_str().into(),
            effective.as_str().into(),
            settings.schedule.clone().into(),
            consumes_changes.into(),
        ],
    )?;
    for s in sources {
        crate::catalog::sys::kept_run(
            "INSERT INTO pgtrickle.pgt_sources (relid, source_relid, source_relkind, via_relid) \
             VALUES ($1, $2, $3, $4)",
            &[relid.into(), s.relid.into(), s.relkind.clone().into(), s.via.into()],
        )?;
    }
    Ok(())
}

/// Store new settings. A stream table that starts consuming changes gets
/// no frontier and needs a FULL refresh to establish one; one that stops
/// consuming, consumes them for another mode than before, or becomes
/// IMMEDIATE (always current), forgets its frontier (a FULL refresh
/// establishes a new one).
pub fn update_settings(
    relid: pg_sys::Oid,
    settings: &StreamSettings,
    effective: RefreshMode,
    consumes_changes: bool,
) -> PgtResult<()> {
    crate::catalog::sys::kept_run(
        "UPDATE pgtrickle.pgt_stream_tables \
            SET requested_mode = $2, refresh_mode = $3, schedule = $4, \
                needs_full = needs_full OR ($5 AND NOT consumes_changes), \
                frontier = CASE WHEN $5 AND consumes_changes AND refresh_mode = $3 AND $3 <> 'immediate' THEN frontier END, \
                frontier_xid = CASE WHEN $5 AND consumes_changes AND refresh_mode = $3 AND $3 <> 'immediate' THEN frontier_xid END, \
                frontier_cid = CASE WHEN $5 AND consumes_changes AND refresh_mode = $3 AND $3 <> 'immediate' THEN frontier_cid END, \
                consumes_changes = $5 \
          WHERE relid OPERATOR(pg_catalog.=) $1",
        &[
            relid.into(),
            settings.refresh_mode.as_str().into(),
            effective.as_str().into(),
            settings.schedule.clone().into(),
            consumes_changes.into(),
        ],
    )?;
    Ok(())
}

/// After REFRESH … WITH NO DATA: no frontier, no rows, FULL next time.
pub fn forget_contents(relid: pg_sys::Oid) -> PgtResult<()> {
    crate::catalog::sys::kept_run(
        "UPDATE pgtrickle.pgt_stream_tables \
            SET needs_full = true, frontier = NULL, frontier_xid = NULL, frontier_cid = NULL, \
                row_count = NULL \
          WHERE relid OPERATOR(pg_catalog.=) $1",
        &[relid.into()],
    )?;
    Ok(())
}

pub fn delete(relid: pg_sys::Oid) -> PgtResult<()> {
    crate::catalog::sys::kept_run(
        "DELETE FROM pgtrickle.pgt_stream_tables WHERE relid OPERATOR(pg_catalog.=) $1",
        &[relid.into()],
    )?;
    Ok(())
}

/// The relations a materialized view's stored query reads, found through the
/// dependencies PostgreSQL recorded for its `_RETURN` rule (every relation in
/// the range table, sublinks and CTEs), and through views recursively.
pub fn sources_of(relid: pg_sys::Oid) -> PgtResult<Vec<Source>> {
    Spi::connect(|client| {
        let rows = client.select(
            "WITH RECURSIVE deps(relid, via, depth) AS ( \
                 SELECT d.refobjid, NULL::oid, 0 \
                   FROM pg_catalog.pg_rewrite r \
                   JOIN pg_catalog.pg_depend d \
                     ON d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.objid = r.oid \
                    AND d.refclassid = 'pg_catalog.pg_class'::regclass \
                  WHERE r.ev_class = $1 AND d.refobjid <> $1 \
               UNION \
                 SELECT d.refobjid, deps.relid, deps.depth + 1 \
                   FROM deps \
                   JOIN pg_catalog.pg_class c ON c.oid = deps.relid AND c.relkind = 'v' \
                   JOIN pg_catalog.pg_rewrite r ON r.ev_class = c.oid \
                   JOIN pg_catalog.pg_depend d \
                     ON d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.objid = r.oid \
                    AND d.refclassid = 'pg_catalog.pg_class'::regclass \
                  WHERE d.refobjid <> c.oid AND deps.depth < 64 \
             ) \
             SELECT DISTINCT ON (deps.relid) deps.relid, c.relkind::text, deps.via, \
                    EXISTS (SELECT 1 FROM pgtrickle.pgt_stream_tables u \
                             WHERE u.relid = deps.relid AND u.refresh_mode = 'differential'), \
                    EXISTS (SELECT 1 FROM pgtrickle.pgt_stream_tables u \
                             WHERE u.relid = deps.relid AND u.refresh_mode = 'immediate') \
               FROM deps JOIN pg_catalog.pg_class c ON c.oid = deps.relid \
              ORDER BY deps.relid, deps.depth",
            None,
            &[relid.into()],
        )?;
        let mut out = Vec::new();
        for row in rows {
            out.push(Source {
                relid: row.get(1)?.ok_or_else(|| PgtError::Internal("source without oid".into()))?,
                relkind: row.get(2)?.unwrap_or_default(),
                via: row.get(3)?,
                differential_stream_table: row.get(4)?.unwrap_or(false),
                immediate_stream_table: row.get(5)?.unwrap_or(false),
            });
        }
        Ok(out)
    })
}

/// What the last refreshes of a stream table cost (see
/// refresh::adaptive).
pub struct RefreshCosts {
    /// The last full refresh's time.
    pub full_ms: f64,
    /// The last differential refresh that consumed changes: its time, its
    /// changes, its affected keys (when it recomputed rows by key).
    pub diff_ms: f64,
    pub diff_changes: i64,
    pub diff_keys: Option<i64>,
    /// Full refreshes since that differential one.
    pub fulls_since: i64,
}

/// The cost of the stream table's last successful refreshes (see
/// [`RefreshCosts`]); None until it has a full one and a differential one
/// with changes.
pub fn refresh_costs(relid: pg_sys::Oid) -> PgtResult<Option<RefreshCosts>> {
    crate::catalog::sys::kept(
        "SELECT f.ms, d.ms, d.changes, \
                (SELECT pg_catalog.count(*) FROM pgtrickle.pgt_refresh_history x \
                  WHERE x.relid OPERATOR(pg_catalog.=) $1 AND x.mode OPERATOR(pg_catalog.=) 'full' \
                    AND x.id OPERATOR(pg_catalog.>) d.id), d.keys \
           FROM (SELECT pg_catalog.date_part('epoch', h.finished_at OPERATOR(pg_catalog.-) h.started_at) \
                        OPERATOR(pg_catalog.*) 1000 AS ms \
                   FROM pgtrickle.pgt_refresh_history h \
                  WHERE h.relid OPERATOR(pg_catalog.=) $1 AND h.mode OPERATOR(pg_catalog.=) 'full' \
                    AND h.outcome OPERATOR(pg_catalog.=) 'ok' ORDER BY h.id DESC LIMIT 1) f, \
                (SELECT pg_catalog.date_part('epoch', h.finished_at OPERATOR(pg_catalog.-) h.started_at) \
                        OPERATOR(pg_catalog.*) 1000 AS ms, h.changes_consumed AS changes, h.id, \
                        h.keys_affected AS keys \
                   FROM pgtrickle.pgt_refresh_history h \
                  WHERE h.relid OPERATOR(pg_catalog.=) $1 AND h.mode OPERATOR(pg_catalog.=) 'differential' \
                    AND h.outcome OPERATOR(pg_catalog.=) 'ok' AND h.changes_consumed OPERATOR(pg_catalog.>) 0 \
                  ORDER BY h.id DESC LIMIT 1) d",
        &[relid.into()],
        |rows| {
            // (No row until it has both kinds of refresh.)
            if rows.is_empty() {
                return Ok(None);
            }
            let row = rows.first();
            Ok(match (row.get::<f64>(1)?, row.get::<f64>(2)?, row.get::<i64>(3)?, row.get::<i64>(4)?) {
                (Some(full_ms), Some(diff_ms), Some(diff_changes), Some(fulls_since)) => Some(RefreshCosts {
                    full_ms,
                    diff_ms,
                    diff_changes,
                    diff_keys: row.get::<i64>(5)?,
                    fulls_since,
                }),
                _ => None,
            })
        },
    )
}

/// Start a refresh history entry; returns its id.
pub fn history_start(relid: pg_sys::Oid, mode: RefreshMode, trigger: &str) -> PgtResult<i64> {
    crate::catalog::sys::kept_one::<i64>(
        "INSERT INTO pgtrickle.pgt_refresh_history (relid, mode, trigger, started_at) \
         VALUES ($1, $2, $3, pg_catalog.clock_timestamp()) RETURNING id",
        &[relid.into(), mode.as_str().into(), trigger.into()],
    )?
    .ok_or_else(|| PgtError::Internal("refresh history insert returned no id".into()))
}

/// What a finished refresh leaves behind.
pub struct RefreshResult {
    /// The mode actually used (a DIFFERENTIAL stream table may refresh in FULL).
    pub mode: RefreshMode,
    /// Rows written: the new contents for FULL, deleted + inserted for DIFFERENTIAL.
    pub rows: i64,
    pub changes_consumed: i64,
    /// A differential refresh that recomputed rows by key: how many keys.
    pub keys_affected: Option<i64>,
    pub frontier: Option<Frontier>,
    /// Why a DIFFERENTIAL stream table was refreshed in FULL, if it was.
    pub message: Option<String>,
    /// Rows in the stream table afterwards, if known.
    pub row_count: Option<i64>,
}

/// Keep the newest `pg_trickle.history_limit` history rows of a stream
/// table.
fn prune_history(relid: pg_sys::Oid) -> PgtResult<()> {
    let limit = crate::guc::HISTORY_LIMIT.get();
    if limit > 0 {
        crate::catalog::sys::kept_run(
            "DELETE FROM pgtrickle.pgt_refresh_history \
              WHERE relid OPERATOR(pg_catalog.=) $1 AND id OPERATOR(pg_catalog.<) ( \
                    SELECT min(id) FROM (SELECT id FROM pgtrickle.pgt_refresh_history \
                                          WHERE relid OPERATOR(pg_catalog.=) $1 ORDER BY id DESC LIMIT $2) newest)",
            &[relid.into(), i64::from(limit).into()],
        )?;
    }
    Ok(())
}

/// Finish a history entry and stamp the stream table as refreshed.
pub fn history_finish(id: i64, relid: pg_sys::Oid, result: &RefreshResult) -> PgtResult<()> {
    prune_history(relid)?;
    crate::catalog::sys::kept_run(
        "UPDATE pgtrickle.pgt_refresh_history \
            SET finished_at = pg_catalog.clock_timestamp(), rows_applied = $2, \
                changes_consumed = $3, outcome = 'ok', mode = $4, message = $5, keys_affected = $6 \
          WHERE id OPERATOR(pg_catalog.=) $1",
        &[
            id.into(),
            result.rows.into(),
            result.changes_consumed.into(),
            result.mode.as_str().into(),
            result.message.clone().into(),
            result.keys_affected.filter(|_| result.mode == RefreshMode::Differential).into(),
        ],
    )?;
    let f = result.frontier.as_ref();
    crate::catalog::sys::kept_run(
        "UPDATE pgtrickle.pgt_stream_tables \
            SET last_refresh_at = pg_catalog.now(), consecutive_errors = 0, last_error = NULL, \
                next_retry_at = NULL, \
                status = CASE WHEN status OPERATOR(pg_catalog.=) 'error' THEN 'active' ELSE status END, \
                needs_full = false, frontier = $2::pg_catalog.pg_snapshot, \
                frontier_xid = $3::pg_catalog.xid8, frontier_cid = $4, row_count = $5 \
          WHERE relid OPERATOR(pg_catalog.=) $1",
        &[
            relid.into(),
            f.map(|f| f.snapshot.clone()).into(),
            f.and_then(|f| f.xid.clone()).into(),
            f.map(|f| f.cid).into(),
            result.row_count.into(),
        ],
    )?;
    Ok(())
}

/// A scheduled refresh failed (its transaction rolled back): count it,
/// keep the message, set when to retry, suspend if asked, and add an
/// `error` entry to the history.
pub fn record_failure(
    relid: pg_sys::Oid,
    message: &str,
    started_ms: i64,
    retry_in_ms: i64,
    suspend: bool,
) -> PgtResult<()> {
    crate::catalog::sys::kept_run(
        "UPDATE pgtrickle.pgt_stream_tables \
            SET consecutive_errors = consecutive_errors OPERATOR(pg_catalog.+) 1, last_error = $2, \
                next_retry_at = pg_catalog.clock_timestamp() OPERATOR(pg_catalog.+) \
                                pg_catalog.make_interval(secs => $3::float8 / 1000), \
                status = CASE WHEN $4 THEN 'error' ELSE status END \
          WHERE relid OPERATOR(pg_catalog.=) $1",
        &[relid.into(), message.into(), retry_in_ms.into(), suspend.into()],
    )?;
    crate::catalog::sys::kept_run(
        "INSERT INTO pgtrickle.pgt_refresh_history (relid, mode, trigger, started_at, finished_at, outcome, message) \
         SELECT relid, refresh_mode, 'scheduled', pg_catalog.to_timestamp($2::float8 / 1000), \
                pg_catalog.clock_timestamp(), 'error', $3 \
           FROM pgtrickle.pgt_stream_tables WHERE relid OPERATOR(pg_catalog.=) $1",
        &[relid.into(), started_ms.into(), message.into()],
    )?;
    prune_history(relid)?;
    Ok(())
}

/// Set a stream table's status (`active` or `suspended`); resuming clears
/// the error count and backoff.
pub fn set_status(relid: pg_sys::Oid, status: &str) -> PgtResult<()> {
    crate::catalog::sys::kept_run(
        "UPDATE pgtrickle.pgt_stream_tables \
            SET status = $2, \
                consecutive_errors = CASE WHEN $2 OPERATOR(pg_catalog.=) 'active' THEN 0 ELSE consecutive_errors END, \
                next_retry_at = CASE WHEN $2 OPERATOR(pg_catalog.=) 'active' THEN NULL ELSE next_retry_at END \
          WHERE relid OPERATOR(pg_catalog.=) $1",
        &[relid.into(), status.into()],
    )?;
    Ok(())
}
