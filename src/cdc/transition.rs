//! The transition tables IMMEDIATE maintenance reads: the old and new rows
//! of the statement being maintained for, as PostgreSQL's ephemeral named
//! relations `__pgt_old` and `__pgt_new`.
//!
//! They are either a capture trigger's own transition tables (a statement
//! on a table), or tuplestores built from the rows an IMMEDIATE stream
//! table's maintenance just changed (a statement cascading to the IMMEDIATE
//! stream tables that read that stream table, which as a materialized view
//! cannot carry triggers). Whichever is current is registered in every SPI
//! connection the maintenance opens with [`connect`], so its statements
//! read them in place, typed; the row type is the changed relation's.

use std::cell::Cell;

use pgrx::pg_sys;
use pgrx::prelude::*;

use super::triggers::{NEW_TABLE, OLD_TABLE};
use crate::error::{PgtError, PgtResult};

/// The old and new rows of one statement on `relid` (null: none).
#[derive(Clone, Copy, Debug)]
pub struct Tables {
    relid: pg_sys::Oid,
    old: *mut pg_sys::Tuplestorestate,
    new: *mut pg_sys::Tuplestorestate,
}

impl Tables {
    const NONE: Tables =
        Tables { relid: pg_sys::InvalidOid, old: std::ptr::null_mut(), new: std::ptr::null_mut() };

    /// The transition tables of a trigger call.
    ///
    /// # Safety
    /// `trigdata` is the TriggerData of a trigger call in progress.
    pub unsafe fn of_trigger(trigdata: *mut pg_sys::TriggerData) -> Tables {
        // SAFETY: per the contract, trigdata and its relation are valid.
        unsafe {
            Tables {
                relid: (*(*trigdata).tg_relation).rd_id,
                old: (*trigdata).tg_oldtable,
                new: (*trigdata).tg_newtable,
            }
        }
    }

    /// Whether there are old rows, and new rows.
    pub fn holds_rows(&self) -> (bool, bool) {
        let (old, new) = self.counts();
        (old > 0, new > 0)
    }

    /// How many old rows and new rows there are.
    pub fn counts(&self) -> (i64, i64) {
        let count = |store: *mut pg_sys::Tuplestorestate| {
            if store.is_null() {
                0
            } else {
                // SAFETY: a non-null store of a live Tables (a trigger's, or
                // an Owned one not yet dropped).
                unsafe { pg_sys::tuplestore_tuple_count(store) }
            }
        };
        (count(self.old), count(self.new))
    }
}

thread_local! {
    /// The transition tables of the statement being maintained for
    /// (innermost, when a maintenance leads to another).
    static CURRENT: Cell<Tables> = const { Cell::new(Tables::NONE) };
}

/// How many old rows and new rows the current transition tables hold.
pub fn current_counts() -> (i64, i64) {
    CURRENT.with(|c| c.get().counts())
}

/// The relation whose row type the current transition tables have (the
/// table the statement wrote: a partition, when it names one).
pub fn current_relid() -> pg_sys::Oid {
    CURRENT.with(|c| c.get().relid)
}

/// Makes `Tables` the current ones until dropped (also when an error
/// unwinds), then restores the outer ones.
pub struct Current(Tables);

impl Current {
    /// # Safety
    /// The tables stay alive while the returned guard lives.
    pub unsafe fn enter(tables: Tables) -> Current {
        Current(CURRENT.with(|c| c.replace(tables)))
    }
}

impl Drop for Current {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.0));
    }
}

