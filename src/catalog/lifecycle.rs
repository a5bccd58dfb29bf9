//! Registering, altering and unregistering stream tables.
//!
//! The one implementation behind both the DDL hook and the SQL functions.
//! A stream table's settings are written to two places in one transaction:
//! its reloptions (the durable truth, which pg_dump carries) and
//! `pgtrickle.pgt_stream_tables` (runtime state: effective mode, status,
//! refresh times).

use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::{PgLogLevel, PgSqlErrorCode};

use super::options::{
    apply_alter, merge_reloptions, to_reloptions, AlterOutcome, OptionChange, RefreshMode, StreamSettings,
};
use super::{stream_tables, sys};
use crate::error::{PgtError, PgtResult};
use crate::{cdc, dvm};

/// `schema.name`, quoted as needed, for messages and generated SQL.
pub fn relation_name(relid: pg_sys::Oid) -> PgtResult<String> {
    crate::catalog::sys::qualified_name(relid)
        .ok_or_else(|| PgtError::Internal(format!("relation {} does not exist", relid.to_u32())))
}

/// The mode refreshes will use. DIFFERENTIAL when the query can be
/// maintained (an error when it was asked for and cannot); AUTO falls back to
/// FULL and says why when `announce` (the mode was just set).
///
/// `lenient` (CREATE … WITH NO DATA, as pg_restore replays it before it adds
/// the primary keys a query needs): an unmaintainable query is not an error
/// yet; it is refreshed in FULL until a refresh finds it maintainable.
fn effective_mode(
    relid: pg_sys::Oid,
    settings: &StreamSettings,
    announce: bool,
    lenient: bool,
) -> PgtResult<RefreshMode> {
    if settings.refresh_mode == RefreshMode::Full {
        return Ok(RefreshMode::Full);
    }
    let analysis = dvm::analysis::analyze_for(relid, settings.refresh_mode == RefreshMode::Immediate)?;
    if analysis.is_ok() && announce && dvm::analysis::calls_stable_functions(relid)? {
        pgrx::pg_sys::panic::ErrorReport::new(
            PgSqlErrorCode::ERRCODE_WARNING,
            format!("stream table {} calls stable functions", relation_name(relid)?),
            "pg_trickle",
        )
        .set_detail("Functions such as now() can change their result without any change to the tables; incremental maintenance recomputes only rows whose sources changed.")
        .set_hint("Use pgtrickle.refresh_mode = 'full' if the result must follow such functions.")
        .report(PgLogLevel::WARNING);
    }
    match analysis {
        Ok(_) if settings.refresh_mode == RefreshMode::Immediate => Ok(RefreshMode::Immediate),
        Ok(_) => Ok(RefreshMode::Differential),
        Err(why) if settings.refresh_mode == RefreshMode::Differential && !lenient => {
            Err(PgtError::NotIncremental {
                name: relation_name(relid)?,
                how: "differentially",
                reason: why.0,
            })
        }
        // An aggregate of aggregates: its aggregating parts become inner
        // stream tables, refreshed with it by each writing statement, which
        // recomputes its query over them (dvm::nested::over_inners).
        Err(why)
            if settings.refresh_mode == RefreshMode::Immediate && dvm::nested::has_candidates(relid)? =>
        {
            if announce {
                pgrx::pg_sys::panic::ErrorReport::new(
                    PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION,
                    format!(
                        "stream table {} will be recomputed over its inner stream tables by each writing statement",
                        relation_name(relid)?
                    ),
                    "pg_trickle",
                )
                .set_detail(why.sentence())
                .report(PgLogLevel::NOTICE);
            }
            Ok(RefreshMode::Immediate)
        }
        Err(why) if settings.refresh_mode == RefreshMode::Immediate && !lenient => {
            Err(PgtError::NotIncremental { name: relation_name(relid)?, how: "immediately", reason: why.0 })
        }
        Err(why) => {
            if announce {
                report_full(relid, &why, PgLogLevel::NOTICE, "will be")?;
            }
            Ok(RefreshMode::Full)
        }
    }
}

