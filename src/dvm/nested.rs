//! Aggregating WITH queries, subqueries in FROM and scalar subqueries kept
//! as inner stream tables.
//!
//! A query that aggregates an aggregate (TPC-H Q15: the suppliers whose
//! revenue, a `sum` per supplier in a WITH query, equals the `max` of those
//! revenues) cannot be maintained from its changes: the outer aggregate's
//! input is not a table. AUTO refreshes it in FULL, recomputing the inner
//! aggregate over its whole table every time, although the inner aggregate
//! alone (a GROUP BY over a table) is maintained differentially.
//!
//! So each WITH query (and each subquery in FROM) of such a stream table
//! that aggregates, reads no WITH query of the levels above it and can be
//! maintained differentially by itself, and each aggregating scalar
//! subquery that an aggregate grouped by its correlated columns answers
//! (a [`Lookup`]: TPC-H Q20's sum per part and supplier), becomes an
//! *inner stream table*: a DIFFERENTIAL stream table
//! `pgtrickle_state.inner_<oid>_<n>` (`n`: its position in the WITH list,
//! [`FROM_BASE`] plus its range table index, or [`SUBLINK_BASE`] plus its
//! place among the scalar subqueries) with its own query. A refresh of the
//! outer stream table first refreshes its inner ones, on its own snapshot,
//! then recomputes its query with every reference to them reading the
//! inner stream tables instead: a query over the aggregates' rows (one per
//! supplier), not over the table they aggregate; a scalar subquery looks
//! its row up.
//!
//! The inner stream tables are owned by the outer one's owner, are members
//! of the extension (pg_dump leaves them out: the outer one's next refresh
//! creates them again), are refreshed only through the outer one (no
//! schedule), and are dropped with it, or when it is no longer refreshed
//! in FULL by AUTO. Their query keeps no dependencies (a DROP ... CASCADE
//! reaching a member of the extension would drop the extension): the outer
//! one reads the same tables and columns, so it is what such a DROP
//! reaches, and its cleanup drops them. Only a stream table that AUTO
//! refreshes in FULL gets them; a query pg_trickle maintains itself needs
//! none.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::ffi::CStr;

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::catalog::options::{RefreshMode, StreamSettings};
use crate::catalog::sys;
use crate::cdc::frontier::RefreshSnapshot;
use crate::error::{PgtError, PgtResult};
use crate::hooks::list_ptrs;
use crate::sql::quote_ident;

thread_local! {
    /// Stream tables (with their owners) whose candidates this backend
    /// tried to make inner stream tables, and the positions that existed
    /// after: tried again only when those changed (an inner stream table
    /// dropped) or the owner did.
    static TRIED: RefCell<HashMap<(u32, u32), Vec<usize>>> = RefCell::new(HashMap::new());
}

/// An inner stream table: the position of its WITH query (1-based) and
/// its OID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inner {
    pub position: usize,
    pub relid: pg_sys::Oid,
}

pub fn inner_name(relid: pg_sys::Oid, position: usize) -> String {
    format!("pgtrickle_state.inner_{}_{position}", relid.to_u32())
}

/// The inner stream tables of `relid`, in WITH list order (only those that
/// are still stream tables).
pub fn inners(relid: pg_sys::Oid) -> PgtResult<Vec<Inner>> {
    sys::kept(
        "SELECT c.oid, pg_catalog.substr(c.relname, pg_catalog.length($1) OPERATOR(pg_catalog.+) 1)::pg_catalog.int4 \
           FROM pg_catalog.pg_class c \
           JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
          WHERE n.nspname OPERATOR(pg_catalog.=) 'pgtrickle_state' AND c.relkind OPERATOR(pg_catalog.=) 'm' \
            AND pg_catalog.starts_with(c.relname::pg_catalog.text, $1) \
            AND pg_catalog.substr(c.relname, pg_catalog.length($1) OPERATOR(pg_catalog.+) 1) OPERATOR(pg_catalog.~) '^[0-9]+$' \
            AND EXISTS (SELECT 1 FROM pgtrickle.pgt_stream_tables st WHERE st.relid OPERATOR(pg_catalog.=) c.oid) \
          ORDER BY 2",
        &[format!("inner_{}_", relid.to_u32()).into()],
        |rows| {
            let mut out = Vec::new();
            for row in rows {
                if let (Some(oid), Some(position)) = (row.get::<pg_sys::Oid>(1)?, row.get::<i32>(2)?) {
                    out.push(Inner { position: position as usize, relid: oid });
                }
            }
            Ok(out)
        },
    )
}

/// Whether `settings` and the mode in effect ask for inner stream tables:
/// AUTO that resolved to FULL.
pub fn wanted(settings: &StreamSettings, effective: RefreshMode) -> bool {
    settings.refresh_mode == RefreshMode::Auto && effective == RefreshMode::Full
}

/// Whether stream table `relid` (`settings`, mode in effect `effective`)
/// is computed over inner stream tables: AUTO that resolved to FULL (see
/// [`wanted`]), or IMMEDIATE [over inner stream tables](over_inners).
pub fn wanted_for(relid: pg_sys::Oid, settings: &StreamSettings, effective: RefreshMode) -> PgtResult<bool> {
    Ok(wanted(settings, effective) || (effective == RefreshMode::Immediate && over_inners(relid)?))
}

/// An IMMEDIATE stream table whose query cannot be maintained from a
/// statement's changes but has parts that can be inner stream tables (an
/// aggregate of aggregates, TPC-H Q15): each writing statement refreshes
/// its inner stream tables (from the change buffers, its own changes
/// included) and recomputes its query over them (refresh::immediate).
pub fn over_inners(relid: pg_sys::Oid) -> PgtResult<bool> {
    Ok(super::analysis::analyze(relid)?.is_err() && has_candidates(relid)?)
}

