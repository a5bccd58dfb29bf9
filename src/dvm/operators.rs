//! The operator tree of a stream table's query, as `explain_stream_table`
//! shows it: the relational operators of PostgreSQL's analyzed Query, one
//! per line, each input indented under the operator that reads it:
//!
//! ```text
//! Project: g, n
//!   -> Aggregate: GROUP BY d.g; count(*)
//!     -> Inner Join: d.g = s.g
//!       -> Scan: public.src s
//!       -> Scan: public.dim d
//! ```
//!
//! Read from the stored query (never its SQL text); expressions are
//! deparsed by PostgreSQL (`deparse_expression`) against each query
//! level's range table, as EXPLAIN deparses a plan's.

use pgrx::pg_sys;

use crate::hooks::nodes::{cstr, list_ptrs, make_node};

/// The operator tree of materialized view `relid`'s query, None without one.
pub fn operator_tree(relid: pg_sys::Oid) -> Option<String> {
    // SAFETY: with_query_copy hands a copy of the stored, analyzed Query;
    // the walk reads it according to its node tags and only allocates in
    // the current memory context.
    unsafe {
        super::analysis::with_query_copy(relid, false, |q| {
            let mut tree = Tree { lines: Vec::new(), levels: Vec::new() };
            tree.query(q, std::ptr::null_mut(), 0);
            Some(tree.lines.join("\n"))
        })
    }
}

struct Tree {
    lines: Vec<String>,
    /// The queries being walked, outermost first, each with the deparse
    /// context of the levels around it (for its WITH queries).
    levels: Vec<(*mut pg_sys::Query, *mut pg_sys::List)>,
}

impl Tree {
    fn push(&mut self, depth: usize, text: String) {
        let arrow = if depth == 0 { "" } else { "-> " };
        self.lines.push(format!("{}{arrow}{text}", "  ".repeat(depth)));
    }

