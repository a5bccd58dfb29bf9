//! Change buffers: `pgtrickle_changes.changes_<source oid>`, one per source
//! that some stream table consumes.
//!
//! One row per statement and action: `__pgt_xid xid8` (writer's top-level
//! transaction), `__pgt_cid int8` (its command id: statement order inside
//! the transaction), `__pgt_time timestamptz` (transaction start),
//! `__pgt_action "char"` (`I` or `D`; an UPDATE writes a `D` row of its old
//! rows and an `I` row of its new ones), `__pgt_n int4` (how many changed
//! rows), then one array column `c<attnum>` for each source column a
//! consumer needs (its row identity), listed in
//! `pgtrickle.pgt_change_buffers.columns`: element `i` of every array is a
//! value of changed row `i`. Values of array types, and of types without
//! an array type, are kept as their text and cast back when read.
//! [`rows_sql`] unnests a buffer into one row per changed row, with the
//! same names; readers of changed rows go through it.
//!
//! Why arrays: a statement's rows are aggregated into a few arrays by
//! one `INSERT ... SELECT` (no per-row heap insert, and one tuple for the
//! whole statement to trim later). A 100,000-row INSERT took 80 ms to
//! write one buffer row per changed row and 15-20 ms as arrays, in the
//! same build. Narrow buffers keep that cost low too. The captured columns
//! are referenced by the consumers' queries, so PostgreSQL refuses to drop
//! or retype them; a rename changes nothing here (the capture statement is
//! rebuilt, see `capture`), and other columns of the source may change
//! freely. No indexes: readers scan a buffer that trimming keeps down to
//! the pending statements.
//!
//! Buffers are UNLOGGED: capture writes no WAL. Crash recovery empties them,
//! so each holds a sentinel row (`__pgt_action = 'S'`) written at creation;
//! a refresh that finds it missing knows changes may be lost and recomputes
//! in full (`check_sentinel`). Correctness survives a crash; only that one
//! refresh costs more.
//!
//! Buffers are members of the extension (pg_dump skips them, DROP EXTENSION
//! drops them) and are written only by the capture trigger, as the
//! extension's owner.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use pgrx::pg_sys;
use pgrx::prelude::*;

use super::frontier::{window_sql_literal, Frontier, RefreshSnapshot};
use crate::catalog::sys;
use crate::error::{PgtError, PgtResult};

pub const SCHEMA: &str = "pgtrickle_changes";
/// Number of bookkeeping columns before the source's columns.
pub const META_COLUMNS: usize = 4;

pub fn buffer_name(source: pg_sys::Oid) -> String {
    format!("{SCHEMA}.changes_{}", source.to_u32())
}

/// The buffer of a source, if it has one.
pub fn buffer_relid(source: pg_sys::Oid) -> PgtResult<Option<pg_sys::Oid>> {
    crate::catalog::sys::kept_one::<pg_sys::Oid>(
        "SELECT (SELECT buffer_relid FROM pgtrickle.pgt_change_buffers \
                  WHERE source_relid OPERATOR(pg_catalog.=) $1)",
        &[source.into()],
    )
}

