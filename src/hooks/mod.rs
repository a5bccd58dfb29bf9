//! PostgreSQL hooks.
//!
//! - `utility`: the ProcessUtility hook. It dispatches on the statement's
//!   node tag to one handler per statement family (`create`, `refresh`,
//!   `alter`, `partitions`) and passes everything else through untouched
//!   to the previous hook or `standard_ProcessUtility`.
//!
//! Statements pg_trickle runs itself through SPI (for example the
//! `REFRESH MATERIALIZED VIEW` of a FULL refresh) are marked with
//! [`internal`] so the hook lets them through.

mod alter;
mod create;
mod database;
mod index;
pub(crate) mod nodes;
mod partitions;
mod refresh;
mod utility;

use std::cell::Cell;

pub use nodes::{cstr, list_ptrs, mutate};

thread_local! {
    static INTERNAL_DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// Install the hooks. Called once from `_PG_init`.
pub fn init() {
    utility::install();
}

/// Marks statements run by pg_trickle itself while alive; the hook passes
/// them through. Restored on drop, including when an ERROR unwinds.
pub struct Internal(());

pub fn internal() -> Internal {
    INTERNAL_DEPTH.with(|d| d.set(d.get() + 1));
    Internal(())
}

impl Drop for Internal {
    fn drop(&mut self) {
        INTERNAL_DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
    }
}

/// Is pg_trickle itself running the current statement?
pub fn is_internal() -> bool {
    in_internal()
}

fn in_internal() -> bool {
    INTERNAL_DEPTH.with(|d| d.get() > 0)
}