/// "stream table X will be / is now refreshed by full recomputation", with
/// the reason as DETAIL, at `level` (NOTICE or WARNING).
fn report_full(
    relid: pg_sys::Oid,
    why: &dvm::analysis::Unsupported,
    level: PgLogLevel,
    tense: &str,
) -> PgtResult<()> {
    let code = match level {
        PgLogLevel::WARNING => PgSqlErrorCode::ERRCODE_WARNING,
        _ => PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION,
    };
    pgrx::pg_sys::panic::ErrorReport::new(
        code,
        format!("stream table {} {tense} refreshed by full recomputation", relation_name(relid)?),
        "pg_trickle",
    )
    .set_detail(why.sentence())
    .report(level);
    Ok(())
}

/// Modes maintained from captured changes (and keyed by a unique index).
fn is_incremental(mode: RefreshMode) -> bool {
    matches!(mode, RefreshMode::Differential | RefreshMode::Immediate)
}

/// Does a stream table in mode `effective` consume its sources' changes?
/// A DIFFERENTIAL or IMMEDIATE one does when they can all be captured. So
/// does one that `auto` resolved to FULL when its query gives the same rows
/// as long as its tables do not change (it reads only tables, and calls no
/// volatile or stable function): its refresh then does nothing when no
/// source changed since the last one. One asked to be `full` puts nothing
/// on its sources and always recomputes.
fn consumes_changes(
    relid: pg_sys::Oid,
    settings: &StreamSettings,
    effective: RefreshMode,
    sources: &[stream_tables::Source],
) -> PgtResult<bool> {
    Ok(match effective {
        RefreshMode::Differential | RefreshMode::Immediate => cdc::consumers::consumes(settings, sources),
        RefreshMode::Full | RefreshMode::Auto => {
            settings.refresh_mode == RefreshMode::Auto
                && cdc::consumers::tables_only(sources)
                && dvm::analysis::is_deterministic(relid)?
        }
    })
}

/// The name of the index pg_trickle keeps on a differential stream table's key.
fn key_index_name(relid: pg_sys::Oid) -> String {
    format!("__pgt_key_{}", relid.to_u32())
}

