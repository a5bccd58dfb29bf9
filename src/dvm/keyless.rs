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

use super::algebraic::{ChangeRows, WindowChanges};
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
    let filter = rows.where_sql.as_ref().map(|w| format!(" WHERE {w}")).unwrap_or_default();
    signed_rows_apply_sql(
        relid,
        plan.topk.as_ref(),
        &columns,
        &format!("b AS ({changes})"),
        &format!("SELECT {}, b.__sign AS __pgt_sign FROM b{filter}", outputs.join(", ")),
        capture,
    )
}

/// The statement applying signed rows to a multiset stream table: `chg`
/// selects rows of its `columns` (quoted names, in order) and their sign
/// `__pgt_sign`, reading the WITH queries `withs`. The rows are counted per
/// image (the row as text): an image whose count is `n > 0` is inserted
/// `n` times, one whose count is `-n` has `n` of its copies deleted (by
/// `ctid`). Returns the counts of rows deleted and inserted, or with
/// `capture` the rows as key recompute's apply does. With `topk` (`ORDER
/// BY ... LIMIT`), the first rows are ranked instead ([`ranked_multiset_sql`]).
fn signed_rows_apply_sql(
    relid: pg_sys::Oid,
    topk: Option<&super::analysis::TopK>,
    columns: &[String],
    withs: &str,
    chg: &str,
    capture: Option<&[String]>,
) -> PgtResult<String> {
    let st = crate::catalog::lifecycle::relation_name(relid)?;
    let net = net_sql(columns, withs, chg);
    if let Some(topk) = topk {
        return ranked_multiset_sql(relid, &st, topk, columns, &net, capture);
    }
    // Rows of the stream table are found through the first column of its
    // index (equal, or both NULL: two joins, each an index lookup; as one
    // `=` OR both NULL condition the planner found no index path for a
    // join, and hashed the whole stream table: 940 ms of a refresh of 1332
    // change rows over a million rows), then compared whole.
    let image = "ROW(o.*)::pg_catalog.text OPERATOR(pg_catalog.=) n.__pgt_img";
    let matched = |on: &str| {
        format!(
            "SELECT o.ctid AS __pgt_ctid, n.__pgt_n, n.__pgt_img FROM net n JOIN {st} o ON {on}{image} \
              WHERE n.__pgt_n OPERATOR(pg_catalog.<) 0"
        )
    };
    let matches = match lookup_column(relid)? {
        Some(col) => format!(
            "{} UNION ALL {}",
            matched(&format!("o.{col} OPERATOR(pg_catalog.=) n.{col} AND ")),
            matched(&format!("o.{col} IS NULL AND n.{col} IS NULL AND "))
        ),
        None => matched(""),
    };
    let (returning_old, returning_new, result) = returning(capture);
    let new_cols: Vec<String> = columns.iter().map(|c| format!("n.{c}")).collect();
    Ok(format!(
        "WITH {net},\n\
         old AS MATERIALIZED (SELECT m.__pgt_ctid, m.__pgt_n, \
             pg_catalog.row_number() OVER (PARTITION BY m.__pgt_img) AS __pgt_rn \
             FROM ({matches}) m),\n\
         gone AS (DELETE FROM {st} o USING old d WHERE o.ctid OPERATOR(pg_catalog.=) d.__pgt_ctid \
             AND d.__pgt_rn OPERATOR(pg_catalog.<=) (0 OPERATOR(pg_catalog.-) d.__pgt_n) RETURNING {returning_old}),\n\
         added AS (INSERT INTO {st} ({cols}) SELECT {new_cols} FROM net n, pg_catalog.generate_series(1, n.__pgt_n) g \
             WHERE n.__pgt_n OPERATOR(pg_catalog.>) 0 AND (SELECT pg_catalog.count(*) FROM gone) OPERATOR(pg_catalog.>=) 0 \
             RETURNING {returning_new})\n\
         {result}",
        cols = columns.join(", "),
        new_cols = new_cols.join(", "),
    ))
}

/// WITH queries ending with `net`: the signed rows `chg` (reading `withs`,
/// see [`signed_rows_apply_sql`]) counted per image, an image's net count
/// `__pgt_n` (not 0) and the image as text `__pgt_img` beside its columns.
fn net_sql(columns: &[String], withs: &str, chg: &str) -> String {
    let image = format!(
        "ROW({})::pg_catalog.text",
        columns.iter().map(|c| format!("c.{c}")).collect::<Vec<_>>().join(", ")
    );
    format!(
        "{withs},\n\
         chg AS ({chg}),\n\
         net AS MATERIALIZED (SELECT x.* FROM (SELECT DISTINCT ON (c.__pgt_img) c.*, \
             pg_catalog.sum(c.__pgt_sign) OVER (PARTITION BY c.__pgt_img) AS __pgt_n \
             FROM (SELECT c.*, {image} AS __pgt_img FROM chg AS c) c) x WHERE x.__pgt_n OPERATOR(pg_catalog.<>) 0)"
    )
}

