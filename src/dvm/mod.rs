//! Differential view maintenance.
//!
//! `analysis` reads the stream table's stored query (PostgreSQL's analyzed
//! Query tree, never SQL text) and decides whether, and how, it can be
//! maintained from its change buffers; `key_recompute` turns that decision
//! into the refresh's SQL. Queries it cannot maintain are refused in
//! DIFFERENTIAL mode and refreshed in FULL by AUTO, with the reason.
//!
//! This first engine maintains one family of queries by *key recompute*:
//! every row of the stream table is identified by a key taken straight from
//! source columns (the source's primary key for filters and projections, the
//! GROUP BY columns for aggregates, the columns of a DISTINCT), so the rows a
//! window of changes can affect are exactly those whose key appears in the
//! changed rows, old or new. Those rows are recomputed from the query,
//! restricted to the affected keys, and the differences applied. A GROUP BY
//! over one table with only count/sum/avg (`algebraic`) is kept from running
//! totals instead: its groups are computed from the totals, not the table.
//! The analysis names what is not covered yet.

pub mod algebraic;
pub mod analysis;
pub mod inserted;
pub mod join_totals;
pub mod key_recompute;
pub mod keyless;
pub mod nested;
pub mod operators;
pub mod plan;
pub mod pushdown;
pub mod slices;
pub mod topk;