/// Run `f` in a new SPI connection in which the current transition tables
/// are registered as `__pgt_old` and `__pgt_new` (those there are).
pub fn connect<R>(f: impl FnOnce(&mut pgrx::spi::SpiClient<'_>) -> PgtResult<R>) -> PgtResult<R> {
    let tables = CURRENT.with(|c| c.get());
    if tables.relid == pg_sys::InvalidOid {
        return Err(PgtError::Internal("transition tables read outside a maintained statement".into()));
    }
    Spi::connect_mut(|c| {
        for (name, store) in [(OLD_TABLE, tables.old), (NEW_TABLE, tables.new)] {
            if !store.is_null() {
                // SAFETY: `store` belongs to the current tables, alive while
                // they are current (see `Current::enter`); the registration
                // is made in the connection connect_mut just opened, in its
                // memory, and ends with it.
                unsafe { register(name, tables.relid, store)? };
            }
        }
        f(c)
    })
}

/// Register `store` under `name` in the current SPI connection, with the
/// row type of `relid` (what SPI_register_trigger_data does for a trigger's
/// tables).
unsafe fn register(name: &str, relid: pg_sys::Oid, store: *mut pg_sys::Tuplestorestate) -> PgtResult<()> {
    let c_name = std::ffi::CString::new(name).map_err(|_| PgtError::Internal("NUL in a name".into()))?;
    // SAFETY: allocations in the SPI connection's memory context; the
    // metadata is filled as PostgreSQL's own registration fills it.
    unsafe {
        let enr = pg_sys::palloc0(std::mem::size_of::<pg_sys::EphemeralNamedRelationData>())
            as *mut pg_sys::EphemeralNamedRelationData;
        (*enr).md.name = pg_sys::pstrdup(c_name.as_ptr());
        (*enr).md.reliddesc = relid;
        (*enr).md.tupdesc = std::ptr::null_mut();
        (*enr).md.enrtype = pg_sys::EphemeralNameRelationType::ENR_NAMED_TUPLESTORE;
        (*enr).md.enrtuples = pg_sys::tuplestore_tuple_count(store) as f64;
        (*enr).reldata = store as *mut std::ffi::c_void;
        if pg_sys::SPI_register_relation(enr) != pg_sys::SPI_OK_REL_REGISTER as i32 {
            return Err(PgtError::Internal(format!("could not register the transition table {name}")));
        }
    }
    Ok(())
}

/// Transition tables of our own: the rows a stream table's maintenance
/// deleted and inserted, typed as its columns. Freed when dropped.
pub struct Owned(Tables);

impl Owned {
    /// Build them from `rows` (the action `'D'` or `'I'`, then each column
    /// of `relid` as text, in order), converted with `types` (each
    /// column's SQL type).
    pub fn from_rows(relid: pg_sys::Oid, types: &[String], rows: &crate::sql::TextRows) -> PgtResult<Owned> {
        let mut owned = Owned(Tables { relid, ..Tables::NONE });
        for action in ["D", "I"] {
            let part: Vec<&Vec<Option<String>>> =
                rows.iter().filter(|r| r.first().cloned().flatten().as_deref() == Some(action)).collect();
            if part.is_empty() {
                continue;
            }
            let args: Vec<pgrx::datum::DatumWithOid> = (1..=types.len())
                .map(|i| {
                    part.iter().map(|r| r.get(i).cloned().flatten()).collect::<Vec<Option<String>>>().into()
                })
                .collect();
            let unnests: Vec<String> =
                (1..=types.len()).map(|i| format!("pg_catalog.unnest(${i}::pg_catalog.text[])")).collect();
            let columns: Vec<String> =
                types.iter().enumerate().map(|(i, ty)| format!("u.v{i}::{ty}")).collect();
            let aliases: Vec<String> = (0..types.len()).map(|i| format!("v{i}")).collect();
            let sql = format!(
                "SELECT {} FROM ROWS FROM ({}) AS u({})",
                columns.join(", "),
                unnests.join(", "),
                aliases.join(", ")
            );
            // SAFETY: the store is created in the caller's memory context
            // (which outlives this Owned: it is freed on drop, before the
            // caller returns) and filled with copies of the result tuples.
            let store = unsafe { pg_sys::tuplestore_begin_heap(false, false, pg_sys::work_mem) };
            if action == "D" {
                owned.0.old = store;
            } else {
                owned.0.new = store;
            }
            Spi::connect(|c| {
                let table = c.select(&sql, None, &args)?;
                let _ = table.len();
                // SAFETY: SPI_tuptable is the result of the select just
                // run in this connection; its tuples are copied into the
                // store before the connection ends.
                unsafe {
                    let tuptable = pg_sys::SPI_tuptable;
                    if !tuptable.is_null() {
                        for i in 0..pg_sys::SPI_processed as usize {
                            pg_sys::tuplestore_puttuple(store, *(*tuptable).vals.add(i));
                        }
                    }
                }
                Ok::<_, PgtError>(())
            })?;
        }
        Ok(owned)
    }

    pub fn tables(&self) -> Tables {
        self.0
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        for store in [self.0.old, self.0.new] {
            if !store.is_null() {
                // SAFETY: created by from_rows and freed once, here.
                unsafe { pg_sys::tuplestore_end(store) };
            }
        }
    }
}

/// Run a read-only query over the current transition tables; its first
/// row, each column as text (its output function's).
pub fn first_row_text(sql: &str) -> PgtResult<Vec<Option<String>>> {
    connect(|c| {
        let table = c.select(sql, Some(1), &[])?;
        if table.is_empty() {
            return Ok(Vec::new());
        }
        // SAFETY: SPI_tuptable is the result of the select just run in
        // this connection, with at least one row; values are copied out
        // as Rust strings before the connection ends.
        unsafe {
            let tuptable = pg_sys::SPI_tuptable;
            let desc = (*tuptable).tupdesc;
            let tuple = *(*tuptable).vals;
            Ok((1..=(*desc).natts)
                .map(|col| crate::hooks::cstr(pg_sys::SPI_getvalue(tuple, desc, col)))
                .collect())
        }
    })
}