/// Does the query of `relid` read only tables, have parts that could be
/// inner stream tables, and give the same rows as long as its tables do
/// not change (no volatile or stable function: recomputed by each writing
/// statement, it would change with them)?
pub fn has_candidates(relid: pg_sys::Oid) -> PgtResult<bool> {
    // (Over tables only: the change buffers of tables are what its inner
    // stream tables read, and a statement on a table what maintains it.)
    let sources = crate::catalog::stream_tables::sources_of(relid)?;
    if !crate::cdc::consumers::tables_only(&sources) || !super::analysis::is_deterministic(relid)? {
        return Ok(false);
    }
    let _path = sys::SafeSearchPath::enter();
    Ok(!candidates(relid).is_empty())
}

/// Drop the inner stream tables of `relid` unless `wanted`.
pub fn prune(relid: pg_sys::Oid, wanted: bool) -> PgtResult<()> {
    if wanted {
        return Ok(());
    }
    let existing = inners(relid)?;
    if !existing.is_empty() {
        for inner in existing {
            drop_inner(inner.relid)?;
        }
        crate::cdc::consumers::cleanup()?;
    }
    Ok(())
}

/// Make the inner stream tables of `relid` exist when `wanted` (creating
/// those its query allows, once per backend), or not at all; returns them,
/// in position order.
pub fn sync(relid: pg_sys::Oid, wanted: bool) -> PgtResult<Vec<Inner>> {
    if !wanted {
        prune(relid, wanted)?;
        return Ok(Vec::new());
    }
    let mut existing = inners(relid)?;
    let tried = (relid.to_u32(), sys::relation_owner(relid)?.to_u32());
    let positions: Vec<usize> = existing.iter().map(|i| i.position).collect();
    if TRIED.with(|t| t.borrow().get(&tried) == Some(&positions)) {
        return Ok(existing);
    }
    // (Deparsed with every name qualified, for the safe search_path the
    // statements run with.)
    let candidates = {
        let _path = sys::SafeSearchPath::enter();
        candidates(relid)
    };
    for (position, sql, columns) in candidates {
        if positions.contains(&position) {
            continue;
        }
        if let Some(inner) = create(relid, position, &sql, &columns)? {
            existing.push(inner);
        }
    }
    existing.sort_by_key(|i| i.position);
    let made = existing.iter().map(|i| i.position).collect();
    TRIED.with(|t| t.borrow_mut().insert(tried, made));
    Ok(existing)
}

/// Create inner stream table `position` of `relid` for the WITH query
/// `sql` (output columns `columns`), or nothing when it cannot be
/// maintained differentially. Tried in a subtransaction: whatever fails
/// leaves nothing behind.
fn create(relid: pg_sys::Oid, position: usize, sql: &str, columns: &[String]) -> PgtResult<Option<Inner>> {
    let name = inner_name(relid, position);
    let owner = sys::relation_owner(relid)?;
    let create = format!("CREATE MATERIALIZED VIEW {name} ({}) AS {sql} WITH NO DATA", columns.join(", "));
    let outcome = sys::in_subtransaction(|| {
        let inner = {
            let _internal = crate::hooks::internal();
            sys::as_extension_owner(|| Ok(Spi::run(&create)?))?;
            crate::catalog::sys::kept_one::<pg_sys::Oid>(
                "SELECT $1::pg_catalog.regclass::pg_catalog.oid",
                &[name.as_str().into()],
            )?
            .ok_or_else(|| PgtError::Internal("inner stream table not created".into()))?
        };
        set_owner(inner, owner)?;
        let settings = StreamSettings { refresh_mode: RefreshMode::Differential, schedule: None };
        // As its owner, who registers it (an error when the WITH query
        // cannot be maintained differentially).
        sys::as_role(owner, || crate::catalog::lifecycle::register(inner, &settings, false))?;
        sys::as_extension_owner(|| {
            sys::unlink_from_extension(inner, sys::ExtensionLink::Dependency)?;
            sys::detach_rule_dependencies(inner)?;
            sys::link_to_extension(inner, sys::ExtensionLink::Membership)
        })?;
        Ok(inner)
    })?;
    match outcome {
        Ok(inner) => Ok(Some(Inner { position, relid: inner })),
        Err(why) => {
            pgrx::debug1!(
                "pg_trickle: WITH query {position} of {} is not an inner stream table: {why}",
                relid.to_u32()
            );
            Ok(None)
        }
    }
}

/// Give inner stream table `inner` to `owner` (its running totals follow
/// at its next refresh).
fn set_owner(inner: pg_sys::Oid, owner: pg_sys::Oid) -> PgtResult<()> {
    let name = crate::catalog::lifecycle::relation_name(inner)?;
    sys::set_member_owner(&name, "MATERIALIZED VIEW", owner)
}

fn drop_inner(inner: pg_sys::Oid) -> PgtResult<()> {
    sys::drop_member(inner, "MATERIALIZED VIEW")
}

/// Drop the inner stream tables of stream tables that are gone or no
/// longer refreshed in FULL by AUTO or IMMEDIATE (an IMMEDIATE one keeps
/// them only when over inner stream tables: see [`prune`]), and those that
/// are no longer stream tables (their owner turned them into plain
/// materialized views).
pub fn drop_orphans() -> PgtResult<()> {
    let orphans: Vec<pg_sys::Oid> = crate::catalog::sys::column_values::<pg_sys::Oid>(
        "SELECT c.oid FROM pg_catalog.pg_class c \
           JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
          WHERE n.nspname OPERATOR(pg_catalog.=) 'pgtrickle_state' AND c.relkind OPERATOR(pg_catalog.=) 'm' \
            AND c.relname OPERATOR(pg_catalog.~) '^inner_[0-9]+_[0-9]+$' \
            AND (NOT EXISTS (SELECT 1 FROM pgtrickle.pgt_stream_tables i WHERE i.relid OPERATOR(pg_catalog.=) c.oid) \
                 OR NOT EXISTS (SELECT 1 FROM pgtrickle.pgt_stream_tables st \
                             WHERE ((st.requested_mode OPERATOR(pg_catalog.=) 'auto' \
                                     AND st.refresh_mode OPERATOR(pg_catalog.=) 'full') \
                                    OR st.refresh_mode OPERATOR(pg_catalog.=) 'immediate') \
                               AND pg_catalog.starts_with(c.relname::pg_catalog.text, \
                                       'inner_' OPERATOR(pg_catalog.||) st.relid::pg_catalog.text OPERATOR(pg_catalog.||) '_')))",
        &[],
    )?;
    for inner in orphans {
        drop_inner(inner)?;
    }
    Ok(())
}

