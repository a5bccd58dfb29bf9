//! Running totals over an inner join: count/sum/avg of a GROUP BY (or of an
//! aggregate without GROUP BY) whose FROM joins several tables.
//!
//! The totals are kept like those over one table (see `algebraic`); what
//! differs is where the signed rows added to them come from. With `ΔRi`
//! the signed change rows of reference `i`'s table (+1 inserted, -1
//! deleted) and `Ri'` the table as read now, the old state is `Ri' - ΔRi`,
//! and expanding `Π Ri' - Π (Ri' - ΔRi)` gives the change of the join as
//!
//! ```text
//! Δ(R1 ⋈ … ⋈ Rn) = Σ_{S ≠ ∅} (-1)^(|S|+1)  ⋈_{i ∈ S} ΔRi  ⋈_{i ∉ S} Ri'
//! ```
//!
//! over the non-empty sets S of references whose table changed: one term
//! per set, every reference read as the table now or as its change rows.
//! A joined row carries the term's factor times its references' signs, so
//! summing `sign * x` per group adds exactly what the join gained and lost.
//! Each term starts from change rows and reaches the other tables through
//! their indexes (a term with several change-row sets joins small sets):
//! O(changes), whatever the tables' size. (With more than a few changed
//! references, the 2^k - 1 terms give way to one term per changed
//! reference, `R1' ⋈ … ⋈ ΔRi ⋈ … ⋈ Rn` with the references after `i` in
//! their old state, the table plus its change rows with the sign flipped:
//! a UNION ALL that the planner scans whole.)
//!
//! The SQL is PostgreSQL's own deparse of the stored query with its select
//! list replaced (grouping columns `__k<n>`, aggregate arguments
//! `__x<output>`, and each reference's sign `__sign<i>`) and each table
//! reference turned into a reference to a WITH query `__pgt_r<i>`, whose
//! definition each term supplies: the table, its change rows, or its old
//! state. The join conditions and the WHERE clause stay as written.

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::error::{PgtError, PgtResult};
use crate::hooks::list_ptrs;

/// An inner join's FROM and WHERE as a SELECT over stand-ins for its tables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinTotals {
    /// The query with the select list `__k1…` (the GROUP BY columns in
    /// output order), `__x<output>` (each aggregate's argument; see
    /// analysis::join_argument), then
    /// `__sign<i>` per table reference, reading reference `i` as
    /// `__pgt_r<i>`.
    pub select_sql: String,
    /// (range table index, table, the table's columns the query reads).
    pub tables: Vec<(u32, pg_sys::Oid, Vec<i16>)>,
}

/// A grouping column or aggregate argument of the select list.
pub struct Output {
    /// The column of the join's rows it becomes (grouping columns are
    /// numbered `__k1`… in order instead).
    pub name: String,
    /// A GROUP BY column (else an aggregate's argument).
    pub grouped: bool,
    /// The expression.
    pub expr: *mut pg_sys::Node,
}

impl Output {
    /// The column name of the argument of select list item `output`'s
    /// aggregate (`part` 0) or of its `part`-th aggregate.
    pub fn argument(output: i16, part: usize) -> String {
        super::analysis::join_argument(output, part)
    }
}

/// The select list of `q` as outputs that are all grouping columns
/// (`__k1`, ... in order): the query's rows, for [`read`] of a filter and
/// projection.
///
/// # Safety
/// `q` is an analyzed query.
pub unsafe fn row_outputs(q: *mut pg_sys::Query) -> Vec<Output> {
    // SAFETY: the target list is read by tag; the expressions stay q's.
    unsafe {
        list_ptrs::<pg_sys::TargetEntry>((*q).targetList)
            .into_iter()
            .filter(|tle| !(**tle).resjunk)
            .enumerate()
            .map(|(i, tle)| Output {
                name: format!("__k{}", i + 1),
                grouped: true,
                expr: (*tle).expr as *mut pg_sys::Node,
            })
            .collect()
    }
}

/// Read a grouped query over an inner join of plain tables (no subquery in
/// FROM or in expressions, no DISTINCT, LIMIT or window; HAVING is left to
/// the caller, which computes it from the totals) as a
/// [`JoinTotals`]; `outputs` are the select list's grouping columns and
/// aggregate arguments. Also a filter and projection of such a join, whose
/// outputs are all given as grouping columns. None when the query is not
/// such a join.
///
/// # Safety
/// `q` must be the analyzed stored query of an open relation.
pub unsafe fn read(q: *mut pg_sys::Query, outputs: &[Output]) -> Option<JoinTotals> {
    // SAFETY: as the caller's.
    unsafe { read_tables(q, outputs, 2, true, true) }
}

