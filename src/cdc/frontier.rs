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

/// A snapshot registered for the duration of one refresh.
pub struct RefreshSnapshot {
    snapshot: pg_sys::Snapshot,
}

impl RefreshSnapshot {
    /// Take the latest snapshot: it sees every committed transaction,
    /// whatever the isolation level of the refreshing transaction.
    pub fn take() -> RefreshSnapshot {
        // SAFETY: GetLatestSnapshot returns a static snapshot that the next
        // call overwrites; RegisterSnapshot copies it into one we own until
        // Drop unregisters it (or transaction abort releases it).
        let snapshot = unsafe { pg_sys::RegisterSnapshot(pg_sys::GetLatestSnapshot()) };
        RefreshSnapshot { snapshot }
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
                let rc = pg_sys::SPI_execute_snapshot(
                    plan,
                    std::ptr::null_mut(),
                    std::ptr::null(),
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
                let processed = pg_sys::SPI_processed;
                pg_sys::SPI_freeplan(plan);
                Ok(processed)
            }
        })
    }
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
}
