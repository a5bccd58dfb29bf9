//! Key recompute: the refresh SQL for a [`Plan`].
//!
//! Delta rule. Let `K(r)` be the key of a stream table row (or of a source
//! row: the same columns), `W` the changed source rows in the window (old
//! and new images), and `A = { K(w) : w ∈ W }`. A stream table row with key
//! `k ∉ A` depends only on source rows with key `k`, none of which changed,
//! so it is unchanged. The rows with `k ∈ A` are
//!
//! ```text
//! new(A) = σ[K ∈ A](Q(sources at the refresh snapshot))
//! ```
//!
//! and the stream table is brought there by deleting its rows with key in
//! `A` that are not in `new(A)` and inserting the rows of `new(A)` it lacks;
//! rows whose values did not change are not touched. Rows are compared with
//! the record image operator `*=` (as REFRESH … CONCURRENTLY does), which
//! needs no equality operator on the column types (json, point, …) and
//! treats NULLs as equal. `K ∈ A` is evaluated
//! per key column as `col = ANY(values) [OR col IS NULL]`, a superset of `A`
//! when the key has several columns, which is harmless: both sides use the
//! same condition. The condition references output columns that are plain
//! source columns, so PostgreSQL pushes it into the query (below GROUP BY),
//! where an index on the source's key columns turns it into lookups.

use pgrx::pg_sys;
use pgrx::prelude::*;

use super::analysis::{KeyColumn, Plan, Shape};
use crate::catalog::sys;
use crate::cdc::buffer;
use crate::cdc::frontier::RefreshSnapshot;
use crate::error::{PgtError, PgtResult};
use crate::refresh::window::with_window;

/// The affected values of one key column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValues {
    /// Quoted output column name in the stream table.
    pub column: String,
    /// SQL type of the column (`format_type`).
    pub sql_type: String,
    /// The distinct non-NULL values, as an array literal (None if none).
    pub values: Option<String>,
    pub has_null: bool,
}

