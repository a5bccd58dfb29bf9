//! `CREATE INDEX __pgt_key_<oid> …` replayed by pg_restore.
//!
//! A DIFFERENTIAL stream table carries a unique index on its key, named
//! `__pgt_key_<its oid>`, created when it becomes differential. pg_dump
//! writes that index out like any other; on restore the stream table manages
//! its own key index (created now, or at the refresh that makes it
//! differential once its source has its primary key back), so the dumped
//! one is skipped with a NOTICE.

use pgrx::pg_sys;
use pgrx::prelude::*;

use super::nodes::{cstr, range_var_relid};
use super::utility::UtilityCall;
use crate::catalog::{lifecycle, stream_tables, sys};
use crate::error::PgtResult;

pub(super) fn handle(call: &UtilityCall, stmt: *mut pg_sys::IndexStmt) -> PgtResult<()> {
    // SAFETY: the dispatcher checked the tag; idxname and relation are the
    // statement's own fields.
    let (name, relation) = unsafe { (cstr((*stmt).idxname), (*stmt).relation) };
    let ours = name.as_deref().is_some_and(lifecycle::is_key_index_name);
    if !ours || sys::extension_oid().is_none() {
        call.pass_through();
        return Ok(());
    }
    // SAFETY: the statement's RangeVar.
    let Some(relid) = (unsafe { range_var_relid(relation) }) else {
        call.pass_through();
        return Ok(());
    };
    if stream_tables::exists(relid)? {
        notice!(
            "skipping index \"{}\": stream table {} manages its own key index",
            name.unwrap_or_default(),
            lifecycle::relation_name(relid)?
        );
        return Ok(());
    }
    call.pass_through();
    Ok(())
}