/// Make the inner stream tables of `relid` exist when `wanted` and
/// refresh each one (differentially) on `snapshot`, the refresh of `relid`
/// in progress; returns them.
pub fn refresh_inners(relid: pg_sys::Oid, wanted: bool, snapshot: &RefreshSnapshot) -> PgtResult<Vec<Inner>> {
    let inner = sync(relid, wanted)?;
    if inner.is_empty() {
        return Ok(inner);
    }
    let owner = sys::relation_owner(relid)?;
    for i in &inner {
        // (They follow the stream table's owner: ALTER ... OWNER TO.)
        if sys::relation_owner(i.relid)? != owner {
            set_owner(i.relid, owner)?;
        }
        crate::refresh::refresh_on(i.relid, crate::refresh::RefreshTrigger::Outer, Some(snapshot))?;
    }
    Ok(inner)
}

/// Recompute `relid` over its inner stream tables `inner` (refreshed on
/// `snapshot`): the query over them replaces its rows. None when it is
/// not populated (REFRESH populates it; the inner ones, populated now,
/// serve the next refresh) or the query cannot be rewritten.
pub fn recompute(relid: pg_sys::Oid, inner: &[Inner], snapshot: &RefreshSnapshot) -> PgtResult<Option<i64>> {
    if inner.is_empty() || !crate::refresh::immediate::is_populated(relid)? {
        return Ok(None);
    }
    let Some(query) = recompute_sql(relid, inner)? else { return Ok(None) };
    let st = crate::catalog::lifecycle::relation_name(relid)?;
    let owner = sys::relation_owner(relid)?;
    let rows = sys::as_restricted_role(owner, || {
        crate::refresh::window::with_window(relid, || -> PgtResult<u64> {
            snapshot.execute(&format!("DELETE FROM {st}"), false)?;
            snapshot.execute(&format!("INSERT INTO {st} {query}"), false)
        })
    })?;
    Ok(Some(rows as i64))
}

/// What a refresh over inner stream tables says in the history.
pub fn recomputed_message(inner: &[Inner]) -> PgtResult<String> {
    let names: Vec<String> =
        inner.iter().map(|i| crate::catalog::lifecycle::relation_name(i.relid)).collect::<PgtResult<_>>()?;
    Ok(format!("recomputed over its inner stream tables {}", names.join(", ")))
}

/// The stream table's query with every reference to the WITH queries and
/// subqueries of `inner` reading their inner stream tables instead.
pub fn recompute_sql(relid: pg_sys::Oid, inner: &[Inner]) -> PgtResult<Option<String>> {
    let _path = sys::SafeSearchPath::enter();
    // SAFETY: the copy of the stored Query is changed (range table entries
    // renamed or turned into WITH query references) and deparsed; nodes are
    // read according to their tags.
    let rewritten = unsafe {
        super::analysis::with_query_copy(relid, false, |q| {
            let parts = parts(q);
            let subqueries = scalar_subqueries(q);
            let mut withs = Vec::new();
            let mut renames = Vec::new();
            for i in inner {
                let stand_in = format!("__pgt_inner{}", i.position);
                if i.position >= SUBLINK_BASE {
                    let &(_, _, sub, depth) = subqueries.iter().find(|s| s.0 == i.position)?;
                    let lookup = Lookup::read(sub)?;
                    lookup.read_inner(&stand_in, depth)?;
                    withs.push((stand_in, lookup.columns(), i.relid));
                    continue;
                }
                let part = parts.iter().find(|p| p.position == i.position)?;
                let columns: Vec<String> = part.columns.iter().map(|c| quote_ident(c)).collect();
                withs.push((stand_in.clone(), columns, i.relid));
                match &part.place {
                    Place::With(name) => renames.push((name.clone(), std::ffi::CString::new(stand_in).ok()?)),
                    Place::From(rte) => crate::hooks::nodes::as_cte_reference(*rte, &stand_in, 0)?,
                }
            }
            each_query(q, 0, &mut |level, depth| {
                for rte in list_ptrs::<pg_sys::RangeTblEntry>((*level).rtable) {
                    if (*rte).rtekind != pg_sys::RTEKind::RTE_CTE || (*rte).ctelevelsup != depth {
                        continue;
                    }
                    let Ok(current) = CStr::from_ptr((*rte).ctename).to_str() else { continue };
                    if let Some((_, stand_in)) = renames.iter().find(|(name, _)| name == current) {
                        (*rte).ctename = pg_sys::pstrdup(stand_in.as_ptr());
                    }
                }
            });
            let sql = crate::hooks::cstr(pg_sys::pg_get_querydef(q, false))?;
            Some((withs, sql))
        })
    };
    let Some((withs, sql)) = rewritten else { return Ok(None) };
    let mut defs = Vec::new();
    for (stand_in, columns, inner) in withs {
        defs.push(format!(
            "{stand_in} ({}) AS (SELECT * FROM {})",
            columns.join(", "),
            crate::catalog::lifecycle::relation_name(inner)?
        ));
    }
    let sql = sql.trim().trim_end_matches(';');
    Ok(Some(format!("WITH {} SELECT * FROM ({sql}) __pgt_q", defs.join(", "))))
}