/// `alias.col = ANY(...) OR alias.col IS NULL` for each key column, ANDed.
pub fn key_filter(alias: &str, keys: &[KeyValues]) -> String {
    keys.iter()
        .map(|k| {
            let col = format!("{alias}.{}", k.column);
            let mut terms = Vec::new();
            if let Some(v) = &k.values {
                terms.push(format!(
                    "{col} OPERATOR(pg_catalog.=) ANY ({}::{}[])",
                    crate::sql::quote_literal(v),
                    k.sql_type
                ));
            }
            if k.has_null {
                terms.push(format!("{col} IS NULL"));
            }
            if terms.is_empty() {
                "false".to_string()
            } else {
                format!("({})", terms.join(" OR "))
            }
        })
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// `alias`'s key is affected: the OR, over the table references that have
/// changes, of their key filters (`false` when none has).
pub fn groups_filter(alias: &str, groups: &[Vec<KeyValues>]) -> String {
    let parts: Vec<String> = groups.iter().filter(|g| !is_empty(g)).map(|g| key_filter(alias, g)).collect();
    match parts.len() {
        0 => "false".into(),
        1 => parts[0].clone(),
        _ => parts.iter().map(|p| format!("({p})")).collect::<Vec<_>>().join(" OR "),
    }
}

fn is_empty(group: &[KeyValues]) -> bool {
    group.iter().any(|k| k.values.is_none() && !k.has_null)
}

/// The statement that brings the affected rows of `st` (a qualified name) to
/// the result of `query` (SQL text); it returns (rows deleted, rows
/// inserted). `columns` are the stream
/// table's quoted column names: the query's output is renamed to them, as
/// CREATE MATERIALIZED VIEW name (columns) does. The recomputation is a
/// UNION of one branch per table reference with changes, so that each
/// branch's filter is pushed into the query on its own table.
pub fn apply_sql(
    st: &str,
    query: &str,
    columns: &[String],
    groups: &[Vec<KeyValues>],
    keys: &[String],
) -> String {
    apply_statement(
        st,
        &recompute_sql(query, columns, groups, None),
        &groups_filter("o", groups),
        columns,
        keys,
        None,
    )
}

/// The affected rows recomputed: one branch per table reference with
/// changes, each with its own key filter; with `pushed`, a branch that has
/// values for its marked columns reads the query with them pushed into its
/// subqueries (dvm::pushdown) instead of `query`.
pub(crate) fn recompute_sql(
    query: &str,
    columns: &[String],
    groups: &[Vec<KeyValues>],
    pushed: Option<&super::pushdown::Pushed>,
) -> String {
    let cols = columns.join(", ");
    let branches: Vec<String> = groups
        .iter()
        .filter(|g| !is_empty(g))
        .map(|g| {
            let q = pushed.and_then(|p| super::pushdown::fill(p, columns, g));
            format!(
                "SELECT n.* FROM ({}) n({cols}) WHERE {}",
                q.as_deref().unwrap_or(query),
                key_filter("n", g)
            )
        })
        .collect();
    if branches.is_empty() {
        format!("SELECT n.* FROM ({query}) n({cols}) WHERE false")
    } else {
        branches.join(" UNION ")
    }
}

/// One statement: the affected rows (`recompute`) are computed once; a
/// row matching `fo` whose key has a new row with other values is updated
/// in place (an UPDATE that leaves the key alone can be HOT: no index
/// entry is written), a row whose key has no new row is deleted, and a new
/// row whose key is not in the stream table is inserted: ON CONFLICT on
/// the unique key index skips the others (updated or unchanged), without
/// reading the stream table for them. Keys are matched with `=`, so a row
/// with a NULL key is deleted and inserted again instead (the INSERT reads
/// the DELETE's count, so the DELETE runs first and ON CONFLICT, NULLS NOT
/// DISTINCT, finds the old row gone). A row counts as deleted and inserted
/// when it was updated.
///
/// With `capture` (quoted column names), the statement instead returns the
/// rows it deleted (`'D'`) and inserted (`'I'`), those columns as text (an
/// updated row as both): the changes of a stream table that other stream
/// tables read.
fn apply_statement(
    st: &str,
    recompute: &str,
    fo: &str,
    columns: &[String],
    keys: &[String],
    capture: Option<&[String]>,
) -> String {
    let correlate: String = keys.iter().map(|k| format!("n.{k} OPERATOR(pg_catalog.=) o.{k} AND ")).collect();
    // No key (an aggregate without GROUP BY, whose key index is on a
    // constant): any unique index decides.
    let target = if keys.is_empty() { String::new() } else { format!("({}) ", keys.join(", ")) };
    let sets: Vec<String> = columns.iter().map(|c| format!("{c} = n.{c}")).collect();
    let (returning_old, returning_new, returning_changed, result) = returning_with_updates(capture);
    format!(
        "WITH new AS MATERIALIZED ({recompute}),\n\
         changed AS (UPDATE {st} o SET {sets} FROM new n\n\
         \x20   WHERE {correlate}({fo}) AND NOT ((n.*) OPERATOR(pg_catalog.*=) (o.*)) RETURNING {returning_changed}),\n\
         gone AS (DELETE FROM {st} o WHERE ({fo}) AND NOT EXISTS (\n\
         \x20   SELECT 1 FROM new n WHERE {correlate}true) RETURNING {returning_old}),\n\
         added AS (INSERT INTO {st} SELECT n.* FROM new n\n\
         \x20   WHERE (SELECT pg_catalog.count(*) FROM gone) OPERATOR(pg_catalog.>=) 0\n\
         \x20   ON CONFLICT {target}DO NOTHING RETURNING {returning_new})\n\
         {result}",
        sets = sets.join(", "),
    )
}

/// The statement that brings the rows of a multiset stream table (a UNION
/// ALL, which has no unique key) matching `fo` to the rows of `recompute`:
/// rows are compared whole (as text), with their multiplicity. The n-th copy
/// of a row on one side matches the n-th copy on the other; the copies
/// without a match are deleted (by ctid) or inserted. Returns the counts,
/// or with `capture` the rows as in [`apply_statement`].
pub(crate) fn multiset_apply_statement(
    st: &str,
    recompute: &str,
    fo: &str,
    columns: &[String],
    capture: Option<&[String]>,
) -> String {
    let (returning_old, returning_new, result) = returning(capture);
    let cols: Vec<String> = columns.iter().map(|c| format!("n.{c}")).collect();
    format!(
        "WITH new AS MATERIALIZED (SELECT r.*, ROW(r.*)::pg_catalog.text AS __pgt_img FROM ({recompute}) r),\n\
         newn AS MATERIALIZED (SELECT new.*, pg_catalog.row_number() OVER (PARTITION BY new.__pgt_img) AS __pgt_rn FROM new),\n\
         old AS MATERIALIZED (SELECT o.ctid AS __pgt_ctid, ROW(o.*)::pg_catalog.text AS __pgt_img, \
         pg_catalog.row_number() OVER (PARTITION BY ROW(o.*)::pg_catalog.text) AS __pgt_rn FROM {st} o WHERE {fo}),\n\
         gone AS (DELETE FROM {st} o USING old d WHERE o.ctid OPERATOR(pg_catalog.=) d.__pgt_ctid AND NOT EXISTS (\n\
         \x20   SELECT 1 FROM newn n WHERE n.__pgt_img OPERATOR(pg_catalog.=) d.__pgt_img AND n.__pgt_rn OPERATOR(pg_catalog.=) d.__pgt_rn) \
         RETURNING {returning_old}),\n\
         added AS (INSERT INTO {st} SELECT {cols} FROM newn n WHERE NOT EXISTS (\n\
         \x20   SELECT 1 FROM old d WHERE d.__pgt_img OPERATOR(pg_catalog.=) n.__pgt_img AND d.__pgt_rn OPERATOR(pg_catalog.=) n.__pgt_rn) \
         RETURNING {returning_new})\n\
         {result}",
        cols = cols.join(", "),
    )
}

/// RETURNING lists of the deleted and inserted rows, and the final SELECT:
/// the two counts, or with `capture` (quoted column names) the rows.
pub(crate) fn returning(capture: Option<&[String]>) -> (String, String, String) {
    match capture {
        None => (
            "1".to_string(),
            "1".to_string(),
            "SELECT (SELECT pg_catalog.count(*) FROM gone), (SELECT pg_catalog.count(*) FROM added)"
                .to_string(),
        ),
        Some(cols) => {
            let old: Vec<String> = cols.iter().map(|c| format!("o.{c}")).collect();
            let text: String = cols.iter().map(|c| format!(", {c}::pg_catalog.text")).collect();
            let list = if cols.is_empty() { "1".to_string() } else { cols.join(", ") };
            (
                if cols.is_empty() { "1".to_string() } else { old.join(", ") },
                list,
                format!("SELECT 'D'{text} FROM gone UNION ALL SELECT 'I'{text} FROM added"),
            )
        }
    }
}

/// RETURNING lists of the deleted, inserted and updated rows, and the
/// final SELECT: the counts of rows deleted and inserted (an updated row
/// counts as both), or with `capture` (quoted column names) the rows.
fn returning_with_updates(capture: Option<&[String]>) -> (String, String, String, String) {
    let (returning_old, returning_new, result) = returning(capture);
    match capture {
        None => (
            returning_old,
            returning_new,
            "1".to_string(),
            "SELECT (SELECT pg_catalog.count(*) FROM gone) OPERATOR(pg_catalog.+) (SELECT pg_catalog.count(*) FROM changed), \
                    (SELECT pg_catalog.count(*) FROM added) OPERATOR(pg_catalog.+) (SELECT pg_catalog.count(*) FROM changed)"
                .to_string(),
        ),
        Some(cols) => {
            // An updated row: its old and new values, as __pgt_o<i> and
            // __pgt_n<i> (RETURNING's OLD and NEW, renamed: `new` is the
            // name of the recomputed rows).
            let mut images: Vec<String> = Vec::new();
            let (mut old_text, mut new_text) = (String::new(), String::new());
            for (i, c) in cols.iter().enumerate() {
                images.push(format!("__pgt_old.{c} AS __pgt_o{i}"));
                images.push(format!("__pgt_new.{c} AS __pgt_n{i}"));
                old_text.push_str(&format!(", __pgt_o{i}::pg_catalog.text"));
                new_text.push_str(&format!(", __pgt_n{i}::pg_catalog.text"));
            }
            let changed = if cols.is_empty() {
                "1".to_string()
            } else {
                format!("WITH (OLD AS __pgt_old, NEW AS __pgt_new) {}", images.join(", "))
            };
            (
                returning_old,
                returning_new,
                changed,
                format!(
                    "{result} UNION ALL SELECT 'D'{old_text} FROM changed UNION ALL SELECT 'I'{new_text} FROM changed"
                ),
            )
        }
    }
}

/// Is the stream table a multiset (its key index is not unique: a UNION
/// ALL)?
pub fn is_multiset(relid: pg_sys::Oid) -> PgtResult<bool> {
    Ok(crate::catalog::sys::kept_one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_index i \
                          JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) i.indexrelid \
                         WHERE i.indrelid OPERATOR(pg_catalog.=) $1 AND NOT i.indisunique \
                           AND c.relname OPERATOR(pg_catalog.=) ('__pgt_key_' OPERATOR(pg_catalog.||) $1::pg_catalog.text))",
        &[relid.into()],
    )?
    .unwrap_or(false))
}

