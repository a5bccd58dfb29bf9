//! Algebraic aggregates: a GROUP BY (or an aggregate without GROUP BY) over
//! one table whose other outputs are count(*), and count/sum/avg/min/max of
//! expressions over the table's columns (sum and avg of integer or numeric
//! values) is kept from per-group running totals instead of recomputing its
//! groups.
//!
//! The totals live in a state table `pgtrickle_state.agg_<oid>`, one row per
//! group: the grouping columns, `__n` (rows), and per aggregated argument
//! number `a` `__s<a>` (sum of its non-NULL values) and `__c<a>` (their
//! count), and its kept extremes. It is
//! owned by the stream table's owner, is a member of the extension (so
//! pg_dump leaves it out: a restore rebuilds it), and is rebuilt by every
//! FULL refresh on the refresh's snapshot.
//!
//! A differential refresh reads the window's change rows (as the extension
//! owner, who owns the buffers), then, as the stream table's owner, keeps
//! those that pass the WHERE clause, sums them per group with +1 for an
//! inserted row and -1 for a deleted one (an UPDATE is both) and adds the
//! sums to the totals. The affected groups' rows are then computed from the
//! totals (`sum` is NULL when no non-NULL value is left, a group with no row
//! left disappears) and applied like any recomputed rows. Only exact types
//! are summed, so the result equals what the aggregate computes.

use pgrx::pg_sys;
use pgrx::prelude::*;

use super::analysis::{replace_placeholders, AggKind, Algebraic, Derived, Plan, PART_BASE};
use super::key_recompute::{groups_filter, output_columns, KeyValues};
use crate::catalog::sys;
use crate::cdc::buffer;
use crate::cdc::frontier::RefreshSnapshot;
use crate::error::{PgtError, PgtResult};
use crate::sql::quote_ident;

pub fn state_name(relid: pg_sys::Oid) -> String {
    format!("pgtrickle_state.agg_{}", relid.to_u32())
}

pub fn state_relid(relid: pg_sys::Oid) -> PgtResult<Option<pg_sys::Oid>> {
    crate::catalog::sys::kept_one::<pg_sys::Oid>(
        "SELECT (SELECT c.oid FROM pg_catalog.pg_class c \
                   JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
                  WHERE n.nspname OPERATOR(pg_catalog.=) 'pgtrickle_state' \
                    AND c.relname OPERATOR(pg_catalog.=) ('agg_' OPERATOR(pg_catalog.||) $1::pg_catalog.text))",
        &[relid.into()],
    )
}

/// Create the state table when `wanted` and the plan keeps running totals
/// in one (see [`ensure_state`]), drop it otherwise.
pub fn sync(relid: pg_sys::Oid, wanted: bool) -> PgtResult<()> {
    let plan = if wanted { super::analysis::analyze(relid)?.ok() } else { None };
    match (plan, state_relid(relid)?) {
        (Some(plan), _) => ensure_state(relid, &plan).map(|_| ()),
        (None, Some(state)) => drop_state(state),
        (None, None) => Ok(()),
    }
}

/// What [`ensure_state`] did to the state table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateTable {
    Kept,
    /// Created, empty: the stream table is marked for a FULL refresh,
    /// which fills it.
    Created,
    Dropped,
}

/// Create the state table when `plan` keeps running totals in one (not
/// [`in_place`]), drop it when not.
pub fn ensure_state(relid: pg_sys::Oid, plan: &Plan) -> PgtResult<StateTable> {
    let wanted = plan.algebraic.as_ref().filter(|_| !in_place(plan));
    match (state_relid(relid)?, wanted) {
        (Some(state), None) => drop_state(state).map(|_| StateTable::Dropped),
        (None, Some(alg)) => create(relid, plan, alg).map(|_| StateTable::Created),
        _ => Ok(StateTable::Kept),
    }
}

fn create(relid: pg_sys::Oid, plan: &Plan, alg: &Algebraic) -> PgtResult<()> {
    let columns = output_columns(relid)?;
    let mut defs = Vec::new();
    let mut keys = Vec::new();
    for k in &plan.key {
        let (name, ty) = columns
            .get(k.output_attnum as usize - 1)
            .cloned()
            .ok_or_else(|| PgtError::Internal("key column out of range".into()))?;
        defs.push(format!("{name} {ty}"));
        keys.push(name);
    }
    defs.extend(totals_columns(alg)?.into_iter().map(|(def, _)| def));
    let name = state_name(relid);
    let owner = sys::relation_owner(relid)?;
    let _internal = crate::hooks::internal();
    sys::as_extension_owner(|| {
        Spi::run(&format!("CREATE TABLE {name} ({})", defs.join(", ")))?;
        // Without GROUP BY: one row.
        let keys = if keys.is_empty() { "(true)".to_string() } else { keys.join(", ") };
        Spi::run(&format!("CREATE UNIQUE INDEX ON {name} ({keys}) NULLS NOT DISTINCT"))?;
        if alg.has_extremes() {
            Spi::run(&format!("CREATE INDEX ON {name} (__rescan) WHERE __rescan"))?;
        }
        let state =
            state_relid(relid)?.ok_or_else(|| PgtError::Internal("state table not created".into()))?;
        sys::link_to_extension(state, sys::ExtensionLink::Membership)?;
        set_owner(&name, owner)?;
        // Empty totals: the next refresh must recompute.
        crate::catalog::sys::kept_run(
            "UPDATE pgtrickle.pgt_stream_tables SET needs_full = true WHERE relid OPERATOR(pg_catalog.=) $1",
            &[relid.into()],
        )?;
        Ok(())
    })
}

fn set_owner(name: &str, owner: pg_sys::Oid) -> PgtResult<()> {
    sys::set_member_owner(name, "TABLE", owner)
}

fn drop_state(state: pg_sys::Oid) -> PgtResult<()> {
    sys::drop_member(state, "TABLE")
}

/// Drop state tables whose stream table is gone or no longer keeps totals.
pub fn drop_orphans() -> PgtResult<()> {
    let orphans: Vec<pg_sys::Oid> = crate::catalog::sys::column_values::<pg_sys::Oid>(
"SELECT c.oid FROM pg_catalog.pg_class c \
               JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
              WHERE n.nspname OPERATOR(pg_catalog.=) 'pgtrickle_state' AND c.relkind OPERATOR(pg_catalog.=) 'r' \
                AND NOT EXISTS (SELECT 1 FROM pgtrickle.pgt_stream_tables st \
                                 WHERE st.consumes_changes \
                                   AND c.relname OPERATOR(pg_catalog.=) ('agg_' OPERATOR(pg_catalog.||) st.relid::pg_catalog.text))",
&[],
)?;
    for state in orphans {
        drop_state(state)?;
    }
    Ok(())
}

/// The state table follows the stream table's owner (ALTER ... OWNER TO).
fn ensure_owner(relid: pg_sys::Oid, state: pg_sys::Oid) -> PgtResult<()> {
    let owner = sys::relation_owner(relid)?;
    if sys::relation_owner(state)? != owner {
        set_owner(&state_name(relid), owner)?;
    }
    Ok(())
}

/// Recompute the totals from the table, on the refresh's snapshot (after a
/// FULL refresh of the stream table), or on the current snapshot (IMMEDIATE,
/// after the stream table was recomputed in a statement).
pub fn rebuild(relid: pg_sys::Oid, snapshot: &RefreshSnapshot) -> PgtResult<()> {
    rebuild_on(relid, Some(snapshot))
}

pub fn rebuild_now(relid: pg_sys::Oid) -> PgtResult<()> {
    rebuild_on(relid, None)
}

fn rebuild_on(relid: pg_sys::Oid, snapshot: Option<&RefreshSnapshot>) -> PgtResult<()> {
    let Some(state) = state_relid(relid)? else { return Ok(()) };
    let Ok(plan) = super::analysis::analyze(relid)? else { return Ok(()) };
    rebuild_state(relid, state, &plan, snapshot)
}

/// [`rebuild`] of state table `state` for `plan`, the stream table's
/// (already analyzed by the caller).
pub fn rebuild_with(
    relid: pg_sys::Oid,
    state: pg_sys::Oid,
    plan: &Plan,
    snapshot: &RefreshSnapshot,
) -> PgtResult<()> {
    rebuild_state(relid, state, plan, Some(snapshot))
}

fn rebuild_state(
    relid: pg_sys::Oid,
    state: pg_sys::Oid,
    plan: &Plan,
    snapshot: Option<&RefreshSnapshot>,
) -> PgtResult<()> {
    let Some(alg) = plan.algebraic.as_ref() else { return Ok(()) };
    ensure_owner(relid, state)?;
    let (from, keys) = match (&alg.join, &alg.slices) {
        (Some(jt), _) => (format!("({})", super::join_totals::whole_sql(jt)?), join_keys(plan)),
        (None, Some(st)) => (format!("({})", super::slices::whole_sql(st)?), join_keys(plan)),
        (None, None) => {
            let source =
                plan.grouped_source().ok_or_else(|| PgtError::Internal("no grouped table".into()))?;
            (crate::catalog::lifecycle::relation_name(source)?, table_keys(plan)?)
        }
    };
    let mut select = keys.clone();
    select.extend(totals_columns(alg)?.into_iter().map(|(_, value)| value));
    let filter = alg.where_sql.as_ref().map(|w| format!(" WHERE {w}")).unwrap_or_default();
    let name = state_name(relid);
    // Without GROUP BY, the one row of an aggregate over all rows (also
    // when there are none).
    let sql =
        format!("INSERT INTO {name} SELECT {} FROM {from} b{filter}{}", select.join(", "), group_by(&keys));
    let owner = sys::relation_owner(relid)?;
    sys::as_restricted_role(owner, || {
        Spi::run(&format!("TRUNCATE {name}"))?;
        match snapshot {
            Some(snapshot) => snapshot.execute(&sql, false).map(|_| ()),
            None => Spi::run(&sql).map_err(PgtError::from),
        }
    })
}