/// SQL types (with collation) of some columns of a relation, by attnum,
/// and whether a buffer keeps their values as text (an array type, or a
/// type without an array type). Domains are replaced by their base types,
/// so writing a buffer (as the extension owner) never evaluates a user's
/// domain constraint; types are rendered schema-qualified (search_path =
/// pg_catalog while formatting).
fn column_types(relid: pg_sys::Oid, attnums: &[i16]) -> PgtResult<Vec<(i16, String, bool)>> {
    let _path = sys::SafeSearchPath::enter();
    Spi::connect(|c| {
        let rows = c.select(
            "WITH RECURSIVE base(attnum, typid, typmod, collid, depth) AS ( \
                 SELECT a.attnum, a.atttypid, a.atttypmod, a.attcollation, 0 \
                   FROM pg_catalog.pg_attribute a \
                  WHERE a.attrelid OPERATOR(pg_catalog.=) $1 AND a.attnum OPERATOR(pg_catalog.=) ANY ($2) \
                    AND NOT a.attisdropped \
               UNION ALL \
                 SELECT b.attnum, t.typbasetype, t.typtypmod, b.collid, b.depth + 1 \
                   FROM base b JOIN pg_catalog.pg_type t ON t.oid OPERATOR(pg_catalog.=) b.typid \
                  WHERE t.typtype OPERATOR(pg_catalog.=) 'd' AND b.depth OPERATOR(pg_catalog.<) 32) \
             SELECT b.attnum, \
                    pg_catalog.format_type(b.typid, b.typmod) \
                    || CASE WHEN b.collid OPERATOR(pg_catalog.<>) 0 \
                             AND b.collid OPERATOR(pg_catalog.<>) t.typcollation \
                            THEN ' COLLATE ' || pg_catalog.quote_ident(cn.nspname) || '.' \
                                 || pg_catalog.quote_ident(co.collname) ELSE '' END, \
                    t.typcategory OPERATOR(pg_catalog.=) 'A' OR t.typarray OPERATOR(pg_catalog.=) 0 \
               FROM base b \
               JOIN pg_catalog.pg_type t ON t.oid OPERATOR(pg_catalog.=) b.typid \
               LEFT JOIN pg_catalog.pg_collation co ON co.oid OPERATOR(pg_catalog.=) b.collid \
               LEFT JOIN pg_catalog.pg_namespace cn ON cn.oid OPERATOR(pg_catalog.=) co.collnamespace \
              WHERE t.typtype OPERATOR(pg_catalog.<>) 'd' \
              ORDER BY b.attnum",
            None,
            &[relid.into(), attnums.to_vec().into()],
        )?;
        let mut out = Vec::new();
        for row in rows {
            out.push((
                row.get::<i16>(1)?.unwrap_or_default(),
                row.get::<String>(2)?.unwrap_or_default(),
                row.get::<bool>(3)?.unwrap_or(true),
            ));
        }
        Ok(out)
    })
}

/// The source columns a buffer captures.
pub fn captured_columns(source: pg_sys::Oid) -> PgtResult<Vec<i16>> {
    Ok(crate::catalog::sys::kept_one::<Vec<i16>>(
        "SELECT (SELECT columns FROM pgtrickle.pgt_change_buffers \
                  WHERE source_relid OPERATOR(pg_catalog.=) $1)",
        &[source.into()],
    )?
    .unwrap_or_default())
}

/// Make sure `source` has a buffer capturing at least `needed` columns
/// (attnums). Creates it, or adds the missing columns (earlier rows get
/// NULL there: they predate the consumer that needs them, whose frontier
/// starts after them). The caller holds ShareRowExclusiveLock on the source.
pub fn ensure(source: pg_sys::Oid, needed: &[i16]) -> PgtResult<()> {
    let name = buffer_name(source);
    let existing = buffer_relid(source)?.map(|_| captured_columns(source)).transpose()?;
    let have = existing.clone().unwrap_or_default();
    let missing: Vec<i16> = needed.iter().copied().filter(|a| !have.contains(a)).collect();
    if existing.is_some() && missing.is_empty() {
        return Ok(());
    }
    let types = column_types(source, &missing)?;
    if types.len() != missing.len() {
        return Err(PgtError::Internal(format!("columns {missing:?} of {name}'s source not found")));
    }
    let mut all: Vec<i16> = have.iter().copied().chain(missing.iter().copied()).collect();
    all.sort_unstable();
    let _internal = crate::hooks::internal();
    sys::as_extension_owner(|| {
        match existing {
            None => {
                let mut ddl = format!(
                    "CREATE UNLOGGED TABLE {name} (__pgt_xid pg_catalog.xid8 NOT NULL, \
                     __pgt_cid pg_catalog.int8 NOT NULL, __pgt_time pg_catalog.timestamptz NOT NULL, \
                     __pgt_action pg_catalog.\"char\" NOT NULL, __pgt_n pg_catalog.int4 NOT NULL"
                );
                for column in &types {
                    ddl.push_str(&format!(", {}", array_column(column)));
                }
                ddl.push_str(
                    ") WITH (autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_insert_scale_factor = 0.02)",
                );
                Spi::run(&ddl)?;
                let buffer = Spi::get_one::<pg_sys::Oid>(&format!(
                    "SELECT '{name}'::pg_catalog.regclass::pg_catalog.oid"
                ))?
                .ok_or_else(|| PgtError::Internal("buffer not created".into()))?;
                sys::link_to_extension(buffer, sys::ExtensionLink::Membership)?;
                Spi::run(&sentinel_sql(source))?;
                crate::catalog::sys::kept_run(
                    "INSERT INTO pgtrickle.pgt_change_buffers (source_relid, buffer_relid, columns) \
                     VALUES ($1, $2, $3)",
                    &[source.into(), buffer.into(), all.clone().into()],
                )?;
            }
            Some(_) => {
                let adds: Vec<String> =
                    types.iter().map(|c| format!("ADD COLUMN {}", array_column(c))).collect();
                Spi::run(&format!("ALTER TABLE {name} {}", adds.join(", ")))?;
                crate::catalog::sys::kept_run(
                    "UPDATE pgtrickle.pgt_change_buffers SET columns = $2 \
                      WHERE source_relid OPERATOR(pg_catalog.=) $1",
                    &[source.into(), all.clone().into()],
                )?;
            }
        }
        Ok(())
    })?;
    super::capture::forget_plans();
    Ok(())
}