/// The apply statement with the key values as parameters, to be prepared
/// once and run for every statement (IMMEDIATE): per key column of every
/// table reference, `$n` the distinct values as an array literal (text,
/// NULL when none) and `$n+1` whether NULL is among them. `shape` gives, per
/// table reference, its key columns as (quoted name, SQL type).
pub fn apply_sql_with_params(
    st: &str,
    query: &str,
    columns: &[String],
    shape: &[Vec<(String, String)>],
    keys: &[String],
    many_keys: bool,
) -> (String, usize) {
    let mut n = 0;
    let mut filters: Vec<(String, String)> = Vec::new(); // (for alias n, for alias o)
    for group in shape {
        let mut fo = Vec::new();
        // A branch whose key group has no values this time is skipped
        // whole: a one-time filter, which a generic plan keeps.
        let mut fn_ =
            vec![format!("(${}::pg_catalog.text IS NOT NULL OR ${}::pg_catalog.bool)", n + 1, n + 2)];
        for (col, ty) in group {
            let (v, z) = (n + 1, n + 2);
            n += 2;
            // With `many_keys` (the statement runs for any number of
            // keys), the array is in a sub-SELECT: an InitPlan, converted
            // from text once per execution. Written as a cast of the
            // parameter, the generic plan converts it again for every row
            // it tests: a statement touching 1000 groups parsed the
            // 1000-value array some 3000 times. For a few keys the cast is
            // cheaper (the InitPlan's plan shapes cost a single-row UPDATE
            // of a join view about half its maintenance time).
            let array = if many_keys {
                format!("(SELECT ${v}::pg_catalog.text::{ty}[])::{ty}[]")
            } else {
                format!("${v}::pg_catalog.text::{ty}[]")
            };
            let term = |alias: &str| {
                format!(
                    "({alias}.{col} OPERATOR(pg_catalog.=) ANY ({array}) \
                     OR ({alias}.{col} IS NULL AND ${z}::pg_catalog.bool))"
                )
            };
            fo.push(term("o"));
            fn_.push(term("n"));
        }
        filters.push((fn_.join(" AND "), fo.join(" AND ")));
    }
    let cols = columns.join(", ");
    if filters.is_empty() {
        // No key (an aggregate without GROUP BY): the whole query.
        return (
            apply_statement(st, &format!("SELECT n.* FROM ({query}) n({cols})"), "true", columns, keys, None),
            0,
        );
    }
    let recompute = filters
        .iter()
        .map(|(fn_, _)| format!("SELECT n.* FROM ({query}) n({cols}) WHERE {fn_}"))
        .collect::<Vec<_>>()
        .join(" UNION ");
    let fo = filters.iter().map(|(_, fo)| format!("({fo})")).collect::<Vec<_>>().join(" OR ");
    (apply_statement(st, &recompute, &fo, columns, keys, None), n)
}

/// Parameters for [`apply_sql_with_params`], in its order.
pub fn apply_params(groups: &[Vec<KeyValues>]) -> Vec<pgrx::datum::DatumWithOid<'static>> {
    let mut out = Vec::new();
    for k in groups.iter().flatten() {
        out.push(k.values.clone().into());
        out.push(k.has_null.into());
    }
    out
}

/// Columns of the stream table as (quoted name, type) by attnum.
pub fn output_columns(relid: pg_sys::Oid) -> PgtResult<Vec<(String, String)>> {
    crate::catalog::sys::relation_columns(relid)
}

/// Count the window and collect the affected key values, per table
/// reference, from the buffers, on the refresh's snapshot (as the extension
/// owner, who owns the buffers).
/// What the window of a differential refresh touches.
pub struct Affected {
    /// Change rows in the window, over all sources.
    pub changes: i64,
    /// Distinct affected keys, over all table references (an upper bound of
    /// the stream table rows to recompute).
    pub keys: i64,
    /// Affected key values per table reference.
    pub groups: Vec<Vec<KeyValues>>,
    /// For a grouped join: per other table reference with changes, the
    /// changed values (old and new) of the column its path to the grouping
    /// table starts with, as an array literal.
    pub join_values: Vec<(u32, String)>,
}

impl Affected {
    /// Only counted: `changes` change rows, bounding `keys` keys (no key
    /// values read).
    pub fn counted(changes: i64, keys: i64) -> Affected {
        Affected { changes, keys, groups: Vec::new(), join_values: Vec::new() }
    }
}

