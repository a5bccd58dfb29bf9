//! `REFRESH MATERIALIZED VIEW [CONCURRENTLY] name [WITH [NO] DATA]`
//!
//! On a stream table, REFRESH runs pg_trickle's refresh (DIFFERENTIAL or
//! FULL, see `refresh`) and records it in the refresh history. `WITH NO DATA`
//! empties it as for any materialized view. Other materialized views pass
//! through untouched.

use pgrx::pg_sys;

use super::nodes::range_var_relid;
use super::utility::UtilityCall;
use crate::catalog::{stream_tables, sys};
use crate::error::PgtResult;
use crate::refresh::{self, RefreshTrigger};

pub(super) fn handle(call: &UtilityCall, stmt: *mut pg_sys::RefreshMatViewStmt) -> PgtResult<()> {
    // SAFETY: the dispatcher checked the tag.
    let (relation, skip_data) = unsafe { ((*stmt).relation, (*stmt).skipData) };
    if sys::extension_oid().is_none() {
        call.pass_through();
        return Ok(());
    }
    // SAFETY: `relation` is the statement's RangeVar.
    let Some(relid) = (unsafe { range_var_relid(relation) }) else {
        call.pass_through(); // PostgreSQL reports the missing relation.
        return Ok(());
    };
    if !stream_tables::exists(relid)? {
        call.pass_through();
        return Ok(());
    }
    if skip_data {
        // Emptied: whatever it had applied is gone; the next refresh is FULL.
        call.pass_through();
        sys::as_extension_owner(|| stream_tables::forget_contents(relid))?;
        // Stream tables reading it must start over too.
        if crate::cdc::buffer::buffer_relid(relid)?.is_some() {
            sys::as_extension_owner(|| crate::cdc::buffer::mark_truncated(relid))?;
        }
        return Ok(());
    }
    refresh::refresh(relid, RefreshTrigger::Manual)?;
    Ok(())
}