/// The definition of the array column of a captured source column. Kept
/// out of line and uncompressed: a bulk statement's arrays are written
/// once and read once.
fn array_column((attnum, ty, as_text): &(i16, String, bool)) -> String {
    let element = if *as_text { "pg_catalog.text" } else { ty.as_str() };
    // (A collation clause follows the array brackets.)
    let (base, collate) = match element.find(" COLLATE ") {
        Some(i) => (&element[..i], &element[i..]),
        None => (element, ""),
    };
    format!("c{attnum} {base}[]{collate} STORAGE EXTERNAL")
}

/// A captured column: attnum, SQL type of the source column, kept as text
/// in the buffer.
pub type CapturedType = (i16, String, bool);

/// The captured columns of `source`.
pub fn captured_types(source: pg_sys::Oid) -> PgtResult<Vec<CapturedType>> {
    column_types(source, &captured_columns(source)?)
}

/// One row per changed row of `source`'s buffer, as a FROM item exposing
/// `__pgt_xid`, `__pgt_cid`, `__pgt_time`, `__pgt_action` and a column
/// `c<attnum>` of the source column's type for each captured column (NULL
/// in rows written before it was captured).
pub fn rows_sql(source: pg_sys::Oid) -> PgtResult<String> {
    rows_of(
        source,
        None,
        "pg_catalog.generate_series(1, b.__pgt_n)",
        "b.__pgt_n OPERATOR(pg_catalog.=) 1",
        None,
        Kinds::Both,
    )
}

/// [`rows_sql`] with the columns of `source` with these attnums only
/// (unnesting each captured array costs, whether read or not), and the
/// planner told what [`count_rows_in`] found of the window's statement
/// rows (see cdc::estimate), instead of 1000 rows from each.
pub fn rows_sql_expecting(source: pg_sys::Oid, expected: &Expected, attnums: &[i16]) -> PgtResult<String> {
    let (series, single, per_single) = expectation_calls(expected);
    let kinds = match expected.single {
        s if s >= 1.0 => Kinds::Single,
        s if s <= 0.0 => Kinds::Several,
        _ => Kinds::Both,
    };
    rows_of(source, Some(attnums), &series, &single, Some(&per_single), kinds)
}

/// The calls of [`rows_sql_expecting`] that tell the planner what the
/// window's statement rows hold: the series numbering a statement row's
/// changed rows, the test for a statement row of one changed row, and the
/// series of one such row (see [`rows_of`]).
pub(crate) fn expectation_calls(expected: &Expected) -> (String, String, String) {
    (
        format!("pgtrickle._change_rows(b.__pgt_n, {})", expected.per_statement.max(1)),
        format!("pgtrickle._one_change(b.__pgt_n, '{}'::pg_catalog.float8)", expected.single),
        format!("pgtrickle._change_rows(1, {})", expected.per_single.max(1)),
    )
}