pub fn affected_keys(
    relid: pg_sys::Oid,
    plan: &Plan,
    snapshot: &RefreshSnapshot,
    window: &str,
) -> PgtResult<Affected> {
    let columns = output_columns(relid)?;
    let count = changes_in(plan, snapshot, window)?;
    let mut groups = Vec::new();
    let mut distinct_keys = 0i64;
    for group in plan.key_groups() {
        // Each key column's value in a change row: its source column, or
        // the GROUP BY expression it is, over the change row's columns
        // read as the table's (under their names and alias `b`).
        let source = group[0].source;
        let named = match plan.key_exprs.is_empty() {
            true => Vec::new(),
            false => sys::attribute_names(source, Some(&plan.captured_columns(source)))?,
        };
        let value = |k: &KeyColumn| match named.is_empty() {
            true => format!("c{}", k.source_attnum),
            false => key_value_sql(plan, k, &named),
        };
        let row_of_keys: Vec<String> = group.iter().map(value).collect();
        let mut select = vec![format!("pg_catalog.count(DISTINCT ROW({}))", row_of_keys.join(", "))];
        for v in &row_of_keys {
            select.push(format!("(pg_catalog.array_agg(DISTINCT {v}) FILTER (WHERE {v} IS NOT NULL))::text"));
            select.push(format!("pg_catalog.bool_or({v} IS NULL)"));
        }
        let rows = format!(
            "{} WHERE __pgt_action OPERATOR(pg_catalog.<>) 'S' AND {window}",
            buffer::rows_sql(source)?
        );
        let row = if named.is_empty() {
            let sql = format!("SELECT {} FROM {rows}", select.join(", "));
            sys::as_extension_owner(|| snapshot.query_text(&sql))?
        } else {
            // (Evaluated as the stream table's owner, who may read the
            // buffers: see analysis.)
            let columns: Vec<String> = named
                .iter()
                .map(|(attnum, name)| format!("c{attnum} AS {}", crate::sql::quote_ident(name)))
                .collect();
            let sql =
                format!("SELECT {} FROM (SELECT {} FROM {rows}) AS b", select.join(", "), columns.join(", "));
            let owner = sys::relation_owner(relid)?;
            sys::as_restricted_role(owner, || snapshot.query_text(&sql))?
        };
        distinct_keys += row.first().cloned().flatten().and_then(|n| n.parse::<i64>().ok()).unwrap_or(0);
        let mut keys = Vec::new();
        for (i, k) in group.iter().enumerate() {
            let (name, ty) = columns
                .get(k.output_attnum as usize - 1)
                .cloned()
                .ok_or_else(|| PgtError::Internal("key column out of range".into()))?;
            keys.push(KeyValues {
                column: name,
                sql_type: ty,
                values: row.get(1 + 2 * i).cloned().flatten(),
                has_null: row.get(2 + 2 * i).cloned().flatten().as_deref() == Some("t"),
            });
        }
        groups.push(keys);
    }
    let mut join_values = Vec::new();
    for (rte, source, _, path) in plan.followed() {
        let Some(first) = path.first() else { continue };
        let attnum = first.0 .1;
        let sql = format!(
            "SELECT (pg_catalog.array_agg(DISTINCT c{attnum}) FILTER (WHERE c{attnum} IS NOT NULL))::text \
               FROM {} WHERE __pgt_action OPERATOR(pg_catalog.<>) 'S' AND {window}",
            buffer::rows_sql(source)?
        );
        let row = sys::as_extension_owner(|| snapshot.query_text(&sql))?;
        if let Some(values) = row.first().cloned().flatten() {
            join_values.push((rte, values));
        }
    }
    Ok(Affected { changes: count, keys: distinct_keys, groups, join_values })
}

/// A key column's value in a row of its table under alias `b`, whose
/// columns are `names` ((attnum, name)): the GROUP BY expression it is
/// (see [`Plan::key_exprs`]), or its column.
pub(crate) fn key_value_sql(plan: &Plan, k: &KeyColumn, names: &[(i16, String)]) -> String {
    if let Some(e) = plan.key_exprs.iter().find(|e| e.output_attnum == k.output_attnum) {
        return format!("({})", e.sql);
    }
    let name = names.iter().find(|(a, _)| *a == k.source_attnum).map(|(_, n)| n.as_str());
    format!("b.{}", crate::sql::quote_ident(name.unwrap_or_default()))
}

/// Changed rows in the window (a window condition) over all the plan's
/// sources.
pub fn changes_in(plan: &Plan, snapshot: &RefreshSnapshot, window: &str) -> PgtResult<i64> {
    let mut count = 0;
    for source in plan.sources() {
        count += buffer::count_in(source, snapshot, window)?;
    }
    Ok(count)
}