/// Positions of subqueries in FROM: this plus their range table index
/// (WITH queries are numbered from 1).
const FROM_BASE: usize = 1000;

/// Where a part of the top level is.
enum Place {
    /// A WITH query, by name.
    With(String),
    /// A subquery in FROM (not LATERAL), by its range table entry.
    From(*mut pg_sys::RangeTblEntry),
}

/// A WITH query or subquery in FROM of the top level: its position, its
/// query, and the names its columns are read by.
struct Part {
    position: usize,
    query: *mut pg_sys::Query,
    columns: Vec<String>,
    place: Place,
    /// Read at all (a WITH query may not be).
    referenced: bool,
}

/// The WITH queries and subqueries in FROM of the top level.
///
/// # Safety
/// `q` is a valid Query.
unsafe fn parts(q: *mut pg_sys::Query) -> Vec<Part> {
    // SAFETY: q is a valid Query; its lists hold nodes of the types their
    // fields declare.
    unsafe {
        let names = |list: *mut pg_sys::List| -> Option<Vec<String>> {
            list_ptrs::<pg_sys::String>(list)
                .into_iter()
                .map(|s| CStr::from_ptr((*s).sval).to_str().ok().map(|n| n.to_string()))
                .collect()
        };
        let mut out = Vec::new();
        for (i, cte) in list_ptrs::<pg_sys::CommonTableExpr>((*q).cteList).into_iter().enumerate() {
            let cq = (*cte).ctequery as *mut pg_sys::Query;
            if cq.is_null() || (*cq).type_ != pg_sys::NodeTag::T_Query || (*cte).cterecursive {
                continue;
            }
            let (Ok(name), Some(columns)) =
                (CStr::from_ptr((*cte).ctename).to_str(), names((*cte).ctecolnames))
            else {
                continue;
            };
            out.push(Part {
                position: i + 1,
                query: cq,
                columns,
                place: Place::With(name.to_string()),
                referenced: (*cte).cterefcount > 0,
            });
        }
        // (The subqueries of a UNION's range table are its branches.)
        let rtable = if (*q).setOperations.is_null() { list_ptrs((*q).rtable) } else { Vec::new() };
        for (i, rte) in rtable.into_iter().enumerate() {
            let rte: *mut pg_sys::RangeTblEntry = rte;
            if (*rte).rtekind != pg_sys::RTEKind::RTE_SUBQUERY || (*rte).subquery.is_null() || (*rte).lateral
            {
                continue;
            }
            let Some(columns) = names((*(*rte).eref).colnames) else { continue };
            out.push(Part {
                position: FROM_BASE + i + 1,
                query: (*rte).subquery,
                columns,
                place: Place::From(rte),
                referenced: true,
            });
        }
        out
    }
}

/// What could be inner stream tables: (position; the query, deparsed; its
/// output columns, quoted). A part of the top level
/// qualifies when it is a SELECT that aggregates, is read, and reads no
/// WITH query of the levels above it; an aggregating scalar subquery
/// when it is a [`Lookup`] outside such a part.
fn candidates(relid: pg_sys::Oid) -> Vec<(usize, String, Vec<String>)> {
    // SAFETY: the copy of the stored Query is read and deparsed, then each
    // lookup's subquery changed (to the inner stream table's query) and
    // deparsed.
    unsafe {
        super::analysis::with_query_copy(relid, false, |q| {
            let mut out = Vec::new();
            // The levels of the parts kept: their scalar subqueries go with
            // them.
            let mut kept_levels: HashSet<usize> = HashSet::new();
            for part in parts(q) {
                let c = &*part.query;
                let grouped = c.hasAggs || !c.groupClause.is_null() || !c.groupingSets.is_null();
                if c.commandType != pg_sys::CmdType::CMD_SELECT || !grouped || !part.referenced {
                    continue;
                }
                let mut outside = false;
                each_query(part.query, 0, &mut |level, depth| {
                    for rte in list_ptrs::<pg_sys::RangeTblEntry>((*level).rtable) {
                        outside |= (*rte).rtekind == pg_sys::RTEKind::RTE_CTE && (*rte).ctelevelsup > depth;
                    }
                });
                let distinct: HashSet<&String> = part.columns.iter().collect();
                if outside || distinct.len() != part.columns.len() {
                    continue;
                }
                let Some(sql) = crate::hooks::cstr(pg_sys::pg_get_querydef(part.query, false)) else {
                    continue;
                };
                each_query(part.query, 0, &mut |level, _| {
                    kept_levels.insert(level as usize);
                });
                let sql = sql.trim().trim_end_matches(';').to_string();
                out.push((part.position, sql, part.columns.iter().map(|c| quote_ident(c)).collect()));
            }
            for (position, parent, sub, _) in scalar_subqueries(q) {
                if kept_levels.contains(&(parent as usize)) {
                    continue;
                }
                let Some(lookup) = Lookup::read(sub) else { continue };
                if let Some((sql, columns)) = lookup.inner_query() {
                    out.push((position, sql, columns));
                }
            }
            Some(out)
        })
        .unwrap_or_default()
    }
}

/// Positions of aggregating scalar subqueries: this plus their number
/// among the query's scalar subqueries, in [`scalar_subqueries`] order.
const SUBLINK_BASE: usize = 2000;