/// ` GROUP BY b.k1, …` (nothing for an aggregate without GROUP BY).
fn group_by(keys: &[String]) -> String {
    if keys.is_empty() {
        return String::new();
    }
    format!(" GROUP BY {}", keys.join(", "))
}

/// The grouping columns of the one table, as read over alias `b`.
fn table_keys(plan: &Plan) -> PgtResult<Vec<String>> {
    let source = plan.grouped_source().ok_or_else(|| PgtError::Internal("no grouped table".into()))?;
    let cols = source_columns(source, &plan.key.iter().map(|k| k.source_attnum).collect::<Vec<_>>())?;
    Ok(cols.iter().map(|c| format!("b.{c}")).collect())
}

/// The grouping columns of a join's rows (see join_totals), over alias `b`.
fn join_keys(plan: &Plan) -> Vec<String> {
    (1..=plan.key.len()).map(|n| format!("b.__k{n}")).collect()
}

/// Argument `n` of the running totals.
fn argument(alg: &Algebraic, n: i16) -> PgtResult<&super::analysis::AggArg> {
    alg.argument(n).ok_or_else(|| PgtError::Internal(format!("running total argument {n} missing")))
}

/// Whether argument `n` is summed and `numeric`, whose values may be
/// `Infinity`, `-Infinity` or `NaN`: its totals keep the sum of its finite
/// values and how many of each of those it holds (`__pinf<n>`,
/// `__ninf<n>`, `__nan<n>`), since subtracting an infinity from a sum
/// that absorbed it gives `NaN`, not the sum of the other values.
fn non_finite(alg: &Algebraic, n: i16) -> bool {
    alg.is_summed(n)
        && alg.argument(n).is_some_and(|a| a.sql_type == "numeric" || a.sql_type.starts_with("numeric("))
}

/// The special values of `numeric` a sum counts apart: (total prefix,
/// value).
const NON_FINITE: [(&str, &str); 3] = [("__pinf", "Infinity"), ("__ninf", "-Infinity"), ("__nan", "NaN")];

/// `x` as summed: 0 for a special value of `numeric` (see [`non_finite`]).
fn finite_part(x: &str) -> String {
    let special: Vec<String> =
        NON_FINITE.iter().map(|(_, value)| format!("'{value}'::pg_catalog.numeric")).collect();
    format!("CASE WHEN {x} IN ({}) THEN 0 ELSE {x} END", special.join(", "))
}

/// The totals table's columns after the group's, in order, each as its
/// definition and as the value a rebuild computes from the table's rows
/// (alias `b`): `__n`, then per argument its sum, count and extremes (with
/// the deleted extremes of the last change rows, which decide whether the
/// group is rescanned), then `__rescan`.
fn totals_columns(alg: &Algebraic) -> PgtResult<Vec<(String, String)>> {
    let mut out = vec![("__n pg_catalog.int8 NOT NULL".to_string(), "pg_catalog.count(*)".to_string())];
    for a in alg.argument_columns() {
        let arg = argument(alg, a)?;
        let (x, ty) = (&arg.sql, &arg.sql_type);
        if non_finite(alg, a) {
            out.push((
                format!("__s{a} pg_catalog.numeric NOT NULL DEFAULT 0"),
                format!("COALESCE(pg_catalog.sum({}), 0)", finite_part(x)),
            ));
            for (total, value) in NON_FINITE {
                out.push((
                    format!("{total}{a} pg_catalog.int8 NOT NULL DEFAULT 0"),
                    format!("pg_catalog.count(*) FILTER (WHERE {x} OPERATOR(pg_catalog.=) '{value}'::pg_catalog.numeric)"),
                ));
            }
        } else if alg.is_summed(a) {
            out.push((
                format!("__s{a} pg_catalog.numeric NOT NULL DEFAULT 0"),
                format!("COALESCE(pg_catalog.sum({x}::pg_catalog.numeric), 0)"),
            ));
        }
        out.push((format!("__c{a} pg_catalog.int8 NOT NULL DEFAULT 0"), format!("pg_catalog.count({x})")));
        if alg.has_min(a) {
            out.push((format!("__min{a} {ty}"), format!("pg_catalog.min({x})")));
            out.push((format!("__dmin{a} {ty}"), "NULL".into()));
        }
        if alg.has_max(a) {
            out.push((format!("__max{a} {ty}"), format!("pg_catalog.max({x})")));
            out.push((format!("__dmax{a} {ty}"), "NULL".into()));
        }
    }
    if alg.has_extremes() {
        out.push(("__rescan pg_catalog.bool NOT NULL DEFAULT false".into(), "false".into()));
    }
    Ok(out)
}

/// Quoted names of columns of `source`, in the order of `attnums`.
fn source_columns(source: pg_sys::Oid, attnums: &[i16]) -> PgtResult<Vec<String>> {
    let names = sys::attribute_names(source, Some(attnums))?;
    attnums
        .iter()
        .map(|a| {
            names
                .iter()
                .find(|(n, _)| n == a)
                .map(|(_, name)| quote_ident(name))
                .ok_or_else(|| PgtError::Internal(format!("column {a} of the source is missing")))
        })
        .collect()
}

/// Where change rows come from.
#[derive(Clone, Copy, Debug)]
pub enum ChangeRows<'a> {
    /// The firing statement's transition tables (IMMEDIATE), those it has:
    /// read typed, in place, in an SPI connection where they are
    /// registered (`cdc::capture::connect_with_transition`).
    Transition { old: bool, new: bool },
    /// A DIFFERENTIAL refresh's window of a change buffer, read typed, in
    /// place (on the refresh's snapshot): `rows` is the buffer as
    /// `buffer::rows_sql` reads it, `window` the window's condition.
    Window { rows: &'a str, window: &'a str },
}

/// Change rows of the columns `attnums` of `source` (see [`ChangeRows`])
/// as a query of typed rows named like the columns of `source`, with
/// `__sign` +1 for an inserted row and -1 for a deleted one.
pub(crate) fn change_rows_sql(source: pg_sys::Oid, attnums: &[i16], rows: ChangeRows) -> PgtResult<String> {
    let names = source_columns(source, attnums)?;
    let mut columns = Vec::with_capacity(attnums.len());
    for (name, attnum) in names.into_iter().zip(attnums) {
        columns.push((name, column_type(source, *attnum)?));
    }
    Ok(typed_change_rows(&columns, attnums, rows))
}

/// [`change_rows_sql`] for columns (`attnums`) whose quoted names and types
/// are known.
pub(crate) fn typed_change_rows(columns: &[(String, String)], attnums: &[i16], rows: ChangeRows) -> String {
    match rows {
        ChangeRows::Transition { old, new } => {
            let select = |sign: i32, table: &str| {
                let cols: String = columns.iter().map(|(name, _)| format!(", t.{name} AS {name}")).collect();
                format!("SELECT {sign} AS __sign{cols} FROM {table} t")
            };
            let mut parts = Vec::new();
            if old {
                parts.push(select(-1, crate::cdc::triggers::OLD_TABLE));
            }
            if new {
                parts.push(select(1, crate::cdc::triggers::NEW_TABLE));
            }
            if parts.is_empty() {
                let cols: String =
                    columns.iter().map(|(name, ty)| format!(", NULL::{ty} AS {name}")).collect();
                parts.push(format!("SELECT 0 AS __sign{cols} WHERE false"));
            }
            parts.join(" UNION ALL ")
        }
        ChangeRows::Window { rows, window } => {
            let renamed: String = columns
                .iter()
                .zip(attnums)
                .map(|((name, ty), attnum)| format!(", c{attnum}::{ty} AS {name}"))
                .collect();
            format!(
                "SELECT CASE WHEN __pgt_action OPERATOR(pg_catalog.=) 'I' THEN 1 ELSE -1 END AS __sign{renamed} \
                   FROM {rows} WHERE __pgt_action IN ('I', 'D') AND {window}"
            )
        }
    }
}

/// The type of a column of `source`, as `format_type` writes it.
fn column_type(source: pg_sys::Oid, attnum: i16) -> PgtResult<String> {
    crate::catalog::sys::kept_one::<String>(
        "SELECT pg_catalog.format_type(atttypid, atttypmod) FROM pg_catalog.pg_attribute \
          WHERE attrelid OPERATOR(pg_catalog.=) $1 AND attnum OPERATOR(pg_catalog.=) $2",
        &[source.into(), attnum.into()],
    )?
    .ok_or_else(|| PgtError::Internal("source column type missing".into()))
}

