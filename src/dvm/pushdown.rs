//! Affected keys pushed into `IN (aggregating subquery)`.
//!
//! A refresh recomputes the affected keys with `key = ANY(values)` over the
//! stored query. PostgreSQL pushes that condition into the tables whose
//! columns it names, and carries single constants through `=` conditions,
//! but not a list of values: in
//!
//! ```sql
//! SELECT ... FROM orders ...
//!  WHERE o_orderkey IN (SELECT l_orderkey FROM lineitem
//!                        GROUP BY l_orderkey HAVING sum(l_quantity) > 300)
//! ```
//!
//! (TPC-H Q18) the subquery aggregates all of `lineitem` for every refresh.
//!
//! Rule. When an `IN` ANDed at the top of the WHERE clause compares a key
//! column `k` of the stream table with a grouping column `g` of the
//! subquery (GROUP BY or DISTINCT), the recomputation of the keys with
//! `k ∈ V` may filter the subquery's rows by `g ∈ V`: an outer row with
//! `k = v` passes exactly when the subquery has a group with `g = v`, and
//! that group's rows all have `g = v`, so they are all kept and its HAVING
//! sees them all. (A NULL `k` makes the `IN` NULL: that row is dropped
//! either way.) The pushed query is the stored Query with `g = ANY($m)`
//! added to the subquery's WHERE, deparsed with a parameter marker `$m`
//! per key column, which [`fill`] replaces by the values.

use pgrx::pg_sys;

use super::analysis::KeyColumn;
use super::key_recompute::KeyValues;
use crate::error::{PgtError, PgtResult};
use crate::hooks::nodes::{copy_node, list_ptrs, make_node};

/// Markers are `$<MARK + output column number>`.
const MARK: i32 = 30_000;

/// The stored query with affected-key filters pushed into subqueries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pushed {
    /// SQL with a `$<marker>` for each column of `columns`.
    pub sql: String,
    /// Output column numbers (1-based) whose values the markers stand for.
    pub columns: Vec<i16>,
}

/// The stream table's query (without ORDER BY and LIMIT when `unlimited`)
/// with the affected values of `key`'s columns pushed into the `IN`
/// subqueries that group by a column compared with one of them; None when
/// there is none. Deparsed like `pg_get_viewdef`: call it as the owner,
/// under the role switch's `search_path`.
pub fn pushed_query(relid: pg_sys::Oid, key: &[KeyColumn], unlimited: bool) -> PgtResult<Option<Pushed>> {
    if key.is_empty() {
        return Ok(None);
    }
    // SAFETY: filters are added to the copy only; every node read is of
    // the type its tag says (checked before the cast), and pg_get_querydef
    // returns palloc'd strings, copied out.
    let found =
        unsafe { super::analysis::with_query_copy(relid, unlimited, |copy| push_into_copy(copy, key)) };
    let Some((plain, sql, columns)) = found else { return Ok(None) };
    let (plain, sql) = (
        plain.ok_or_else(|| PgtError::Internal("query not deparsed".into()))?,
        sql.ok_or_else(|| PgtError::Internal("query not deparsed".into()))?,
    );
    // A marker must stand only where it was put: not when the query itself
    // holds the same text (in a string constant, say).
    let already = super::analysis::placeholder_counts(&plain);
    if columns.iter().any(|c| already.contains_key(&(MARK + i32::from(*c)))) {
        return Ok(None);
    }
    Ok(Some(Pushed { sql, columns }))
}

/// The pushed query for one branch of affected keys (`group`; the stream
/// table's quoted column names are `output_names`): None when the branch
/// lacks one of the marked columns.
pub fn fill(pushed: &Pushed, output_names: &[String], group: &[KeyValues]) -> Option<String> {
    let mut by_marker = std::collections::HashMap::new();
    for attnum in &pushed.columns {
        let name = output_names.get(usize::try_from(*attnum).ok()?.checked_sub(1)?)?;
        let k = group.iter().find(|k| &k.column == name)?;
        // (Only NULL values: no subquery row is needed.)
        let literal = crate::sql::quote_literal(k.values.as_deref().unwrap_or("{}"));
        by_marker.insert(MARK + i32::from(*attnum), format!("{literal}::{}[]", k.sql_type));
    }
    Some(super::analysis::replace_placeholders(&pushed.sql, &by_marker))
}

