//! FULL refresh: recompute the query and replace the contents.
//!
//! PostgreSQL's own `REFRESH MATERIALIZED VIEW` does exactly this for a
//! materialized view: it runs the stored query as the owner under a
//! security-restricted operation, builds a new heap and swaps it in at commit
//! under an AccessExclusiveLock, so readers see the old contents or the new,
//! never a half-filled or empty table. We run it through SPI on the refresh's
//! snapshot (it computes the contents on the active snapshot), marked
//! internal so our own hook lets it through.

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::catalog::lifecycle::relation_name;
use crate::cdc::frontier::RefreshSnapshot;
use crate::error::PgtResult;
use crate::hooks;

/// Recompute the stream table on `snapshot`; returns its row count after.
pub fn refresh(relid: pg_sys::Oid, snapshot: &RefreshSnapshot) -> PgtResult<i64> {
    let name = relation_name(relid)?;
    {
        let _internal = hooks::internal();
        snapshot.execute(&format!("REFRESH MATERIALIZED VIEW {name}"), false)?;
    }
    Ok(Spi::get_one::<i64>(&format!("SELECT count(*) FROM {name}"))?.unwrap_or(0))
}