/// [`read`] of a grouped query over one table whose grouping items are
/// not all its columns (`GROUP BY k * 2`): its rows are the table's change
/// rows that pass its WHERE clause, grouped by the expressions.
///
/// # Safety
/// As [`read`]'s.
pub unsafe fn read_one(q: *mut pg_sys::Query, outputs: &[Output]) -> Option<JoinTotals> {
    // SAFETY: as the caller's.
    unsafe { read_tables(q, outputs, 1, true, true) }
}

/// [`read`] for a branch of a UNION ALL, which may read one table: its
/// signed rows are then the table's change rows that pass its WHERE
/// clause, projected (see analysis::union_rows). Not a branch with LIMIT.
///
/// # Safety
/// `q` must be a branch (a subquery) of the analyzed stored query of an
/// open relation.
pub unsafe fn read_branch(q: *mut pg_sys::Query, outputs: &[Output]) -> Option<JoinTotals> {
    // SAFETY: as the caller's.
    unsafe { read_tables(q, outputs, 1, false, false) }
}

/// [`read`] of a join of at least `min_tables` tables; with `limited`, a
/// query with ORDER BY ... LIMIT too (the caller keeps the limit); with
/// `having`, an aggregating query with HAVING too (the caller computes it
/// from the totals: the join's rows are before it).
unsafe fn read_tables(
    q: *mut pg_sys::Query,
    outputs: &[Output],
    min_tables: usize,
    limited: bool,
    having: bool,
) -> Option<JoinTotals> {
    // SAFETY: the query is only read, then copied; the copy is changed
    // (palloc'd in the current memory context) and deparsed.
    unsafe {
        let top = &*q;
        // (The stored query's own ORDER BY ... LIMIT is the analysis's
        // TopK, outside the totals.)
        let limited = limited && !top.limitCount.is_null() && top.limitOffset.is_null();
        // Aggregates, or the rows of a filter and projection (every output
        // a grouping column; see analysis::Multiset).
        // (Or groups without aggregates: GROUP BY, or SELECT DISTINCT, of
        // every output; see analysis.)
        let all_grouped = !top.hasAggs && outputs.iter().all(|o| o.grouped);
        let rows = all_grouped && top.groupClause.is_null() && top.distinctClause.is_null();
        let groups = all_grouped
            && (!top.groupClause.is_null() || !top.distinctClause.is_null() && !top.hasDistinctOn);
        // (The DISTINCT is the grouping: the rows added up are not distinct.)
        let mut undistinct = *top;
        undistinct.distinctClause = std::ptr::null_mut();
        // (HAVING left to the caller: the join's rows are before it.)
        let unhaving = having && top.hasAggs;
        if unhaving {
            undistinct.havingQual = std::ptr::null_mut();
        }
        let select = if groups || unhaving { &undistinct } else { top };
        if !(top.hasAggs || rows || groups)
            || !(plain_select(select) || limited && plain_select_but_limit(select))
        {
            return None;
        }
        let exprs = output_exprs(q, outputs);
        // FROM (SELECT … FROM a, b, … WHERE …) s GROUP BY …, a subquery
        // that only filters and projects a join (TPC-H Q7 to Q9): the
        // subquery's join is the join, and the select list is read through
        // its outputs.
        let (query, exprs) = match pulled_up(q, exprs) {
            Some(pulled) => pulled,
            None => (q, exprs),
        };
        let mut tables = Vec::new();
        for (i, rte) in list_ptrs::<pg_sys::RangeTblEntry>((*query).rtable).into_iter().enumerate() {
            let rte = &*rte;
            match rte.rtekind {
                // (A sample depends on where the rows are, not on them.)
                pg_sys::RTEKind::RTE_RELATION
                    if rte.relkind == pg_sys::RELKIND_RELATION as std::ffi::c_char
                        && rte.tablesample.is_null() =>
                {
                    tables.push((i as u32 + 1, rte.relid, Vec::new()))
                }
                pg_sys::RTEKind::RTE_JOIN if rte.jointype == pg_sys::JoinType::JOIN_INNER => {}
                pg_sys::RTEKind::RTE_GROUP if query == q => {}
                _ => return None,
            }
        }
        if tables.len() < min_tables {
            return None;
        }
        let copy = pg_sys::copyObjectImpl(query as *const std::ffi::c_void) as *mut pg_sys::Query;
        // The select list: grouping columns (`__k<n>`), arguments
        // (`__x<output>`), then signs; join alias columns followed to the
        // tables' own.
        let read = pg_sys::flatten_join_alias_vars(std::ptr::null_mut(), copy, exprs);
        let mut entries = output_entries(outputs, &list_ptrs::<pg_sys::Node>(read as *mut pg_sys::List));
        // FROM as a list of the tables, every join condition ANDed into
        // WHERE (inner joins only), so that no join's column list has to
        // know the stand-ins' extra sign column.
        let mut items = Vec::new();
        let mut quals = Vec::new();
        let jt = &*(*copy).jointree;
        flatten_from(jt.fromlist, &mut items, &mut quals);
        if !jt.quals.is_null() {
            quals.push(jt.quals);
        }
        let mut fromlist: *mut pg_sys::List = std::ptr::null_mut();
        for item in items {
            fromlist = pg_sys::lappend(fromlist, item as *mut std::ffi::c_void);
        }
        let mut qual_list: *mut pg_sys::List = std::ptr::null_mut();
        for q in quals {
            let q = pg_sys::flatten_join_alias_vars(std::ptr::null_mut(), copy, q);
            qual_list = pg_sys::lappend(qual_list, q as *mut std::ffi::c_void);
        }
        let where_ = match list_ptrs::<pg_sys::Node>(qual_list).as_slice() {
            [] => std::ptr::null_mut(),
            [one] => *one,
            _ => pg_sys::make_andclause(qual_list) as *mut pg_sys::Node,
        };
        (*copy).jointree = pg_sys::makeFromExpr(fromlist, where_);
        let from = (*copy).jointree as *mut pg_sys::Node;
        for (index, _, attnums) in tables.iter_mut() {
            let mut cols = super::analysis::attnums_of(read, *index);
            cols.extend(super::analysis::attnums_of(from, *index));
            if cols.iter().any(|a| *a <= 0) {
                return None; // a whole-row reference or a system column
            }
            cols.sort_unstable();
            cols.dedup();
            *attnums = cols;
        }
        for (index, relid, _) in &tables {
            let natts = attribute_count(*relid)?;
            let sign = pg_sys::makeVar(*index as i32, natts + 1, pg_sys::INT4OID, -1, pg_sys::InvalidOid, 0);
            entries.push((sign as *mut pg_sys::Node, format!("__sign{index}")));
        }
        replace_select_list(copy, &entries)?;
        let c = &mut *copy;
        // The joins, no longer in FROM, become unused stand-ins.
        for (i, rte) in list_ptrs::<pg_sys::RangeTblEntry>(c.rtable).into_iter().enumerate() {
            if (*rte).rtekind == pg_sys::RTEKind::RTE_JOIN {
                crate::hooks::nodes::as_cte_reference(rte, &format!("__pgt_unused{}", i + 1), 0)?;
            }
        }
        // Each table reference becomes WITH query `__pgt_r<i>`: the table's
        // columns (dropped ones left out) and `__pgt_sign`.
        for (index, _, _) in &tables {
            let rte = pg_sys::list_nth(c.rtable, *index as i32 - 1) as *mut pg_sys::RangeTblEntry;
            crate::hooks::nodes::as_cte_reference(rte, &format!("__pgt_r{index}"), 0)?;
            (*(*rte).eref).colnames = pg_sys::lappend(
                (*(*rte).eref).colnames,
                pg_sys::makeString(pg_sys::pstrdup(c"__pgt_sign".as_ptr())) as *mut std::ffi::c_void,
            );
        }
        let sql = crate::hooks::cstr(pg_sys::pg_get_querydef(copy, false))?;
        Some(JoinTotals { select_sql: sql, tables })
    }
}

