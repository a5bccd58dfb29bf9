//! Running totals over rows that fall into slices: count/sum/avg of a query
//! whose rows come from joins, subqueries in expressions (EXISTS, IN,
//! scalar subqueries), outer joins or grouped subqueries in FROM, none of
//! which running totals over an inner join (`join_totals`) can follow.
//!
//! A *slice* is one value `v` of a column of one table reference, the
//! root, that `=` conditions carry to other references: a reference is
//! *chained* by column `c` when every row of it that takes part in an
//! output row of slice `v` (joined, matched by an outer join, or looked at
//! by a subquery for it) has `c = v`. The conditions that chain: `=` ANDed
//! at the top of a WHERE or of an inner join's ON, both ways; an outer
//! join's ON, from the preserved side to the nullable one; a subquery's
//! correlated `=`, from the outer reference in; `x IN (SELECT c ...)`
//! ANDed at the top of a WHERE, from `x` to `c`. A grouped subquery in FROM
//! keeps its rows in their slices only when it groups by a chained column.
//!
//! Then the query's rows of slice `v` depend on the chained references'
//! rows of slice `v` and on the rest of the tables, read whole. When the
//! changes touch only chained references, the slices they touch, `K`, are
//! the chained columns' values in the changed rows (old and new), and
//!
//! ```text
//! Δ rows = rows(new state restricted to K) - rows(old state restricted to K)
//! ```
//!
//! where a chained reference is restricted to `c = ANY(K)` and its old
//! state is the table minus the rows whose primary key changed plus their
//! old images (from the net change rows, which the same GROUP BY that
//! cancels an UPDATE of unread columns computes). The signed rows are
//! added to the totals like a join's. A change of a table that has an
//! unchained reference (read whole, or by a subquery without such an `=`)
//! could change any slice: the plan lists it in `full_on`, and a refresh
//! it changed recomputes the whole query.
//!
//! Fewer slices are touched than the changed rows name: an image that
//! fails its reference's [`Condition`]s takes part in no output row, and a
//! reference alone in an `EXISTS` correlated by its chained column touches
//! a slice only when the subquery's answer there changes (counted by
//! index, see [`SliceRef::exists_own`]).
//!
//! Each side reads every chained table by index through `c = ANY(K)`: the
//! cost follows the slices touched, not the tables. TPC-H Q4 (EXISTS), Q13
//! (a grouped LEFT JOIN in FROM), Q17 (a correlated scalar subquery), Q21
//! (EXISTS and NOT EXISTS) and Q22 are such queries.

use std::collections::BTreeMap;

use pgrx::pg_sys;

use super::join_totals::{Output, Table};
use crate::error::{PgtError, PgtResult};
use crate::hooks::list_ptrs;

/// An aggregate's rows as a query over stand-ins for its table references,
/// and how each reference is restricted to the slices touched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SliceTotals {
    /// The query with the select list `__k1…` (the GROUP BY columns in
    /// output order) and `__x<output>` (each aggregate's argument), no
    /// GROUP BY, reading reference `id` as WITH query `__pgt_s<id>`.
    pub select_sql: String,
    pub refs: Vec<SliceRef>,
    /// The root reference, and its own conditions (SQL over alias `t`):
    /// a touched slice whose root row passes them neither before nor after
    /// the changes has no rows either time, and is left out.
    pub root: u32,
    pub root_filter: Option<String>,
    /// The root's column may be NULL (a grouping column, see
    /// [`chain_by_nullable_group`]): NULL is a slice too, the rows whose
    /// column IS NULL, which every lookup of the touched slices also
    /// finds when they include it.
    pub nullable_root: bool,
}

/// One table reference, anywhere in the query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SliceRef {
    pub id: u32,
    pub relid: pg_sys::Oid,
    /// Its chained column, or None when it is read whole.
    pub chain: Option<i16>,
    /// The table's columns the query reads through it.
    pub attnums: Vec<i16>,
    /// The table's primary key (empty: none, and the table is read whole).
    pub pk: Vec<i16>,
    /// Inside an EXISTS or IN subquery (see [`GraphRef::semi`]).
    pub semi: bool,
    /// What its rows must pass to take part in the query's rows (its
    /// [`GraphRef::conditions`] that read only tables read whole, ANDed),
    /// as SQL over alias `t`: a changed row whose images fail it touches
    /// no slice.
    pub relevant: Option<String>,
    /// The subquery of an `EXISTS` that reads only this reference,
    /// correlated only by its chained column (see
    /// [`GraphRef::exists_by`]): its own conditions, as SQL over alias `t`
    /// (`true` without any). A change of it touches a slice only when
    /// the subquery's answer for the slice changes.
    pub exists_own: Option<String>,
}

/// An aggregating subquery in FROM: the ids of the references under it,
/// and its grouping columns (reference id, attnum).
pub type Grouped = (Vec<u32>, Vec<(u32, i16)>);

/// What [`read`] finds in a query: its references, the conditions that may
/// chain them, and the deparsed select over stand-ins. [`chain`] picks the
/// root.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Graph {
    pub select_sql: String,
    pub refs: Vec<GraphRef>,
    pub edges: Vec<Edge>,
    /// Aggregating subqueries in FROM: the ids of the references under
    /// each, and its grouping columns.
    pub grouped: Vec<Grouped>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GraphRef {
    pub id: u32,
    pub relid: pg_sys::Oid,
    pub attnums: Vec<i16>,
    /// In FROM (of the query or of subqueries in its FROM), never on the
    /// nullable side of an outer join: every row has one of its rows.
    pub may_be_root: bool,
    /// Its columns declared NOT NULL among those the edges name.
    pub not_null: Vec<i16>,
    /// The table's columns of built-in types (compared with pg_catalog's
    /// `=` when they are its primary key).
    pub built_in: Vec<i16>,
    /// Inside an EXISTS, IN or NOT IN subquery (not a scalar one), which
    /// the planner joins (semi or anti join) to the outer rows.
    pub semi: bool,
    /// The conditions of its level's WHERE (and inner joins' ON) that read
    /// only its own columns, as SQL over alias `t` (for a possible root).
    pub own_filter: Option<String>,
    /// Conditions every row of it that takes part in the query's rows
    /// passes (see [`Condition`]).
    pub conditions: Vec<Condition>,
    /// Alone in the subquery of an `EXISTS` (or `NOT EXISTS`), whose
    /// `WHERE` is one `=` between a column of it (this attnum) and a
    /// column of the outer query, and conditions that read only its
    /// columns (this SQL over alias `t`, `true` without any); the
    /// subquery has no grouping, aggregates, `DISTINCT` or `LIMIT`.
    pub exists_by: Option<(i16, String)>,
}

/// A condition that every row of a table reference taking part in the
/// query's rows passes, as SQL over alias `t` (a row of its table): a
/// condition of its level's WHERE (or an inner join's ON) that reads only
/// its columns, when it is not on the nullable side of an outer join
/// there, or one that reads one column of another reference, carried
/// along an [`Edge`] to this one's column (its rows take part only beside
/// rows of that reference with the same value, which pass it). Such a
/// condition may read tables through uncorrelated subqueries (TPC-H Q20's
/// `ps_partkey IN (SELECT p_partkey FROM part WHERE p_name LIKE
/// 'forest%')`, carried to the lineitem of its correlated subquery by
/// `l_partkey = ps_partkey`); it holds of the tables' current state only
/// while they do not change, so it is used only when they are read whole
/// (any change of theirs recomputes the whole query).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    pub sql: String,
    /// The tables its subqueries read.
    pub reads: Vec<pg_sys::Oid>,
}

/// An `=` between two columns (reference id, attnum): `to` is chained by
/// `from`, and `from` by `to` when `both`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edge {
    pub from: (u32, i16),
    pub to: (u32, i16),
    pub both: bool,
}

/// The root that chains the most references (of those, one with
/// conditions of its own), and the chained column of each reference it
/// chains (the root included); None
/// when no reference may be the root. A root column must be NOT NULL (a
/// NULL one would be a slice no `= ANY` finds): a column the edges name
/// or an aggregating subquery around the root groups by, declared NOT
/// NULL, or the first primary key column (`key_of` gives a table's primary
/// key). (A grouping column is what lets the one table of
/// `SELECT ... FROM (SELECT g, sum(v) FROM t GROUP BY g) s WHERE ...` be
/// the root: each group, and so each output row, belongs to one slice.)
pub fn chain(g: &Graph, key_of: &dyn Fn(pg_sys::Oid) -> Vec<i16>) -> Option<(u32, BTreeMap<u32, i16>)> {
    let mut best: Option<(u32, BTreeMap<u32, i16>)> = None;
    for r in g.refs.iter().filter(|r| r.may_be_root) {
        let mut columns: Vec<i16> = Vec::new();
        let grouping = g.grouped.iter().flat_map(|(_, keys)| keys.iter().copied());
        for (id, attnum) in g.edges.iter().flat_map(|e| [e.from, e.to]).chain(grouping) {
            if id == r.id && r.not_null.contains(&attnum) && !columns.contains(&attnum) {
                columns.push(attnum);
            }
        }
        if let Some(&pk) = key_of(r.relid).first() {
            if !columns.contains(&pk) {
                columns.push(pk);
            }
        }
        for column in columns {
            let chained = reach(g, (r.id, column));
            let whole = spans_slices(g, &chained);
            // (Of roots chaining as many, one with conditions of its own
            // lets fewer slices through: see SliceTotals::root_filter.)
            // Then one chained by its whole (one-column) primary key: one
            // root row per slice, which the prefilter looks up by key.
            let better = |(id, b): &(u32, BTreeMap<u32, i16>)| {
                let filtered = |id: u32| g.refs.iter().any(|x| x.id == id && x.own_filter.is_some());
                let keyed = |id: u32, column: i16| {
                    g.refs.iter().find(|x| x.id == id).is_some_and(|x| key_of(x.relid) == [column])
                };
                let rank =
                    |id: u32, column: Option<i16>| (filtered(id), column.is_some_and(|c| keyed(id, c)));
                chained.len() > b.len()
                    || (chained.len() == b.len() && rank(r.id, Some(column)) > rank(*id, b.get(id).copied()))
            };
            if !whole && best.as_ref().is_none_or(better) {
                best = Some((r.id, chained));
            }
        }
    }
    best
}

