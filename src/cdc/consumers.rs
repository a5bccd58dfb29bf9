//! Attaching stream tables to the change capture of their sources, and
//! detaching them.
//!
//! Attaching creates what is missing (buffer, trigger set) for each source;
//! creating the triggers takes ShareRowExclusiveLock on the source, so no
//! writer is in flight when the caller then takes the snapshot of the first
//! (FULL) refresh: every change is either in that refresh or captured after
//! it. Detaching removes triggers and buffer from sources no stream table
//! consumes any more, and trims the others.

use pgrx::pg_sys;
use pgrx::prelude::*;

use super::{buffer, triggers};
use crate::catalog::options::{RefreshMode, StreamSettings};
use crate::catalog::stream_tables::Source;
use crate::error::{PgtError, PgtResult};

/// Sources whose changes a stream table can receive: tables (by triggers),
/// differential stream tables (by their own refreshes), IMMEDIATE stream
/// tables (by their maintenance: handed to IMMEDIATE readers, written to
/// their change buffer for the others).
fn capturable(source: &Source) -> bool {
    matches!(source.relkind.as_str(), "r" | "p")
        || source.differential_stream_table
        || source.immediate_stream_table
}

/// Does a stream table with these settings and sources consume changes?
/// Views are transparent (their base tables are sources too).
pub fn consumes(settings: &StreamSettings, sources: &[Source]) -> bool {
    settings.refresh_mode != RefreshMode::Full
        && sources.iter().any(capturable)
        && sources.iter().all(|s| s.relkind == "v" || capturable(s))
}

/// Are the sources tables only, and at least one (views are transparent:
/// their tables are sources too)? Neither system catalogs, which cannot
/// have triggers, nor stream tables, foreign tables or anything else.
pub fn tables_only(sources: &[Source]) -> bool {
    let table = |s: &Source| {
        matches!(s.relkind.as_str(), "r" | "p") && s.relid.to_u32() >= pg_sys::FirstNormalObjectId
    };
    sources.iter().any(table) && sources.iter().all(|s| s.relkind == "v" || table(s))
}

/// The sources of `relid` whose changes it consumes through a change
/// buffer: tables, differential stream tables, and (unless it is IMMEDIATE
/// itself) IMMEDIATE stream tables.
pub fn captured_sources(relid: pg_sys::Oid) -> PgtResult<Vec<pg_sys::Oid>> {
    crate::catalog::sys::column_values::<pg_sys::Oid>(
        "SELECT s.source_relid FROM pgtrickle.pgt_sources s \
              WHERE s.relid OPERATOR(pg_catalog.=) $1 \
                AND (s.source_relkind IN ('r', 'p') \
                     OR (s.source_relkind OPERATOR(pg_catalog.=) 'm' AND EXISTS ( \
                         SELECT 1 FROM pgtrickle.pgt_stream_tables u \
                          WHERE u.relid OPERATOR(pg_catalog.=) s.source_relid \
                            AND (u.refresh_mode OPERATOR(pg_catalog.=) 'differential' \
                                 OR (u.refresh_mode OPERATOR(pg_catalog.=) 'immediate' AND NOT EXISTS ( \
                                     SELECT 1 FROM pgtrickle.pgt_stream_tables r \
                                      WHERE r.relid OPERATOR(pg_catalog.=) $1 \
                                        AND r.refresh_mode OPERATOR(pg_catalog.=) 'immediate')))))) \
              ORDER BY 1",
        &[relid.into()],
    )
}

