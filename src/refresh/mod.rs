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
use crate::catalog::{stream_tables, sys};
use crate::error::{PgtError, PgtResult};

/// Who asked for a refresh (recorded in the history).
#[derive(Clone, Copy, Debug)]
pub enum RefreshTrigger {
    Manual,
}

impl RefreshTrigger {
    fn as_str(self) -> &'static str {
        match self {
            RefreshTrigger::Manual => "manual",
        }
    }
}

/// Refresh one stream table; returns the number of rows it holds afterwards.
pub fn refresh(relid: pg_sys::Oid, trigger: RefreshTrigger) -> PgtResult<i64> {
    let st = stream_tables::get(relid)?.ok_or_else(|| PgtError::NotAStreamTable {
        name: relation_name(relid).unwrap_or_else(|_| relid.to_u32().to_string()),
    })?;
    if !sys::current_user_owns(relid) {
        return Err(PgtError::NotOwner { name: relation_name(relid)? });
    }
    let mode = st.effective_mode;
    let history = sys::as_extension_owner(|| stream_tables::history_start(relid, mode, trigger.as_str()))?;
    let rows = match mode {
        RefreshMode::Full | RefreshMode::Auto | RefreshMode::Differential | RefreshMode::Immediate => {
            full::refresh(relid)?
        }
    };
    sys::as_extension_owner(|| stream_tables::history_finish(history, relid, rows))?;
    Ok(rows)
}
