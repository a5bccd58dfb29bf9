//! Frontiers: up to where a stream table has applied its sources' changes.
//!
//! A refresh reads all of a stream table's sources up to **one** snapshot,
//! taken once at its start, so a transaction that wrote two sources is
//! applied whole or not at all. The frontier a refresh leaves behind is that
//! snapshot plus, when the refreshing transaction had written something
//! itself, its transaction id and the command id at which it refreshed:
//!
//! ```text
//! applied(row, F) = row.cid < F.cid                                if row.xid = F.xid
//!                 = pg_visible_in_snapshot(row.xid, F.snapshot)   otherwise
//! ```
//!
//! A row whose transaction was still running when the snapshot was taken is
//! not visible in it, so it is not applied, stays in the buffer, and is read
//! by the first refresh whose snapshot sees it: nothing is skipped, however
//! long the writer stays open, and nothing is applied twice. (A bound on a
//! sequence number cannot do this: numbers are handed out before commit, so
//! an open transaction's rows would fall below the bound.) The first clause
//! covers the refreshing transaction's own rows, which its snapshot shows to
//! it although `pg_visible_in_snapshot` (which asks "had it committed?") says
//! no: a transaction that writes a source, refreshes, and writes again has
//! its earlier rows applied and its later rows (same xid, later command id)
//! left for the next refresh.
//!
//! The window of a refresh is `applied(row, new) AND NOT applied(row, old)`.
//! Every statement of a refresh runs on the same registered snapshot (see
//! [`RefreshSnapshot::execute`]), including the recomputation of a FULL
//! refresh, so the contents and the frontier always agree.

use std::ffi::CString;

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::catalog::sys;
use crate::error::{PgtError, PgtResult};
use crate::sql::quote_literal;

/// A stored frontier (text forms of pg_snapshot and xid8).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frontier {
    pub snapshot: String,
    pub xid: Option<String>,
    pub cid: i64,
}

/// The SQL test for "row in the window between frontiers `old` and `new`",
/// with the frontiers written in as literals (statements run on a
/// [`RefreshSnapshot`] take no parameters).
pub fn window_sql_literal(new: &Frontier, old: Option<&Frontier>) -> String {
    let applied = |f: &Frontier| {
        format!(
            "pgtrickle._applied(__pgt_xid, __pgt_cid, {}::pg_catalog.pg_snapshot, {}::pg_catalog.xid8, {})",
            quote_literal(&f.snapshot),
            f.xid.as_deref().map(quote_literal).unwrap_or_else(|| "NULL".into()),
            f.cid
        )
    };
    match old {
        Some(old) => format!("{} AND NOT {}", applied(new), applied(old)),
        None => applied(new),
    }
}

/// A value taken out of a refresh statement as a parameter (see
/// [`parameterized`]).
#[derive(Clone, Debug, PartialEq)]
pub enum Param {
    /// A pg_snapshot, in its text form.
    Snapshot(String),
    /// An xid8 (NULL for None), in its text form.
    Xid8(Option<String>),
    Int8(i64),
    Float8(f64),
}

impl Param {
    fn type_oid(&self) -> pg_sys::Oid {
        match self {
            Param::Snapshot(_) => pg_sys::PG_SNAPSHOTOID,
            Param::Xid8(_) => pg_sys::XID8OID,
            Param::Int8(_) => pg_sys::INT8OID,
            Param::Float8(_) => pg_sys::FLOAT8OID,
        }
    }

    /// The value as a datum of its type (None for NULL); the text forms
    /// read by the type's input function (once per execution: on a
    /// generic plan a cast in the statement would parse them again at
    /// every buffer row).
    fn datum(&self) -> PgtResult<Option<pg_sys::Datum>> {
        use pgrx::IntoDatum;
        let text = match self {
            Param::Int8(n) => return Ok(n.into_datum()),
            Param::Float8(x) => return Ok(x.into_datum()),
            Param::Snapshot(t) => t,
            Param::Xid8(None) => return Ok(None),
            Param::Xid8(Some(t)) => t,
        };
        let c_text =
            CString::new(text.as_str()).map_err(|_| PgtError::Internal("value contains NUL".into()))?;
        let (mut input, mut ioparam) = (pg_sys::InvalidOid, pg_sys::InvalidOid);
        // SAFETY: looks up the input function of a built-in type and calls
        // it on a NUL-terminated string (a value pg_trickle read from
        // PostgreSQL in this type's text form); the datum is allocated in
        // the current memory context, which outlives the execution.
        unsafe {
            pg_sys::getTypeInputInfo(self.type_oid(), &mut input, &mut ioparam);
            Ok(Some(pg_sys::OidInputFunctionCall(input, c_text.as_ptr().cast_mut(), ioparam, -1)))
        }
    }
}