/// The outputs' expressions as a List over the query's own tables, grouping
/// columns followed to their expressions (through the GROUP RTE).
///
/// # Safety
/// `q` is an analyzed query; the outputs' expressions are of it.
pub(crate) unsafe fn output_exprs(q: *mut pg_sys::Query, outputs: &[Output]) -> *mut pg_sys::Node {
    // SAFETY: the List is palloc'd in the current memory context; the
    // flattening copies what it changes.
    unsafe {
        let mut exprs: *mut pg_sys::List = std::ptr::null_mut();
        for o in outputs {
            exprs = pg_sys::lappend(exprs, o.expr as *mut std::ffi::c_void);
        }
        let mut exprs = exprs as *mut pg_sys::Node;
        if (*q).hasGroupRTE {
            exprs = pg_sys::flatten_group_exprs(std::ptr::null_mut(), q, exprs);
        }
        exprs
    }
}

/// The select list of the rows running totals add up: the grouping
/// columns `__k1…` in output order, then the aggregates' arguments by
/// their names; `read` holds the outputs' expressions, in order.
pub(crate) fn output_entries(
    outputs: &[Output],
    read: &[*mut pg_sys::Node],
) -> Vec<(*mut pg_sys::Node, String)> {
    let mut entries = Vec::new();
    let mut key = 0;
    for (o, expr) in outputs.iter().zip(read) {
        if o.grouped {
            key += 1;
            entries.push((*expr, format!("__k{key}")));
        }
    }
    for (o, expr) in outputs.iter().zip(read) {
        if !o.grouped {
            entries.push((*expr, o.name.clone()));
        }
    }
    entries
}

