//! The plan of a stream table: how it is maintained, as pure data (no
//! pointers into PostgreSQL's memory), decided by [`super::analysis`] from
//! the stored query and read by every maintenance strategy (key recompute,
//! running totals, multisets, ORDER BY ... LIMIT, inner stream tables).

use pgrx::pg_sys;

/// How a stream table is maintained differentially.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub shape: Shape,
    /// The key: output columns that are plain columns of the query's tables.
    pub key: Vec<KeyColumn>,
    /// Some source is a (differential) stream table.
    pub reads_stream_tables: bool,
    /// For [`Shape::GroupsOverJoin`]: every table reference, and the
    /// equality join conditions between their columns.
    pub join: Option<JoinGraph>,
    /// For [`Shape::Groups`] whose aggregates are all count/sum/avg.
    pub algebraic: Option<Algebraic>,
    /// For [`Shape::Keyless`], and [`Shape::Rows`] over one table without
    /// subqueries: the query as expressions over that table.
    pub rows: Option<RowsDelta>,
    /// `ORDER BY ... LIMIT n`: the stream table holds the first rows of
    /// the query without them (whose shape the rest of the plan is).
    pub topk: Option<TopK>,
    /// Tables read by subqueries not tied to the outer query by `=`: a
    /// change of one could change any row, so it is applied by
    /// recomputing the whole query.
    pub full_on: Vec<pg_sys::Oid>,
    /// A subquery in an expression aggregates (GROUP BY, an aggregate,
    /// DISTINCT): affected keys may be pushed into it (see dvm::pushdown).
    pub pushdown: bool,
    /// For [`Shape::Multiset`]: the query's rows as signed rows of an
    /// inner join or of slices.
    pub multiset: Option<Multiset>,
    /// For [`Shape::Rows`]: the table references whose rows a keyed one
    /// determines (see `analysis::implied_references`); not in the key, their
    /// changes followed to it along `join`'s equalities.
    pub implied: Vec<u32>,
    /// For [`Shape::Rows`] of an inner join of exactly two table references
    /// (ordinary or partitioned tables) without subqueries, or running
    /// totals over such a join: a column of each,
    /// (reference, table, attnum), that every pair of joined rows has
    /// equal by its type's own equality (see `analysis::pair_key`).
    /// IMMEDIATE writers lock the values they change (see
    /// refresh::immediate::KeyLocks).
    pub pair_key: Option<[(u32, pg_sys::Oid, i16); 2]>,
    /// For a GROUP BY of expressions over one table, or over one table
    /// reference of a join ([`Shape::Groups`], [`Shape::GroupsOverJoin`]):
    /// the key columns that are expressions (their
    /// [`KeyColumn::source_attnum`] is 0), each computed from a row of
    /// that table.
    pub key_exprs: Vec<KeyExpr>,
    /// For [`Shape::LeftJoin`] with a WHERE condition on its nullable
    /// side: each nullable table reference with its path of `=` conditions
    /// to the preserved table (each step from a table's own ON clause to
    /// one joined before it, or between tables of the inner join); for
    /// [`Shape::FullJoin`] with a WHERE condition, each side with its
    /// ON clause's `=` conditions to the other. The paths along
    /// which its changed rows' old and new values reach the rows whose
    /// output they may change (see [`Plan::followed`]).
    pub outer_paths: Vec<(u32, Vec<Equality>)>,
}

/// A key column computed by an expression over one table's columns (a
/// `GROUP BY` expression).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyExpr {
    /// Position of the column in the stream table (1-based).
    pub output_attnum: i16,
    /// The expression, as SQL over the table's columns under alias `b`.
    pub sql: String,
    /// The table's columns it reads.
    pub attnums: Vec<i16>,
    /// The table reference whose columns it reads (range table index).
    pub rte: u32,
}

