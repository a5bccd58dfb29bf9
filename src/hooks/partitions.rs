//! Partitions of partitioned source tables: created, attached, detached or
//! dropped.
//!
//! A partitioned source carries the capture triggers on every partition
//! (`cdc::triggers::members`). A partition created or attached later gets
//! them too. Attaching, detaching or dropping a partition changes the
//! source's rows without a statement on it, so the stream tables that read
//! it are marked for a FULL refresh (IMMEDIATE ones are recomputed), as
//! after TRUNCATE. A detached partition loses the triggers.

use pgrx::pg_sys;

use super::nodes::{list_ptrs, range_var_relid};
use super::utility::UtilityCall;
use crate::catalog::sys;
use crate::cdc::{capture, triggers};
use crate::error::PgtResult;

/// The sources at or above `relid` (partitioned tables stream tables read).
fn sources_above(relid: pg_sys::Oid) -> PgtResult<Vec<pg_sys::Oid>> {
    sys::as_extension_owner(|| capture::captured_sources(relid))
}

/// Give every partition below the sources the triggers they lack.
fn install(sources: &[pg_sys::Oid]) -> PgtResult<()> {
    sys::as_extension_owner(|| {
        for &source in sources {
            let statements = triggers::tracks_statements(source)?;
            triggers::create(source)?;
            if statements {
                triggers::ensure_statement_start(source)?;
            }
        }
        Ok(())
    })
}

/// The sources' rows changed without a statement: FULL refresh next.
fn rows_changed(sources: &[pg_sys::Oid]) -> PgtResult<()> {
    sys::as_extension_owner(|| {
        for &source in sources {
            capture::truncated(source)?;
        }
        Ok(())
    })
}

/// `CREATE TABLE ... PARTITION OF`.
pub(super) fn create_table(call: &UtilityCall, stmt: *mut pg_sys::CreateStmt) -> PgtResult<()> {
    // SAFETY: the dispatcher checked the tag.
    let is_partition = unsafe { !(*stmt).partbound.is_null() };
    call.pass_through();
    if !is_partition || sys::extension_oid().is_none() {
        return Ok(());
    }
    // SAFETY: `relation` is the statement's RangeVar; the table exists now.
    let Some(relid) = (unsafe { range_var_relid((*stmt).relation) }) else { return Ok(()) };
    sys::command_counter_increment();
    install(&sources_above(relid)?)
}

/// `ALTER TABLE ... ATTACH PARTITION` / `DETACH PARTITION`, passed on to
/// `other` when the statement has neither.
pub(super) fn alter_table(
    call: &UtilityCall,
    stmt: *mut pg_sys::AlterTableStmt,
    other: impl FnOnce() -> PgtResult<()>,
) -> PgtResult<()> {
    // SAFETY: the dispatcher checked the tag; cmds is a List of
    // AlterTableCmd, and `def` of a partition command is a PartitionCmd.
    let (attach, detach) = unsafe {
        let mut attach = Vec::new();
        let mut detach = Vec::new();
        for cmd in list_ptrs::<pg_sys::AlterTableCmd>((*stmt).cmds) {
            let subtype = (*cmd).subtype;
            let is_attach = subtype == pg_sys::AlterTableType::AT_AttachPartition;
            let is_detach = subtype == pg_sys::AlterTableType::AT_DetachPartition;
            if !(is_attach || is_detach) || (*cmd).def.is_null() {
                continue;
            }
            let part = (*cmd).def as *mut pg_sys::PartitionCmd;
            if let Some(relid) = range_var_relid((*part).name) {
                if is_attach {
                    attach.push(relid)
                } else {
                    detach.push(relid)
                }
            }
        }
        (attach, detach)
    };
    if (attach.is_empty() && detach.is_empty()) || sys::extension_oid().is_none() {
        return other();
    }
    // Detached: the sources above them, found while they are partitions.
    let mut before = Vec::new();
    for &relid in &detach {
        before.extend(sources_above(relid)?);
    }
    call.pass_through();
    sys::command_counter_increment();
    let mut after = Vec::new();
    for &relid in &attach {
        after.extend(sources_above(relid)?);
    }
    install(&after)?;
    for &relid in &detach {
        if !before.is_empty() {
            sys::as_extension_owner(|| triggers::drop(relid))?;
        }
    }
    before.extend(after);
    before.sort_unstable_by_key(|o| o.to_u32());
    before.dedup();
    rows_changed(&before)
}

/// `DROP TABLE` of partitions of sources.
pub(super) fn drop_tables(call: &UtilityCall, stmt: *mut pg_sys::DropStmt) -> PgtResult<()> {
    // SAFETY: the dispatcher checked the tag; for OBJECT_TABLE, objects is
    // a List of name Lists.
    let names = unsafe {
        if (*stmt).removeType != pg_sys::ObjectType::OBJECT_TABLE || sys::extension_oid().is_none() {
            Vec::new()
        } else {
            list_ptrs::<pg_sys::List>((*stmt).objects)
        }
    };
    let mut sources = Vec::new();
    for name in names {
        // SAFETY: a qualified name List of String nodes; the lookup takes
        // no lock and returns InvalidOid for a missing table.
        let relid = unsafe {
            let rv = pg_sys::makeRangeVarFromNameList(name);
            range_var_relid(rv)
        };
        if let Some(relid) = relid.filter(|r| sys::is_partition(*r)) {
            sources.extend(sources_above(relid)?);
        }
    }
    call.pass_through();
    if sources.is_empty() {
        return Ok(());
    }
    sources.sort_unstable_by_key(|o| o.to_u32());
    sources.dedup();
    rows_changed(&sources)
}