/// [`rows_sql`] over the captured columns in `only` (all without it),
/// `series` numbering each statement row's changed rows, `single_row` true
/// for a statement row of one changed row, which are read apart, through
/// `per_single` when given (a set-returning function of one row in the
/// select list, which the planner multiplies its estimate by).
fn rows_of(
    source: pg_sys::Oid,
    only: Option<&[i16]>,
    series: &str,
    single_row: &str,
    per_single: Option<&str>,
    kinds: Kinds,
) -> PgtResult<String> {
    if ROWS_STALE.with(|s| s.replace(false)) {
        ROWS_SQL.with(|c| c.borrow_mut().clear());
    }
    let columns = match ROWS_SQL.with(|c| c.borrow().get(&source.to_u32()).cloned()) {
        Some((_, columns)) => columns,
        None => {
            let buffer = buffer_relid(source)?;
            let columns = captured_types(source)?;
            // (Without a buffer, the statement fails when it is run.)
            if let Some(buffer) = buffer {
                ROWS_SQL.with(|c| c.borrow_mut().insert(source.to_u32(), (buffer.to_u32(), columns.clone())));
            }
            columns
        }
    };
    let mut select = String::new();
    let mut single = String::new();
    let mut outer = String::new();
    let mut unnests = Vec::new();
    let mut aliases = Vec::new();
    for (attnum, ty, as_text) in columns.iter().filter(|c| only.is_none_or(|o| o.contains(&c.0))) {
        if *as_text {
            select.push_str(&format!(", (u.c{attnum})::{ty} AS c{attnum}"));
            single.push_str(&format!(", (b.c{attnum}[1])::{ty} AS c{attnum}"));
        } else {
            select.push_str(&format!(", u.c{attnum}"));
            single.push_str(&format!(", b.c{attnum}[1] AS c{attnum}"));
        }
        outer.push_str(&format!(", c{attnum}"));
        unnests.push(format!("pg_catalog.unnest(b.c{attnum})"));
        aliases.push(format!("c{attnum}"));
    }
    // (The series gives each statement row its number of changed rows,
    // also when no column is captured; arrays a row lacks read as NULL.)
    unnests.push(series.to_string());
    aliases.push("__pgt_i".into());
    // A statement that changed one row (each of an OLTP workload's) is read
    // without unnesting: a function scan per buffer row built and dropped
    // a tuplestore for each, half of a refresh of 1000 such statements.
    let buffer = buffer_name(source);
    if let Some(per_single) = per_single {
        single.push_str(&format!(", {per_single} AS __pgt_i"));
    }
    let singles = format!(
        "SELECT __pgt_xid, __pgt_cid, __pgt_time, __pgt_action{outer} FROM \
           (SELECT b.__pgt_xid, b.__pgt_cid, b.__pgt_time, b.__pgt_action{single} \
              FROM {buffer} b WHERE {single_row}) AS __pgt_single"
    );
    let others = |only_others: bool| {
        format!(
            "SELECT b.__pgt_xid, b.__pgt_cid, b.__pgt_time, b.__pgt_action{select} \
               FROM {buffer} b CROSS JOIN LATERAL ROWS FROM ({}) AS u({}){}",
            unnests.join(", "),
            aliases.join(", "),
            if only_others { format!(" WHERE NOT {single_row}") } else { String::new() }
        )
    };
    // (A window of one kind of statement rows reads them one way only:
    // planning both costs more than reading the buffer twice.)
    Ok(match kinds {
        Kinds::Single => format!("({singles}) AS __pgt_rows"),
        Kinds::Several => format!("({}) AS __pgt_rows", others(false)),
        Kinds::Both => format!("({singles} UNION ALL {}) AS __pgt_rows", others(true)),
    })
}

/// The kinds of statement rows a window holds: of one changed row, of
/// other numbers, or both (or not known).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kinds {
    Single,
    Several,
    Both,
}