/// `ORDER BY ... LIMIT n` over a multiset `st` (see dvm::topk), the signed
/// rows counted in `net` (see [`net_sql`]): the rows that may rank first
/// are the stream table's rows less the copies the signed rows remove (an image counted `-k` removes k of its copies, if
/// the stream table has them; the others were not among the first rows),
/// and the copies they add. Ranked as topk does (the inner query ranked
/// whole when too few of them rank before the stream table's n-th row),
/// the result replaces the stream table's rows, compared per image.
fn ranked_multiset_sql(
    relid: pg_sys::Oid,
    st: &str,
    topk: &super::analysis::TopK,
    columns: &[String],
    net: &str,
    capture: Option<&[String]>,
) -> PgtResult<String> {
    let kept: Vec<String> = columns.iter().map(|c| format!("k.{c}")).collect();
    let added: Vec<String> = columns.iter().map(|c| format!("n.{c}")).collect();
    let rows = format!(
        "WITH {net},\n\
         kept AS MATERIALIZED (SELECT o.*, ROW(o.*)::pg_catalog.text AS __pgt_img, \
             pg_catalog.row_number() OVER (PARTITION BY ROW(o.*)::pg_catalog.text) AS __pgt_rn FROM {st} o)\n\
         SELECT {kept} FROM kept k WHERE k.__pgt_rn OPERATOR(pg_catalog.>) COALESCE((SELECT 0 OPERATOR(pg_catalog.-) n.__pgt_n \
             FROM net n WHERE n.__pgt_img OPERATOR(pg_catalog.=) k.__pgt_img AND n.__pgt_n OPERATOR(pg_catalog.<) 0), 0)\n\
         UNION ALL SELECT {added} FROM net n, pg_catalog.generate_series(1, n.__pgt_n) g \
             WHERE n.__pgt_n OPERATOR(pg_catalog.>) 0",
        kept = kept.join(", "),
        added = added.join(", "),
    );
    let all = super::key_recompute::whole_query(relid)?;
    let first = super::topk::ranked_sql(st, columns, topk, &rows, &all)?;
    Ok(super::key_recompute::multiset_apply_statement(st, &first, "true", columns, capture))
}

/// A multiset over several tables or with subqueries ([`Shape::Multiset`]):
/// the statement applying the signed rows that the change rows `changes`
/// add to the query's rows; None when no table of the query changed.
pub fn multiset_apply_sql(
    relid: pg_sys::Oid,
    plan: &Plan,
    changes: &[super::join_totals::Changes],
    capture: Option<&[String]>,
) -> PgtResult<Option<String>> {
    let m = plan.multiset.as_ref().ok_or_else(|| PgtError::Internal("no multiset rows".into()))?;
    let typed = output_columns(relid)?;
    let columns: Vec<String> = typed.iter().map(|(n, _)| n.clone()).collect();
    let delta = if m.union.is_empty() {
        super::algebraic::rows_delta_sql(m.join.as_ref(), m.slices.as_ref(), changes)?
    } else {
        // A UNION ALL: the signed rows of each branch a changed table
        // reaches, together, each branch's columns cast to the stream
        // table's (the union's) types, as the union itself coerces them.
        let cols: Vec<String> = typed
            .iter()
            .enumerate()
            .map(|(i, (_, ty))| format!("b.__k{n}::{ty} AS __k{n}", n = i + 1))
            .collect();
        let mut parts = Vec::new();
        for branch in &m.union {
            if let Some(delta) = super::join_totals::delta_sql(branch, changes)? {
                parts.push(format!("SELECT {}, b.__sign FROM ({delta}) b", cols.join(", ")));
            }
        }
        (!parts.is_empty()).then(|| parts.join(" UNION ALL "))
    };
    let Some(delta) = delta else {
        return Ok(None);
    };
    // (The rows' columns `__k<n>` are the select list, in order.)
    let outputs: Vec<String> =
        columns.iter().enumerate().map(|(i, c)| format!("d.__k{} AS {c}", i + 1)).collect();
    Ok(Some(signed_rows_apply_sql(
        relid,
        plan.topk.as_ref(),
        &columns,
        &format!("d AS ({delta})"),
        &format!("SELECT {}, d.__sign AS __pgt_sign FROM d", outputs.join(", ")),
        capture,
    )?))
}

/// A multiset over several tables or with subqueries: the window's changes
/// of every table its rows read, counted (one row per statement and action
/// is summed, no change row is read).
pub fn window_changes(
    plan: &Plan,
    snapshot: &RefreshSnapshot,
    window: &str,
) -> PgtResult<Vec<WindowChanges>> {
    let Some(m) = plan.multiset.as_ref() else { return Ok(Vec::new()) };
    let sources = m.tables().into_iter().map(|source| (source, m.columns_of(source))).collect();
    super::algebraic::count_window(sources, snapshot, window)
}

/// A multiset over several tables or with subqueries: apply the window's
/// changes (a differential refresh); returns the rows deleted and inserted.
pub fn apply_multiset_window(
    relid: pg_sys::Oid,
    plan: &Plan,
    snapshot: &RefreshSnapshot,
    window: &str,
    changes: &[WindowChanges],
) -> PgtResult<(i64, i64)> {
    let changed = WindowChanges::changed(changes, window);
    if changed.is_empty() {
        return Ok((0, 0));
    }
    super::key_recompute::run_apply(relid, snapshot, &|capture| {
        let sql = multiset_apply_sql(relid, plan, &changed, capture)?
            .ok_or_else(|| PgtError::Internal("changed tables the rows do not read".into()))?;
        pgrx::debug2!("pg_trickle: applying the rows the changes add and remove: {sql}");
        Ok(sql)
    })
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