/// The statement recomputing the extremes of the groups marked for a
/// rescan (their kept extreme was deleted), from the table; None when no
/// extreme is kept.
pub fn rescan_sql(relid: pg_sys::Oid, plan: &Plan) -> PgtResult<Option<String>> {
    let Some(alg) = plan.algebraic.as_ref().filter(|a| a.has_extremes()) else { return Ok(None) };
    // The rows: the table's, or the join's (of one table when grouped by
    // expressions), read through the group's values.
    let (table, keys) = match (&alg.join, &alg.slices) {
        (Some(jt), None) => (format!("({})", super::join_totals::whole_sql(jt)?), join_keys(plan)),
        (None, None) => {
            let source =
                plan.grouped_source().ok_or_else(|| PgtError::Internal("no grouped table".into()))?;
            (crate::catalog::lifecycle::relation_name(source)?, table_keys(plan)?)
        }
        (_, Some(_)) => return Err(PgtError::Internal("extremes kept over slices".into())),
    };
    let columns = output_columns(relid)?;
    // Rows of the table in the group of state row `s`.
    let mut matches = Vec::new();
    for (k, col) in plan.key.iter().zip(&keys) {
        let name = &columns
            .get(k.output_attnum as usize - 1)
            .ok_or_else(|| PgtError::Internal("key column out of range".into()))?
            .0;
        matches
            .push(format!("({col} OPERATOR(pg_catalog.=) s.{name} OR ({col} IS NULL AND s.{name} IS NULL))"));
    }
    if let Some(w) = &alg.where_sql {
        matches.push(w.clone());
    }
    if matches.is_empty() {
        matches.push("true".into());
    }
    let mut sets = Vec::new();
    for a in alg.argument_columns() {
        let x = &argument(alg, a)?.sql;
        if alg.has_min(a) {
            sets.push(format!(
                "__min{a} = (SELECT pg_catalog.min({x}) FROM {table} b WHERE {})",
                matches.join(" AND ")
            ));
        }
        if alg.has_max(a) {
            sets.push(format!(
                "__max{a} = (SELECT pg_catalog.max({x}) FROM {table} b WHERE {})",
                matches.join(" AND ")
            ));
        }
    }
    sets.push("__rescan = false".into());
    Ok(Some(format!("UPDATE {} s SET {} WHERE s.__rescan", state_name(relid), sets.join(", "))))
}

/// The grouped table and the columns of it a change row must carry (key,
/// aggregated, WHERE), in attnum order.
fn change_columns(plan: &Plan, alg: &Algebraic) -> PgtResult<(pg_sys::Oid, Vec<i16>)> {
    let source = plan.grouped_source().ok_or_else(|| PgtError::Internal("no grouped table".into()))?;
    let mut cols: Vec<i16> = plan.key.iter().map(|k| k.source_attnum).collect();
    cols.extend(alg.argument_attnums());
    cols.extend(alg.where_attnums.iter().copied());
    cols.sort_unstable();
    cols.dedup();
    Ok((source, cols))
}

/// The changes of one table in a refresh's window, which the totals read
/// in place (see [`ChangeRows::Window`]).
pub struct WindowChanges {
    pub source: pg_sys::Oid,
    /// The columns the totals read, in attnum order.
    pub attnums: Vec<i16>,
    /// The buffer as `buffer::rows_sql` reads it.
    pub rows: String,
    /// Changed rows in the window.
    pub count: i64,
}

/// The window's changes of every table the totals read, counted (one row
/// per statement and action is summed, no change row is read).
pub fn window_changes(
    plan: &Plan,
    snapshot: &RefreshSnapshot,
    window: &str,
) -> PgtResult<Vec<WindowChanges>> {
    let Some(alg) = plan.algebraic.as_ref() else { return Ok(Vec::new()) };
    count_window(change_sources(plan, alg)?, snapshot, window)
}

/// The window's changes of each table (with the columns its change rows
/// carry), counted: one row per statement and action is summed, no change
/// row is read.
pub(crate) fn count_window(
    sources: Vec<(pg_sys::Oid, Vec<i16>)>,
    snapshot: &RefreshSnapshot,
    window: &str,
) -> PgtResult<Vec<WindowChanges>> {
    let mut out = Vec::new();
    for (source, attnums) in sources {
        // (The planner is told how many rows each statement row holds.)
        let (count, expected) = buffer::count_rows_in(source, snapshot, window)?;
        let rows = buffer::rows_sql_expecting(source, &expected, &attnums)?;
        out.push(WindowChanges { source, attnums, rows, count });
    }
    Ok(out)
}

impl WindowChanges {
    /// The tables with changes in the window, as change rows read in place.
    pub fn changed<'a>(
        changes: &'a [WindowChanges],
        window: &'a str,
    ) -> Vec<super::join_totals::Changes<'a>> {
        changes
            .iter()
            .filter(|c| c.count > 0)
            .map(|c| super::join_totals::Changes {
                source: c.source,
                attnums: &c.attnums,
                rows: ChangeRows::Window { rows: &c.rows, window },
            })
            .collect()
    }
}

/// The tables whose change rows the totals add up, and the columns of
/// each a change row carries (in attnum order).
fn change_sources(plan: &Plan, alg: &Algebraic) -> PgtResult<Vec<(pg_sys::Oid, Vec<i16>)>> {
    if !alg.over_rows() {
        return Ok(vec![change_columns(plan, alg)?]);
    }
    Ok(alg.rows_tables().into_iter().map(|source| (source, alg.rows_columns(source))).collect())
}

/// Add the window's changes to the totals, then rescan the groups whose
/// kept extreme was deleted; returns the groups whose totals changed
/// (none without GROUP BY, where the one row is always recomputed).
pub fn apply_delta(
    relid: pg_sys::Oid,
    plan: &Plan,
    snapshot: &RefreshSnapshot,
    window: &str,
    changes: &[WindowChanges],
) -> PgtResult<Vec<Vec<KeyValues>>> {
    if plan.algebraic.is_none() {
        return Ok(Vec::new());
    }
    let Some(upsert) = window_upsert(relid, plan, window, changes)? else { return no_groups(relid, plan) };
    let state = state_relid(relid)?.ok_or_else(|| PgtError::Internal("the state table is missing".into()))?;
    ensure_owner(relid, state)?;
    pgrx::debug2!("pg_trickle: adding the window's changes to the running totals: {upsert}");
    let owner = sys::relation_owner(relid)?;
    // On the refresh's snapshot: the tables a join term reads must be in
    // the state of the window's end, which later commits are not.
    let keys = key_columns(relid, plan)?;
    let sql = returning_groups_rescanned(&upsert, &keys, plan);
    let mut row = sys::as_restricted_role(owner, || snapshot.query_text_writing(&sql))?;
    // Groups whose kept extreme was deleted: from the table, on the snapshot.
    rescan_marked(relid, plan, &mut row, |rescan| {
        sys::as_restricted_role(owner, || snapshot.execute(rescan, false).map(|_| ()))
    })?;
    Ok(groups_from_row(keys, &row))
}

/// [`returning_groups`] of `upsert` into the totals of `plan`; with kept
/// extremes, also whether it marked a group whose extreme was deleted,
/// which [`rescan_marked`] reads.
pub(crate) fn returning_groups_rescanned(upsert: &str, keys: &[(String, String)], plan: &Plan) -> String {
    let extremes = plan.algebraic.as_ref().is_some_and(Algebraic::has_extremes);
    returning_groups_marked(upsert, keys, extremes.then_some("s.__rescan"))
}

/// After an upsert written by [`returning_groups_rescanned`]: take the
/// mark off the end of its `row` (with kept extremes) and, when a group
/// was marked, run the [`rescan_sql`] statement through `run`. `row` is
/// left with the groups' columns.
pub(crate) fn rescan_marked(
    relid: pg_sys::Oid,
    plan: &Plan,
    row: &mut Vec<Option<String>>,
    run: impl FnOnce(&str) -> PgtResult<()>,
) -> PgtResult<()> {
    if !plan.algebraic.as_ref().is_some_and(Algebraic::has_extremes)
        || row.pop().flatten().as_deref() != Some("true")
    {
        return Ok(());
    }
    match rescan_sql(relid, plan)? {
        Some(rescan) => run(&rescan),
        None => Ok(()),
    }
}

/// The statement adding the window's change rows to the totals; None when
/// no table they read changed.
fn window_upsert(
    relid: pg_sys::Oid,
    plan: &Plan,
    window: &str,
    changes: &[WindowChanges],
) -> PgtResult<Option<String>> {
    let changed = WindowChanges::changed(changes, window);
    signed_rows(plan, &changed)?
        .map(|rows| upsert_statement(relid, plan, &rows.from, &rows.keys, rows.filter.as_deref()))
        .transpose()
}

/// Whether a refresh writes the touched groups' rows in the statement that
/// adds the window's changes to the totals ([`apply_fused`]): grouped
/// totals without kept extremes (a deleted extreme is rescanned after the
/// totals are added), ORDER BY ... LIMIT or keys pushed into subqueries,
/// on a stream table no other one reads (their change capture wants the
/// rows the key recompute apply returns).
pub fn fuses(relid: pg_sys::Oid, plan: &Plan) -> PgtResult<bool> {
    let Some(alg) = plan.algebraic.as_ref() else { return Ok(false) };
    Ok(!plan.key.is_empty()
        && !alg.has_extremes()
        && plan.topk.is_none()
        && plan.pushed_keys().is_empty()
        && buffer::buffer_relid(relid)?.is_none())
}