/// Deparse `copy` (a copy of the stored Query) before and after pushing
/// the filters into it: (plain SQL, pushed SQL, marked columns), or None
/// when nothing could be pushed.
///
/// # Safety
/// `copy` is a valid analyzed Query the caller owns.
unsafe fn push_into_copy(
    copy: *mut pg_sys::Query,
    key: &[KeyColumn],
) -> Option<(Option<String>, Option<String>, Vec<i16>)> {
    // SAFETY: see pushed_query.
    unsafe {
        let plain = crate::hooks::cstr(pg_sys::pg_get_querydef(copy, false));
        let jt = (*copy).jointree;
        if jt.is_null() {
            return None;
        }
        let mut columns = Vec::new();
        for n in super::analysis::and_args((*jt).quals) {
            if (*n).type_ != pg_sys::NodeTag::T_SubLink {
                continue;
            }
            if let Some(attnum) = push_into_sublink(copy, n as *mut pg_sys::SubLink, key) {
                columns.push(attnum);
            }
        }
        if columns.is_empty() {
            return None;
        }
        Some((plain, crate::hooks::cstr(pg_sys::pg_get_querydef(copy, false)), columns))
    }
}

/// `outer = (subquery's grouping column)` for an `IN` of `top`'s WHERE:
/// add `column = ANY($marker)` to the subquery's WHERE; the key column's
/// output number, or None when the `IN` is not of that form.
///
/// # Safety
/// `top` is a valid Query and `sublink` a SubLink of its WHERE clause.
unsafe fn push_into_sublink(
    top: *mut pg_sys::Query,
    sublink: *mut pg_sys::SubLink,
    key: &[KeyColumn],
) -> Option<i16> {
    // SAFETY: see pushed_query.
    unsafe {
        let sl = &*sublink;
        if sl.subLinkType != pg_sys::SubLinkType::ANY_SUBLINK || sl.testexpr.is_null() {
            return None;
        }
        if (*sl.testexpr).type_ != pg_sys::NodeTag::T_OpExpr {
            return None;
        }
        let op = &*(sl.testexpr as *mut pg_sys::OpExpr);
        if !super::analysis::catalog_operator_named(op.opno, "=") {
            return None;
        }
        let [outer, param] = list_ptrs::<pg_sys::Node>(op.args)[..] else { return None };
        if param.is_null() || (*param).type_ != pg_sys::NodeTag::T_Param {
            return None;
        }
        let p = &*(param as *mut pg_sys::Param);
        if p.paramkind != pg_sys::ParamKind::PARAM_SUBLINK {
            return None;
        }
        // The outer side: a key column (a column of a top-level table, or
        // of a join's alias for one).
        let (varno, attnum) = top_level_column(top, outer)?;
        let k = key.iter().find(|k| k.rte == varno && k.source_attnum == attnum)?;
        let sub = sl.subselect as *mut pg_sys::Query;
        if sub.is_null() || (*sub).type_ != pg_sys::NodeTag::T_Query {
            return None;
        }
        let s = &mut *sub;
        if s.jointree.is_null()
            || !s.groupingSets.is_null()
            || s.hasWindowFuncs
            || s.hasTargetSRFs
            || !s.limitCount.is_null()
            || !s.limitOffset.is_null()
            || (s.groupClause.is_null() && s.distinctClause.is_null())
        {
            return None;
        }
        let tle = list_ptrs::<pg_sys::TargetEntry>(s.targetList)
            .into_iter()
            .find(|t| i32::from((**t).resno) == p.paramid)?;
        let column = grouping_expression(s, tle)?;
        let commutator = pg_sys::get_commutator(op.opno);
        let outer_type = pg_sys::exprType(outer);
        let array_type = pg_sys::get_array_type(outer_type);
        if commutator == pg_sys::InvalidOid || array_type == pg_sys::InvalidOid {
            return None;
        }
        let marker = make_node::<pg_sys::Param>(pg_sys::NodeTag::T_Param);
        (*marker).paramkind = pg_sys::ParamKind::PARAM_EXTERN;
        (*marker).paramid = MARK + i32::from(k.output_attnum);
        (*marker).paramtype = array_type;
        (*marker).paramtypmod = -1;
        (*marker).paramcollid = pg_sys::exprCollation(outer);
        (*marker).location = -1;
        let filter = make_node::<pg_sys::ScalarArrayOpExpr>(pg_sys::NodeTag::T_ScalarArrayOpExpr);
        (*filter).opno = commutator;
        (*filter).opfuncid = pg_sys::get_opcode(commutator);
        (*filter).useOr = true;
        (*filter).inputcollid = op.inputcollid;
        (*filter).args =
            crate::hooks::nodes::list_from_ptrs(&[copy_node(column), marker as *mut pg_sys::Node]);
        (*filter).location = -1;
        (*s.jointree).quals = pg_sys::make_and_qual((*s.jointree).quals, filter as *mut pg_sys::Node);
        Some(k.output_attnum)
    }
}