/// The rows of a filter and projection over several tables (or with
/// subqueries) as the signed rows the changes add to them: the change
/// terms of an inner join (see join_totals) or the touched slices now and
/// before (see slices), their grouping columns `__k<n>` the select list.
/// Or a UNION ALL whose branches are each such an inner join (or one
/// table): the signed rows of every branch, together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Multiset {
    pub join: Option<super::join_totals::JoinTotals>,
    pub slices: Option<super::slices::SliceTotals>,
    /// The branches of a UNION ALL (`join` and `slices` are then None).
    pub union: Vec<super::join_totals::JoinTotals>,
}

impl Multiset {
    /// The tables the rows read, each once, in order.
    pub fn tables(&self) -> Vec<pg_sys::Oid> {
        let mut out = rows_tables(self.join.as_ref(), self.slices.as_ref());
        for relid in self.union.iter().flat_map(|b| rows_tables(Some(b), None)) {
            if !out.contains(&relid) {
                out.push(relid);
            }
        }
        out
    }

    /// The columns of `source` its change rows must carry.
    pub fn columns_of(&self, source: pg_sys::Oid) -> Vec<i16> {
        let mut out = rows_columns(self.join.as_ref(), self.slices.as_ref(), source);
        out.extend(self.union.iter().flat_map(|b| super::join_totals::columns_of(b, source)));
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// The tables of an inner join's or slices' rows, each once, in order.
fn rows_tables(
    join: Option<&super::join_totals::JoinTotals>,
    slices: Option<&super::slices::SliceTotals>,
) -> Vec<pg_sys::Oid> {
    let all: Vec<pg_sys::Oid> = match (join, slices) {
        (Some(jt), _) => jt.tables.iter().map(|(_, relid, _)| *relid).collect(),
        (None, Some(st)) => st.refs.iter().map(|r| r.relid).collect(),
        (None, None) => Vec::new(),
    };
    let mut out = Vec::new();
    for relid in all {
        if !out.contains(&relid) {
            out.push(relid);
        }
    }
    out
}

/// The columns of `source` the change rows of an inner join's or slices'
/// rows must carry.
fn rows_columns(
    join: Option<&super::join_totals::JoinTotals>,
    slices: Option<&super::slices::SliceTotals>,
    source: pg_sys::Oid,
) -> Vec<i16> {
    match (join, slices) {
        (Some(jt), _) => super::join_totals::columns_of(jt, source),
        (None, Some(st)) => super::slices::columns_of(st, source),
        (None, None) => Vec::new(),
    }
}

/// `ORDER BY` output columns `LIMIT n`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopK {
    pub limit: i64,
    /// (output column, DESC, NULLS FIRST), in order.
    pub order: Vec<(i16, bool, bool)>,
}

/// A filter and projection of one table, computed from changed rows alone:
/// the select list and the WHERE clause as SQL over alias `b` (the table's
/// column names).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowsDelta {
    pub outputs: Vec<String>,
    pub where_sql: Option<String>,
    /// The table columns they read.
    pub attnums: Vec<i16>,
}

/// `a.x = b.y`: ((range table index, attnum), (range table index, attnum)).
pub type Equality = ((u32, i16), (u32, i16));

/// The table references of an inner join and its `a.x = b.y` conditions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinGraph {
    /// (range table index, relation)
    pub tables: Vec<(u32, pg_sys::Oid)>,
    /// ((rte, attnum), (rte, attnum)) pairs compared with `=`.
    pub edges: Vec<((u32, i16), (u32, i16))>,
}

impl JoinGraph {
    /// The path of equality steps from table reference `from` to `to`
    /// (breadth first): each step is (column of the current table, column
    /// of the next table).
    pub fn path(&self, from: u32, to: u32) -> Option<Vec<Equality>> {
        shortest_path(from, to, &|at| {
            self.edges.iter().flat_map(|&(a, b)| [(a, b), (b, a)]).filter(|(x, _)| x.0 == at).collect()
        })
    }