/// Whether the running totals are the stream table's own columns, with no
/// state table: grouped totals whose outputs are the grouping columns and
/// bare aggregates including `count(*)`, where each `sum(x)` and `avg(x)`
/// knows how many non-NULL values it adds up (a `count(x)` output, or `x`
/// a column declared NOT NULL, counted by `count(*)`), and `avg(x)` has
/// its `sum(x)` beside it; no extremes, expressions over aggregates,
/// ORDER BY ... LIMIT or keys pushed into subqueries. A change then
/// writes each group it touches once, adding to its row (see
/// [`in_place_statement`]), where totals in a state table cost a second
/// write per group.
pub fn in_place(plan: &Plan) -> bool {
    let Some(alg) = plan.algebraic.as_ref() else { return false };
    let has = |kind: AggKind| alg.aggregates.iter().any(|(_, k)| *k == kind);
    // (A numeric sum's special values need totals of their own: see
    // non_finite.)
    let counted = |a: i16| {
        (has(AggKind::Count(a)) || alg.argument(a).is_some_and(|arg| arg.not_null)) && !non_finite(alg, a)
    };
    !plan.key.is_empty()
        && alg.derived.is_empty()
        && alg.having.is_none()
        && !alg.has_extremes()
        && plan.topk.is_none()
        && plan.pushed_keys().is_empty()
        && has(AggKind::CountStar)
        && alg.aggregates.iter().all(|(_, kind)| match *kind {
            AggKind::CountStar | AggKind::Count(_) => true,
            AggKind::Sum(a) => counted(a),
            AggKind::Avg(a) => counted(a) && has(AggKind::Sum(a)),
            AggKind::Min(_) | AggKind::Max(_) => false,
        })
}

/// Whether every key column of the stream table has a default ordering,
/// so that its groups can be written in key order.
pub fn keys_sortable(relid: pg_sys::Oid, plan: &Plan) -> bool {
    plan.key.iter().all(|k| sys::column_has_ordering(relid, k.output_attnum))
}

/// Whether the statements of IMMEDIATE writers may add their changes to
/// the stream table's rows concurrently (see
/// refresh::immediate::lock_mode): running totals kept in its own columns
/// ([`in_place`]) over one table, added to from each statement's own rows
/// alone (not over a join, slices or stream tables, nothing read whole),
/// with keys that sort.
pub fn adds_concurrently(relid: pg_sys::Oid, plan: &Plan) -> bool {
    in_place(plan)
        && !is_join_totals(plan)
        && !is_slice_totals(plan)
        && !plan.reads_stream_tables
        && plan.full_on.is_empty()
        && plan.sources().len() == 1
        && keys_sortable(relid, plan)
}

/// The statement adding signed rows (`rows`: with `__sign`, the grouping
/// columns and the arguments) to a stream table whose totals are its own
/// columns (see
/// [`in_place`]): summed per group into `d`, then upserted by key: a new
/// group's row is its sums; an existing group's counts and sums are added
/// to (a sum is NULL when its count of non-NULL values is 0; an average is
/// the new sum over the new count, as `avg` divides them). A group whose
/// sums are all 0 is left alone. Groups left without rows keep a row with
/// `count(*)` 0, deleted after it by [`emptied_delete_sql`].
///
/// Its rows (as text, padded to one width): first `S`, the rows updated,
/// the rows inserted and, per key column, the values of the groups left
/// empty and whether one was NULL (see [`groups_from_row`]); with
/// `captured` (quoted names of stream table columns), then each touched
/// row's old values (`D`) and new ones (`I`, not for groups left empty).
fn in_place_statement(
    relid: pg_sys::Oid,
    plan: &Plan,
    rows_in: &Signed,
    captured: Option<&[String]>,
) -> PgtResult<String> {
    let Signed { from, keys, filter } = rows_in;
    let alg = plan.algebraic.as_ref().ok_or_else(|| PgtError::Internal("no running totals".into()))?;
    let columns = output_columns(relid)?;
    let column_of = |kind: AggKind| -> PgtResult<&str> {
        let (attnum, _) = alg
            .aggregates
            .iter()
            .find(|(_, k)| *k == kind)
            .ok_or_else(|| PgtError::Internal(format!("no output for {kind:?}")))?;
        columns
            .get(*attnum as usize - 1)
            .map(|(name, _)| name.as_str())
            .ok_or_else(|| PgtError::Internal("aggregate column out of range".into()))
    };
    let rows = column_of(AggKind::CountStar)?;
    // An argument's count of non-NULL values: its count(x) output, else
    // (x NOT NULL) the rows'. After the change:
    let new_count = |a: i16| -> PgtResult<String> {
        let count = column_of(AggKind::Count(a)).unwrap_or(rows);
        Ok(format!("(o.{count} OPERATOR(pg_catalog.+) EXCLUDED.{count})"))
    };
    // ... and its change, from `d`.
    let counted = |a: i16| column_of(AggKind::Count(a)).is_ok();
    let count_of = |a: i16| if counted(a) { format!("d.__c{a}") } else { "d.__n".to_string() };
    let new_sum = |a: i16| -> PgtResult<String> {
        let sum = column_of(AggKind::Sum(a))?;
        Ok(format!("(COALESCE(o.{sum}, 0) OPERATOR(pg_catalog.+) COALESCE(EXCLUDED.{sum}, 0))"))
    };
    let mut sums: Vec<String> =
        keys.iter().enumerate().map(|(i, k)| format!("{k} AS __k{}", i + 1)).collect();
    sums.push("COALESCE(pg_catalog.sum(b.__sign), 0) AS __n".into());
    let mut changed = vec!["d.__n OPERATOR(pg_catalog.<>) 0".to_string()];
    // (The count of an argument without count(x) is not summed.)
    let uncounted: Vec<String> =
        alg.argument_columns().into_iter().filter(|a| !counted(*a)).map(|a| format!("__c{a}")).collect();
    for (total, sum) in signed_sums(alg)?.into_iter().filter(|(total, _)| !uncounted.contains(total)) {
        sums.push(format!("{sum} AS {total}"));
        changed.push(format!("d.{total} OPERATOR(pg_catalog.<>) 0"));
    }
    let (mut targets, mut values, mut sets) = (Vec::new(), Vec::new(), Vec::new());
    for (i, (name, ty)) in columns.iter().enumerate() {
        let attnum = i as i16 + 1;
        targets.push(name.clone());
        if let Some(k) = plan.key.iter().position(|k| k.output_attnum == attnum) {
            values.push(format!("d.__k{}", k + 1));
            continue;
        }
        let kind = alg
            .aggregates
            .iter()
            .find(|(a, _)| *a == attnum)
            .map(|(_, k)| *k)
            .ok_or_else(|| PgtError::Internal(format!("output {attnum} is neither key nor total")))?;
        let add = format!("{name} = o.{name} OPERATOR(pg_catalog.+) EXCLUDED.{name}");
        match kind {
            AggKind::CountStar => {
                values.push(format!("d.__n::{ty}"));
                sets.push(add);
            }
            AggKind::Count(a) => {
                values.push(format!("d.__c{a}::{ty}"));
                sets.push(add);
            }
            AggKind::Sum(a) => {
                // (A new group's sums are its values: no non-NULL value
                // means a sum of 0, written NULL; an existing group adds a
                // NULL as 0.)
                values.push(format!(
                    "(CASE WHEN {c} OPERATOR(pg_catalog.=) 0 AND d.__s{a} OPERATOR(pg_catalog.=) 0 \
                      THEN NULL ELSE d.__s{a} END)::{ty}",
                    c = count_of(a)
                ));
                sets.push(format!(
                    "{name} = CASE WHEN {count} OPERATOR(pg_catalog.=) 0 THEN NULL ELSE {sum} END",
                    count = new_count(a)?,
                    sum = new_sum(a)?
                ));
            }
            AggKind::Avg(a) => {
                values.push(format!(
                    "(CASE WHEN {c} OPERATOR(pg_catalog.=) 0 THEN NULL \
                      ELSE d.__s{a}::pg_catalog.numeric OPERATOR(pg_catalog./) {c}::pg_catalog.numeric END)::{ty}",
                    c = count_of(a)
                ));
                sets.push(format!(
                    "{name} = (CASE WHEN {count} OPERATOR(pg_catalog.=) 0 THEN NULL \
                      ELSE {sum}::pg_catalog.numeric OPERATOR(pg_catalog./) {count}::pg_catalog.numeric END)::{ty}",
                    count = new_count(a)?,
                    sum = new_sum(a)?
                ));
            }
            AggKind::Min(_) | AggKind::Max(_) => {
                return Err(PgtError::Internal("extremes are not kept in the stream table".into()))
            }
        }
    }
    let key_columns = key_columns(relid, plan)?;
    let mut returning =
        vec!["old.ctid IS NULL AS __pgt_inserted".to_string(), format!("new.{rows} AS __pgt_n")];
    let mut summary = vec![
        "'S'".to_string(),
        "(pg_catalog.count(*) FILTER (WHERE NOT u.__pgt_inserted AND u.__pgt_n OPERATOR(pg_catalog.>) 0))::text"
            .to_string(),
        "(pg_catalog.count(*) FILTER (WHERE u.__pgt_inserted))::text".to_string(),
    ];
    for (j, (name, _)) in key_columns.iter().enumerate() {
        returning.push(format!("new.{name} AS __pgt_k{j}"));
        summary.extend(group_arrays(&format!("u.__pgt_k{j}"), Some("u.__pgt_n OPERATOR(pg_catalog.=) 0")));
    }
    let capturing = captured.is_some();
    let captured = captured.unwrap_or_default();
    for (i, name) in captured.iter().enumerate() {
        returning.push(format!("old.{name} AS __pgt_o{i}, new.{name} AS __pgt_v{i}"));
    }
    let width = summary.len().max(captured.len() + 1);
    let pad = |mut row: Vec<String>| -> String {
        row.resize(width, "NULL::pg_catalog.text".into());
        row.join(", ")
    };
    let mut select = format!("SELECT {} FROM u", pad(summary));
    // (Readers that need no column still receive one image per row.)
    if capturing {
        let image = |tag: &str, prefix: &str| -> Vec<String> {
            std::iter::once(format!("'{tag}'"))
                .chain((0..captured.len()).map(|i| format!("u.{prefix}{i}::pg_catalog.text")))
                .collect()
        };
        select.push_str(&format!(
            "\nUNION ALL SELECT {} FROM u WHERE NOT u.__pgt_inserted\n\
             UNION ALL SELECT {} FROM u WHERE u.__pgt_n OPERATOR(pg_catalog.>) 0",
            pad(image("D", "__pgt_o")),
            pad(image("I", "__pgt_v")),
        ));
    }
    let filter = filter.as_ref().map(|w| format!(" WHERE {w}")).unwrap_or_default();
    let conflict: Vec<&str> = key_columns.iter().map(|(k, _)| k.as_str()).collect();
    // Groups written in the order of their keys: two writers sharing the
    // stream table lock the groups they both touch in the same order (see
    // refresh::immediate::lock_mode).
    let order_by = if keys_sortable(relid, plan) && !plan.key.is_empty() {
        let keys: Vec<String> = (1..=plan.key.len()).map(|k| format!("d.__k{k}")).collect();
        format!(" ORDER BY {}", keys.join(", "))
    } else {
        String::new()
    };
    Ok(format!(
        "WITH d AS (SELECT {sums} FROM {from} b{filter}{group_by}),\n\
         u AS (INSERT INTO {st} AS o ({targets})\n\
         \x20   SELECT {values} FROM d WHERE {changed}{order_by}\n\
         \x20   ON CONFLICT ({conflict}) DO UPDATE SET {sets}\n\
         \x20   RETURNING {returning})\n\
         {select}",
        sums = sums.join(", "),
        group_by = group_by(keys),
        st = crate::catalog::lifecycle::relation_name(relid)?,
        targets = targets.join(", "),
        values = values.join(", "),
        changed = changed.join(" OR "),
        conflict = conflict.join(", "),
        sets = sets.join(", "),
        returning = returning.join(", "),
    ))
}