/// `sql` with the values that change from one refresh to the next written
/// as parameters `$1`, `$2`, ...: the frontiers of its window
/// ([`window_sql_literal`]) and what the planner is told of the window's
/// statement rows (`buffer::rows_sql_expecting`). None when it has no
/// window. The statement is then the same text at every refresh of a
/// stream table, prepared once per backend (see [`RefreshSnapshot`]).
pub fn parameterized(sql: &str) -> Option<(String, Vec<Param>)> {
    let mut out = String::with_capacity(sql.len());
    let mut params = Vec::new();
    let mut rest = sql;
    let mut windows = 0;
    let param = |p: Param, params: &mut Vec<Param>| -> String {
        params.push(p);
        format!("${}", params.len())
    };
    const APPLIED: &str = "pgtrickle._applied(__pgt_xid, __pgt_cid, ";
    const SERIES: &str = "pgtrickle._change_rows(";
    const SINGLE: &str = "pgtrickle._one_change(b.__pgt_n, ";
    loop {
        let next = [APPLIED, SERIES, SINGLE].iter().filter_map(|p| rest.find(p).map(|i| (i, *p))).min();
        let Some((at, prefix)) = next else { break };
        out.push_str(&rest[..at + prefix.len()]);
        rest = &rest[at + prefix.len()..];
        match prefix {
            APPLIED => {
                // '<snapshot>'::pg_catalog.pg_snapshot, '<xid>'|NULL::pg_catalog.xid8, <cid>)
                let (snapshot, after) = quoted(rest)?;
                let after = after.strip_prefix("::pg_catalog.pg_snapshot, ")?;
                let (xid, after) = match after.strip_prefix("NULL") {
                    Some(after) => (None, after),
                    None => {
                        let (xid, after) = quoted(after)?;
                        (Some(xid), after)
                    }
                };
                let after = after.strip_prefix("::pg_catalog.xid8, ")?;
                let end = after.find(')')?;
                let cid: i64 = after[..end].parse().ok()?;
                let a = param(Param::Snapshot(snapshot), &mut params);
                let b = param(Param::Xid8(xid), &mut params);
                let c = param(Param::Int8(cid), &mut params);
                out.push_str(&format!("{a}::pg_catalog.pg_snapshot, {b}::pg_catalog.xid8, {c})"));
                rest = &after[end + 1..];
                windows += 1;
            }
            SERIES => {
                // <first argument>, <n>)
                let comma = rest.find(", ")?;
                let end = rest.find(')')?;
                let n: i64 = rest.get(comma + 2..end)?.parse().ok()?;
                out.push_str(&rest[..comma + 2]);
                let a = param(Param::Int8(n), &mut params);
                out.push_str(&format!("{a})"));
                rest = &rest[end + 1..];
            }
            _ => {
                // '<share>'::pg_catalog.float8)
                let (share, after) = quoted(rest)?;
                let share: f64 = share.parse().ok()?;
                let after = after.strip_prefix("::pg_catalog.float8)")?;
                let a = param(Param::Float8(share), &mut params);
                out.push_str(&format!("{a})"));
                rest = after;
            }
        }
    }
    out.push_str(rest);
    (windows > 0).then_some((out, params))
}

/// The text of a SQL string literal at the start of `s` (no quotes inside)
/// and what follows it.
fn quoted(s: &str) -> Option<(String, &str)> {
    let body = s.strip_prefix('\'')?;
    let end = body.find('\'')?;
    if body[end + 1..].starts_with('\'') {
        return None;
    }
    Some((body[..end].to_string(), &body[end + 1..]))
}

/// A snapshot registered for the duration of one refresh.
pub struct RefreshSnapshot {
    snapshot: pg_sys::Snapshot,
    /// Whether the kept statements of the window being applied are
    /// planned for their values (see [`RefreshSnapshot::plan_for_changes`]).
    custom_plans: std::cell::Cell<bool>,
}

/// Changed rows in a window above which its kept statements are planned
/// for its values rather than run on their generic plans.
const GENERIC_PLAN_MAX_CHANGES: i64 = 10_000;

