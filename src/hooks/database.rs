//! `DROP DATABASE`, `CREATE DATABASE … TEMPLATE`, `ALTER DATABASE`,
//! `ALTER DATABASE … RENAME`: these need the database free of other
//! sessions, and a pg_trickle scheduler is one. Its scheduler is stopped and
//! kept stopped while the statement runs, then may start again (for a
//! dropped database, it does not).

use pgrx::pg_sys;

use super::utility::UtilityCall;
use crate::error::PgtResult;
use crate::worker;

/// The database a statement needs free of sessions, if any.
fn database_needed_free(stmt: *mut pg_sys::Node) -> Option<String> {
    // SAFETY: the tag tells the node type; names are NUL-terminated strings
    // of the statement tree, alive for the whole statement.
    unsafe {
        match (*stmt).type_ {
            pg_sys::NodeTag::T_DropdbStmt => super::cstr((*(stmt as *mut pg_sys::DropdbStmt)).dbname),
            pg_sys::NodeTag::T_AlterDatabaseStmt => {
                super::cstr((*(stmt as *mut pg_sys::AlterDatabaseStmt)).dbname)
            }
            pg_sys::NodeTag::T_RenameStmt => {
                let rename = stmt as *mut pg_sys::RenameStmt;
                if (*rename).renameType == pg_sys::ObjectType::OBJECT_DATABASE {
                    super::cstr((*rename).subname)
                } else {
                    None
                }
            }
            pg_sys::NodeTag::T_CreatedbStmt => {
                let create = stmt as *mut pg_sys::CreatedbStmt;
                super::list_ptrs::<pg_sys::DefElem>((*create).options)
                    .into_iter()
                    .find(|&d| super::cstr((*d).defname).is_some_and(|n| n == "template"))
                    .and_then(|d| {
                        let arg = (*d).arg;
                        if !arg.is_null() && (*arg).type_ == pg_sys::NodeTag::T_String {
                            super::cstr((*(arg as *mut pg_sys::String)).sval)
                        } else {
                            None
                        }
                    })
            }
            _ => None,
        }
    }
}

/// The name of the database a CREATE DATABASE creates.
fn created_database(stmt: *mut pg_sys::Node) -> Option<String> {
    // SAFETY: as in database_needed_free.
    unsafe {
        ((*stmt).type_ == pg_sys::NodeTag::T_CreatedbStmt)
            .then(|| super::cstr((*(stmt as *mut pg_sys::CreatedbStmt)).dbname))
            .flatten()
    }
}

/// Handle the statement if it is one of ours; false otherwise.
pub(super) fn handle(call: &UtilityCall, stmt: *mut pg_sys::Node) -> PgtResult<bool> {
    let created = created_database(stmt);
    let needed_free = database_needed_free(stmt);
    if created.is_none() && needed_free.is_none() {
        return Ok(false);
    }
    // A dropped database's scheduler must not be started again before the
    // drop commits (it would find no database); the others restart soon.
    // SAFETY: every utility statement is a Node with a valid tag.
    let dropping = unsafe { (*stmt).type_ == pg_sys::NodeTag::T_DropdbStmt };
    let delay = if dropping { 2_000 } else { 500 };
    match needed_free.as_deref().and_then(worker::sys::database_oid) {
        Some(dboid) => worker::with_scheduler_stopped(dboid, delay, || call.pass_through()),
        None => call.pass_through(),
    }
    // A copy of a template with pg_trickle has it too: its scheduler starts
    // when the new database is committed.
    if let Some(dboid) = created.as_deref().and_then(worker::sys::database_oid) {
        worker::request_at_commit_for(dboid);
    }
    Ok(true)
}
