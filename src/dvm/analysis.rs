//! What kind of query a stream table has, read from its analyzed Query tree.
//!
//! The result is a [`Plan`] (pure data, no pointers: see [`super::plan`]) or
//! the reason the query cannot be maintained incrementally (yet), worded
//! for a NOTICE or an ERROR.
//!
//! Why one long file: the Query is read in one unsafe pass into
//! `QueryFacts` (the walk over levels of FROM subqueries and WITH queries,
//! sublinks, equalities, aggregates), and the shape decisions read those
//! facts' private fields; the two halves would split along that line
//! (facts, then one decision function per shape family), and the unit
//! tests of the decisions build facts by hand.

use pgrx::pg_sys;

pub use super::plan::*;
use crate::error::{PgtError, PgtResult};
use crate::hooks::list_ptrs;

fn unsupported<T>(why: impl Into<String>) -> Result<T, Unsupported> {
    Err(Unsupported(why.into()))
}

/// Facts about the Query, read in one unsafe pass.
struct QueryFacts {
    features: Vec<&'static str>,
    volatile: bool,
    /// Calls stable functions (now(), current_user, functions reading tables).
    stable: bool,
    /// Table references: (range table index, relation, relkind).
    relations: Vec<(u32, pg_sys::Oid, u8)>,
    other_rtes: Vec<&'static str>,
    /// Only inner joins (or a single table) in FROM.
    inner_only: bool,
    /// FROM is exactly `t1 LEFT JOIN t2` (or `t2 RIGHT JOIN t1`), or a
    /// chain `t1 LEFT JOIN t2 ON ... LEFT JOIN t3 ON ...` in which each
    /// LEFT JOIN adds one table, starting from a table or an inner join of
    /// tables (`t1 JOIN t0 ON ... LEFT JOIN t2 ON ...`): the tables of that
    /// start, whose rows every LEFT JOIN preserves, in order.
    left_join: Option<Vec<u32>>,
    /// The tables those LEFT JOINs add (or a RIGHT JOIN's left table, or
    /// both tables of a FULL JOIN), each with the `=` conditions of its own
    /// ON clause between one of its columns and one of a table joined
    /// before it (the other one, in a FULL JOIN), oriented from it: every
    /// output row in which its row is not NULL-extended satisfies them
    /// with a row of that other table.
    left_ons: Vec<(u32, Vec<Equality>)>,
    /// Every `=` condition of those ON clauses (which need not hold in an
    /// output row whose table is NULL-extended).
    outer_on_equalities: Vec<Equality>,
    /// FROM is exactly `t1 FULL JOIN t2`.
    full_join: Option<(u32, u32)>,
    /// Range table entries (of the top level) the WHERE clause reads.
    where_rtes: Vec<u32>,
    has_aggs: bool,
    has_group: bool,
    has_distinct: bool,
    /// Output columns in order: (range table index, attnum) when the column
    /// is a plain column of a table, and its sortgroupref.
    outputs: Vec<(Option<(u32, i16)>, u32)>,
    group_refs: Vec<u32>,
    /// `a.x = b.y` conditions (WHERE and JOIN ... ON, ANDed at the top)
    /// between plain columns of two different table references.
    equalities: Vec<((u32, i16), (u32, i16))>,
    /// Those of `equalities` outside subqueries in expressions that compare
    /// two values of one built-in type with its own equality (the one its
    /// unique indexes use) under deterministic collations
    /// (slices::plain_equality): see [`implied_references`]. Empty in a
    /// branch of a UNION ALL.
    strict_equalities: Vec<((u32, i16), (u32, i16))>,
    /// Table references on the nullable side of an outer join.
    nullable: Vec<u32>,
    /// Per output: the algebraic aggregate it is, if it is one.
    aggregates: Vec<Option<AggCall>>,
    /// Per output: the expression over algebraic aggregates it is, if it
    /// is one (see derived_output).
    derived: Vec<Option<DerivedCall>>,
    has_having: bool,
    /// The HAVING condition as an expression over aggregates running
    /// totals can keep (see derived_output), when it is one.
    having: Option<DerivedCall>,
    /// For a query over one table (range table entry 1): its WHERE clause
    /// as SQL over alias `b`, and the columns it reads.
    where_sql: Option<String>,
    where_attnums: Vec<i16>,
    /// For a UNION ALL: the facts of each branch.
    branches: Vec<QueryFacts>,
    /// For a query over one table: each output as SQL over alias `b`, and
    /// the columns they read.
    output_sql: Option<Vec<String>>,
    output_attnums: Vec<i16>,
    /// For aggregates over an inner join: the join's rows as a query (see
    /// join_totals).
    join_totals: Option<super::join_totals::JoinTotals>,
    /// For aggregates over rows of several tables or with subqueries: the
    /// query read for running totals over slices (see dvm::slices).
    slice_graph: Option<super::slices::Graph>,
    /// For a filter and projection of several tables or with subqueries:
    /// its rows as an inner join's (see join_totals) or as slices' (see
    /// slices), every output a grouping column (see [`Multiset`]).
    rows_join: Option<super::join_totals::JoinTotals>,
    rows_graph: Option<super::slices::Graph>,
    /// For a UNION ALL whose branches each filter and project an inner
    /// join of tables (or one table): each branch's rows as an inner
    /// join's (see [`union_all`]).
    union_rows: Option<Vec<super::join_totals::JoinTotals>>,
    /// The stored query has a LIMIT.
    limited: bool,
    /// Table references inside subqueries in expressions (EXISTS, IN,
    /// scalar subqueries) of the WHERE clause: (id, relation, relkind).
    /// Their `=` conditions to the outer query are among `equalities`.
    sub_relations: Vec<(u32, pg_sys::Oid, u8)>,
    /// `ORDER BY ... LIMIT n` of the stored query.
    topk: Option<TopK>,
    /// A subquery in an expression aggregates (see Plan::pushdown).
    aggregating_sublink: bool,
    /// Running totals and changed rows' images are not to be used (see
    /// analyze_as).
    no_totals: bool,
    /// Window functions: the plain columns (range table index, attnum)
    /// every window is partitioned by (see [`window_partition`]).
    window_partition: Option<Vec<(u32, i16)>>,
    /// For one table grouped by expressions: each grouped output that is
    /// not a plain column, as SQL over alias `b` (see [`Plan::key_exprs`]).
    group_exprs: Vec<KeyExpr>,
}

/// An aggregate call that running totals can keep: the aggregate (its
/// argument number still 0) and its argument (none for count(*)).
type AggCall = (AggKind, Option<AggArg>);

/// An expression over aggregates: its SQL with placeholders, and each
/// aggregate's call and type.
type DerivedCall = (String, Vec<(AggCall, String)>);

/// An aggregate inside an expression over aggregates: its call and type,
/// and its argument expression (null for count(*)).
type DerivedPart = ((AggCall, String), *mut pg_sys::Node);

/// Read the stored query of materialized view `relid`.
fn query_facts(relid: pg_sys::Oid) -> PgtResult<QueryFacts> {
    // SAFETY: the relation is opened with AccessShareLock and closed before
    // returning; get_view_query returns the rule's Query inside the relcache
    // entry, valid while the relation is open; every List and node is read
    // according to its tag, and nothing is written.
    unsafe {
        let rel = pg_sys::relation_open(relid, pg_sys::AccessShareLock as i32);
        let q = select_rule_query(rel);
        let facts = read_query(q, 0);
        pg_sys::relation_close(rel, pg_sys::AccessShareLock as i32);
        facts
    }
}

/// `f` of a copy of materialized view `relid`'s stored Query (in the
/// current memory context, so that `f` may change it without writing the
/// relcache entry); None without a query. With `unlimited`, the copy has
/// no ORDER BY, LIMIT or OFFSET.
///
/// # Safety
/// `f` reads and writes only the Query it is given, according to its tags.
pub(crate) unsafe fn with_query_copy<R>(
    relid: pg_sys::Oid,
    unlimited: bool,
    f: impl FnOnce(*mut pg_sys::Query) -> Option<R>,
) -> Option<R> {
    // SAFETY: the relation is opened with AccessShareLock and closed before
    // returning; the rule's Query is copied before `f` sees it.
    unsafe {
        let rel = pg_sys::relation_open(relid, pg_sys::AccessShareLock as i32);
        let q = select_rule_query(rel);
        let out = if q.is_null() {
            None
        } else {
            let copy = crate::hooks::nodes::copy_node(q);
            if unlimited {
                (*copy).limitCount = std::ptr::null_mut();
                (*copy).limitOffset = std::ptr::null_mut();
                (*copy).sortClause = std::ptr::null_mut();
            }
            f(copy)
        };
        pg_sys::relation_close(rel, pg_sys::AccessShareLock as i32);
        out
    }
}

/// The Query of the relation's ON SELECT rule (`get_view_query` does the
/// same for views only).
pub(crate) unsafe fn select_rule_query(rel: pg_sys::Relation) -> *mut pg_sys::Query {
    // SAFETY: rd_rules of an open relation is NULL or a valid RuleLock with
    // numLocks entries; a SELECT rule has exactly one action, a Query.
    unsafe {
        let rules = (*rel).rd_rules;
        if rules.is_null() {
            return std::ptr::null_mut();
        }
        for i in 0..(*rules).numLocks as usize {
            let rule = *(*rules).rules.add(i);
            if (*rule).event == pg_sys::CmdType::CMD_SELECT {
                let actions = list_ptrs::<pg_sys::Query>((*rule).actions);
                if let [q] = actions.as_slice() {
                    return *q;
                }
            }
        }
        std::ptr::null_mut()
    }
}

/// One query level read as part of the stored query: the top level, or a
/// subquery in FROM or a WITH query that is a plain filter/projection/join
/// and so can be read as if its tables were joined in its place.
struct Level {
    q: *mut pg_sys::Query,
    /// Added to the level's range table indexes to give its table
    /// references their ids (0 at the top level, so those ids are the
    /// range table indexes there).
    base: u32,
    /// The level whose WITH list a CTE reference with `ctelevelsup = 1`
    /// names.
    parent: Option<usize>,
}

/// Every level of the stored query, and which range table entry of which
/// level each inner level stands for.
struct Levels {
    levels: Vec<Level>,
    /// (level, range table index) of a subquery or CTE reference -> level.
    children: std::collections::HashMap<(usize, u32), usize>,
}

/// Ids apart between levels; a range table larger than this is refused.
const LEVEL_SPAN: u32 = 1000;

/// Why a subquery in FROM (or a WITH query) cannot be read as a join of its
/// tables, if it cannot.
unsafe fn not_simple(q: *mut pg_sys::Query) -> Option<&'static str> {
    // SAFETY: q is a Query node of the analyzed stored query.
    unsafe {
        let q = &*q;
        let grouped =
            q.hasAggs || !q.groupClause.is_null() || !q.groupingSets.is_null() || !q.havingQual.is_null();
        let reason = if q.commandType != pg_sys::CmdType::CMD_SELECT {
            "WITH queries that modify data"
        } else if !q.setOperations.is_null() {
            "subqueries in FROM or WITH queries with UNION, INTERSECT or EXCEPT"
        } else if grouped {
            "subqueries in FROM or WITH queries with aggregates or GROUP BY"
        } else if !q.distinctClause.is_null() {
            "subqueries in FROM or WITH queries with DISTINCT"
        } else if q.hasWindowFuncs {
            "subqueries in FROM or WITH queries with window functions"
        } else if q.hasTargetSRFs {
            "subqueries in FROM or WITH queries with set-returning functions"
        } else if q.hasSubLinks {
            "subqueries in expressions"
        } else if !q.limitCount.is_null() || !q.limitOffset.is_null() {
            "subqueries in FROM or WITH queries with LIMIT or OFFSET"
        } else if !q.rowMarks.is_null() {
            "FOR UPDATE/SHARE"
        } else if !q.cteList.is_null() {
            "WITH queries inside subqueries"
        } else {
            return None;
        };
        Some(reason)
    }
}

/// Why a subquery in an expression cannot be read, if it cannot: it may
/// aggregate, group and filter, but not more.
unsafe fn not_plain_subquery(q: *mut pg_sys::Query) -> Option<&'static str> {
    // SAFETY: q is a Query node of the analyzed stored query.
    unsafe {
        let q = &*q;
        let reason = if q.commandType != pg_sys::CmdType::CMD_SELECT {
            "subqueries that modify data"
        } else if !q.setOperations.is_null() {
            "subqueries in expressions with UNION, INTERSECT or EXCEPT"
        } else if q.hasWindowFuncs {
            "subqueries in expressions with window functions"
        } else if q.hasTargetSRFs {
            "subqueries in expressions with set-returning functions"
        } else if !q.limitCount.is_null() || !q.limitOffset.is_null() {
            "subqueries in expressions with LIMIT or OFFSET"
        } else if !q.rowMarks.is_null() {
            "FOR UPDATE/SHARE"
        } else if !q.cteList.is_null() {
            "WITH queries inside subqueries"
        } else if q.hasDistinctOn {
            "DISTINCT ON"
        } else if !q.groupingSets.is_null() {
            "GROUPING SETS, ROLLUP or CUBE"
        } else {
            return None;
        };
        Some(reason)
    }
}

/// The conditions ANDed at the top of a clause (the clause itself when it
/// is not an AND); none for NULL.
pub(crate) unsafe fn and_args(clause: *mut pg_sys::Node) -> Vec<*mut pg_sys::Node> {
    // SAFETY: clause is NULL or an expression; BoolExpr args and implicit-AND
    // Lists hold expression nodes.
    unsafe {
        let mut out = Vec::new();
        let mut stack = vec![clause];
        while let Some(n) = stack.pop() {
            if n.is_null() {
                continue;
            }
            match (*n).type_ {
                pg_sys::NodeTag::T_BoolExpr
                    if (*(n as *mut pg_sys::BoolExpr)).boolop == pg_sys::BoolExprType::AND_EXPR =>
                {
                    stack.extend(
                        list_ptrs::<pg_sys::Node>((*(n as *mut pg_sys::BoolExpr)).args).into_iter().rev(),
                    );
                }
                pg_sys::NodeTag::T_List => {
                    stack.extend(list_ptrs::<pg_sys::Node>(n as *mut pg_sys::List).into_iter().rev())
                }
                _ => out.push(n),
            }
        }
        out
    }
}

/// Every JOIN ... ON under a FROM clause (outermost first, right before
/// left, as the clause's items were always read).
unsafe fn join_exprs(jt: *mut pg_sys::FromExpr) -> Vec<*mut pg_sys::JoinExpr> {
    // SAFETY: jt is a FromExpr of the analyzed query; its items are
    // RangeTblRef or JoinExpr nodes.
    unsafe {
        let mut out = Vec::new();
        let mut items = list_ptrs::<pg_sys::Node>((*jt).fromlist);
        while let Some(item) = items.pop() {
            if !item.is_null() && (*item).type_ == pg_sys::NodeTag::T_JoinExpr {
                let j = item as *mut pg_sys::JoinExpr;
                items.push((*j).larg);
                items.push((*j).rarg);
                out.push(j);
            }
        }
        out
    }
}

/// Is operator `opno` one of pg_catalog's? The changed values a refresh
/// follows along an `=` condition are compared with
/// `OPERATOR(pg_catalog.=)`, which resolves to the condition's own operator
/// for the same operand types only then (an extension's `=`, such as
/// citext's, would be replaced by another: text's, case-sensitive).
pub(crate) fn catalog_operator(opno: pg_sys::Oid) -> bool {
    // SAFETY: the syscache lookup returns NULL or a pg_operator tuple,
    // read and released here.
    unsafe {
        let tuple =
            pg_sys::SearchSysCache1(pg_sys::SysCacheIdentifier::OPEROID as i32, pg_sys::Datum::from(opno));
        if tuple.is_null() {
            return false;
        }
        let op = pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_operator>(tuple);
        let namespace = (*op).oprnamespace;
        pg_sys::ReleaseSysCache(tuple);
        namespace == pg_sys::Oid::from(pg_sys::PG_CATALOG_NAMESPACE)
    }
}

/// Is operator `opno` pg_catalog's operator `name` (see [`catalog_operator`])?
pub(crate) fn catalog_operator_named(opno: pg_sys::Oid, name: &str) -> bool {
    // SAFETY: get_opname returns NULL or a palloc'd copy of the name.
    let opname = unsafe { crate::hooks::cstr(pg_sys::get_opname(opno)) };
    opname.as_deref() == Some(name) && catalog_operator(opno)
}

/// Whether a column is declared NOT NULL by a validated constraint
/// (`attnotnull` also marks one added NOT VALID, which rows written before
/// it need not satisfy).
pub(crate) fn column_not_null(relid: pg_sys::Oid, attnum: i16) -> bool {
    // SAFETY: the syscache lookup returns NULL or a pg_attribute tuple,
    // read and released here.
    let marked = unsafe {
        let tuple = pg_sys::SearchSysCacheAttNum(relid, attnum);
        if tuple.is_null() {
            return false;
        }
        let attr = pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_attribute>(tuple);
        let not_null = (*attr).attnotnull;
        pg_sys::ReleaseSysCache(tuple);
        not_null
    };
    // (A validated constraint sets attnotnull: the catalog is read only
    // for the columns it marks.)
    marked
        && crate::catalog::sys::kept_one::<bool>(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint \
                          WHERE conrelid OPERATOR(pg_catalog.=) $1 AND contype OPERATOR(pg_catalog.=) 'n' \
                            AND convalidated AND conkey OPERATOR(pg_catalog.=) ARRAY[$2]::pg_catalog.int2[])",
            &[relid.into(), attnum.into()],
        )
        .ok()
        .flatten()
        .unwrap_or(false)
}

impl Levels {
    fn rtable(&self, level: usize) -> Vec<*mut pg_sys::RangeTblEntry> {
        // SAFETY: every level's q is a valid Query.
        unsafe { list_ptrs::<pg_sys::RangeTblEntry>((*self.levels[level].q).rtable) }
    }