/// Make sure every captured source of `relid` has its buffer (capturing the
/// columns `relid` needs: its row identity) and triggers.
pub fn attach(relid: pg_sys::Oid) -> PgtResult<()> {
    let mode = crate::catalog::sys::kept_one::<String>(
        "SELECT refresh_mode FROM pgtrickle.pgt_stream_tables WHERE relid OPERATOR(pg_catalog.=) $1",
        &[relid.into()],
    )?
    .unwrap_or_default();
    // A FULL stream table only needs to know whether a source changed: its
    // buffers need no column (no plan).
    let plan = match mode.as_str() {
        "full" => None,
        _ => match crate::dvm::analysis::analyze(relid)? {
            Ok(plan) => Some(plan),
            // (IMMEDIATE over inner stream tables: they read the changes.)
            Err(_) if mode == "immediate" && crate::dvm::nested::over_inners(relid)? => None,
            Err(why) => return Err(PgtError::Internal(why.0)),
        },
    };
    let immediate = mode == "immediate";
    // IMMEDIATE running totals over a join (and multisets over several
    // tables) must know when one statement writes several of its sources
    // (cdc::statements). So must IMMEDIATE rows keyed by their tables'
    // primary keys, whose INSERTs are applied from the new rows alone when
    // no other statement overlaps (dvm::inserted).
    // So must one kept over inner stream tables (plan None): its inner ones
    // read the change buffers of every table the statement wrote. And any
    // kept from running totals, whose state table, when it has to be
    // created by a writing statement, is filled once the statement's last
    // capture has run (refresh::immediate::prepared). And a multiset of
    // one table's changed rows, applied in the order its statements were
    // made (cdc::statements::may_apply_nested).
    let tracks_statements = immediate
        && plan.as_ref().is_none_or(|plan| {
            plan.algebraic.is_some()
                || plan.multiset.is_some()
                || (plan.rows.is_some() && plan.shape == crate::dvm::analysis::Shape::Keyless)
                || crate::dvm::inserted::eligible(plan).is_some()
        });
    // IMMEDIATE stream tables an IMMEDIATE one reads hand it their changes
    // (not through a buffer, so not among the captured sources below):
    // wait for their maintainers in flight, and make every backend read
    // their readers again.
    let immediate_sources: Vec<pg_sys::Oid> = if immediate {
        crate::catalog::sys::column_values(
            "SELECT s.source_relid FROM pgtrickle.pgt_sources s \
               JOIN pgtrickle.pgt_stream_tables u ON u.relid OPERATOR(pg_catalog.=) s.source_relid \
              WHERE s.relid OPERATOR(pg_catalog.=) $1 AND u.refresh_mode OPERATOR(pg_catalog.=) 'immediate' \
              ORDER BY 1",
            &[relid.into()],
        )?
    } else {
        Vec::new()
    };
    for source in immediate_sources {
        crate::catalog::sys::lock_relation(source, pg_sys::ShareRowExclusiveLock);
        crate::catalog::sys::invalidate_relcache(source);
    }
    for source in captured_sources(relid)? {
        let needed = plan.as_ref().map(|plan| plan.captured_columns(source)).unwrap_or_default();
        // Lock first: no writer in flight from here on (for a stream table,
        // no refresh of it), and a concurrent attach or detach of the same
        // source waits for us.
        crate::catalog::sys::lock_relation(source, pg_sys::ShareRowExclusiveLock);
        // Writers cache the list of consumers per source (cdc::capture):
        // make every backend, this one included, read it again.
        crate::catalog::sys::invalidate_relcache(source);
        buffer::ensure(source, &needed)?;
        // A stream table's changes are written by its refreshes, not by
        // triggers (a materialized view cannot have any).
        if !is_matview(source)? {
            triggers::create(source)?;
            if tracks_statements {
                triggers::ensure_statement_start(source)?;
            }
        }
    }
    Ok(())
}

fn is_matview(relid: pg_sys::Oid) -> PgtResult<bool> {
    Ok(crate::catalog::sys::kept_one::<bool>(
        "SELECT (SELECT relkind OPERATOR(pg_catalog.=) 'm' FROM pg_catalog.pg_class WHERE oid OPERATOR(pg_catalog.=) $1)",
        &[relid.into()],
    )?
    .unwrap_or(false))
}

/// Remove capture from sources nobody consumes any more; trim the rest.
/// Call after the catalog no longer lists the departed consumers.
pub fn cleanup() -> PgtResult<()> {
    // (Inner stream tables of departed stream tables consume changes too.)
    crate::dvm::nested::drop_orphans()?;
    let orphans: Vec<(pg_sys::Oid, bool)> = Spi::connect(|c| {
        c.select(
            "SELECT b.source_relid, EXISTS (SELECT 1 FROM pg_catalog.pg_class c \
                                              WHERE c.oid OPERATOR(pg_catalog.=) b.source_relid) \
               FROM pgtrickle.pgt_change_buffers b \
              WHERE NOT EXISTS ( \
                    SELECT 1 FROM pgtrickle.pgt_sources s \
                      JOIN pgtrickle.pgt_stream_tables st ON st.relid OPERATOR(pg_catalog.=) s.relid \
                     WHERE s.source_relid OPERATOR(pg_catalog.=) b.source_relid AND st.consumes_changes)",
            None,
            &[],
        )?
        .map(|row| {
            Ok((
                row.get::<pg_sys::Oid>(1)?.unwrap_or(pg_sys::InvalidOid),
                row.get::<bool>(2)?.unwrap_or(false),
            ))
        })
        .collect::<Result<Vec<_>, pgrx::spi::Error>>()
        .map_err(PgtError::from)
    })?;
    for (source, exists) in orphans {
        if exists {
            crate::catalog::sys::lock_relation(source, pg_sys::ShareRowExclusiveLock);
            triggers::drop(source)?;
        }
        buffer::drop(source)?;
    }
    let remaining: Vec<pg_sys::Oid> =
        crate::catalog::sys::column_values("SELECT source_relid FROM pgtrickle.pgt_change_buffers", &[])?;
    for source in remaining {
        buffer::trim(source, None)?;
    }
    crate::dvm::algebraic::drop_orphans()?;
    Ok(())
}