/// The top-level table column `expr` is: (range table index, attnum).
///
/// # Safety
/// `top` is a valid Query and `expr` NULL or one of its expressions.
unsafe fn top_level_column(top: *mut pg_sys::Query, expr: *mut pg_sys::Node) -> Option<(u32, i16)> {
    // SAFETY: see pushed_query.
    unsafe {
        let rtable = list_ptrs::<pg_sys::RangeTblEntry>((*top).rtable);
        let mut node = expr;
        for _ in 0..64 {
            if node.is_null() || (*node).type_ != pg_sys::NodeTag::T_Var {
                return None;
            }
            let var = &*(node as *mut pg_sys::Var);
            if var.varlevelsup != 0 || var.varno < 1 || var.varattno <= 0 {
                return None;
            }
            let rte = *rtable.get(var.varno as usize - 1)?;
            match (*rte).rtekind {
                pg_sys::RTEKind::RTE_RELATION => return Some((var.varno as u32, var.varattno)),
                pg_sys::RTEKind::RTE_JOIN => {
                    node = *list_ptrs::<pg_sys::Node>((*rte).joinaliasvars).get(var.varattno as usize - 1)?;
                }
                _ => return None,
            }
        }
        None
    }
}

/// The expression, over the subquery's own rows, of an output column that
/// is one of its grouping expressions (a GROUP BY item or, without GROUP
/// BY and aggregates, a DISTINCT item).
///
/// # Safety
/// `tle` is a target entry of `s`.
unsafe fn grouping_expression(s: &pg_sys::Query, tle: *mut pg_sys::TargetEntry) -> Option<*mut pg_sys::Node> {
    // SAFETY: see pushed_query.
    unsafe {
        let expr = (*tle).expr as *mut pg_sys::Node;
        let sortref = (*tle).ressortgroupref;
        let listed = |clauses: *mut pg_sys::List| {
            list_ptrs::<pg_sys::SortGroupClause>(clauses).iter().any(|c| (**c).tleSortGroupRef == sortref)
        };
        let grouping = if s.groupClause.is_null() {
            !s.hasAggs && listed(s.distinctClause)
        } else {
            listed(s.groupClause)
        };
        if expr.is_null() || sortref == 0 || !grouping {
            return None;
        }
        // Above GROUP BY, a grouping expression may be read as a Var of the
        // grouping step's range table entry (RTE_GROUP), whose groupexprs
        // hold the expression over the rows.
        if (*expr).type_ == pg_sys::NodeTag::T_Var {
            let var = &*(expr as *mut pg_sys::Var);
            let rte =
                *list_ptrs::<pg_sys::RangeTblEntry>(s.rtable).get((var.varno as usize).checked_sub(1)?)?;
            if var.varlevelsup == 0 && (*rte).rtekind == pg_sys::RTEKind::RTE_GROUP {
                return list_ptrs::<pg_sys::Node>((*rte).groupexprs)
                    .get(usize::try_from(var.varattno).ok()?.checked_sub(1)?)
                    .copied();
            }
        }
        Some(expr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_replaces_each_marker_by_its_branch_values() {
        let pushed = Pushed { sql: "SELECT ... WHERE l.k = ANY ($30002) AND x".into(), columns: vec![2] };
        let names = vec!["a".to_string(), "k".to_string()];
        let key = |column: &str, sql_type: &str, values: Option<&str>| KeyValues {
            column: column.into(),
            sql_type: sql_type.into(),
            values: values.map(Into::into),
            has_null: false,
        };
        assert_eq!(
            fill(&pushed, &names, &[key("k", "bigint", Some("{1,2}"))]).as_deref(),
            Some("SELECT ... WHERE l.k = ANY ('{1,2}'::bigint[]) AND x")
        );
        // Only NULL keys: no subquery row is needed.
        assert_eq!(
            fill(&pushed, &names, &[key("k", "bigint", None)]).as_deref(),
            Some("SELECT ... WHERE l.k = ANY ('{}'::bigint[]) AND x")
        );
        // A branch without the column keeps the whole subquery.
        assert_eq!(fill(&pushed, &names, &[key("a", "int", Some("{1}"))]), None);
    }
}