/// A grouped join: follow each changed value of another table along the
/// `=` conditions to the grouping table, and add the groups reached (in
/// the state at the refresh snapshot; the old state's groups are reached
/// by the old values, which the change buffers hold, through tables whose
/// own changes bring in their own groups). `run` executes a query as the
/// stream table's owner and returns its first row. Also returns how many
/// groups were reached (counted per changed table).
pub fn expand_join_groups(
    relid: pg_sys::Oid,
    plan: &Plan,
    mut groups: Vec<Vec<KeyValues>>,
    join_values: &[(u32, String)],
    run: &dyn Fn(&str) -> PgtResult<Vec<Option<String>>>,
) -> PgtResult<(Vec<Vec<KeyValues>>, i64)> {
    let Some(join) = &plan.join else { return Ok((groups, 0)) };
    let followed = plan.followed();
    let mut reached = 0i64;
    let columns = output_columns(relid)?;
    let table_of = |rte: u32| join.tables.iter().find(|(r, _)| *r == rte).map(|(_, s)| *s);
    let column_name = |rte: u32, attnum: i16| -> PgtResult<String> {
        let source = table_of(rte).ok_or_else(|| PgtError::Internal("join table missing".into()))?;
        let names = sys::attribute_names(source, Some(&[attnum]))?;
        let (_, name) = names.first().ok_or_else(|| PgtError::Internal("join column missing".into()))?;
        Ok(crate::sql::quote_ident(name))
    };
    for (rte, values) in join_values {
        let Some((_, _, group_rte, path)) = followed.iter().find(|f| f.0 == *rte) else { continue };
        let group_rte = *group_rte;
        // Tables along the path after the changed one: r1 … rn (= grouping).
        let mut from = Vec::new();
        let mut conditions = Vec::new();
        for (i, ((from_rte, from_att), (to_rte, to_att))) in path.iter().enumerate() {
            let alias = format!("r{}", i + 1);
            let source = table_of(*to_rte).ok_or_else(|| PgtError::Internal("join table missing".into()))?;
            from.push(format!("{} {alias}", crate::catalog::lifecycle::relation_name(source)?));
            let to_col = format!("{alias}.{}", column_name(*to_rte, *to_att)?);
            if i == 0 {
                let source =
                    table_of(*from_rte).ok_or_else(|| PgtError::Internal("join table missing".into()))?;
                let ty = crate::catalog::sys::kept_one::<String>(
                    "SELECT pg_catalog.format_type(COALESCE(NULLIF(t.typbasetype, 0), a.atttypid), NULL) \
                       FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid OPERATOR(pg_catalog.=) a.atttypid \
                      WHERE a.attrelid OPERATOR(pg_catalog.=) $1 AND a.attnum OPERATOR(pg_catalog.=) $2",
                    &[source.into(), (*from_att).into()],
                )?
                .ok_or_else(|| PgtError::Internal("join column type missing".into()))?;
                conditions.push(format!(
                    "{to_col} OPERATOR(pg_catalog.=) ANY ({}::{ty}[])",
                    crate::sql::quote_literal(values)
                ));
            } else {
                conditions.push(format!("r{i}.{} = {to_col}", column_name(*from_rte, *from_att)?));
            }
        }
        // (The rows reached, as alias `b`: a key column is a column of
        // theirs, or a GROUP BY expression over them.)
        let grouped = format!("r{}", path.len());
        let group_table =
            table_of(group_rte).ok_or_else(|| PgtError::Internal("join table missing".into()))?;
        let names = sys::attribute_names(group_table, None)?;
        let mut select = Vec::new();
        let mut keys = Vec::new();
        let mut row_of_keys = Vec::new();
        for k in plan.key.iter().filter(|k| k.rte == group_rte) {
            let col = key_value_sql(plan, k, &names);
            select.push(format!(
                "(pg_catalog.array_agg(DISTINCT {col}) FILTER (WHERE {col} IS NOT NULL))::text"
            ));
            select.push(format!("pg_catalog.bool_or({col} IS NULL)"));
            row_of_keys.push(col);
            let (name, ty) = columns
                .get(k.output_attnum as usize - 1)
                .cloned()
                .ok_or_else(|| PgtError::Internal("key column out of range".into()))?;
            keys.push(KeyValues { column: name, sql_type: ty, values: None, has_null: false });
        }
        select.push(format!("pg_catalog.count(DISTINCT ROW({}))", row_of_keys.join(", ")));
        // (Only the columns the keys read: the owner may have SELECT on
        // those alone.)
        let mut attnums: Vec<i16> = plan
            .key
            .iter()
            .filter(|k| k.rte == group_rte && k.source_attnum != 0)
            .map(|k| k.source_attnum)
            .chain(
                plan.key_exprs.iter().filter(|e| e.rte == group_rte).flat_map(|e| e.attnums.iter().copied()),
            )
            .collect();
        attnums.sort_unstable();
        attnums.dedup();
        let mut read: Vec<String> = attnums
            .iter()
            .filter_map(|a| names.iter().find(|(n, _)| n == a))
            .map(|(_, name)| format!("{grouped}.{}", crate::sql::quote_ident(name)))
            .collect();
        if read.is_empty() {
            read.push("NULL AS __pgt_none".into());
        }
        let sql = format!(
            "SELECT {} FROM (SELECT {} FROM {} WHERE {}) b",
            select.join(", "),
            read.join(", "),
            from.join(", "),
            conditions.join(" AND ")
        );
        let row = run(&sql)?;
        reached +=
            row.get(2 * keys.len()).cloned().flatten().and_then(|n| n.parse::<i64>().ok()).unwrap_or(0);
        for (i, k) in keys.iter_mut().enumerate() {
            k.values = row.get(2 * i).cloned().flatten();
            k.has_null = row.get(2 * i + 1).cloned().flatten().as_deref() == Some("t");
        }
        groups.push(keys);
    }
    Ok((groups, reached))
}

/// The apply statement for `keys`, built as the stream table's
/// owner (whose role runs them): with search_path = pg_catalog, set by the
/// role switch, the deparsed query names every object with its schema.
fn statements_as_owner(
    relid: pg_sys::Oid,
    keys: &[Vec<KeyValues>],
    key_names: &[String],
    capture: Option<&[String]>,
    recompute: Option<&str>,
    pushed_keys: &[super::analysis::KeyColumn],
) -> PgtResult<String> {
    let st = crate::catalog::lifecycle::relation_name(relid)?;
    let columns: Vec<String> = output_columns(relid)?.into_iter().map(|(name, _)| name).collect();
    if is_multiset(relid)? {
        // One filter for every branch's keys: a row is recomputed once.
        let (recompute, fo) = match recompute {
            Some(recompute) if keys.is_empty() => (recompute.to_string(), "true".to_string()),
            Some(recompute) => (recompute.to_string(), groups_filter("o", keys)),
            None => (
                format!(
                    "SELECT n.* FROM ({}) n({}) WHERE {}",
                    view_query(relid)?,
                    columns.join(", "),
                    groups_filter("n", keys)
                ),
                groups_filter("o", keys),
            ),
        };
        return Ok(multiset_apply_statement(&st, &recompute, &fo, &columns, capture));
    }
    if let Some(recompute) = recompute {
        // No key values: every row (a FULL refresh applied as differences).
        let fo = if keys.is_empty() { "true".to_string() } else { groups_filter("o", keys) };
        return Ok(apply_statement(&st, recompute, &fo, &columns, key_names, capture));
    }
    let query = view_query(relid)?;
    let pushed = super::pushdown::pushed_query(relid, pushed_keys, false)?;
    Ok(apply_statement(
        &st,
        &recompute_sql(&query, &columns, keys, pushed.as_ref()),
        &groups_filter("o", keys),
        &columns,
        key_names,
        capture,
    ))
}

/// Apply the affected keys: recompute them from the query on `snapshot`,
/// as the stream table's owner, inside the maintenance window.
pub fn apply(
    relid: pg_sys::Oid,
    snapshot: &RefreshSnapshot,
    keys: &[Vec<KeyValues>],
    key_names: &[String],
    recompute: Option<&str>,
    pushed_keys: &[super::analysis::KeyColumn],
) -> PgtResult<(i64, i64)> {
    run_apply(relid, snapshot, &|capture| {
        statements_as_owner(relid, keys, key_names, capture, recompute, pushed_keys)
    })
}