/// Create or drop the unique index on the key, so that applying a delta is
/// index lookups. pg_dump writes it out like any index; on restore the
/// stream table has already created its own, so the hook skips the dumped
/// `CREATE INDEX __pgt_key_…` (see hooks/index.rs).
fn sync_key_index(relid: pg_sys::Oid, differential: bool) -> PgtResult<()> {
    let name = key_index_name(relid);
    let schema = crate::catalog::sys::kept_one::<String>(
        "SELECT pg_catalog.quote_ident(n.nspname) FROM pg_catalog.pg_class c \
           JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
          WHERE c.oid OPERATOR(pg_catalog.=) $1",
        &[relid.into()],
    )?
    .unwrap_or_default();
    let existing: Vec<String> = crate::catalog::sys::column_values::<String>(
"SELECT pg_catalog.quote_ident(c.relname) FROM pg_catalog.pg_class c \
               JOIN pg_catalog.pg_index i ON i.indexrelid OPERATOR(pg_catalog.=) c.oid \
              WHERE i.indrelid OPERATOR(pg_catalog.=) $1 \
                AND (c.relname OPERATOR(pg_catalog.=) $2 OR c.relname OPERATOR(pg_catalog.~) ('^' OPERATOR(pg_catalog.||) $2 OPERATOR(pg_catalog.||) '_[0-9]+$'))",
&[relid.into(), name.clone().into()],
)?;
    // (Dropped as the extension's owner: the stream table's owner, whose
    // role this runs in, may not even have USAGE on the stream table's
    // schema; dropping runs no code of the owner's.)
    sys::as_extension_owner(|| {
        for index in &existing {
            Spi::run(&format!("DROP INDEX {schema}.{index}"))?;
        }
        Ok(())
    })?;
    // Running totals for algebraic aggregates (DIFFERENTIAL or IMMEDIATE).
    dvm::algebraic::sync(relid, differential)?;
    if !differential {
        return Ok(());
    }
    let Ok(plan) = dvm::analysis::analyze(relid)? else {
        return Ok(());
    };
    sys::as_extension_owner(|| {
        crate::catalog::sys::kept_run(
            "UPDATE pgtrickle.pgt_stream_tables SET plan_signature = $2 WHERE relid OPERATOR(pg_catalog.=) $1",
            &[relid.into(), plan_signature(&plan).into()],
        )
    })?;
    let columns: Vec<String> =
        dvm::key_recompute::output_columns(relid)?.into_iter().map(|(name, _)| name).collect();
    let names = |keys: &[dvm::analysis::KeyColumn]| -> Vec<String> {
        keys.iter().filter_map(|k| columns.get(k.output_attnum as usize - 1).cloned()).collect()
    };
    let key = names(&plan.key);
    let st = relation_name(relid)?;
    let _internal = crate::hooks::internal();
    // Created as the owner, or as the extension's owner when the owner may
    // not create in the stream table's schema (an inner stream table, in
    // pgtrickle_state: see dvm::nested). The index is on plain columns:
    // only built-in btree operator classes run.
    let may_create = crate::catalog::sys::kept_one::<bool>(
        "SELECT pg_catalog.has_schema_privilege(c.relowner, c.relnamespace, 'CREATE') \
           FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) $1",
        &[relid.into()],
    )?
    .unwrap_or(true);
    let create = |sql: String| -> PgtResult<()> {
        if may_create {
            Spi::run(&sql)?;
        } else {
            sys::as_extension_owner(|| Ok(Spi::run(&sql)?))?;
        }
        Ok(())
    };
    // Each table reference's key columns are looked up on their own (its
    // changes give their affected values): an index for each set that does
    // not lead the unique index. A UNION ALL has no unique key (two
    // branches can produce equal rows): only these indexes.
    let mut indexed: Vec<Vec<String>> = Vec::new();
    if matches!(plan.shape, dvm::analysis::Shape::Keyless | dvm::analysis::Shape::Multiset) {
        // A multiset without a key: rows are looked up by their first
        // columns that btree can index (up to 8; `true` when none can,
        // which still marks the stream table as a multiset).
        let cols = crate::catalog::sys::column_values::<String>(
"SELECT pg_catalog.quote_ident(a.attname) FROM pg_catalog.pg_attribute a \
                  WHERE a.attrelid OPERATOR(pg_catalog.=) $1 AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped \
                    AND EXISTS (SELECT 1 FROM pg_catalog.pg_opclass o \
                                  JOIN pg_catalog.pg_am m ON m.oid OPERATOR(pg_catalog.=) o.opcmethod \
                                 WHERE m.amname OPERATOR(pg_catalog.=) 'btree' AND o.opcdefault \
                                   AND o.opcintype OPERATOR(pg_catalog.=) ANY (ARRAY[a.atttypid, \
                                       (SELECT t.typbasetype FROM pg_catalog.pg_type t WHERE t.oid OPERATOR(pg_catalog.=) a.atttypid)])) \
                  ORDER BY a.attnum LIMIT 8",
&[relid.into()],
)?;
        let list = if cols.is_empty() { "(true)".to_string() } else { cols.join(", ") };
        create(format!("CREATE INDEX {name} ON {st} ({list})"))?;
        return Ok(());
    }
    if !plan.shape.keyed_multiset() {
        // No key (an aggregate without GROUP BY): at most one row.
        let list = if key.is_empty() { "(true)".to_string() } else { key.join(", ") };
        create(format!("CREATE UNIQUE INDEX {name} ON {st} ({list}) NULLS NOT DISTINCT"))?;
        indexed.push(key.clone());
    }
    for group in plan.key_groups() {
        let cols = names(&group);
        if cols.is_empty() || indexed.iter().any(|i| i.starts_with(&cols)) {
            continue;
        }
        let index = if indexed.is_empty() { name.clone() } else { format!("{name}_{}", indexed.len()) };
        create(format!("CREATE INDEX {index} ON {st} ({})", cols.join(", ")))?;
        indexed.push(cols);
    }
    Ok(())
}