/// When [`chain`] finds no root: a table reference under an aggregating
/// subquery (or WITH query) that groups by one of its columns that may be
/// NULL, as the root by that column (the one chaining the most references,
/// the first of those). Each group, NULL's included, then belongs to one
/// slice, provided NULL is a slice too ([`SliceTotals::nullable_root`]).
pub fn chain_by_nullable_group(g: &Graph) -> Option<(u32, BTreeMap<u32, i16>)> {
    let mut best: Option<(u32, BTreeMap<u32, i16>)> = None;
    for r in g.refs.iter().filter(|r| r.may_be_root) {
        let columns = g.grouped.iter().flat_map(|(_, keys)| keys.iter()).filter(|(id, _)| *id == r.id);
        for &(_, column) in columns {
            let chained = reach(g, (r.id, column));
            let whole = spans_slices(g, &chained);
            if !whole && best.as_ref().is_none_or(|(_, b)| chained.len() > b.len()) {
                best = Some((r.id, chained));
            }
        }
    }
    best
}

/// Does an aggregating subquery in FROM group rows of several slices
/// together: it reads a chained reference but groups by none of the
/// chained columns?
fn spans_slices(g: &Graph, chained: &BTreeMap<u32, i16>) -> bool {
    g.grouped.iter().any(|(members, keys)| {
        members.iter().any(|m| chained.contains_key(m))
            && !keys.iter().any(|(id, attnum)| chained.get(id) == Some(attnum))
    })
}

/// The references `root` chains along the edges, each with its column.
fn reach(g: &Graph, root: (u32, i16)) -> BTreeMap<u32, i16> {
    let mut chained = BTreeMap::from([root]);
    loop {
        let mut grew = false;
        for e in &g.edges {
            for (a, b, ok) in [(e.from, e.to, true), (e.to, e.from, e.both)] {
                if ok && chained.get(&a.0) == Some(&a.1) && !chained.contains_key(&b.0) {
                    chained.insert(b.0, b.1);
                    grew = true;
                }
            }
        }
        if !grew {
            return chained;
        }
    }
}

/// Ids apart between query levels.
const LEVEL_SPAN: u32 = 1000;

/// One query level: the top, a subquery in FROM or a subquery in an
/// expression.
struct Level {
    q: *mut pg_sys::Query,
    parent: Option<usize>,
    /// Query levels above it (a stand-in's `ctelevelsup`).
    depth: u32,
    /// Its FROM is the query's (the top, or a subquery in the FROM of one
    /// that is, not on the nullable side of an outer join).
    main: bool,
    /// A subquery in FROM.
    from: bool,
    /// The subquery of an EXISTS, whose select list is not read.
    exists: bool,
    /// The nearest subquery in an expression around it (itself included)
    /// is an EXISTS, IN or NOT IN one.
    semi: bool,
}

struct Walk {
    levels: Vec<Level>,
    /// (level, range table index) of a subquery in FROM -> its level.
    children: std::collections::HashMap<(usize, u32), usize>,
    /// SubLink -> its subquery's level.
    sublinks: std::collections::HashMap<usize, usize>,
    /// (level, range table index) -> columns read, for table references.
    columns: BTreeMap<(usize, u32), Vec<i16>>,
}

impl Walk {
    fn rtable(&self, level: usize) -> Vec<*mut pg_sys::RangeTblEntry> {
        // SAFETY: every level's q is a valid Query.
        unsafe { list_ptrs::<pg_sys::RangeTblEntry>((*self.levels[level].q).rtable) }
    }

    fn ancestor(&self, mut level: usize, up: u32) -> Option<usize> {
        for _ in 0..up {
            level = self.levels[level].parent?;
        }
        Some(level)
    }

    /// Whether `level` is `top` or a level under it.
    fn under(&self, mut level: usize, top: usize) -> bool {
        loop {
            if level == top {
                return true;
            }
            match self.levels[level].parent {
                Some(p) => level = p,
                None => return false,
            }
        }
    }

    fn id(level: usize, rti: u32) -> u32 {
        level as u32 * LEVEL_SPAN + rti
    }

    /// The expression roots of a level: select list (unless it is not
    /// read), FROM and WHERE, HAVING.
    unsafe fn roots(&self, level: usize) -> [*mut pg_sys::Node; 3] {
        // SAFETY: q is a valid Query.
        unsafe {
            let l = &self.levels[level];
            let q = &*l.q;
            let select = if l.exists { std::ptr::null_mut() } else { q.targetList as *mut pg_sys::Node };
            [select, q.jointree as *mut pg_sys::Node, q.havingQual]
        }
    }

    /// Record the table columns an expression of `level` reads (through
    /// join alias columns and grouped columns); false for a whole-row or
    /// system column reference, or a reference it cannot follow.
    unsafe fn record(&mut self, level: usize, node: *mut pg_sys::Node) -> bool {
        // SAFETY: nodes are read according to their tags.
        unsafe {
            let mut vars: Vec<(usize, *mut pg_sys::Var)> = Vec::new();
            let mut ok = true;
            crate::hooks::nodes::walk(node, |n| {
                if (*n).type_ == pg_sys::NodeTag::T_Var {
                    vars.push((level, n as *mut pg_sys::Var));
                }
                true
            });
            while let Some((at, var)) = vars.pop() {
                let var = &*var;
                let Some(target) = self.ancestor(at, var.varlevelsup) else { return false };
                let rtable = self.rtable(target);
                if var.varno < 1 || var.varno as usize > rtable.len() || var.varattno <= 0 {
                    return false;
                }
                let rte = &*rtable[var.varno as usize - 1];
                let follow = match rte.rtekind {
                    pg_sys::RTEKind::RTE_RELATION => {
                        let cols = self.columns.entry((target, var.varno as u32)).or_default();
                        if !cols.contains(&var.varattno) {
                            cols.push(var.varattno);
                        }
                        None
                    }
                    pg_sys::RTEKind::RTE_JOIN => {
                        list_ptrs::<pg_sys::Node>(rte.joinaliasvars).get(var.varattno as usize - 1).copied()
                    }
                    pg_sys::RTEKind::RTE_GROUP => {
                        list_ptrs::<pg_sys::Node>(rte.groupexprs).get(var.varattno as usize - 1).copied()
                    }
                    // (The subquery's own select list is recorded with it.)
                    pg_sys::RTEKind::RTE_SUBQUERY => None,
                    _ => {
                        ok = false;
                        None
                    }
                };
                if let Some(expr) = follow {
                    crate::hooks::nodes::walk(expr, |n| {
                        if (*n).type_ == pg_sys::NodeTag::T_Var {
                            vars.push((target, n as *mut pg_sys::Var));
                        }
                        true
                    });
                }
            }
            ok
        }
    }

    /// The table column (reference id, attnum) a plain column of `level`
    /// is, followed through join alias columns, grouped columns and the
    /// select lists of subqueries in FROM; and the level the column
    /// belongs to (an outer reference names an enclosing level).
    unsafe fn column(&self, level: usize, expr: *mut pg_sys::Node) -> Option<((u32, i16), usize)> {
        // SAFETY: nodes are read according to their tags.
        unsafe {
            if expr.is_null() || (*expr).type_ != pg_sys::NodeTag::T_Var {
                return None;
            }
            let var = &*(expr as *mut pg_sys::Var);
            let first = self.ancestor(level, var.varlevelsup)?;
            let (mut at, mut node) = (first, expr);
            for _ in 0..64 {
                if node.is_null() || (*node).type_ != pg_sys::NodeTag::T_Var {
                    return None;
                }
                let v = &*(node as *mut pg_sys::Var);
                if at != first || node != expr {
                    // (Followed expressions are of their own level.)
                    if v.varlevelsup != 0 {
                        return None;
                    }
                }
                let rtable = self.rtable(at);
                if v.varno < 1 || v.varno as usize > rtable.len() || v.varattno <= 0 {
                    return None;
                }
                let rte = &*rtable[v.varno as usize - 1];
                match rte.rtekind {
                    pg_sys::RTEKind::RTE_RELATION => {
                        return Some(((Self::id(at, v.varno as u32), v.varattno), first))
                    }
                    pg_sys::RTEKind::RTE_JOIN => {
                        node = *list_ptrs::<pg_sys::Node>(rte.joinaliasvars).get(v.varattno as usize - 1)?;
                    }
                    pg_sys::RTEKind::RTE_GROUP => {
                        node = *list_ptrs::<pg_sys::Node>(rte.groupexprs).get(v.varattno as usize - 1)?;
                    }
                    pg_sys::RTEKind::RTE_SUBQUERY => {
                        let child = *self.children.get(&(at, v.varno as u32))?;
                        let tle = list_ptrs::<pg_sys::TargetEntry>((*self.levels[child].q).targetList)
                            .into_iter()
                            .find(|t| (**t).resno == v.varattno)?;
                        node = (*tle).expr as *mut pg_sys::Node;
                        at = child;
                    }
                    _ => return None,
                }
            }
            None
        }
    }
}

