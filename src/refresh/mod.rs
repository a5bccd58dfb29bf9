//! Refreshing stream tables.
//!
//! `refresh` is the one entry point (DDL hook, SQL function, later the
//! scheduler): it looks up the stream table, records a history entry, runs
//! the refresh for its effective mode, and stamps the result, all inside the
//! caller's transaction, so a failed refresh leaves no trace.

mod bulk;
mod full;
pub mod immediate;
pub mod isolation;
pub mod window;

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::catalog::lifecycle::relation_name;
use crate::catalog::options::RefreshMode;
use crate::catalog::stream_tables::{self, RefreshResult};
use crate::catalog::sys;
use crate::cdc;
use crate::cdc::frontier::RefreshSnapshot;
use crate::error::{PgtError, PgtResult};
use crate::{dvm, guc};

/// Who asked for a refresh (recorded in the history).
#[derive(Clone, Copy, Debug)]
pub enum RefreshTrigger {
    /// REFRESH MATERIALIZED VIEW or refresh_stream_table().
    Manual,
    /// The first population by CREATE MATERIALIZED VIEW.
    Create,
    /// The background scheduler.
    Scheduled,
    /// The refresh of the stream table whose inner stream table this is
    /// (dvm::nested).
    Outer,
}

impl RefreshTrigger {
    fn as_str(self) -> &'static str {
        match self {
            RefreshTrigger::Manual => "manual",
            RefreshTrigger::Create => "create",
            RefreshTrigger::Scheduled => "scheduled",
            RefreshTrigger::Outer => "outer",
        }
    }
}

/// Refresh one stream table; returns the rows it wrote.
///
/// Every statement runs on one snapshot taken at the start. A stream table
/// that consumes changes applies the window between its frontier and that
/// snapshot (DIFFERENTIAL) or recomputes on it (FULL: the first refresh, after
/// TRUNCATE or a crash emptied a buffer, or when the window is too large);
/// either way the snapshot becomes its new frontier and the buffers are
/// trimmed of what every consumer has applied.
pub fn refresh(relid: pg_sys::Oid, trigger: RefreshTrigger) -> PgtResult<i64> {
    refresh_on(relid, trigger, None)
}