/// Make `copy` select copies of `entries`' expressions, named as given,
/// with no GROUP BY, ORDER BY, LIMIT or aggregates left.
///
/// # Safety
/// `copy` is a Query the caller may change; every expression is a valid
/// node over it.
pub(crate) unsafe fn replace_select_list(
    copy: *mut pg_sys::Query,
    entries: &[(*mut pg_sys::Node, String)],
) -> Option<()> {
    // SAFETY: the expressions are copied; the entries are palloc'd in the
    // current memory context; only the copy is changed.
    unsafe {
        let mut target: *mut pg_sys::List = std::ptr::null_mut();
        for (resno, (expr, name)) in entries.iter().enumerate() {
            let name = std::ffi::CString::new(name.as_str()).ok()?;
            let tle = pg_sys::makeTargetEntry(
                pg_sys::copyObjectImpl(*expr as *const std::ffi::c_void) as *mut pg_sys::Expr,
                resno as i16 + 1,
                pg_sys::pstrdup(name.as_ptr()),
                false,
            );
            target = pg_sys::lappend(target, tle as *mut std::ffi::c_void);
        }
        let c = &mut *copy;
        c.targetList = target;
        c.groupClause = std::ptr::null_mut();
        c.havingQual = std::ptr::null_mut();
        c.distinctClause = std::ptr::null_mut();
        c.sortClause = std::ptr::null_mut();
        c.limitCount = std::ptr::null_mut();
        c.limitOffset = std::ptr::null_mut();
        c.hasAggs = false;
        Some(())
    }
}

/// A SELECT with a FROM and none of: sublinks, window functions,
/// set-returning functions in the select list, HAVING, DISTINCT, grouping
/// sets, LIMIT/OFFSET, WITH, set operations, FOR UPDATE/SHARE.
pub(super) fn plain_select(q: &pg_sys::Query) -> bool {
    plain_select_but_limit(q) && q.limitCount.is_null() && q.limitOffset.is_null()
}

/// [`plain_select`], LIMIT and OFFSET aside.
fn plain_select_but_limit(q: &pg_sys::Query) -> bool {
    !(q.hasSubLinks
        || q.hasWindowFuncs
        || q.hasTargetSRFs
        || q.hasDistinctOn
        || !q.havingQual.is_null()
        || !q.distinctClause.is_null()
        || !q.groupingSets.is_null()
        || !q.cteList.is_null()
        || !q.setOperations.is_null()
        || !q.rowMarks.is_null()
        || q.jointree.is_null())
}