    /// One query level: its operators from the top (ORDER BY ... LIMIT,
    /// the select list) down to its FROM items. `outer` is the deparse
    /// context of the levels around it.
    ///
    /// # Safety
    /// `q` is a valid analyzed Query.
    unsafe fn query(&mut self, q: *mut pg_sys::Query, outer: *mut pg_sys::List, depth: usize) {
        // SAFETY: see operator_tree; every list is read by its node type.
        unsafe {
            let ctx = context(q, outer);
            // (Prefixed as EXPLAIN does: when several entries are read, the
            // grouping step's not counted; and in a subquery, which may
            // refer to the levels around it.)
            let read = list_ptrs::<pg_sys::RangeTblEntry>((*q).rtable)
                .into_iter()
                .filter(|r| (**r).rtekind != pg_sys::RTEKind::RTE_GROUP)
                .count();
            let prefix = read > 1 || !outer.is_null();
            // (Grouped columns refer to the grouping step's entry,
            // RTE_GROUP: shown as the expressions they stand for.)
            let e = |node: *mut pg_sys::Node| {
                let node = match (*q).hasGroupRTE {
                    true => pg_sys::flatten_group_exprs(std::ptr::null_mut(), q, node),
                    false => node,
                };
                expr(node, ctx, prefix)
            };
            self.levels.push((q, outer));
            let mut d = depth;
            if !(*q).limitCount.is_null() || !(*q).limitOffset.is_null() {
                let mut parts = Vec::new();
                if !(*q).sortClause.is_null() {
                    parts.push(format!("ORDER BY {}", order_exprs(q, &e)));
                }
                if !(*q).limitCount.is_null() {
                    parts.push(format!("LIMIT {}", e((*q).limitCount)));
                }
                if !(*q).limitOffset.is_null() {
                    parts.push(format!("OFFSET {}", e((*q).limitOffset)));
                }
                self.push(d, format!("Limit: {}", parts.join(" ")));
                d += 1;
            }
            if !(*q).setOperations.is_null() {
                self.set_operation((*q).setOperations, q, ctx, d);
                self.levels.pop();
                return;
            }
            let targets = list_ptrs::<pg_sys::TargetEntry>((*q).targetList);
            let names: Vec<String> = targets
                .iter()
                .filter(|t| !(***t).resjunk)
                .map(|t| cstr((**t).resname).unwrap_or_else(|| "?column?".into()))
                .collect();
            self.push(d, format!("Project: {}", names.join(", ")));
            d += 1;
            if (*q).hasDistinctOn {
                self.push(d, format!("Distinct On: {}", sort_exprs(q, (*q).distinctClause, &e)));
                d += 1;
            } else if !(*q).distinctClause.is_null() {
                self.push(d, "Distinct".into());
                d += 1;
            }
            if !(*q).havingQual.is_null() {
                self.push(d, format!("Filter (HAVING): {}", e((*q).havingQual)));
                d += 1;
            }
            if (*q).hasAggs || !(*q).groupClause.is_null() {
                let aggregates: Vec<String> = targets
                    .iter()
                    .filter(|t| has_aggregate((***t).expr as *mut pg_sys::Node))
                    .map(|t| e((**t).expr as *mut pg_sys::Node))
                    .collect();
                let mut parts = Vec::new();
                if !(*q).groupClause.is_null() {
                    let sets = if (*q).groupingSets.is_null() { "" } else { "GROUPING SETS of " };
                    parts.push(format!("GROUP BY {sets}{}", sort_exprs(q, (*q).groupClause, &e)));
                }
                if !aggregates.is_empty() {
                    parts.push(aggregates.join(", "));
                }
                self.push(d, format!("Aggregate: {}", parts.join("; ")));
                d += 1;
            }
            if (*q).hasWindowFuncs {
                // (Named by their columns: see expr.)
                let windowed: Vec<String> = targets
                    .iter()
                    .filter(|t| pg_sys::contain_window_function((***t).expr as *mut pg_sys::Node))
                    .map(|t| cstr((**t).resname).unwrap_or_else(|| "?column?".into()))
                    .collect();
                self.push(d, format!("Window: {}", windowed.join(", ")));
                d += 1;
            }
            let jointree = (*q).jointree;
            if !jointree.is_null() && !(*jointree).quals.is_null() {
                self.push(d, format!("Filter: {}", e((*jointree).quals)));
                d += 1;
            }
            let from =
                if jointree.is_null() { Vec::new() } else { list_ptrs::<pg_sys::Node>((*jointree).fromlist) };
            self.items(&from, q, ctx, prefix, d);
            self.levels.pop();
        }
    }

    /// The items of a FROM list: one, or several joined (their conditions
    /// are in the WHERE clause's Filter above).
    ///
    /// # Safety
    /// `items` are FROM items of `q`; `ctx` is `q`'s deparse context.
    unsafe fn items(
        &mut self,
        items: &[*mut pg_sys::Node],
        q: *mut pg_sys::Query,
        ctx: *mut pg_sys::List,
        prefix: bool,
        depth: usize,
    ) {
        // SAFETY: as item.
        unsafe {
            match items {
                [] => self.push(depth, "Result (no FROM)".into()),
                [one] => self.item(*one, q, ctx, prefix, depth),
                several => {
                    self.push(depth, "Cross Join (FROM list)".into());
                    for item in several {
                        self.item(*item, q, ctx, prefix, depth + 1);
                    }
                }
            }
        }
    }