    /// The query of the CTE that `rte` (an RTE_CTE of `level`) names, and
    /// the level owning its WITH list.
    unsafe fn cte(
        &self,
        level: usize,
        rte: *mut pg_sys::RangeTblEntry,
    ) -> Result<(*mut pg_sys::Query, usize), &'static str> {
        // SAFETY: rte is a valid RTE_CTE; the WITH lists hold CommonTableExpr nodes.
        unsafe {
            let mut owner = level;
            for _ in 0..(*rte).ctelevelsup {
                owner = self.levels[owner].parent.ok_or("WITH queries of an outer query level")?;
            }
            let name = std::ffi::CStr::from_ptr((*rte).ctename);
            for cte in list_ptrs::<pg_sys::CommonTableExpr>((*self.levels[owner].q).cteList) {
                if std::ffi::CStr::from_ptr((*cte).ctename) == name {
                    if (*cte).cterecursive {
                        return Err("WITH RECURSIVE");
                    }
                    return Ok(((*cte).ctequery as *mut pg_sys::Query, owner));
                }
            }
            Err("WITH queries")
        }
    }

    /// Read the levels under `level`; facts about every level go to `f`.
    unsafe fn walk(&mut self, level: usize, f: &mut QueryFacts) {
        // SAFETY: see query_facts; every node is read according to its tag.
        unsafe {
            let base = self.levels[level].base;
            for (i, rte) in self.rtable(level).into_iter().enumerate() {
                let index = i as u32 + 1;
                if index >= LEVEL_SPAN {
                    f.other_rtes.push("queries of more than 999 FROM items");
                    return;
                }
                let inner = match (*rte).rtekind {
                    // (A sample depends on where the rows are, not on them.)
                    pg_sys::RTEKind::RTE_RELATION if !(*rte).tablesample.is_null() => Err("TABLESAMPLE"),
                    pg_sys::RTEKind::RTE_RELATION => {
                        f.relations.push((base + index, (*rte).relid, (*rte).relkind as u8));
                        continue;
                    }
                    pg_sys::RTEKind::RTE_GROUP => continue,
                    pg_sys::RTEKind::RTE_JOIN => {
                        f.inner_only &= (*rte).jointype == pg_sys::JoinType::JOIN_INNER;
                        continue;
                    }
                    pg_sys::RTEKind::RTE_SUBQUERY if (*rte).lateral => Err("LATERAL subqueries"),
                    pg_sys::RTEKind::RTE_SUBQUERY => Ok(((*rte).subquery, level)),
                    pg_sys::RTEKind::RTE_CTE => self.cte(level, rte),
                    pg_sys::RTEKind::RTE_FUNCTION | pg_sys::RTEKind::RTE_TABLEFUNC => {
                        Err("functions in FROM")
                    }
                    pg_sys::RTEKind::RTE_VALUES => Err("VALUES in FROM"),
                    _ => Err("this kind of FROM item"),
                };
                let (q, parent) = match inner.and_then(|(q, parent)| match not_simple(q) {
                    Some(why) => Err(why),
                    None => Ok((q, parent)),
                }) {
                    Ok(found) => found,
                    Err(why) => {
                        f.other_rtes.push(why);
                        continue;
                    }
                };
                let child = self.levels.len();
                let base = self.levels[0].base + child as u32 * LEVEL_SPAN;
                self.levels.push(Level { q, base, parent: Some(parent) });
                self.children.insert((level, index), child);
                self.walk(child, f);
            }
        }
    }

    /// A plain column of a table under `expr` of `level`, seen through the
    /// GROUP RTE PostgreSQL 18 puts between grouped Vars and the table,
    /// through a join's alias variables (USING columns), and through the
    /// output columns of the subqueries and WITH queries read in place.
    unsafe fn base_column(&self, mut level: usize, expr: *mut pg_sys::Node) -> Option<(u32, i16)> {
        // SAFETY: see walk.
        unsafe {
            let mut node = expr;
            for _ in 0..64 {
                while !node.is_null() && (*node).type_ == pg_sys::NodeTag::T_RelabelType {
                    node = (*(node as *mut pg_sys::RelabelType)).arg as *mut pg_sys::Node;
                }
                if node.is_null() || (*node).type_ != pg_sys::NodeTag::T_Var {
                    return None;
                }
                let var = &*(node as *mut pg_sys::Var);
                // (An outer reference, from a subquery in an expression,
                // names a column of an enclosing level.)
                for _ in 0..var.varlevelsup {
                    level = self.levels[level].parent?;
                }
                let rtable = self.rtable(level);
                if var.varno < 1 || var.varno as usize > rtable.len() || var.varattno <= 0 {
                    return None;
                }
                let rte = rtable[var.varno as usize - 1];
                match (*rte).rtekind {
                    pg_sys::RTEKind::RTE_RELATION => {
                        return Some((self.levels[level].base + var.varno as u32, var.varattno))
                    }
                    pg_sys::RTEKind::RTE_GROUP => {
                        let exprs = list_ptrs::<pg_sys::Node>((*rte).groupexprs);
                        node = *exprs.get(var.varattno as usize - 1)?;
                    }
                    pg_sys::RTEKind::RTE_JOIN => {
                        let vars = list_ptrs::<pg_sys::Node>((*rte).joinaliasvars);
                        node = *vars.get(var.varattno as usize - 1)?;
                    }
                    pg_sys::RTEKind::RTE_SUBQUERY | pg_sys::RTEKind::RTE_CTE => {
                        let child = *self.children.get(&(level, var.varno as u32))?;
                        let tle = list_ptrs::<pg_sys::TargetEntry>((*self.levels[child].q).targetList)
                            .into_iter()
                            .find(|t| (**t).resno == var.varattno)?;
                        node = (*tle).expr as *mut pg_sys::Node;
                        level = child;
                    }
                    _ => return None,
                }
            }
            None
        }
    }

    /// The ids of the table references under a FROM item of `level`.
    unsafe fn ids_under(&self, level: usize, n: *mut pg_sys::Node) -> Vec<u32> {
        // SAFETY: see walk.
        unsafe {
            let mut out = Vec::new();
            let mut stack = vec![(level, n)];
            while let Some((level, n)) = stack.pop() {
                if n.is_null() {
                    continue;
                }
                match (*n).type_ {
                    pg_sys::NodeTag::T_RangeTblRef => {
                        let index = (*(n as *mut pg_sys::RangeTblRef)).rtindex as u32;
                        match self.children.get(&(level, index)) {
                            Some(&child) => {
                                let jt = (*self.levels[child].q).jointree;
                                if !jt.is_null() {
                                    for item in list_ptrs::<pg_sys::Node>((*jt).fromlist) {
                                        stack.push((child, item));
                                    }
                                }
                            }
                            None => out.push(self.levels[level].base + index),
                        }
                    }
                    pg_sys::NodeTag::T_JoinExpr => {
                        let j = &*(n as *mut pg_sys::JoinExpr);
                        stack.push((level, j.larg));
                        stack.push((level, j.rarg));
                    }
                    _ => {}
                }
            }
            out
        }
    }

    /// Read the subqueries in expressions (EXISTS, IN, NOT IN, scalar
    /// subqueries) of `level`'s WHERE and inner JOIN ... ON clauses, and
    /// theirs, each as a level of its own whose tables are table references
    /// (`f.sub_relations`). The `=` conditions of a subquery's WHERE
    /// between its columns and the outer query's are read with every
    /// level's (equalities_and_nullable); `edges` gets those of an
    /// `IN`/`= ANY` (or `NOT IN`/`<> ALL`) between an outer column and the
    /// subquery's output column. Err: why the query cannot be maintained.
    ///
    /// Why these conditions are enough: a row of a table inside a subquery
    /// can change the subquery's value for an outer row only if it passes
    /// the subquery's WHERE, so only if it is equal on those columns. An
    /// IN's comparison counts only where its NULL cannot matter: as a
    /// condition of the WHERE clause itself (where NULL and false both
    /// drop the row), or between columns that are NOT NULL; elsewhere a
    /// NULL in the subquery turns every outer row's NOT IN to NULL.
    unsafe fn read_sublinks(
        &mut self,
        level: usize,
        f: &mut QueryFacts,
        edges: &mut Vec<Equality>,
    ) -> Result<(), &'static str> {
        // SAFETY: see walk; SubLink nodes and their subqueries are read
        // according to their tags.
        unsafe {
            let q = self.levels[level].q;
            // (sublink, is a condition of the WHERE or ON clause itself)
            let mut found: Vec<(*mut pg_sys::SubLink, bool)> = Vec::new();
            // In the select list (GROUP BY, ORDER BY) and HAVING: values.
            for n in [(*q).targetList as *mut pg_sys::Node, (*q).havingQual] {
                crate::hooks::nodes::walk(n, |n| {
                    if (*n).type_ == pg_sys::NodeTag::T_SubLink {
                        found.push((n as *mut pg_sys::SubLink, false));
                    }
                    true
                });
            }
            let jt = (*q).jointree;
            if !jt.is_null() {
                let mut clauses = vec![(*jt).quals];
                for j in join_exprs(jt) {
                    if (*j).jointype == pg_sys::JoinType::JOIN_INNER {
                        clauses.push((*j).quals);
                    } else {
                        let mut found = false;
                        crate::hooks::nodes::walk((*j).quals, |n| {
                            found |= (*n).type_ == pg_sys::NodeTag::T_SubLink;
                            !found
                        });
                        if found {
                            return Err("subqueries in the ON clause of an outer join");
                        }
                    }
                }
                for clause in clauses {
                    for conjunct in and_args(clause) {
                        crate::hooks::nodes::walk(conjunct, |n| {
                            if (*n).type_ == pg_sys::NodeTag::T_SubLink {
                                found.push((n as *mut pg_sys::SubLink, n == conjunct));
                            }
                            true
                        });
                    }
                }
            }
            for (sublink, condition) in found {
                self.read_sublink(level, sublink, condition, f, edges)?;
            }
            Ok(())
        }
    }

    unsafe fn read_sublink(
        &mut self,
        level: usize,
        sublink: *mut pg_sys::SubLink,
        condition: bool,
        f: &mut QueryFacts,
        edges: &mut Vec<Equality>,
    ) -> Result<(), &'static str> {
        // SAFETY: see read_sublinks.
        unsafe {
            let sl = &*sublink;
            let kind = sl.subLinkType;
            if !matches!(
                kind,
                pg_sys::SubLinkType::EXISTS_SUBLINK
                    | pg_sys::SubLinkType::ANY_SUBLINK
                    | pg_sys::SubLinkType::ALL_SUBLINK
                    | pg_sys::SubLinkType::EXPR_SUBLINK
            ) {
                return Err(
                    "ARRAY(subquery), row comparisons with subqueries and other subquery expressions",
                );
            }
            let sub = sl.subselect as *mut pg_sys::Query;
            if sub.is_null() || (*sub).type_ != pg_sys::NodeTag::T_Query {
                return Err("subqueries in expressions");
            }
            if let Some(why) = not_plain_subquery(sub) {
                return Err(why);
            }
            let q = &*sub;
            if q.hasAggs || !q.groupClause.is_null() || !q.distinctClause.is_null() || !q.havingQual.is_null()
            {
                f.aggregating_sublink = true;
            }
            let child = self.levels.len();
            if child as u32 >= u32::MAX / LEVEL_SPAN - 1 {
                return Err("queries of too many subqueries");
            }
            let base = self.levels[0].base + child as u32 * LEVEL_SPAN;
            self.levels.push(Level { q: sub, base, parent: Some(level) });
            for (i, rte) in self.rtable(child).into_iter().enumerate() {
                let index = i as u32 + 1;
                if index >= LEVEL_SPAN {
                    return Err("queries of more than 999 FROM items");
                }
                match (*rte).rtekind {
                    pg_sys::RTEKind::RTE_RELATION if !(*rte).tablesample.is_null() => {
                        return Err("TABLESAMPLE")
                    }
                    pg_sys::RTEKind::RTE_RELATION => {
                        f.sub_relations.push((base + index, (*rte).relid, (*rte).relkind as u8))
                    }
                    pg_sys::RTEKind::RTE_GROUP => {}
                    pg_sys::RTEKind::RTE_JOIN if (*rte).jointype == pg_sys::JoinType::JOIN_INNER => {}
                    pg_sys::RTEKind::RTE_JOIN => return Err("outer joins inside subqueries in expressions"),
                    _ => {
                        return Err(
                            "subqueries, functions or VALUES in the FROM clause of subqueries in expressions",
                        )
                    }
                }
            }
            // IN / = ANY and NOT IN / <> ALL compare an outer expression with
            // the subquery's output column (a Param numbered like it).
            let wanted = match kind {
                pg_sys::SubLinkType::ANY_SUBLINK => Some("="),
                pg_sys::SubLinkType::ALL_SUBLINK => Some("<>"),
                _ => None,
            };
            if let Some(wanted) = wanted {
                let null_safe = kind == pg_sys::SubLinkType::ANY_SUBLINK && condition;
                let targets = list_ptrs::<pg_sys::TargetEntry>((*sub).targetList);
                for n in and_args(sl.testexpr) {
                    if (*n).type_ != pg_sys::NodeTag::T_OpExpr {
                        continue;
                    }
                    let op = &*(n as *mut pg_sys::OpExpr);
                    if !catalog_operator_named(op.opno, wanted) {
                        continue;
                    }
                    let [outer, param] = list_ptrs::<pg_sys::Node>(op.args)[..] else { continue };
                    if param.is_null() || (*param).type_ != pg_sys::NodeTag::T_Param {
                        continue;
                    }
                    let p = &*(param as *mut pg_sys::Param);
                    if p.paramkind != pg_sys::ParamKind::PARAM_SUBLINK {
                        continue;
                    }
                    let Some(tle) = targets.iter().find(|t| i32::from((***t).resno) == p.paramid) else {
                        continue;
                    };
                    let (Some(a), Some(b)) = (
                        self.base_column(level, outer),
                        self.base_column(child, (**tle).expr as *mut pg_sys::Node),
                    ) else {
                        continue;
                    };
                    let relation_of = |id: u32| {
                        f.relations
                            .iter()
                            .chain(&f.sub_relations)
                            .find(|(i, _, _)| *i == id)
                            .map(|(_, r, _)| *r)
                    };
                    let not_null = |(id, attnum): (u32, i16)| {
                        relation_of(id).is_some_and(|r| column_not_null(r, attnum))
                    };
                    if a.0 != b.0 && (null_safe || (not_null(a) && not_null(b))) {
                        edges.push((a, b));
                    }
                }
            }
            self.read_sublinks(child, f, edges)
        }
    }

    /// `a.x = b.y` conditions between plain columns of two table references
    /// (WHERE and JOIN ... ON, ANDed at the top, at every level), those of
    /// them that compare one built-in type with its own equality, and the
    /// table references on the nullable side of an outer join.
    unsafe fn equalities_and_nullable(&self) -> (Vec<Equality>, Vec<Equality>, Vec<u32>) {
        // SAFETY: see walk.
        unsafe {
            let mut equalities = Vec::new();
            let mut strict = Vec::new();
            let mut nullable = Vec::new();
            for level in 0..self.levels.len() {
                let jt = (*self.levels[level].q).jointree;
                if jt.is_null() {
                    continue;
                }
                let mut quals: Vec<*mut pg_sys::Node> = vec![(*jt).quals];
                for j in join_exprs(jt) {
                    let j = &*j;
                    quals.push(j.quals);
                    match j.jointype {
                        pg_sys::JoinType::JOIN_LEFT => nullable.extend(self.ids_under(level, j.rarg)),
                        pg_sys::JoinType::JOIN_RIGHT => nullable.extend(self.ids_under(level, j.larg)),
                        pg_sys::JoinType::JOIN_FULL => {
                            nullable.extend(self.ids_under(level, j.larg));
                            nullable.extend(self.ids_under(level, j.rarg));
                        }
                        _ => {}
                    }
                }
                // (Last clause's last condition first, as they were always read.)
                for q in quals.into_iter().rev() {
                    for (equality, plain) in self.equality_conditions(level, q).into_iter().rev() {
                        equalities.push(equality);
                        if plain {
                            strict.push(equality);
                        }
                    }
                }
            }
            (equalities, strict, nullable)
        }
    }

    /// The `=` conditions (of pg_catalog: see [`catalog_operator`]) ANDed
    /// at the top of `quals` (of query level `level`) between plain columns
    /// of two table references, in order, each with whether it compares
    /// one built-in type with its own equality (slices::plain_equality).
    unsafe fn equality_conditions(&self, level: usize, quals: *mut pg_sys::Node) -> Vec<(Equality, bool)> {
        // SAFETY: see walk; quals is an expression of that level.
        unsafe {
            let mut out = Vec::new();
            for n in and_args(quals) {
                if (*n).type_ != pg_sys::NodeTag::T_OpExpr {
                    continue;
                }
                let op = &*(n as *mut pg_sys::OpExpr);
                if !catalog_operator_named(op.opno, "=") {
                    continue;
                }
                let args = list_ptrs::<pg_sys::Node>(op.args);
                let [l, r] = args.as_slice() else { continue };
                if let (Some(a), Some(b)) = (self.base_column(level, *l), self.base_column(level, *r)) {
                    if a.0 != b.0 {
                        out.push(((a, b), super::slices::plain_equality(op.opno, op.inputcollid, *l, *r)));
                    }
                }
            }
            out
        }
    }

    /// The `=` conditions of `quals` (a JoinExpr's ON clause at the top
    /// level), as [`Levels::equality_conditions`] finds them.
    unsafe fn qual_equalities(&self, quals: *mut pg_sys::Node) -> Vec<Equality> {
        // SAFETY: as equality_conditions'.
        unsafe { self.equality_conditions(0, quals).into_iter().map(|(e, _)| e).collect() }
    }
}

/// Those of `equalities` that compare a column of `table` with another
/// table's, oriented from `table`.
fn oriented(equalities: &[Equality], table: u32) -> Vec<Equality> {
    equalities
        .iter()
        .filter_map(|&(a, b)| match (a.0 == table, b.0 == table) {
            (true, false) => Some((a, b)),
            (false, true) => Some((b, a)),
            _ => None,
        })
        .collect()
}

/// Ids apart between the branches of a UNION ALL.
const BRANCH_SPAN: u32 = 100_000;

/// The range table indexes of the branches of a UNION ALL tree, left to
/// right; Err for UNION, INTERSECT or EXCEPT anywhere in it.
unsafe fn union_all_branches(node: *mut pg_sys::Node, out: &mut Vec<u32>) -> Result<(), ()> {
    // SAFETY: a set operation tree holds SetOperationStmt and RangeTblRef nodes.
    unsafe {
        if node.is_null() {
            return Err(());
        }
        match (*node).type_ {
            pg_sys::NodeTag::T_RangeTblRef => {
                out.push((*(node as *mut pg_sys::RangeTblRef)).rtindex as u32);
                Ok(())
            }
            pg_sys::NodeTag::T_SetOperationStmt => {
                let op = &*(node as *mut pg_sys::SetOperationStmt);
                if op.op != pg_sys::SetOperation::SETOP_UNION || !op.all {
                    return Err(());
                }
                union_all_branches(op.larg, out)?;
                union_all_branches(op.rarg, out)
            }
            _ => Err(()),
        }
    }
}

/// A FROM item read as an inner join of tables (`start`) followed by LEFT
/// JOINs each adding one table (`left`: the table and its ON condition).
#[derive(Clone)]
struct Chain {
    start: Vec<u32>,
    left: Vec<(u32, *mut pg_sys::Node)>,
    /// At least one LEFT JOIN was read (not a plain inner join).
    outer: bool,
}

/// The preserved tables of `node` when it is, or may be rewritten as, a
/// chain of LEFT JOINs each adding one table (`t1 LEFT JOIN t2 ON ... LEFT
/// JOIN t3 ON ...`) to a table or an inner join of tables ([`inner_block`]):
/// a LEFT JOIN keeps every row on its left, so every output row comes from
/// one row of that start, and so from one row of each of its tables.
///
/// An inner join above a LEFT JOIN joins the start: `(s LEFT JOIN b) JOIN c
/// ON p` is `(s JOIN c ON p) LEFT JOIN b` when `p` does not read `b`, and
/// when `p` cannot be true on a NULL-extended `b` row (PostgreSQL's
/// `find_nonnullable_rels`: `c.id = b.cid`), the LEFT JOIN of `b` keeps no
/// NULL-extended row, so it is an inner join and `b` joins the start too
/// (then its own ON condition is read the same way). A WHERE condition
/// (`where_quals`) that rejects NULL-extended rows of a table turns its LEFT
/// JOIN into an inner join the same way; one that does not is left for the
/// caller to refuse. `table` gives the range table index of a reference to
/// a table; `tables` is the range table's length (0 when the query has
/// subqueries in expressions, which these conditions are not read through:
/// then no inner join after a LEFT JOIN). None: not such a chain (or no
/// LEFT JOIN at all).
unsafe fn left_chain(
    node: *mut pg_sys::Node,
    table: &dyn Fn(*mut pg_sys::Node) -> Option<u32>,
    tables: u32,
    where_quals: *mut pg_sys::Node,
) -> Option<Chain> {
    // SAFETY: (the caller's) node and quals are valid nodes of an analyzed query.
    unsafe {
        let mut chain = read_chain(node, table, tables)?;
        if !chain.outer {
            return None;
        }
        // (A WHERE condition reading something else is refused by the caller.)
        let before = chain.clone();
        if tables > 0 && join_start(&mut chain, where_quals, tables).is_none() {
            chain = before;
        }
        Some(chain)
    }
}

/// `node` read as a [`Chain`] (its inner joins above LEFT JOINs moved into
/// the start where exact, see [`left_chain`]).
unsafe fn read_chain(
    node: *mut pg_sys::Node,
    table: &dyn Fn(*mut pg_sys::Node) -> Option<u32>,
    tables: u32,
) -> Option<Chain> {
    if let Some(index) = table(node) {
        return Some(Chain { start: vec![index], left: Vec::new(), outer: false });
    }
    // SAFETY: as left_chain's.
    unsafe {
        if node.is_null() || (*node).type_ != pg_sys::NodeTag::T_JoinExpr {
            return None;
        }
        let j = &*(node as *mut pg_sys::JoinExpr);
        let mut chain = read_chain(j.larg, table, tables)?;
        match j.jointype {
            pg_sys::JoinType::JOIN_LEFT => {
                chain.left.push((table(j.rarg)?, j.quals));
                chain.outer = true;
            }
            pg_sys::JoinType::JOIN_INNER => {
                chain.start.extend(inner_block(j.rarg, table)?);
                // (Before any LEFT JOIN, an inner join of the start.)
                if !chain.left.is_empty() && (tables == 0 || !join_start(&mut chain, j.quals, tables)?) {
                    return None;
                }
            }
            _ => return None,
        }
        Some(chain)
    }
}