/// [`refresh`] on `shared`, the snapshot of a refresh in progress (of the
/// stream table whose inner stream table this is), or on a snapshot of its
/// own.
pub fn refresh_on(
    relid: pg_sys::Oid,
    trigger: RefreshTrigger,
    shared: Option<&RefreshSnapshot>,
) -> PgtResult<i64> {
    // The catalog statements a refresh runs are kept prepared for the
    // backend (sys::kept); the plan cache would plan each of them again for
    // its parameters for their first five executions in every session
    // (0.1 ms each, a few ms per refresh), where their generic plan (index
    // lookups by OID) is right at once. The refresh's own statements carry
    // their values as literals and are planned for them as always.
    let _generic = sys::generic_plans();
    // One refresh of a stream table at a time, taken before its frontier is
    // read: a refresh that read an older frontier must not commit after a
    // newer one (the frontier would go back over trimmed rows). Readers are
    // not blocked.
    if !stream_tables::exists(relid)? {
        return Err(PgtError::NotAStreamTable {
            name: relation_name(relid).unwrap_or_else(|_| relid.to_u32().to_string()),
        });
    }
    if !sys::current_user_can_maintain(relid) {
        return Err(PgtError::NotOwner { name: relation_name(relid)? });
    }
    sys::lock_relation(relid, pg_sys::ExclusiveLock);
    let st = stream_tables::get(relid)?.ok_or_else(|| PgtError::Internal("stream table vanished".into()))?;
    // Its inner stream tables are refreshed on this refresh's snapshot:
    // locked before it is taken, as the stream table is, so that no
    // refresh of theirs that this snapshot does not see commits first.
    if shared.is_none() && dvm::nested::wanted_for(relid, &st.settings, st.effective_mode)? {
        for inner in dvm::nested::inners(relid)? {
            sys::lock_relation(inner.relid, pg_sys::ExclusiveLock);
        }
    }
    let (st, analysis) = crate::catalog::lifecycle::reresolve_mode(st)?;
    let history =
        sys::as_extension_owner(|| stream_tables::history_start(relid, st.effective_mode, trigger.as_str()))?;
    let own;
    let snapshot = match shared {
        Some(snapshot) => snapshot,
        None => {
            own = RefreshSnapshot::take();
            &own
        }
    };
    let frontier = snapshot.frontier()?;
    let sources = if st.consumes_changes { cdc::consumers::captured_sources(relid)? } else { Vec::new() };
    let mut intact = true;
    for &source in &sources {
        intact &= cdc::buffer::check_sentinel(source)?;
    }
    let mut result = RefreshResult {
        mode: RefreshMode::Full,
        rows: 0,
        changes_consumed: 0,
        keys_affected: None,
        // IMMEDIATE stream tables are always current: they keep no frontier
        // (and so hold back no trimming).
        // A FULL one that consumes changes keeps one too: it tells whether
        // a source changed since.
        frontier: (st.consumes_changes && st.effective_mode != RefreshMode::Immediate)
            .then(|| frontier.clone()),
        message: None,
        row_count: None,
    };
    let differential = match (&st.frontier, st.effective_mode) {
        (Some(old), RefreshMode::Differential) if st.consumes_changes => {
            if st.needs_full {
                result.message = Some(
                    "a source was truncated or refreshed in full, or a change buffer lost by crash recovery"
                        .into(),
                );
                None
            } else if !intact {
                result.message = Some("a change buffer was emptied by crash recovery".into());
                None
            } else {
                // Differential as effective mode implies the query was just
                // analyzed (requested mode not FULL) and found maintainable.
                match analysis {
                    // Running totals that are not there (the plan gained
                    // them after the stream table was created, by a newer
                    // version, or their table was dropped): created empty,
                    // filled by this refresh in FULL.
                    // (A state table the totals no longer need, being
                    // the stream table's own columns, is dropped.)
                    Some(Ok(plan))
                        if dvm::algebraic::ensure_state(relid, &plan)?
                            == dvm::algebraic::StateTable::Created =>
                    {
                        result.message = Some("its running totals were missing: created and filled".into());
                        None
                    }
                    Some(Ok(plan)) => Some((plan, old.clone())),
                    Some(Err(why)) => {
                        result.message = Some(why.0);
                        None
                    }
                    None => None,
                }
            }
        }
        (None, RefreshMode::Differential) if st.consumes_changes => {
            result.message =
                Some("no change frontier yet: first refresh, or the stream table was emptied".into());
            None
        }
        _ => None,
    };
    // The window between the frontiers, as a condition on buffer rows. A
    // table read by a subquery not tied to the outer query changed in it:
    // any row may have changed.
    let differential = match differential {
        Some((plan, old)) => {
            let window = cdc::frontier::window_sql_literal(&frontier, Some(&old));
            let mut changed = false;
            for &source in &plan.full_on {
                changed |= cdc::buffer::count_in(source, snapshot, &window)? > 0;
            }
            if changed {
                result.message =
                    Some("a table the query reads whole (not through = conditions from the rows it maintains) changed".into());
                None
            } else {
                Some((plan, window))
            }
        }
        None => None,
    };
    match differential {
        Some((plan, window)) => {
            // The window's change rows (counted, for running totals and
            // changed rows' images) or its affected keys, and its size.
            let (affected, changes, groups) = if plan.rows.is_some() {
                // Changed rows' images (one table): the count is enough.
                let count = dvm::key_recompute::changes_in(&plan, snapshot, &window)?;
                // (Each changed row has one key: its count bounds theirs.)
                (dvm::key_recompute::Affected::counted(count, count), Vec::new(), Vec::new())
            } else if plan.algebraic.is_some() || plan.multiset.is_some() {
                // Running totals, or a multiset over several tables: the
                // change rows are read in place, and their count is
                // enough (no key is recomputed: what they add and remove
                // is computed from them).
                let changes = if plan.multiset.is_some() {
                    dvm::keyless::window_changes(&plan, snapshot, &window)?
                } else {
                    dvm::algebraic::window_changes(&plan, snapshot, &window)?
                };
                let count: i64 = changes.iter().map(|c| c.count).sum();
                (dvm::key_recompute::Affected::counted(count, 0), changes, Vec::new())
            } else {
                let mut affected = dvm::key_recompute::affected_keys(relid, &plan, snapshot, &window)?;
                // Groups reached through a grouped join count towards the
                // size of the window too.
                let groups = if affected.changes > 0 {
                    let owner = sys::relation_owner(relid)?;
                    let run = |sql: &str| sys::as_restricted_role(owner, || snapshot.query_text(sql));
                    // (Groups reached first: an outer join's preserved
                    // rows reached by its nullable tables' changes join
                    // its keys.)
                    let (groups, reached) = sys::as_restricted_role(owner, || {
                        let (groups, reached) = dvm::key_recompute::expand_join_groups(
                            relid,
                            &plan,
                            affected.groups.clone(),
                            &affected.join_values,
                            &run,
                        )?;
                        let groups = dvm::key_recompute::expand_outer_join(relid, &plan, groups, &run)?;
                        Ok::<_, crate::error::PgtError>((groups, reached))
                    })?;
                    affected.keys += reached;
                    groups
                } else {
                    Vec::new()
                };
                // (Rows recomputed by key: their keys measure the work.)
                result.keys_affected = Some(affected.keys);
                (affected, Vec::new(), groups)
            };
            result.changes_consumed = affected.changes;
            snapshot.plan_for_changes(affected.changes);
            // (Over slices, the changes that may touch one, counted only
            // when all of them would be too many.)
            let relevant = || -> PgtResult<Option<i64>> {
                let Some(slices) = plan.slices() else { return Ok(None) };
                let changed = dvm::algebraic::WindowChanges::changed(&changes, &window);
                let Some(sql) = dvm::slices::relevant_changes_sql(slices, &changed)? else { return Ok(None) };
                let owner = sys::relation_owner(relid)?;
                let row = sys::as_restricted_role(owner, || snapshot.query_text(&sql))?;
                Ok(row.first().cloned().flatten().and_then(|n| n.parse::<i64>().ok()))
            };
            match too_large(relid, &plan, &affected, st.row_count, &relevant)? {
                Some(why) => {
                    result.message = Some(why);
                    result.rows = full_refresh(relid, snapshot, &[])?.0;
                    result.row_count = Some(result.rows);
                }
                None => {
                    result.mode = RefreshMode::Differential;
                    let (deleted, inserted) = if affected.changes == 0 {
                        (0, 0)
                    } else if dvm::algebraic::in_place(&plan) {
                        // Running totals in the stream table's own columns:
                        // the touched groups' rows added to in one
                        // statement.
                        dvm::algebraic::apply_in_place(relid, &plan, snapshot, &window, &changes)?
                    } else if plan.algebraic.is_some() && dvm::algebraic::fuses(relid, &plan)? {
                        // Running totals written with the touched groups'
                        // rows in one statement; the rows of groups left
                        // empty deleted after it.
                        let dvm::algebraic::Fused { updated, inserted, emptied } =
                            dvm::algebraic::apply_fused(relid, &plan, snapshot, &window, &changes)?;
                        let mut counts = (updated, updated + inserted);
                        if !emptied.is_empty() {
                            let key_names = dvm::key_recompute::key_names(relid, &plan)?;
                            let recompute = dvm::algebraic::recompute_sql(relid, &plan, &emptied)?;
                            let (deleted, inserted) = dvm::key_recompute::apply(
                                relid,
                                snapshot,
                                &emptied,
                                &key_names,
                                recompute.as_deref(),
                                &[],
                            )?;
                            // (A row of a multi-column key matched with =
                            // may be deleted and inserted again.)
                            counts.0 += deleted;
                            counts.1 += inserted;
                            dvm::algebraic::drop_empty(relid, &plan, &emptied)?;
                        }
                        counts
                    } else if plan.algebraic.is_some() {
                        // Running totals: the change rows added to them,
                        // the groups they touched computed from them.
                        // (Keyed: one group of the touched key values,
                        // perhaps none of them.)
                        let key_names = dvm::key_recompute::key_names(relid, &plan)?;
                        let groups = dvm::algebraic::apply_delta(relid, &plan, snapshot, &window, &changes)?;
                        if !plan.key.is_empty() && groups.is_empty() {
                            return Err(PgtError::Internal("running totals touched no group list".into()));
                        }
                        let recompute = dvm::algebraic::recompute_sql(relid, &plan, &groups)?;
                        let counts = match (&plan.topk, recompute.as_deref()) {
                            // ORDER BY ... LIMIT: the new first rows, as
                            // differences from all the stream table's.
                            (Some(topk), Some(touched)) => {
                                let rows =
                                    dvm::topk::first_rows_sql(relid, &plan, topk, &groups, Some(touched))?;
                                dvm::key_recompute::apply(relid, snapshot, &[], &key_names, Some(&rows), &[])?
                            }
                            _ => dvm::key_recompute::apply(
                                relid,
                                snapshot,
                                &groups,
                                &key_names,
                                recompute.as_deref(),
                                plan.pushed_keys(),
                            )?,
                        };
                        dvm::algebraic::drop_empty(relid, &plan, &groups)?;
                        counts
                    } else if plan.multiset.is_some() {
                        // The rows the changes add and remove, counted
                        // per image.
                        dvm::keyless::apply_multiset_window(relid, &plan, snapshot, &window, &changes)?
                    } else if plan.rows.is_some() {
                        // From the changed rows alone (one table, with or
                        // without a key).
                        dvm::keyless::apply_window(relid, &plan, snapshot, &window)?
                    } else {
                        let key_names = dvm::key_recompute::key_names(relid, &plan)?;
                        let owner = sys::relation_owner(relid)?;
                        if let Some(topk) = &plan.topk {
                            // ORDER BY ... LIMIT: the new first rows, as
                            // differences from all the stream table's.
                            let rows = dvm::topk::first_rows_sql(relid, &plan, topk, &groups, None)?;
                            dvm::key_recompute::apply(relid, snapshot, &[], &key_names, Some(&rows), &[])?
                        } else {
                            // Without GROUP BY: the one row, recomputed.
                            let recompute = if plan.shape == dvm::analysis::Shape::Scalar {
                                Some(sys::as_restricted_role(owner, || {
                                    dvm::key_recompute::whole_query(relid)
                                })?)
                            } else {
                                None
                            };
                            dvm::key_recompute::apply(
                                relid,
                                snapshot,
                                &groups,
                                &key_names,
                                recompute.as_deref(),
                                plan.pushed_keys(),
                            )?
                        }
                    };
                    result.rows = deleted + inserted;
                    result.row_count = st.row_count.map(|n| n - deleted + inserted);
                }
            }
        }
        None => {
            // IMMEDIATE stream tables consume nothing from the buffers.
            let counted = if st.effective_mode != RefreshMode::Immediate { &sources[..] } else { &[] };
            for &source in counted {
                result.changes_consumed +=
                    cdc::buffer::count_window(source, snapshot, &frontier, st.frontier.as_ref())?;
            }
            // A FULL stream table that consumes changes, populated, whose
            // sources have not changed since its frontier: its query gives
            // the rows it holds (see lifecycle::consumes_changes).
            let unchanged = st.effective_mode == RefreshMode::Full
                && st.consumes_changes
                && st.frontier.is_some()
                && !st.needs_full
                && intact
                && result.changes_consumed == 0
                && immediate::is_populated(relid)?;
            if unchanged {
                result.message =
                    Some("no source changed since the last refresh: nothing to recompute".into());
                result.row_count = st.row_count;
            } else {
                // Its inner stream tables, current on the snapshot, which
                // the recomputation reads.
                let inner = dvm::nested::refresh_inners(
                    relid,
                    dvm::nested::wanted_for(relid, &st.settings, st.effective_mode)?,
                    snapshot,
                )?;
                let (rows, over) = full_refresh(relid, snapshot, &inner)?;
                if let Some(over) = over {
                    result.message = Some(match result.message.take() {
                        Some(why) => format!("{why}; {over}"),
                        None => over,
                    });
                }
                result.rows = rows;
                result.row_count = Some(rows);
            }
        }
    }
    sys::as_extension_owner(|| stream_tables::history_finish(history, relid, &result))?;
    // Rows this refresh applied may now be applied everywhere. (A refresh
    // that applied none leaves nothing new to trim: rows applied earlier
    // went when the last consumer to apply them did.)
    if result.changes_consumed > 0 || result.mode == RefreshMode::Full {
        for source in sources {
            cdc::buffer::trim(source, Some(snapshot))?;
        }
    }
    Ok(result.rows)
}

