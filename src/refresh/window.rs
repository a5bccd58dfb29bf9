//! The maintenance window: the only way rows are written into a stream
//! table.
//!
//! PostgreSQL's executor refuses INSERT/UPDATE/DELETE on a materialized view
//! in `CheckValidResultRel()`, unless core's private `matview_maintenance_depth`
//! is raised, which an extension cannot reach. While [`with_window`] runs,
//! our ExecutorStart hook presents the one stream table under maintenance as
//! an ordinary table (`relkind = 'r'` in its relcache entry) for the duration
//! of `standard_ExecutorStart` only, and restores `'m'` right after, on
//! success and on error. Parse analysis, rewriting and planning still see a
//! materialized view, and user DML on stream tables stays refused.

use std::cell::Cell;

use pgrx::pg_sys;
use pgrx::prelude::*;

thread_local! {
    static UNDER_MAINTENANCE: Cell<Option<pg_sys::Oid>> = const { Cell::new(None) };
}

static mut PREV_EXECUTOR_START: pg_sys::ExecutorStart_hook_type = None;

pub fn init() {
    // SAFETY: called once from _PG_init, before any query runs.
    unsafe {
        PREV_EXECUTOR_START = pg_sys::ExecutorStart_hook;
        pg_sys::ExecutorStart_hook = Some(pgt_executor_start);
    }
}

/// Run `f` with `relid` writable by the statements `f` executes.
pub fn with_window<R>(relid: pg_sys::Oid, f: impl FnOnce() -> R) -> R {
    struct Close(Option<pg_sys::Oid>);
    impl Drop for Close {
        fn drop(&mut self) {
            UNDER_MAINTENANCE.with(|w| w.set(self.0));
        }
    }
    let previous = UNDER_MAINTENANCE.with(|w| w.replace(Some(relid)));
    let _close = Close(previous);
    f()
}

/// Restores a flipped relkind and releases the relcache reference.
struct Flip(pg_sys::Relation);

impl Drop for Flip {
    fn drop(&mut self) {
        // SAFETY: the relation was opened with RelationIdGetRelation and is
        // still referenced by us; restoring the catalog value.
        unsafe {
            (*(*self.0).rd_rel).relkind = pg_sys::RELKIND_MATVIEW as std::ffi::c_char;
            pg_sys::RelationClose(self.0);
        }
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn pgt_executor_start(query_desc: *mut pg_sys::QueryDesc, eflags: i32) {
    let flip = UNDER_MAINTENANCE.with(|w| w.get()).and_then(|relid| {
        // SAFETY: RelationIdGetRelation returns a referenced relcache entry
        // or NULL; the entry stays valid while referenced.
        let rel = unsafe { pg_sys::RelationIdGetRelation(relid) };
        if rel.is_null() {
            return None;
        }
        // SAFETY: rd_rel of an open relcache entry is valid.
        unsafe {
            if (*(*rel).rd_rel).relkind as u8 != pg_sys::RELKIND_MATVIEW {
                pg_sys::RelationClose(rel);
                return None;
            }
            (*(*rel).rd_rel).relkind = pg_sys::RELKIND_RELATION as std::ffi::c_char;
        }
        Some(Flip(rel))
    });
    // SAFETY: forwards PostgreSQL's arguments to the next hook or standard.
    unsafe {
        match PREV_EXECUTOR_START {
            Some(prev) => prev(query_desc, eflags),
            None => pg_sys::standard_ExecutorStart(query_desc, eflags),
        }
    }
    drop(flip);
}