/// Move into the chain's start every LEFT JOIN table whose NULL-extended
/// rows `quals` (an inner join's or the WHERE condition, over the chain's
/// tables) reject, with the tables their ON conditions reject in turn.
/// Some(true): `quals` reads no other LEFT JOIN table; Some(false): it reads
/// one whose NULL-extended rows it may keep; None: it reads a range table
/// entry that is not one of the chain's tables (a join's merged column).
unsafe fn join_start(chain: &mut Chain, quals: *mut pg_sys::Node, tables: u32) -> Option<bool> {
    if quals.is_null() {
        return Some(true);
    }
    // SAFETY: quals is an expression of the analyzed query;
    // find_nonnullable_rels only reads it.
    unsafe {
        let read: Vec<u32> = (1..=tables).filter(|&i| !attnums_of(quals, i).is_empty()).collect();
        if read.iter().any(|i| !chain.start.contains(i) && !chain.left.iter().any(|(t, _)| t == i)) {
            return None;
        }
        let nonnullable = pg_sys::find_nonnullable_rels(quals);
        for &index in &read {
            let Some(at) = chain.left.iter().position(|(t, _)| *t == index) else {
                continue;
            };
            if pg_sys::bms_is_member(index as i32, nonnullable) {
                let (t, on) = chain.left.remove(at);
                chain.start.push(t);
                if !join_start(chain, on, tables)? {
                    return None;
                }
            }
        }
        Some(read.iter().all(|i| !chain.left.iter().any(|(t, _)| t == i)))
    }
}

/// The tables of `node` when it is a table or an inner join (or cross
/// join) of tables, in order.
unsafe fn inner_block(
    node: *mut pg_sys::Node,
    table: &dyn Fn(*mut pg_sys::Node) -> Option<u32>,
) -> Option<Vec<u32>> {
    if let Some(index) = table(node) {
        return Some(vec![index]);
    }
    // SAFETY: as left_chain's.
    unsafe {
        if node.is_null() || (*node).type_ != pg_sys::NodeTag::T_JoinExpr {
            return None;
        }
        let j = &*(node as *mut pg_sys::JoinExpr);
        if j.jointype != pg_sys::JoinType::JOIN_INNER {
            return None;
        }
        let mut tables = inner_block(j.larg, table)?;
        tables.extend(inner_block(j.rarg, table)?);
        Some(tables)
    }
}

/// `ORDER BY ... LIMIT n` of a query, if it has a LIMIT; Err: why it cannot
/// be maintained.
unsafe fn read_topk(q: &pg_sys::Query) -> Result<Option<TopK>, &'static str> {
    // SAFETY: the Query's limit, sort clause and target list are read
    // according to their node tags; the type cache entry is only read.
    unsafe {
        if q.limitCount.is_null() && q.limitOffset.is_null() {
            return Ok(None);
        }
        if !q.limitOffset.is_null() {
            return Err("OFFSET");
        }
        if q.limitOption == pg_sys::LimitOption::LIMIT_OPTION_WITH_TIES {
            return Err("FETCH FIRST ... WITH TIES");
        }
        // (`LIMIT 5` is stored as the cast of an int4 to int8: folded here.)
        let limit = pg_sys::eval_const_expressions(std::ptr::null_mut(), q.limitCount);
        if limit.is_null() || (*limit).type_ != pg_sys::NodeTag::T_Const {
            return Err("a LIMIT that is not a constant");
        }
        let c = &*(limit as *mut pg_sys::Const);
        if c.constisnull || c.consttype != pg_sys::INT8OID {
            return Err("a LIMIT that is not a constant");
        }
        let limit = c.constvalue.value() as i64;
        let sorts = list_ptrs::<pg_sys::SortGroupClause>(q.sortClause);
        if sorts.is_empty() {
            return Err("LIMIT without ORDER BY");
        }
        let targets = list_ptrs::<pg_sys::TargetEntry>(q.targetList);
        let mut order = Vec::new();
        for sgc in sorts {
            let sgc = &*sgc;
            let mut output = 0i16;
            let mut found = None;
            for tle in &targets {
                if (**tle).resjunk {
                    continue;
                }
                output += 1;
                if (**tle).ressortgroupref == sgc.tleSortGroupRef {
                    found = Some((output, *tle));
                    break;
                }
            }
            let Some((output, tle)) = found else {
                return Err("ORDER BY items that are not columns of the select list");
            };
            let ty = pg_sys::exprType((*tle).expr as *const pg_sys::Node);
            let cache =
                pg_sys::lookup_type_cache(ty, (pg_sys::TYPECACHE_LT_OPR | pg_sys::TYPECACHE_GT_OPR) as i32);
            let descending = if !cache.is_null() && sgc.sortop == (*cache).lt_opr {
                false
            } else if !cache.is_null() && sgc.sortop == (*cache).gt_opr {
                true
            } else {
                return Err("ORDER BY ... USING an operator other than the type's default order");
            };
            order.push((output, descending, sgc.nulls_first));
        }
        Ok(Some(TopK { limit, order }))
    }
}

/// Read one query: the stored query (`base` 0), or a branch of its UNION
/// ALL, whose table references get ids from `base` on.
unsafe fn read_query(q: *mut pg_sys::Query, base: u32) -> PgtResult<QueryFacts> {
    // SAFETY: see query_facts.
    unsafe {
        if q.is_null() {
            return Err(PgtError::Internal("materialized view without a query".into()));
        }
        let top = &*q;
        let mut branches = Vec::new();
        let union_all = !top.setOperations.is_null()
            && base == 0
            && union_all_branches(top.setOperations, &mut branches).is_ok();
        let mut features = Vec::new();
        // Window functions partitioned by columns every window shares are
        // recomputed per partition (decided with the rest of the query in
        // decide_shape); others are refused here.
        let windows_alone = top.hasWindowFuncs && base == 0 && !union_all && windows_alone(top);
        let window_partition = if windows_alone { window_partition(top) } else { None };
        for (present, name) in [
            (!top.setOperations.is_null() && !union_all, "UNION, INTERSECT or EXCEPT"),
            (top.hasWindowFuncs && !windows_alone, "window functions"),
            (
                windows_alone && window_partition.is_none(),
                "window functions not partitioned (PARTITION BY) by a column common to every window",
            ),
            (top.hasTargetSRFs, "set-returning functions in the select list"),
            (top.hasSubLinks && (base != 0 || union_all), "subqueries in expressions"),
            (top.hasDistinctOn, "DISTINCT ON"),
            (!top.groupingSets.is_null(), "GROUPING SETS, ROLLUP or CUBE"),
            (
                (!top.limitCount.is_null() || !top.limitOffset.is_null()) && (base != 0 || union_all),
                "LIMIT or OFFSET",
            ),
            (!top.rowMarks.is_null(), "FOR UPDATE/SHARE"),
        ] {
            if present {
                features.push(name);
            }
        }
        let volatile = pg_sys::contain_volatile_functions(q as *mut pg_sys::Node);
        let stable = !volatile && pg_sys::contain_mutable_functions(q as *mut pg_sys::Node);
        let mut f = QueryFacts {
            features,
            volatile,
            stable,
            relations: Vec::new(),
            other_rtes: Vec::new(),
            inner_only: true,
            left_join: None,
            left_ons: Vec::new(),
            outer_on_equalities: Vec::new(),
            full_join: None,
            where_rtes: Vec::new(),
            has_aggs: top.hasAggs,
            has_group: !top.groupClause.is_null(),
            has_distinct: !top.distinctClause.is_null(),
            outputs: Vec::new(),
            group_refs: Vec::new(),
            equalities: Vec::new(),
            strict_equalities: Vec::new(),
            nullable: Vec::new(),
            aggregates: Vec::new(),
            derived: Vec::new(),
            has_having: !top.havingQual.is_null(),
            having: None,
            where_sql: None,
            where_attnums: Vec::new(),
            branches: Vec::new(),
            output_sql: None,
            output_attnums: Vec::new(),
            join_totals: None,
            slice_graph: None,
            rows_join: None,
            rows_graph: None,
            union_rows: None,
            limited: !top.limitCount.is_null() || !top.limitOffset.is_null(),
            sub_relations: Vec::new(),
            topk: None,
            aggregating_sublink: false,
            no_totals: false,
            window_partition,
            group_exprs: Vec::new(),
        };
        if base == 0 && !union_all {
            match read_topk(top) {
                Ok(topk) => f.topk = topk,
                Err(why) => f.features.push(why),
            }
        }
        if union_all {
            let rtable = list_ptrs::<pg_sys::RangeTblEntry>(top.rtable);
            let mut union_rows = Some(Vec::new());
            for (i, index) in branches.into_iter().enumerate() {
                let rte = *rtable
                    .get(index as usize - 1)
                    .ok_or_else(|| PgtError::Internal("UNION ALL branch out of range".into()))?;
                let sub = (*rte).subquery;
                // (Only a filter and projection: join_totals::read takes
                // aggregates for running totals.)
                let plain = !(*sub).hasAggs && (*sub).groupClause.is_null() && (*sub).groupingSets.is_null();
                if !plain {
                    union_rows = None;
                }
                if let Some(rows) = union_rows.as_mut() {
                    match super::join_totals::read_branch(sub, &super::join_totals::row_outputs(sub)) {
                        Some(jt) => rows.push(jt),
                        None => union_rows = None,
                    }
                }
                let mut branch = read_query(sub, (i as u32 + 1) * BRANCH_SPAN)?;
                // (Nor a branch with anything refused on its own: LIMIT,
                // TABLESAMPLE, functions in FROM, ...)
                if !branch.features.is_empty() || !branch.other_rtes.is_empty() {
                    union_rows = None;
                }
                // (A branch's rows are identified by all its tables' keys:
                // the union's apply reads no followed changes.)
                branch.strict_equalities.clear();
                f.relations.extend(branch.relations.iter().copied());
                f.branches.push(branch);
            }
            f.union_rows = union_rows;
            return Ok(f);
        }
        let mut levels =
            Levels { levels: vec![Level { q, base, parent: None }], children: Default::default() };
        levels.walk(0, &mut f);
        let mut sub_edges = Vec::new();
        if top.hasSubLinks && base == 0 {
            if let Err(why) = levels.read_sublinks(0, &mut f, &mut sub_edges) {
                f.features.push(why);
            }
        }
        let rtable = levels.rtable(0);
        let is_relation = |index: u32| {
            rtable.get(index as usize - 1).is_some_and(|rte| (**rte).rtekind == pg_sys::RTEKind::RTE_RELATION)
        };
        // FROM exactly a chain of LEFT JOINs of tables, each joining one
        // table to the chain before it (or one RIGHT or FULL JOIN of two)?
        let from = if top.jointree.is_null() {
            Vec::new()
        } else {
            list_ptrs::<pg_sys::Node>((*top.jointree).fromlist)
        };
        if let [only] = from.as_slice() {
            if (**only).type_ == pg_sys::NodeTag::T_JoinExpr {
                let j = &*(*only as *mut pg_sys::JoinExpr);
                let rti = |n: *mut pg_sys::Node| {
                    (!n.is_null() && (*n).type_ == pg_sys::NodeTag::T_RangeTblRef)
                        .then(|| (*(n as *mut pg_sys::RangeTblRef)).rtindex as u32)
                        .filter(|&i| is_relation(i))
                };
                match (j.jointype, rti(j.larg), rti(j.rarg)) {
                    (pg_sys::JoinType::JOIN_LEFT | pg_sys::JoinType::JOIN_INNER, _, _) => {
                        let tables = if top.hasSubLinks { 0 } else { rtable.len() as u32 };
                        if let Some(chain) = left_chain(*only, &rti, tables, (*top.jointree).quals) {
                            f.left_join = Some(chain.start.iter().map(|t| base + t).collect());
                            for (t, on) in chain.left {
                                let equalities = levels.qual_equalities(on);
                                f.left_ons.push((base + t, oriented(&equalities, base + t)));
                                f.outer_on_equalities.extend(equalities);
                            }
                        }
                    }
                    (pg_sys::JoinType::JOIN_RIGHT, Some(l), Some(r)) => {
                        f.left_join = Some(vec![base + r]);
                        let equalities = levels.qual_equalities(j.quals);
                        f.left_ons.push((base + l, oriented(&equalities, base + l)));
                        f.outer_on_equalities.extend(equalities);
                    }
                    (pg_sys::JoinType::JOIN_FULL, Some(l), Some(r)) => {
                        f.full_join = Some((base + l, base + r));
                        let equalities = levels.qual_equalities(j.quals);
                        f.left_ons.push((base + l, oriented(&equalities, base + l)));
                        f.left_ons.push((base + r, oriented(&equalities, base + r)));
                        f.outer_on_equalities.extend(equalities);
                    }
                    _ => {}
                }
            }
        }
        // (pull_varattnos does not descend into sublinks, which are refused.)
        if !top.hasSubLinks && !top.jointree.is_null() && !(*top.jointree).quals.is_null() {
            for index in 1..=rtable.len() as u32 {
                if !attnums_of((*top.jointree).quals, index).is_empty() {
                    f.where_rtes.push(base + index);
                }
            }
        }
        // The query reads one table and nothing else (no other FROM item,
        // not even one refused above): its expressions can be deparsed
        // over that table alone.
        let only_table = rtable.iter().filter(|r| (***r).rtekind != pg_sys::RTEKind::RTE_GROUP).count() == 1;
        let single = match f.relations.as_slice() {
            [(1, relid, _)] if only_table && is_relation(1) && base == 0 && !top.hasSubLinks => Some(*relid),
            _ => None,
        };
        // (Only a plain filter/projection: grouped outputs read the GROUP
        // RTE, which the deparse context of one table does not know.)
        let plain = !top.hasAggs
            && top.groupClause.is_null()
            && top.distinctClause.is_null()
            && top.groupingSets.is_null()
            && !top.hasWindowFuncs
            && !top.hasTargetSRFs;
        let mut output_sql = single.filter(|_| plain).map(|_| Vec::new());
        // Aggregates over an inner join of several tables may be kept from
        // running totals too (see join_totals).
        // So may aggregates whose rows fall into slices (see slices).
        // `SELECT DISTINCT` (not ON) without aggregates or GROUP BY groups
        // by every output: of expressions over one table (`SELECT DISTINCT
        // lower(email)`), read as the GROUP BY it is (below).
        let distinct_as_group = !top.hasAggs
            && top.groupClause.is_null()
            && !top.distinctClause.is_null()
            && !top.hasDistinctOn
            && top.havingQual.is_null();
        let grouping = if distinct_as_group { top.distinctClause } else { top.groupClause };
        let mut group_refs: Vec<u32> = list_ptrs::<pg_sys::SortGroupClause>(grouping)
            .into_iter()
            .map(|sgc| (*sgc).tleSortGroupRef)
            .collect();
        // One table grouped by an expression (`GROUP BY k * 2`): its
        // running totals are read as those of a join of one table, which
        // group by the values of any expression.
        let expression_groups = base == 0
            && single.is_some()
            && (top.hasAggs || !group_refs.is_empty())
            && !top.hasSubLinks
            && list_ptrs::<pg_sys::TargetEntry>(top.targetList).into_iter().any(|tle| {
                (*tle).ressortgroupref != 0
                    && group_refs.contains(&(*tle).ressortgroupref)
                    && levels.base_column(0, (*tle).expr as *mut pg_sys::Node).is_none()
            });
        // A join grouped by expressions (`GROUP BY date_trunc('month',
        // o.ts)`), each over one table reference: regrouped by that
        // reference when key recompute applies (see decide_shape).
        let join_groups = base == 0 && single.is_none() && f.relations.len() > 1 && !group_refs.is_empty();
        // (Groups without aggregates over a join, GROUP BY or DISTINCT: a
        // count per group of the join's rows, when key recompute cannot.)
        let groups_only = !top.hasAggs && !group_refs.is_empty();
        let over_rows = base == 0
            && (single.is_none() || expression_groups)
            && (top.hasAggs || expression_groups || groups_only);
        let over_join = over_rows && (f.relations.len() > 1 || expression_groups) && !top.hasSubLinks;
        let mut join_outputs = Vec::new();
        // (Each aggregate argument of the join's rows, and its output.)
        let mut join_arguments: Vec<(*mut pg_sys::Node, i16)> = Vec::new();
        for tle in list_ptrs::<pg_sys::TargetEntry>(top.targetList) {
            if (*tle).resjunk {
                continue;
            }
            let attnum = f.outputs.len() as i16 + 1;
            let expr = (*tle).expr as *mut pg_sys::Node;
            let grouped = (*tle).ressortgroupref != 0 && group_refs.contains(&(*tle).ressortgroupref);
            // A grouped expression over the columns of one table reference
            // (of the one table, or of a join), written over alias `b`.
            let over_one = expression_groups || (join_groups && !top.hasSubLinks);
            if grouped && over_one && levels.base_column(0, expr).is_none() {
                // (Grouped expressions read the grouping step's entry:
                // written as the expressions they stand for.)
                let plain = match top.hasGroupRTE {
                    true => pg_sys::flatten_group_exprs(std::ptr::null_mut(), q, expr),
                    false => expr,
                };
                let read: Vec<u32> =
                    (1..=rtable.len() as u32).filter(|i| !attnums_of(plain, *i).is_empty()).collect();
                // (One that reads no column, of the one table.)
                let index = match (read.as_slice(), single) {
                    ([index], _) => Some(*index),
                    ([], Some(_)) => Some(1),
                    _ => None,
                };
                if let Some(index) = index.filter(|i| is_relation(*i)) {
                    let relid = (*rtable[index as usize - 1]).relid;
                    let one = crate::hooks::nodes::renumbered(plain, index, 1);
                    let context = pg_sys::deparse_context_for(c"b".as_ptr(), relid);
                    if let Some(sql) =
                        crate::hooks::cstr(pg_sys::deparse_expression(one, context, true, false))
                    {
                        f.group_exprs.push(KeyExpr {
                            output_attnum: attnum,
                            sql,
                            attnums: attnums_of(plain, index),
                            rte: base + index,
                        });
                    }
                }
            }
            // An expression over aggregates: each aggregate a part.
            let derived =
                if grouped { None } else { derived_call(expr, attnum, single, over_rows, &mut join_outputs) };
            // Over a join, an aggregate of the same argument as an earlier
            // output's (count(x) beside sum(x)) reads that output's column
            // of the join's rows: they share one argument, as over one
            // table (where arguments are told apart by their SQL).
            let shared = match (over_rows && !grouped && derived.is_none(), aggregate_argument(expr)) {
                (true, Some(arg)) => join_arguments
                    .iter()
                    .find(|(earlier, _)| pg_sys::equal((*earlier).cast(), arg.cast()))
                    .map(|(_, output)| *output),
                _ => None,
            };
            if over_rows {
                let name = |part: usize| super::join_totals::Output::argument(attnum, part);
                if grouped {
                    join_outputs.push(super::join_totals::Output {
                        name: format!("__k{attnum}"),
                        grouped,
                        expr,
                    });
                } else if let (Some(arg), None) = (aggregate_argument(expr), shared) {
                    join_outputs.push(super::join_totals::Output { name: name(0), grouped, expr: arg });
                    join_arguments.push((arg, attnum));
                }
            }
            f.derived.push(derived);
            if let (Some(relid), Some(out), true) = (single, output_sql.as_mut(), plain) {
                let expr = (*tle).expr as *mut pg_sys::Node;
                let context = pg_sys::deparse_context_for(c"b".as_ptr(), relid);
                match crate::hooks::cstr(pg_sys::deparse_expression(expr, context, true, false)) {
                    Some(sql) => out.push(sql),
                    None => output_sql = None,
                }
                f.output_attnums.extend(attnums_of(expr, 1));
            }
            f.outputs.push((levels.base_column(0, (*tle).expr as *mut pg_sys::Node), (*tle).ressortgroupref));
            let call = match single {
                _ if over_rows => algebraic_aggregate(expr, Over::Join(shared.unwrap_or(attnum), 0)),
                Some(relid) => algebraic_aggregate(expr, Over::Table(relid)),
                None => None,
            };
            f.aggregates.push(call.map(|(kind, arg)| {
                let not_null = aggregate_argument(expr).is_some_and(|a| never_null(top, a));
                (kind, arg.map(|arg| AggArg { not_null, ..arg }))
            }));
        }
        // HAVING over aggregates alone (`count(*) > 1`): computed from the
        // totals too, its aggregates' arguments read as outputs numbered 0.
        if !top.havingQual.is_null() {
            f.having = derived_call(top.havingQual, 0, single, over_rows, &mut join_outputs);
        }
        if over_join {
            f.join_totals = if expression_groups {
                super::join_totals::read_one(q, &join_outputs)
            } else {
                super::join_totals::read(q, &join_outputs)
            };
        }
        if over_rows && f.join_totals.is_none() && !expression_groups {
            f.slice_graph = super::slices::read(q, &join_outputs);
        }
        // A filter and projection of several tables or with subqueries:
        // its rows, as signed rows of a join or of slices (used when the
        // select list lacks a table's primary key).
        // (With ORDER BY ... LIMIT n, the rows ranked: dvm::keyless.)
        let unlimited = top.limitCount.is_null() && top.limitOffset.is_null();
        if base == 0 && single.is_none() && plain && (unlimited || f.topk.is_some()) {
            let outputs = super::join_totals::row_outputs(q);
            if f.relations.len() > 1 && !top.hasSubLinks {
                f.rows_join = super::join_totals::read(q, &outputs);
            }
            if f.rows_join.is_none() {
                f.rows_graph = super::slices::read(q, &outputs);
            }
        }
        // The WHERE clause of a query over one table, as SQL over alias `b`.
        if let [(1, relid, _)] = f.relations.as_slice() {
            // (pull_varattnos does not descend into subqueries, which are
            // refused anyway.)
            if is_relation(1)
                && only_table
                && !top.hasSubLinks
                && !top.jointree.is_null()
                && !(*top.jointree).quals.is_null()
            {
                let quals = (*top.jointree).quals;
                let alias = c"b";
                let context = pg_sys::deparse_context_for(alias.as_ptr(), *relid);
                f.where_sql = crate::hooks::cstr(pg_sys::deparse_expression(quals, context, true, false));
                f.where_attnums = attnums_of(quals, 1);
            }
        }
        f.output_sql = output_sql;
        if distinct_as_group && (expression_groups || f.join_totals.is_some()) {
            f.has_group = true;
            f.has_distinct = false;
        } else if distinct_as_group {
            group_refs.clear();
        }
        f.group_refs = group_refs;
        let (mut equalities, strict, nullable) = levels.equalities_and_nullable();
        equalities.extend(sub_edges);
        f.equalities = equalities;
        f.strict_equalities = strict;
        f.nullable = nullable;
        Ok(f)
    }
}