/// A FULL refresh. For a populated DIFFERENTIAL stream table that other
/// stream tables read, the recomputed contents are applied as differences
/// (rows deleted and inserted), which its readers receive as changes;
/// otherwise the contents are replaced (computed over its inner stream
/// tables `inner` when it has some; then the second value says so) and
/// the readers marked for a FULL refresh of their own.
fn full_refresh(
    relid: pg_sys::Oid,
    snapshot: &RefreshSnapshot,
    inner: &[dvm::nested::Inner],
) -> PgtResult<(i64, Option<String>)> {
    let has_readers = cdc::buffer::buffer_relid(relid)?.is_some();
    let st = stream_tables::get(relid)?;
    let differential =
        st.as_ref().is_some_and(|st| st.consumes_changes && st.effective_mode == RefreshMode::Differential);
    let immediate = st.as_ref().is_some_and(|st| st.effective_mode == RefreshMode::Immediate);
    if immediate {
        isolation::maintaining(relid, false)?;
    }
    let keyed = differential || immediate;
    if differential {
        if let Some(rows) = from_totals(relid, snapshot)? {
            return Ok((rows, None));
        }
    }
    if has_readers && differential && immediate::is_populated(relid)? {
        if let Ok(plan) = dvm::analysis::analyze(relid)? {
            let key_names = dvm::key_recompute::key_names(relid, &plan)?;
            let rows = dvm::key_recompute::apply_all(relid, snapshot, &key_names)?;
            dvm::algebraic::rebuild(relid, snapshot)?;
            return Ok((rows, None));
        }
    }
    let (rows, over) = match dvm::nested::recompute(relid, inner, snapshot)? {
        Some(rows) => (rows, Some(dvm::nested::recomputed_message(inner)?)),
        None => (full::refresh(relid, snapshot)?, None),
    };
    dvm::algebraic::rebuild(relid, snapshot)?;
    if keyed {
        // A differential refresh finds its rows through the key index; the
        // planner only picks it for an `= ANY(array)` of many keys when it
        // knows the stream table's size and column statistics. A FULL
        // refresh already costs O(table); ANALYZE samples a fixed number
        // of rows on top.
        let name = relation_name(relid)?;
        sys::as_role(sys::relation_owner(relid)?, || Ok(Spi::run(&format!("ANALYZE {name}"))?))?;
    }
    if has_readers {
        sys::as_extension_owner(|| cdc::buffer::mark_truncated(relid))?;
    }
    // IMMEDIATE readers of an IMMEDIATE stream table follow it at once.
    if immediate {
        immediate::recompute_readers(relid)?;
    }
    Ok((rows, over))
}

