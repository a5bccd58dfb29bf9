//! `ORDER BY ... LIMIT n` over a keyed query: the stream table holds the
//! first `n` rows of the query without its ORDER BY and LIMIT (the *inner*
//! query, maintained by the rest of the plan).
//!
//! Rule. A refresh knows the inner query's rows for the affected keys `K`
//! (recomputed, or read from running totals). The other rows of the inner
//! query did not change: those in the stream table are kept as they are,
//! and those outside it ranked after its last row `b` (the n-th) before
//! the change, and still do. So the first `n` of (the rows for `K` ∪ the
//! stream table's rows outside `K`) are the new contents, provided at
//! least `n` of them rank before `b` or equal to it: nothing outside can
//! come between. Otherwise (rows left the top and too few came in) the
//! inner query is ranked whole, once. One statement decides and computes
//! both; the stream table is brought to the result as differences. Rows
//! that tie at the boundary are kept or not as PostgreSQL's own LIMIT
//! would: arbitrarily, unless the ORDER BY decides every tie.

use pgrx::pg_sys;

use super::analysis::TopK;
use super::key_recompute::{groups_filter, output_columns, KeyValues};
use crate::error::{PgtError, PgtResult};

/// The inner query of stream table `relid` (its stored query without
/// ORDER BY and LIMIT), as SQL. Deparsed like `pg_get_viewdef`: call it
/// as the owner, under the role switch's `search_path`.
pub fn unlimited_query(relid: pg_sys::Oid) -> PgtResult<String> {
    // SAFETY: the copy is only deparsed; pg_get_querydef returns a palloc'd
    // string, copied out.
    let sql = unsafe {
        super::analysis::with_query_copy(relid, true, |copy| {
            crate::hooks::cstr(pg_sys::pg_get_querydef(copy, false))
        })
    };
    sql.ok_or_else(|| PgtError::Internal("materialized view without a query".into()))
}

/// The `ORDER BY` items over the columns (quoted names), each prefixed
/// with `prefix` (an alias and a dot, or nothing).
pub fn order_sql(topk: &TopK, columns: &[String], prefix: &str) -> PgtResult<String> {
    let mut items = Vec::new();
    for &(output, descending, nulls_first) in &topk.order {
        let name = usize::try_from(output)
            .ok()
            .and_then(|o| columns.get(o.checked_sub(1)?))
            .ok_or_else(|| PgtError::Internal("ORDER BY column out of range".into()))?;
        items.push(format!(
            "{prefix}{name} {} NULLS {}",
            if descending { "DESC" } else { "ASC" },
            if nulls_first { "FIRST" } else { "LAST" }
        ));
    }
    Ok(items.join(", "))
}

/// The new contents of stream table `st` (columns `columns`): from the
/// inner query's rows for the affected keys (`candidates`, named like the
/// stream table's columns), its rows outside `groups`, and its n-th row;
/// or, when those cannot decide, from `all` (the first n rows of the inner
/// query, computed only then).
pub fn new_rows_sql(
    st: &str,
    columns: &[String],
    topk: &TopK,
    candidates: &str,
    groups: &[Vec<KeyValues>],
    all: &str,
) -> PgtResult<String> {
    let rows = format!(
        "SELECT c.* FROM ({candidates}) c UNION ALL SELECT o.* FROM {st} o WHERE ({outside}) IS NOT TRUE",
        outside = groups_filter("o", groups),
    );
    ranked_sql(st, columns, topk, &rows, all)
}

/// The new contents of stream table `st` (columns `columns`): the first n
/// of `rows` (the inner query's rows that may rank first: the changed or
/// affected ones, and the stream table's rows that stay), when at least n
/// of them rank before its n-th row or equal to it; otherwise `all` (the
/// first n rows of the inner query, computed only then).
pub fn ranked_sql(st: &str, columns: &[String], topk: &TopK, rows: &str, all: &str) -> PgtResult<String> {
    let n = topk.limit;
    if n <= 0 {
        return Ok(format!("SELECT a.* FROM ({all}) a"));
    }
    let cols: Vec<String> = columns.iter().map(|c| format!("r.{c}")).collect();
    Ok(format!(
        "WITH cand AS MATERIALIZED (SELECT c.*, 0 AS __pgt_b FROM ({rows}) c \
         UNION ALL SELECT b.*, 1 FROM (SELECT o.* FROM {st} o ORDER BY {order_o} LIMIT 1 OFFSET {last}) b), \
         ranked AS MATERIALIZED (SELECT c.*, pg_catalog.row_number() OVER (ORDER BY {order_c}, c.__pgt_b) AS __pgt_rn FROM cand c), \
         fits AS (SELECT COALESCE(pg_catalog.min(r.__pgt_rn) FILTER (WHERE r.__pgt_b OPERATOR(pg_catalog.=) 1), {beyond}) \
                         OPERATOR(pg_catalog.>) {n} AS ok FROM ranked r) \
         SELECT {cols} FROM ranked r WHERE r.__pgt_b OPERATOR(pg_catalog.=) 0 AND r.__pgt_rn OPERATOR(pg_catalog.<=) {n} \
            AND (SELECT f.ok FROM fits f) \
         UNION ALL SELECT a.* FROM ({all}) a WHERE NOT (SELECT f.ok FROM fits f)",
        order_o = order_sql(topk, columns, "o.")?,
        order_c = order_sql(topk, columns, "c.")?,
        last = n - 1,
        beyond = n + 1,
        cols = cols.join(", "),
    ))
}