/// A copy of `q` whose WITH queries are read in place: each reference to
/// one becomes a subquery in FROM holding a copy of its query, which reads
/// the same rows (the stored query is deterministic, or refused before).
/// None when the query is recursive, a WITH query modifies data, or one is
/// referenced from anywhere but the top level's FROM (another WITH query,
/// a subquery).
unsafe fn with_ctes_in_place(q: *mut pg_sys::Query) -> Option<*mut pg_sys::Query> {
    // SAFETY: q is a Query node; the copy's range table entries are
    // changed in place, in the current memory context.
    unsafe {
        if (*q).hasRecursive || (*q).hasModifyingCTE {
            return None;
        }
        let copy = crate::hooks::nodes::copy_node(q);
        let ctes = list_ptrs::<pg_sys::CommonTableExpr>((*copy).cteList);
        let mut references = vec![0; ctes.len()];
        for rte in list_ptrs::<pg_sys::RangeTblEntry>((*copy).rtable) {
            if (*rte).rtekind != pg_sys::RTEKind::RTE_CTE {
                continue;
            }
            let name = crate::hooks::cstr((*rte).ctename);
            let i = ctes.iter().position(|c| crate::hooks::cstr((**c).ctename) == name)?;
            let inner = (*ctes[i]).ctequery;
            if (*rte).ctelevelsup != 0
                || (*rte).self_reference
                || inner.is_null()
                || (*inner).type_ != pg_sys::NodeTag::T_Query
                || (*(inner as *mut pg_sys::Query)).commandType != pg_sys::CmdType::CMD_SELECT
            {
                return None;
            }
            (*rte).rtekind = pg_sys::RTEKind::RTE_SUBQUERY;
            (*rte).subquery = crate::hooks::nodes::copy_node(inner as *mut pg_sys::Query);
            (*rte).ctename = std::ptr::null_mut();
            references[i] += 1;
        }
        // (cterefcount counts every reference, those elsewhere too.)
        if ctes.iter().zip(&references).any(|(c, n)| (**c).cterefcount != *n) {
            return None;
        }
        (*copy).cteList = std::ptr::null_mut();
        Some(copy)
    }
}

/// Whether a query level is a SELECT with a FROM and none of: set
/// operations, window functions, set-returning functions in its select
/// list, grouping sets, DISTINCT ON, FOR UPDATE/SHARE, a WITH list.
fn plain_level(q: &pg_sys::Query) -> bool {
    q.commandType == pg_sys::CmdType::CMD_SELECT
        && q.setOperations.is_null()
        && !q.hasWindowFuncs
        && !q.hasTargetSRFs
        && q.groupingSets.is_null()
        && !q.hasDistinctOn
        && q.rowMarks.is_null()
        && q.cteList.is_null()
        && !q.jointree.is_null()
}

/// Whether a subquery cannot be read as a level: not [`plain_level`], a
/// LIMIT or OFFSET, or (in FROM) DISTINCT.
unsafe fn refused_level(q: *mut pg_sys::Query, from: bool) -> bool {
    // SAFETY: q is a Query node.
    unsafe {
        let q = &*q;
        !plain_level(q)
            || !q.limitCount.is_null()
            || !q.limitOffset.is_null()
            || (from && !q.distinctClause.is_null())
    }
}

/// The range table indexes under a FROM item (joins included).
unsafe fn rtis_under(n: *mut pg_sys::Node, out: &mut Vec<u32>) {
    // SAFETY: FROM items are RangeTblRef or JoinExpr nodes.
    unsafe {
        if n.is_null() {
            return;
        }
        match (*n).type_ {
            pg_sys::NodeTag::T_RangeTblRef => out.push((*(n as *mut pg_sys::RangeTblRef)).rtindex as u32),
            pg_sys::NodeTag::T_JoinExpr => {
                let j = &*(n as *mut pg_sys::JoinExpr);
                out.push(j.rtindex as u32);
                rtis_under(j.larg, out);
                rtis_under(j.rarg, out);
            }
            _ => {}
        }
    }
}

/// How a clause's `=` conditions chain.
enum Clause {
    /// WHERE, or an inner join's ON.
    Inner,
    /// An outer join's ON: the range table indexes of its nullable side.
    Outer(Vec<u32>),
}

/// The clauses of a level's FROM and WHERE, and the range table indexes on
/// the nullable side of an outer join.
unsafe fn clauses(q: *mut pg_sys::Query) -> (Vec<(Clause, *mut pg_sys::Node)>, Vec<u32>) {
    // SAFETY: the jointree holds FromExpr, JoinExpr and RangeTblRef nodes.
    unsafe {
        let jt = (*q).jointree;
        let mut out = vec![(Clause::Inner, (*jt).quals)];
        let mut nullable = Vec::new();
        let mut items = list_ptrs::<pg_sys::Node>((*jt).fromlist);
        while let Some(item) = items.pop() {
            if item.is_null() || (*item).type_ != pg_sys::NodeTag::T_JoinExpr {
                continue;
            }
            let j = &*(item as *mut pg_sys::JoinExpr);
            items.push(j.larg);
            items.push(j.rarg);
            let mut side = Vec::new();
            match j.jointype {
                pg_sys::JoinType::JOIN_INNER => out.push((Clause::Inner, j.quals)),
                pg_sys::JoinType::JOIN_LEFT => {
                    rtis_under(j.rarg, &mut side);
                    nullable.extend(side.iter().copied());
                    out.push((Clause::Outer(side), j.quals));
                }
                pg_sys::JoinType::JOIN_RIGHT => {
                    rtis_under(j.larg, &mut side);
                    nullable.extend(side.iter().copied());
                    out.push((Clause::Outer(side), j.quals));
                }
                _ => {
                    rtis_under(j.larg, &mut nullable);
                    rtis_under(j.rarg, &mut nullable);
                }
            }
        }
        (out, nullable)
    }
}

/// Whether `=` (`op`) between `l` and `r` compares values of one built-in
/// type with its own equality, under a deterministic collation: then
/// `c = ANY(K)` finds exactly the rows equal to a value of K.
pub(super) unsafe fn plain_equality(
    opno: pg_sys::Oid,
    inputcollid: pg_sys::Oid,
    l: *mut pg_sys::Node,
    r: *mut pg_sys::Node,
) -> bool {
    // SAFETY: l and r are expressions; the type cache entry is read only.
    unsafe {
        let ty = pg_sys::exprType(l);
        if ty != pg_sys::exprType(r) || ty.to_u32() >= pg_sys::FirstNormalObjectId {
            return false;
        }
        let tc = pg_sys::lookup_type_cache(ty, pg_sys::TYPECACHE_EQ_OPR as i32);
        if tc.is_null() || (*tc).eq_opr != opno {
            return false;
        }
        let deterministic =
            |c: pg_sys::Oid| c == pg_sys::InvalidOid || pg_sys::get_collation_isdeterministic(c);
        deterministic(inputcollid)
            && deterministic(pg_sys::exprCollation(l))
            && deterministic(pg_sys::exprCollation(r))
    }
}