/// A FULL refresh of a populated DIFFERENTIAL stream table kept from
/// running totals (not `ORDER BY ... LIMIT`): the totals recomputed from
/// the tables, then its rows from them, applied as differences (what
/// changed is written; readers receive it as changes). One pass over the
/// tables, where recomputing the query and then the totals took two.
/// None when it has no totals; else its row count.
fn from_totals(relid: pg_sys::Oid, snapshot: &RefreshSnapshot) -> PgtResult<Option<i64>> {
    let Ok(plan) = dvm::analysis::analyze(relid)? else { return Ok(None) };
    // The state table the totals need, created (this refresh fills it
    // after recomputing the query) or dropped (they are the stream
    // table's own columns).
    if dvm::algebraic::ensure_state(relid, &plan)? == dvm::algebraic::StateTable::Created {
        return Ok(None);
    }
    let Some(state) = dvm::algebraic::state_relid(relid)? else { return Ok(None) };
    if !immediate::is_populated(relid)? {
        return Ok(None);
    }
    if plan.topk.is_some() {
        return Ok(None);
    }
    let Some(everything) = dvm::algebraic::totals_query(relid, &plan)? else { return Ok(None) };
    dvm::algebraic::rebuild_with(relid, state, &plan, snapshot)?;
    let key_names = dvm::key_recompute::key_names(relid, &plan)?;
    Ok(Some(dvm::key_recompute::apply_all_from(relid, snapshot, &key_names, &everything)?))
}