thread_local! {
    /// The captured columns' types per source, with its buffer, for
    /// [`rows_sql`]. Read from the catalogs (a recursive query over
    /// pg_type) at every refresh they cost more than reading a small
    /// window of changes.
    static ROWS_SQL: RefCell<HashMap<u32, (u32, Vec<CapturedType>)>> = RefCell::new(HashMap::new());
    static ROWS_STALE: Cell<bool> = const { Cell::new(false) };
}

/// A relation's relcache entry was invalidated (InvalidOid: all of them):
/// when it is a source or a buffer [`rows_sql`] was built for, forget
/// them all at the next use. Called while invalidations are processed,
/// so nothing is read or freed here. (The columns a buffer captures are
/// read by its consumers' queries, so PostgreSQL refuses to retype or
/// drop them; adding one alters the buffer.)
pub fn relcache_changed(relid: pg_sys::Oid) {
    let relid = relid.to_u32();
    let ours = relid == 0
        || ROWS_SQL.with(|c| match c.try_borrow() {
            Ok(c) => c.iter().any(|(source, (buffer, _))| *source == relid || *buffer == relid),
            Err(_) => true,
        });
    if ours {
        ROWS_STALE.with(|s| s.set(true));
    }
}

/// Forget every [`rows_sql`] kept (after DDL on buffers).
pub fn forget_rows_sql() {
    ROWS_STALE.with(|s| s.set(true));
}

/// The sentinel row: written when the buffer is created, never trimmed. An
/// unlogged table is emptied by crash recovery (and is empty on a promoted
/// standby); a buffer without its sentinel may have lost changes, so its
/// consumers must recompute (see [`check_sentinel`]).
fn sentinel_sql(source: pg_sys::Oid) -> String {
    format!(
        "INSERT INTO {} (__pgt_xid, __pgt_cid, __pgt_time, __pgt_action, __pgt_n) \
         VALUES ('0'::pg_catalog.xid8, 0, pg_catalog.now(), 'S', 0)",
        buffer_name(source)
    )
}

/// Is the buffer intact (sentinel present)? If not, put the sentinel back
/// and mark every consumer of the source for a FULL refresh (each of them
/// may have lost changes, not only the one that noticed), and return false.
pub fn check_sentinel(source: pg_sys::Oid) -> PgtResult<bool> {
    if buffer_relid(source)?.is_none() {
        return Ok(true);
    }
    let sql = format!(
        "SELECT EXISTS (SELECT 1 FROM {} WHERE __pgt_action OPERATOR(pg_catalog.=) 'S')",
        buffer_name(source)
    );
    sys::as_extension_owner(|| {
        if Spi::get_one::<bool>(&sql)?.unwrap_or(false) {
            return Ok(true);
        }
        Spi::run(&sentinel_sql(source))?;
        mark_truncated(source)?;
        Ok(false)
    })
}

/// Drop the buffer of `source` and forget it.
pub fn drop(source: pg_sys::Oid) -> PgtResult<()> {
    let Some(buffer) = buffer_relid(source)? else {
        return Ok(());
    };
    let _internal = crate::hooks::internal();
    sys::as_extension_owner(|| {
        // Forget it first: the DROP fires sql_drop event triggers, ours
        // included, which must not find it again.
        crate::catalog::sys::kept_run(
            "DELETE FROM pgtrickle.pgt_change_buffers WHERE source_relid OPERATOR(pg_catalog.=) $1",
            &[source.into()],
        )?;
        sys::unlink_from_extension(buffer, sys::ExtensionLink::Membership)?;
        Spi::run(&format!("DROP TABLE {}", buffer_name(source)))?;
        Ok(())
    })?;
    super::capture::forget_plans();
    Ok(())
}