/// What the key index, running totals and buffer columns were set up for.
fn plan_signature(plan: &dvm::analysis::Plan) -> String {
    format!("{plan:?}")
}

/// Is `name` the name of a key index pg_trickle creates?
pub fn is_key_index_name(name: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    name.strip_prefix("__pgt_key_").is_some_and(|rest| match rest.split_once('_') {
        Some((oid, n)) => digits(oid) && digits(n),
        None => digits(rest),
    })
}

/// The fillfactor of a stream table whose rows its refreshes update in place
/// (see [`leave_room_for_updates`]).
pub const GROUPS_FILLFACTOR: u32 = 60;

/// A stream table whose rows are groups (`GROUP BY`, `DISTINCT`, aggregates
/// without `GROUP BY`, running totals) has them updated in place by every
/// differential refresh or IMMEDIATE statement that reaches them. Packed
/// full, as a materialized view is, every such update moves its row to
/// another page and adds an index entry for it, and the table grows by the
/// rows moved until VACUUM: so it is given `fillfactor = 60`, unless its
/// owner set one (also when a FULL one becomes incremental: ALTER, or a
/// refresh that finds its query maintainable). Then the new version of a row fits on its page (a HOT
/// update, no index entry), and the next update there prunes the old one.
/// Measured on 1000 groups, 750 of them updated per statement, 12 times:
/// 2.5 ms per statement and 13 pages with it, 4.1 to 6.1 ms and 54 pages
/// (from 7) without.
fn leave_room_for_updates(relid: pg_sys::Oid, effective: RefreshMode) -> PgtResult<()> {
    if !is_incremental(effective) {
        return Ok(());
    }
    let existing = sys::read_reloptions(relid)?;
    if existing.iter().any(|o| o.split('=').next().is_some_and(|k| k.eq_ignore_ascii_case("fillfactor"))) {
        return Ok(());
    }
    let Ok(plan) = dvm::analysis::analyze_for(relid, effective == RefreshMode::Immediate)? else {
        return Ok(());
    };
    let groups = plan.algebraic.is_some()
        || matches!(
            plan.shape,
            dvm::analysis::Shape::Groups
                | dvm::analysis::Shape::Distinct
                | dvm::analysis::Shape::GroupsOverJoin { .. }
                | dvm::analysis::Shape::Scalar
        );
    if !groups {
        return Ok(());
    }
    // (First, where a restore from pg_dump puts it: before the settings.)
    let mut options = vec![format!("fillfactor={GROUPS_FILLFACTOR}")];
    options.extend(existing);
    sys::write_reloptions(relid, &options)?;
    sys::command_counter_increment();
    Ok(())
}

fn write_settings(relid: pg_sys::Oid, settings: &StreamSettings) -> PgtResult<()> {
    let existing = sys::read_reloptions(relid)?;
    sys::write_reloptions(relid, &merge_reloptions(&existing, &to_reloptions(settings)))
}

