//! Change capture: statement-level triggers into change buffers, read up to
//! a consistent frontier.
//!
//! ```text
//! INSERT/UPDATE/DELETE on a source
//!   => internal AFTER … FOR EACH STATEMENT trigger (pgtrickle._capture, native)
//!   => one INSERT … SELECT from the transition tables
//!   => pgtrickle_changes.changes_<source oid>   (the change buffer)
//!   => a refresh reads the rows its frontier has not yet applied
//!   => frontier advances; rows every consumer has applied are trimmed
//! TRUNCATE on a source => consumers are marked for a FULL refresh
//! ```
//!
//! - `triggers`: creating and dropping the internal trigger set of a source.
//! - `capture`: the trigger function itself, with its cached plans.
//! - `buffer`: change buffer tables: created, kept in step with the source's
//!   columns, dropped with the last consumer, trimmed.
//! - `frontier`: what a stream table has applied, and the snapshot a refresh
//!   reads up to.
//! - `consumers`: attaching a stream table to its sources and detaching it.
//! - `transition`: the transition tables IMMEDIATE maintenance reads.
//! - `statements`: statements in progress on sources (BEFORE STATEMENT
//!   triggers), for IMMEDIATE running totals over joins.
//!
//! A stream table *consumes* changes when its effective mode is
//! DIFFERENTIAL or IMMEDIATE (its query can be maintained: see
//! `dvm::analysis`); buffers are written only for DIFFERENTIAL consumers.

pub mod buffer;
pub mod capture;
pub mod consumers;
pub mod estimate;
pub mod frontier;
pub mod statements;
pub mod transition;
pub mod triggers;