/// Delete the rows every consumer of `source` has applied. A consumer without
/// a frontier (about to be refreshed in full) needs none of the committed
/// rows this statement can see. Runs on the refresh's snapshot when given.
pub fn trim(source: pg_sys::Oid, snapshot: Option<&RefreshSnapshot>) -> PgtResult<u64> {
    if buffer_relid(source)?.is_none() {
        return Ok(0);
    }
    // The frontiers of the stream tables consuming this source, read once
    // and written into the statement: a row goes when all have applied it.
    // (A frontier read here only moves forward later, so a concurrent
    // refresh of another consumer can only make this trim keep more.)
    let frontiers = sys::as_extension_owner(|| {
        sys::kept(
            "SELECT st.frontier::pg_catalog.text, st.frontier_xid::pg_catalog.text, st.frontier_cid \
               FROM pgtrickle.pgt_stream_tables st \
               JOIN pgtrickle.pgt_sources s ON s.relid OPERATOR(pg_catalog.=) st.relid \
              WHERE s.source_relid OPERATOR(pg_catalog.=) $1 AND st.consumes_changes \
                AND st.frontier IS NOT NULL",
            &[source.into()],
            |rows| {
                let mut out = Vec::new();
                for row in rows {
                    out.push(Frontier {
                        snapshot: row.get::<String>(1)?.unwrap_or_default(),
                        xid: row.get::<String>(2)?,
                        cid: row.get::<i64>(3)?.unwrap_or(0),
                    });
                }
                Ok(out)
            },
        )
    })?;
    let mut conditions = vec!["b.__pgt_action OPERATOR(pg_catalog.<>) 'S'".to_string()];
    conditions.extend(frontiers.iter().map(|f| window_sql_literal(f, None)));
    let sql = format!("DELETE FROM {} b WHERE {}", buffer_name(source), conditions.join(" AND "));
    sys::as_extension_owner(|| match snapshot {
        Some(s) => s.execute(&sql, false),
        None => Spi::connect_mut(|c| Ok(c.update(&sql, None, &[])?.len() as u64)),
    })
}

/// Record changes of a stream table that others read (its refresh computed
/// them): `rows` are (action `D`/`I`, then the `attnums` columns as text),
/// written in one statement with the refreshing transaction's identity.
pub fn write_rows(source: pg_sys::Oid, attnums: &[i16], rows: &[Vec<Option<String>>]) -> PgtResult<()> {
    let types = column_types(source, attnums)?;
    if types.len() != attnums.len() {
        return Err(PgtError::Internal("a captured column of the stream table is missing".into()));
    }
    let mut columns: crate::sql::TextRows = vec![Vec::with_capacity(rows.len()); attnums.len() + 1];
    for row in rows {
        for (i, column) in columns.iter_mut().enumerate() {
            column.push(row.get(i).cloned().flatten());
        }
    }
    let targets: String = attnums.iter().map(|a| format!(", c{a}")).collect();
    let values: String = types
        .iter()
        .enumerate()
        .map(|(i, (_, ty, as_text))| {
            if *as_text {
                format!(", pg_catalog.array_agg(u.v{i})")
            } else {
                format!(", pg_catalog.array_agg(u.v{i}::{ty})")
            }
        })
        .collect();
    let aliases: String = (0..attnums.len()).map(|i| format!(", v{i}")).collect();
    let params: String = (0..=attnums.len())
        .map(|i| format!("pg_catalog.unnest(${}::pg_catalog.text[])", i + 2))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "INSERT INTO {} (__pgt_xid, __pgt_cid, __pgt_time, __pgt_action, __pgt_n{targets}) \
         SELECT pg_catalog.pg_current_xact_id(), $1, pg_catalog.now(), u.a, pg_catalog.count(*){values} \
           FROM ROWS FROM ({params}) AS u(a{aliases}) GROUP BY u.a",
        buffer_name(source)
    );
    // SAFETY: reads backend-local transaction state.
    let cid = unsafe { pg_sys::GetCurrentCommandId(false) } as i64;
    let mut args: Vec<pgrx::datum::DatumWithOid> = vec![cid.into()];
    for column in columns {
        args.push(column.into());
    }
    Spi::run_with_args(&sql, &args)?;
    crate::worker::wake_at_commit();
    Ok(())
}

/// TRUNCATE on a source: its consumers need a FULL refresh. (Runs inside the
/// capture trigger, as the extension owner.)
pub fn mark_truncated(source: pg_sys::Oid) -> PgtResult<()> {
    crate::catalog::sys::kept_run(
        "UPDATE pgtrickle.pgt_stream_tables SET needs_full = true \
          WHERE consumes_changes AND relid IN ( \
                SELECT relid FROM pgtrickle.pgt_sources WHERE source_relid OPERATOR(pg_catalog.=) $1)",
        &[source.into()],
    )?;
    Ok(())
}