impl RefreshSnapshot {
    /// Take the latest snapshot: it sees every committed transaction,
    /// whatever the isolation level of the refreshing transaction.
    pub fn take() -> RefreshSnapshot {
        // SAFETY: GetLatestSnapshot returns a static snapshot that the next
        // call overwrites; RegisterSnapshot copies it into one we own until
        // Drop unregisters it (or transaction abort releases it).
        let snapshot = unsafe { pg_sys::RegisterSnapshot(pg_sys::GetLatestSnapshot()) };
        RefreshSnapshot { snapshot, custom_plans: std::cell::Cell::new(false) }
    }

    /// Plan the statements that apply a window of `changes` changed rows
    /// for it, or run them on their generic plans. A kept statement's
    /// generic plan (planned once per backend, without the window's
    /// values) skips a planning of each statement at every refresh, most
    /// of the time of a small window's (1000 changes: 2.5 -> 1.5 ms for
    /// a filter, 4.8 -> 2.9 for a GROUP BY); the planner hints of a
    /// large window (how many rows its statement rows hold) are worth the
    /// planning: they choose between nested loops and hash joins.
    pub fn plan_for_changes(&self, changes: i64) {
        self.custom_plans.set(changes > GENERIC_PLAN_MAX_CHANGES);
    }

    /// The frontier this snapshot stands for.
    pub fn frontier(&self) -> PgtResult<Frontier> {
        let row = self.query_text(
            "SELECT pg_catalog.pg_current_snapshot()::text, pg_catalog.pg_current_xact_id_if_assigned()::text",
        )?;
        let snapshot =
            row.first().cloned().flatten().ok_or_else(|| PgtError::Internal("no snapshot".into()))?;
        // SAFETY: reads backend-local transaction state.
        let cid = unsafe { pg_sys::GetCurrentCommandId(false) } as i64;
        Ok(Frontier { snapshot, xid: row.get(1).cloned().flatten(), cid })
    }

    /// Run one SQL statement on this snapshot (a private copy whose command
    /// id advances when `read_only` is false); returns rows processed.
    pub fn execute(&self, sql: &str, read_only: bool) -> PgtResult<u64> {
        self.run(sql, read_only, |_| ())
    }

    /// Run a query on this snapshot; the first row's columns as text.
    pub fn query_text(&self, sql: &str) -> PgtResult<Vec<Option<String>>> {
        self.query_text_with(sql, true)
    }

    /// Like [`Self::query_text`], for a statement that writes (data-modifying
    /// WITH): it runs on a copy of the snapshot whose command id advances.
    pub fn query_text_writing(&self, sql: &str) -> PgtResult<Vec<Option<String>>> {
        self.query_text_with(sql, false)
    }

    fn query_text_with(&self, sql: &str, read_only: bool) -> PgtResult<Vec<Option<String>>> {
        Ok(self.rows_text(sql, read_only, Some(1))?.into_iter().next().unwrap_or_default())
    }

    /// Every row of a query's result, columns as text.
    pub fn query_rows(&self, sql: &str) -> PgtResult<crate::sql::TextRows> {
        self.rows_text(sql, true, None)
    }

    /// Every row of a writing statement's result, columns as text.
    pub fn query_rows_writing(&self, sql: &str) -> PgtResult<crate::sql::TextRows> {
        self.rows_text(sql, false, None)
    }

    fn rows_text(&self, sql: &str, read_only: bool, limit: Option<u64>) -> PgtResult<crate::sql::TextRows> {
        let mut out = Vec::new();
        self.run(sql, read_only, |tuptable| {
            // SAFETY: called only with the SPI_tuptable of a successful
            // statement; it holds SPI_processed rows.
            unsafe {
                if tuptable.is_null() {
                    return;
                }
                let n = limit.map_or(pg_sys::SPI_processed, |l| l.min(pg_sys::SPI_processed));
                let desc = (*tuptable).tupdesc;
                for r in 0..n as usize {
                    let tuple = *(*tuptable).vals.add(r);
                    let row = (1..=(*desc).natts)
                        .map(|col| crate::hooks::cstr(pg_sys::SPI_getvalue(tuple, desc, col)))
                        .collect();
                    out.push(row);
                }
            }
        })?;
        Ok(out)
    }