/// For a query whose FROM is one subquery that only filters and projects
/// (no aggregate, DISTINCT, LIMIT, set operation, sublink, window or WITH
/// of its own) and that has no WHERE of its own: the subquery, and
/// `exprs` (a List over the query) rewritten over the subquery's tables.
///
/// # Safety
/// `q` is an analyzed query; `exprs` a List of expressions over it.
unsafe fn pulled_up(
    q: *mut pg_sys::Query,
    exprs: *mut pg_sys::Node,
) -> Option<(*mut pg_sys::Query, *mut pg_sys::Node)> {
    // SAFETY: nodes are read by tag; the substitution copies what it
    // changes (see hooks::mutate).
    unsafe {
        let top = &*q;
        let jt = &*top.jointree;
        let items = list_ptrs::<pg_sys::Node>(jt.fromlist);
        let [item] = items.as_slice() else { return None };
        if !jt.quals.is_null() || (**item).type_ != pg_sys::NodeTag::T_RangeTblRef {
            return None;
        }
        let index = (*(*item as *mut pg_sys::RangeTblRef)).rtindex;
        let rte = pg_sys::list_nth(top.rtable, index - 1) as *mut pg_sys::RangeTblEntry;
        if (*rte).rtekind != pg_sys::RTEKind::RTE_SUBQUERY || (*rte).lateral || (*rte).subquery.is_null() {
            return None;
        }
        let sub = &*(*rte).subquery;
        if sub.hasAggs || !sub.groupClause.is_null() || !plain_select(sub) {
            return None;
        }
        let targets: Vec<*mut pg_sys::Node> = list_ptrs::<pg_sys::TargetEntry>(sub.targetList)
            .into_iter()
            .map(|tle| (*tle).expr as *mut pg_sys::Node)
            .collect();
        // Each column of the subquery becomes a copy of its expression; a
        // whole-row or other reference refuses.
        let mut failed = false;
        let rewritten = crate::hooks::mutate(exprs, |node| match (*node).type_ {
            pg_sys::NodeTag::T_Var => {
                let var = &*(node as *mut pg_sys::Var);
                let attno = var.varattno as usize;
                match targets.get(attno.wrapping_sub(1)) {
                    Some(&target) if var.varno == index && var.varlevelsup == 0 && attno > 0 => {
                        Some(pg_sys::copyObjectImpl(target as *const std::ffi::c_void) as *mut pg_sys::Node)
                    }
                    _ => {
                        failed = true;
                        Some(node)
                    }
                }
            }
            pg_sys::NodeTag::T_SubLink | pg_sys::NodeTag::T_PlaceHolderVar => {
                failed = true;
                Some(node)
            }
            _ => None,
        });
        if failed {
            return None;
        }
        Some(((*rte).subquery, rewritten))
    }
}

/// The table references under FROM items (RangeTblRefs, in order), and
/// the ON conditions of the inner joins between them.
///
/// # Safety
/// `from` is a FROM list of an analyzed query with inner joins only.
unsafe fn flatten_from(
    from: *mut pg_sys::List,
    items: &mut Vec<*mut pg_sys::Node>,
    quals: &mut Vec<*mut pg_sys::Node>,
) {
    // SAFETY: FROM items are RangeTblRef or JoinExpr nodes, read by tag.
    unsafe {
        for item in list_ptrs::<pg_sys::Node>(from) {
            flatten_item(item, items, quals);
        }
    }
}

unsafe fn flatten_item(
    item: *mut pg_sys::Node,
    items: &mut Vec<*mut pg_sys::Node>,
    quals: &mut Vec<*mut pg_sys::Node>,
) {
    // SAFETY: see flatten_from.
    unsafe {
        if item.is_null() {
            return;
        }
        if (*item).type_ == pg_sys::NodeTag::T_JoinExpr {
            let j = &*(item as *mut pg_sys::JoinExpr);
            flatten_item(j.larg, items, quals);
            flatten_item(j.rarg, items, quals);
            if !j.quals.is_null() {
                quals.push(j.quals);
            }
        } else {
            items.push(item);
        }
    }
}

/// The number of attributes of a table, dropped ones included.
pub(crate) unsafe fn attribute_count(relid: pg_sys::Oid) -> Option<i16> {
    // SAFETY: the relation is read by the stored query, which holds a lock
    // on it while the view is open; its tuple descriptor is read only.
    unsafe {
        let rel = pg_sys::RelationIdGetRelation(relid);
        if rel.is_null() {
            return None;
        }
        let n = (*(*rel).rd_att).natts as i16;
        pg_sys::RelationClose(rel);
        Some(n)
    }
}

/// What a table reference stands for in one term of the change.
#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    /// The table as read now.
    New,
    /// The table's change rows, with their signs.
    Delta,
    /// The table before the changes: now, minus inserted, plus deleted.
    Old,
}

/// A table as the terms read it: its qualified name and its columns,
/// dropped ones included (as None), each (quoted name, type).
pub(crate) struct Table {
    pub name: String,
    pub columns: Vec<Option<(String, String)>>,
}