/// Rows of `source`'s buffer in the window between two frontiers, counted
/// on the refresh's snapshot.
pub fn count_window(
    source: pg_sys::Oid,
    snapshot: &RefreshSnapshot,
    new: &Frontier,
    old: Option<&Frontier>,
) -> PgtResult<i64> {
    if buffer_relid(source)?.is_none() {
        return Ok(0);
    }
    count_in(source, snapshot, &window_sql_literal(new, old))
}

/// What the planner is told of a window's statement rows (see
/// [`rows_sql_expecting`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Expected {
    /// The share of the statement rows holding one changed row.
    pub single: f64,
    /// What the planner's estimate of those is multiplied by.
    pub per_single: i64,
    /// The changed rows each of the others holds, as the planner
    /// estimates them.
    pub per_statement: i64,
}

/// Changed rows (inserted and deleted) of `source`'s buffer that pass
/// `window`, counted on the refresh's snapshot, and what the planner
/// should expect of the statement rows it reads (see [`Expected`]): the
/// share of those that hold one changed row (read apart, see [`rows_of`]),
/// and the factors that make its estimates of both kinds' statement rows
/// (which the window's condition makes a guess) the changed rows they
/// hold: one planning of their scan (see cdc::estimate).
pub fn count_rows_in(
    source: pg_sys::Oid,
    snapshot: &RefreshSnapshot,
    window: &str,
) -> PgtResult<(i64, Expected)> {
    let scan = format!("FROM {} WHERE __pgt_action IN ('I', 'D') AND {window}", buffer_name(source));
    sys::as_extension_owner(|| {
        let row = snapshot.query_text(&format!(
            "SELECT COALESCE(pg_catalog.sum(__pgt_n), 0), pg_catalog.count(*), \
                    pg_catalog.count(*) FILTER (WHERE __pgt_n OPERATOR(pg_catalog.=) 1) {scan}"
        ))?;
        let n = |i: usize| row.get(i).cloned().flatten().and_then(|n| n.parse::<i64>().ok()).unwrap_or(0);
        // All changed rows and statement rows, and the statement rows of
        // one changed row.
        let (count, statements, singles) = (n(0), n(1), n(2));
        // (One statement row: the planner's estimate is at least one.)
        if statements <= 1 {
            return Ok((count, expected(1.0, count, statements, singles)));
        }
        // (The first line of the plan is the scan's: "... rows=N width=...".)
        // (Not in a read-only execution, where EXPLAIN is refused.)
        let plan = snapshot.query_text_writing(&format!("EXPLAIN SELECT 1 {scan}"))?;
        let estimated = plan
            .first()
            .cloned()
            .flatten()
            .and_then(|line| {
                let rest = &line[line.find(" rows=")? + 6..];
                rest.split(|c: char| !c.is_ascii_digit()).next()?.parse::<f64>().ok()
            })
            .unwrap_or(1.0)
            .max(1.0);
        Ok((count, expected(estimated, count, statements, singles)))
    })
}

/// [`Expected`] of a window of `count` changed rows in `statements`
/// statement rows, `singles` of which hold one changed row, where the
/// planner estimates `estimated` statement rows (and takes the share
/// `Expected::single` of those to hold one changed row).
fn expected(estimated: f64, count: i64, statements: i64, singles: i64) -> Expected {
    let single = if statements == 0 { 1.0 } else { singles as f64 / statements as f64 };
    // (The planner estimates at least one row of each kind.)
    let factor = |rows: i64, share: f64| (rows as f64 / (estimated * share).max(1.0)).ceil().max(1.0) as i64;
    Expected {
        single,
        per_single: factor(singles, single),
        per_statement: factor(count - singles, 1.0 - single),
    }
}