/// Run the apply statement `build` returns (given the quoted names of the
/// columns to capture when stream tables read this one) as the stream
/// table's owner, inside its maintenance window, on `snapshot`; the rows it
/// deletes and inserts are written to the stream table's own change buffer
/// for its readers (cdc::buffer). Returns (rows deleted, rows inserted).
pub(crate) fn run_apply(
    relid: pg_sys::Oid,
    snapshot: &RefreshSnapshot,
    build: &dyn Fn(Option<&[String]>) -> PgtResult<String>,
) -> PgtResult<(i64, i64)> {
    let owner = sys::relation_owner(relid)?;
    let captured = captured_columns(relid)?;
    let names: Option<Vec<String>> =
        captured.as_ref().map(|c| c.iter().map(|(_, name)| crate::sql::quote_ident(name)).collect());
    let (counts, rows) = sys::as_restricted_role(owner, || {
        let sql = build(names.as_deref())?;
        with_window(relid, || -> PgtResult<((i64, i64), crate::sql::TextRows)> {
            if names.is_some() {
                let rows = snapshot.query_rows_writing(&sql)?;
                let deleted =
                    rows.iter().filter(|r| r.first().cloned().flatten().as_deref() == Some("D")).count();
                return Ok(((deleted as i64, (rows.len() - deleted) as i64), rows));
            }
            let row = snapshot.query_text_writing(&sql)?;
            let count =
                |i: usize| row.get(i).cloned().flatten().and_then(|n| n.parse::<i64>().ok()).unwrap_or(0);
            Ok(((count(0), count(1)), Vec::new()))
        })
    })?;
    if let Some(captured) = captured {
        write_captured(relid, &captured, &rows)?;
    }
    Ok(counts)
}

/// The columns (attnum, name) of the stream table its own change buffer
/// captures, when stream tables read it through one.
pub(crate) fn captured_columns(relid: pg_sys::Oid) -> PgtResult<Option<Vec<(i16, String)>>> {
    match buffer::buffer_relid(relid)? {
        Some(_) => Ok(Some(sys::attribute_names(relid, Some(&buffer::captured_columns(relid)?))?)),
        None => Ok(None),
    }
}

/// Write the rows an apply returned (`D`/`I`, then the `captured` columns
/// as text) to the stream table's change buffer.
pub(crate) fn write_captured(
    relid: pg_sys::Oid,
    captured: &[(i16, String)],
    rows: &crate::sql::TextRows,
) -> PgtResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let attnums: Vec<i16> = captured.iter().map(|(attnum, _)| *attnum).collect();
    sys::as_extension_owner(|| buffer::write_rows(relid, &attnums, rows))
}

/// The whole query, its output renamed to the stream table's columns (as
/// the owner: see statements_as_owner).
pub fn whole_query(relid: pg_sys::Oid) -> PgtResult<String> {
    let cols: Vec<String> = output_columns(relid)?.into_iter().map(|(name, _)| name).collect();
    Ok(format!("SELECT n.* FROM ({}) n({})", view_query(relid)?, cols.join(", ")))
}

/// Bring every row to the query's result on `snapshot`, deleting and
/// inserting only the rows that differ, and capturing them for the stream
/// tables that read this one (a FULL refresh of a stream table with
/// readers, which then need no FULL refresh of their own).
pub fn apply_all(relid: pg_sys::Oid, snapshot: &RefreshSnapshot, key_names: &[String]) -> PgtResult<i64> {
    let owner = sys::relation_owner(relid)?;
    let everything = sys::as_restricted_role(owner, || whole_query(relid))?;
    apply_all_from(relid, snapshot, key_names, &everything)
}

/// [`apply_all`] with the rows of `everything` (all of the stream table's
/// rows computed some other way: from running totals).
pub fn apply_all_from(
    relid: pg_sys::Oid,
    snapshot: &RefreshSnapshot,
    key_names: &[String],
    everything: &str,
) -> PgtResult<i64> {
    apply(relid, snapshot, &[], key_names, Some(everything), &[])?;
    let st = crate::catalog::lifecycle::relation_name(relid)?;
    Ok(Spi::get_one::<i64>(&format!("SELECT pg_catalog.count(*) FROM {st}"))?.unwrap_or(0))
}

/// Apply the affected keys now, on the current statement's snapshot (for
/// IMMEDIATE maintenance, inside the writing statement). With `capture`
/// (quoted column names), returns the rows deleted and inserted as
/// [`apply_statement`] does; otherwise no rows.
pub fn apply_now(
    relid: pg_sys::Oid,
    keys: &[Vec<KeyValues>],
    key_names: &[String],
    recompute: Option<&str>,
    capture: Option<&[String]>,
    pushed_keys: &[super::analysis::KeyColumn],
) -> PgtResult<crate::sql::TextRows> {
    let owner = sys::relation_owner(relid)?;
    sys::as_restricted_role(owner, || {
        let sql = statements_as_owner(relid, keys, key_names, capture, recompute, pushed_keys)?;
        with_window(relid, || -> PgtResult<crate::sql::TextRows> {
            Spi::connect_mut(|c| {
                let table = c.update(&sql, None, &[])?;
                if capture.is_none() {
                    return Ok(Vec::new());
                }
                sys::text_rows(table)
            })
        })
    })
}

/// Replace the whole contents with the query's result now (IMMEDIATE after
/// TRUNCATE of a source).
pub fn replace_all_now(relid: pg_sys::Oid) -> PgtResult<()> {
    let owner = sys::relation_owner(relid)?;
    sys::as_restricted_role(owner, || {
        let query = view_query(relid)?;
        let st = crate::catalog::lifecycle::relation_name(relid)?;
        with_window(relid, || -> PgtResult<()> {
            Spi::run(&format!("DELETE FROM {st}"))?;
            Spi::run(&format!("INSERT INTO {st} {query}"))?;
            Ok(())
        })
    })?;
    // Stream tables reading this one through its change buffer recompute
    // too (its changes were not recorded).
    if buffer::buffer_relid(relid)?.is_some() {
        sys::as_extension_owner(|| buffer::mark_truncated(relid))?;
    }
    super::algebraic::rebuild_now(relid)
}

/// The statement a refresh would run for `keys`, for `explain_stream_table`.
pub fn explain_sql(
    relid: pg_sys::Oid,
    keys: &[Vec<KeyValues>],
    key_names: &[String],
    recompute: Option<&str>,
    pushed_keys: &[super::analysis::KeyColumn],
) -> PgtResult<String> {
    let owner = sys::relation_owner(relid)?;
    sys::as_restricted_role(owner, || {
        statements_as_owner(relid, keys, key_names, None, recompute, pushed_keys)
    })
}

/// The stream table's stored query as SQL (deparsed; run it as the owner,
/// with search_path = pg_catalog, so that every name is qualified).
pub fn view_query(relid: pg_sys::Oid) -> PgtResult<String> {
    let query = crate::catalog::sys::kept_one::<String>(
        "SELECT pg_catalog.pg_get_viewdef($1, false)",
        &[relid.into()],
    )?
    .ok_or_else(|| PgtError::Internal("no view definition".into()))?;
    Ok(query.trim().trim_end_matches(';').to_string())
}