impl Table {
    pub fn read(relid: pg_sys::Oid) -> PgtResult<Table> {
        Ok(Table { name: crate::catalog::lifecycle::relation_name(relid)?, columns: table_columns(relid)? })
    }

    /// Each of `relids` read once, by relation.
    pub fn read_each(
        relids: impl Iterator<Item = pg_sys::Oid>,
    ) -> PgtResult<std::collections::HashMap<pg_sys::Oid, Table>> {
        let mut out = std::collections::HashMap::new();
        for relid in relids {
            if let std::collections::hash_map::Entry::Vacant(slot) = out.entry(relid) {
                slot.insert(Table::read(relid)?);
            }
        }
        Ok(out)
    }

    /// Column `attnum`: (quoted name, type); None for a dropped or missing one.
    pub fn column(&self, attnum: i16) -> Option<&(String, String)> {
        self.columns.get(usize::try_from(attnum).ok()?.checked_sub(1)?)?.as_ref()
    }

    /// The quoted name of column `attnum`.
    pub fn column_name(&self, attnum: i16) -> PgtResult<String> {
        self.column(attnum)
            .map(|(name, _)| name.clone())
            .ok_or_else(|| PgtError::Internal(format!("column {attnum} of {} is missing", self.name)))
    }

    /// (quoted name, type) of the columns a change row carries, in order.
    pub fn carried(&self, attnums: &[i16]) -> PgtResult<Vec<(String, String)>> {
        attnums
            .iter()
            .map(|a| self.column(*a).cloned())
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| PgtError::Internal("a change column of the source is missing".into()))
    }
}

/// Read [`Table`]s once for every table of the join.
fn tables_of(jt: &JoinTotals) -> PgtResult<std::collections::HashMap<pg_sys::Oid, Table>> {
    Table::read_each(jt.tables.iter().map(|(_, relid, _)| *relid))
}

/// The columns of a table, dropped ones included (as None): (name, type).
fn table_columns(relid: pg_sys::Oid) -> PgtResult<Vec<Option<(String, String)>>> {
    let rows = Spi::connect(|c| {
        let mut out = Vec::new();
        for row in c.select(
            "SELECT attnum, attisdropped, pg_catalog.quote_ident(attname), \
                    pg_catalog.format_type(atttypid, atttypmod) \
               FROM pg_catalog.pg_attribute \
              WHERE attrelid OPERATOR(pg_catalog.=) $1 AND attnum OPERATOR(pg_catalog.>) 0 ORDER BY attnum",
            None,
            &[relid.into()],
        )? {
            let dropped = row.get::<bool>(2)?.unwrap_or(true);
            out.push(if dropped {
                None
            } else {
                Some((row.get::<String>(3)?.unwrap_or_default(), row.get::<String>(4)?.unwrap_or_default()))
            });
        }
        Ok::<_, PgtError>(out)
    })?;
    Ok(rows)
}

/// One table's change rows: the table, the columns they carry (in order)
/// and where they come from.
pub struct Changes<'a> {
    pub source: pg_sys::Oid,
    pub attnums: &'a [i16],
    pub rows: super::algebraic::ChangeRows<'a>,
}