/// Read an aggregate query (at its top: GROUP BY or aggregates, no HAVING,
/// DISTINCT, window or WITH; `ORDER BY ... LIMIT` aside) as a [`Graph`];
/// `outputs` are its grouping columns and aggregate arguments. Also a
/// filter and projection, whose outputs are all given as grouping columns.
/// None when some part of it cannot be read.
///
/// # Safety
/// `q` is the analyzed stored query of an open relation.
pub unsafe fn read(q: *mut pg_sys::Query, outputs: &[Output]) -> Option<Graph> {
    // SAFETY: the query is copied; the copy is read by tag, then changed
    // (palloc'd in the current memory context) and deparsed.
    unsafe {
        if !(*q).cteList.is_null() {
            return read(with_ctes_in_place(q)?, outputs);
        }
        let top = &*q;
        // (Without aggregates: the rows of a filter and projection, every
        // output given as a grouping column; see analysis::Multiset.)
        if !top.hasAggs && top.groupClause.is_null() && !outputs.iter().all(|o| o.grouped) {
            return None;
        }
        // (ORDER BY ... LIMIT n is the plan's TopK.)
        if !plain_level(top)
            || !top.havingQual.is_null()
            || !top.distinctClause.is_null()
            || !top.limitOffset.is_null()
        {
            return None;
        }
        // (An output's subquery would be deparsed from the original, whose
        // tables are not stand-ins.)
        let mut sublink = false;
        for o in outputs {
            crate::hooks::nodes::walk(o.expr, |n| {
                sublink |= (*n).type_ == pg_sys::NodeTag::T_SubLink;
                !sublink
            });
        }
        if sublink {
            return None;
        }
        let copy = crate::hooks::nodes::copy_node(q);
        let mut w = Walk {
            levels: vec![Level {
                q: copy,
                parent: None,
                depth: 0,
                main: true,
                from: false,
                exists: false,
                semi: false,
            }],
            children: Default::default(),
            sublinks: Default::default(),
            columns: Default::default(),
        };
        // Every level, breadth first; the table references and the
        // columns read.
        let mut refs: Vec<(usize, u32, pg_sys::Oid, bool)> = Vec::new();
        let mut edges: Vec<Edge> = Vec::new();
        let mut i = 0;
        while i < w.levels.len() {
            let level = &w.levels[i];
            let (lq, depth, main, semi) = (level.q, level.depth, level.main, level.semi);
            if i > 0 && refused_level(lq, level.from) {
                return None;
            }
            let (level_clauses, nullable) = clauses(lq);
            for (k, rte) in w.rtable(i).into_iter().enumerate() {
                let rti = k as u32 + 1;
                if rti >= LEVEL_SPAN {
                    return None;
                }
                match (*rte).rtekind {
                    pg_sys::RTEKind::RTE_RELATION => {
                        let kind = (*rte).relkind as u8;
                        if kind != pg_sys::RELKIND_RELATION && kind != pg_sys::RELKIND_PARTITIONED_TABLE {
                            return None;
                        }
                        // (A stand-in would read every row.)
                        if !(*rte).tablesample.is_null() {
                            return None;
                        }
                        refs.push((i, rti, (*rte).relid, main && !nullable.contains(&rti)));
                    }
                    pg_sys::RTEKind::RTE_JOIN | pg_sys::RTEKind::RTE_GROUP => {}
                    pg_sys::RTEKind::RTE_SUBQUERY if !(*rte).lateral && !(*rte).subquery.is_null() => {
                        let child = w.levels.len();
                        w.levels.push(Level {
                            q: (*rte).subquery,
                            parent: Some(i),
                            depth: depth + 1,
                            main: main && !nullable.contains(&rti),
                            from: true,
                            exists: false,
                            semi,
                        });
                        w.children.insert((i, rti), child);
                    }
                    _ => return None,
                }
            }
            // Subqueries in expressions, and those that are conditions
            // ANDed at the top of a WHERE or an inner join's ON.
            let mut conditions: Vec<*mut pg_sys::Node> = Vec::new();
            for (clause, quals) in &level_clauses {
                if matches!(clause, Clause::Inner) {
                    conditions.extend(super::analysis::and_args(*quals));
                }
            }
            let mut found: Vec<*mut pg_sys::SubLink> = Vec::new();
            for root in w.roots(i) {
                crate::hooks::nodes::walk(root, |n| {
                    if (*n).type_ == pg_sys::NodeTag::T_SubLink {
                        found.push(n as *mut pg_sys::SubLink);
                    }
                    true
                });
            }
            for sublink in found {
                let sl = &*sublink;
                if !matches!(
                    sl.subLinkType,
                    pg_sys::SubLinkType::EXISTS_SUBLINK
                        | pg_sys::SubLinkType::ANY_SUBLINK
                        | pg_sys::SubLinkType::ALL_SUBLINK
                        | pg_sys::SubLinkType::EXPR_SUBLINK
                ) {
                    return None;
                }
                let sub = sl.subselect as *mut pg_sys::Query;
                if sub.is_null() || (*sub).type_ != pg_sys::NodeTag::T_Query {
                    return None;
                }
                let child = w.levels.len();
                // (An EXISTS subquery with GROUP BY or HAVING still reads
                // its select list's columns there.)
                let exists = sl.subLinkType == pg_sys::SubLinkType::EXISTS_SUBLINK;
                let semi = sl.subLinkType != pg_sys::SubLinkType::EXPR_SUBLINK;
                w.levels.push(Level {
                    q: sub,
                    parent: Some(i),
                    depth: depth + 1,
                    main: false,
                    from: false,
                    exists,
                    semi,
                });
                w.sublinks.insert(sublink as usize, child);
            }
            for root in w.roots(i) {
                if !w.record(i, root) {
                    return None;
                }
            }
            // `=` conditions of this level's clauses.
            for (clause, quals) in &level_clauses {
                for n in super::analysis::and_args(*quals) {
                    if (*n).type_ != pg_sys::NodeTag::T_OpExpr {
                        continue;
                    }
                    let op = &*(n as *mut pg_sys::OpExpr);
                    let [l, r] = list_ptrs::<pg_sys::Node>(op.args)[..] else { continue };
                    if !plain_equality(op.opno, op.inputcollid, l, r) {
                        continue;
                    }
                    let (Some((a, at)), Some((b, bt))) = (w.column(i, l), w.column(i, r)) else { continue };
                    if a.0 == b.0 {
                        continue;
                    }
                    let top_varno = |e: *mut pg_sys::Node| (*(e as *mut pg_sys::Var)).varno as u32;
                    let edge = match clause {
                        Clause::Inner if at == i && bt == i => Some(Edge { from: a, to: b, both: true }),
                        Clause::Inner if at == i => Some(Edge { from: b, to: a, both: false }),
                        Clause::Inner if bt == i => Some(Edge { from: a, to: b, both: false }),
                        Clause::Inner => None,
                        Clause::Outer(side) => {
                            let on_side =
                                |e: *mut pg_sys::Node, t: usize| t == i && side.contains(&top_varno(e));
                            match (on_side(l, at), on_side(r, bt)) {
                                (false, true) => Some(Edge { from: a, to: b, both: false }),
                                (true, false) => Some(Edge { from: b, to: a, both: false }),
                                _ => None,
                            }
                        }
                    };
                    edges.extend(edge);
                }
            }
            // `x IN (SELECT c ...)` conditions: from x to c.
            for n in conditions {
                if (*n).type_ != pg_sys::NodeTag::T_SubLink {
                    continue;
                }
                let sl = &*(n as *mut pg_sys::SubLink);
                let Some(&child) = w.sublinks.get(&(n as usize)) else { continue };
                if sl.subLinkType != pg_sys::SubLinkType::ANY_SUBLINK {
                    continue;
                }
                let targets =
                    list_ptrs::<pg_sys::TargetEntry>((*sl.subselect.cast::<pg_sys::Query>()).targetList);
                for t in super::analysis::and_args(sl.testexpr) {
                    if (*t).type_ != pg_sys::NodeTag::T_OpExpr {
                        continue;
                    }
                    let op = &*(t as *mut pg_sys::OpExpr);
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
                    let inner = (**tle).expr as *mut pg_sys::Node;
                    if !plain_equality(op.opno, op.inputcollid, outer, inner) {
                        continue;
                    }
                    if let (Some((a, _)), Some((b, bt))) = (w.column(i, outer), w.column(child, inner)) {
                        if bt == child && a.0 != b.0 {
                            edges.push(Edge { from: a, to: b, both: false });
                        }
                    }
                }
            }
            i += 1;
        }
        // Aggregating subqueries in FROM: their references, and their
        // grouping columns.
        let mut grouped = Vec::new();
        for (level, l) in w.levels.iter().enumerate() {
            let lq = &*l.q;
            let aggregating = lq.hasAggs || !lq.groupClause.is_null();
            if !l.from || !aggregating {
                continue;
            }
            let members: Vec<u32> = refs
                .iter()
                .filter(|(at, ..)| w.under(*at, level))
                .map(|(at, rti, ..)| Walk::id(*at, *rti))
                .collect();
            let mut keys = Vec::new();
            for sgc in list_ptrs::<pg_sys::SortGroupClause>(lq.groupClause) {
                let tle = list_ptrs::<pg_sys::TargetEntry>(lq.targetList)
                    .into_iter()
                    .find(|t| (**t).ressortgroupref == (*sgc).tleSortGroupRef);
                if let Some(tle) = tle {
                    if let Some((col, at)) = w.column(level, (*tle).expr as *mut pg_sys::Node) {
                        if at == level {
                            keys.push(col);
                        }
                    }
                }
            }
            grouped.push((members, keys));
        }
        // (Deparsed before the copy's references become stand-ins.)
        let mut conditions = relevance(&w, &refs, &edges);
        let mut graph_refs = Vec::new();
        for &(level, rti, relid, may_be_root) in &refs {
            let id = Walk::id(level, rti);
            let mut attnums = w.columns.get(&(level, rti)).cloned().unwrap_or_default();
            attnums.sort_unstable();
            // Net change rows are grouped by every column read.
            for &a in &attnums {
                let ty = pg_sys::get_atttype(relid, a);
                let tc = pg_sys::lookup_type_cache(ty, pg_sys::TYPECACHE_EQ_OPR as i32);
                if tc.is_null() || (*tc).eq_opr == pg_sys::InvalidOid {
                    return None;
                }
            }
            // (The grouping columns of aggregating subqueries around it
            // may chain it too: see chain.)
            let grouping = grouped.iter().flat_map(|(_, keys)| keys.iter().copied());
            let mut not_null = Vec::new();
            for (rid, a) in edges.iter().flat_map(|e| [e.from, e.to]).chain(grouping) {
                if rid == id && !not_null.contains(&a) && super::analysis::column_not_null(relid, a) {
                    not_null.push(a);
                }
            }
            let built_in = built_in_columns(relid)?;
            let semi = w.levels[level].semi;
            let own_filter = if may_be_root { own_filter(w.levels[level].q, rti, relid) } else { None };
            let exists_by = if w.levels[level].exists { exists_by(w.levels[level].q, relid) } else { None };
            graph_refs.push(GraphRef {
                id,
                relid,
                attnums,
                may_be_root,
                not_null,
                built_in,
                semi,
                own_filter,
                conditions: conditions.remove(&id).unwrap_or_default(),
                exists_by,
            });
        }
        // The select list: grouping columns, then arguments.
        let select_sql = deparse(q, copy, &w, &refs, outputs)?;
        Some(Graph { select_sql, refs: graph_refs, edges, grouped })
    }
}