/// Make an existing materialized view a stream table. A stream table that
/// consumes changes is attached to its sources' capture and marked for a
/// FULL refresh, which establishes its first frontier; the caller runs that
/// refresh when the contents must be current now (CREATE without NO DATA).
pub fn register(relid: pg_sys::Oid, settings: &StreamSettings, lenient: bool) -> PgtResult<()> {
    if !sys::current_user_owns(relid) {
        return Err(PgtError::NotOwner { name: relation_name(relid)? });
    }
    sys::lock_relation(relid, pg_sys::ShareUpdateExclusiveLock);
    if stream_tables::exists(relid)? {
        return Err(PgtError::AlreadyAStreamTable { name: relation_name(relid)? });
    }
    let effective = effective_mode(relid, settings, true, lenient)?;
    write_settings(relid, settings)?;
    sys::link_to_extension(relid, sys::ExtensionLink::Dependency)?;
    let sources = stream_tables::sources_of(relid)?;
    let consumes = consumes_changes(relid, settings, effective, &sources)?;
    crate::worker::settings_changed();
    sys::as_extension_owner(|| stream_tables::insert(relid, settings, effective, consumes, &sources))?;
    if consumes {
        cdc::consumers::attach(relid)?;
    }
    sync_key_index(relid, consumes && is_incremental(effective))?;
    leave_room_for_updates(relid, effective)?;
    if effective == RefreshMode::Immediate {
        // An existing, populated materialized view made IMMEDIATE (CREATE
        // populates afterwards with its first refresh).
        bring_up_to_date(relid)?;
    }
    Ok(())
}

/// Apply `SET`/`RESET` items to a materialized view (stream table or not).
pub fn alter(relid: pg_sys::Oid, changes: &[OptionChange]) -> PgtResult<()> {
    if !sys::current_user_owns(relid) {
        return Err(PgtError::NotOwner { name: relation_name(relid)? });
    }
    // EXCLUSIVE, as a refresh: it waits for the writers maintaining an
    // IMMEDIATE stream table, also those holding only ROW EXCLUSIVE (see
    // refresh::immediate::lock_mode), and they for it.
    sys::lock_relation(relid, pg_sys::ExclusiveLock);
    // The scheduler looks at the new settings as soon as they commit.
    crate::worker::settings_changed();
    // `pgtrickle.status` is runtime state, not a stored setting.
    let (status, changes): (Vec<OptionChange>, Vec<OptionChange>) =
        changes.iter().cloned().partition(|c| c.key() == "status");
    if let Some(change) = status.last() {
        let value = match change {
            OptionChange::Set { value, .. } => value.trim().to_ascii_lowercase(),
            OptionChange::Reset { .. } => "active".into(),
        };
        if value != "active" && value != "suspended" {
            return Err(PgtError::InvalidOptionValue {
                name: "status".into(),
                value,
                hint: "pgtrickle.status is 'active' (scheduled) or 'suspended' (not scheduled).".into(),
            });
        }
        if !stream_tables::exists(relid)? {
            return Err(PgtError::NotAStreamTable { name: relation_name(relid)? });
        }
        sys::as_extension_owner(|| stream_tables::set_status(relid, &value))?;
        if changes.is_empty() {
            return Ok(());
        }
    }
    let changes = &changes[..];
    let current = stream_tables::get(relid)?;
    match apply_alter(current.as_ref().map(|st| &st.settings), changes)? {
        AlterOutcome::Stream(settings) => match current {
            Some(st) => {
                let mode_changed = st.settings.refresh_mode != settings.refresh_mode;
                let effective = effective_mode(relid, &settings, mode_changed, false)?;
                if st.effective_mode == RefreshMode::Immediate && effective != RefreshMode::Immediate {
                    refuse_if_immediate_readers(relid)?;
                }
                write_settings(relid, &settings)?;
                let sources = stream_tables::sources_of(relid)?;
                let consumes = consumes_changes(relid, &settings, effective, &sources)?;
                sys::as_extension_owner(|| {
                    stream_tables::update_settings(relid, &settings, effective, consumes)
                })?;
                dvm::nested::prune(relid, dvm::nested::wanted_for(relid, &settings, effective)?)?;
                let keyed = consumes && is_incremental(effective);
                let was_keyed = st.consumes_changes && is_incremental(st.effective_mode);
                if consumes && (!st.consumes_changes || effective != st.effective_mode) {
                    cdc::consumers::attach(relid)?;
                } else if !consumes && st.consumes_changes {
                    cdc::consumers::cleanup()?;
                }
                if keyed != was_keyed {
                    sync_key_index(relid, keyed)?;
                }
                if !is_incremental(st.effective_mode) {
                    leave_room_for_updates(relid, effective)?;
                }
                if effective != st.effective_mode {
                    // Writers cache each source's consumers and their modes.
                    for source in cdc::consumers::captured_sources(relid)? {
                        sys::invalidate_relcache(source);
                    }
                }
                if effective == RefreshMode::Immediate && st.effective_mode != RefreshMode::Immediate {
                    bring_up_to_date(relid)?;
                }
                Ok(())
            }
            None => register(relid, &settings, false),
        },
        AlterOutcome::Plain => match current {
            Some(_) => {
                refuse_if_immediate_readers(relid)?;
                unregister(relid)
            }
            None => Ok(()),
        },
    }
}

