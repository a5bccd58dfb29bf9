//! Refreshing stream tables.
//!
//! `refresh` is the one entry point (DDL hook, SQL function, later the
//! scheduler): it looks up the stream table, records a history entry, runs
//! the refresh for its effective mode, and stamps the result, all inside the
//! caller's transaction, so a failed refresh leaves no trace.

mod full;

use pgrx::pg_sys;

use crate::catalog::lifecycle::relation_name;
use crate::catalog::options::RefreshMode;
use crate::catalog::stream_tables::{self, RefreshResult};
use crate::catalog::sys;
use crate::cdc;
use crate::cdc::frontier::RefreshSnapshot;
use crate::error::{PgtError, PgtResult};

/// Who asked for a refresh (recorded in the history).
#[derive(Clone, Copy, Debug)]
pub enum RefreshTrigger {
    /// REFRESH MATERIALIZED VIEW or refresh_stream_table().
    Manual,
    /// The first population by CREATE MATERIALIZED VIEW.
    Create,
}

impl RefreshTrigger {
    fn as_str(self) -> &'static str {
        match self {
            RefreshTrigger::Manual => "manual",
            RefreshTrigger::Create => "create",
        }
    }
}

/// Refresh one stream table; returns the number of rows it holds afterwards.
///
/// Every statement runs on one snapshot taken at the start; for a stream
/// table that consumes changes, that snapshot becomes its new frontier, the
/// changes between the old frontier and it are the ones applied (counted in
/// the history), and the buffers are trimmed of what every consumer has
/// applied.
pub fn refresh(relid: pg_sys::Oid, trigger: RefreshTrigger) -> PgtResult<i64> {
    let st = stream_tables::get(relid)?.ok_or_else(|| PgtError::NotAStreamTable {
        name: relation_name(relid).unwrap_or_else(|_| relid.to_u32().to_string()),
    })?;
    if !sys::current_user_can_maintain(relid) {
        return Err(PgtError::NotOwner { name: relation_name(relid)? });
    }
    let mode = st.effective_mode;
    let history = sys::as_extension_owner(|| stream_tables::history_start(relid, mode, trigger.as_str()))?;
    let snapshot = RefreshSnapshot::take();
    let frontier = snapshot.frontier()?;
    let rows = match mode {
        RefreshMode::Full | RefreshMode::Auto | RefreshMode::Differential | RefreshMode::Immediate => {
            full::refresh(relid, &snapshot)?
        }
    };
    let mut result = RefreshResult { rows, changes_consumed: 0, frontier: None };
    if st.consumes_changes {
        let sources = cdc::consumers::captured_sources(relid)?;
        for &source in &sources {
            // A buffer emptied by crash recovery: this refresh is FULL (as
            // every refresh is in this version), which is what it needs.
            cdc::buffer::check_sentinel(source)?;
            result.changes_consumed += cdc::buffer::count_window(source, &frontier, st.frontier.as_ref())?;
        }
        result.frontier = Some(frontier);
        sys::as_extension_owner(|| stream_tables::history_finish(history, relid, &result))?;
        for source in sources {
            cdc::buffer::trim(source)?;
        }
    } else {
        sys::as_extension_owner(|| stream_tables::history_finish(history, relid, &result))?;
    }
    Ok(rows)
}