    /// One FROM item: a table, subquery, WITH query, function or VALUES
    /// reference, or a JOIN of two items.
    ///
    /// # Safety
    /// `node` is a FROM item of `q`; `ctx` is `q`'s deparse context.
    unsafe fn item(
        &mut self,
        node: *mut pg_sys::Node,
        q: *mut pg_sys::Query,
        ctx: *mut pg_sys::List,
        prefix: bool,
        depth: usize,
    ) {
        // SAFETY: the node is read according to its tag; range table
        // indexes of an analyzed Query are within its range table.
        unsafe {
            match (*node).type_ {
                pg_sys::NodeTag::T_RangeTblRef => {
                    self.range_entry(referenced(q, node), ctx, depth);
                }
                pg_sys::NodeTag::T_JoinExpr => {
                    let j = &*(node as *mut pg_sys::JoinExpr);
                    let kind = match j.jointype {
                        pg_sys::JoinType::JOIN_INNER if j.quals.is_null() => "Cross Join",
                        pg_sys::JoinType::JOIN_INNER => "Inner Join",
                        pg_sys::JoinType::JOIN_LEFT => "Left Join",
                        pg_sys::JoinType::JOIN_RIGHT => "Right Join",
                        pg_sys::JoinType::JOIN_FULL => "Full Join",
                        _ => "Join",
                    };
                    match j.quals.is_null() {
                        true => self.push(depth, kind.to_string()),
                        false => self.push(depth, format!("{kind}: {}", expr(j.quals, ctx, prefix))),
                    }
                    self.item(j.larg, q, ctx, prefix, depth + 1);
                    self.item(j.rarg, q, ctx, prefix, depth + 1);
                }
                pg_sys::NodeTag::T_FromExpr => {
                    let f = &*(node as *mut pg_sys::FromExpr);
                    let mut d = depth;
                    if !f.quals.is_null() {
                        self.push(d, format!("Filter: {}", expr(f.quals, ctx, prefix)));
                        d += 1;
                    }
                    self.items(&list_ptrs::<pg_sys::Node>(f.fromlist), q, ctx, prefix, d);
                }
                _ => self.push(depth, "?".into()),
            }
        }
    }

    /// A range table entry read as a FROM item (or a set operation's
    /// branch).
    ///
    /// # Safety
    /// `rte` belongs to the innermost query being walked, whose deparse
    /// context is `ctx`.
    unsafe fn range_entry(&mut self, rte: *mut pg_sys::RangeTblEntry, ctx: *mut pg_sys::List, depth: usize) {
        // SAFETY: the entry is read according to its kind.
        unsafe {
            let alias = if (*rte).eref.is_null() { None } else { cstr((*(*rte).eref).aliasname) };
            match (*rte).rtekind {
                pg_sys::RTEKind::RTE_RELATION => {
                    let name = crate::catalog::lifecycle::relation_name((*rte).relid)
                        .unwrap_or_else(|_| (*rte).relid.to_u32().to_string());
                    let bare = cstr(pg_sys::get_rel_name((*rte).relid));
                    let shown = match alias.filter(|a| Some(a) != bare.as_ref()) {
                        Some(a) => format!("{name} {}", crate::sql::quote_ident(&a)),
                        None => name,
                    };
                    self.push(depth, format!("Scan: {shown}"));
                }
                pg_sys::RTEKind::RTE_SUBQUERY if !(*rte).subquery.is_null() => {
                    self.push(depth, format!("Subquery: {}", alias.unwrap_or_default()));
                    self.query((*rte).subquery, ctx, depth + 1);
                }
                pg_sys::RTEKind::RTE_CTE => {
                    let name = cstr((*rte).ctename).unwrap_or_default();
                    if (*rte).self_reference {
                        self.push(depth, format!("WITH RECURSIVE reference: {name}"));
                        return;
                    }
                    self.push(depth, format!("WITH query: {name}"));
                    let up = (*rte).ctelevelsup as usize;
                    let Some(&(owner, owner_outer)) =
                        self.levels.len().checked_sub(up + 1).and_then(|i| self.levels.get(i))
                    else {
                        return;
                    };
                    let cte = list_ptrs::<pg_sys::CommonTableExpr>((*owner).cteList)
                        .into_iter()
                        .find(|c| cstr((**c).ctename).as_deref() == Some(name.as_str()));
                    if let Some(cte) = cte {
                        let inner = (*cte).ctequery;
                        if !inner.is_null() && (*inner).type_ == pg_sys::NodeTag::T_Query {
                            self.query(inner as *mut pg_sys::Query, owner_outer, depth + 1);
                        }
                    }
                }
                pg_sys::RTEKind::RTE_FUNCTION => {
                    let calls: Vec<String> = list_ptrs::<pg_sys::RangeTblFunction>((*rte).functions)
                        .into_iter()
                        .map(|f| expr((*f).funcexpr, ctx, false))
                        .collect();
                    self.push(depth, format!("Function Scan: {}", calls.join(", ")));
                }
                pg_sys::RTEKind::RTE_VALUES => self.push(depth, "Values".into()),
                _ => self.push(depth, format!("Scan: {}", alias.unwrap_or_default())),
            }
        }
    }