/// The attribute numbers of range table entry `varno`'s columns that
/// `node` reads (0 for a whole-row reference, negative for system
/// columns). pull_varattnos does not descend into sublinks: callers skip
/// queries that have them.
pub(crate) unsafe fn attnums_of(node: *mut pg_sys::Node, varno: u32) -> Vec<i16> {
    // SAFETY: node is an expression of the analyzed query; the bitmapset
    // is read with bms_next_member until it reports the end.
    unsafe {
        let mut attnos: *mut pg_sys::Bitmapset = std::ptr::null_mut();
        pg_sys::pull_varattnos(node, varno, &mut attnos);
        let mut out = Vec::new();
        let mut member = -1;
        loop {
            member = pg_sys::bms_next_member(attnos, member);
            if member < 0 {
                return out;
            }
            out.push((member + pg_sys::FirstLowInvalidHeapAttributeNumber) as i16);
        }
    }
}

fn default_collation(collation: pg_sys::Oid) -> bool {
    collation == pg_sys::InvalidOid || collation == pg_sys::DEFAULT_COLLATION_OID
}

/// What an aggregate's argument is read over.
#[derive(Clone, Copy)]
enum Over {
    /// The query's one table (range table entry 1): the argument is
    /// deparsed over alias `b`.
    Table(pg_sys::Oid),
    /// An inner join: the argument is column [`join_argument`]`(output,
    /// part)` of the join's rows (see join_totals).
    Join(i16, usize),
}

/// The column of a join's rows holding the argument of the aggregate of
/// select list item `output` (`part` 0), or of its `part`-th aggregate when
/// the item is an expression over aggregates.
pub fn join_argument(output: i16, part: usize) -> String {
    if part == 0 {
        format!("__x{output}")
    } else {
        format!("__x{output}_{part}")
    }
}

/// Whether an expression holds a subquery.
unsafe fn contains_sublink(expr: *mut pg_sys::Node) -> bool {
    // SAFETY: expr is an expression of the analyzed query.
    unsafe {
        let mut found = false;
        crate::hooks::nodes::walk(expr, |n| {
            found |= (*n).type_ == pg_sys::NodeTag::T_SubLink;
            !found
        });
        found
    }
}

/// An expression over aggregates, select list item `output` (HAVING as
/// output 0), read by [`derived_output`] over the query's one table
/// (`single`), or over a join's rows when `over_rows`: then each of its
/// aggregates' arguments becomes a column of those rows, added to
/// `join_outputs`. None for anything else.
unsafe fn derived_call(
    expr: *mut pg_sys::Node,
    output: i16,
    single: Option<pg_sys::Oid>,
    over_rows: bool,
    join_outputs: &mut Vec<super::join_totals::Output>,
) -> Option<DerivedCall> {
    // SAFETY: expr is an expression of the analyzed query, as
    // derived_output requires.
    unsafe {
        let (sql, parts) = match single {
            _ if over_rows => derived_output(expr, |part| Over::Join(output, part))?,
            Some(relid) => derived_output(expr, |_| Over::Table(relid))?,
            None => return None,
        };
        if over_rows {
            for (i, &(_, arg)) in parts.iter().enumerate() {
                if !arg.is_null() {
                    join_outputs.push(super::join_totals::Output {
                        name: super::join_totals::Output::argument(output, i + 1),
                        grouped: false,
                        expr: arg,
                    });
                }
            }
        }
        Some((sql, parts.into_iter().map(|(call, _)| call).collect()))
    }
}

/// Aggregates of an expression over aggregates are written `$<PART_BASE +
/// k>` in its SQL (k = 0, 1, … in order), to be replaced by their values.
pub const PART_BASE: i32 = 30000;

/// An output that is an expression over aggregates, every one of which
/// running totals can keep (`100.00 * sum(a) / sum(b)`, `sum(v) / count(*)`):
/// its SQL with the aggregates as `$<PART_BASE + k>` placeholders, and per
/// aggregate its call, its type and its argument expression (null for
/// count(*)). None for anything else: a plain aggregate, an expression
/// that reads a column outside an aggregate, calls a non-immutable
/// function, or whose SQL shows a placeholder's text other than where it
/// stands (inside a string constant, say).
unsafe fn derived_output(
    expr: *mut pg_sys::Node,
    over: impl Fn(usize) -> Over,
) -> Option<(String, Vec<DerivedPart>)> {
    // SAFETY: expr is a select list expression of the analyzed query; the
    // mutator copies what it changes, the original is left as it is, and
    // a new Param is palloc'd and filled in for each aggregate.
    unsafe {
        // (contain_agg_clause expects no subquery.)
        if expr.is_null()
            || (*expr).type_ == pg_sys::NodeTag::T_Aggref
            || contains_sublink(expr)
            || !pg_sys::contain_agg_clause(expr)
            || pg_sys::contain_mutable_functions(expr)
        {
            return None;
        }
        // Each aggregate call becomes a placeholder parameter of its type;
        // a column (or anything else read) outside an aggregate refuses.
        let mut aggrefs: Vec<*mut pg_sys::Node> = Vec::new();
        let mut outside = false;
        let replaced = crate::hooks::mutate(expr, |node| match (*node).type_ {
            pg_sys::NodeTag::T_Aggref => {
                let agg = &*(node as *mut pg_sys::Aggref);
                let param = pg_sys::palloc0(std::mem::size_of::<pg_sys::Param>()) as *mut pg_sys::Param;
                (*param).xpr.type_ = pg_sys::NodeTag::T_Param;
                (*param).paramkind = pg_sys::ParamKind::PARAM_EXTERN;
                (*param).paramid = PART_BASE + aggrefs.len() as i32;
                (*param).paramtype = agg.aggtype;
                (*param).paramtypmod = -1;
                (*param).paramcollid = agg.aggcollid;
                (*param).location = -1;
                aggrefs.push(node);
                Some(param as *mut pg_sys::Node)
            }
            pg_sys::NodeTag::T_Var
            | pg_sys::NodeTag::T_PlaceHolderVar
            | pg_sys::NodeTag::T_GroupingFunc
            | pg_sys::NodeTag::T_WindowFunc
            | pg_sys::NodeTag::T_SubLink
            | pg_sys::NodeTag::T_Param => {
                outside = true;
                Some(node)
            }
            _ => None,
        });
        if outside || aggrefs.is_empty() {
            return None;
        }
        let sql =
            crate::hooks::cstr(pg_sys::deparse_expression(replaced, std::ptr::null_mut(), false, false))?;
        let counts = placeholder_counts(&sql);
        if (0..aggrefs.len()).any(|k| counts.get(&(PART_BASE + k as i32)) != Some(&1))
            || counts.len() != aggrefs.len()
        {
            return None;
        }
        let mut out = Vec::new();
        for (k, &aggref) in aggrefs.iter().enumerate() {
            let call = algebraic_aggregate(aggref, over(k + 1))?;
            let ty = (*(aggref as *mut pg_sys::Aggref)).aggtype;
            let sql_type = crate::hooks::cstr(pg_sys::format_type_with_typemod(ty, -1))?;
            out.push(((call, sql_type), aggregate_argument(aggref).unwrap_or(std::ptr::null_mut())));
        }
        Some((format!("({sql})"), out))
    }
}

/// The `$<n>` (a whole number) of `sql`: (byte range, n).
fn placeholders(sql: &str) -> Vec<(std::ops::Range<usize>, i32)> {
    let bytes = sql.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' {
            let mut end = i + 1;
            while end < bytes.len() && bytes[end].is_ascii_digit() {
                end += 1;
            }
            if let Ok(n) = sql[i + 1..end].parse::<i32>() {
                out.push((i..end, n));
            }
            i = end.max(i + 1);
        } else {
            i += 1;
        }
    }
    out
}

/// How often each `$<n>` appears in `sql`.
pub(crate) fn placeholder_counts(sql: &str) -> std::collections::HashMap<i32, usize> {
    let mut counts = std::collections::HashMap::new();
    for (_, n) in placeholders(sql) {
        *counts.entry(n).or_insert(0) += 1;
    }
    counts
}

/// Replace each `$<n>` of `sql` whose n is a key of `values` by its value.
pub fn replace_placeholders(sql: &str, values: &std::collections::HashMap<i32, String>) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut copied = 0;
    for (range, n) in placeholders(sql) {
        if let Some(value) = values.get(&n) {
            out.push_str(&sql[copied..range.start]);
            out.push_str(value);
            copied = range.end;
        }
    }
    out.push_str(&sql[copied..]);
    out
}

/// The one argument of an aggregate call of the select list (None for
/// anything else, and for count(*)).
unsafe fn aggregate_argument(node: *mut pg_sys::Node) -> Option<*mut pg_sys::Node> {
    // SAFETY: the node is a target list expression, read by its tag.
    unsafe {
        if node.is_null() || (*node).type_ != pg_sys::NodeTag::T_Aggref {
            return None;
        }
        let args = list_ptrs::<pg_sys::TargetEntry>((*(node as *mut pg_sys::Aggref)).args);
        match args.as_slice() {
            [arg] => Some((**arg).expr as *mut pg_sys::Node),
            _ => None,
        }
    }
}

/// Whether `expr` (of query `q`'s select list) is a column declared NOT
/// NULL of one of its tables, which no outer join nulls.
unsafe fn never_null(q: &pg_sys::Query, expr: *mut pg_sys::Node) -> bool {
    // SAFETY: `expr` is an expression of the analyzed query `q`, read by
    // its tag; a Var's range table index refers to `q`'s range table.
    unsafe {
        if expr.is_null() || (*expr).type_ != pg_sys::NodeTag::T_Var {
            return false;
        }
        let var = &*(expr as *mut pg_sys::Var);
        if var.varlevelsup != 0 || !var.varnullingrels.is_null() || var.varattno <= 0 {
            return false;
        }
        let rtes = list_ptrs::<pg_sys::RangeTblEntry>(q.rtable);
        let Some(rte) =
            usize::try_from(var.varno).ok().and_then(|i| i.checked_sub(1)).and_then(|i| rtes.get(i))
        else {
            return false;
        };
        (**rte).rtekind == pg_sys::RTEKind::RTE_RELATION && column_not_null((**rte).relid, var.varattno)
    }
}

/// count(*), and count/sum/avg/min/max of an expression over the columns
/// of the query's tables, as PostgreSQL's own aggregates with no DISTINCT,
/// ORDER BY or FILTER; sum and avg only of integer or numeric values,
/// which are summed exactly. The aggregate's argument number is left 0
/// (see running_totals).
unsafe fn algebraic_aggregate(node: *mut pg_sys::Node, over: Over) -> Option<AggCall> {
    // SAFETY: the node is a target list expression of an analyzed query;
    // it is read according to its tag.
    unsafe {
        if node.is_null() || (*node).type_ != pg_sys::NodeTag::T_Aggref {
            return None;
        }
        let agg = &*(node as *mut pg_sys::Aggref);
        if !agg.aggfilter.is_null()
            || !agg.aggdistinct.is_null()
            || !agg.aggorder.is_null()
            || agg.agglevelsup != 0
            || agg.aggkind != b'n' as std::ffi::c_char
            || pg_sys::get_func_namespace(agg.aggfnoid) != pg_sys::Oid::from(pg_sys::PG_CATALOG_NAMESPACE)
        {
            return None;
        }
        let name = crate::hooks::cstr(pg_sys::get_func_name(agg.aggfnoid))?;
        if agg.aggstar {
            return (name == "count").then_some((AggKind::CountStar, None));
        }
        let args = list_ptrs::<pg_sys::TargetEntry>(agg.args);
        let [arg] = args.as_slice() else { return None };
        let expr = (**arg).expr as *mut pg_sys::Node;
        // Only columns of the table, through immutable functions: the
        // totals are computed once per change row, and must not change
        // later by themselves.
        if expr.is_null()
            || contains_sublink(expr)
            || pg_sys::contain_mutable_functions(expr)
            || pg_sys::contain_agg_clause(expr)
        {
            return None;
        }
        let attnums = match over {
            Over::Table(_) => attnums_of(expr, 1),
            Over::Join(..) => Vec::new(), // (join_totals reads them)
        };
        if attnums.iter().any(|a| *a <= 0) {
            return None; // a system column or the whole row
        }
        let ty = pg_sys::exprType(expr);
        // Sums of integers and numerics are exact. (A running sum keeps the
        // largest scale of the values it ever saw, so after deleting
        // `2.25` it shows `1.50` where the query shows `1.5`: equal
        // numbers.) An average divides to a scale that follows the sum's,
        // so it needs values that all have the same scale.
        let exact = [pg_sys::INT2OID, pg_sys::INT4OID, pg_sys::INT8OID, pg_sys::NUMERICOID].contains(&ty);
        let fixed = fixed_scale(expr);
        let kind = match name.as_str() {
            "count" => AggKind::Count(0),
            "sum" if exact => AggKind::Sum(0),
            "avg" if fixed => AggKind::Avg(0),
            // Kept extremes compare with the database's default collation:
            // a value (or aggregate) with another collation is recomputed.
            "min" | "max"
                if !default_collation(pg_sys::exprCollation(expr)) || !default_collation(agg.inputcollid) =>
            {
                return None
            }
            "min" => AggKind::Min(0),
            "max" => AggKind::Max(0),
            _ => return None,
        };
        let sql_type = crate::hooks::cstr(pg_sys::format_type_with_typemod(ty, pg_sys::exprTypmod(expr)))?;
        let relid = match over {
            Over::Table(relid) => relid,
            Over::Join(output, part) => {
                let sql = format!("b.{}", join_argument(output, part));
                return Some((kind, Some(AggArg { sql, attnums, sql_type, not_null: false })));
            }
        };
        let alias = c"b";
        let context = pg_sys::deparse_context_for(alias.as_ptr(), relid);
        let sql = crate::hooks::cstr(pg_sys::deparse_expression(expr, context, true, false))?;
        Some((kind, Some(AggArg { sql: format!("({sql})"), attnums, sql_type, not_null: false })))
    }
}

/// Are window functions all the query does besides filtering and
/// projecting its FROM: no aggregates, GROUP BY, DISTINCT, HAVING, LIMIT,
/// subqueries in expressions or set-returning functions?
fn windows_alone(top: &pg_sys::Query) -> bool {
    !(top.hasAggs
        || !top.groupClause.is_null()
        || !top.distinctClause.is_null()
        || !top.havingQual.is_null()
        || !top.groupingSets.is_null()
        || !top.limitCount.is_null()
        || !top.limitOffset.is_null()
        || top.hasSubLinks
        || top.hasTargetSRFs
        || !top.rowMarks.is_null())
}

/// The plain columns (range table index, attnum) by which every window of
/// `top` is partitioned ([`windows_alone`] being true): its window
/// functions can then be recomputed partition by partition. A change of a
/// row changes only the partitions of its old and new values, whose rows
/// are recomputed (the query filtered by their values, which PostgreSQL
/// pushes below the windows, as it does any condition on columns every
/// window is partitioned by). None when the windows have no such column
/// in common.
///
/// # Safety
/// `top` is an analyzed query.
unsafe fn window_partition(top: &pg_sys::Query) -> Option<Vec<(u32, i16)>> {
    // SAFETY: the window clauses and their SortGroupClauses are read by
    // the query's own lists; get_sortgroupref_tle finds the target entry
    // (erroring if there is none, which an analyzed query does not allow).
    unsafe {
        let mut common: Option<Vec<(u32, i16)>> = None;
        for clause in list_ptrs::<pg_sys::WindowClause>(top.windowClause) {
            let mut columns = Vec::new();
            for sgc in list_ptrs::<pg_sys::SortGroupClause>((*clause).partitionClause) {
                let tle = pg_sys::get_sortgroupref_tle((*sgc).tleSortGroupRef, top.targetList);
                let expr = (*tle).expr as *mut pg_sys::Node;
                if !expr.is_null() && (*expr).type_ == pg_sys::NodeTag::T_Var {
                    let var = &*(expr as *mut pg_sys::Var);
                    if var.varlevelsup == 0 && var.varattno > 0 {
                        columns.push((var.varno as u32, var.varattno));
                    }
                }
            }
            common = Some(match common {
                None => columns,
                Some(before) => before.into_iter().filter(|c| columns.contains(c)).collect(),
            });
        }
        common.filter(|c| !c.is_empty())
    }
}

/// Is `expr` an integer, or a numeric whose every value has the same
/// display scale? Averages of running sums of such values divide exactly
/// as PostgreSQL's avg does; a sum kept across deleted values of other
/// scales would not (avg's division scale follows the sum's).
unsafe fn fixed_scale(expr: *mut pg_sys::Node) -> bool {
    // SAFETY: expr is an expression node of the analyzed query, read by tag.
    unsafe {
        if expr.is_null() {
            return false;
        }
        let ty = pg_sys::exprType(expr);
        if [pg_sys::INT2OID, pg_sys::INT4OID, pg_sys::INT8OID].contains(&ty) {
            return true;
        }
        if ty != pg_sys::NUMERICOID {
            return false;
        }
        match (*expr).type_ {
            // A column of numeric(p, s), or a numeric constant.
            pg_sys::NodeTag::T_Var => pg_sys::exprTypmod(expr) >= 0,
            pg_sys::NodeTag::T_Const => true,
            pg_sys::NodeTag::T_RelabelType => {
                fixed_scale((*(expr as *mut pg_sys::RelabelType)).arg as *mut pg_sys::Node)
            }
            // A cast to numeric(p, s), or from an integer.
            pg_sys::NodeTag::T_FuncExpr => {
                let f = &*(expr as *mut pg_sys::FuncExpr);
                let args = list_ptrs::<pg_sys::Node>(f.args);
                f.funcformat != pg_sys::CoercionForm::COERCE_EXPLICIT_CALL
                    && (pg_sys::exprTypmod(expr) >= 0 || args.first().is_some_and(|a| fixed_scale(*a)))
            }
            // +, - and * of fixed scales: the scale is the larger one, or
            // the sum of both.
            pg_sys::NodeTag::T_OpExpr => {
                let op = &*(expr as *mut pg_sys::OpExpr);
                let name = crate::hooks::cstr(pg_sys::get_opname(op.opno));
                matches!(name.as_deref(), Some("+" | "-" | "*"))
                    && list_ptrs::<pg_sys::Node>(op.args).into_iter().all(|a| fixed_scale(a))
            }
            _ => false,
        }
    }
}

/// Primary key columns of a table (empty if it has none); for a stream
/// table, the columns of its key index, its row identity.
fn primary_key(source: pg_sys::Oid) -> PgtResult<Vec<i16>> {
    Ok(crate::catalog::sys::kept_one::<Vec<i16>>(
        "SELECT COALESCE( \
            (SELECT conkey FROM pg_catalog.pg_constraint \
              WHERE conrelid OPERATOR(pg_catalog.=) $1 AND contype OPERATOR(pg_catalog.=) 'p'), \
            (SELECT NULLIF(pg_catalog.array_remove(i.indkey::pg_catalog.int2[], 0::pg_catalog.int2), '{}') FROM pg_catalog.pg_index i \
               JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) i.indexrelid \
              WHERE i.indrelid OPERATOR(pg_catalog.=) $1 AND i.indisunique \
                AND c.relname OPERATOR(pg_catalog.=) ('__pgt_key_' OPERATOR(pg_catalog.||) $1::pg_catalog.text)))",
        &[source.into()],
    )?
    .unwrap_or_default())
}