/// An IMMEDIATE stream table read by IMMEDIATE stream tables hands them
/// its changes within each statement: it cannot stop being IMMEDIATE while
/// they read it.
fn refuse_if_immediate_readers(relid: pg_sys::Oid) -> PgtResult<()> {
    let reader = crate::catalog::sys::kept_one::<pg_sys::Oid>(
        "SELECT (SELECT s.relid FROM pgtrickle.pgt_sources s \
                   JOIN pgtrickle.pgt_stream_tables st ON st.relid OPERATOR(pg_catalog.=) s.relid \
                  WHERE s.source_relid OPERATOR(pg_catalog.=) $1 \
                    AND st.refresh_mode OPERATOR(pg_catalog.=) 'immediate' \
                  ORDER BY s.relid LIMIT 1)",
        &[relid.into()],
    )?;
    match reader {
        Some(reader) if reader != relid => {
            Err(PgtError::ImmediateReader { name: relation_name(relid)?, reader: relation_name(reader)? })
        }
        _ => Ok(()),
    }
}

/// A stream table becoming IMMEDIATE: lock its sources (attach waits for
/// writers in flight), then recompute it, if populated, so that from here on
/// every statement on its sources maintains it from exact contents.
fn bring_up_to_date(relid: pg_sys::Oid) -> PgtResult<()> {
    cdc::consumers::attach(relid)?;
    if crate::refresh::immediate::is_populated(relid)? {
        crate::dvm::key_recompute::replace_all_now(relid)?;
    }
    Ok(())
}