/// What [`in_place_statement`] returned: the rows updated and inserted,
/// the groups left empty (their rows still to be deleted), and with
/// capture the rows' old (`D`) and new (`I`) images.
pub struct InPlace {
    pub updated: i64,
    pub inserted: i64,
    pub emptied: Vec<Vec<KeyValues>>,
    pub captured: crate::sql::TextRows,
}

impl InPlace {
    /// Read the statement's rows; `captured` columns were asked for.
    fn read(
        relid: pg_sys::Oid,
        plan: &Plan,
        rows: crate::sql::TextRows,
        captured: usize,
    ) -> PgtResult<InPlace> {
        let mut out = InPlace { updated: 0, inserted: 0, emptied: Vec::new(), captured: Vec::new() };
        for mut row in rows {
            if row.first().cloned().flatten().as_deref() != Some("S") {
                row.truncate(captured + 1);
                out.captured.push(row);
                continue;
            }
            let count =
                |i: usize| row.get(i).cloned().flatten().and_then(|n| n.parse::<i64>().ok()).unwrap_or(0);
            out.updated = count(1);
            out.inserted = count(2);
            let emptied = groups_from_row(key_columns(relid, plan)?, row.get(3..).unwrap_or_default());
            if emptied.iter().flatten().any(|k| k.values.is_some() || k.has_null) {
                out.emptied = emptied;
            }
        }
        Ok(out)
    }
}

/// The statement deleting the rows of `groups` left with `count(*)` 0 by
/// [`in_place_statement`], returning how many it deleted.
fn emptied_delete_sql(relid: pg_sys::Oid, plan: &Plan, groups: &[Vec<KeyValues>]) -> PgtResult<String> {
    let alg = plan.algebraic.as_ref().ok_or_else(|| PgtError::Internal("no running totals".into()))?;
    let columns = output_columns(relid)?;
    let rows = alg
        .aggregates
        .iter()
        .find(|(_, k)| *k == AggKind::CountStar)
        .and_then(|(attnum, _)| columns.get(*attnum as usize - 1))
        .map(|(name, _)| name.clone())
        .ok_or_else(|| PgtError::Internal("no count(*) output".into()))?;
    Ok(format!(
        "WITH gone AS (DELETE FROM {st} o WHERE o.{rows} OPERATOR(pg_catalog.=) 0 AND ({groups}) RETURNING 1) \
         SELECT pg_catalog.count(*)::pg_catalog.text FROM gone",
        st = crate::catalog::lifecycle::relation_name(relid)?,
        groups = groups_filter("o", groups),
    ))
}

/// Signed rows for [`upsert_statement`] or [`in_place_statement`].
struct Signed {
    /// The rows, read as alias `b`.
    from: String,
    /// Their grouping columns.
    keys: Vec<String>,
    /// The condition they must pass.
    filter: Option<String>,
}

/// The signed rows of a refresh's window (or the statement's transition
/// tables, in `changes`); None when no table the totals read changed.
fn signed_rows(plan: &Plan, changes: &[super::join_totals::Changes]) -> PgtResult<Option<Signed>> {
    let alg = plan.algebraic.as_ref().ok_or_else(|| PgtError::Internal("no running totals".into()))?;
    if !alg.over_rows() {
        let Some(first) = changes.first() else { return Ok(None) };
        let (source, cols) = change_columns(plan, alg)?;
        let rows = change_rows_sql(source, &cols, first.rows)?;
        return Ok(Some(Signed {
            from: format!("({rows})"),
            keys: table_keys(plan)?,
            filter: alg.where_sql.clone(),
        }));
    }
    Ok(rows_delta_sql(alg.join.as_ref(), alg.slices.as_ref(), changes)?.map(|rows| Signed {
        from: format!("({rows})"),
        keys: join_keys(plan),
        filter: None,
    }))
}

/// The [`in_place_statement`] of one statement's transition tables
/// (`rows`) on `source` (IMMEDIATE).
pub fn in_place_sql(
    relid: pg_sys::Oid,
    plan: &Plan,
    source: pg_sys::Oid,
    rows: ChangeRows,
    captured: Option<&[String]>,
) -> PgtResult<String> {
    let alg = plan.algebraic.as_ref().ok_or_else(|| PgtError::Internal("no running totals".into()))?;
    let attnums = if alg.over_rows() { alg.rows_columns(source) } else { Vec::new() };
    let changes = [super::join_totals::Changes { source, attnums: &attnums, rows }];
    let rows = signed_rows(plan, &changes)?
        .ok_or_else(|| PgtError::Internal("a statement on a table the running totals do not read".into()))?;
    in_place_statement(relid, plan, &rows, captured)
}

/// Run an [`in_place_statement`] with `run` (returning its rows as text;
/// `captured` columns asked for) and delete the groups it left empty with
/// `delete` (returning its first row): (rows deleted, rows inserted, the
/// captured images), an update counting as both.
pub fn run_in_place(
    relid: pg_sys::Oid,
    plan: &Plan,
    captured: usize,
    run: &dyn Fn() -> PgtResult<crate::sql::TextRows>,
    delete: &dyn Fn(&str) -> PgtResult<Vec<Option<String>>>,
) -> PgtResult<(i64, i64, crate::sql::TextRows)> {
    let done = InPlace::read(relid, plan, run()?, captured)?;
    let mut deleted = done.updated;
    if !done.emptied.is_empty() {
        let row = delete(&emptied_delete_sql(relid, plan, &done.emptied)?)?;
        deleted += row.first().cloned().flatten().and_then(|n| n.parse::<i64>().ok()).unwrap_or(0);
    }
    Ok((deleted, done.updated + done.inserted, done.captured))
}

