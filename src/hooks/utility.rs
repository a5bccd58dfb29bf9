//! The ProcessUtility hook: entry point, chaining, and dispatch.

use std::ffi::c_char;

use pgrx::pg_sys;
use pgrx::prelude::*;

use super::{alter, create, in_internal, index, partitions, refresh};
use crate::error::PgtResult;

static mut PREV_PROCESS_UTILITY: pg_sys::ProcessUtility_hook_type = None;

pub(super) fn install() {
    // SAFETY: called once from _PG_init while the postmaster loads shared
    // libraries, before any backend runs a statement.
    unsafe {
        PREV_PROCESS_UTILITY = pg_sys::ProcessUtility_hook;
        pg_sys::ProcessUtility_hook = Some(pgt_process_utility);
    }
}

/// The hook's arguments, packed so handlers can pass the statement on.
pub(super) struct UtilityCall {
    pstmt: *mut pg_sys::PlannedStmt,
    query_string: *const c_char,
    read_only_tree: bool,
    context: pg_sys::ProcessUtilityContext::Type,
    params: pg_sys::ParamListInfo,
    query_env: *mut pg_sys::QueryEnvironment,
    dest: *mut pg_sys::DestReceiver,
    qc: *mut pg_sys::QueryCompletion,
}

impl UtilityCall {
    /// The statement as the parser produced it.
    pub fn stmt(&self) -> *mut pg_sys::Node {
        // SAFETY: ProcessUtility always receives a valid utility PlannedStmt.
        unsafe { (*self.pstmt).utilityStmt }
    }

    /// Hand the original statement to the next hook or to PostgreSQL.
    pub fn pass_through(&self) {
        // SAFETY: forwards exactly the arguments we were called with.
        unsafe { self.call_next(self.pstmt, self.read_only_tree) }
    }

    /// Hand a replacement statement (a copy we own) to the next hook.
    pub fn run_instead(&self, stmt: *mut pg_sys::Node) {
        // SAFETY: a shallow copy of the PlannedStmt with only utilityStmt
        // replaced; `stmt` is a fresh copy, so the tree is not read-only.
        unsafe {
            let copy = pg_sys::palloc(std::mem::size_of::<pg_sys::PlannedStmt>()) as *mut pg_sys::PlannedStmt;
            std::ptr::copy_nonoverlapping(self.pstmt, copy, 1);
            (*copy).utilityStmt = stmt;
            self.call_next(copy, false)
        }
    }

    /// Report "SELECT n", as PostgreSQL does for a populated CREATE
    /// MATERIALIZED VIEW (SPI relies on it).
    pub fn complete_as_select(&self, rows: u64) {
        if !self.qc.is_null() {
            // SAFETY: qc, when not NULL, points to the caller's completion.
            unsafe {
                (*self.qc).commandTag = pg_sys::CommandTag::CMDTAG_SELECT;
                (*self.qc).nprocessed = rows;
            }
        }
    }

    unsafe fn call_next(&self, pstmt: *mut pg_sys::PlannedStmt, read_only_tree: bool) {
        // SAFETY: PREV_PROCESS_UTILITY is only written in install(); the
        // arguments are the ones PostgreSQL handed us.
        unsafe {
            match PREV_PROCESS_UTILITY {
                Some(prev) => prev(
                    pstmt,
                    self.query_string,
                    read_only_tree,
                    self.context,
                    self.params,
                    self.query_env,
                    self.dest,
                    self.qc,
                ),
                None => pg_sys::standard_ProcessUtility(
                    pstmt,
                    self.query_string,
                    read_only_tree,
                    self.context,
                    self.params,
                    self.query_env,
                    self.dest,
                    self.qc,
                ),
            }
        }
    }
}

#[pg_guard]
#[allow(clippy::too_many_arguments)]
unsafe extern "C-unwind" fn pgt_process_utility(
    pstmt: *mut pg_sys::PlannedStmt,
    query_string: *const c_char,
    read_only_tree: bool,
    context: pg_sys::ProcessUtilityContext::Type,
    params: pg_sys::ParamListInfo,
    query_env: *mut pg_sys::QueryEnvironment,
    dest: *mut pg_sys::DestReceiver,
    qc: *mut pg_sys::QueryCompletion,
) {
    let call = UtilityCall { pstmt, query_string, read_only_tree, context, params, query_env, dest, qc };
    if let Err(e) = dispatch(&call) {
        e.report();
    }
}

fn dispatch(call: &UtilityCall) -> PgtResult<()> {
    // SAFETY: reads a backend-local flag set while an extension script runs.
    let in_extension_script = unsafe { pg_sys::creating_extension };
    if super::database::handle(call, call.stmt())? {
        return Ok(());
    }
    if in_internal() || in_extension_script {
        call.pass_through();
        return Ok(());
    }
    let stmt = call.stmt();
    // SAFETY: every utility statement is a Node with a valid tag.
    let tag = unsafe { (*stmt).type_ };
    match tag {
        pg_sys::NodeTag::T_CreateTableAsStmt => create::handle(call, stmt.cast()),
        pg_sys::NodeTag::T_RefreshMatViewStmt => refresh::handle(call, stmt.cast()),
        pg_sys::NodeTag::T_AlterTableStmt => {
            partitions::alter_table(call, stmt.cast(), || alter::handle(call, stmt.cast()))
        }
        pg_sys::NodeTag::T_CreateStmt => partitions::create_table(call, stmt.cast()),
        pg_sys::NodeTag::T_DropStmt => partitions::drop_tables(call, stmt.cast()),
        pg_sys::NodeTag::T_IndexStmt => index::handle(call, stmt.cast()),
        _ => {
            call.pass_through();
            Ok(())
        }
    }
}