    /// A set operation (UNION [ALL], INTERSECT, EXCEPT): its branches, a
    /// chain of one operation shown as one node.
    ///
    /// # Safety
    /// `node` is `q`'s setOperations tree or a part of it.
    unsafe fn set_operation(
        &mut self,
        node: *mut pg_sys::Node,
        q: *mut pg_sys::Query,
        ctx: *mut pg_sys::List,
        depth: usize,
    ) {
        // SAFETY: the tree holds SetOperationStmt and RangeTblRef nodes;
        // each RangeTblRef names a subquery entry of `q`.
        unsafe {
            if (*node).type_ == pg_sys::NodeTag::T_RangeTblRef {
                let rte = referenced(q, node);
                if !(*rte).subquery.is_null() {
                    self.query((*rte).subquery, ctx, depth);
                } else {
                    self.range_entry(rte, ctx, depth);
                }
                return;
            }
            let op = &*(node as *mut pg_sys::SetOperationStmt);
            let name = match op.op {
                pg_sys::SetOperation::SETOP_UNION => "Union",
                pg_sys::SetOperation::SETOP_INTERSECT => "Intersect",
                pg_sys::SetOperation::SETOP_EXCEPT => "Except",
                _ => "Set Operation",
            };
            self.push(depth, format!("{name}{}", if op.all { " All" } else { "" }));
            let mut branches = Vec::new();
            flatten(node, op.op, op.all, &mut branches);
            for branch in branches {
                self.set_operation(branch, q, ctx, depth + 1);
            }
        }
    }
}

/// The range table entry of `q` a RangeTblRef names (rt_fetch).
///
/// # Safety
/// `node` is a RangeTblRef of `q` (its index within `q`'s range table).
unsafe fn referenced(q: *mut pg_sys::Query, node: *mut pg_sys::Node) -> *mut pg_sys::RangeTblEntry {
    // SAFETY: range table indexes of an analyzed Query start at 1 and are
    // within its range table.
    unsafe {
        let index = (*(node as *mut pg_sys::RangeTblRef)).rtindex;
        pg_sys::list_nth((*q).rtable, index - 1) as *mut pg_sys::RangeTblEntry
    }
}

/// The branches of a chain of one set operation (`a UNION ALL b UNION ALL
/// c`), in order.
///
/// # Safety
/// `node` is a setOperations tree.
unsafe fn flatten(
    node: *mut pg_sys::Node,
    op: pg_sys::SetOperation::Type,
    all: bool,
    out: &mut Vec<*mut pg_sys::Node>,
) {
    // SAFETY: see Tree::set_operation.
    unsafe {
        for side in
            [(*(node as *mut pg_sys::SetOperationStmt)).larg, (*(node as *mut pg_sys::SetOperationStmt)).rarg]
        {
            let same = (*side).type_ == pg_sys::NodeTag::T_SetOperationStmt && {
                let s = &*(side as *mut pg_sys::SetOperationStmt);
                s.op == op && s.all == all
            };
            if same {
                flatten(side, op, all, out);
            } else {
                out.push(side);
            }
        }
    }
}

/// Does an expression call an aggregate of its own query level (outside
/// its subqueries)? (contain_agg_clause expects no subquery: an assertion
/// fails on one.)
///
/// # Safety
/// `node` is NULL or an expression of an analyzed Query.
unsafe fn has_aggregate(node: *mut pg_sys::Node) -> bool {
    let mut found = false;
    // SAFETY: the walk reads nodes by tag; an Aggref is read as one.
    unsafe {
        crate::hooks::nodes::walk(node, |n| {
            found |=
                (*n).type_ == pg_sys::NodeTag::T_Aggref && (*(n as *mut pg_sys::Aggref)).agglevelsup == 0;
            !found
        });
    }
    found
}