/// A refresh of a stream table whose totals are its own columns (see
/// [`in_place`]): the window's signed rows added to its rows, on the
/// refresh's snapshot, as its owner, in its maintenance window; the images
/// of the rows changed go to its change buffer for the stream tables that
/// read it. Returns (rows deleted, rows inserted), an update counting as
/// both.
pub fn apply_in_place(
    relid: pg_sys::Oid,
    plan: &Plan,
    snapshot: &RefreshSnapshot,
    window: &str,
    changes: &[WindowChanges],
) -> PgtResult<(i64, i64)> {
    let changed = WindowChanges::changed(changes, window);
    let Some(signed) = signed_rows(plan, &changed)? else { return Ok((0, 0)) };
    let captured = super::key_recompute::captured_columns(relid)?;
    let names: Option<Vec<String>> =
        captured.as_ref().map(|c| c.iter().map(|(_, name)| quote_ident(name)).collect());
    let sql = in_place_statement(relid, plan, &signed, names.as_deref())?;
    pgrx::debug2!("pg_trickle: adding the window's changes to the stream table's totals: {sql}");
    let owner = sys::relation_owner(relid)?;
    let (deleted, inserted, rows) = sys::as_restricted_role(owner, || {
        crate::refresh::window::with_window(relid, || {
            run_in_place(
                relid,
                plan,
                names.as_ref().map_or(0, Vec::len),
                &|| snapshot.query_rows_writing(&sql),
                &|sql: &str| snapshot.query_text_writing(sql),
            )
        })
    })?;
    if let Some(captured) = captured {
        super::key_recompute::write_captured(relid, &captured, &rows)?;
    }
    Ok((deleted, inserted))
}

/// The statement of a refresh that keeps its totals [`in_place`], as
/// `explain_stream_table` shows it (every table's change rows read in the
/// refresh's window).
pub fn explain_in_place(relid: pg_sys::Oid, plan: &Plan) -> PgtResult<String> {
    let changes = explain_changes(plan)?;
    let changed = WindowChanges::changed(&changes, "/* in the refresh's window */ true");
    let rows = signed_rows(plan, &changed)?
        .ok_or_else(|| PgtError::Internal("running totals over no table".into()))?;
    in_place_statement(relid, plan, &rows, None)
}

/// Every table the totals read, as changed in a refresh's window (for
/// `explain_stream_table`; a table read whole recomputes instead).
fn explain_changes(plan: &Plan) -> PgtResult<Vec<WindowChanges>> {
    let alg = plan.algebraic.as_ref().ok_or_else(|| PgtError::Internal("no running totals".into()))?;
    let mut changes = Vec::new();
    for (source, attnums) in change_sources(plan, alg)? {
        if !plan.full_on.contains(&source) {
            changes.push(WindowChanges { source, attnums, rows: buffer::rows_sql(source)?, count: 1 });
        }
    }
    Ok(changes)
}

/// What [`apply_fused`] did: the stream table's rows updated and inserted,
/// and the groups left without rows (whose rows are still to be deleted).
pub struct Fused {
    pub updated: i64,
    pub inserted: i64,
    pub emptied: Vec<Vec<KeyValues>>,
}

/// Add the window's changes to the totals and write the rows of the groups
/// they touched to the stream table, in one statement (see [`fuses`]): the
/// upsert returns each touched group's new totals, from which its row is
/// computed and upserted by key into the stream table (a row whose values
/// did not change is left alone). The groups left without rows are
/// returned for the caller to delete their rows (the key recompute apply
/// over them, then [`drop_empty`]); nothing is done when no table the
/// totals read changed.
pub fn apply_fused(
    relid: pg_sys::Oid,
    plan: &Plan,
    snapshot: &RefreshSnapshot,
    window: &str,
    changes: &[WindowChanges],
) -> PgtResult<Fused> {
    let Some(upsert) = window_upsert(relid, plan, window, changes)? else {
        return Ok(Fused { updated: 0, inserted: 0, emptied: Vec::new() });
    };
    let state = state_relid(relid)?.ok_or_else(|| PgtError::Internal("the state table is missing".into()))?;
    ensure_owner(relid, state)?;
    let keys = key_columns(relid, plan)?;
    let sql = fused_statement(relid, plan, &upsert, &keys)?;
    pgrx::debug2!(
        "pg_trickle: adding the window's changes to the running totals and the stream table: {sql}"
    );
    let owner = sys::relation_owner(relid)?;
    let row = sys::as_restricted_role(owner, || {
        crate::refresh::window::with_window(relid, || snapshot.query_text_writing(&sql))
    })?;
    let count = |i: usize| row.get(i).cloned().flatten().and_then(|n| n.parse::<i64>().ok()).unwrap_or(0);
    let emptied = groups_from_row(keys, row.get(2..).unwrap_or_default());
    let any = emptied.iter().flatten().any(|k| k.values.is_some() || k.has_null);
    Ok(Fused { updated: count(0), inserted: count(1), emptied: if any { emptied } else { Vec::new() } })
}

/// The statement of a refresh that [`fuses`], as `explain_stream_table`
/// shows it: every table's change rows read in the refresh's window (a
/// refresh reads those of the tables that changed).
pub fn explain_fused(relid: pg_sys::Oid, plan: &Plan) -> PgtResult<String> {
    let changes = explain_changes(plan)?;
    let upsert = window_upsert(relid, plan, "/* in the refresh's window */ true", &changes)?
        .ok_or_else(|| PgtError::Internal("running totals over no table".into()))?;
    fused_statement(relid, plan, &upsert, &key_columns(relid, plan)?)
}

/// The statement of [`apply_fused`]: `upsert` (into the totals, alias `s`),
/// then the touched groups' rows computed from its result `u`, upserted
/// into the stream table by its key columns `keys` (see [`key_columns`]).
/// Its one row: the rows updated, the rows inserted, and as in
/// [`returning_groups`] the groups left without rows.
fn fused_statement(
    relid: pg_sys::Oid,
    plan: &Plan,
    upsert: &str,
    keys: &[(String, String)],
) -> PgtResult<String> {
    let totals = totals_from(relid, plan, "u")?;
    let st = crate::catalog::lifecycle::relation_name(relid)?;
    let sets: Vec<String> =
        output_columns(relid)?.iter().map(|(c, _)| format!("{c} = EXCLUDED.{c}")).collect();
    let target: Vec<&str> = keys.iter().map(|(k, _)| k.as_str()).collect();
    // (Groups that have no row now: left without rows, or failing HAVING.)
    let gone = has_row(plan);
    let emptied: Vec<String> = keys
        .iter()
        .flat_map(|(name, _)| group_arrays(&format!("s.{name}"), None))
        .map(|agg| format!("(SELECT {agg} FROM u s WHERE ({gone}) IS NOT TRUE)"))
        .collect();
    Ok(format!(
        "WITH u AS ({upsert} RETURNING s.*),\n\
         put AS (INSERT INTO {st} AS o {totals}\n\
         \x20   ON CONFLICT ({target}) DO UPDATE SET {sets}\n\
         \x20   WHERE NOT ((o.*) OPERATOR(pg_catalog.*=) (EXCLUDED.*))\n\
         \x20   RETURNING old.ctid IS NULL AS inserted)\n\
         SELECT (SELECT pg_catalog.count(*) FILTER (WHERE NOT p.inserted) FROM put p), \
         (SELECT pg_catalog.count(*) FILTER (WHERE p.inserted) FROM put p), {emptied}",
        target = target.join(", "),
        sets = sets.join(", "),
        emptied = emptied.join(", "),
    ))
}

/// The groups of a change that touched none: one group of no key values
/// (none at all without GROUP BY).
fn no_groups(relid: pg_sys::Oid, plan: &Plan) -> PgtResult<Vec<Vec<KeyValues>>> {
    Ok(groups_from_row(key_columns(relid, plan)?, &[]))
}

/// IMMEDIATE over a join or slices: the statement adding one statement's
/// changed rows of `source` (`rows`, its transition tables) to the
/// totals, to run as the stream table's owner in the writing statement's
/// transaction (see refresh::immediate, which keeps it prepared).
pub fn rows_upsert_sql(
    relid: pg_sys::Oid,
    plan: &Plan,
    source: pg_sys::Oid,
    rows: ChangeRows,
) -> PgtResult<String> {
    let alg = plan
        .algebraic
        .as_ref()
        .filter(|_| is_join_totals(plan))
        .ok_or_else(|| PgtError::Internal("no running totals over rows".into()))?;
    let attnums = alg.rows_columns(source);
    let changes = [super::join_totals::Changes { source, attnums: &attnums, rows }];
    let delta = rows_delta_sql(alg.join.as_ref(), alg.slices.as_ref(), &changes)?
        .ok_or_else(|| PgtError::Internal("a statement on a table the running totals do not read".into()))?;
    upsert_statement(relid, plan, &format!("({delta})"), &join_keys(plan), None)
}

/// Whether the plan keeps running totals over the rows of several tables
/// (an inner join, or slices), whose signed rows the totals add up.
pub fn is_join_totals(plan: &Plan) -> bool {
    plan.algebraic.as_ref().is_some_and(Algebraic::over_rows)
}

/// Whether the plan keeps running totals over slices.
pub fn is_slice_totals(plan: &Plan) -> bool {
    plan.algebraic.as_ref().is_some_and(|a| a.slices.is_some())
}