/// Is recomputing in full cheaper than applying this window? When the
/// changes exceed `pg_trickle.differential_max_change_fraction` of the
/// sources' rows, or the affected keys that fraction of the stream table's
/// rows, a FULL refresh does less work; the reason is returned.
fn too_large(
    relid: pg_sys::Oid,
    plan: &dvm::analysis::Plan,
    affected: &dvm::key_recompute::Affected,
    st_rows: Option<i64>,
    relevant: &dyn Fn() -> PgtResult<Option<i64>>,
) -> PgtResult<Option<String>> {
    let fraction = guc::DIFFERENTIAL_MAX_CHANGE_FRACTION.get();
    let mut rows = 0.0;
    for source in plan.sources() {
        let n = source_rows(source)?;
        // Any unanalyzed source (reltuples < 0) leaves the size unknown.
        rows = if n < 0.0 || rows < 0.0 { -1.0 } else { rows + n };
    }
    if rows >= 0.0 && affected.changes as f64 > fraction * rows.max(1.0) {
        return Ok(Some(format!(
            "{} changes exceed pg_trickle.differential_max_change_fraction of the source",
            affected.changes
        )));
    }
    // Over slices, a change touches at most one slice per chained
    // reference: with more changes than that fraction of the root table's
    // rows, most slices may be touched, and computing their rows now and
    // before costs more than the query (TPC-H Q20: 15,000 changes, 10,000
    // suppliers). Only the changes that may touch a slice count (Q20:
    // about 20 of them).
    let mut adaptive_checked = false;
    if let Some(root) = plan.slices_root() {
        let n = source_rows(root)?;
        let over = |changes: i64| n >= 0.0 && changes as f64 > fraction * n.max(1.0);
        if over(affected.changes) {
            // (Counting them reads every change: not when the times
            // measured already say FULL.)
            if let Some(why) = adaptive(relid, affected)? {
                return Ok(Some(why));
            }
            adaptive_checked = true;
            let changes = relevant()?.unwrap_or(affected.changes);
            if over(changes) {
                let of = if changes == affected.changes {
                    format!("{changes} changes")
                } else {
                    format!("{changes} of the {} changes, those that may touch a slice,", affected.changes)
                };
                return Ok(Some(format!(
                    "{of} exceed pg_trickle.differential_max_change_fraction of the {} rows of {}, by whose slices they are applied",
                    n as i64,
                    crate::catalog::lifecycle::relation_name(root)?
                )));
            }
        }
    }
    // With running totals an affected group costs an index update, not a
    // rescan: only the change count matters.
    // (The stream table of an ORDER BY ... LIMIT holds only its first rows:
    // its size says nothing of the keys'. The largest table keys come from
    // stands in for the query's rows.)
    let (st_rows, of) = match (&plan.topk, st_rows) {
        (Some(_), _) => {
            let mut most = -1.0f64;
            for k in &plan.key {
                most = most.max(source_rows(k.source)?);
            }
            ((most >= 0.0).then_some(most as i64), "the table its keys come from")
        }
        (None, n) => (n, "the stream table"),
    };
    if let (Some(n), None) = (st_rows, &plan.algebraic) {
        if n > 0 && affected.keys as f64 > fraction * n as f64 {
            return Ok(Some(format!(
                "{} affected keys exceed pg_trickle.differential_max_change_fraction of {of}'s {n} rows",
                affected.keys
            )));
        }
    }
    if adaptive_checked {
        return Ok(None);
    }
    adaptive(relid, affected)
}