    fn run(
        &self,
        sql: &str,
        read_only: bool,
        mut read: impl FnMut(*mut pg_sys::SPITupleTable),
    ) -> PgtResult<u64> {
        if let Some((text, params)) = parameterized(sql) {
            return self.run_kept(&text, &params, read_only, read);
        }
        let c_sql = CString::new(sql).map_err(|_| PgtError::Internal("SQL contains NUL".into()))?;
        Spi::connect_mut(|_client| {
            // SAFETY: inside an SPI connection (Spi::connect_mut); the plan
            // is prepared and executed in it, with our registered snapshot;
            // results are read before the connection closes.
            unsafe {
                let plan = pg_sys::SPI_prepare(c_sql.as_ptr(), 0, std::ptr::null_mut());
                if plan.is_null() {
                    return Err(PgtError::Internal(format!("could not prepare: {sql}")));
                }
                let processed = self.execute_plan(
                    plan,
                    std::ptr::null_mut(),
                    std::ptr::null(),
                    read_only,
                    sql,
                    &mut read,
                );
                pg_sys::SPI_freeplan(plan);
                processed
            }
        })
    }

    /// Execute `plan` on this snapshot with parameter values `values` and
    /// null flags `nulls` (null pointers for none), and hand its result to
    /// `read`; returns the rows processed.
    ///
    /// # Safety
    /// Inside an SPI connection in which `plan` was prepared or that it
    /// was kept for; `values` and `nulls` hold one entry per parameter of
    /// `plan`.
    unsafe fn execute_plan(
        &self,
        plan: pg_sys::SPIPlanPtr,
        values: *mut pg_sys::Datum,
        nulls: *const std::ffi::c_char,
        read_only: bool,
        sql: &str,
        read: &mut impl FnMut(*mut pg_sys::SPITupleTable),
    ) -> PgtResult<u64> {
        // SAFETY: see the function's contract; the result is read before
        // the connection closes.
        unsafe {
            let rc = pg_sys::SPI_execute_snapshot(
                plan,
                values,
                nulls,
                self.snapshot,
                std::ptr::null_mut(),
                read_only,
                true,
                0,
            );
            if rc < 0 {
                return Err(PgtError::Internal(format!("SPI error {rc} running: {sql}")));
            }
            read(pg_sys::SPI_tuptable);
            Ok(pg_sys::SPI_processed)
        }
    }
}

impl RefreshSnapshot {
    /// [`RefreshSnapshot::run`] of a [`parameterized`] statement, prepared
    /// once per backend and kept: run on its generic plan (a refresh runs
    /// under `sys::generic_plans`), or planned for its values when the
    /// window is large (see [`RefreshSnapshot::plan_for_changes`]). Saves the parsing, analysis
    /// and (mostly) planning of long statements at every refresh;
    /// PostgreSQL's plan cache analyzes and plans it again when a table it
    /// reads changes.
    fn run_kept(
        &self,
        sql: &str,
        params: &[Param],
        read_only: bool,
        mut read: impl FnMut(*mut pg_sys::SPITupleTable),
    ) -> PgtResult<u64> {
        Spi::connect_mut(|_client| {
            let plan = match KEPT_PLANS.with(|k| k.borrow().get(sql).copied()) {
                Some(plan) => plan,
                None => {
                    let c_sql =
                        CString::new(sql).map_err(|_| PgtError::Internal("SQL contains NUL".into()))?;
                    let mut types: Vec<pg_sys::Oid> = params.iter().map(Param::type_oid).collect();
                    // SAFETY: inside an SPI connection; SPI_keepplan moves
                    // the plan out of it, into the backend's cache memory.
                    let plan = unsafe {
                        let plan =
                            pg_sys::SPI_prepare(c_sql.as_ptr(), types.len() as i32, types.as_mut_ptr());
                        if plan.is_null() {
                            return Err(PgtError::Internal(format!("could not prepare: {sql}")));
                        }
                        pg_sys::SPI_keepplan(plan);
                        plan
                    };
                    KEPT_PLANS.with(|k| {
                        let mut k = k.borrow_mut();
                        if k.len() >= KEPT_PLANS_MAX {
                            for (_, old) in k.drain() {
                                // SAFETY: a kept plan no one else holds.
                                unsafe { pg_sys::SPI_freeplan(old) };
                            }
                        }
                        k.insert(sql.to_string(), plan);
                    });
                    plan
                }
            };
            let mut values: Vec<pg_sys::Datum> = Vec::with_capacity(params.len());
            let mut nulls: Vec<std::ffi::c_char> = Vec::with_capacity(params.len());
            for p in params {
                let datum = p.datum()?;
                nulls.push(if datum.is_some() { b' ' } else { b'n' } as std::ffi::c_char);
                values.push(datum.unwrap_or(pg_sys::Datum::from(0)));
            }
            // (plan_cache_mode decides, before any cursor option of the
            // statement's: forced generic by the refresh, custom here.)
            let _custom = self.custom_plans.get().then(sys::custom_plans);
            // SAFETY: inside the SPI connection; the plan is kept and takes
            // these parameters, one value and null flag each.
            unsafe { self.execute_plan(plan, values.as_mut_ptr(), nulls.as_ptr(), read_only, sql, &mut read) }
        })
    }
}