/// The stream table's key column names (quoted), in key order: the columns of
/// its unique key index, the ON CONFLICT target of the apply statement.
pub fn key_names(relid: pg_sys::Oid, plan: &Plan) -> PgtResult<Vec<String>> {
    let columns = output_columns(relid)?;
    plan.key
        .iter()
        .map(|k| {
            columns
                .get(k.output_attnum as usize - 1)
                .map(|(n, _)| n.clone())
                .ok_or_else(|| PgtError::Internal("key column out of range".into()))
        })
        .collect()
}

/// For `a LEFT JOIN b` (or a chain `a LEFT JOIN b ... LEFT JOIN c ...`):
/// turn the affected keys of the other tables into the `a` keys whose rows
/// they touch, and recompute by `a` key only (every output row belongs to
/// one `a` row). The `a` rows joined to a changed row of another table are
/// found in the query's current result (new joins) and in the stream table
/// (old joins): a LEFT JOIN never drops the rows on its left, so a change
/// that reaches no output row through its old or new image changes no `a`
/// row's output (a WHERE clause reads `a` alone, see analysis).
/// For `a FULL JOIN b`, the same both ways: the affected `a` keys gain the
/// `a` rows joined to changed `b` rows, and the other way round, and rows
/// are recomputed by either key (a row that lost or gained its partner is
/// reached through the partner's key).
/// `run` executes a query as the stream table's owner on the refresh's view
/// of the tables and returns its first row as text. Other shapes: unchanged.
pub fn expand_outer_join(
    relid: pg_sys::Oid,
    plan: &Plan,
    groups: Vec<Vec<KeyValues>>,
    run: &dyn Fn(&str) -> PgtResult<Vec<Option<String>>>,
) -> PgtResult<Vec<Vec<KeyValues>>> {
    let key_groups = plan.key_groups();
    let index = |rte| {
        key_groups
            .iter()
            .position(|g| g[0].rte == rte)
            .ok_or_else(|| PgtError::Internal("outer join key groups missing".into()))
    };
    match plan.shape {
        Shape::LeftJoin { preserved } => {
            let p = index(preserved)?;
            let mut keys = groups[p].clone();
            // (Tables whose changes were followed to the preserved table
            // brought their keys of it as groups of their own, after the
            // key groups: see expand_join_groups.)
            for (q, other) in groups.iter().enumerate() {
                match key_groups.get(q) {
                    Some(_) if q == p => {}
                    Some(g) if plan.outer_paths.iter().any(|(r, _)| *r == g[0].rte) => {}
                    Some(_) => keys = partner_keys(relid, &keys, other, run)?,
                    None => keys = merged(&keys, other)?,
                }
            }
            Ok(vec![keys])
        }
        // (With a WHERE clause, each side's changes were followed to the
        // other's rows instead: their groups, after the key groups, join
        // the other side's keys.)
        Shape::FullJoin { .. } if !plan.outer_paths.is_empty() => {
            let n = key_groups.len();
            let mut out = groups[..n.min(groups.len())].to_vec();
            for extra in groups.iter().skip(n) {
                let at = out
                    .iter()
                    .position(|g| g.iter().map(|k| &k.column).eq(extra.iter().map(|k| &k.column)))
                    .ok_or_else(|| PgtError::Internal("followed keys of no side".into()))?;
                out[at] = merged(&out[at], extra)?;
            }
            Ok(out)
        }
        Shape::FullJoin { left, right } => {
            let (p, q) = (index(left)?, index(right)?);
            let left_keys = partner_keys(relid, &groups[p], &groups[q], run)?;
            let right_keys = partner_keys(relid, &groups[q], &groups[p], run)?;
            // In the order of the key groups (the prepared IMMEDIATE statement's).
            let mut out = groups;
            out[p] = left_keys;
            out[q] = right_keys;
            Ok(out)
        }
        _ => Ok(groups),
    }
}

/// The values of two lists of affected keys of the same columns, together.
fn merged(keys: &[KeyValues], other: &[KeyValues]) -> PgtResult<Vec<KeyValues>> {
    if keys.len() != other.len() || keys.iter().zip(other).any(|(a, b)| a.column != b.column) {
        return Err(PgtError::Internal("merged key lists differ".into()));
    }
    keys.iter()
        .zip(other)
        .map(|(a, b)| {
            Ok(KeyValues {
                values: merged_array(a.values.as_deref(), b.values.as_deref())?,
                has_null: a.has_null || b.has_null,
                ..a.clone()
            })
        })
        .collect()
}

/// Two one-dimensional array literals (`{1,2}`, as array_agg writes them)
/// as one: their elements, in order (duplicates are harmless to `= ANY`).
fn merged_array(a: Option<&str>, b: Option<&str>) -> PgtResult<Option<String>> {
    let inner = |v: &str| {
        v.strip_prefix('{')
            .and_then(|v| v.strip_suffix('}'))
            .map(str::to_string)
            .ok_or_else(|| PgtError::Internal(format!("unexpected array literal {v}")))
    };
    Ok(match (a, b) {
        (Some(a), Some(b)) => {
            let (x, y) = (inner(a)?, inner(b)?);
            Some(match (x.is_empty(), y.is_empty()) {
                (true, _) => format!("{{{y}}}"),
                (_, true) => format!("{{{x}}}"),
                _ => format!("{{{x},{y}}}"),
            })
        }
        (a, b) => a.or(b).map(str::to_string),
    })
}