/// The signed rows the changes add to the join, as one query with columns
/// `__sign` (the product of the references' signs), `__k<n>`,
/// `__x<output>` and `__pgt_now` (whether a row of sign +1 is a row of the
/// join now: see [`term`]); None when no table reference's table changed.
pub fn delta_sql(jt: &JoinTotals, changes: &[Changes]) -> PgtResult<Option<String>> {
    let tables = tables_of(jt)?;
    // The table references whose table changed.
    let changed: Vec<usize> =
        (0..jt.tables.len()).filter(|&i| changes.iter().any(|c| c.source == jt.tables[i].1)).collect();
    // Each changed table's change rows, decoded from the buffer (or read
    // from the transition tables) once for every term that reads them, and
    // netted: one row per image of the columns the join reads, with the
    // sum of its signs, so that an UPDATE of columns the join does not
    // read cancels out. (Materialized: inlined, the planner may put a
    // term's change rows on the inner side of a loop and decode them
    // again for every outer row, as it did for TPC-H Q9's orders and
    // lineitem changes, 400 times.) A column whose type has no equality
    // cannot be grouped by: then the rows are kept as they are.
    let mut withs = Vec::new();
    let mut nets: Vec<(pg_sys::Oid, String, &[i16])> = Vec::new();
    for c in changes {
        if !jt.tables.iter().any(|(_, relid, _)| *relid == c.source)
            || nets.iter().any(|(s, _, _)| *s == c.source)
        {
            continue;
        }
        let table = tables.get(&c.source).ok_or_else(|| PgtError::Internal("join table columns".into()))?;
        let name = format!("__pgt_d{}", nets.len());
        withs.push(format!("{name} AS MATERIALIZED ({})", net_rows_sql(table, c, "__sign")?));
        nets.push((c.source, name, c.attnums));
    }
    let one_term = |states: &dyn Fn(usize) -> State, factor: i32| term(jt, &tables, &nets, states, factor);
    let mut terms = Vec::new();
    if changed.len() <= INCLUSION_EXCLUSION_LIMIT {
        // Every state written as the table now or its change rows, never
        // as its old state (a UNION ALL, which the planner cannot reach
        // through an index from a few change rows): with old = new - Δ,
        //   Δ(R1 ⋈ … ⋈ Rn) = Σ_{S ≠ ∅} (-1)^(|S|+1) ⋈_{i ∈ S} ΔRi ⋈_{i ∉ S} Ri'
        // over the sets S of changed references: one term per set, the
        // terms with several change-row sets joining small sets only.
        for mask in 1u32..(1 << changed.len()) {
            let in_set =
                |j: usize| changed.iter().position(|&c| c == j).is_some_and(|k| mask & (1 << k) != 0);
            let factor = if mask.count_ones() % 2 == 1 { 1 } else { -1 };
            terms.push(one_term(&|j| if in_set(j) { State::Delta } else { State::New }, factor)?);
        }
    } else {
        // Many changed references: one term per changed reference, the
        // references before it new, those after it old.
        for &i in &changed {
            terms.push(one_term(
                &|j| match j.cmp(&i) {
                    std::cmp::Ordering::Equal => State::Delta,
                    std::cmp::Ordering::Greater if changed.contains(&j) => State::Old,
                    _ => State::New,
                },
                1,
            )?);
        }
    }
    if terms.is_empty() {
        return Ok(None);
    }
    Ok(Some(format!("WITH {} {}", withs.join(", "), wrap(jt, &terms.join(" UNION ALL ")))))
}

/// A changed table's net change rows: the columns it carries and `sign`,
/// the sum of the signs of each image (images that cancel left out); the
/// change rows as they are when a carried column's type has no equality.
/// Values that are equal but print differently (`numeric` 1.0 and 1.00)
/// are other images: a column whose equality does not imply identity is
/// grouped by its text too, so that an UPDATE from one to the other is
/// not lost (a multiset's rows are applied by their text).
pub(crate) fn net_rows_sql(table: &Table, c: &Changes, sign: &str) -> PgtResult<String> {
    let carried = table.carried(c.attnums)?;
    let rows = super::algebraic::typed_change_rows(&carried, c.attnums, c.rows);
    let columns: Vec<String> = carried.iter().map(|(name, _)| format!("u.{name}")).collect();
    let list: String = columns.iter().map(|c| format!("{c}, ")).collect();
    if !c.attnums.iter().all(|a| crate::catalog::sys::column_has_equality(c.source, *a)) {
        return Ok(format!("SELECT {list}u.__sign AS {sign} FROM ({rows}) u"));
    }
    let mut groups = columns.clone();
    for (column, attnum) in columns.iter().zip(c.attnums) {
        if !crate::catalog::sys::column_has_image_equality(c.source, *attnum) {
            groups.push(format!("({column})::pg_catalog.text"));
        }
    }
    let group_by = if groups.is_empty() { String::new() } else { format!(" GROUP BY {}", groups.join(", ")) };
    Ok(format!(
        "SELECT {list}pg_catalog.sum(u.__sign) AS {sign} FROM ({rows}) u{group_by} \
         HAVING pg_catalog.sum(u.__sign) OPERATOR(pg_catalog.<>) 0"
    ))
}

/// Up to this many changed table references, the change of the join is
/// written with change rows and current tables only (2^n - 1 terms).
const INCLUSION_EXCLUSION_LIMIT: usize = 4;

/// Every row of the join, each with sign +1 (to rebuild the totals).
pub fn whole_sql(jt: &JoinTotals) -> PgtResult<String> {
    Ok(wrap(jt, &term(jt, &tables_of(jt)?, &[], &|_| State::New, 1)?))
}

