//! pg_trickle's catalog: the `pgtrickle.*` tables, typed access to them, the
//! stream table settings kept in `pg_class.reloptions`, and the lifecycle
//! (register, alter, unregister) that keeps the two in step.
//!
//! Data flow: DDL hook or SQL function → `lifecycle` → (`sys` for
//! reloptions and pg_depend, `stream_tables` for our rows).

pub mod lifecycle;
pub mod options;
pub mod stream_tables;
pub mod sys;