/// `own` (the affected keys of one side, a one-column key) and the keys of
/// that side's rows joined to the other side's affected keys `other`, in
/// the stream table (old joins) and in the query (new joins).
fn partner_keys(
    relid: pg_sys::Oid,
    own: &[KeyValues],
    other: &[KeyValues],
    run: &dyn Fn(&str) -> PgtResult<Vec<Option<String>>>,
) -> PgtResult<Vec<KeyValues>> {
    let mut keys = own.to_vec();
    if is_empty(other) {
        return Ok(keys);
    }
    let [a] = keys.as_mut_slice() else {
        return Err(PgtError::Internal("outer join key must be one column".into()));
    };
    let query = view_query(relid)?;
    let st = crate::catalog::lifecycle::relation_name(relid)?;
    let cols: Vec<String> = output_columns(relid)?.into_iter().map(|(n, _)| n).collect();
    let mut parts = vec![
        format!(
            "SELECT n.{col} AS x FROM ({query}) n({}) WHERE {}",
            cols.join(", "),
            key_filter("n", other),
            col = a.column
        ),
        format!("SELECT o.{col} FROM {st} o WHERE {}", key_filter("o", other), col = a.column),
    ];
    if let Some(values) = &a.values {
        parts.push(format!(
            "SELECT pg_catalog.unnest({}::{}[])",
            crate::sql::quote_literal(values),
            a.sql_type
        ));
    }
    let sql = format!(
        "SELECT (pg_catalog.array_agg(DISTINCT x) FILTER (WHERE x IS NOT NULL))::text FROM ({}) s",
        parts.join(" UNION ")
    );
    a.values = run(&sql)?.first().cloned().flatten();
    Ok(keys)
}

/// Placeholder key values (`{affected <column>}`) for showing the SQL shape.
pub fn placeholder_keys(relid: pg_sys::Oid, plan: &Plan) -> PgtResult<Vec<Vec<KeyValues>>> {
    let columns = output_columns(relid)?;
    plan.key_groups()
        .iter()
        .map(|group| {
            group
                .iter()
                .map(|k| {
                    let (name, ty) = columns
                        .get(k.output_attnum as usize - 1)
                        .cloned()
                        .ok_or_else(|| PgtError::Internal("key column out of range".into()))?;
                    Ok(KeyValues {
                        values: Some(format!("{{affected {}}}", name.trim_matches('"'))),
                        column: name,
                        sql_type: ty,
                        has_null: true,
                    })
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(col: &str, values: Option<&str>, has_null: bool) -> KeyValues {
        KeyValues { column: col.into(), sql_type: "integer".into(), values: values.map(Into::into), has_null }
    }

    #[test]
    fn key_filter_shapes() {
        assert_eq!(
            key_filter("o", &[key("k", Some("{1,2}"), false)]),
            "(o.k OPERATOR(pg_catalog.=) ANY ('{1,2}'::integer[]))"
        );
        assert_eq!(
            key_filter("n", &[key("k", Some("{1}"), true), key("\"K 2\"", None, true)]),
            "(n.k OPERATOR(pg_catalog.=) ANY ('{1}'::integer[]) OR n.k IS NULL) AND (n.\"K 2\" IS NULL)"
        );
        assert_eq!(key_filter("o", &[key("k", None, false)]), "false");
    }

    #[test]
    fn values_are_quoted_literals() {
        let f = key_filter(
            "o",
            &[KeyValues {
                column: "t".into(),
                sql_type: "text".into(),
                values: Some("{\"it's\"}".into()),
                has_null: false,
            }],
        );
        assert!(f.contains("'{\"it''s\"}'::text[]"), "{f}");
    }

    #[test]
    fn key_lists_merge() {
        assert_eq!(merged_array(Some("{1,2}"), Some("{3}")).ok(), Some(Some("{1,2,3}".to_string())));
        assert_eq!(merged_array(None, Some("{\"a,b\"}")).ok(), Some(Some("{\"a,b\"}".to_string())));
        assert_eq!(merged_array(Some("{}"), Some("{4}")).ok(), Some(Some("{4}".to_string())));
        assert_eq!(merged_array(None, None).ok(), Some(None));
        assert!(merged_array(Some("[0:1]={1,2}"), Some("{3}")).is_err());
        let a = [key("k", Some("{1}"), false)];
        let b = [key("k", None, true)];
        assert_eq!(merged(&a, &b).ok(), Some(vec![key("k", Some("{1}"), true)]));
        assert!(merged(&a, &[key("j", None, true)]).is_err());
    }

    #[test]
    fn apply_statements_skip_unchanged_rows() {
        let cols = vec!["k".to_string(), "n".to_string()];
        let sql = apply_sql(
            "s.st",
            "SELECT k, count(*) FROM s.t GROUP BY k",
            &cols,
            &[vec![key("k", Some("{1}"), false)]],
            &["k".to_string()],
        );
        assert!(sql.starts_with(
            "WITH new AS MATERIALIZED (SELECT n.* FROM (SELECT k, count(*) FROM s.t GROUP BY k) n(k, n) WHERE (n.k"
        ));
        // Rows whose key stays are updated only when their values differ.
        assert!(sql.contains("changed AS (UPDATE s.st o SET k = n.k, n = n.n FROM new n"));
        assert!(sql.contains("WHERE n.k OPERATOR(pg_catalog.=) o.k AND ((o.k"));
        assert!(sql.contains("AND NOT ((n.*) OPERATOR(pg_catalog.*=) (o.*))"));
        // Rows whose key is gone are deleted.
        assert!(sql.contains("gone AS (DELETE FROM s.st o WHERE ((o.k"));
        assert!(sql.contains("SELECT 1 FROM new n WHERE n.k OPERATOR(pg_catalog.=) o.k AND true"));
        assert!(sql.contains("WHERE (SELECT pg_catalog.count(*) FROM gone) OPERATOR(pg_catalog.>=) 0"));
        assert!(sql.contains("ON CONFLICT (k) DO NOTHING"));
    }

    #[test]
    fn joins_recompute_one_branch_per_changed_table() {
        let cols = vec!["a_id".to_string(), "b_id".to_string()];
        let groups = vec![vec![key("a_id", Some("{1}"), false)], vec![key("b_id", Some("{7}"), false)]];
        let sql = apply_sql("st", "Q", &cols, &groups, &cols);
        assert!(sql.contains("WHERE (((o.a_id OPERATOR(pg_catalog.=) ANY ('{1}'::integer[]))) OR ((o.b_id"));
        assert!(sql.contains("WHERE (n.a_id OPERATOR(pg_catalog.=) ANY ('{1}'::integer[])) UNION SELECT n.* FROM (Q) n(a_id, b_id) WHERE (n.b_id"));
        // A table reference without changes contributes no branch.
        let groups = vec![vec![key("a_id", None, false)], vec![key("b_id", Some("{7}"), false)]];
        let sql = apply_sql("st", "Q", &cols, &groups, &cols);
        assert!(!sql.contains("a_id OPERATOR(pg_catalog.=) ANY") && !sql.contains("UNION"));
        assert_eq!(groups_filter("o", &[vec![key("a_id", None, false)]]), "false");
    }
}