/// Before a refresh: does the query still resolve to the same mode? A query
/// can become maintainable (pg_restore adds primary keys after creating the
/// stream tables) or stop being so (a primary key was dropped). Switches
/// capture and the key index accordingly; a stream table that becomes
/// differential needs one FULL refresh, which the caller is about to run.
///
/// Returns the stream table as it now is, and the analysis of its query
/// (`None` when FULL was asked for and no analysis was needed), which the
/// refresh then uses instead of analyzing again.
pub fn reresolve_mode(
    st: stream_tables::StreamTable,
) -> PgtResult<(stream_tables::StreamTable, Option<dvm::analysis::Analysis>)> {
    let relid = st.relid;
    if st.settings.refresh_mode == RefreshMode::Full {
        return Ok((st, None));
    }
    let analysis = dvm::analysis::analyze_for(relid, st.settings.refresh_mode == RefreshMode::Immediate)?;
    let desired = match (&analysis, st.settings.refresh_mode) {
        (Ok(_), RefreshMode::Immediate) => RefreshMode::Immediate,
        (Ok(_), _) => RefreshMode::Differential,
        // (Recomputed over its inner stream tables: dvm::nested::over_inners.)
        (Err(_), RefreshMode::Immediate) if dvm::nested::has_candidates(relid)? => RefreshMode::Immediate,
        (Err(_), _) => RefreshMode::Full,
    };
    // A FULL stream table created before FULL ones consumed changes, or
    // whose query changed what it reads: consume them now, or stop (set up
    // below, as for a change of mode).
    let full_consumes = match (desired, st.effective_mode) {
        (RefreshMode::Full, RefreshMode::Full) => {
            let sources = stream_tables::sources_of(relid)?;
            Some(consumes_changes(relid, &st.settings, desired, &sources)?)
        }
        _ => None,
    };
    if desired == st.effective_mode && full_consumes.is_none_or(|c| c == st.consumes_changes) {
        // Same mode, but maintained differently (a primary key dropped or
        // added, a column's type changed, ...): set up the buffers, the key
        // index and the running totals again, and recompute once, since the
        // buffered changes may lack what the new analysis reads.
        if let (Ok(plan), true) = (&analysis, st.consumes_changes) {
            // (plan_signature is not readable by PUBLIC.)
            let stored = sys::as_extension_owner(|| {
                crate::catalog::sys::kept_one::<String>(
                    "SELECT plan_signature FROM pgtrickle.pgt_stream_tables WHERE relid OPERATOR(pg_catalog.=) $1",
                    &[relid.into()],
                )
            })?;
            if stored.as_deref() != Some(plan_signature(plan).as_str()) {
                cdc::consumers::attach(relid)?;
                dvm::algebraic::sync(relid, false)?; // totals of another shape

                let owner = sys::relation_owner(relid)?;
                sys::as_role(owner, || sync_key_index(relid, true))?;
                sys::as_extension_owner(|| {
                    crate::catalog::sys::kept_run(
                        "UPDATE pgtrickle.pgt_stream_tables SET needs_full = true WHERE relid OPERATOR(pg_catalog.=) $1",
                        &[relid.into()],
                    )
                })?;
                let st = stream_tables::get(relid)?
                    .ok_or_else(|| PgtError::Internal("stream table vanished".into()))?;
                return Ok((st, Some(analysis)));
            }
        }
        return Ok((st, Some(analysis)));
    }
    if let (Err(why), true) = (&analysis, desired != st.effective_mode) {
        report_full(relid, why, PgLogLevel::WARNING, "is now")?;
    }
    let consumes = match full_consumes {
        Some(consumes) => consumes,
        None => consumes_changes(relid, &st.settings, desired, &stream_tables::sources_of(relid)?)?,
    };
    sys::as_extension_owner(|| stream_tables::update_settings(relid, &st.settings, desired, consumes))?;
    if !is_incremental(st.effective_mode) {
        leave_room_for_updates(relid, desired)?;
    }
    dvm::nested::prune(relid, dvm::nested::wanted_for(relid, &st.settings, desired)?)?;
    // A mode in effect that changed may need (or end) scheduling.
    crate::worker::settings_changed();
    if consumes {
        cdc::consumers::attach(relid)?;
    } else {
        cdc::consumers::cleanup()?;
    }
    let owner = sys::relation_owner(relid)?;
    sys::as_role(owner, || sync_key_index(relid, consumes && is_incremental(desired)))?;
    let st = stream_tables::get(relid)?.ok_or_else(|| PgtError::Internal("stream table vanished".into()))?;
    Ok((st, Some(analysis)))
}

/// Turn a stream table back into an ordinary materialized view.
pub fn unregister(relid: pg_sys::Oid) -> PgtResult<()> {
    sync_key_index(relid, false)?;
    let existing = sys::read_reloptions(relid)?;
    sys::write_reloptions(relid, &merge_reloptions(&existing, &[]))?;
    sys::unlink_from_extension(relid, sys::ExtensionLink::Dependency)?;
    sys::as_extension_owner(|| stream_tables::delete(relid))?;
    cdc::consumers::cleanup()
}

#[cfg(test)]
mod tests {
    use super::is_key_index_name;

    #[test]
    fn key_index_names() {
        assert!(is_key_index_name("__pgt_key_16501"));
        assert!(is_key_index_name("__pgt_key_16501_2"));
        for other in
            ["__pgt_key_", "__pgt_key_x", "__pgt_key_1_", "__pgt_key_1_2_3", "__pgt_key_1_a", "pgt_key_1"]
        {
            assert!(!is_key_index_name(other), "{other}");
        }
    }
}