/// Parameterized refresh statements kept at once per backend (all are
/// dropped when more are needed: stream tables whose statements changed).
const KEPT_PLANS_MAX: usize = 128;

thread_local! {
    /// Kept plans of [`parameterized`] refresh statements, by their text.
    static KEPT_PLANS: std::cell::RefCell<std::collections::HashMap<String, pg_sys::SPIPlanPtr>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

impl Drop for RefreshSnapshot {
    fn drop(&mut self) {
        // SAFETY: registered in `take` and unregistered once. During error
        // unwinding the resource owner may already have released it; only
        // unregister while the transaction is still healthy.
        unsafe {
            if pg_sys::IsTransactionState() && !pg_sys::IsAbortedTransactionBlockState() {
                pg_sys::UnregisterSnapshot(self.snapshot);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_window() {
        let new = Frontier { snapshot: "10:12:11".into(), xid: Some("12".into()), cid: 3 };
        let old = Frontier { snapshot: "5:5:".into(), xid: None, cid: 0 };
        assert_eq!(
            window_sql_literal(&new, Some(&old)),
            "pgtrickle._applied(__pgt_xid, __pgt_cid, '10:12:11'::pg_catalog.pg_snapshot, '12'::pg_catalog.xid8, 3) \
             AND NOT pgtrickle._applied(__pgt_xid, __pgt_cid, '5:5:'::pg_catalog.pg_snapshot, NULL::pg_catalog.xid8, 0)"
        );
        assert!(!window_sql_literal(&new, None).contains("NOT"));
    }

    #[test]
    fn parameterized_window_and_estimates() {
        let new = Frontier { snapshot: "10:12:11".into(), xid: Some("12".into()), cid: 3 };
        let old = Frontier { snapshot: "5:5:".into(), xid: None, cid: 0 };
        // (The calls as the buffer's rows query writes them.)
        let expected = crate::cdc::buffer::Expected { single: 0.25, per_single: 2, per_statement: 40 };
        let (series, single, per_single) = crate::cdc::buffer::expectation_calls(&expected);
        let sql = format!(
            "SELECT 1 FROM {series} x, {per_single} y WHERE {single} AND {} AND v = 'it''s'",
            window_sql_literal(&new, Some(&old))
        );
        let (text, params) = parameterized(&sql).unwrap();
        assert_eq!(
            text,
            "SELECT 1 FROM pgtrickle._change_rows(b.__pgt_n, $1) x, pgtrickle._change_rows(1, $2) y \
             WHERE pgtrickle._one_change(b.__pgt_n, $3) AND \
             pgtrickle._applied(__pgt_xid, __pgt_cid, $4::pg_catalog.pg_snapshot, $5::pg_catalog.xid8, $6) \
             AND NOT pgtrickle._applied(__pgt_xid, __pgt_cid, $7::pg_catalog.pg_snapshot, $8::pg_catalog.xid8, $9) \
             AND v = 'it''s'"
        );
        assert_eq!(
            params,
            vec![
                Param::Int8(40),
                Param::Int8(2),
                Param::Float8(0.25),
                Param::Snapshot("10:12:11".into()),
                Param::Xid8(Some("12".into())),
                Param::Int8(3),
                Param::Snapshot("5:5:".into()),
                Param::Xid8(None),
                Param::Int8(0),
            ]
        );
        // The same statement at another refresh: the same text.
        let again =
            sql.replace("'10:12:11'", "'20:25:21,22'").replace("'12'", "NULL").replace(", 40)", ", 7)");
        assert_eq!(parameterized(&again).unwrap().0, text);
        assert!(parameterized("SELECT 1").is_none());
    }
}