/// What the last refreshes cost: the last differential one's time,
/// scaled to these changes, against the last full one's time; the reason
/// to refresh in FULL when the prediction is longer.
///
/// Rows recomputed by key are scaled by their changes plus their affected
/// keys when both refreshes counted keys: a refresh reads its changes and
/// recomputes its keys. A change of a table joined by its primary key (a
/// dimension) reaches every row joined to it: after 2 such changes that
/// recomputed 1,000 rows, 1,200 changes of the fact table recomputing
/// 800 are predicted twice as long, not 600 times (by changes alone).
/// And a grouped join whose changes all land in its 175 groups (TPC-H
/// Q9) scales with its changes: by keys alone, 10 times more changes
/// were predicted as fast, and took 13.6 s against a FULL 1.1 s.
///
/// Scaled up to more changes than it applied, by a power above one: past
/// some size the planner's estimates of change rows go wrong and plans
/// with them (TPC-H Q9 at scale factor 1: 350 ms for 20,916 changes,
/// 13.6 s for 210,119; Q4 58 ms, 742 ms), so more is predicted than the
/// rate alone gives. After ADAPTIVE_RETRY_AFTER full refreshes in a row,
/// differential is tried again: the data, its statistics or the change
/// mix may have changed since it was measured.
fn adaptive(relid: pg_sys::Oid, affected: &dvm::key_recompute::Affected) -> PgtResult<Option<String>> {
    if guc::ADAPTIVE_FALLBACK.get() && affected.changes > 0 {
        if let Some(c) = stream_tables::refresh_costs(relid)? {
            let (now, then, what_now, what_then) = match c.diff_keys {
                Some(keys) if keys > 0 && affected.keys > 0 => (
                    affected.changes + affected.keys,
                    c.diff_changes + keys,
                    format!("{} changes and {} affected keys", affected.changes, affected.keys),
                    format!("{} changes and {keys} affected keys", c.diff_changes),
                ),
                _ => (
                    affected.changes,
                    c.diff_changes,
                    format!("{} changes", affected.changes),
                    format!("{} changes", c.diff_changes),
                ),
            };
            let scale = now as f64 / then.max(1) as f64;
            let predicted = c.diff_ms * if scale > 1.0 { scale.powf(ADAPTIVE_GROWTH) } else { scale };
            if c.full_ms >= ADAPTIVE_MIN_FULL_MS
                && predicted > c.full_ms
                && c.fulls_since < ADAPTIVE_RETRY_AFTER
            {
                return Ok(Some(format!(
                    "at the rate of its last differential refresh ({what_then} in {:.0} ms), \
                     {what_now} would take longer than its last full refresh ({:.0} ms)",
                    c.diff_ms, c.full_ms
                )));
            }
        }
    }
    Ok(None)
}

/// The power of the ratio of changes by which a differential refresh's
/// time is scaled up to more changes than it applied.
const ADAPTIVE_GROWTH: f64 = 1.15;

/// A full refresh faster than this is not worth avoiding (and tiny tables
/// keep their refreshes differential, whatever the timing noise).
const ADAPTIVE_MIN_FULL_MS: f64 = 100.0;

/// Full refreshes after the last differential one, beyond which the
/// adaptive fallback lets a differential refresh measure itself again.
const ADAPTIVE_RETRY_AFTER: i64 = 8;

/// The planner's estimate of a table's row count.
pub(crate) fn source_rows(source: pg_sys::Oid) -> PgtResult<f64> {
    Ok(crate::catalog::sys::kept_one::<f32>(
        "SELECT (SELECT reltuples FROM pg_catalog.pg_class WHERE oid OPERATOR(pg_catalog.=) $1)",
        &[source.into()],
    )?
    .map(f64::from)
    .unwrap_or(-1.0))
}
