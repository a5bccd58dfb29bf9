//! `ALTER MATERIALIZED VIEW name SET (pgtrickle.… = …)` / `RESET (…)`
//!
//! Our options are taken out of the statement and applied by
//! [`lifecycle::alter`]; whatever remains is PostgreSQL's. Because
//! PostgreSQL validates the *merged* reloptions on SET/RESET and does not know
//! ours, a statement that also changes PostgreSQL's own options on a stream
//! table runs with our entries briefly removed and then written back.
//!
//! RENAME, SET SCHEMA and OWNER TO need nothing from us: the catalog refers
//! to stream tables by OID.

use pgrx::pg_sys;

use super::nodes::{copy_node, list_from_ptrs, list_ptrs, range_var_relid, split_options};
use super::utility::UtilityCall;
use crate::catalog::options::{is_our_reloption, OptionChange};
use crate::catalog::{lifecycle, stream_tables, sys};
use crate::error::{PgtError, PgtResult};

fn is_reloption_cmd(subtype: pg_sys::AlterTableType::Type) -> Option<bool> {
    match subtype {
        pg_sys::AlterTableType::AT_SetRelOptions => Some(false),
        pg_sys::AlterTableType::AT_ResetRelOptions => Some(true),
        _ => None,
    }
}

pub(super) fn handle(call: &UtilityCall, stmt: *mut pg_sys::AlterTableStmt) -> PgtResult<()> {
    // SAFETY: the dispatcher checked the tag; cmds is a List of AlterTableCmd.
    let cmds = unsafe { list_ptrs::<pg_sys::AlterTableCmd>((*stmt).cmds) };
    let touches_reloptions = cmds.iter().any(|&c| {
        // SAFETY: each element is an AlterTableCmd.
        is_reloption_cmd(unsafe { (*c).subtype }).is_some()
    });
    if !touches_reloptions || sys::extension_oid().is_none() {
        call.pass_through();
        return Ok(());
    }

    // Collect our changes; note whether PostgreSQL has anything left to do.
    let mut ours: Vec<OptionChange> = Vec::new();
    let mut pg_has_work = false;
    for &cmd in &cmds {
        // SAFETY: each element is an AlterTableCmd; `def` of a reloptions
        // command is a List of DefElem.
        let subtype = unsafe { (*cmd).subtype };
        match is_reloption_cmd(subtype) {
            Some(is_reset) => {
                let (mine, theirs) = unsafe { split_options((*cmd).def.cast(), is_reset) };
                ours.extend(mine);
                pg_has_work |= !theirs.is_empty();
            }
            None => pg_has_work = true,
        }
    }
    // SAFETY: `relation` is the statement's RangeVar.
    let relid = unsafe { range_var_relid((*stmt).relation) };
    let is_stream = match relid {
        Some(r) => stream_tables::exists(r)?,
        None => false,
    };
    if ours.is_empty() && !is_stream {
        call.pass_through();
        return Ok(());
    }
    let Some(relid) = relid else {
        // Let PostgreSQL report the missing relation (or honour IF EXISTS);
        // our options would make it fail on "unrecognized parameter
        // namespace" first, so strip them.
        call.run_instead(strip_our_options(stmt).cast());
        return Ok(());
    };
    // SAFETY: plain syscache read.
    let relkind = unsafe { pg_sys::get_rel_relkind(relid) } as u8;
    if !ours.is_empty() && relkind != pg_sys::RELKIND_MATVIEW {
        return Err(PgtError::NotAMatview { name: lifecycle::relation_name(relid)? });
    }

    if pg_has_work {
        // Run PostgreSQL's part with our reloptions entries out of its way.
        sys::lock_relation(relid, pg_sys::ShareUpdateExclusiveLock);
        let saved = sys::read_reloptions(relid)?;
        let theirs: Vec<String> = saved.iter().filter(|o| !is_our_reloption(o)).cloned().collect();
        let saved_ours: Vec<String> = saved.iter().filter(|o| is_our_reloption(o)).cloned().collect();
        sys::write_reloptions(relid, &theirs)?;
        call.run_instead(strip_our_options(stmt).cast());
        sys::command_counter_increment();
        let after = sys::read_reloptions(relid)?;
        sys::write_reloptions(relid, &[after, saved_ours].concat())?;
    }
    if !ours.is_empty() {
        lifecycle::alter(relid, &ours)?;
    }
    Ok(())
}

/// A copy of the statement with every `pgtrickle.*` item removed (and
/// reloptions commands left empty by that removed entirely).
fn strip_our_options(stmt: *mut pg_sys::AlterTableStmt) -> *mut pg_sys::AlterTableStmt {
    // SAFETY: works on a deep copy; lists are rebuilt from the copy's nodes.
    unsafe {
        let copy = copy_node(stmt);
        let mut kept = Vec::new();
        for cmd in list_ptrs::<pg_sys::AlterTableCmd>((*copy).cmds) {
            match is_reloption_cmd((*cmd).subtype) {
                Some(is_reset) => {
                    let (_, theirs) = split_options((*cmd).def.cast(), is_reset);
                    if !theirs.is_empty() {
                        (*cmd).def = list_from_ptrs(&theirs).cast();
                        kept.push(cmd);
                    }
                }
                None => kept.push(cmd),
            }
        }
        (*copy).cmds = list_from_ptrs(&kept);
        copy
    }
}