/// The scalar subqueries (`EXPR` SubLinks) of `q` at every level:
/// (position, the query level holding it, its query, its depth below
/// `q`), in a fixed order.
///
/// # Safety
/// `q` is a valid Query.
unsafe fn scalar_subqueries(
    q: *mut pg_sys::Query,
) -> Vec<(usize, *mut pg_sys::Query, *mut pg_sys::Query, u32)> {
    let mut out = Vec::new();
    // SAFETY: q is a valid Query; each_query visits its levels, whose
    // expressions are valid trees; a SubLink's subselect is its Query.
    unsafe {
        each_query(q, 0, &mut |level, depth| {
            for node in [
                (*level).targetList as *mut pg_sys::Node,
                (*level).jointree as *mut pg_sys::Node,
                (*level).havingQual,
            ] {
                crate::hooks::nodes::walk(node, |n| {
                    if (*n).type_ == pg_sys::NodeTag::T_SubLink {
                        let link = n as *mut pg_sys::SubLink;
                        if (*link).subLinkType == pg_sys::SubLinkType::EXPR_SUBLINK
                            && !(*link).subselect.is_null()
                            && (*(*link).subselect).type_ == pg_sys::NodeTag::T_Query
                        {
                            out.push((
                                SUBLINK_BASE + out.len() + 1,
                                level,
                                (*link).subselect as *mut pg_sys::Query,
                                depth + 1,
                            ));
                            return false;
                        }
                    }
                    true
                });
            }
        });
    }
    out
}

/// The aggregates whose value over no rows is NULL (as is the lookup's
/// when no row of the inner stream table matches).
const NULL_WHEN_EMPTY: &[&str] = &[
    "sum",
    "avg",
    "min",
    "max",
    "bool_and",
    "bool_or",
    "every",
    "bit_and",
    "bit_or",
    "bit_xor",
    "stddev",
    "stddev_samp",
    "stddev_pop",
    "variance",
    "var_samp",
    "var_pop",
    "string_agg",
    "array_agg",
];

/// An aggregating scalar subquery that an inner stream table can answer:
/// one select-list item over its aggregates, no GROUP BY, HAVING,
/// DISTINCT, ORDER BY, LIMIT, WITH or subqueries of its own, tables (and
/// joins) in FROM, and a WHERE of ANDed conditions, each either its own
/// (no outer column) or a *correlation* `c = e`: `c` a column of its
/// FROM, `e` over the next level's columns only, `=` the equality of
/// their one built-in type under a deterministic collation. TPC-H Q20's
/// `(SELECT 0.5 * sum(l_quantity) FROM lineitem WHERE l_partkey =
/// ps_partkey AND l_suppkey = ps_suppkey AND l_shipdate >= ...)`.
///
/// Its value is that of the aggregates of the group `c = e` of
///
/// ```text
/// SELECT c..., aggregates FROM <its FROM> WHERE <its own conditions> GROUP BY c...
/// ```
///
/// the inner stream table (one row without correlations), looked up as
/// `(SELECT f(a...) FROM inner WHERE c = e ...)`. A missing group gives
/// NULL where the subquery gives the aggregates over no rows: so with
/// correlations every aggregate must be NULL over no rows and the item
/// NULL when one is (made of strict operators and functions, constants
/// and casts).
struct Lookup {
    query: *mut pg_sys::Query,
    /// The correlations and which of their arguments is the column.
    keys: Vec<(*mut pg_sys::OpExpr, usize)>,
    /// Its own conditions.
    own: Vec<*mut pg_sys::Node>,
    /// The aggregates of the select-list item, in walk order.
    aggs: Vec<*mut pg_sys::Aggref>,
}

impl Lookup {
    /// # Safety
    /// `sub` is a valid Query, the subselect of a scalar SubLink.
    unsafe fn read(sub: *mut pg_sys::Query) -> Option<Lookup> {
        // SAFETY: sub and its nodes are valid, read by tag.
        unsafe {
            let q = &*sub;
            if q.commandType != pg_sys::CmdType::CMD_SELECT
                || !q.hasAggs
                || !q.groupClause.is_null()
                || !q.sortClause.is_null()
                || !super::join_totals::plain_select(q)
            {
                return None;
            }
            let items = list_ptrs::<pg_sys::TargetEntry>(q.targetList);
            let [item] = items[..] else { return None };
            let rtes = list_ptrs::<pg_sys::RangeTblEntry>(q.rtable);
            if rtes.is_empty()
                || (*rtes[0]).rtekind != pg_sys::RTEKind::RTE_RELATION
                || rtes.iter().any(|r| {
                    !matches!((**r).rtekind, pg_sys::RTEKind::RTE_RELATION | pg_sys::RTEKind::RTE_JOIN)
                        || (**r).lateral
                })
            {
                return None;
            }
            let expr = (*item).expr as *mut pg_sys::Node;
            let (_, outer, bad) = levels(expr);
            let (_, join_outer, join_bad) = levels((*q.jointree).fromlist as *mut pg_sys::Node);
            if (*item).resjunk || outer || bad || join_outer || join_bad {
                return None;
            }
            let quals = (*q.jointree).quals;
            let conjuncts: Vec<*mut pg_sys::Node> = if quals.is_null() {
                Vec::new()
            } else if pg_sys::is_andclause(quals as *const _) {
                list_ptrs((*(quals as *mut pg_sys::BoolExpr)).args)
            } else {
                vec![quals]
            };
            let mut keys = Vec::new();
            let mut own = Vec::new();
            for c in conjuncts {
                let (_, outer, bad) = levels(c);
                if bad {
                    return None;
                }
                if !outer {
                    own.push(c);
                    continue;
                }
                keys.push(correlation(c)?);
            }
            if !keys.is_empty() && null_when_empty(expr) != Some(true) {
                return None;
            }
            let mut aggs = Vec::new();
            crate::hooks::nodes::walk(expr, |n| {
                if (*n).type_ == pg_sys::NodeTag::T_Aggref {
                    aggs.push(n as *mut pg_sys::Aggref);
                    return false;
                }
                true
            });
            if aggs.is_empty() {
                return None;
            }
            Some(Lookup { query: sub, keys, own, aggs })
        }
    }