/// The conditions ANDed at the top of a level's WHERE and inner joins' ON
/// that read only columns of table reference `rti` (no subquery), as SQL
/// over alias `t`; None without any.
unsafe fn own_filter(q: *mut pg_sys::Query, rti: u32, relid: pg_sys::Oid) -> Option<String> {
    // (Names outside pg_catalog are printed schema-qualified: the SQL runs
    // with that search_path.)
    let _path = crate::catalog::sys::SafeSearchPath::enter();
    // SAFETY: nodes are read according to their tags; deparse_conjunct
    // renumbers copies of the Vars.
    unsafe {
        let mut parts = Vec::new();
        for (clause, quals) in clauses(q).0 {
            if !matches!(clause, Clause::Inner) {
                continue;
            }
            for n in super::analysis::and_args(quals) {
                let mut own = true;
                let mut any = false;
                crate::hooks::nodes::walk(n, |x| {
                    match (*x).type_ {
                        pg_sys::NodeTag::T_Var => {
                            let v = &*(x as *mut pg_sys::Var);
                            own &= v.varlevelsup == 0 && v.varno as u32 == rti && v.varattno > 0;
                            any = true;
                        }
                        pg_sys::NodeTag::T_SubLink | pg_sys::NodeTag::T_Param => own = false,
                        _ => {}
                    }
                    own
                });
                if !own || !any {
                    continue;
                }
                parts.extend(deparse_conjunct(n, relid, None));
            }
        }
        (!parts.is_empty()).then(|| parts.join(" AND "))
    }
}

/// The subquery of an EXISTS that reads one table (`relid`), correlated by
/// one `=` between a column of it and a column of an outer query, its
/// other conditions reading only the table's columns: the correlated
/// column and those conditions (see [`GraphRef::exists_by`]).
unsafe fn exists_by(q: *mut pg_sys::Query, relid: pg_sys::Oid) -> Option<(i16, String)> {
    // SAFETY: q is a Query of the copy; nodes are read by tag.
    unsafe {
        let lq = &*q;
        if !super::join_totals::plain_select(lq) || lq.hasAggs || !lq.groupClause.is_null() {
            return None;
        }
        let from = list_ptrs::<pg_sys::Node>((*lq.jointree).fromlist);
        let single = from.len() == 1
            && (*from[0]).type_ == pg_sys::NodeTag::T_RangeTblRef
            && (*(from[0] as *mut pg_sys::RangeTblRef)).rtindex == 1
            && list_ptrs::<pg_sys::RangeTblEntry>(lq.rtable).len() == 1;
        if !single {
            return None;
        }
        let mut correlated: Option<i16> = None;
        for n in super::analysis::and_args((*lq.jointree).quals) {
            let mut outer = false;
            crate::hooks::nodes::walk(n, |x| {
                if (*x).type_ == pg_sys::NodeTag::T_Var {
                    outer |= (*(x as *mut pg_sys::Var)).varlevelsup != 0;
                }
                !outer
            });
            if !outer {
                // Its own condition, counted on old images too.
                if !cannot_fail(n) || pg_sys::contain_volatile_functions(n) {
                    return None;
                }
                continue;
            }
            if correlated.is_some() || (*n).type_ != pg_sys::NodeTag::T_OpExpr {
                return None;
            }
            let op = &*(n as *mut pg_sys::OpExpr);
            let [l, r] = list_ptrs::<pg_sys::Node>(op.args)[..] else { return None };
            if !plain_equality(op.opno, op.inputcollid, l, r) {
                return None;
            }
            let var = |e: *mut pg_sys::Node| {
                ((*e).type_ == pg_sys::NodeTag::T_Var).then(|| &*(e as *mut pg_sys::Var))
            };
            let (Some(a), Some(b)) = (var(l), var(r)) else { return None };
            let own = match (a.varlevelsup, b.varlevelsup) {
                (0, up) if up > 0 => a,
                (up, 0) if up > 0 => b,
                _ => return None,
            };
            if own.varno != 1 || own.varattno <= 0 {
                return None;
            }
            correlated = Some(own.varattno);
        }
        let column = correlated?;
        Some((column, own_filter(q, 1, relid).unwrap_or_else(|| "true".into())))
    }
}

/// Whether a condition evaluates on any row without raising an error:
/// built of its columns, expressions that read no column of its level
/// (constants, parameters, uncorrelated subqueries: the same for every
/// row), comparison and `LIKE` operators of built-in types, `AND`, `OR`,
/// `NOT`, `IS [NOT] NULL`, `IS [NOT] TRUE` and `IN` (a list or a
/// subquery). A condition is evaluated on changed rows the query may never
/// evaluate it on (old images, or another table's values carried to it),
/// so one that may fail (`100 / k > 1`, a cast of text) is not used.
unsafe fn cannot_fail(n: *mut pg_sys::Node) -> bool {
    // SAFETY: nodes are read according to their tags.
    unsafe {
        if n.is_null() {
            return true;
        }
        let mut reads_row = false;
        crate::hooks::nodes::walk(n, |x| {
            if (*x).type_ == pg_sys::NodeTag::T_Var && (*(x as *mut pg_sys::Var)).varlevelsup == 0 {
                reads_row = true;
            }
            !reads_row
        });
        if !reads_row {
            return true;
        }
        let comparison = |opno: pg_sys::Oid| {
            opno.to_u32() < pg_sys::FirstNormalObjectId
                && matches!(
                    crate::hooks::cstr(pg_sys::get_opname(opno)).as_deref(),
                    Some("=" | "<>" | "<" | "<=" | ">" | ">=" | "~~" | "!~~" | "~~*" | "!~~*")
                )
        };
        let all =
            |list: *mut pg_sys::List| list_ptrs::<pg_sys::Node>(list).into_iter().all(|a| cannot_fail(a));
        match (*n).type_ {
            pg_sys::NodeTag::T_Var => true,
            pg_sys::NodeTag::T_RelabelType => {
                cannot_fail((*(n as *mut pg_sys::RelabelType)).arg as *mut pg_sys::Node)
            }
            pg_sys::NodeTag::T_BoolExpr => all((*(n as *mut pg_sys::BoolExpr)).args),
            pg_sys::NodeTag::T_NullTest => {
                cannot_fail((*(n as *mut pg_sys::NullTest)).arg as *mut pg_sys::Node)
            }
            pg_sys::NodeTag::T_BooleanTest => {
                cannot_fail((*(n as *mut pg_sys::BooleanTest)).arg as *mut pg_sys::Node)
            }
            pg_sys::NodeTag::T_OpExpr => {
                let op = &*(n as *mut pg_sys::OpExpr);
                comparison(op.opno) && all(op.args)
            }
            pg_sys::NodeTag::T_ScalarArrayOpExpr => {
                let op = &*(n as *mut pg_sys::ScalarArrayOpExpr);
                comparison(op.opno) && all(op.args)
            }
            pg_sys::NodeTag::T_SubLink => {
                let sl = &*(n as *mut pg_sys::SubLink);
                sl.subLinkType == pg_sys::SubLinkType::ANY_SUBLINK && cannot_fail(sl.testexpr)
            }
            _ => false,
        }
    }
}

/// A condition ANDed at the top of a level's WHERE or an inner join's ON
/// that reads the columns of one table reference (not on the nullable
/// side of an outer join), and tables only through uncorrelated
/// subqueries; see [`Condition`].
struct Conjunct {
    node: *mut pg_sys::Node,
    id: u32,
    /// The one column it reads, if one.
    column: Option<i16>,
    reads: Vec<pg_sys::Oid>,
}

/// The [`Conjunct`]s of every level.
unsafe fn conjuncts(w: &Walk, refs: &[(usize, u32, pg_sys::Oid, bool)]) -> Vec<Conjunct> {
    // SAFETY: every level's query is a valid Query; nodes are read by tag.
    unsafe {
        let mut out = Vec::new();
        for level in 0..w.levels.len() {
            let (level_clauses, nullable) = clauses(w.levels[level].q);
            let rtable = w.rtable(level);
            for (clause, quals) in level_clauses {
                if !matches!(clause, Clause::Inner) {
                    continue;
                }
                for n in super::analysis::and_args(quals) {
                    let mut rti: Option<u32> = None;
                    let mut columns: Vec<i16> = Vec::new();
                    let mut sublinks: Vec<*mut pg_sys::SubLink> = Vec::new();
                    let mut ok = true;
                    crate::hooks::nodes::walk(n, |x| {
                        match (*x).type_ {
                            pg_sys::NodeTag::T_Var => {
                                let v = &*(x as *mut pg_sys::Var);
                                let varno = v.varno as u32;
                                if v.varlevelsup != 0 || v.varattno <= 0 || rti.is_some_and(|r| r != varno) {
                                    ok = false;
                                } else {
                                    rti = Some(varno);
                                    if !columns.contains(&v.varattno) {
                                        columns.push(v.varattno);
                                    }
                                }
                            }
                            pg_sys::NodeTag::T_SubLink => sublinks.push(x as *mut pg_sys::SubLink),
                            pg_sys::NodeTag::T_Param => {
                                ok &=
                                    (*(x as *mut pg_sys::Param)).paramkind == pg_sys::ParamKind::PARAM_SUBLINK
                            }
                            _ => {}
                        }
                        ok
                    });
                    let Some(rti) = rti else { continue };
                    if !ok
                        || rti < 1
                        || rti as usize > rtable.len()
                        || (*rtable[rti as usize - 1]).rtekind != pg_sys::RTEKind::RTE_RELATION
                        || nullable.contains(&rti)
                        || pg_sys::contain_volatile_functions(n)
                        || !cannot_fail(n)
                    {
                        continue;
                    }
                    // Subqueries: uncorrelated (no column of this level or
                    // one above it), reading tables the walk found.
                    let mut reads = Vec::new();
                    for sl in sublinks {
                        let Some(&child) = w.sublinks.get(&(sl as usize)) else {
                            ok = false;
                            break;
                        };
                        let outer = (1..=w.levels[level].depth as i32 + 1)
                            .any(|up| pg_sys::contain_vars_of_level((*sl).subselect, up));
                        if outer {
                            ok = false;
                            break;
                        }
                        for &(at, _, relid, _) in refs {
                            if w.under(at, child) && !reads.contains(&relid) {
                                reads.push(relid);
                            }
                        }
                    }
                    if ok {
                        let column = (columns.len() == 1).then(|| columns[0]);
                        out.push(Conjunct { node: n, id: Walk::id(level, rti), column, reads });
                    }
                }
            }
        }
        out
    }
}