/// The mode of `relid` if it is a stream table (`refresh_mode` as stored:
/// the effective mode).
fn stream_table_mode(relid: pg_sys::Oid) -> PgtResult<Option<String>> {
    crate::catalog::sys::kept_one::<String>(
        "SELECT (SELECT refresh_mode::pg_catalog.text FROM pgtrickle.pgt_stream_tables \
                  WHERE relid OPERATOR(pg_catalog.=) $1)",
        &[relid.into()],
    )
}

/// The analysis for a requested mode. A stream table read by another is
/// a source like a table when its changes reach the reader the way the
/// reader is maintained: a DIFFERENTIAL one's refreshes write what they
/// change into a change buffer (for DIFFERENTIAL readers); an IMMEDIATE
/// one's maintenance hands what it changes to its IMMEDIATE readers within
/// the statement, and writes it into its change buffer for the others.
pub fn analyze_for(relid: pg_sys::Oid, immediate: bool) -> PgtResult<Analysis> {
    analyze_as(relid, immediate)
}

/// Does the stored query call stable functions (whose results can change
/// without any change to the tables, e.g. now())?
pub fn calls_stable_functions(relid: pg_sys::Oid) -> PgtResult<bool> {
    Ok(query_facts(relid)?.stable)
}

/// Does the stored query give the same rows as long as the tables it reads
/// do not change (it calls no volatile or stable function)?
pub fn is_deterministic(relid: pg_sys::Oid) -> PgtResult<bool> {
    // SAFETY: contain_mutable_functions only reads the copy it is given
    // (it walks into sublinks and subqueries).
    let mutable = unsafe {
        with_query_copy(relid, false, |q| Some(pg_sys::contain_mutable_functions(q as *mut pg_sys::Node)))
    };
    Ok(mutable == Some(false))
}

/// Decide how `relid` (a materialized view) can be maintained, in the
/// mode it has.
pub fn analyze(relid: pg_sys::Oid) -> PgtResult<Result<Plan, Unsupported>> {
    analyze_as(relid, stream_table_mode(relid)?.as_deref() == Some("immediate"))
}

/// Decide how `relid` can be maintained, IMMEDIATE or not.
fn analyze_as(relid: pg_sys::Oid, immediate: bool) -> PgtResult<Result<Plan, Unsupported>> {
    let mut f = query_facts(relid)?;
    // Stream tables whose changes reach this one are read like tables (see
    // analyze_for).
    let mut upstream = Vec::new();
    let mut other_mode = None;
    let levels = std::iter::once(&mut f.relations).chain(std::iter::once(&mut f.sub_relations));
    for facts in levels.chain(f.branches.iter_mut().map(|b| &mut b.relations)) {
        for (_, source, kind) in facts.iter_mut() {
            if *kind != pg_sys::RELKIND_MATVIEW {
                continue;
            }
            match (stream_table_mode(*source)?.as_deref(), immediate) {
                (Some("differential"), false) | (Some("immediate"), _) => {
                    *kind = pg_sys::RELKIND_RELATION;
                    upstream.push(*source);
                }
                (Some("differential"), true) => other_mode = Some(*source),
                _ => {}
            }
        }
    }
    if let Some(source) = other_mode {
        let name = crate::catalog::lifecycle::relation_name(source)?;
        return Ok(unsupported(format!(
            "it reads the DIFFERENTIAL stream table {name}, whose changes arrive with its refreshes, not with the statements that write its sources (make {name} IMMEDIATE too)"
        )));
    }
    let mut plan = match decide(&f, primary_key)? {
        Ok(plan) => plan,
        Err(why) => return Ok(Err(why)),
    };
    // Running totals and changed rows' images are computed from the change
    // rows alone, which capture takes without row level security, and a
    // refresh reads them from the change buffers in place, as the owner
    // (whose expressions the statements evaluate). When the owner may not
    // read the buffers (DIFFERENTIAL, an owner other than a superuser or
    // the extension's owner), or row level security applies to the owner
    // on a source, the query is maintained by recomputing affected keys
    // from the tables instead (as the owner, policies applied).
    if plan.algebraic.is_some()
        || plan.rows.is_some()
        || plan.multiset.is_some()
        || !plan.key_exprs.is_empty()
    {
        let (reads_buffers, row_security) = owner_reads(relid, &plan.sources())?;
        if row_security || (!immediate && !reads_buffers) {
            f.no_totals = true;
            f.join_totals = None;
            f.output_sql = None;
            plan = match decide(&f, primary_key)? {
                Ok(plan) => plan,
                Err(why) => {
                    return Ok(unsupported(format!(
                        "{} (changes are read from the change buffer, which {})",
                        why.0,
                        if row_security {
                            "holds the rows row level security hides from its owner"
                        } else {
                            "only a superuser owner may read"
                        }
                    )))
                }
            };
        }
    }
    // Statement triggers fire only on the table a statement names: a
    // partitioned source gets them on every partition too (cdc::triggers),
    // but a partition read by itself would miss the statements naming its
    // parent, and inheritance trees mix both ways.
    for source in plan.sources() {
        let why = crate::catalog::sys::kept_one::<String>(
            "SELECT CASE WHEN c.relispartition \
                           THEN 'a table it reads is a partition (read its partitioned table instead)' \
                         WHEN c.relkind OPERATOR(pg_catalog.=) 'p' AND EXISTS ( \
                              SELECT 1 FROM pg_catalog.pg_partition_tree(c.oid) t \
                                JOIN pg_catalog.pg_class k ON k.oid OPERATOR(pg_catalog.=) t.relid \
                               WHERE k.relkind OPERATOR(pg_catalog.<>) ALL ('{r,p}'::\"char\"[])) \
                           THEN 'a partitioned table it reads has a partition that is not a table (a foreign table), whose changes cannot be captured' \
                         WHEN c.relkind OPERATOR(pg_catalog.<>) 'p' AND (c.relhassubclass OR EXISTS ( \
                              SELECT 1 FROM pg_catalog.pg_inherits i WHERE i.inhrelid OPERATOR(pg_catalog.=) c.oid)) \
                           THEN 'a table it reads is part of an inheritance tree, whose changes are not all captured' END \
               FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) $1",
            &[source.into()],
        )?;
        if let Some(why) = why {
            return Ok(unsupported(why));
        }
    }
    plan.reads_stream_tables = !upstream.is_empty();
    // Capture puts triggers on the sources: the owner must be allowed to.
    for source in plan.sources().into_iter().filter(|s| !upstream.contains(s)) {
        let may_trigger = crate::catalog::sys::kept_one::<bool>(
            "SELECT pg_catalog.has_table_privilege( \
                    (SELECT relowner FROM pg_catalog.pg_class WHERE oid OPERATOR(pg_catalog.=) $1), $2, 'TRIGGER')",
            &[relid.into(), source.into()],
        )?
        .unwrap_or(false);
        if !may_trigger {
            return Ok(unsupported(
                "its owner lacks the TRIGGER privilege on a table it reads, which change capture needs",
            ));
        }
    }
    Ok(Ok(plan))
}

/// Whether the owner of `relid` may read the change buffers (a superuser,
/// or the extension's owner), and whether row level security applies to it
/// on one of `sources`.
fn owner_reads(relid: pg_sys::Oid, sources: &[pg_sys::Oid]) -> PgtResult<(bool, bool)> {
    let owner = crate::catalog::sys::relation_owner(relid)?;
    let reads = crate::catalog::sys::kept_one::<bool>(
        "SELECT r.rolsuper OR r.oid OPERATOR(pg_catalog.=) e.extowner \
           FROM pg_catalog.pg_roles r, pg_catalog.pg_extension e \
          WHERE r.oid OPERATOR(pg_catalog.=) $1 AND e.extname OPERATOR(pg_catalog.=) 'pg_trickle'",
        &[owner.into()],
    )?
    .unwrap_or(false);
    let mut row_security = false;
    for &source in sources {
        row_security |= !super::inserted::reads_like_the_table(owner, source)?;
    }
    Ok((reads, row_security))
}

/// Running totals, when the query reads one table (or a join's rows),
/// every output other than the GROUP BY columns is an aggregate they can
/// keep, and HAVING, if any, reads only such aggregates (see totals_parts).
fn running_totals(f: &QueryFacts) -> Option<Algebraic> {
    // (A subquery in WHERE makes the filter of a row depend on other rows.)
    if !f.sub_relations.is_empty() || f.no_totals {
        return None;
    }
    let one_table = f.relations.len() == 1 && f.relations.first().is_some_and(|(rte, _, _)| *rte == 1);
    // (One table read as a join of one: grouped by expressions.)
    let join = if one_table && f.join_totals.is_none() { None } else { Some(f.join_totals.clone()?) };
    let TotalsParts { aggregates, arguments, derived, having } = totals_parts(f)?;
    // (A join's rows pass its WHERE clause already.)
    let (where_sql, where_attnums) =
        if join.is_some() { (None, Vec::new()) } else { (f.where_sql.clone(), f.where_attnums.clone()) };
    Some(Algebraic { aggregates, arguments, where_sql, where_attnums, join, slices: None, derived, having })
}

/// The aggregates running totals keep, when every output other than the
/// GROUP BY columns is one they can keep (or an expression over such), and
/// HAVING, if any, is an expression over such of a grouped query: the
/// outputs' aggregates, their arguments (each once), the expressions and
/// the HAVING condition.
struct TotalsParts {
    aggregates: Vec<(i16, AggKind)>,
    arguments: Vec<AggArg>,
    derived: Vec<Derived>,
    having: Option<Derived>,
}

fn totals_parts(f: &QueryFacts) -> Option<TotalsParts> {
    let others: Vec<(i16, &Option<AggCall>, Option<&DerivedCall>)> = f
        .outputs
        .iter()
        .enumerate()
        .filter(|(_, (_, sgref))| !(*sgref != 0 && f.group_refs.contains(sgref)))
        .map(|(i, _)| {
            (i as i16 + 1, f.aggregates.get(i).unwrap_or(&None), f.derived.get(i).and_then(|d| d.as_ref()))
        })
        .collect();
    // (Without GROUP BY, HAVING decides whether the one row is there at
    // all: recomputed.)
    if (f.has_having && (f.having.is_none() || !f.has_group))
        || others.iter().any(|(_, agg, derived)| agg.is_none() && derived.is_none())
    {
        return None;
    }
    let mut arguments: Vec<AggArg> = Vec::new();
    let mut number = |(kind, arg): &AggCall| -> AggKind {
        let n = match arg {
            None => 0,
            Some(arg) => match arguments.iter().position(|a| a.sql == arg.sql) {
                Some(i) => i as i16 + 1,
                None => {
                    arguments.push(arg.clone());
                    arguments.len() as i16
                }
            },
        };
        kind.numbered(n)
    };
    let mut aggregates = Vec::new();
    let mut derived = Vec::new();
    for (output, agg, expr) in others {
        match (agg, expr) {
            (Some(call), _) => aggregates.push((output, number(call))),
            (None, Some((sql, parts))) => derived.push(Derived {
                output,
                sql: sql.clone(),
                parts: parts.iter().map(|(call, ty)| (number(call), ty.clone())).collect(),
            }),
            (None, None) => return None,
        }
    }
    let having = f.having.as_ref().map(|(sql, parts)| Derived {
        output: 0,
        sql: sql.clone(),
        parts: parts.iter().map(|(call, ty)| (number(call), ty.clone())).collect(),
    });
    Some(TotalsParts { aggregates, arguments, derived, having })
}

/// The slices of a query read as `graph` (see slices::chain): its
/// references, chained or not, with their tables' primary keys (of
/// built-in types, else none), and the tables it reads whole (see
/// slices::read_whole). None when no reference may be the root, or when
/// every change would recompute the whole query.
fn slices_of(
    graph: &super::slices::Graph,
    primary_key: impl Fn(pg_sys::Oid) -> PgtResult<Vec<i16>> + Copy,
) -> PgtResult<Option<(super::slices::SliceTotals, Vec<pg_sys::Oid>)>> {
    let mut keys: std::collections::HashMap<pg_sys::Oid, Vec<i16>> = Default::default();
    for r in &graph.refs {
        if let std::collections::hash_map::Entry::Vacant(slot) = keys.entry(r.relid) {
            // (Compared with pg_catalog's `=`: built-in types only.)
            let key = primary_key(r.relid)?;
            let built_in = key.iter().all(|a| r.built_in.contains(a));
            slot.insert(if built_in { key } else { Vec::new() });
        }
    }
    let key_of = |relid: pg_sys::Oid| keys.get(&relid).cloned().unwrap_or_default();
    // (A root by a grouping column that may be NULL, NULL a slice too,
    // only when no other will do.)
    let (root, chained, nullable_root) = match super::slices::chain(graph, &key_of) {
        Some((root, chained)) => (root, chained, false),
        None => match super::slices::chain_by_nullable_group(graph) {
            Some((root, chained)) => (root, chained, true),
            None => return Ok(None),
        },
    };
    let root_filter = graph.refs.iter().find(|r| r.id == root).and_then(|r| r.own_filter.clone());
    let refs: Vec<super::slices::SliceRef> = graph
        .refs
        .iter()
        .map(|r| super::slices::SliceRef {
            id: r.id,
            relid: r.relid,
            chain: chained.get(&r.id).copied(),
            attnums: r.attnums.clone(),
            pk: keys.get(&r.relid).cloned().unwrap_or_default(),
            semi: r.semi,
            relevant: None,
            // (Correlated by the column that chains it.)
            exists_own: r
                .exists_by
                .as_ref()
                .filter(|(column, _)| chained.get(&r.id) == Some(column))
                .map(|(_, own)| own.clone()),
        })
        .collect();
    let mut st = super::slices::SliceTotals {
        select_sql: graph.select_sql.clone(),
        refs,
        root,
        root_filter,
        nullable_root,
    };
    let full_on = super::slices::read_whole(&st);
    if st.refs.iter().all(|r| full_on.contains(&r.relid)) {
        return Ok(None); // every change would recompute the whole query
    }
    // (The conditions that read tables hold while they do not change:
    // those read whole, whose change recomputes the query. A table read
    // whole has no changes to filter.)
    for (r, g) in st.refs.iter_mut().zip(&graph.refs) {
        if full_on.contains(&r.relid) {
            continue;
        }
        let holding: Vec<&str> = g
            .conditions
            .iter()
            .filter(|c| c.reads.iter().all(|t| full_on.contains(t)))
            .map(|c| c.sql.as_str())
            .collect();
        r.relevant = (!holding.is_empty()).then(|| holding.join(" AND "));
    }
    Ok(Some((st, full_on)))
}

/// A filter and projection that no keyed shape maintains (a table's
/// primary key is not in the select list, or a table has none), as a
/// multiset (see [`Multiset`]): the rows of an inner join of tables, or of
/// slices. None when the query is neither.
fn multiset_plan(
    f: &QueryFacts,
    primary_key: impl Fn(pg_sys::Oid) -> PgtResult<Vec<i16>> + Copy,
) -> PgtResult<Option<Plan>> {
    if f.no_totals || f.volatile || !f.branches.is_empty() || (f.limited && f.topk.is_none()) {
        return Ok(None);
    }
    let (multiset, tables, full_on) = match (&f.rows_join, &f.rows_graph) {
        (Some(jt), _) => {
            let tables = jt.tables.iter().map(|(index, relid, _)| (*index, *relid)).collect();
            (Multiset { join: Some(jt.clone()), slices: None, union: Vec::new() }, tables, Vec::new())
        }
        (None, Some(graph)) => match slices_of(graph, primary_key)? {
            Some((st, full_on)) => {
                let tables = st.refs.iter().map(|r| (r.id, r.relid)).collect();
                (Multiset { join: None, slices: Some(st), union: Vec::new() }, tables, full_on)
            }
            None => return Ok(None),
        },
        (None, None) => return Ok(None),
    };
    Ok(Some(Plan {
        join: Some(JoinGraph { tables, edges: Vec::new() }),
        full_on,
        multiset: Some(multiset),
        ..Plan::of(Shape::Multiset, Vec::new())
    }))
}

/// Running totals over slices (see dvm::slices), when the query reads
/// them and some changed table can be followed into them; and the tables
/// it reads whole that are dimensions of the slices (see
/// slices::dimensions).
fn slice_plan(
    f: &QueryFacts,
    primary_key: impl Fn(pg_sys::Oid) -> PgtResult<Vec<i16>> + Copy,
) -> PgtResult<Option<(Plan, Vec<pg_sys::Oid>)>> {
    let Some(graph) = &f.slice_graph else { return Ok(None) };
    // (A LIMIT that is not ORDER BY ... LIMIT n is refused elsewhere.)
    if f.no_totals || f.volatile || !f.branches.is_empty() || (f.limited && f.topk.is_none()) {
        return Ok(None);
    }
    let Some(TotalsParts { aggregates, arguments, derived, having }) = totals_parts(f) else {
        return Ok(None);
    };
    let Some((st, full_on)) = slices_of(graph, primary_key)? else { return Ok(None) };
    let dimensions = super::slices::dimensions(graph, &st);
    let key = f
        .outputs
        .iter()
        .enumerate()
        .filter(|(_, (_, sgref))| *sgref != 0 && f.group_refs.contains(sgref))
        .map(|(i, _)| KeyColumn {
            output_attnum: i as i16 + 1,
            rte: 0,
            source: pg_sys::InvalidOid,
            source_attnum: 0,
        })
        .collect::<Vec<_>>();
    if key.len() != f.group_refs.len() {
        return Ok(None); // a GROUP BY item not in the select list
    }
    let plan = Plan {
        join: Some(JoinGraph {
            tables: st.refs.iter().map(|r| (r.id, r.relid)).collect(),
            edges: Vec::new(),
        }),
        algebraic: Some(Algebraic {
            aggregates,
            arguments,
            where_sql: None,
            where_attnums: Vec::new(),
            join: None,
            slices: Some(st),
            derived,
            having,
        }),
        full_on,
        ..Plan::of(if f.has_group { Shape::Groups } else { Shape::Scalar }, key)
    };
    // (Extremes over slices: a group whose extreme went would be read
    // again through the slices' rows, which rescan_sql does not read.)
    if plan.algebraic.as_ref().is_some_and(Algebraic::has_extremes) {
        return Ok(None);
    }
    Ok(Some((plan, dimensions)))
}

/// Whether running totals over slices (`sliced`) do better than `plan`,
/// which recomputes: the whole query (an aggregate without GROUP BY), or
/// whole groups that do not each lie within a slice (no grouping column
/// is a chained one). The tables `sliced` reads whole must be read whole
/// by `plan` too, or be `dimensions`: a change of one recomputes the
/// whole query, which a dimension table's rarely do.
fn slices_win(plan: &Plan, sliced: &Plan, dimensions: &[pg_sys::Oid]) -> bool {
    if plan.algebraic.is_some()
        || sliced.full_on.iter().any(|t| !plan.full_on.contains(t) && !dimensions.contains(t))
    {
        return false;
    }
    let Some(st) = sliced.algebraic.as_ref().and_then(|a| a.slices.as_ref()) else { return false };
    match plan.shape {
        Shape::Scalar => true,
        Shape::GroupsOverJoin { .. } => !plan
            .key
            .iter()
            .any(|k| st.refs.iter().any(|r| r.relid == k.source && r.chain == Some(k.source_attnum))),
        _ => false,
    }
}

/// Aggregates without GROUP BY: one row (none when HAVING rejects it),
/// which depends on every row of every table read.
fn scalar(f: &QueryFacts) -> Plan {
    Plan {
        join: Some(JoinGraph {
            tables: f
                .relations
                .iter()
                .chain(&f.sub_relations)
                .map(|(rte, relid, _)| (*rte, *relid))
                .collect(),
            edges: Vec::new(),
        }),
        algebraic: running_totals(f),
        ..Plan::of(Shape::Scalar, Vec::new())
    }
}