/// [`new_rows_sql`] for a stream table maintained by key recompute: the
/// candidates recomputed from the inner query for `groups`, the fallback
/// the stored query itself (as the owner: see [`unlimited_query`]).
fn recomputed_sql(
    relid: pg_sys::Oid,
    topk: &TopK,
    groups: &[Vec<KeyValues>],
    pushed_keys: &[super::analysis::KeyColumn],
) -> PgtResult<String> {
    let st = crate::catalog::lifecycle::relation_name(relid)?;
    let columns: Vec<String> = output_columns(relid)?.into_iter().map(|(name, _)| name).collect();
    let pushed = super::pushdown::pushed_query(relid, pushed_keys, true)?;
    let candidates =
        super::key_recompute::recompute_sql(&unlimited_query(relid)?, &columns, groups, pushed.as_ref());
    let all = super::key_recompute::whole_query(relid)?;
    new_rows_sql(&st, &columns, topk, &candidates, groups, &all)
}

/// [`new_rows_sql`] for a stream table kept from running totals: the
/// candidates are the touched groups' rows (`candidates`), the fallback
/// the first n groups of the totals.
fn totals_sql(
    relid: pg_sys::Oid,
    plan: &super::analysis::Plan,
    topk: &TopK,
    candidates: &str,
    groups: &[Vec<KeyValues>],
) -> PgtResult<String> {
    let st = crate::catalog::lifecycle::relation_name(relid)?;
    let columns: Vec<String> = output_columns(relid)?.into_iter().map(|(name, _)| name).collect();
    let totals = super::algebraic::totals_query(relid, plan)?
        .ok_or_else(|| PgtError::Internal("no running totals".into()))?;
    let all = format!(
        "SELECT t.* FROM ({totals}) t ORDER BY {} LIMIT {}",
        order_sql(topk, &columns, "t.")?,
        topk.limit
    );
    new_rows_sql(&st, &columns, topk, candidates, groups, &all)
}

/// The new contents of a stream table with `ORDER BY ... LIMIT` (see
/// [`new_rows_sql`]) after a change of the keys `groups`: from the touched
/// groups' rows of its running totals (`touched`), or recomputed as its
/// owner.
pub fn first_rows_sql(
    relid: pg_sys::Oid,
    plan: &super::analysis::Plan,
    topk: &TopK,
    groups: &[Vec<KeyValues>],
    touched: Option<&str>,
) -> PgtResult<String> {
    match touched {
        Some(touched) => totals_sql(relid, plan, topk, touched, groups),
        None => {
            let owner = crate::catalog::sys::relation_owner(relid)?;
            crate::catalog::sys::as_restricted_role(owner, || {
                recomputed_sql(relid, topk, groups, plan.pushed_keys())
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_rows_rank_candidates_kept_rows_and_the_boundary() {
        let topk = TopK { limit: 3, order: vec![(2, true, false), (1, false, true)] };
        let cols = vec!["id".to_string(), "v".to_string()];
        let keys = vec![vec![KeyValues {
            column: "id".into(),
            sql_type: "integer".into(),
            values: Some("{1,2}".into()),
            has_null: false,
        }]];
        let sql = new_rows_sql("s.t", &cols, &topk, "SELECT 1, 2", &keys, "SELECT * FROM all3").unwrap();
        assert!(sql.contains("ORDER BY o.v DESC NULLS LAST, o.id ASC NULLS FIRST LIMIT 1 OFFSET 2"), "{sql}");
        assert!(
            sql.contains("row_number() OVER (ORDER BY c.v DESC NULLS LAST, c.id ASC NULLS FIRST, c.__pgt_b)")
        );
        // (A NULL key compared with the affected keys is outside them.)
        assert!(
            sql.contains("WHERE ((o.id OPERATOR(pg_catalog.=) ANY ('{1,2}'::integer[]))) IS NOT TRUE"),
            "{sql}"
        );
        assert!(sql.contains(", 4) OPERATOR(pg_catalog.>) 3 AS ok"));
        assert!(sql.ends_with("SELECT a.* FROM (SELECT * FROM all3) a WHERE NOT (SELECT f.ok FROM fits f)"));
        // LIMIT 0: nothing to rank.
        let none = TopK { limit: 0, order: topk.order.clone() };
        assert_eq!(new_rows_sql("s.t", &cols, &none, "x", &keys, "y").unwrap(), "SELECT a.* FROM (y) a");
    }
}