/// Types whose `=` holds only between identical values (a condition gives
/// the same answer for both sides of it).
fn identical_when_equal(ty: pg_sys::Oid) -> bool {
    [
        pg_sys::INT2OID,
        pg_sys::INT4OID,
        pg_sys::INT8OID,
        pg_sys::OIDOID,
        pg_sys::BOOLOID,
        pg_sys::DATEOID,
        pg_sys::TIMESTAMPOID,
        pg_sys::TIMESTAMPTZOID,
        pg_sys::TEXTOID,
        pg_sys::VARCHAROID,
        pg_sys::UUIDOID,
    ]
    .contains(&ty)
}

/// The [`Condition`]s of each table reference (by id): its own conjuncts,
/// and the one-column conjuncts of others carried to it along the edges.
unsafe fn relevance(
    w: &Walk,
    refs: &[(usize, u32, pg_sys::Oid, bool)],
    edges: &[Edge],
) -> std::collections::HashMap<u32, Vec<Condition>> {
    // SAFETY: the conjuncts are nodes of the copy, read and copied by tag.
    unsafe {
        let found = conjuncts(w, refs);
        let relid_of = |id: u32| refs.iter().find(|r| Walk::id(r.0, r.1) == id).map(|r| r.2);
        // A value of column (id, a) can be carried to (id, b) when both
        // have one type of identical equal values and one collation.
        let type_of = |(id, attnum): (u32, i16)| {
            let (mut ty, mut typmod, mut collid) = (pg_sys::InvalidOid, 0, pg_sys::InvalidOid);
            let relid = relid_of(id)?;
            pg_sys::get_atttypetypmodcoll(relid, attnum, &mut ty, &mut typmod, &mut collid);
            Some((ty, collid))
        };
        let carries = |a: (u32, i16), b: (u32, i16)| match (type_of(a), type_of(b)) {
            (Some(ta), Some(tb)) => identical_when_equal(ta.0) && ta == tb,
            _ => false,
        };
        // The one-column conjuncts holding of each column.
        let mut on: BTreeMap<(u32, i16), Vec<usize>> = BTreeMap::new();
        for (k, c) in found.iter().enumerate() {
            if let Some(column) = c.column {
                on.entry((c.id, column)).or_default().push(k);
            }
        }
        loop {
            let mut grew = false;
            for e in edges {
                for (a, b, ok) in [(e.from, e.to, true), (e.to, e.from, e.both)] {
                    if !ok || !carries(a, b) {
                        continue;
                    }
                    for k in on.get(&a).cloned().unwrap_or_default() {
                        let at_b = on.entry(b).or_default();
                        if !at_b.contains(&k) {
                            at_b.push(k);
                            grew = true;
                        }
                    }
                }
            }
            if !grew {
                break;
            }
        }
        // (Subqueries' tables are named schema-qualified.)
        let _path = crate::catalog::sys::SafeSearchPath::enter();
        let mut out: std::collections::HashMap<u32, Vec<Condition>> = Default::default();
        for c in &found {
            let Some(relid) = relid_of(c.id) else { continue };
            if let Some(sql) = deparse_conjunct(c.node, relid, None) {
                out.entry(c.id).or_default().push(Condition { sql, reads: c.reads.clone() });
            }
        }
        for (&(id, column), ks) in &on {
            let Some(relid) = relid_of(id) else { continue };
            for &k in ks {
                let c = &found[k];
                if c.id == id {
                    continue; // its own, listed above
                }
                if let Some(sql) = deparse_conjunct(c.node, relid, Some(column)) {
                    let condition = Condition { sql, reads: c.reads.clone() };
                    let list = out.entry(id).or_default();
                    if !list.contains(&condition) {
                        list.push(condition);
                    }
                }
            }
        }
        out
    }
}

/// A conjunct as SQL over alias `t`, a row of table `relid`: its columns
/// read there, or its one column read as column `column` of `relid`.
unsafe fn deparse_conjunct(
    node: *mut pg_sys::Node,
    relid: pg_sys::Oid,
    column: Option<i16>,
) -> Option<String> {
    // SAFETY: the conjunct's Vars of its own level are replaced by copies
    // (its subqueries, uncorrelated, are left as they are); the deparse
    // reads the copy.
    unsafe {
        let copy = crate::hooks::nodes::mutate(node, |x| {
            if (*x).type_ == pg_sys::NodeTag::T_Var {
                let v = crate::hooks::nodes::copy_node(x as *mut pg_sys::Var);
                (*v).varno = 1;
                (*v).varnosyn = 1;
                if let Some(column) = column {
                    (*v).varattno = column;
                    (*v).varattnosyn = column;
                }
                Some(v as *mut pg_sys::Node)
            } else {
                None
            }
        });
        let context = pg_sys::deparse_context_for(c"t".as_ptr(), relid);
        crate::hooks::cstr(pg_sys::deparse_expression(copy, context, true, false))
            .map(|sql| format!("({sql})"))
    }
}

/// The columns of a table whose types are built in.
unsafe fn built_in_columns(relid: pg_sys::Oid) -> Option<Vec<i16>> {
    // SAFETY: the relation is locked by the query being read; the type
    // lookups read the catalog caches.
    unsafe {
        let natts = super::join_totals::attribute_count(relid)?;
        // (A dropped column has no type.)
        let out = (1..=natts)
            .filter(|a| {
                let ty = pg_sys::get_atttype(relid, *a);
                ty != pg_sys::InvalidOid && ty.to_u32() < pg_sys::FirstNormalObjectId
            })
            .collect();
        Some(out)
    }
}

/// The copy's select list replaced (`__k<n>`, `__x<output>`), its GROUP
/// BY, ORDER BY and LIMIT dropped, and every table reference turned into
/// a reference to WITH query `__pgt_s<id>`; deparsed.
unsafe fn deparse(
    q: *mut pg_sys::Query,
    copy: *mut pg_sys::Query,
    w: &Walk,
    refs: &[(usize, u32, pg_sys::Oid, bool)],
    outputs: &[Output],
) -> Option<String> {
    // SAFETY: see read; the copy's nodes are changed in place.
    unsafe {
        let exprs = super::join_totals::output_exprs(q, outputs);
        let entries = super::join_totals::output_entries(
            outputs,
            &list_ptrs::<pg_sys::Node>(exprs as *mut pg_sys::List),
        );
        super::join_totals::replace_select_list(copy, &entries)?;
        for &(level, rti, _, _) in refs {
            let rtable = w.rtable(level);
            let rte = rtable[rti as usize - 1];
            crate::hooks::nodes::as_cte_reference(
                rte,
                &format!("__pgt_s{}", Walk::id(level, rti)),
                w.levels[level].depth,
            )?;
        }
        crate::hooks::cstr(pg_sys::pg_get_querydef(copy, false))
    }
}