/// The signed rows `changes` add to the rows of a join or of slices.
/// The signed rows the change rows add to the rows of an inner join or
/// of slices (running totals, multisets); None when no table they read
/// changed.
pub(crate) fn rows_delta_sql(
    join: Option<&super::join_totals::JoinTotals>,
    slices: Option<&super::slices::SliceTotals>,
    changes: &[super::join_totals::Changes],
) -> PgtResult<Option<String>> {
    match (join, slices) {
        (Some(jt), _) => super::join_totals::delta_sql(jt, changes),
        (None, Some(st)) => super::slices::delta_sql(st, changes),
        (None, None) => Ok(None),
    }
}

/// The key columns of the totals' groups: (quoted name, SQL type) of the
/// stream table's key columns (none without GROUP BY).
pub(crate) fn key_columns(relid: pg_sys::Oid, plan: &Plan) -> PgtResult<Vec<(String, String)>> {
    if plan.key.is_empty() {
        return Ok(Vec::new());
    }
    let columns = output_columns(relid)?;
    plan.key
        .iter()
        .map(|k| columns.get(k.output_attnum as usize - 1).cloned())
        .collect::<Option<_>>()
        .ok_or_else(|| PgtError::Internal("key column out of range".into()))
}

/// `upsert` returning, as its first row, the touched groups: per key
/// column (`keys`, see [`key_columns`]) the array of its values and
/// whether one was NULL, as text. Without keys, `upsert` itself.
pub(crate) fn returning_groups(upsert: &str, keys: &[(String, String)]) -> String {
    returning_groups_marked(upsert, keys, None)
}

/// [`returning_groups`] with, after the groups' columns, whether `mark`
/// (a boolean of the upserted row `s`) was true for one of them, as text.
fn returning_groups_marked(upsert: &str, keys: &[(String, String)], mark: Option<&str>) -> String {
    if keys.is_empty() && mark.is_none() {
        return upsert.to_string();
    }
    let mut returning: Vec<String> = keys.iter().map(|(name, _)| format!("s.{name}")).collect();
    let mut select: Vec<String> =
        keys.iter().flat_map(|(name, _)| group_arrays(&format!("u.{name}"), None)).collect();
    if let Some(mark) = mark {
        returning.push(format!("{mark} AS __pgt_mark"));
        select.push("COALESCE(pg_catalog.bool_or(u.__pgt_mark), false)::text".into());
    }
    format!("WITH u AS ({upsert} RETURNING {}) SELECT {} FROM u", returning.join(", "), select.join(", "))
}

/// The two aggregates naming, for one key column `col` of some rows, the
/// groups among those rows that pass `only` (all without): the array of
/// its non-NULL values and whether one was NULL, as text (read by
/// [`groups_from_row`]).
fn group_arrays(col: &str, only: Option<&str>) -> [String; 2] {
    let (and, filter) = match only {
        Some(c) => (format!(" AND {c}"), format!(" FILTER (WHERE {c})")),
        None => (String::new(), String::new()),
    };
    [
        format!("(pg_catalog.array_agg(DISTINCT {col}) FILTER (WHERE {col} IS NOT NULL{and}))::text"),
        format!("COALESCE(pg_catalog.bool_or({col} IS NULL){filter}, false)::text"),
    ]
}

/// The groups [`returning_groups`]'s first row names (none without keys).
pub(crate) fn groups_from_row(keys: Vec<(String, String)>, row: &[Option<String>]) -> Vec<Vec<KeyValues>> {
    if keys.is_empty() {
        return Vec::new();
    }
    let group = keys
        .into_iter()
        .enumerate()
        .map(|(i, (column, sql_type))| KeyValues {
            column,
            sql_type,
            values: row.get(2 * i).cloned().flatten(),
            has_null: row.get(2 * i + 1).cloned().flatten().as_deref() == Some("true"),
        })
        .collect();
    vec![group]
}

/// The statement adding change rows to the totals.
pub fn upsert_sql(relid: pg_sys::Oid, plan: &Plan, rows: ChangeRows) -> PgtResult<String> {
    let alg = plan.algebraic.as_ref().ok_or_else(|| PgtError::Internal("no running totals".into()))?;
    let (source, cols) = change_columns(plan, alg)?;
    let changes = change_rows_sql(source, &cols, rows)?;
    upsert_statement(relid, plan, &format!("({changes})"), &table_keys(plan)?, alg.where_sql.as_deref())
}

/// The statement adding signed rows (`from`, read as alias `b`, with
/// `__sign`, the grouping columns `keys` and the arguments) that pass
/// `filter` to the totals.
fn upsert_statement(
    relid: pg_sys::Oid,
    plan: &Plan,
    from: &str,
    keys: &[String],
    filter: Option<&str>,
) -> PgtResult<String> {
    let alg = plan.algebraic.as_ref().ok_or_else(|| PgtError::Internal("no running totals".into()))?;
    let columns = output_columns(relid)?;
    let state_keys: Vec<String> = plan
        .key
        .iter()
        .map(|k| columns.get(k.output_attnum as usize - 1).map(|(n, _)| n.clone()))
        .collect::<Option<_>>()
        .ok_or_else(|| PgtError::Internal("key column out of range".into()))?;
    let mut targets = state_keys.clone();
    targets.push("__n".into());
    let mut sums: Vec<String> = keys.to_vec();
    // (COALESCE: without GROUP BY, the one row of sums may have no rows.)
    sums.push("COALESCE(pg_catalog.sum(b.__sign), 0)".into());
    let mut updates = vec!["__n = s.__n OPERATOR(pg_catalog.+) EXCLUDED.__n".to_string()];
    let mut rescans: Vec<String> = Vec::new();
    let mut new_rescans: Vec<String> = Vec::new();
    for (total, sum) in signed_sums(alg)? {
        targets.push(total.clone());
        sums.push(sum);
        updates.push(format!("{total} = s.{total} OPERATOR(pg_catalog.+) EXCLUDED.{total}"));
    }
    // Over a join's rows, a row of sign +1 is certain to be there now
    // only from a term that reads one reference's change rows and the
    // other references as they are (`__pgt_now`, see join_totals::term);
    // any other row's value is doubtful, and treated as a deleted one: at
    // or beyond the extreme, the group is rescanned.
    let (inserted, doubtful) = if alg.join.is_some() {
        (
            "b.__sign OPERATOR(pg_catalog.>) 0 AND b.__pgt_now",
            "NOT (b.__sign OPERATOR(pg_catalog.>) 0 AND b.__pgt_now)",
        )
    } else {
        ("b.__sign OPERATOR(pg_catalog.>) 0", "b.__sign OPERATOR(pg_catalog.<) 0")
    };
    for a in alg.argument_columns() {
        let col = &argument(alg, a)?.sql;
        // Extremes: an inserted value may become the extreme; deleting a
        // value at (or beyond) the kept extreme marks the group for a
        // rescan.
        for (kept, deleted, agg, op, pick) in
            [("__min", "__dmin", "min", "<=", "LEAST"), ("__max", "__dmax", "max", ">=", "GREATEST")]
        {
            let wanted = if agg == "min" { alg.has_min(a) } else { alg.has_max(a) };
            if !wanted {
                continue;
            }
            targets.push(format!("{kept}{a}"));
            targets.push(format!("{deleted}{a}"));
            sums.push(format!("pg_catalog.{agg}({col}) FILTER (WHERE {inserted})"));
            sums.push(format!("pg_catalog.{agg}({col}) FILTER (WHERE {doubtful})"));
            updates.push(format!("{kept}{a} = {pick}(s.{kept}{a}, EXCLUDED.{kept}{a})"));
            updates.push(format!("{deleted}{a} = EXCLUDED.{deleted}{a}"));
            // Rescan when a deleted value is at or beyond the extreme the
            // group would otherwise have (the old one or an inserted one).
            rescans.push(format!(
                "COALESCE(EXCLUDED.{deleted}{a} {op} {pick}(s.{kept}{a}, EXCLUDED.{kept}{a}), \
                          EXCLUDED.{deleted}{a} IS NOT NULL)"
            ));
            new_rescans.push(format!("pg_catalog.{agg}({col}) FILTER (WHERE {doubtful}) IS NOT NULL"));
        }
    }
    if alg.has_extremes() {
        // A new group with deleted values (inserted and deleted within the
        // window) is rescanned too.
        targets.push("__rescan".into());
        sums.push(format!("COALESCE({}, false)", new_rescans.join(" OR ")));
        updates.push(format!("__rescan = s.__rescan OR {}", rescans.join(" OR ")));
    }
    let filter = filter.map(|w| format!(" WHERE {w}")).unwrap_or_default();
    let conflict = if state_keys.is_empty() { "(true)".to_string() } else { state_keys.join(", ") };
    Ok(format!(
        "INSERT INTO {state} AS s ({targets}) \
         SELECT {sums} FROM {from} b{filter}{group_by} \
         ON CONFLICT ({conflict}) DO UPDATE SET {updates}",
        state = state_name(relid),
        targets = targets.join(", "),
        sums = sums.join(", "),
        group_by = group_by(keys),
        updates = updates.join(", "),
    ))
}