/// Window functions over one table, partitioned by `partition` (see
/// [`window_partition`]): recomputed per partition, keyed by those columns
/// as selected (each must be), the stream table a multiset.
fn window_plan(f: &QueryFacts, partition: &[(u32, i16)]) -> Result<Plan, Unsupported> {
    let refused = || {
        unsupported(
            "window functions are maintained incrementally only when every window is partitioned (PARTITION BY) \
             by columns of one table that the select list shows, and every other table of a join is connected to \
             that table by = conditions (and not on the nullable side of an outer join)",
        )
    };
    let Some(&(rte, _)) = partition.first() else { return refused() };
    let Some(&(_, relid, kind)) = f.relations.iter().find(|(r, _, _)| *r == rte) else { return refused() };
    if partition.iter().any(|(r, _)| *r != rte)
        || !f.sub_relations.is_empty()
        || (kind != pg_sys::RELKIND_RELATION && kind != pg_sys::RELKIND_PARTITIONED_TABLE)
    {
        return refused();
    }
    let mut key = Vec::new();
    for &(index, attnum) in partition {
        let Some(output) = f.outputs.iter().position(|(col, _)| *col == Some((index, attnum))) else {
            return refused();
        };
        key.push(KeyColumn { output_attnum: output as i16 + 1, rte, source: relid, source_attnum: attnum });
    }
    if f.relations.len() == 1 {
        return match f.inner_only {
            true => Ok(Plan::of(Shape::Window, key)),
            false => refused(),
        };
    }
    // Over a join: a change of another table reaches the partitions of the
    // rows of the partitioning table joined to its changed rows, old and
    // new, followed along the = conditions as for a grouped join.
    let join = JoinGraph {
        tables: f.relations.iter().map(|(r, relid, _)| (*r, *relid)).collect(),
        edges: f.equalities.clone(),
    };
    if f.nullable.contains(&rte) || f.relations.iter().any(|(r, _, _)| join.path(*r, rte).is_none()) {
        return refused();
    }
    Ok(Plan { join: Some(join), ..Plan::of(Shape::Window, key) })
}

/// UNION ALL: every branch a keyed shape; the key is all their keys.
fn union_all(
    f: &QueryFacts,
    primary_key: impl Fn(pg_sys::Oid) -> PgtResult<Vec<i16>> + Copy,
) -> PgtResult<Result<Plan, Unsupported>> {
    let mut key = Vec::new();
    let mut refused = None;
    for branch in &f.branches {
        match decide(branch, primary_key)? {
            Ok(plan) if matches!(plan.shape, Shape::Rows | Shape::Groups | Shape::Distinct) => {
                key.extend(plan.key)
            }
            Ok(_) => {
                refused = Some(
                    "UNION ALL is maintained incrementally only when every branch is a filter, projection or inner join \
                     of tables, or a GROUP BY or DISTINCT over one table"
                        .to_string(),
                );
                break;
            }
            Err(why) => {
                refused = Some(format!("in a branch of the UNION ALL, {}", why.0));
                break;
            }
        }
    }
    let Some(why) = refused else {
        return Ok(Ok(Plan::of(Shape::UnionAll, key)));
    };
    // Branches that each filter and project an inner join of tables (or
    // one table), keys selected or not: the union's signed rows are the
    // branches' signed rows together, the stream table a multiset.
    match &f.union_rows {
        Some(branches) if !f.no_totals && !f.volatile => {
            let mut tables = Vec::new();
            for (i, b) in branches.iter().enumerate() {
                // (Ids of different branches kept apart, as for the keyed union.)
                let base = (i as u32 + 1) * BRANCH_SPAN;
                tables.extend(b.tables.iter().map(|(index, relid, _)| (base + index, *relid)));
            }
            Ok(Ok(Plan {
                join: Some(JoinGraph { tables, edges: Vec::new() }),
                multiset: Some(Multiset { join: None, slices: None, union: branches.clone() }),
                ..Plan::of(Shape::Multiset, Vec::new())
            }))
        }
        _ => Ok(unsupported(why)),
    }
}

fn decide(
    f: &QueryFacts,
    primary_key: impl Fn(pg_sys::Oid) -> PgtResult<Vec<i16>> + Copy,
) -> PgtResult<Result<Plan, Unsupported>> {
    let decided = decide_shape(f, primary_key)?;
    let sliced = match &decided {
        Ok(plan)
            if plan.algebraic.is_some()
                || !matches!(plan.shape, Shape::Scalar | Shape::GroupsOverJoin { .. }) =>
        {
            None
        }
        _ => slice_plan(f, primary_key)?,
    };
    let mut plan = match (decided, sliced) {
        (Ok(plan), Some((sliced, dimensions))) if slices_win(&plan, &sliced, &dimensions) => sliced,
        (Err(_), Some((sliced, _))) => sliced,
        (Ok(plan), _) => plan,
        (Err(why), None) => match multiset_plan(f, primary_key)? {
            Some(plan) => plan,
            None => return Ok(Err(why)),
        },
    };
    if let Some(topk) = &f.topk {
        if (plan.key.is_empty() && !matches!(plan.shape, Shape::Keyless | Shape::Multiset))
            || plan.shape == Shape::UnionAll
        {
            return Ok(unsupported(
                "ORDER BY ... LIMIT is not maintained incrementally over an aggregate without GROUP BY \
                 or a UNION ALL",
            ));
        }
        plan.topk = Some(topk.clone());
    }
    plan.pushdown = f.aggregating_sublink && !plan.key.is_empty() && plan.algebraic.is_none();
    // A filter and projection of one table keyed by its primary key: each
    // row of the table gives at most one row, computed from it alone, so
    // a refresh computes the changed rows' images from the change buffer
    // (as for a table without a key) instead of reading the table again.
    if plan.shape == Shape::Rows && plan.topk.is_none() && f.sub_relations.is_empty() && f.inner_only {
        if let (Some(outputs), [_]) = (&f.output_sql, f.relations.as_slice()) {
            if !f.output_attnums.iter().chain(&f.where_attnums).any(|a| *a <= 0) {
                let mut attnums: Vec<i16> =
                    f.output_attnums.iter().chain(&f.where_attnums).copied().collect();
                attnums.sort_unstable();
                attnums.dedup();
                plan.rows =
                    Some(RowsDelta { outputs: outputs.clone(), where_sql: f.where_sql.clone(), attnums });
            }
        }
    }
    Ok(Ok(plan))
}

/// A GROUP BY of one table by expressions (and columns) recomputed by
/// group: `key` holds the grouped outputs that are plain columns; each
/// other grouped output must be one of `f.group_exprs`. Not when change
/// rows are not to be read in place (`no_totals`: the expressions are
/// evaluated over them), nor with subqueries or ORDER BY ... LIMIT.
fn expression_key(f: &QueryFacts, key: &[KeyColumn]) -> Option<Plan> {
    let [(rte, relid, _)] = f.relations.as_slice() else { return None };
    let columns = grouped_by_expressions(f, key, *rte, *relid)?;
    Some(Plan { key_exprs: f.group_exprs.clone(), ..Plan::of(Shape::Groups, columns) })
}

/// The key columns of a join grouped by expressions over one table
/// reference (`f.group_exprs`, read over its changed rows) and by plain
/// columns of that same reference; None for other queries (the same
/// conditions as [`expression_key`]).
fn join_expression_key(
    f: &QueryFacts,
    key: &[KeyColumn],
    source_of: &dyn Fn(u32) -> Option<pg_sys::Oid>,
) -> Option<Vec<KeyColumn>> {
    if f.relations.len() < 2 {
        return None;
    }
    let rte = f.group_exprs.first()?.rte;
    grouped_by_expressions(f, key, rte, source_of(rte)?)
}

/// The key columns of a query grouped by expressions over the columns of
/// table reference `rte` (of table `source`) and by plain columns of it:
/// the plain ones from `key`, the expressions' with no column behind them.
/// None when another grouped output is neither, or when change rows are
/// not to be read in place (`no_totals`: the expressions are evaluated
/// over them), with subqueries or ORDER BY ... LIMIT.
fn grouped_by_expressions(
    f: &QueryFacts,
    key: &[KeyColumn],
    rte: u32,
    source: pg_sys::Oid,
) -> Option<Vec<KeyColumn>> {
    if f.no_totals || !f.sub_relations.is_empty() || f.topk.is_some() || f.group_exprs.is_empty() {
        return None;
    }
    let mut columns = Vec::new();
    for (i, (_, sgref)) in f.outputs.iter().enumerate() {
        if *sgref == 0 || !f.group_refs.contains(sgref) {
            continue;
        }
        let output_attnum = i as i16 + 1;
        match key.iter().find(|k| k.output_attnum == output_attnum) {
            Some(k) if k.rte == rte => columns.push(k.clone()),
            None if f.group_exprs.iter().any(|e| e.output_attnum == output_attnum && e.rte == rte) => {
                columns.push(KeyColumn { output_attnum, rte, source, source_attnum: 0 })
            }
            _ => return None,
        }
    }
    Some(columns)
}

/// The shape of a query (its ORDER BY ... LIMIT aside).
fn decide_shape(
    f: &QueryFacts,
    primary_key: impl Fn(pg_sys::Oid) -> PgtResult<Vec<i16>> + Copy,
) -> PgtResult<Result<Plan, Unsupported>> {
    if let Some(feature) = f.features.first() {
        return Ok(unsupported(format!("{feature} cannot be maintained incrementally yet")));
    }
    if f.volatile {
        return Ok(unsupported("the query calls volatile functions"));
    }
    if let Some(what) = f.other_rtes.first() {
        return Ok(unsupported(format!("{what} cannot be maintained incrementally yet")));
    }
    if !f.branches.is_empty() {
        return union_all(f, primary_key);
    }
    if f.relations.is_empty() {
        return Ok(unsupported("the query reads no table"));
    }
    if let Some(partition) = &f.window_partition {
        return Ok(window_plan(f, partition));
    }
    let grouped = f.has_aggs || f.has_group || f.has_distinct;
    if !f.inner_only && f.left_join.is_none() && f.full_join.is_none() && !grouped {
        return Ok(unsupported(
            "outer joins other than LEFT JOINs each adding a table to a table or an inner join of tables, or one RIGHT or FULL JOIN of two tables, cannot be maintained incrementally yet",
        ));
    }
    if f.relations
        .iter()
        .chain(&f.sub_relations)
        .any(|(_, _, kind)| *kind != pg_sys::RELKIND_RELATION && *kind != pg_sys::RELKIND_PARTITIONED_TABLE)
    {
        return Ok(unsupported(
            "the query reads a relation that is not a table or a differential or IMMEDIATE stream table \
             (a view, a materialized view, a stream table refreshed in full, or a foreign table)",
        ));
    }
    let source_of = |rte: u32| f.relations.iter().find(|(i, _, _)| *i == rte).map(|(_, relid, _)| *relid);
    let key_of = |pred: &dyn Fn(u32) -> bool| -> Vec<KeyColumn> {
        f.outputs
            .iter()
            .enumerate()
            .filter(|(_, (_, sgref))| pred(*sgref))
            .filter_map(|(i, (col, _))| {
                let (rte, attnum) = (*col)?;
                Some(KeyColumn {
                    output_attnum: i as i16 + 1,
                    rte,
                    source: source_of(rte)?,
                    source_attnum: attnum,
                })
            })
            .collect()
    };
    let single = f.relations.len() == 1;
    // A GROUP BY over an inner join kept from running totals of the join.
    let join_totals_plan = |key: Vec<KeyColumn>, algebraic: Algebraic| Plan {
        join: Some(JoinGraph {
            tables: f.relations.iter().map(|(rte, relid, _)| (*rte, *relid)).collect(),
            edges: f.equalities.clone(),
        }),
        algebraic: Some(algebraic),
        pair_key: if f.sub_relations.is_empty() { pair_key(f) } else { None },
        ..Plan::of(Shape::Groups, key)
    };
    // Grouped rows over a join, keyed by columns of one table reference.
    let over_join = |key: Vec<KeyColumn>| -> PgtResult<Result<Plan, Unsupported>> {
        // The grouping table: the one table of every grouping column, or
        // a table whose primary key is among them (each group then holds
        // rows of one of its rows, and is recomputed by that key).
        // Of several such tables, one whose rows reference the others'
        // (an `=` from its column to another's primary key: orders to
        // customer) holds the finer groups, found by its key without
        // reading the referencing table by a column that may have no index.
        let mut group_rte = key[0].rte;
        if key.iter().any(|k| k.rte != group_rte) {
            let mut candidates = Vec::new();
            for &(rte, relid, _) in &f.relations {
                if f.nullable.contains(&rte) || !key.iter().any(|k| k.rte == rte) {
                    continue;
                }
                let pk = primary_key(relid)?;
                if !pk.is_empty()
                    && pk.iter().all(|a| key.iter().any(|k| k.rte == rte && k.source_attnum == *a))
                {
                    candidates.push((rte, pk));
                }
            }
            let references = |from: u32| {
                candidates
                    .iter()
                    .filter(|(to, pk)| {
                        *to != from
                            && f.equalities.iter().any(|&(a, b)| {
                                [(a, b), (b, a)]
                                    .iter()
                                    .any(|&(x, y)| x.0 == from && y.0 == *to && pk.contains(&y.1))
                            })
                    })
                    .count()
            };
            let mut found: Option<(u32, usize)> = None;
            for (rte, _) in &candidates {
                let n = references(*rte);
                if found.is_none_or(|(_, best)| n > best) {
                    found = Some((*rte, n));
                }
            }
            match found.map(|(rte, _)| rte) {
                Some(rte) => group_rte = rte,
                None => {
                    return Ok(unsupported(
                        "aggregates and DISTINCT over joins are maintained incrementally only when every grouping column comes from one table, \
                         or the grouping columns include the primary key of one of the tables",
                    ))
                }
            }
        }
        if f.nullable.contains(&group_rte) {
            return Ok(unsupported(
                "aggregates and DISTINCT over outer joins are maintained incrementally only when the grouping columns come from a table on the preserved side",
            ));
        }
        let join = JoinGraph {
            tables: f
                .relations
                .iter()
                .chain(&f.sub_relations)
                .map(|(rte, relid, _)| (*rte, *relid))
                .collect(),
            edges: f.equalities.clone(),
        };
        if f.relations.iter().any(|(rte, _, _)| join.path(*rte, group_rte).is_none()) {
            return Ok(unsupported(
                "aggregates and DISTINCT over joins are maintained incrementally only when every joined table is connected \
                 to the table of the grouping columns by = conditions",
            ));
        }
        let full_on = untied(f, &|rte| join.path(rte, group_rte).is_some());
        Ok(Ok(Plan { join: Some(join), full_on, ..Plan::of(Shape::GroupsOverJoin { group_rte }, key) }))
    };
    if f.has_aggs || f.has_group {
        if !f.has_group {
            return Ok(Ok(scalar(f)));
        }
        let key = key_of(&|sgref| sgref != 0 && f.group_refs.contains(&sgref));
        let grouped_outputs = f.outputs.iter().filter(|(_, s)| *s != 0 && f.group_refs.contains(s)).count();
        if grouped_outputs == f.group_refs.len()
            && key.len() != f.group_refs.len()
            && (!single || f.join_totals.is_some())
        {
            // Running totals over a join group by the values of any
            // expression: such a key column has no table column behind it.
            if let Some(algebraic) = running_totals(f).filter(|a| a.join.is_some()) {
                let key = f
                    .outputs
                    .iter()
                    .enumerate()
                    .filter(|(_, (_, sgref))| *sgref != 0 && f.group_refs.contains(sgref))
                    .map(|(i, (col, _))| {
                        let output_attnum = i as i16 + 1;
                        match col.and_then(|(rte, attnum)| Some((rte, source_of(rte)?, attnum))) {
                            Some((rte, source, source_attnum)) => {
                                KeyColumn { output_attnum, rte, source, source_attnum }
                            }
                            None => KeyColumn {
                                output_attnum,
                                rte: 0,
                                source: pg_sys::InvalidOid,
                                source_attnum: 0,
                            },
                        }
                    })
                    .collect();
                return Ok(Ok(join_totals_plan(key, algebraic)));
            }
        }
        // One table grouped by expressions, with other aggregates: the
        // groups the changed rows' expressions name recomputed, as groups
        // by columns are (their key values computed from the change rows).
        if let (Some(plan), true) = (expression_key(f, &key), grouped_outputs == f.group_refs.len()) {
            return Ok(Ok(plan));
        }
        // A join grouped by expressions over one table reference (and by
        // its columns), with other aggregates: regrouped by that
        // reference's rows, as grouping columns of one table are; the
        // groups its changed rows' expressions name, and those of the rows
        // the other tables' changes reach, recomputed.
        if let Some(columns) =
            join_expression_key(f, &key, &source_of).filter(|_| grouped_outputs == f.group_refs.len())
        {
            return Ok(over_join(columns)?.map(|plan| Plan { key_exprs: f.group_exprs.clone(), ..plan }));
        }
        if key.len() != f.group_refs.len() || grouped_outputs != f.group_refs.len() {
            return Ok(unsupported(
                "every GROUP BY item must appear in the select list and be a plain column or an expression over one \
                 table's columns (over a join, all of one table reference, unless the other outputs are count, sum, \
                 avg, min and max and HAVING, if any, reads only such aggregates)",
            ));
        }
        if single && f.sub_relations.is_empty() {
            return Ok(Ok(Plan { algebraic: running_totals(f), ..Plan::of(Shape::Groups, key) }));
        }
        // Over an inner join with count/sum/avg only: running totals.
        // (Groups without aggregates: key recompute when it applies, as
        // before; counts of the join's rows otherwise.)
        if let Some(algebraic) = running_totals(f) {
            if !f.has_aggs {
                if let Ok(plan) = over_join(key.clone())? {
                    return Ok(Ok(plan));
                }
            }
            return Ok(Ok(join_totals_plan(key, algebraic)));
        }
        // Otherwise the groups must come from one table reference that
        // every other one reaches through `=` conditions.
        return over_join(key);
    }
    if f.has_distinct {
        let key = key_of(&|_| true);
        if key.len() != f.outputs.len() {
            return Ok(unsupported("SELECT DISTINCT of expressions cannot be maintained incrementally yet"));
        }
        if !single || !f.sub_relations.is_empty() {
            return over_join(key);
        }
        return Ok(Ok(Plan::of(Shape::Distinct, key)));
    }
    // Rows: every table reference's primary key must be in the output.
    // One table without one: a multiset, from the changed rows alone.
    let keyless = || -> Option<Plan> {
        let outputs = f.output_sql.clone()?;
        let [(rte, relid, _)] = f.relations.as_slice() else { return None };
        if !f.inner_only || f.output_attnums.iter().chain(&f.where_attnums).any(|a| *a <= 0) {
            return None;
        }
        let mut attnums: Vec<i16> = f.output_attnums.iter().chain(&f.where_attnums).copied().collect();
        attnums.sort_unstable();
        attnums.dedup();
        Some(Plan {
            join: Some(JoinGraph { tables: vec![(*rte, *relid)], edges: Vec::new() }),
            rows: Some(RowsDelta { outputs, where_sql: f.where_sql.clone(), attnums }),
            ..Plan::of(Shape::Keyless, Vec::new())
        })
    };
    let mut keys = Vec::new();
    for &(rte, relid, _) in &f.relations {
        keys.push((rte, primary_key(relid)?));
    }
    // References another one's rows determine are identified by its key
    // (an inner join without subqueries in expressions).
    let implied = if f.sub_relations.is_empty() && f.left_join.is_none() && f.full_join.is_none() {
        implied_references(&keys, &f.strict_equalities)
    } else {
        Vec::new()
    };
    let mut key = Vec::new();
    for (&(rte, relid, _), (_, pk)) in f.relations.iter().zip(&keys) {
        if implied.contains(&rte) {
            continue;
        }
        if pk.is_empty() {
            if let Some(plan) = keyless() {
                return Ok(Ok(plan));
            }
            return Ok(unsupported("a table the query reads has no primary key, so rows have no identity"));
        }
        for attnum in pk {
            match f.outputs.iter().position(|(c, _)| *c == Some((rte, *attnum))) {
                Some(i) => key.push(KeyColumn {
                    output_attnum: i as i16 + 1,
                    rte,
                    source: relid,
                    source_attnum: *attnum,
                }),
                None => {
                    if let Some(plan) = keyless() {
                        return Ok(Ok(plan));
                    }
                    return Ok(unsupported(if single {
                        "the select list does not include the table's primary key, so rows have no identity"
                    } else {
                        "the select list does not include the primary key of every joined table, so rows have no identity"
                    }));
                }
            }
        }
    }
    let one_column = |rte: u32| key.iter().filter(|k| k.rte == rte).count() == 1;
    let mut outer_paths = Vec::new();
    let shape = match (&f.left_join, f.full_join) {
        // The rows joined to a changed row, before and after the change, are
        // found in the stream table and in the query (see
        // key_recompute::expand_outer_join): a WHERE condition on a nullable
        // side could hide them while its NULL-extended row shows. Then the
        // changed rows of the nullable tables are followed instead, by their
        // old and new values, along the `=` conditions of their own ON
        // clauses to the preserved table (key_recompute::expand_join_groups):
        // every preserved row whose output they may change, shown or hidden.
        (Some(preserved), _) if f.where_rtes.iter().any(|r| !preserved.contains(r)) => {
            let Some(&to) = preserved.iter().find(|t| one_column(**t)) else {
                return Ok(unsupported(
                    "an outer join's preserved table needs a one-column primary key to be maintained incrementally",
                ));
            };
            for (rte, _, _) in f.relations.iter().filter(|(r, _, _)| !preserved.contains(r)) {
                match outer_path(f, preserved, *rte, to) {
                    Some(path) => outer_paths.push((*rte, path)),
                    None => {
                        return Ok(unsupported(
                            "a WHERE condition on the nullable side of an outer join is maintained incrementally \
                             only when the ON clause of each table on that side compares one of its columns \
                             with = to a column of a table joined before it",
                        ))
                    }
                }
            }
            Shape::LeftJoin { preserved: to }
        }
        // The same for a FULL JOIN: each side's changed rows followed to
        // the other's rows along the ON clause's = conditions.
        (None, Some((left, right))) if !f.where_rtes.is_empty() => {
            let paths = [(left, outer_path(f, &[], left, right)), (right, outer_path(f, &[], right, left))];
            for (rte, path) in paths {
                match path {
                    Some(path) => outer_paths.push((rte, path)),
                    None => {
                        return Ok(unsupported(
                            "a WHERE condition on a FULL JOIN is maintained incrementally only when its ON clause \
                             compares a column of one table with = to a column of the other",
                        ))
                    }
                }
            }
            if !one_column(left) || !one_column(right) {
                return Ok(unsupported(
                    "a FULL JOIN needs a one-column primary key on both tables to be maintained incrementally",
                ));
            }
            Shape::FullJoin { left, right }
        }
        // Rows recomputed per row of one of the preserved tables (every
        // output row comes from one of its rows), by a one-column key.
        (Some(preserved), _) => match preserved.iter().find(|t| one_column(**t)) {
            Some(&preserved) => Shape::LeftJoin { preserved },
            None => {
                return Ok(unsupported(
                    "an outer join's preserved table needs a one-column primary key to be maintained incrementally",
                ))
            }
        },
        (None, Some((left, right))) => {
            if !one_column(left) || !one_column(right) {
                return Ok(unsupported(
                    "a FULL JOIN needs a one-column primary key on both tables to be maintained incrementally",
                ));
            }
            Shape::FullJoin { left, right }
        }
        (None, None) => Shape::Rows,
    };
    // Subqueries in WHERE: a change of a table inside one reaches the rows
    // of the outer table it is compared with (followed along the `=`
    // conditions, see key_recompute::expand_join_groups).
    let mut full_on = Vec::new();
    let join = if f.sub_relations.is_empty() {
        // (Implied references' changes are followed along equalities
        // whose operator keeps them exact.)
        (!implied.is_empty()).then(|| JoinGraph {
            tables: f.relations.iter().map(|(rte, relid, _)| (*rte, *relid)).collect(),
            edges: f.strict_equalities.clone(),
        })
    } else {
        if shape != Shape::Rows {
            return Ok(unsupported(
                "subqueries in expressions of a query with an outer join cannot be maintained incrementally yet",
            ));
        }
        let join = JoinGraph {
            tables: f
                .relations
                .iter()
                .chain(&f.sub_relations)
                .map(|(rte, relid, _)| (*rte, *relid))
                .collect(),
            edges: f.equalities.clone(),
        };
        full_on = untied(f, &|rte| join.nearest(rte, &|r| key.iter().any(|k| k.rte == r)).is_some());
        Some(join)
    };
    let pair_key = if shape == Shape::Rows && f.sub_relations.is_empty() { pair_key(f) } else { None };
    // (The paths' tables and conditions: their columns are captured.)
    let join = match outer_paths.is_empty() {
        true => join,
        false => Some(JoinGraph {
            tables: f.relations.iter().map(|(rte, relid, _)| (*rte, *relid)).collect(),
            edges: outer_paths.iter().flat_map(|(_, path)| path.iter().copied()).collect(),
        }),
    };
    Ok(Ok(Plan { join, full_on, implied, pair_key, outer_paths, ..Plan::of(shape, key) }))
}