/// The columns of `source` its change rows must carry: every column read
/// through its references, their chained columns and its primary key.
pub fn columns_of(st: &SliceTotals, source: pg_sys::Oid) -> Vec<i16> {
    let mut out: Vec<i16> = Vec::new();
    for r in st.refs.iter().filter(|r| r.relid == source) {
        out.extend(r.attnums.iter().copied());
        out.extend(r.chain);
        out.extend(r.pk.iter().copied());
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// The tables whose change means recomputing the whole query: those with
/// a reference read whole, or without a primary key.
pub fn read_whole(st: &SliceTotals) -> Vec<pg_sys::Oid> {
    let mut out: Vec<pg_sys::Oid> = Vec::new();
    for r in &st.refs {
        if (r.chain.is_none() || r.pk.is_empty()) && !out.contains(&r.relid) {
            out.push(r.relid);
        }
    }
    out
}

/// The tables read whole that are dimensions of the slices: whose primary
/// key (of one column) a chained reference, or another such dimension,
/// names in an `=` (TPC-H Q21's supplier, named by lineitem, and nation,
/// named by supplier). Their rows are looked up by the slices' rows; a
/// change of one still recomputes the whole query.
pub fn dimensions(g: &Graph, st: &SliceTotals) -> Vec<pg_sys::Oid> {
    let whole = read_whole(st);
    let by_id = |id: u32| st.refs.iter().find(|r| r.id == id);
    let mut attached: Vec<u32> = st.refs.iter().filter(|r| !whole.contains(&r.relid)).map(|r| r.id).collect();
    loop {
        let mut grew = false;
        for e in &g.edges {
            for (a, b) in [(e.from, e.to), (e.to, e.from)] {
                let Some(r) = by_id(b.0) else { continue };
                if attached.contains(&a.0) && !attached.contains(&b.0) && r.pk == [b.1] {
                    attached.push(b.0);
                    grew = true;
                }
            }
        }
        if !grew {
            break;
        }
    }
    let mut out: Vec<pg_sys::Oid> = Vec::new();
    for r in &st.refs {
        let all_attached = st.refs.iter().filter(|x| x.relid == r.relid).all(|x| attached.contains(&x.id));
        if whole.contains(&r.relid) && all_attached && !out.contains(&r.relid) {
            out.push(r.relid);
        }
    }
    out
}

/// Every row of the query, each with sign +1 (to rebuild the totals).
pub fn whole_sql(st: &SliceTotals) -> PgtResult<String> {
    let tables = tables_of(st)?;
    let mut ctes = Vec::new();
    for r in &st.refs {
        ctes.push(format!("__pgt_s{} AS ({})", r.id, from_table(table(&tables, r)?, None, false)));
    }
    Ok(format!(
        "SELECT w.*, 1::pg_catalog.int8 AS __sign FROM (WITH {} {}) w",
        ctes.join(", "),
        st.select_sql
    ))
}

/// One table's change rows (see join_totals::Changes).
pub type Changes<'a> = super::join_totals::Changes<'a>;

/// The signed rows the changes add to the query's rows (`__sign`, `__k<n>`,
/// `__x<output>`): the rows of the slices they touch now, +1, and before,
/// -1. None when no table of the query changed. Every changed table must
/// have only chained references (see [`read_whole`]).
pub fn delta_sql(st: &SliceTotals, changes: &[Changes]) -> PgtResult<Option<String>> {
    let tables = tables_of(st)?;
    let changed: Vec<&Changes> =
        changes.iter().filter(|c| st.refs.iter().any(|r| r.relid == c.source)).collect();
    if changed.is_empty() {
        return Ok(None);
    }
    // Per changed table, its net change rows: each image of the columns
    // carried with the sum of its signs, images that cancel left out.
    let mut withs = Vec::new();
    let mut values = Vec::new();
    for (n, c) in changed.iter().enumerate() {
        let t = tables.get(&c.source).ok_or_else(|| PgtError::Internal("slice table columns".into()))?;
        // (slices::read refuses columns without equality: always netted.)
        withs.push(format!(
            "__pgt_net{n} AS MATERIALIZED ({})",
            super::join_totals::net_rows_sql(t, c, "__pgt_n")?
        ));
        for r in st.refs.iter().filter(|r| r.relid == c.source) {
            let chain = r.chain.ok_or_else(|| PgtError::Internal("a changed table read whole".into()))?;
            // (References of one table by one column and conditions: one
            // set of values.) An image that fails the reference's
            // conditions touches no slice through it.
            let relevant = r.relevant.as_deref();
            let column = t.column_name(chain)?;
            let value = match &r.exists_own {
                // Alone in an EXISTS correlated by its chained column: a
                // slice whose answer is the same now and before is not
                // touched. Its rows now that pass the subquery's
                // conditions, counted up to one more than the inserted
                // ones (`ins`): with more, there were some before too.
                Some(own) => format!(
                    "SELECT c.v FROM (SELECT t.{column} AS v, \
                       COALESCE(pg_catalog.sum(t.__pgt_n) FILTER (WHERE t.__pgt_n OPERATOR(pg_catalog.>) 0), 0) AS ins, \
                       COALESCE(pg_catalog.sum(t.__pgt_n) FILTER (WHERE t.__pgt_n OPERATOR(pg_catalog.<) 0), 0) AS del \
                       FROM __pgt_net{n} t WHERE {own}{also} GROUP BY 1) c \
                     CROSS JOIN LATERAL (SELECT pg_catalog.count(*) AS now FROM (SELECT FROM {table} t \
                       WHERE t.{column} OPERATOR(pg_catalog.=) c.v AND {own} LIMIT c.ins OPERATOR(pg_catalog.+) 1) y) k \
                     WHERE (k.now OPERATOR(pg_catalog.>) 0) IS DISTINCT FROM \
                           (k.now OPERATOR(pg_catalog.-) c.ins OPERATOR(pg_catalog.-) c.del OPERATOR(pg_catalog.>) 0)",
                    table = t.name,
                    also = relevant.map(|c| format!(" AND {c}")).unwrap_or_default(),
                ),
                None => format!(
                    "SELECT t.{column} AS v FROM __pgt_net{n} t{}",
                    relevant.map(|c| format!(" WHERE {c}")).unwrap_or_default()
                ),
            };
            if !values.contains(&value) {
                values.push(value);
            }
        }
    }
    let net_of = |relid: pg_sys::Oid| changed.iter().position(|c| c.source == relid);
    // (A NULL value is a slice only when the root's column may be NULL.)
    let not_null = if st.nullable_root { "" } else { " WHERE y.v IS NOT NULL" };
    let slices = |name: &str, values: &[String]| {
        format!(
            "{name} AS MATERIALIZED (SELECT pg_catalog.array_agg(DISTINCT y.v) AS k FROM ({}) y{not_null})",
            values.join(" UNION ALL ")
        )
    };
    let nullable = |r: &SliceRef| st.nullable_root && r.id == st.root;
    // The touched slices whose root row passes the root's own conditions
    // now or before (its old image).
    let root = st.refs.iter().find(|r| r.id == st.root);
    match (root, &st.root_filter) {
        (Some(root), Some(filter)) if root.chain.is_some() => {
            withs.push(slices("__pgt_touched", &values));
            let t = table(&tables, root)?;
            let c = t.column_name(root.chain.unwrap_or_default())?;
            let touched = member(&format!("t.{c}"), "__pgt_touched", nullable(root));
            let mut kept = vec![format!("SELECT t.{c} AS v FROM {} t WHERE {touched} AND {filter}", t.name)];
            if let Some(n) = net_of(root.relid) {
                // (Of the touched slices: an image failing the root's
                // conditions touched none.)
                kept.push(format!(
                    "SELECT t.{c} AS v FROM __pgt_net{n} t WHERE t.__pgt_n OPERATOR(pg_catalog.<) 0 AND {filter} \
                     AND {touched}"
                ));
            }
            withs.push(slices("__pgt_k", &kept));
        }
        _ => withs.push(slices("__pgt_k", &values)),
    }
    let mut new = Vec::new();
    let mut old = Vec::new();
    for r in &st.refs {
        let t = table(&tables, r)?;
        let restricted = match r.chain {
            Some(chain) => Some(t.column_name(chain)?),
            None => None,
        };
        let now = from_table(t, restricted.as_deref(), nullable(r));
        let before = match (net_of(r.relid), &restricted) {
            (Some(n), Some(chain)) => {
                let same_key: Vec<String> =
                    r.pk.iter()
                        .map(|a| t.column_name(*a).map(|c| format!("x.{c} OPERATOR(pg_catalog.=) t.{c}")))
                        .collect::<PgtResult<_>>()?;
                if same_key.is_empty() {
                    return Err(PgtError::Internal("a changed table without a primary key".into()));
                }
                let carried = changed[n].attnums;
                let images: Vec<String> = t
                    .columns
                    .iter()
                    .enumerate()
                    .filter_map(|(i, col)| {
                        let (name, ty) = col.as_ref()?;
                        Some(if carried.contains(&(i as i16 + 1)) {
                            format!("x.{name}")
                        } else {
                            format!("NULL::{ty} AS {name}")
                        })
                    })
                    .collect();
                // The net change rows of the touched slices (a row of
                // one now has its new image there), read per outer row
                // when the planner puts the old state in a subplan.
                // (One per table and chained column: the references of a
                // self-join by one column share it.)
                let x = format!("__pgt_x{n}_{}", r.chain.unwrap_or_default());
                let definition = format!(
                    "{x} AS MATERIALIZED (SELECT x.* FROM __pgt_net{n} x WHERE {})",
                    member(&format!("x.{chain}"), "__pgt_k", nullable(r))
                );
                if !withs.contains(&definition) {
                    withs.push(definition);
                }
                format!(
                    "{now} AND NOT EXISTS (SELECT 1 FROM {x} x WHERE {same}) \
                     UNION ALL SELECT {images} FROM {x} x WHERE x.__pgt_n OPERATOR(pg_catalog.<) 0",
                    same = same_key.join(" AND "),
                    images = images.join(", "),
                )
            }
            (Some(_), None) => return Err(PgtError::Internal("a changed table read whole".into())),
            (None, _) => now.clone(),
        };
        new.push(format!("__pgt_s{} AS ({now})", r.id));
        // An old state is a UNION ALL with an anti-join, which the planner
        // does not pull up: a join can reach it only whole, and a semi or
        // anti join of an EXISTS or IN may read it again for every outer
        // row. There it is materialized once (the touched slices' rows);
        // elsewhere it is left to the planner, which pushes the conditions
        // of a scalar subquery (per outer row) into its branches.
        let materialized = if r.semi && net_of(r.relid).is_some() { "MATERIALIZED " } else { "" };
        old.push(format!("__pgt_s{} AS {materialized}({before})", r.id));
    }
    Ok(Some(format!(
        "WITH {withs} \
         SELECT n.*, 1::pg_catalog.int8 AS __sign FROM (WITH {new} {sql}) n \
         UNION ALL SELECT o.*, (-1)::pg_catalog.int8 AS __sign FROM (WITH {old} {sql}) o",
        withs = withs.join(", "),
        new = new.join(", "),
        old = old.join(", "),
        sql = st.select_sql,
    )))
}

/// How many of the changes may touch a slice: the change rows (netted per
/// image, as [`delta_sql`] reads them) whose image passes the conditions
/// of a reference of its table (see [`SliceRef::relevant`]), as a query
/// of one number. None when every change may (a changed table has a
/// reference without conditions) or no table of the query changed.
pub fn relevant_changes_sql(st: &SliceTotals, changes: &[Changes]) -> PgtResult<Option<String>> {
    let tables = tables_of(st)?;
    let mut counts = Vec::new();
    for c in changes {
        let refs: Vec<&SliceRef> = st.refs.iter().filter(|r| r.relid == c.source).collect();
        if refs.is_empty() {
            continue;
        }
        let Some(conditions) = refs.iter().map(|r| r.relevant.clone()).collect::<Option<Vec<String>>>()
        else {
            return Ok(None);
        };
        let t = tables.get(&c.source).ok_or_else(|| PgtError::Internal("slice table columns".into()))?;
        counts.push(format!(
            "SELECT pg_catalog.abs(t.__pgt_n) AS n FROM ({}) t WHERE {}",
            super::join_totals::net_rows_sql(t, c, "__pgt_n")?,
            conditions.join(" OR ")
        ));
    }
    if counts.is_empty() {
        return Ok(None);
    }
    Ok(Some(format!("SELECT COALESCE(pg_catalog.sum(c.n), 0) FROM ({}) c", counts.join(" UNION ALL "))))
}

/// `value` is one of the slices of the WITH query `set` (its array `k`);
/// with `nullable`, a NULL value is one when `k` holds NULL.
fn member(value: &str, set: &str, nullable: bool) -> String {
    // (COALESCE: a parenthesized subquery after ANY would be its rows.)
    let any = format!("{value} OPERATOR(pg_catalog.=) ANY (COALESCE((SELECT {set}.k FROM {set}), NULL))");
    match nullable {
        false => any,
        true => format!(
            "({any} OR ({value} IS NULL AND (SELECT pg_catalog.array_position({set}.k, NULL) IS NOT NULL FROM {set})))"
        ),
    }
}

/// A stand-in reading the table: all its columns (dropped ones left out,
/// as in the deparsed reference's column list), restricted to the touched
/// slices by `chain` when given (a NULL value too with `nullable`). (Ends
/// with its WHERE, which callers may extend with AND.)
fn from_table(t: &Table, chain: Option<&str>, nullable: bool) -> String {
    let list: Vec<String> = t.columns.iter().flatten().map(|(name, _)| format!("t.{name}")).collect();
    let filter = chain
        .map(|c| format!(" WHERE {}", member(&format!("t.{c}"), "__pgt_k", nullable)))
        .unwrap_or_else(|| " WHERE true".into());
    format!("SELECT {} FROM {} t{filter}", list.join(", "), t.name)
}

fn tables_of(st: &SliceTotals) -> PgtResult<std::collections::HashMap<pg_sys::Oid, Table>> {
    Table::read_each(st.refs.iter().map(|r| r.relid))
}

fn table<'a>(
    tables: &'a std::collections::HashMap<pg_sys::Oid, Table>,
    r: &SliceRef,
) -> PgtResult<&'a Table> {
    tables.get(&r.relid).ok_or_else(|| PgtError::Internal("slice table columns".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(id: u32, root: bool, not_null: &[i16]) -> GraphRef {
        GraphRef {
            id,
            relid: pg_sys::Oid::from(16384 + id),
            attnums: Vec::new(),
            may_be_root: root,
            not_null: not_null.to_vec(),
            built_in: Vec::new(),
            semi: false,
            own_filter: None,
            conditions: Vec::new(),
            exists_by: None,
        }
    }

    /// Q4: orders (1) WHERE EXISTS (lineitem (1001) WHERE l_orderkey = o_orderkey).
    #[test]
    fn a_correlated_subquery_is_chained_from_the_outer_table() {
        let g = Graph {
            refs: vec![r(1, true, &[1]), r(1001, false, &[1])],
            edges: vec![Edge { from: (1, 1), to: (1001, 1), both: false }],
            ..Default::default()
        };
        let chained = chain(&g, &|_| Vec::new()).unwrap().1;
        assert_eq!(chained, BTreeMap::from([(1, 1), (1001, 1)]));
        // The subquery's table may not be the root: it does not chain the
        // outer one.
        let g = Graph { refs: vec![r(1, false, &[1]), r(1001, true, &[1])], ..g };
        assert_eq!(chain(&g, &|_| Vec::new()).unwrap().1, BTreeMap::from([(1001, 1)]));
    }

    /// Q21: supplier (1), lineitem (2), orders (3): s.1 = l.3, o.1 = l.1;
    /// EXISTS lineitem (1001) l2.1 = l.1.
    #[test]
    fn the_root_chaining_most_references_wins() {
        let g = Graph {
            refs: vec![r(1, true, &[1]), r(2, true, &[1, 3]), r(3, true, &[1]), r(1001, false, &[1])],
            edges: vec![
                Edge { from: (1, 1), to: (2, 3), both: true },
                Edge { from: (3, 1), to: (2, 1), both: true },
                Edge { from: (2, 1), to: (1001, 1), both: false },
            ],
            ..Default::default()
        };
        let chained = chain(&g, &|_| Vec::new()).unwrap().1;
        assert_eq!(chained, BTreeMap::from([(2, 1), (3, 1), (1001, 1)]));
    }

    /// Q21 again, lineitem (2, key (l_orderkey, l_linenumber)) and orders
    /// (3, key o_orderkey) both with conditions of their own: orders, one
    /// row per slice, is the root.
    #[test]
    fn of_equal_filtered_roots_one_keyed_by_its_column_wins() {
        let mut refs = vec![r(1, true, &[1]), r(2, true, &[1, 3]), r(3, true, &[1]), r(1001, false, &[1])];
        refs[1].own_filter = Some("(t.l_receiptdate > t.l_commitdate)".into());
        refs[2].own_filter = Some("(t.o_orderstatus = 'F')".into());
        let g = Graph {
            refs,
            edges: vec![
                Edge { from: (1, 1), to: (2, 3), both: true },
                Edge { from: (3, 1), to: (2, 1), both: true },
                Edge { from: (2, 1), to: (1001, 1), both: false },
            ],
            ..Default::default()
        };
        let key_of = |relid: pg_sys::Oid| match relid.to_u32() - 16384 {
            2 => vec![1, 4],
            _ => vec![1],
        };
        let (root, chained) = chain(&g, &key_of).unwrap();
        assert_eq!(root, 3);
        assert_eq!(chained, BTreeMap::from([(2, 1), (3, 1), (1001, 1)]));
        // Without the key's help, the first of them.
        assert_eq!(chain(&g, &|_| Vec::new()).unwrap().0, 2);
    }

    /// `SELECT ... FROM (SELECT g, sum(v) FROM t GROUP BY g) s WHERE ...`:
    /// the one table (1001, key column 1) is the root by the grouping
    /// column (2) when it is NOT NULL; by its key, every group would span
    /// slices.
    #[test]
    fn a_grouping_column_roots_the_table_under_it() {
        let g = Graph {
            refs: vec![r(1001, true, &[2])],
            grouped: vec![(vec![1001], vec![(1001, 2)])],
            ..Default::default()
        };
        let (root, chained) = chain(&g, &|_| vec![1]).unwrap();
        assert_eq!((root, chained), (1001, BTreeMap::from([(1001, 2)])));
        // A grouping column that may be NULL: no root, but one where NULL
        // is a slice too.
        let g = Graph { refs: vec![r(1001, true, &[])], ..g };
        assert_eq!(chain(&g, &|_| vec![1]), None);
        assert_eq!(chain_by_nullable_group(&g), Some((1001, BTreeMap::from([(1001, 2)]))));
        // Grouped by another column: every group spans slices.
        let g = Graph { grouped: vec![(vec![1001], vec![(1001, 3)])], ..g };
        assert_eq!(chain_by_nullable_group(&Graph { refs: vec![r(1001, false, &[])], ..g.clone() }), None);
    }

    /// Q13: a grouped subquery in FROM of customer (1001) LEFT JOIN orders
    /// (1002) ON o_custkey = c_custkey, grouped by c_custkey or not.
    #[test]
    fn a_grouped_subquery_keeps_slices_only_when_grouped_by_the_chain() {
        let mut g = Graph {
            refs: vec![r(1001, true, &[1]), r(1002, false, &[2])],
            edges: vec![Edge { from: (1001, 1), to: (1002, 2), both: false }],
            grouped: vec![(vec![1001, 1002], vec![(1001, 1)])],
            ..Default::default()
        };
        assert_eq!(chain(&g, &|_| Vec::new()).unwrap().1, BTreeMap::from([(1001, 1), (1002, 2)]));
        g.grouped = vec![(vec![1001, 1002], vec![(1002, 5)])];
        assert_eq!(chain(&g, &|_| Vec::new()), None);
        // Aggregating without GROUP BY mixes every slice.
        g.grouped = vec![(vec![1001, 1002], vec![])];
        assert_eq!(chain(&g, &|_| Vec::new()), None);
    }

    /// Q17: lineitem (1) joined to part (2) on l_partkey = p_partkey, the
    /// subquery's lineitem (1001) correlated to p_partkey; only part has
    /// conditions of its own (brand, container).
    #[test]
    fn of_equal_roots_the_one_with_its_own_conditions_wins() {
        let mut part = r(2, true, &[1]);
        part.own_filter = Some("(t.p_brand = 'Brand#23')".into());
        let g = Graph {
            refs: vec![r(1, true, &[2]), part, r(1001, false, &[2])],
            edges: vec![
                Edge { from: (1, 2), to: (2, 1), both: true },
                Edge { from: (2, 1), to: (1001, 2), both: false },
            ],
            ..Default::default()
        };
        let (root, chained) = chain(&g, &|_| Vec::new()).unwrap();
        assert_eq!(root, 2);
        assert_eq!(chained, BTreeMap::from([(1, 2), (2, 1), (1001, 2)]));
    }

    #[test]
    fn a_nullable_root_column_is_not_a_slice() {
        let g = Graph {
            refs: vec![r(1, true, &[]), r(2, false, &[1])],
            edges: vec![Edge { from: (1, 4), to: (2, 1), both: true }],
            ..Default::default()
        };
        // Column 4 of reference 1 may be NULL; its primary key is column 1.
        assert_eq!(chain(&g, &|_| vec![1]).unwrap().1, BTreeMap::from([(1, 1)]));
        assert_eq!(chain(&g, &|_| Vec::new()), None);
    }
}