    /// The table reference nearest to `from` (breadth first, `from` itself
    /// excluded) that `target` accepts, and the path to it.
    pub fn nearest(&self, from: u32, target: &dyn Fn(u32) -> bool) -> Option<(u32, Vec<Equality>)> {
        self.tables
            .iter()
            .map(|(r, _)| *r)
            .filter(|r| *r != from && target(*r))
            .filter_map(|r| Some((r, self.path(from, r)?)))
            .min_by_key(|(_, path)| path.len())
    }

    /// Columns of `source` the join conditions use (any of its references).
    pub fn columns_of(&self, source: pg_sys::Oid) -> Vec<i16> {
        let rtes: Vec<u32> = self.tables.iter().filter(|(_, s)| *s == source).map(|(r, _)| *r).collect();
        let mut out: Vec<i16> = self
            .edges
            .iter()
            .flat_map(|&(a, b)| [a, b])
            .filter(|(rte, _)| rtes.contains(rte))
            .map(|(_, attnum)| attnum)
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// The shortest path (breadth first) of equality steps from table
/// reference `from` to `to`, where `steps(at)` are the steps leaving `at`
/// (each from a column of `at` to a column of the next table).
pub fn shortest_path(from: u32, to: u32, steps: &dyn Fn(u32) -> Vec<Equality>) -> Option<Vec<Equality>> {
    let mut prev: std::collections::BTreeMap<u32, Equality> = Default::default();
    let mut queue = std::collections::VecDeque::from([from]);
    let mut seen = std::collections::BTreeSet::from([from]);
    while let Some(at) = queue.pop_front() {
        if at == to {
            let mut path = Vec::new();
            let mut cur = to;
            while cur != from {
                let step = *prev.get(&cur)?;
                path.push(step);
                cur = step.0 .0;
            }
            path.reverse();
            return Some(path);
        }
        for step in steps(at) {
            if seen.insert(step.1 .0) {
                prev.insert(step.1 .0, step);
                queue.push_back(step.1 .0);
            }
        }
    }
    None
}

impl Plan {
    /// A plan of `shape` keyed by `key`, nothing else set: no join graph,
    /// totals, row expressions, ORDER BY ... LIMIT, multiset or subqueries
    /// read whole.
    pub fn of(shape: Shape, key: Vec<KeyColumn>) -> Plan {
        Plan {
            shape,
            key,
            reads_stream_tables: false,
            join: None,
            algebraic: None,
            rows: None,
            topk: None,
            full_on: Vec::new(),
            pushdown: false,
            multiset: None,
            implied: Vec::new(),
            pair_key: None,
            key_exprs: Vec::new(),
            outer_paths: Vec::new(),
        }
    }

    /// The table of each [implied](Plan::implied) reference, in join order
    /// (a table referenced twice, twice).
    pub fn implied_sources(&self) -> Vec<pg_sys::Oid> {
        let joined = self.join.iter().flat_map(|j| &j.tables);
        joined.filter(|(rte, _)| self.implied.contains(rte)).map(|(_, source)| *source).collect()
    }

    /// The distinct source tables, in key order (then join order).
    pub fn sources(&self) -> Vec<pg_sys::Oid> {
        let mut out: Vec<pg_sys::Oid> = Vec::new();
        let joined = self.join.iter().flat_map(|j| j.tables.iter().map(|(_, s)| *s));
        // (A key column computed by an expression has no source.)
        for source in self.key.iter().map(|k| k.source).chain(joined) {
            if source != pg_sys::InvalidOid && !out.contains(&source) {
                out.push(source);
            }
        }
        out
    }

    /// The table whose rows are aggregated into running totals: the one
    /// table of a GROUP BY (the source of its key) or of an aggregate
    /// without GROUP BY.
    pub fn grouped_source(&self) -> Option<pg_sys::Oid> {
        match (self.shape, self.key.first(), &self.join) {
            (Shape::Scalar | Shape::Keyless, _, Some(join)) => join.tables.first().map(|(_, s)| *s),
            (_, Some(k), _) => Some(k.source),
            _ => None,
        }
    }

    /// The columns of `source` its change buffer must hold for this plan.
    pub fn captured_columns(&self, source: pg_sys::Oid) -> Vec<i16> {
        let mut needed: Vec<i16> = self
            .key
            .iter()
            .filter(|k| k.source == source && k.source_attnum != 0)
            .map(|k| k.source_attnum)
            .collect();
        if self.grouped_source() == Some(source) {
            needed.extend(self.key_exprs.iter().flat_map(|e| e.attnums.iter().copied()));
        }
        if let Some(join) = &self.join {
            needed.extend(join.columns_of(source));
        }
        if let Some(rows) = &self.rows {
            needed.extend(rows.attnums.iter().copied());
        }
        if let Some(m) = &self.multiset {
            needed.extend(m.columns_of(source));
        }
        if let Some(alg) = self.algebraic.as_ref().filter(|a| a.over_rows()) {
            needed.extend(alg.rows_columns(source));
        } else if let Some(alg) = &self.algebraic {
            if self.grouped_source() == Some(source) {
                needed.extend(alg.argument_attnums());
                needed.extend(alg.where_attnums.iter().copied());
            }
        }
        needed.sort_unstable();
        needed.dedup();
        needed
    }

    /// The table references whose changes are followed along `=`
    /// conditions to a reference carrying key columns: (reference, its
    /// table, the reference reached, the path there). For a grouped join,
    /// every other reference, to the grouping one; for rows filtered by
    /// subqueries, the references inside them, to the nearest outer one;
    /// for window functions over a join, every other reference, to the one
    /// of the partitioning columns;
    /// for an outer join with a WHERE condition on its nullable side, the
    /// nullable references, to the preserved one (for a FULL JOIN, each
    /// side to the other).
    pub fn followed(&self) -> Vec<(u32, pg_sys::Oid, u32, Vec<Equality>)> {
        let Some(join) = &self.join else { return Vec::new() };
        let keyed = |r: u32| self.key.iter().any(|k| k.rte == r);
        let mut out = Vec::new();
        for &(rte, source) in &join.tables {
            let reached = match self.shape {
                Shape::GroupsOverJoin { group_rte } if rte != group_rte => {
                    join.path(rte, group_rte).map(|p| (group_rte, p))
                }
                Shape::Rows if !keyed(rte) => join.nearest(rte, &keyed),
                Shape::Window if !keyed(rte) => {
                    self.key.first().and_then(|k| Some((k.rte, join.path(rte, k.rte)?)))
                }
                Shape::LeftJoin { .. } | Shape::FullJoin { .. } => self
                    .outer_paths
                    .iter()
                    .find(|(r, _)| *r == rte)
                    .and_then(|(_, path)| Some((path.last()?.1 .0, path.clone()))),
                _ => None,
            };
            if let Some((to, path)) = reached {
                out.push((rte, source, to, path));
            }
        }
        out
    }

    /// The key columns whose affected values may be pushed into
    /// subqueries (see dvm::pushdown): none unless [`Plan::pushdown`].
    pub fn pushed_keys(&self) -> &[KeyColumn] {
        if self.pushdown {
            &self.key
        } else {
            &[]
        }
    }

    /// The slices its rows are computed by (running totals or a multiset
    /// over slices), if any.
    pub fn slices(&self) -> Option<&super::slices::SliceTotals> {
        self.algebraic
            .as_ref()
            .and_then(|a| a.slices.as_ref())
            .or(self.multiset.as_ref().and_then(|m| m.slices.as_ref()))
    }

    /// The table of the slices' root reference, if any.
    pub fn slices_root(&self) -> Option<pg_sys::Oid> {
        let st = self.slices()?;
        st.refs.iter().find(|r| r.id == st.root).map(|r| r.relid)
    }

    /// The table of a filter and projection of that one table keyed by its
    /// primary key, no subquery reading any table ([`Plan::rows`] of
    /// [`Shape::Rows`]): each of its rows gives at most one row of the
    /// stream table, with that row's key, computed from that row alone.
    /// None for any other plan.
    pub fn one_row_per_source_row(&self) -> Option<pg_sys::Oid> {
        // (`rows` is set only for one table referenced once, without
        // subqueries or ORDER BY ... LIMIT: see analysis::decide.)
        match (self.shape, &self.rows, self.key.first()) {
            (Shape::Rows, Some(_), Some(key)) if !self.reads_stream_tables => Some(key.source),
            _ => None,
        }
    }

    /// The key columns grouped by range table entry (one group per table
    /// reference; a self-join has two groups on one source).
    pub fn key_groups(&self) -> Vec<Vec<KeyColumn>> {
        let mut groups: Vec<Vec<KeyColumn>> = Vec::new();
        for k in &self.key {
            match groups.iter_mut().find(|g| g[0].rte == k.rte) {
                Some(g) => g.push(k.clone()),
                None => groups.push(vec![k.clone()]),
            }
        }
        groups
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// Filter and projection, over one table or an inner join of several;
    /// the key is the primary key of every table reference.
    Rows,
    /// GROUP BY (with any aggregates, HAVING); the key is the grouping columns.
    Groups,
    /// SELECT DISTINCT; the key is every output column.
    Distinct,
    /// `a LEFT JOIN b` (or `b RIGHT JOIN a`) of two tables, or a chain
    /// `a LEFT JOIN b ON ... LEFT JOIN c ON ...` adding one table at a
    /// time; the key is every table's primary key, and every output row
    /// belongs to one row of the preserved table `a`, so rows are
    /// recomputed per `a` key: changes of the other tables are turned into
    /// the `a` keys joined to their changed rows (see
    /// key_recompute::expand_outer_join).
    LeftJoin { preserved: u32 },
    /// `a FULL JOIN b` of two tables; the key is both primary keys (either
    /// may be NULL), each of one column. Rows are recomputed by either key;
    /// a change of one side also reaches the other side's rows joined to
    /// the changed rows before and after the change.
    FullJoin { left: u32, right: u32 },
    /// GROUP BY over an inner join, every grouping column from one table
    /// reference (`group_rte`), which every other reference reaches through
    /// `=` join conditions: a change of another table is followed along
    /// those conditions to the groups it touches (see key_recompute).
    GroupsOverJoin { group_rte: u32 },
    /// Aggregates without GROUP BY (over one table or a join): one row,
    /// recomputed whole when any source changed, or kept from running
    /// totals over one table. No key.
    Scalar,
    /// A filter and projection of one table without a primary key (or
    /// without it in the select list): the stream table is a multiset,
    /// maintained from the changed rows alone (their old and new images
    /// projected, counted, and deleted or inserted that many times).
    Keyless,
    /// A filter and projection over several tables, or with subqueries,
    /// whose select list lacks a table's primary key: the stream table is
    /// a multiset, maintained from the signed rows the changes add to the
    /// query ([`Multiset`]), counted per image and deleted or inserted
    /// that many times.
    Multiset,
    /// `UNION ALL` of branches that are each a Rows, Groups or Distinct
    /// shape: the key holds every branch's key columns (table references
    /// of different branches have different ids). Rows of two branches may
    /// be equal, so the stream table is a multiset: its rows are found
    /// through any branch's key, and compared whole, with multiplicity.
    UnionAll,
    /// Window functions over one table, every window partitioned by the
    /// key's columns: a change recomputes the partitions of its rows' old
    /// and new values (their rows found in the stream table through the
    /// key, compared whole, with multiplicity, as for [`Shape::UnionAll`]).
    Window,
}

impl Shape {
    /// Is the stream table a multiset whose rows are found through its key
    /// columns (no unique index: a plain one on each key group) and
    /// compared whole, with multiplicity?
    pub fn keyed_multiset(self) -> bool {
        matches!(self, Shape::UnionAll | Shape::Window)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Shape::Rows => "filter/projection/inner join keyed by the primary keys of its tables",
            Shape::Groups => "grouped aggregate keyed by the GROUP BY columns",
            Shape::Distinct => "DISTINCT keyed by all output columns",
            Shape::LeftJoin { .. } => "outer join recomputed per row of its preserved table",
            Shape::FullJoin { .. } => "full join recomputed per row of either table, partners included",
            Shape::GroupsOverJoin { .. } => {
                "grouped aggregate or DISTINCT over a join keyed by the grouping columns (changes followed along the join)"
            }
            Shape::Scalar => "aggregate without GROUP BY: one row, recomputed when a source changes",
            Shape::Keyless => "filter/projection of one table without a key: changed rows counted and applied, copies included",
            Shape::Multiset => {
                "filter/projection of several tables or with subqueries, without every table's key: \
                 the rows the changes add and remove counted per image and applied, copies included"
            }
            Shape::UnionAll => {
                "UNION ALL of keyed branches: rows found through each branch's key, compared whole with their multiplicity"
            }
            Shape::Window => {
                "window functions recomputed per partition: rows found through the PARTITION BY columns, compared whole \
                 with their multiplicity"
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyColumn {
    /// Position of the column in the stream table (1-based).
    pub output_attnum: i16,
    /// The range table entry (table reference) it comes from (0 for a
    /// grouping expression of running totals over a join).
    pub rte: u32,
    /// That entry's table (InvalidOid for such an expression).
    pub source: pg_sys::Oid,
    /// Attribute number of the source column it copies (0 for an
    /// expression, see [`Plan::key_exprs`]).
    pub source_attnum: i16,
}

/// Why a query is not maintained incrementally.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unsupported(pub String);

/// The outcome of [`analyze`]: how to maintain the query, or why not.
pub type Analysis = Result<Plan, Unsupported>;

impl Unsupported {
    /// The reason as a sentence, for DETAIL lines.
    pub fn sentence(&self) -> String {
        let mut chars = self.0.chars();
        match chars.next() {
            Some(first) => format!("{}{}.", first.to_uppercase(), chars.as_str()),
            None => String::new(),
        }
    }
}

/// An aggregate maintained from running totals; the number is its
/// argument's, 1-based in [`Algebraic::arguments`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AggKind {
    /// count(*)
    CountStar,
    /// count(x)
    Count(i16),
    /// sum(x) of integer or numeric values
    Sum(i16),
    /// avg(x) of integer or numeric values
    Avg(i16),
    /// min(x), max(x) of any type: the extreme is kept; deleting it
    /// rescans the group.
    Min(i16),
    Max(i16),
}

/// The argument of an aggregate kept from running totals: an expression
/// over the columns of the one table (a column, or immutable functions and
/// operators of columns).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AggArg {
    /// The expression as SQL over alias `b` (the table's column names),
    /// parenthesized.
    pub sql: String,
    /// The table columns it reads.
    pub attnums: Vec<i16>,
    /// Its type, as `format_type` writes it.
    pub sql_type: String,
    /// Whether it is never NULL: a column declared NOT NULL of a table no
    /// outer join nulls (then its count is the group's row count).
    pub not_null: bool,
}

impl AggKind {
    pub(crate) fn numbered(self, n: i16) -> AggKind {
        match self {
            AggKind::CountStar => AggKind::CountStar,
            AggKind::Count(_) => AggKind::Count(n),
            AggKind::Sum(_) => AggKind::Sum(n),
            AggKind::Avg(_) => AggKind::Avg(n),
            AggKind::Min(_) => AggKind::Min(n),
            AggKind::Max(_) => AggKind::Max(n),
        }
    }
}

impl AggKind {
    pub fn column(self) -> Option<i16> {
        match self {
            AggKind::CountStar => None,
            AggKind::Count(a) | AggKind::Sum(a) | AggKind::Avg(a) | AggKind::Min(a) | AggKind::Max(a) => {
                Some(a)
            }
        }
    }
}

/// A GROUP BY over one table whose outputs are the grouping columns and
/// count/sum/avg: maintained from per-group running totals (see
/// dvm::algebraic) instead of recomputing the groups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Algebraic {
    /// (output attnum, aggregate) for every non-key output.
    pub aggregates: Vec<(i16, AggKind)>,
    /// The aggregates' arguments (number n is `arguments[n - 1]`), each
    /// once.
    pub arguments: Vec<AggArg>,
    /// The WHERE clause over alias `b` (the table's column names).
    pub where_sql: Option<String>,
    /// Columns of the table the WHERE clause reads.
    pub where_attnums: Vec<i16>,
    /// Over an inner join: the join's rows as a query (then the arguments
    /// are its `__x` columns, and the WHERE clause is inside it).
    pub join: Option<super::join_totals::JoinTotals>,
    /// Over slices (see dvm::slices): the rows as a query, and how each
    /// table reference is restricted (then the arguments are its `__x`
    /// columns too).
    pub slices: Option<super::slices::SliceTotals>,
    /// Outputs that are expressions over aggregates.
    pub derived: Vec<Derived>,
    /// The HAVING condition, an expression over aggregates (its `output`
    /// 0): a group whose totals fail it has no row.
    pub having: Option<Derived>,
}

/// An output computed from aggregates kept in running totals (`100.00 *
/// sum(a) / sum(b)`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Derived {
    pub output: i16,
    /// The expression as SQL, with aggregate k (0, 1, …) written
    /// `$<PART_BASE + k>`.
    pub sql: String,
    /// The aggregates (numbered like the direct ones) and their types.
    pub parts: Vec<(AggKind, String)>,
}

impl Algebraic {
    /// Every aggregate kept: the outputs', and those inside expressions.
    fn kinds(&self) -> impl Iterator<Item = &AggKind> {
        self.aggregates
            .iter()
            .map(|(_, k)| k)
            .chain(self.derived.iter().chain(&self.having).flat_map(|d| d.parts.iter().map(|(k, _)| k)))
    }

    /// The table columns that are summed (sum, avg), whose totals include
    /// a sum; count(col) of any type only counts.
    pub fn is_summed(&self, column: i16) -> bool {
        self.kinds().any(|k| matches!(k, AggKind::Sum(a) | AggKind::Avg(a) if *a == column))
    }

    /// Whether `min(column)` / `max(column)` is kept.
    pub fn has_min(&self, column: i16) -> bool {
        self.kinds().any(|k| matches!(k, AggKind::Min(a) if *a == column))
    }

    pub fn has_max(&self, column: i16) -> bool {
        self.kinds().any(|k| matches!(k, AggKind::Max(a) if *a == column))
    }

    /// Whether any extreme is kept (groups may need a rescan).
    pub fn has_extremes(&self) -> bool {
        self.kinds().any(|k| matches!(k, AggKind::Min(_) | AggKind::Max(_)))
    }

    /// The numbers of the arguments whose running totals are kept.
    pub fn argument_columns(&self) -> Vec<i16> {
        let mut out: Vec<i16> = self.kinds().filter_map(|k| k.column()).collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Whether the totals are over the rows of several tables (an inner
    /// join, or slices), whose signed rows a change adds.
    pub fn over_rows(&self) -> bool {
        self.join.is_some() || self.slices.is_some()
    }

    /// Over the rows of several tables: those tables, each once, in
    /// order; none over one table.
    pub fn rows_tables(&self) -> Vec<pg_sys::Oid> {
        rows_tables(self.join.as_ref(), self.slices.as_ref())
    }

    /// Over the rows of several tables: the columns of `source` its change
    /// rows must carry.
    pub fn rows_columns(&self, source: pg_sys::Oid) -> Vec<i16> {
        rows_columns(self.join.as_ref(), self.slices.as_ref(), source)
    }

    /// Argument number `n`.
    pub fn argument(&self, n: i16) -> Option<&AggArg> {
        self.arguments.get(usize::try_from(n).ok()?.checked_sub(1)?)
    }

    /// The table columns the arguments read.
    pub fn argument_attnums(&self) -> Vec<i16> {
        let mut out: Vec<i16> = self.arguments.iter().flat_map(|a| a.attnums.iter().copied()).collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}