    /// The inner stream table's columns: `k_1…` for the correlated
    /// columns, `a_1…` for the aggregates.
    fn columns(&self) -> Vec<String> {
        (1..=self.keys.len())
            .map(|i| format!("k_{i}"))
            .chain((1..=self.aggs.len()).map(|j| format!("a_{j}")))
            .collect()
    }

    /// The inner stream table's query and columns: the correlated columns
    /// `k_1…` and the aggregates `a_1…`, grouped by the former. Changes
    /// the subquery (call on a copy that is thrown away).
    unsafe fn inner_query(&self) -> Option<(String, Vec<String>)> {
        // SAFETY: the subquery and the nodes read were checked by `read`;
        // the new nodes are palloc'd in the current memory context.
        unsafe {
            let columns = self.columns();
            let mut exprs: Vec<*mut pg_sys::Node> =
                self.keys.iter().map(|&(op, side)| list_ptrs::<pg_sys::Node>((*op).args)[side]).collect();
            exprs.extend(self.aggs.iter().map(|&a| a as *mut pg_sys::Node));
            let mut items = Vec::new();
            for (i, (expr, name)) in exprs.into_iter().zip(&columns).enumerate() {
                items.push(target_entry(expr, i + 1, name)?);
            }
            let q = self.query;
            (*q).targetList = crate::hooks::nodes::list_from_ptrs(&items);
            (*(*q).jointree).quals = if self.own.is_empty() {
                std::ptr::null_mut()
            } else {
                pg_sys::make_ands_explicit(crate::hooks::nodes::list_from_ptrs(&self.own))
                    as *mut pg_sys::Node
            };
            let sql = crate::hooks::cstr(pg_sys::pg_get_querydef(q, false))?;
            let mut sql = sql.trim().trim_end_matches(';').to_string();
            if !self.keys.is_empty() {
                let by: Vec<String> = (1..=self.keys.len()).map(|i| i.to_string()).collect();
                sql.push_str(&format!(" GROUP BY {}", by.join(", ")));
            }
            Some((sql, columns))
        }
    }

    /// Make the subquery read WITH query `stand_in` (the inner stream
    /// table, `depth` levels up): `SELECT f(a…) FROM stand_in WHERE
    /// k_1 = e_1 AND …`.
    unsafe fn read_inner(&self, stand_in: &str, depth: u32) -> Option<()> {
        // SAFETY: as in inner_query; the first range table entry is a
        // relation's (checked by `read`), turned into the WITH query
        // reference, the only one left.
        unsafe {
            let q = self.query;
            let rte = list_ptrs::<pg_sys::RangeTblEntry>((*q).rtable)[0];
            crate::hooks::nodes::as_cte_reference(rte, stand_in, depth)?;
            let names = self.columns().iter().map(|c| string_node(c)).collect::<Option<Vec<_>>>()?;
            let alias = std::ffi::CString::new(stand_in).ok()?;
            (*rte).eref = pg_sys::makeAlias(alias.as_ptr(), crate::hooks::nodes::list_from_ptrs(&names));
            (*rte).alias = std::ptr::null_mut();
            (*rte).relid = pg_sys::InvalidOid;
            (*rte).inh = false;
            (*rte).perminfoindex = 0;
            (*rte).tablesample = std::ptr::null_mut();
            (*rte).securityQuals = std::ptr::null_mut();
            (*q).rtable = crate::hooks::nodes::list_from_ptrs(&[rte]);
            (*q).rteperminfos = std::ptr::null_mut();
            let mut quals = Vec::new();
            for (i, &(op, side)) in self.keys.iter().enumerate() {
                let copy = crate::hooks::nodes::copy_node(op);
                let mut args = list_ptrs::<pg_sys::Node>((*copy).args);
                let column = args[side];
                args[side] = pg_sys::makeVar(
                    1,
                    (i + 1) as i16,
                    pg_sys::exprType(column),
                    pg_sys::exprTypmod(column),
                    pg_sys::exprCollation(column),
                    0,
                ) as *mut pg_sys::Node;
                (*copy).args = crate::hooks::nodes::list_from_ptrs(&args);
                quals.push(copy as *mut pg_sys::Node);
            }
            let from = crate::hooks::nodes::make_node::<pg_sys::RangeTblRef>(pg_sys::NodeTag::T_RangeTblRef);
            (*from).rtindex = 1;
            let quals = if quals.is_empty() {
                std::ptr::null_mut()
            } else {
                pg_sys::make_ands_explicit(crate::hooks::nodes::list_from_ptrs(&quals)) as *mut pg_sys::Node
            };
            (*q).jointree = pg_sys::makeFromExpr(crate::hooks::nodes::list_from_ptrs(&[from]), quals);
            let item = list_ptrs::<pg_sys::TargetEntry>((*q).targetList)[0];
            let nkeys = self.keys.len();
            let aggs = &self.aggs;
            (*item).expr = crate::hooks::nodes::mutate((*item).expr as *mut pg_sys::Node, |n| {
                let j = aggs.iter().position(|a| *a as *mut pg_sys::Node == n)?;
                Some(pg_sys::makeVar(
                    1,
                    (nkeys + j + 1) as i16,
                    (*aggs[j]).aggtype,
                    -1,
                    (*aggs[j]).aggcollid,
                    0,
                ) as *mut pg_sys::Node)
            }) as *mut pg_sys::Expr;
            (*q).hasAggs = false;
            Some(())
        }
    }
}

