//! The internal trigger set of a source table: four statement-level AFTER
//! triggers (INSERT with NEW TABLE, UPDATE with OLD and NEW TABLE, DELETE
//! with OLD TABLE, TRUNCATE), all calling `pgtrickle._capture()`; and, on
//! the sources of an IMMEDIATE stream table kept from running totals over
//! a join, a BEFORE INSERT OR UPDATE OR DELETE statement-level trigger
//! calling `pgtrickle._statement_start()` (see `cdc::statements`).
//!
//! They are created with `isInternal = true`, like foreign-key triggers, so
//! `\d` and pg_dump do not show them; PostgreSQL appends the trigger's OID to
//! the name. They depend on the table (dropped with it) and on the function
//! (so DROP EXTENSION must CASCADE while they exist).

use std::ffi::{c_char, CString};

use pgrx::pg_sys;

use crate::error::{PgtError, PgtResult};
use crate::hooks::nodes::make_node;

/// Transition table names, as the capture function's SQL refers to them.
pub const OLD_TABLE: &str = "__pgt_old";
pub const NEW_TABLE: &str = "__pgt_new";

const EVENTS: [(&str, u32, bool, bool); 4] = [
    // (name, event, old table, new table)
    ("pgt_capture_ins", pg_sys::TRIGGER_TYPE_INSERT, false, true),
    ("pgt_capture_upd", pg_sys::TRIGGER_TYPE_UPDATE, true, true),
    ("pgt_capture_del", pg_sys::TRIGGER_TYPE_DELETE, true, false),
    ("pgt_capture_trunc", pg_sys::TRIGGER_TYPE_TRUNCATE, false, false),
];

fn capture_function() -> PgtResult<pg_sys::Oid> {
    function("pgtrickle._capture()")
}

fn start_function() -> PgtResult<pg_sys::Oid> {
    function("pgtrickle._statement_start()")
}

fn function(signature: &str) -> PgtResult<pg_sys::Oid> {
    crate::catalog::sys::kept_one::<pg_sys::Oid>(
        "SELECT pg_catalog.to_regprocedure($1)::pg_catalog.oid",
        &[signature.into()],
    )?
    .ok_or_else(|| PgtError::Internal(format!("function {signature} is missing")))
}

/// The tables that carry a source's triggers: the source, and for a
/// partitioned table every partition below it (a statement fires the
/// statement triggers of the table it names only, the partitions' rows
/// included; a statement naming a partition fires that partition's).
pub fn members(source: pg_sys::Oid) -> PgtResult<Vec<pg_sys::Oid>> {
    let mut out = vec![source];
    out.extend(crate::catalog::sys::column_values::<pg_sys::Oid>(
        "SELECT t.relid::pg_catalog.oid FROM pg_catalog.pg_partition_tree($1) t \
          WHERE t.relid OPERATOR(pg_catalog.<>) $1 ORDER BY t.level, t.relid",
        &[source.into()],
    )?);
    Ok(out)
}

fn count(source: pg_sys::Oid, function: pg_sys::Oid) -> PgtResult<i64> {
    Ok(crate::catalog::sys::kept_one::<i64>(
        "SELECT count(*) FROM pg_catalog.pg_trigger \
          WHERE tgrelid OPERATOR(pg_catalog.=) $1 AND tgfoid OPERATOR(pg_catalog.=) $2",
        &[source.into(), function.into()],
    )?
    .unwrap_or(0))
}

/// Create the trigger set on `source` (which must not have it yet). Takes
/// ShareRowExclusiveLock on the source, as CREATE TRIGGER does: writers in
/// flight finish first, later ones wait for our commit.
pub fn create(source: pg_sys::Oid) -> PgtResult<()> {
    let func = capture_function()?;
    for member in members(source)? {
        if count(member, func)? > 0 {
            continue;
        }
        for (name, event, old, new) in EVENTS {
            create_one(member, name, pg_sys::TRIGGER_TYPE_AFTER, event, (old, new), func)?;
        }
    }
    crate::catalog::sys::command_counter_increment();
    Ok(())
}

/// Does `source` carry the BEFORE STATEMENT trigger (`cdc::statements`)?
pub fn tracks_statements(source: pg_sys::Oid) -> PgtResult<bool> {
    Ok(count(source, start_function()?)? > 0)
}