/// Changed rows (inserted and deleted) of `source`'s buffer that pass
/// `window` (a window condition), counted on the refresh's snapshot from
/// the statement rows' counts.
pub fn count_in(source: pg_sys::Oid, snapshot: &RefreshSnapshot, window: &str) -> PgtResult<i64> {
    let sql = format!(
        "SELECT COALESCE(pg_catalog.sum(__pgt_n), 0) FROM {} WHERE __pgt_action IN ('I', 'D') AND {window}",
        buffer_name(source)
    );
    sys::as_extension_owner(|| {
        let row = snapshot.query_text(&sql)?;
        Ok(row.first().cloned().flatten().and_then(|n| n.parse().ok()).unwrap_or(0))
    })
}

/// Does `source`'s buffer hold a committed change that `frontier` has not
/// applied? (The scheduler's test for "something to do".)
pub fn has_unapplied(source: pg_sys::Oid, frontier: &Frontier) -> PgtResult<bool> {
    if buffer_relid(source)?.is_none() {
        return Ok(false);
    }
    let sql = format!(
        "SELECT EXISTS (SELECT 1 FROM {} WHERE __pgt_action OPERATOR(pg_catalog.<>) 'S' AND NOT {})",
        buffer_name(source),
        super::frontier::window_sql_literal(frontier, None)
    );
    sys::as_extension_owner(|| Ok(Spi::get_one::<bool>(&sql)?.unwrap_or(false)))
}

/// Age in seconds of the oldest committed change in `source`'s buffer that
/// `frontier` has not applied (by its writer's transaction start).
pub fn oldest_unapplied_age(source: pg_sys::Oid, frontier: &Frontier) -> PgtResult<Option<f64>> {
    if buffer_relid(source)?.is_none() {
        return Ok(None);
    }
    let sql = format!(
        "SELECT extract(epoch FROM pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) min(__pgt_time))::float8 \
           FROM {} WHERE __pgt_action OPERATOR(pg_catalog.<>) 'S' AND NOT {}",
        buffer_name(source),
        window_sql_literal(frontier, None)
    );
    sys::as_extension_owner(|| Ok(Spi::get_one::<f64>(&sql)?))
}

/// (pending rows, oldest pending change) of `source`'s buffer.
pub fn stats(source: pg_sys::Oid) -> PgtResult<(i64, Option<pgrx::datum::TimestampWithTimeZone>)> {
    let readable = crate::catalog::sys::kept_one::<bool>(
        "SELECT pg_catalog.has_table_privilege($1, 'SELECT')",
        &[source.into()],
    )?
    .unwrap_or(false);
    if !readable {
        return Err(PgtError::NoSourceAccess { name: crate::catalog::lifecycle::relation_name(source)? });
    }
    if buffer_relid(source)?.is_none() {
        return Ok((0, None));
    }
    let sql = format!(
        "SELECT COALESCE(sum(__pgt_n), 0)::int8, min(__pgt_time) FROM {} WHERE __pgt_action OPERATOR(pg_catalog.<>) 'S'",
        buffer_name(source)
    );
    sys::as_extension_owner(|| {
        let (n, t) = Spi::get_two::<i64, pgrx::datum::TimestampWithTimeZone>(&sql)?;
        Ok((n.unwrap_or(0), t))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_planner_is_told_the_rows_of_each_kind_of_statement_row() {
        // 1000 single-row statements, estimated at 5 statement rows.
        assert_eq!(
            expected(5.0, 1000, 1000, 1000),
            Expected { single: 1.0, per_single: 200, per_statement: 1 }
        );
        // Three bulk statements of 1000 rows, estimated at 2.
        assert_eq!(expected(2.0, 1000, 3, 0), Expected { single: 0.0, per_single: 1, per_statement: 500 });
        // 100 single-row statements and one of 1000 rows, estimated at 10:
        // 9.9 of them single, 0.1 (at least 1) the other.
        let e = expected(10.0, 1100, 101, 100);
        assert_eq!((e.per_single, e.per_statement), (11, 1000));
        // One statement row, or none.
        assert_eq!(expected(1.0, 700, 1, 0), Expected { single: 0.0, per_single: 1, per_statement: 700 });
        assert_eq!(expected(1.0, 1, 1, 1), Expected { single: 1.0, per_single: 1, per_statement: 1 });
        assert_eq!(expected(1.0, 0, 0, 0), Expected { single: 1.0, per_single: 1, per_statement: 1 });
    }
}