/// One term of the change: reference `j` read as `states(j)` (the table,
/// its change rows, or its old state), every row's sign times `factor`.
fn term(
    jt: &JoinTotals,
    tables: &std::collections::HashMap<pg_sys::Oid, Table>,
    nets: &[(pg_sys::Oid, String, &[i16])],
    states: &dyn Fn(usize) -> State,
    factor: i32,
) -> PgtResult<String> {
    let mut ctes = Vec::new();
    // Whether its rows of sign +1 are rows of the join now: one reference
    // read as its change rows, the others as they are now. (Another term's
    // row may join change rows of two references that are not both there
    // now, r1 inserted and r2 deleted: a correction, which a kept extreme
    // must not take for a value of the group; see algebraic's upsert.)
    let deltas = (0..jt.tables.len()).filter(|&j| states(j) == State::Delta).count();
    let now = deltas <= 1 && (0..jt.tables.len()).all(|j| states(j) != State::Old);
    for (j, (index, relid, _)) in jt.tables.iter().enumerate() {
        let table = tables.get(relid).ok_or_else(|| PgtError::Internal("join table columns".into()))?;
        let changed = nets
            .iter()
            .find(|(source, _, _)| source == relid)
            .map(|(_, name, attnums)| (*attnums, name.as_str()));
        ctes.push(format!("__pgt_r{index} AS ({})", stand_in(table, states(j), changed)?));
    }
    Ok(format!(
        "(SELECT w.*, {factor} AS __pgt_term, {now} AS __pgt_now FROM (WITH {} {}) w)",
        ctes.join(", "),
        jt.select_sql
    ))
}

/// The signed join rows with one `__sign`: the term's factor times the
/// references' signs.
fn wrap(jt: &JoinTotals, rows: &str) -> String {
    let mut signs: Vec<String> = vec!["j.__pgt_term".to_string()];
    signs.extend(jt.tables.iter().map(|(i, _, _)| format!("j.__sign{i}")));
    format!(
        "SELECT j.*, ({})::pg_catalog.int8 AS __sign FROM ({rows}) j",
        signs.join(" OPERATOR(pg_catalog.*) ")
    )
}

/// The query a table reference reads in one term: the table's columns in
/// order (dropped ones left out, as in the deparsed reference's column
/// list; NULL for a column the change rows do not carry, which nothing
/// reads), then `__pgt_sign`. `changed` names the WITH query of the
/// table's net change rows ([`net_rows_sql`]) when it changed.
fn stand_in(table: &Table, state: State, changed: Option<(&[i16], &str)>) -> PgtResult<String> {
    let cols = &table.columns;
    let from_table = |sign: &str| {
        let list: Vec<String> = cols.iter().flatten().map(|(name, _)| format!("t.{name}")).collect();
        format!("SELECT {}, {sign} AS __pgt_sign FROM {} t", list.join(", "), table.name)
    };
    let from_changes = |(attnums, net): (&[i16], &str), flip: bool| -> PgtResult<String> {
        let list: Vec<String> = cols
            .iter()
            .enumerate()
            .filter_map(|(i, col)| {
                let (name, ty) = col.as_ref()?;
                Some(if attnums.contains(&(i as i16 + 1)) {
                    format!("u.{name}")
                } else {
                    format!("NULL::{ty} AS {name}")
                })
            })
            .collect();
        let sign = if flip { "-u.__sign" } else { "u.__sign" };
        Ok(format!("SELECT {}, {sign} AS __pgt_sign FROM {net} u", list.join(", ")))
    };
    match (state, changed) {
        (State::New, _) | (State::Old, None) => Ok(from_table("1")),
        (State::Delta, Some(c)) => from_changes(c, false),
        (State::Delta, None) => Err(PgtError::Internal("a changed table without changes".into())),
        (State::Old, Some(c)) => Ok(format!("{} UNION ALL {}", from_table("1"), from_changes(c, true)?)),
    }
}

/// The columns of `source` the join reads (through any of its references).
pub fn columns_of(jt: &JoinTotals, source: pg_sys::Oid) -> Vec<i16> {
    let mut out: Vec<i16> =
        jt.tables.iter().filter(|(_, s, _)| *s == source).flat_map(|(_, _, a)| a.iter().copied()).collect();
    out.sort_unstable();
    out.dedup();
    out
}