/// Give `source` its BEFORE STATEMENT trigger, if it lacks it (see
/// `cdc::statements`). Takes ShareRowExclusiveLock on the source, as
/// CREATE TRIGGER does.
pub fn ensure_statement_start(source: pg_sys::Oid) -> PgtResult<()> {
    let start = start_function()?;
    let events = pg_sys::TRIGGER_TYPE_INSERT | pg_sys::TRIGGER_TYPE_UPDATE | pg_sys::TRIGGER_TYPE_DELETE;
    for member in members(source)? {
        if count(member, start)? == 0 {
            create_one(
                member,
                "pgt_statement_start",
                pg_sys::TRIGGER_TYPE_BEFORE,
                events,
                (false, false),
                start,
            )?;
        }
    }
    crate::catalog::sys::command_counter_increment();
    Ok(())
}

/// One internal statement-level trigger on `source` calling `function`,
/// with the (old, new) transition tables asked for.
fn create_one(
    source: pg_sys::Oid,
    name: &str,
    timing: u32,
    events: u32,
    (old, new): (bool, bool),
    function: pg_sys::Oid,
) -> PgtResult<()> {
    let name = CString::new(name).map_err(|_| PgtError::Internal("trigger name".into()))?;
    // SAFETY: builds a CreateTrigStmt and its TriggerTransition nodes in
    // CurrentMemoryContext with every field initialised (palloc0 + tag),
    // exactly as tablecmds.c builds foreign-key triggers; CreateTrigger
    // copies what it keeps. relOid and funcoid are valid OIDs; the
    // relation name in `relation` is not consulted when relOid is given.
    unsafe {
        let stmt = make_node::<pg_sys::CreateTrigStmt>(pg_sys::NodeTag::T_CreateTrigStmt);
        (*stmt).trigname = name.as_ptr() as *mut c_char;
        (*stmt).relation = pg_sys::makeRangeVar(
            pg_sys::get_namespace_name(pg_sys::get_rel_namespace(source)),
            pg_sys::get_rel_name(source),
            -1,
        );
        (*stmt).row = false;
        (*stmt).timing = timing as i16;
        (*stmt).events = events as i16;
        let mut transitions: *mut pg_sys::List = std::ptr::null_mut();
        for (wanted, is_new, tname) in [(old, false, OLD_TABLE), (new, true, NEW_TABLE)] {
            if wanted {
                let t = make_node::<pg_sys::TriggerTransition>(pg_sys::NodeTag::T_TriggerTransition);
                (*t).name = pg_sys::pstrdup(CString::new(tname).unwrap_or_default().as_ptr());
                (*t).isNew = is_new;
                (*t).isTable = true;
                transitions = pg_sys::lappend(transitions, t.cast());
            }
        }
        (*stmt).transitionRels = transitions;
        pg_sys::CreateTrigger(
            stmt,
            std::ptr::null(),
            source,
            pg_sys::InvalidOid,
            pg_sys::InvalidOid,
            pg_sys::InvalidOid,
            function,
            pg_sys::InvalidOid,
            std::ptr::null_mut(),
            true,
            false,
        );
    }
    Ok(())
}

/// Drop the trigger set from `source` (and its partitions), if present.
pub fn drop(source: pg_sys::Oid) -> PgtResult<()> {
    let oids: Vec<pg_sys::Oid> = crate::catalog::sys::column_values::<pg_sys::Oid>(
        "SELECT oid FROM pg_catalog.pg_trigger \
          WHERE tgrelid OPERATOR(pg_catalog.=) ANY ($1) AND tgfoid OPERATOR(pg_catalog.=) ANY ($2)",
        &[members(source)?.into(), vec![capture_function()?, start_function()?].into()],
    )?;
    for oid in oids {
        let addr =
            pg_sys::ObjectAddress { classId: pg_sys::TriggerRelationId, objectId: oid, objectSubId: 0 };
        // SAFETY: a valid address of an existing trigger; an internal
        // deletion does not fire sql_drop event triggers for it.
        unsafe {
            pg_sys::performDeletion(
                &addr,
                pg_sys::DropBehavior::DROP_RESTRICT,
                pg_sys::PERFORM_DELETION_INTERNAL as i32,
            )
        };
    }
    crate::catalog::sys::command_counter_increment();
    Ok(())
}