/// The path from nullable table reference `from` of a LEFT JOIN chain to
/// `to`, one of its `preserved` tables: steps from a nullable table along
/// an `=` condition of its own ON clause to a table joined before it
/// (`QueryFacts::left_ons`), or between two preserved tables along an `=`
/// condition of the WHERE clause or of an inner join (both rows are in
/// every output row, and the condition holds there; not one of a LEFT
/// JOIN's ON clause, `outer_on_equalities`, which a NULL-extended row of
/// its table need not pass).
/// Each step holds in every output row in which the row it leaves is not
/// NULL-extended, so the rows of `to` a changed row may reach are among
/// those its values reach (breadth first, shortest path).
fn outer_path(f: &QueryFacts, preserved: &[u32], from: u32, to: u32) -> Option<Vec<Equality>> {
    let steps = |at: u32| -> Vec<Equality> {
        if preserved.contains(&at) {
            f.equalities
                .iter()
                .filter(|e| !f.outer_on_equalities.contains(e))
                .flat_map(|&(a, b)| [(a, b), (b, a)])
                .filter(|(x, y)| x.0 == at && preserved.contains(&y.0))
                .collect()
        } else {
            f.left_ons.iter().filter(|(t, _)| *t == at).flat_map(|(_, eqs)| eqs.iter().copied()).collect()
        }
    };
    super::plan::shortest_path(from, to, &steps)
}

/// For an inner join of exactly two table references (its rows filtered and
/// projected, or grouped into running totals), both ordinary or
/// partitioned tables: a column of each (in reference order) that an
/// equality ANDed into its conditions compares by their one built-in
/// type's own equality, under a deterministic collation (one of
/// `strict_equalities`), so that every pair of rows it joins has them
/// equal, and equal values hash alike.
fn pair_key(f: &QueryFacts) -> Option<[(u32, pg_sys::Oid, i16); 2]> {
    let [(r1, s1, k1), (r2, s2, k2)] = f.relations.as_slice() else { return None };
    let ordinary = |kind: u8| kind == pg_sys::RELKIND_RELATION || kind == pg_sys::RELKIND_PARTITIONED_TABLE;
    if !f.inner_only || f.left_join.is_some() || f.full_join.is_some() || !ordinary(*k1) || !ordinary(*k2) {
        return None;
    }
    f.strict_equalities.iter().find_map(|&(a, b)| {
        if (a.0, b.0) == (*r1, *r2) {
            Some([(*r1, *s1, a.1), (*r2, *s2, b.1)])
        } else if (a.0, b.0) == (*r2, *r1) {
            Some([(*r1, *s1, b.1), (*r2, *s2, a.1)])
        } else {
            None
        }
    })
}

/// The table references of an inner join whose rows another reference's
/// rows determine: every column of its primary key (`keys`: per reference,
/// its primary key's columns) is equal, by the equality of its type
/// (`edges`), to a column of one other reference, so each row of that one
/// meets at most one of its rows (a dimension joined by its key to a fact
/// table). That reference's key then identifies the joined rows on its
/// own, and a change of an implied reference reaches the stream table's
/// rows through the rows it is joined to (followed along the equalities:
/// key_recompute::expand_join_groups), so the stream table needs neither
/// its key columns nor an index on them. References are decided last to
/// first, each implied only by one not implied itself (so one of `a.id =
/// b.id` stays keyed, and the first of a chain keys the others).
fn implied_references(keys: &[(u32, Vec<i16>)], edges: &[Equality]) -> Vec<u32> {
    let mut implied: Vec<u32> = Vec::new();
    for (rte, pk) in keys.iter().rev() {
        let equal_to = |other: u32, attnum: i16| {
            edges
                .iter()
                .any(|&(a, b)| (a == (*rte, attnum) && b.0 == other) || (b == (*rte, attnum) && a.0 == other))
        };
        let determined = keys
            .iter()
            .filter(|(other, _)| other != rte && !implied.contains(other))
            .any(|(other, _)| pk.iter().all(|a| equal_to(*other, *a)));
        if !pk.is_empty() && determined {
            implied.push(*rte);
        }
    }
    implied
}