/// Whether an expression has columns of its own level, of the next one
/// out, and anything that rules a lookup out (columns or aggregates of
/// levels further out, grouping functions).
///
/// # Safety
/// `node` is NULL or a valid expression tree.
unsafe fn levels(node: *mut pg_sys::Node) -> (bool, bool, bool) {
    let (mut own, mut outer, mut bad) = (false, false, false);
    // SAFETY: walk visits valid nodes, read by tag.
    unsafe {
        crate::hooks::nodes::walk(node, |n| {
            match (*n).type_ {
                pg_sys::NodeTag::T_Var => match (*(n as *mut pg_sys::Var)).varlevelsup {
                    0 => own = true,
                    1 => outer = true,
                    _ => bad = true,
                },
                pg_sys::NodeTag::T_Aggref => bad |= (*(n as *mut pg_sys::Aggref)).agglevelsup > 0,
                pg_sys::NodeTag::T_GroupingFunc
                | pg_sys::NodeTag::T_PlaceHolderVar
                | pg_sys::NodeTag::T_Query => bad = true,
                _ => {}
            }
            true
        });
    }
    (own, outer, bad)
}

/// A correlation `c = e` (see [`Lookup`]): the operator and which of its
/// arguments is the column.
///
/// # Safety
/// `c` is a valid expression.
unsafe fn correlation(c: *mut pg_sys::Node) -> Option<(*mut pg_sys::OpExpr, usize)> {
    // SAFETY: c is valid, read by tag.
    unsafe {
        if (*c).type_ != pg_sys::NodeTag::T_OpExpr {
            return None;
        }
        let op = c as *mut pg_sys::OpExpr;
        let args = list_ptrs::<pg_sys::Node>((*op).args);
        if args.len() != 2 || (*op).opretset {
            return None;
        }
        for side in 0..2 {
            let (column, other) = (args[side], args[1 - side]);
            if (*column).type_ != pg_sys::NodeTag::T_Var || (*(column as *mut pg_sys::Var)).varlevelsup != 0 {
                continue;
            }
            let (own, outer, bad) = levels(other);
            if own || !outer || bad || pg_sys::contain_volatile_functions(other) {
                continue;
            }
            let mut aggregates = false;
            crate::hooks::nodes::walk(other, |n| {
                aggregates |= (*n).type_ == pg_sys::NodeTag::T_Aggref;
                true
            });
            if !aggregates && super::slices::plain_equality((*op).opno, (*op).inputcollid, column, other) {
                return Some((op, side));
            }
        }
        None
    }
}

/// Whether an expression is NULL when the aggregates in it are computed
/// over no rows: Some(true) when it has such aggregates and is built of
/// them, constants, casts (RelabelType) and strict operators and functions;
/// Some(false) for constants alone; None otherwise.
///
/// # Safety
/// `e` is a valid expression.
unsafe fn null_when_empty(e: *mut pg_sys::Node) -> Option<bool> {
    // SAFETY: e and its arguments are valid, read by tag; the syscache
    // lookups return palloc'd names or NULL.
    unsafe {
        let strict_over = |func: pg_sys::Oid, args: *mut pg_sys::List| -> Option<bool> {
            if !pg_sys::func_strict(func) {
                return None;
            }
            let mut any = false;
            for a in list_ptrs::<pg_sys::Node>(args) {
                any |= null_when_empty(a)?;
            }
            Some(any)
        };
        match (*e).type_ {
            pg_sys::NodeTag::T_Const => Some(false),
            pg_sys::NodeTag::T_RelabelType => {
                null_when_empty((*(e as *mut pg_sys::RelabelType)).arg as *mut pg_sys::Node)
            }
            pg_sys::NodeTag::T_OpExpr => {
                let op = e as *mut pg_sys::OpExpr;
                strict_over(pg_sys::get_opcode((*op).opno), (*op).args)
            }
            pg_sys::NodeTag::T_FuncExpr => {
                let f = e as *mut pg_sys::FuncExpr;
                if (*f).funcretset {
                    return None;
                }
                strict_over((*f).funcid, (*f).args)
            }
            pg_sys::NodeTag::T_Aggref => {
                let agg = (*(e as *mut pg_sys::Aggref)).aggfnoid;
                if pg_sys::get_func_namespace(agg) != pg_sys::Oid::from(pg_sys::PG_CATALOG_NAMESPACE) {
                    return None;
                }
                let name = crate::hooks::cstr(pg_sys::get_func_name(agg))?;
                NULL_WHEN_EMPTY.contains(&name.as_str()).then_some(true)
            }
            _ => None,
        }
    }
}

/// A select-list item `expr AS name` at `resno`.
///
/// # Safety
/// `expr` is a valid expression.
unsafe fn target_entry(
    expr: *mut pg_sys::Node,
    resno: usize,
    name: &str,
) -> Option<*mut pg_sys::TargetEntry> {
    let name = std::ffi::CString::new(name).ok()?;
    // SAFETY: the expression is copied; makeTargetEntry and pstrdup
    // allocate in the current memory context.
    unsafe {
        Some(pg_sys::makeTargetEntry(
            crate::hooks::nodes::copy_node(expr) as *mut pg_sys::Expr,
            resno as i16,
            pg_sys::pstrdup(name.as_ptr()),
            false,
        ))
    }
}

/// A String node (a column name).
unsafe fn string_node(s: &str) -> Option<*mut pg_sys::String> {
    let s = std::ffi::CString::new(s).ok()?;
    // SAFETY: pstrdup and makeString allocate in the current memory context.
    unsafe { Some(pg_sys::makeString(pg_sys::pstrdup(s.as_ptr()))) }
}