/// Per argument `a` (alias `b`, signed by `b.__sign`), the sum of its
/// values `__s<a>` (when summed) and the count of its non-NULL values
/// `__c<a>` that signed rows add to the totals: (total, aggregate).
fn signed_sums(alg: &Algebraic) -> PgtResult<Vec<(String, String)>> {
    let mut out = Vec::new();
    for a in alg.argument_columns() {
        let arg = argument(alg, a)?;
        let col = &arg.sql;
        if alg.is_summed(a) {
            // (A sign times an int2 or int4 cannot overflow int8, whose sum
            // PostgreSQL accumulates in 128 bits: exact, and much cheaper
            // than numeric arithmetic per row.)
            let product = if matches!(arg.sql_type.as_str(), "integer" | "smallint") {
                format!("b.__sign::pg_catalog.int8 OPERATOR(pg_catalog.*) {col}::pg_catalog.int8")
            } else if non_finite(alg, a) {
                format!("b.__sign::pg_catalog.numeric OPERATOR(pg_catalog.*) ({})", finite_part(col))
            } else {
                format!("b.__sign::pg_catalog.numeric OPERATOR(pg_catalog.*) {col}::pg_catalog.numeric")
            };
            out.push((format!("__s{a}"), format!("COALESCE(pg_catalog.sum({product}), 0)")));
            if non_finite(alg, a) {
                for (total, value) in NON_FINITE {
                    out.push((
                        format!("{total}{a}"),
                        format!(
                            "COALESCE(pg_catalog.sum(CASE WHEN {col} OPERATOR(pg_catalog.=) '{value}'::pg_catalog.numeric \
                             THEN b.__sign ELSE 0 END), 0)"
                        ),
                    ));
                }
            }
        }
        out.push((
            format!("__c{a}"),
            format!("COALESCE(pg_catalog.sum(CASE WHEN {col} IS NULL THEN 0 ELSE b.__sign END), 0)"),
        ));
    }
    Ok(out)
}

/// The stream table's rows computed from the totals, every group (callers
/// restrict it to the affected ones).
pub fn totals_query(relid: pg_sys::Oid, plan: &Plan) -> PgtResult<Option<String>> {
    if plan.algebraic.is_none() {
        return Ok(None);
    }
    totals_from(relid, plan, &state_name(relid)).map(Some)
}

/// The stream table's rows computed from the totals in `from` (a table or
/// CTE with the state table's columns).
fn totals_from(relid: pg_sys::Oid, plan: &Plan, from: &str) -> PgtResult<String> {
    let alg = plan.algebraic.as_ref().ok_or_else(|| PgtError::Internal("no running totals".into()))?;
    let columns = output_columns(relid)?;
    let mut exprs = Vec::with_capacity(columns.len());
    for (i, (name, ty)) in columns.iter().enumerate() {
        let attnum = i as i16 + 1;
        let expr = if plan.key.iter().any(|k| k.output_attnum == attnum) {
            format!("s.{name}")
        } else if let Some(kind) = alg.aggregates.iter().find(|(a, _)| *a == attnum).map(|(_, k)| *k) {
            total_sql(alg, kind, ty)
        } else if let Some(d) = alg.derived.iter().find(|d| d.output == attnum) {
            format!("{}::{ty}", derived_sql(alg, d))
        } else {
            return Err(PgtError::Internal(format!("output {attnum} is neither key nor total")));
        };
        exprs.push(format!("{expr} AS {name}"));
    }
    Ok(format!("SELECT {} FROM {from} s WHERE {}", exprs.join(", "), has_row(plan)))
}

/// Whether the group of totals `s` has a row in the stream table: it has
/// rows and passes HAVING. (The one row of an aggregate without GROUP BY
/// is always there.)
fn has_row(plan: &Plan) -> String {
    if plan.key.is_empty() {
        return "true".into();
    }
    match plan.algebraic.as_ref().and_then(|alg| Some((alg, alg.having.as_ref()?))) {
        Some((alg, having)) => format!("s.__n OPERATOR(pg_catalog.>) 0 AND {}", derived_sql(alg, having)),
        None => "s.__n OPERATOR(pg_catalog.>) 0".into(),
    }
}

/// An expression over aggregates (see [`Derived`]), each computed from
/// the totals `s` in its own type in place of its placeholder.
fn derived_sql(alg: &Algebraic, d: &Derived) -> String {
    let values: std::collections::HashMap<i32, String> = d
        .parts
        .iter()
        .enumerate()
        .map(|(k, (kind, part_ty))| (PART_BASE + k as i32, format!("({})", total_sql(alg, *kind, part_ty))))
        .collect();
    format!("({})", replace_placeholders(&d.sql, &values))
}

/// An aggregate's value computed from a group's totals (alias `s`), as
/// type `ty`.
fn total_sql(alg: &Algebraic, kind: AggKind, ty: &str) -> String {
    // A numeric sum holding special values is what PostgreSQL's sum gives:
    // NaN with a NaN or both infinities, else the infinity.
    let special = |a: i16| -> String {
        if !non_finite(alg, a) {
            return String::new();
        }
        format!(
            " WHEN s.__nan{a} OPERATOR(pg_catalog.>) 0 \
                OR (s.__pinf{a} OPERATOR(pg_catalog.>) 0 AND s.__ninf{a} OPERATOR(pg_catalog.>) 0) \
              THEN 'NaN'::pg_catalog.numeric \
              WHEN s.__pinf{a} OPERATOR(pg_catalog.>) 0 THEN 'Infinity'::pg_catalog.numeric \
              WHEN s.__ninf{a} OPERATOR(pg_catalog.>) 0 THEN '-Infinity'::pg_catalog.numeric"
        )
    };
    match kind {
        AggKind::CountStar => format!("s.__n::{ty}"),
        AggKind::Count(a) => format!("s.__c{a}::{ty}"),
        AggKind::Sum(a) => format!(
            "(CASE WHEN s.__c{a} OPERATOR(pg_catalog.=) 0 THEN NULL{} ELSE s.__s{a} END)::{ty}",
            special(a)
        ),
        AggKind::Min(a) => format!("s.__min{a}::{ty}"),
        AggKind::Max(a) => format!("s.__max{a}::{ty}"),
        AggKind::Avg(a) => format!(
            "(CASE WHEN s.__c{a} OPERATOR(pg_catalog.=) 0 THEN NULL{} \
              ELSE s.__s{a} OPERATOR(pg_catalog./) s.__c{a}::pg_catalog.numeric END)::{ty}",
            special(a)
        ),
    }
}

/// The affected groups' rows, computed from the totals (for the apply).
pub fn recompute_sql(
    relid: pg_sys::Oid,
    plan: &Plan,
    groups: &[Vec<KeyValues>],
) -> PgtResult<Option<String>> {
    if plan.key.is_empty() {
        return totals_query(relid, plan);
    }
    Ok(totals_query(relid, plan)?.map(|q| format!("{q} AND ({})", groups_filter("s", groups))))
}

/// Make the state table follow its stream table's owner (before preparing
/// statements that run as that owner).
pub fn prepare_owner(relid: pg_sys::Oid) -> PgtResult<()> {
    match state_relid(relid)? {
        Some(state) => ensure_owner(relid, state),
        None => Ok(()),
    }
}

/// Forget the groups left without rows.
pub fn drop_empty(relid: pg_sys::Oid, plan: &Plan, groups: &[Vec<KeyValues>]) -> PgtResult<()> {
    if plan.key.is_empty() {
        return Ok(()); // the one row of an aggregate without GROUP BY stays
    }
    let owner = sys::relation_owner(relid)?;
    let sql = format!(
        "DELETE FROM {} s WHERE s.__n OPERATOR(pg_catalog.=) 0 AND ({})",
        state_name(relid),
        groups_filter("s", groups)
    );
    sys::as_restricted_role(owner, || {
        Spi::run(&sql)?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upsert_returns_the_groups_it_touched() {
        let keys = vec![("g".to_string(), "integer".to_string())];
        let sql = returning_groups("INSERT INTO t AS s (g) SELECT 1", &keys);
        assert_eq!(
            sql,
            "WITH u AS (INSERT INTO t AS s (g) SELECT 1 RETURNING s.g) SELECT \
             (pg_catalog.array_agg(DISTINCT u.g) FILTER (WHERE u.g IS NOT NULL))::text, \
             COALESCE(pg_catalog.bool_or(u.g IS NULL), false)::text FROM u"
        );
        let groups = groups_from_row(keys.clone(), &[Some("{1,2}".into()), Some("true".into())]);
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0][0].values.as_deref(), Some("{1,2}"));
        assert!(groups[0][0].has_null);
        // No row touched: no values, no NULL.
        let groups = groups_from_row(keys, &[None, Some("false".into())]);
        assert_eq!((groups[0][0].values.clone(), groups[0][0].has_null), (None, false));
        // Without GROUP BY: the upsert alone, no groups.
        assert_eq!(returning_groups("U", &[]), "U");
        // Kept extremes: whether a group was marked for a rescan, last.
        assert_eq!(
            returning_groups_marked("U", &[], Some("s.__rescan")),
            "WITH u AS (U RETURNING s.__rescan AS __pgt_mark) SELECT \
             COALESCE(pg_catalog.bool_or(u.__pgt_mark), false)::text FROM u"
        );
        assert!(groups_from_row(Vec::new(), &[]).is_empty());
    }
}