/// The tables of the subqueries' table references that `tied` rejects
/// (no `=` conditions lead from them to the outer rows): see
/// [`Plan::full_on`].
fn untied(f: &QueryFacts, tied: &dyn Fn(u32) -> bool) -> Vec<pg_sys::Oid> {
    let mut out: Vec<pg_sys::Oid> = Vec::new();
    for &(rte, relid, _) in &f.sub_relations {
        if !tied(rte) && !out.contains(&relid) {
            out.push(relid);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: pg_sys::Oid = pg_sys::Oid::from_u32(100);
    const U: pg_sys::Oid = pg_sys::Oid::from_u32(200);

    fn facts() -> QueryFacts {
        QueryFacts {
            features: vec![],
            volatile: false,
            stable: false,
            relations: vec![(1, T, pg_sys::RELKIND_RELATION)],
            other_rtes: vec![],
            inner_only: true,
            left_join: None,
            left_ons: vec![],
            outer_on_equalities: vec![],
            full_join: None,
            where_rtes: vec![],
            has_aggs: false,
            has_group: false,
            has_distinct: false,
            outputs: vec![(Some((1, 1)), 0), (Some((1, 3)), 0), (None, 0)],
            group_refs: vec![],
            equalities: vec![],
            strict_equalities: vec![],
            nullable: vec![],
            aggregates: vec![None, None, None],
            derived: vec![None, None, None],
            has_having: false,
            having: None,
            where_sql: None,
            where_attnums: vec![],
            branches: vec![],
            output_sql: None,
            output_attnums: vec![],
            join_totals: None,
            slice_graph: None,
            rows_join: None,
            rows_graph: None,
            union_rows: None,
            limited: false,
            sub_relations: Vec::new(),
            topk: None,
            aggregating_sublink: false,
            no_totals: false,
            window_partition: None,
            group_exprs: Vec::new(),
        }
    }

    #[test]
    fn placeholders_are_whole_numbers() {
        let sql = "(($30000 / $30001) || '$300010' || $3)";
        let counts = placeholder_counts(sql);
        assert_eq!(counts.get(&30000), Some(&1));
        assert_eq!(counts.get(&30001), Some(&1));
        assert_eq!(counts.get(&300010), Some(&1), "a longer number is another placeholder");
        let values = [(30000, "a".to_string()), (30001, "b".to_string())].into_iter().collect();
        assert_eq!(replace_placeholders(sql, &values), "((a / b) || '$300010' || $3)");
        assert_eq!(replace_placeholders("é$30000", &values), "éa");
    }

    fn pk1(_: pg_sys::Oid) -> PgtResult<Vec<i16>> {
        Ok(vec![1])
    }

    fn key(output_attnum: i16, rte: u32, source: pg_sys::Oid, source_attnum: i16) -> KeyColumn {
        KeyColumn { output_attnum, rte, source, source_attnum }
    }

    #[test]
    fn rows_keyed_by_primary_key() {
        let plan = decide(&facts(), pk1).unwrap().unwrap();
        assert_eq!(plan.shape, Shape::Rows);
        assert_eq!(plan.key, vec![key(1, 1, T, 1)]);
        let no_pk = decide(&facts(), |_| Ok(vec![])).unwrap().unwrap_err();
        assert!(no_pk.0.contains("no primary key"));
        let pk_not_selected = decide(&facts(), |_| Ok(vec![2])).unwrap().unwrap_err();
        assert!(pk_not_selected.0.contains("does not include"));
    }

    #[test]
    fn groups_by_expressions_recomputed_by_group() {
        // SELECT c2 / 10, c3, string_agg(...) FROM t GROUP BY c2 / 10, c3
        let grouped = || {
            let mut f = facts();
            f.has_aggs = true;
            f.has_group = true;
            f.outputs = vec![(None, 1), (Some((1, 3)), 2), (None, 0)];
            f.group_refs = vec![1, 2];
            f.group_exprs =
                vec![KeyExpr { output_attnum: 1, sql: "(b.c2 / 10)".into(), attnums: vec![2], rte: 1 }];
            f
        };
        let plan = decide(&grouped(), pk1).unwrap().unwrap();
        assert_eq!(plan.shape, Shape::Groups);
        assert_eq!(plan.key, vec![key(1, 1, T, 0), key(2, 1, T, 3)]);
        assert_eq!(plan.key_exprs, grouped().group_exprs);
        assert!(plan.algebraic.is_none());
        // The buffer holds the expression's columns and the plain key's.
        assert_eq!(plan.captured_columns(T), vec![2, 3]);
        // Not when the change rows are not to be read in place, nor with
        // a GROUP BY item missing from the select list.
        let mut no_totals = grouped();
        no_totals.no_totals = true;
        assert!(decide(&no_totals, pk1).unwrap().unwrap_err().0.contains("every GROUP BY item"));
        let mut hidden = grouped();
        hidden.group_refs.push(3);
        assert!(decide(&hidden, pk1).unwrap().unwrap_err().0.contains("every GROUP BY item"));
    }

    #[test]
    fn joins_grouped_by_expressions_of_one_table_regroup_by_it() {
        // SELECT t.c2 / 10, t.c3, string_agg(u...) FROM t JOIN u ON u.c1 = t.c3
        //  GROUP BY t.c2 / 10, t.c3
        let grouped = || {
            let mut f = facts();
            f.relations.push((2, U, pg_sys::RELKIND_RELATION));
            f.inner_only = true;
            f.has_aggs = true;
            f.has_group = true;
            f.outputs = vec![(None, 1), (Some((1, 3)), 2), (None, 0)];
            f.group_refs = vec![1, 2];
            f.equalities = vec![((2, 1), (1, 3))];
            f.group_exprs =
                vec![KeyExpr { output_attnum: 1, sql: "(b.c2 / 10)".into(), attnums: vec![2], rte: 1 }];
            f
        };
        let plan = decide(&grouped(), pk1).unwrap().unwrap();
        assert_eq!(plan.shape, Shape::GroupsOverJoin { group_rte: 1 });
        assert_eq!(plan.key, vec![key(1, 1, T, 0), key(2, 1, T, 3)]);
        assert_eq!(plan.key_exprs, grouped().group_exprs);
        // Changes of u are followed to t, whose buffer holds the
        // expression's columns, the key's and the join's.
        assert_eq!(plan.followed().len(), 1);
        assert_eq!(plan.captured_columns(T), vec![2, 3]);
        // Not grouped by a column of the other table as well.
        let mut mixed = grouped();
        mixed.outputs[1] = (Some((2, 2)), 2);
        assert!(decide(&mixed, pk1).unwrap().unwrap_err().0.contains("every GROUP BY item"));
        // Nor by an expression over a table not connected by =.
        let mut apart = grouped();
        apart.equalities.clear();
        assert!(decide(&apart, pk1).unwrap().unwrap_err().0.contains("connected"));
    }

    #[test]
    fn one_row_per_source_row() {
        let rows = || {
            let mut f = facts();
            f.output_sql = Some(vec!["c1".into(), "c3".into(), "c1 + c3".into()]);
            f.output_attnums = vec![1, 3];
            f
        };
        let plan = decide(&rows(), pk1).unwrap().unwrap();
        assert_eq!(plan.one_row_per_source_row(), Some(T));
        // A subquery reading a table (even this one): other rows reach it.
        let mut sub = rows();
        sub.sub_relations = vec![(3, T, pg_sys::RELKIND_RELATION)];
        assert_eq!(decide(&sub, pk1).unwrap().unwrap().one_row_per_source_row(), None);
        // A join; a table referenced twice.
        let mut joined = rows();
        joined.relations.push((2, U, pg_sys::RELKIND_RELATION));
        joined.outputs.push((Some((2, 1)), 0));
        joined.aggregates.push(None);
        joined.derived.push(None);
        assert_eq!(decide(&joined, pk1).unwrap().unwrap().one_row_per_source_row(), None);
        let mut self_join = joined;
        self_join.relations[1].1 = T;
        assert_eq!(decide(&self_join, pk1).unwrap().unwrap().one_row_per_source_row(), None);
        // Without a key it is a multiset: copies of a row are shared.
        let keyless = decide(&rows(), |_| Ok(vec![])).unwrap();
        assert!(keyless.map_or(true, |plan| plan.one_row_per_source_row().is_none()));
    }

    #[test]
    fn references_joined_by_their_key_are_implied() {
        // T (rte 1) joined to U (rte 2) by U's key: t.c3 = u.c1.
        let joined = |strict: bool| {
            let mut f = facts();
            f.relations.push((2, U, pg_sys::RELKIND_RELATION));
            f.equalities = vec![((1, 3), (2, 1))];
            if strict {
                f.strict_equalities = f.equalities.clone();
            }
            f
        };
        let plan = decide(&joined(true), pk1).unwrap().unwrap();
        assert_eq!(plan.shape, Shape::Rows);
        assert_eq!(plan.key, vec![key(1, 1, T, 1)], "U's key is neither selected nor needed");
        assert_eq!(plan.implied, vec![2]);
        assert_eq!(plan.sources(), vec![T, U]);
        assert_eq!(plan.followed(), vec![(2, U, 1, vec![((2, 1), (1, 3))])]);
        assert_eq!(plan.captured_columns(U), vec![1]);
        assert_eq!(plan.captured_columns(T), vec![1, 3]);
        assert_eq!(super::super::inserted::eligible(&plan), Some(vec![T, U]));
        // Selected, U's key stays out of the key.
        let mut selected = joined(true);
        selected.outputs.push((Some((2, 1)), 0));
        selected.aggregates.push(None);
        selected.derived.push(None);
        assert_eq!(decide(&selected, pk1).unwrap().unwrap().key, vec![key(1, 1, T, 1)]);
        // An `=` that is not its type's own equality proves nothing.
        assert!(decide(&joined(false), pk1).unwrap().unwrap_err().0.contains("primary key of every"));
        // One of two tables joined by both keys stays keyed (the first).
        let mut both = joined(true);
        both.strict_equalities = vec![((1, 1), (2, 1))];
        let plan = decide(&both, pk1).unwrap().unwrap();
        assert_eq!((plan.key, plan.implied), (vec![key(1, 1, T, 1)], vec![2]));
        // A chain: rte 3 by U, U by T.
        assert_eq!(
            implied_references(
                &[(1, vec![1]), (2, vec![1]), (3, vec![1, 2])],
                &[((1, 3), (2, 1)), ((3, 1), (2, 4)), ((2, 5), (3, 2))]
            ),
            vec![3, 2]
        );
        // A key column equal to nothing: not implied.
        assert!(implied_references(&[(1, vec![1]), (2, vec![1, 2])], &[((1, 3), (2, 1))]).is_empty());
    }

    #[test]
    fn joins_without_every_key_are_multisets() {
        // T joined to U, U's key not selected: the rows of the join.
        let joined = || {
            let mut f = facts();
            f.relations.push((2, U, pg_sys::RELKIND_RELATION));
            f.rows_join = Some(super::super::join_totals::JoinTotals {
                select_sql: "SELECT ...".into(),
                tables: vec![(1, T, vec![1, 3]), (2, U, vec![1, 2])],
            });
            f
        };
        let plan = decide(&joined(), pk1).unwrap().unwrap();
        assert_eq!(plan.shape, Shape::Multiset);
        assert!(plan.key.is_empty());
        assert_eq!(plan.sources(), vec![T, U]);
        assert_eq!(plan.captured_columns(U), vec![1, 2], "the columns the join reads");
        assert!(plan.full_on.is_empty());
        // A keyed shape is kept when there is one.
        let mut keyed = joined();
        keyed.outputs.push((Some((2, 1)), 0));
        keyed.aggregates.push(None);
        keyed.derived.push(None);
        assert_eq!(decide(&keyed, pk1).unwrap().unwrap().shape, Shape::Rows);
        // Never with volatile functions, a LIMIT, or rows its owner may not
        // read from the buffers (no_totals).
        for spoil in [
            (|f: &mut QueryFacts| f.volatile = true) as fn(&mut QueryFacts),
            |f| f.limited = true,
            |f| f.no_totals = true,
        ] {
            let mut g = joined();
            spoil(&mut g);
            assert!(decide(&g, pk1).unwrap().is_err());
        }
    }

    #[test]
    fn inserts_apply_from_new_rows_only_for_plain_keyed_rows() {
        use super::super::inserted::eligible;
        // One table, keyed: its INSERTs.
        assert_eq!(eligible(&decide(&facts(), pk1).unwrap().unwrap()), Some(vec![T]));
        // A join of t and u, keyed by both: both tables' INSERTs.
        let mut f = facts();
        f.relations = vec![(1, T, pg_sys::RELKIND_RELATION), (2, U, pg_sys::RELKIND_RELATION)];
        f.outputs = vec![(Some((1, 1)), 0), (Some((2, 1)), 0)];
        f.equalities = vec![((1, 3), (2, 2))];
        assert_eq!(eligible(&decide(&f, pk1).unwrap().unwrap()), Some(vec![T, U]));
        // A self-join: a new row of t can pair with itself; never.
        f.relations = vec![(1, T, pg_sys::RELKIND_RELATION), (2, T, pg_sys::RELKIND_RELATION)];
        assert_eq!(eligible(&decide(&f, pk1).unwrap().unwrap()), None);
        // Subqueries, ORDER BY ... LIMIT, aggregates: never.
        let mut f = facts();
        f.sub_relations = vec![(1001, U, pg_sys::RELKIND_RELATION)];
        f.equalities = vec![((1001, 2), (1, 3))];
        assert_eq!(eligible(&decide(&f, pk1).unwrap().unwrap()), None);
        let mut f = facts();
        f.topk = Some(TopK { limit: 3, order: vec![(1, false, false)] });
        assert_eq!(eligible(&decide(&f, pk1).unwrap().unwrap()), None);
        let mut f = facts();
        f.has_aggs = true;
        f.has_group = true;
        f.group_refs = vec![1];
        f.outputs = vec![(Some((1, 2)), 1), (None, 0)];
        assert_eq!(eligible(&decide(&f, pk1).unwrap().unwrap()), None);
    }

    #[test]
    fn subqueries_followed_to_the_nearest_outer_table() {
        // SELECT id, c FROM t WHERE EXISTS (SELECT FROM u WHERE u.x = t.c
        //   AND u.y IN (SELECT y FROM t t2 WHERE ...)): u (1001) is tied to
        // t (1) by u.2 = t.3, t2 (2001) to u by t2.5 = u.4.
        let mut f = facts();
        f.sub_relations = vec![(1001, U, pg_sys::RELKIND_RELATION), (2001, T, pg_sys::RELKIND_RELATION)];
        f.equalities = vec![((1001, 2), (1, 3)), ((2001, 5), (1001, 4))];
        let plan = decide(&f, pk1).unwrap().unwrap();
        assert_eq!(plan.shape, Shape::Rows);
        assert_eq!(plan.key, vec![key(1, 1, T, 1)]);
        assert_eq!(plan.sources(), vec![T, U]);
        let followed: Vec<(u32, u32, usize)> =
            plan.followed().into_iter().map(|(from, _, to, path)| (from, to, path.len())).collect();
        assert_eq!(followed, vec![(1001, 1, 1), (2001, 1, 2)]);
        // The buffers hold the columns the conditions read.
        assert_eq!(plan.captured_columns(U), vec![2, 4]);
        assert_eq!(plan.captured_columns(T), vec![1, 3, 5]);
        // Grouped: the single table's groups, through the subquery.
        let mut g = facts();
        g.sub_relations = f.sub_relations.clone();
        g.equalities = f.equalities.clone();
        g.has_aggs = true;
        g.has_group = true;
        g.group_refs = vec![1];
        g.outputs = vec![(Some((1, 3)), 1), (None, 0)];
        let plan = decide(&g, pk1).unwrap().unwrap();
        assert_eq!(plan.shape, Shape::GroupsOverJoin { group_rte: 1 });
        assert!(plan.algebraic.is_none());
        assert_eq!(plan.followed().len(), 2);
        assert!(plan.full_on.is_empty());
        // A table of a subquery tied by nothing: its changes recompute all.
        f.equalities.pop();
        let plan = decide(&f, pk1).unwrap().unwrap();
        assert_eq!(plan.full_on, vec![T]);
        assert_eq!(plan.followed().len(), 1);
        g.equalities.pop();
        assert_eq!(decide(&g, pk1).unwrap().unwrap().full_on, vec![T]);
        // Aggregates without GROUP BY are recomputed whole: any subquery.
        g.has_group = false;
        g.group_refs = vec![];
        g.outputs = vec![(None, 0)];
        let plan = decide(&g, pk1).unwrap().unwrap();
        assert_eq!(plan.shape, Shape::Scalar);
        assert_eq!(plan.sources(), vec![T, U]);
        assert!(plan.followed().is_empty());
    }

    #[test]
    fn inner_joins_keyed_by_every_primary_key() {
        let mut f = facts();
        f.relations.push((2, U, pg_sys::RELKIND_RELATION));
        f.outputs = vec![(Some((1, 1)), 0), (Some((2, 1)), 0), (None, 0)];
        let plan = decide(&f, pk1).unwrap().unwrap();
        assert_eq!(plan.key, vec![key(1, 1, T, 1), key(2, 2, U, 1)]);
        assert_eq!(plan.sources(), vec![T, U]);
        assert_eq!(plan.key_groups().len(), 2);
        // A self-join: two groups, one source.
        f.relations[1] = (2, T, pg_sys::RELKIND_RELATION);
        let plan = decide(&f, pk1).unwrap().unwrap();
        assert_eq!(plan.sources(), vec![T]);
        assert_eq!(plan.key_groups().len(), 2);
        // One side's key missing from the output.
        f.outputs = vec![(Some((1, 1)), 0), (Some((2, 2)), 0)];
        assert!(decide(&f, pk1).unwrap().unwrap_err().0.contains("every joined table"));
        // One LEFT JOIN of two tables is; other outer joins are not yet.
        let mut f = facts();
        f.relations.push((2, U, pg_sys::RELKIND_RELATION));
        f.outputs = vec![(Some((1, 1)), 0), (Some((2, 1)), 0)];
        f.inner_only = false;
        f.left_join = Some(vec![1]);
        let plan = decide(&f, pk1).unwrap().unwrap();
        assert_eq!(plan.shape, Shape::LeftJoin { preserved: 1 });
        // (Preserved tables of an inner join: the first with a one-column key.)
        f.left_join = Some(vec![2, 1]);
        f.where_rtes = vec![1];
        let plan = decide(&f, |r| Ok(if r == U { vec![1, 2] } else { vec![1] })).unwrap();
        assert!(plan.is_err(), "U's key has two columns, and only one is selected");
        let plan = decide(&f, pk1).unwrap().unwrap();
        assert_eq!(plan.shape, Shape::LeftJoin { preserved: 2 });
        f.left_join = Some(vec![2]);
        assert!(decide(&f, pk1)
            .unwrap()
            .unwrap_err()
            .0
            .starts_with("a WHERE condition on the nullable side"));
        f.where_rtes.clear();
        f.left_join = None;
        assert!(decide(&f, pk1).unwrap().unwrap_err().0.starts_with("outer joins"));
        f.full_join = Some((1, 2));
        let plan = decide(&f, pk1).unwrap().unwrap();
        assert_eq!(plan.shape, Shape::FullJoin { left: 1, right: 2 });
        f.outputs = vec![(Some((1, 1)), 0), (Some((1, 2)), 0), (Some((2, 1)), 0), (Some((2, 2)), 0)];
        let two_columns = decide(&f, |_| Ok(vec![1, 2])).unwrap().unwrap_err();
        assert!(two_columns.0.contains("FULL JOIN needs"), "{}", two_columns.0);
    }

    #[test]
    fn union_all_of_branches_without_keys_is_a_multiset_of_their_rows() {
        // Two branches selecting a column other than their key.
        let branch = |rte: u32, relid| {
            let mut b = facts();
            b.relations = vec![(rte, relid, pg_sys::RELKIND_RELATION)];
            b.outputs = vec![(Some((rte, 2)), 0)];
            b
        };
        let mut f = facts();
        f.branches = vec![branch(BRANCH_SPAN + 1, T), branch(2 * BRANCH_SPAN + 1, U)];
        let refused = decide(&f, pk1).unwrap().unwrap_err();
        assert!(refused.0.starts_with("in a branch of the UNION ALL"), "{}", refused.0);
        // Each branch read as the rows of a join of its tables.
        let rows = |relid| super::super::join_totals::JoinTotals {
            select_sql: "SELECT ...".into(),
            tables: vec![(1, relid, vec![2])],
        };
        f.union_rows = Some(vec![rows(T), rows(U)]);
        let plan = decide(&f, pk1).unwrap().unwrap();
        assert_eq!(plan.shape, Shape::Multiset);
        assert!(plan.key.is_empty());
        let m = plan.multiset.as_ref().unwrap();
        assert_eq!(m.union.len(), 2);
        assert_eq!(m.tables(), vec![T, U]);
        assert_eq!(m.columns_of(U), vec![2]);
        // (Table reference ids of different branches kept apart.)
        assert_eq!(plan.join.unwrap().tables, vec![(BRANCH_SPAN + 1, T), (2 * BRANCH_SPAN + 1, U)]);
        // Branches with keys stay keyed: rows found through each key.
        for b in &mut f.branches {
            let rte = b.relations[0].0;
            b.outputs = vec![(Some((rte, 1)), 0), (Some((rte, 2)), 0)];
        }
        assert_eq!(decide(&f, pk1).unwrap().unwrap().shape, Shape::UnionAll);
        // Volatile functions: refused whatever the branches.
        f.branches[0].outputs.pop();
        f.branches[0].outputs[0] = (Some((BRANCH_SPAN + 1, 2)), 0);
        f.volatile = true;
        assert!(decide(&f, pk1).unwrap().is_err());
    }

    #[test]
    fn groups_need_plain_selected_columns() {
        let mut f = facts();
        f.has_aggs = true;
        f.has_group = true;
        f.outputs = vec![(Some((1, 2)), 1), (None, 0)];
        f.group_refs = vec![1];
        let plan = decide(&f, pk1).unwrap().unwrap();
        assert_eq!(plan.shape, Shape::Groups);
        assert_eq!(plan.key, vec![key(1, 1, T, 2)]);
        f.group_refs = vec![1, 2]; // a GROUP BY item not in the output
        assert!(decide(&f, pk1).unwrap().is_err());
        f.group_refs = vec![1];
        f.outputs = vec![(None, 1), (None, 0)]; // GROUP BY an expression
        assert!(decide(&f, pk1).unwrap().is_err());
        f.has_group = false; // aggregate without GROUP BY
        f.group_refs = vec![];
        f.outputs = vec![(None, 0)];
        f.aggregates = vec![Some((
            AggKind::Sum(0),
            Some(AggArg {
                sql: "(b.c)".into(),
                attnums: vec![2],
                sql_type: "integer".into(),
                not_null: false,
            }),
        ))];
        let plan = decide(&f, pk1).unwrap().unwrap();
        assert_eq!(plan.shape, Shape::Scalar);
        assert!(plan.key.is_empty());
        assert_eq!(plan.sources(), vec![T]);
        assert_eq!(plan.grouped_source(), Some(T));
        assert_eq!(plan.captured_columns(T), vec![2], "the summed column");
        let alg = plan.algebraic.clone().unwrap();
        assert_eq!(alg.aggregates, vec![(1, AggKind::Sum(1))], "numbered from 1");
        assert_eq!(alg.argument(1).map(|a| a.sql.as_str()), Some("(b.c)"));
        // HAVING without GROUP BY: recomputed, not kept from totals.
        f.has_having = true;
        f.having = Some(("($30000 > 1)".into(), Vec::new()));
        assert_eq!(decide(&f, pk1).unwrap().unwrap().algebraic, None);
    }

    #[test]
    fn having_over_kept_aggregates_is_kept_from_totals() {
        // SELECT b, sum(c) FROM t GROUP BY b HAVING count(*) > 1 AND sum(c) > 0
        let mut f = facts();
        f.has_aggs = true;
        f.has_group = true;
        f.outputs = vec![(Some((1, 2)), 1), (None, 0)];
        f.group_refs = vec![1];
        let c = AggArg { sql: "(b.c)".into(), attnums: vec![3], sql_type: "integer".into(), not_null: false };
        f.aggregates = vec![None, Some((AggKind::Sum(0), Some(c.clone())))];
        f.derived = vec![None, None];
        f.has_having = true;
        f.having = Some((
            "(($30000 > 1) AND ($30001 > 0))".into(),
            vec![
                ((AggKind::CountStar, None), "bigint".into()),
                ((AggKind::Sum(0), Some(c)), "bigint".into()),
            ],
        ));
        let alg = decide(&f, pk1).unwrap().unwrap().algebraic.unwrap();
        assert_eq!(alg.aggregates, vec![(2, AggKind::Sum(1))]);
        assert_eq!(alg.arguments.len(), 1, "sum(c) of HAVING is the output's");
        let having = alg.having.unwrap();
        assert_eq!(having.output, 0);
        assert_eq!(
            having.parts,
            vec![(AggKind::CountStar, "bigint".into()), (AggKind::Sum(1), "bigint".into())]
        );
        // HAVING that reads a column outside an aggregate: recomputed.
        f.having = None;
        let plan = decide(&f, pk1).unwrap().unwrap();
        assert_eq!((plan.shape, plan.algebraic), (Shape::Groups, None));
    }

    #[test]
    fn groups_over_joins_need_one_grouping_table_reached_by_equalities() {
        // SELECT t.b, count(*) FROM t JOIN u ON u.x = t.c JOIN t t2 ON t2.a = u.y GROUP BY t.b
        let mut f = facts();
        f.has_aggs = true;
        f.has_group = true;
        f.relations = vec![
            (1, T, pg_sys::RELKIND_RELATION),
            (2, U, pg_sys::RELKIND_RELATION),
            (3, T, pg_sys::RELKIND_RELATION),
        ];
        f.outputs = vec![(Some((1, 2)), 1), (None, 0)];
        f.group_refs = vec![1];
        assert!(decide(&f, pk1).unwrap().unwrap_err().0.contains("connected"), "no join conditions");
        f.equalities = vec![((2, 1), (1, 3)), ((3, 1), (2, 2))];
        let plan = decide(&f, pk1).unwrap().unwrap();
        assert_eq!(plan.shape, Shape::GroupsOverJoin { group_rte: 1 });
        let join = plan.join.clone().unwrap();
        // From t2 (rte 3): t2.a = u.y, then u.x = t.c.
        assert_eq!(join.path(3, 1), Some(vec![((3, 1), (2, 2)), ((2, 1), (1, 3))]));
        // Buffers: t needs the group column b (2), a (1) and c (3); u needs x and y.
        assert_eq!(plan.captured_columns(T), vec![1, 2, 3]);
        assert_eq!(plan.captured_columns(U), vec![1, 2]);
        assert_eq!(plan.sources(), vec![T, U]);
        // Grouping columns from two tables: not maintained.
        f.outputs = vec![(Some((1, 2)), 1), (Some((2, 2)), 2), (None, 0)];
        f.group_refs = vec![1, 2];
        assert!(decide(&f, pk1).unwrap().unwrap_err().0.contains("one table"));
        // Grouping columns on the nullable side of an outer join: not maintained.
        f.outputs = vec![(Some((1, 2)), 1), (None, 0)];
        f.group_refs = vec![1];
        f.inner_only = false;
        f.nullable = vec![1];
        assert!(decide(&f, pk1).unwrap().unwrap_err().0.contains("preserved side"));
        f.nullable = vec![2, 3];
        assert!(matches!(decide(&f, pk1).unwrap().unwrap().shape, Shape::GroupsOverJoin { group_rte: 1 }));
    }

    #[test]
    fn grouping_by_two_primary_keys_recomputes_by_the_referencing_table() {
        // SELECT t.a, u.a, count(*) FROM t JOIN u ON ... GROUP BY t.a, u.a
        let mut f = facts();
        f.has_aggs = true;
        f.has_group = true;
        f.relations = vec![(1, T, pg_sys::RELKIND_RELATION), (2, U, pg_sys::RELKIND_RELATION)];
        f.outputs = vec![(Some((1, 1)), 1), (Some((2, 1)), 2), (None, 0)];
        f.group_refs = vec![1, 2];
        // t.c = u.a: each t row references one u row; groups are t's rows.
        f.equalities = vec![((1, 3), (2, 1))];
        assert_eq!(decide(&f, pk1).unwrap().unwrap().shape, Shape::GroupsOverJoin { group_rte: 1 });
        // u.b = t.a: the other way round.
        f.equalities = vec![((2, 2), (1, 1))];
        assert_eq!(decide(&f, pk1).unwrap().unwrap().shape, Shape::GroupsOverJoin { group_rte: 2 });
    }

    #[test]
    fn windows_are_keyed_by_their_selected_partition_columns() {
        // Partitioned by column 3 of the table, the second output.
        let mut f = facts();
        f.window_partition = Some(vec![(1, 3)]);
        let plan = decide(&f, pk1).unwrap().unwrap();
        assert_eq!(plan.shape, Shape::Window);
        assert_eq!(plan.key, vec![key(2, 1, T, 3)]);
        // A partition column the select list does not show.
        f.window_partition = Some(vec![(1, 2)]);
        assert!(decide(&f, pk1).unwrap().unwrap_err().0.starts_with("window functions are maintained"));
        // Over a join not connected by = to the partitioning table.
        f.window_partition = Some(vec![(1, 3)]);
        f.relations.push((2, U, pg_sys::RELKIND_RELATION));
        assert!(decide(&f, pk1).unwrap().unwrap_err().0.starts_with("window functions are maintained"));
        // Connected: the other table's changes followed to its partitions.
        f.equalities = vec![((2, 1), (1, 2))];
        let plan = decide(&f, pk1).unwrap().unwrap();
        assert_eq!(plan.shape, Shape::Window);
        assert_eq!(plan.followed(), vec![(2, U, 1, vec![((2, 1), (1, 2))])]);
        assert_eq!(plan.captured_columns(U), vec![1]);
        // Not with the partitioning table on the nullable side.
        f.nullable = vec![1];
        assert!(decide(&f, pk1).unwrap().unwrap_err().0.starts_with("window functions are maintained"));
    }

    #[test]
    fn unsupported_constructs_are_named() {
        let mut f = facts();
        f.features = vec!["window functions"];
        assert!(decide(&f, pk1).unwrap().unwrap_err().0.starts_with("window functions"));
        let mut f = facts();
        f.volatile = true;
        assert!(decide(&f, pk1).unwrap().unwrap_err().0.contains("volatile"));
        let mut f = facts();
        f.has_distinct = true;
        f.outputs = vec![(Some((1, 1)), 1), (None, 2)];
        assert!(decide(&f, pk1).unwrap().unwrap_err().0.contains("DISTINCT"));
        let mut f = facts();
        f.relations = vec![(1, T, pg_sys::RELKIND_VIEW)];
        assert!(decide(&f, pk1).unwrap().unwrap_err().0.contains("not a table"));
    }

    #[test]
    fn nullable_tables_follow_their_own_on_clauses() {
        // a (1) JOIN x (4) ON x.id = a.k LEFT JOIN b (2) ON b.k = x.k
        // LEFT JOIN c (3) ON c.id = b.v, and an = of c's column with a's
        // that only c's ON reads (b cannot leave through it).
        let mut f = facts();
        f.equalities = vec![((4, 1), (1, 3)), ((2, 3), (4, 3)), ((3, 1), (2, 4)), ((3, 2), (2, 5))];
        f.left_ons = vec![(2, vec![((2, 3), (4, 3))]), (3, vec![((3, 1), (2, 4)), ((3, 2), (2, 5))])];
        let preserved = [1, 4];
        assert_eq!(outer_path(&f, &preserved, 2, 1), Some(vec![((2, 3), (4, 3)), ((4, 1), (1, 3))]));
        assert_eq!(
            outer_path(&f, &preserved, 3, 1),
            Some(vec![((3, 1), (2, 4)), ((2, 3), (4, 3)), ((4, 1), (1, 3))])
        );
        // b's ON compares nothing with =: c's condition on b does not
        // lead b back (a NULL-extended c keeps b's row).
        f.left_ons[0].1.clear();
        assert_eq!(outer_path(&f, &preserved, 2, 1), None);
        assert_eq!(outer_path(&f, &preserved, 3, 1), None);
        // a CROSS JOIN x LEFT JOIN b ON b.c2 = x.c1 LEFT JOIN c ON c.c2 =
        // b.c1 AND x.c3 = a.c1: c's condition between x and a is no step
        // between the preserved tables (a NULL-extended c does not pass it).
        let mut f = facts();
        f.equalities = vec![((2, 2), (4, 1)), ((3, 2), (2, 1)), ((4, 3), (1, 1))];
        f.left_ons = vec![(2, vec![((2, 2), (4, 1))]), (3, vec![((3, 2), (2, 1))])];
        f.outer_on_equalities = f.equalities.clone();
        assert_eq!(outer_path(&f, &preserved, 2, 1), None);
        f.outer_on_equalities.pop();
        assert_eq!(outer_path(&f, &preserved, 2, 1), Some(vec![((2, 2), (4, 1)), ((4, 3), (1, 1))]));
    }
}