/// The deparse context of one query level: its range table (every entry
/// named as EXPLAIN names them) in front of the levels around it.
///
/// # Safety
/// `q` is a valid Query; `outer` is NIL or the context of the levels
/// around it.
unsafe fn context(q: *mut pg_sys::Query, outer: *mut pg_sys::List) -> *mut pg_sys::List {
    // SAFETY: a PlannedStmt holding only the range table is all
    // deparse_context_for_plan_tree reads (no subplans, no append
    // relations); the lists are allocated in the current memory context.
    unsafe {
        let stmt = make_node::<pg_sys::PlannedStmt>(pg_sys::NodeTag::T_PlannedStmt);
        (*stmt).rtable = (*q).rtable;
        let mut used: *mut pg_sys::Bitmapset = std::ptr::null_mut();
        for i in 1..=pg_sys::list_length((*q).rtable) {
            used = pg_sys::bms_add_member(used, i);
        }
        let names = pg_sys::select_rtable_names_for_explain((*q).rtable, used);
        let ctx = pg_sys::deparse_context_for_plan_tree(stmt, names);
        pg_sys::list_concat(ctx, outer)
    }
}

/// An expression deparsed in `ctx` (column references prefixed by their
/// table's name when `prefix`).
///
/// # Safety
/// `node` is an expression of the query level `ctx` starts with.
unsafe fn expr(node: *mut pg_sys::Node, ctx: *mut pg_sys::List, prefix: bool) -> String {
    // SAFETY: deparse_expression reads the expression and the context. A
    // window function is not deparsed: its window clause is the query's,
    // which a context built for expressions does not hold (an ERROR).
    unsafe {
        if pg_sys::contain_window_function(node) {
            return "(window function)".into();
        }
        cstr(pg_sys::deparse_expression(node, ctx, prefix, false)).unwrap_or_default()
    }
}

/// The expressions of a list of SortGroupClauses (ORDER BY, GROUP BY,
/// DISTINCT ON): the select list entries they refer to, deparsed.
///
/// # Safety
/// `clauses` is a SortGroupClause list of `q`.
unsafe fn sort_exprs(
    q: *mut pg_sys::Query,
    clauses: *mut pg_sys::List,
    e: &dyn Fn(*mut pg_sys::Node) -> String,
) -> String {
    // SAFETY: as sort_items.
    unsafe { sort_items(q, clauses, &|_, node| e(node)) }
}

/// The ORDER BY of `q`: [`sort_exprs`] with each item's direction and
/// NULLS placement where they are not the default.
///
/// # Safety
/// `q` is a valid Query.
unsafe fn order_exprs(q: *mut pg_sys::Query, e: &dyn Fn(*mut pg_sys::Node) -> String) -> String {
    // SAFETY: as sort_items; the type cache lookup only reads.
    unsafe {
        sort_items(q, (*q).sortClause, &|c, node| {
            let cache = pg_sys::lookup_type_cache(
                pg_sys::exprType(node),
                (pg_sys::TYPECACHE_LT_OPR | pg_sys::TYPECACHE_GT_OPR) as i32,
            );
            let descending = !cache.is_null() && (*c).sortop == (*cache).gt_opr;
            let using = !cache.is_null() && !descending && (*c).sortop != (*cache).lt_opr;
            let mut item = e(node);
            if descending {
                item.push_str(" DESC");
            } else if using {
                item.push_str(" USING another operator");
            }
            if (*c).nulls_first != descending {
                item.push_str(if (*c).nulls_first { " NULLS FIRST" } else { " NULLS LAST" });
            }
            item
        })
    }
}

/// `item` of each SortGroupClause of `clauses` and the select list entry's
/// expression it refers to, comma-separated.
///
/// # Safety
/// `clauses` is a SortGroupClause list of `q`.
unsafe fn sort_items(
    q: *mut pg_sys::Query,
    clauses: *mut pg_sys::List,
    item: &dyn Fn(*mut pg_sys::SortGroupClause, *mut pg_sys::Node) -> String,
) -> String {
    // SAFETY: every clause of an analyzed Query refers to an entry of its
    // select list (get_sortgroupclause_tle raises an ERROR otherwise).
    unsafe {
        list_ptrs::<pg_sys::SortGroupClause>(clauses)
            .into_iter()
            .map(|c| {
                item(c, (*pg_sys::get_sortgroupclause_tle(c, (*q).targetList)).expr as *mut pg_sys::Node)
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}
