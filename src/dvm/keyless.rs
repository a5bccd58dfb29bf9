//! A filter and projection of one table without a key: the stream table is
//! a multiset, maintained from the changed rows alone.
//!
//! Delta rule. For a query `π(σ(T))` over one table, each row of `T` gives
//! at most one output row, computed from that row only. So the output
//! changes by `π(σ(new images)) − π(σ(old images))` of the changed rows, as
//! multisets: an inserted row adds its image once, a deleted row removes
//! it once, an UPDATE does both. The changed rows' images are computed and
//! counted per distinct image (compared as text, as the multiset apply of a
//! UNION ALL does); an image whose count is `n > 0` is inserted `n` times,
//! one whose count is `-n` has `n` of its copies deleted (by `ctid`). The
//! table itself is not read.
//!
//! The same rule serves a filter and projection of one table that selects
//! its primary key (DIFFERENTIAL refresh): each key's old image counts -1
//! and its new one +1, whatever the order of the changes; the deletions
//! run before the insertions, which the unique key index needs.

use pgrx::pg_sys;

use super::algebraic::ChangeRows;
use super::analysis::Plan;
use super::key_recompute::{output_columns, returning};
use crate::cdc::buffer;
use crate::cdc::frontier::RefreshSnapshot;
use crate::error::{PgtError, PgtResult};

/// The statement applying change rows (of the columns
/// `plan.rows.attnums`) to the stream table; returns the counts of rows
/// deleted and inserted, or with `capture` the rows as key recompute's
/// apply does.
pub fn apply_sql(
    relid: pg_sys::Oid,
    plan: &Plan,
    change_rows: ChangeRows,
    capture: Option<&[String]>,
) -> PgtResult<String> {
    let rows = plan.rows.as_ref().ok_or_else(|| PgtError::Internal("no row expressions".into()))?;
    let source = plan.grouped_source().ok_or_else(|| PgtError::Internal("no source table".into()))?;
    let changes = super::algebraic::change_rows_sql(source, &rows.attnums, change_rows)?;
    let columns: Vec<String> = output_columns(relid)?.into_iter().map(|(n, _)| n).collect();
    if columns.len() != rows.outputs.len() {
        return Err(PgtError::Internal("select list and stream table columns differ".into()));
    }
    let outputs: Vec<String> =
        rows.outputs.iter().zip(&columns).map(|(e, c)| format!("{e} AS {c}")).collect();
    let image = format!(
        "ROW({})::pg_catalog.text",
        columns.iter().map(|c| format!("c.{c}")).collect::<Vec<_>>().join(", ")
    );
    let filter = rows.where_sql.as_ref().map(|w| format!(" WHERE {w}")).unwrap_or_default();
    let st = crate::catalog::lifecycle::relation_name(relid)?;
    // Rows of the stream table are found through the first column of its
    // index (NULL or equal), then compared whole.
    let lookup = match lookup_column(relid)? {
        Some(col) => {
            format!("(o.{col} OPERATOR(pg_catalog.=) n.{col} OR (o.{col} IS NULL AND n.{col} IS NULL)) AND ")
        }
        None => String::new(),
    };
    let (returning_old, returning_new, result) = returning(capture);
    let new_cols: Vec<String> = columns.iter().map(|c| format!("n.{c}")).collect();
    Ok(format!(
        "WITH b AS ({changes}),\n\
         chg AS (SELECT {outputs}, b.__sign AS __pgt_sign FROM b{filter}),\n\
         net AS MATERIALIZED (SELECT x.* FROM (SELECT DISTINCT ON (c.__pgt_img) c.*, \
             pg_catalog.sum(c.__pgt_sign) OVER (PARTITION BY c.__pgt_img) AS __pgt_n \
             FROM (SELECT c.*, {image} AS __pgt_img FROM chg AS c) c) x WHERE x.__pgt_n OPERATOR(pg_catalog.<>) 0),\n\
         old AS MATERIALIZED (SELECT o.ctid AS __pgt_ctid, n.__pgt_n, \
             pg_catalog.row_number() OVER (PARTITION BY n.__pgt_img) AS __pgt_rn \
             FROM net n JOIN {st} o ON {lookup}ROW(o.*)::pg_catalog.text OPERATOR(pg_catalog.=) n.__pgt_img \
             WHERE n.__pgt_n OPERATOR(pg_catalog.<) 0),\n\
         gone AS (DELETE FROM {st} o USING old d WHERE o.ctid OPERATOR(pg_catalog.=) d.__pgt_ctid \
             AND d.__pgt_rn OPERATOR(pg_catalog.<=) (0 OPERATOR(pg_catalog.-) d.__pgt_n) RETURNING {returning_old}),\n\
         added AS (INSERT INTO {st} ({cols}) SELECT {new_cols} FROM net n, pg_catalog.generate_series(1, n.__pgt_n) g \
             WHERE n.__pgt_n OPERATOR(pg_catalog.>) 0 AND (SELECT pg_catalog.count(*) FROM gone) OPERATOR(pg_catalog.>=) 0 \
             RETURNING {returning_new})\n\
         {result}",
        outputs = outputs.join(", "),
        cols = columns.join(", "),
        new_cols = new_cols.join(", "),
    ))
}

/// The first column of the stream table's key index, if it has one on a
/// column (not on `true`).
fn lookup_column(relid: pg_sys::Oid) -> PgtResult<Option<String>> {
    crate::catalog::sys::kept_one::<String>(
        "SELECT pg_catalog.quote_ident(a.attname) FROM pg_catalog.pg_index i \
           JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) i.indexrelid \
           JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) i.indrelid \
                                         AND a.attnum OPERATOR(pg_catalog.=) i.indkey[0] \
          WHERE i.indrelid OPERATOR(pg_catalog.=) $1 \
            AND c.relname OPERATOR(pg_catalog.=) ('__pgt_key_' OPERATOR(pg_catalog.||) $1::pg_catalog.text)",
        &[relid.into()],
    )
}

/// Apply the window's changes (a differential refresh).
pub fn apply_window(
    relid: pg_sys::Oid,
    plan: &Plan,
    snapshot: &RefreshSnapshot,
    window: &str,
) -> PgtResult<(i64, i64)> {
    let source = plan.grouped_source().ok_or_else(|| PgtError::Internal("no source table".into()))?;
    let buffered = buffer::rows_sql(source)?;
    let changes = ChangeRows::Window { rows: &buffered, window };
    super::key_recompute::run_apply(relid, snapshot, &|capture| apply_sql(relid, plan, changes, capture))
}