/// Call `f` with `q` and every query inside it (subqueries in FROM, WITH
/// queries, subqueries in expressions), each with its depth below `q`.
///
/// # Safety
/// `q` is a valid Query whose nodes `f` may change but not free.
unsafe fn each_query(q: *mut pg_sys::Query, depth: u32, f: &mut dyn FnMut(*mut pg_sys::Query, u32)) {
    // SAFETY: q is a valid Query; its lists hold nodes of the types their
    // fields declare; expression walks see every SubLink's subquery as a
    // Query node (not entered by the walk).
    unsafe {
        f(q, depth);
        let mut inside: Vec<*mut pg_sys::Query> = Vec::new();
        for rte in list_ptrs::<pg_sys::RangeTblEntry>((*q).rtable) {
            match (*rte).rtekind {
                pg_sys::RTEKind::RTE_SUBQUERY if !(*rte).subquery.is_null() => inside.push((*rte).subquery),
                pg_sys::RTEKind::RTE_FUNCTION => {
                    collect_sublinks((*rte).functions as *mut pg_sys::Node, &mut inside)
                }
                pg_sys::RTEKind::RTE_VALUES => {
                    collect_sublinks((*rte).values_lists as *mut pg_sys::Node, &mut inside)
                }
                _ => {}
            }
        }
        for cte in list_ptrs::<pg_sys::CommonTableExpr>((*q).cteList) {
            let cq = (*cte).ctequery;
            if !cq.is_null() && (*cq).type_ == pg_sys::NodeTag::T_Query {
                inside.push(cq as *mut pg_sys::Query);
            }
        }
        for node in [
            (*q).targetList as *mut pg_sys::Node,
            (*q).jointree as *mut pg_sys::Node,
            (*q).havingQual,
            (*q).limitCount,
            (*q).limitOffset,
        ] {
            collect_sublinks(node, &mut inside);
        }
        for sub in inside {
            each_query(sub, depth + 1, f);
        }
    }
}

/// The subqueries of the SubLinks in an expression tree (not inside them).
///
/// # Safety
/// `node` is NULL or a valid expression tree.
unsafe fn collect_sublinks(node: *mut pg_sys::Node, out: &mut Vec<*mut pg_sys::Query>) {
    // SAFETY: walk visits valid nodes; a Query node met is a SubLink's
    // subquery.
    unsafe {
        crate::hooks::nodes::walk(node, |n| {
            if (*n).type_ == pg_sys::NodeTag::T_Query {
                out.push(n as *mut pg_sys::Query);
                return false;
            }
            true
        });
    }
}

// (A server is needed: `cargo pgrx test` runs it, with feature pg_test.)
#[cfg(feature = "pg_test")]
#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    /// The scalar subqueries of `query` that would be inner stream tables
    /// of a stream table that AUTO maintains differentially: (position,
    /// the inner query with spaces collapsed).
    fn lookups(query: &str) -> Vec<(usize, String)> {
        Spi::run("DROP MATERIALIZED VIEW IF EXISTS lookup_mv").unwrap();
        Spi::run(&format!("CREATE MATERIALIZED VIEW lookup_mv AS {query} WITH NO DATA")).unwrap();
        let relid = Spi::get_one::<pg_sys::Oid>("SELECT 'lookup_mv'::regclass::oid").unwrap().unwrap();
        let _path = crate::catalog::sys::SafeSearchPath::enter();
        super::candidates(relid)
            .into_iter()
            .map(|(position, sql, _)| (position, sql.split_whitespace().collect::<Vec<_>>().join(" ")))
            .collect()
    }

    #[pg_test]
    fn scalar_subqueries_that_an_inner_stream_table_can_answer() {
        Spi::run("CREATE TABLE lo (id int PRIMARY KEY, k int, j int, b bigint, x numeric, t text)").unwrap();
        Spi::run("CREATE TABLE li (k int, j int, b bigint, x numeric, t text)").unwrap();
        // Correlated by = on two columns, with conditions of its own: grouped
        // by the correlated columns, the conditions kept.
        assert_eq!(
            lookups(
                "SELECT id FROM lo WHERE x > (SELECT 0.5 * sum(li.x) FROM li \
                  WHERE li.k = lo.k AND lo.j + 1 = li.j AND li.t <> 'a')"
            ),
            vec![(
                2001,
                "SELECT k AS k_1, j AS k_2, sum(x) AS a_1 FROM public.li WHERE (t <> 'a'::text) GROUP BY 1, 2".into()
            )]
        );
        // Uncorrelated: any aggregate, one row; in HAVING and the select list
        // too, numbered in order.
        assert_eq!(
            lookups(
                "SELECT k, (SELECT max(x) FROM li) AS top FROM lo GROUP BY k \
                 HAVING count(*) > (SELECT count(*) FROM li) / 4"
            ),
            vec![
                (2001, "SELECT max(x) AS a_1 FROM public.li".into()),
                (2002, "SELECT count(*) AS a_1 FROM public.li".into())
            ]
        );
        // Not lookups: a correlated count (0 over no rows), an item not NULL
        // when its aggregate is, a correlation that is not =, or = across
        // types, an outer column in the select list, a GROUP BY, no
        // aggregate, a column two levels out.
        for query in [
            "SELECT id FROM lo WHERE k < (SELECT count(*) FROM li WHERE li.k = lo.k)",
            "SELECT id FROM lo WHERE x > (SELECT coalesce(sum(li.x), 0) FROM li WHERE li.k = lo.k)",
            "SELECT id FROM lo WHERE x > (SELECT sum(li.x) FROM li WHERE li.k < lo.k)",
            "SELECT id FROM lo WHERE x > (SELECT sum(li.x) FROM li WHERE li.b = lo.k)",
            "SELECT id FROM lo WHERE x > (SELECT sum(li.x) + lo.j FROM li WHERE li.k = lo.k)",
            "SELECT id FROM lo WHERE x > (SELECT sum(li.x) FROM li WHERE li.k = lo.k GROUP BY li.j LIMIT 1)",
            "SELECT id FROM lo WHERE x > (SELECT li.x FROM li WHERE li.k = lo.k LIMIT 1)",
            "SELECT id FROM lo WHERE EXISTS (SELECT 1 FROM li WHERE li.k = lo.k \
               AND li.x > (SELECT sum(i2.x) FROM li i2 WHERE i2.j = lo.j))",
        ] {
            assert_eq!(lookups(query), vec![], "{query}");
        }
    }
}
