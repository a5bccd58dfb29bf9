//! The background scheduler's pieces. In this version: schedule parsing,
//! used to validate `pgtrickle.schedule` when it is set.

pub mod schedule;
