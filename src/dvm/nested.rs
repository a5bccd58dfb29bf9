//! Aggregating WITH queries and subqueries in FROM kept as inner stream
//! tables.
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
//! maintained differentially by itself becomes an *inner stream table*: a
//! DIFFERENTIAL stream table `pgtrickle_state.inner_<oid>_<n>` (`n`: its
//! position in the WITH list, or [`FROM_BASE`] plus its range table index)
//! with its own query. A refresh of the outer stream table first refreshes
//! its inner ones, on its own snapshot, then recomputes its query with
//! every reference to them reading the inner stream tables instead: a
//! query over the aggregates' rows (one per supplier), not over the table
//! they aggregate.
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
use std::collections::HashSet;
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
    /// Stream tables (and their owners) whose WITH queries and subqueries
    /// could not become inner stream tables in this backend: not tried
    /// again until it ends or the owner changes.
    static REFUSED: RefCell<HashSet<(u32, u32)>> = RefCell::new(HashSet::new());
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

/// Make the inner stream tables of `relid` exist when `wanted` (creating
/// those its WITH queries allow, once), or not at all; returns them.
pub fn sync(relid: pg_sys::Oid, wanted: bool) -> PgtResult<Vec<Inner>> {
    let existing = inners(relid)?;
    if !wanted {
        if !existing.is_empty() {
            for inner in existing {
                drop_inner(inner.relid)?;
            }
            crate::cdc::consumers::cleanup()?;
        }
        return Ok(Vec::new());
    }
    if !existing.is_empty() {
        return Ok(existing);
    }
    let refused = (relid.to_u32(), sys::relation_owner(relid)?.to_u32());
    if REFUSED.with(|r| r.borrow().contains(&refused)) {
        return Ok(existing);
    }
    // (Deparsed with every name qualified, for the safe search_path the
    // statements run with.)
    let candidates = {
        let _path = sys::SafeSearchPath::enter();
        candidates(relid)
    };
    let mut made = Vec::new();
    for (position, sql, columns) in candidates {
        if let Some(inner) = create(relid, position, &sql, &columns)? {
            made.push(inner);
        }
    }
    if made.is_empty() {
        REFUSED.with(|r| r.borrow_mut().insert(refused));
    }
    Ok(made)
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
/// longer refreshed in FULL by AUTO, and those that are no longer stream
/// tables (their owner turned them into plain materialized views).
pub fn drop_orphans() -> PgtResult<()> {
    let orphans: Vec<pg_sys::Oid> = crate::catalog::sys::column_values::<pg_sys::Oid>(
        "SELECT c.oid FROM pg_catalog.pg_class c \
           JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
          WHERE n.nspname OPERATOR(pg_catalog.=) 'pgtrickle_state' AND c.relkind OPERATOR(pg_catalog.=) 'm' \
            AND c.relname OPERATOR(pg_catalog.~) '^inner_[0-9]+_[0-9]+$' \
            AND (NOT EXISTS (SELECT 1 FROM pgtrickle.pgt_stream_tables i WHERE i.relid OPERATOR(pg_catalog.=) c.oid) \
                 OR NOT EXISTS (SELECT 1 FROM pgtrickle.pgt_stream_tables st \
                             WHERE st.requested_mode OPERATOR(pg_catalog.=) 'auto' \
                               AND st.refresh_mode OPERATOR(pg_catalog.=) 'full' \
                               AND pg_catalog.starts_with(c.relname::pg_catalog.text, \
                                       'inner_' OPERATOR(pg_catalog.||) st.relid::pg_catalog.text OPERATOR(pg_catalog.||) '_')))",
        &[],
    )?;
    for inner in orphans {
        drop_inner(inner)?;
    }
    Ok(())
}

/// Refresh `relid` through its inner stream tables, on `snapshot`: each
/// inner one first (differentially), then the query over them, whose rows
/// replace the stream table's. None when it has none, or is not populated
/// (REFRESH populates it, after the inner ones).
pub fn refresh(
    relid: pg_sys::Oid,
    settings: &StreamSettings,
    effective: RefreshMode,
    snapshot: &RefreshSnapshot,
) -> PgtResult<Option<(i64, Vec<Inner>)>> {
    let inner = sync(relid, wanted(settings, effective))?;
    if inner.is_empty() {
        return Ok(None);
    }
    let owner = sys::relation_owner(relid)?;
    for i in &inner {
        // (They follow the stream table's owner: ALTER ... OWNER TO.)
        if sys::relation_owner(i.relid)? != owner {
            set_owner(i.relid, owner)?;
        }
        crate::refresh::refresh_on(i.relid, crate::refresh::RefreshTrigger::Outer, Some(snapshot))?;
    }
    // Not populated (its first refresh, by CREATE): REFRESH populates it;
    // the inner ones, populated now, are ready for the next refresh.
    if !crate::refresh::immediate::is_populated(relid)? {
        return Ok(None);
    }
    let Some(query) = recompute_sql(relid, &inner)? else { return Ok(None) };
    let st = crate::catalog::lifecycle::relation_name(relid)?;
    let rows = sys::as_restricted_role(owner, || {
        crate::refresh::window::with_window(relid, || -> PgtResult<u64> {
            snapshot.execute(&format!("DELETE FROM {st}"), false)?;
            snapshot.execute(&format!("INSERT INTO {st} {query}"), false)
        })
    })?;
    // Stream tables reading this one recompute (its changes were not
    // recorded), as after a REFRESH.
    if crate::cdc::buffer::buffer_relid(relid)?.is_some() {
        sys::as_extension_owner(|| crate::cdc::buffer::mark_truncated(relid))?;
    }
    Ok(Some((rows as i64, inner)))
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
            let mut withs = Vec::new();
            let mut renames = Vec::new();
            for i in inner {
                let part = parts.iter().find(|p| p.position == i.position)?;
                let stand_in = format!("__pgt_inner{}", i.position);
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

/// The parts of the top level that could be inner stream tables:
/// (position; the query, deparsed; its output columns, quoted). A part
/// qualifies when it is a SELECT that aggregates, is read, and reads no
/// WITH query of the levels above it.
fn candidates(relid: pg_sys::Oid) -> Vec<(usize, String, Vec<String>)> {
    // SAFETY: the copy of the stored Query is only read and deparsed.
    unsafe {
        super::analysis::with_query_copy(relid, false, |q| {
            let mut out = Vec::new();
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
                let sql = sql.trim().trim_end_matches(';').to_string();
                out.push((part.position, sql, part.columns.iter().map(|c| quote_ident(c)).collect()));
            }
            Some(out)
        })
        .unwrap_or_default()
    }
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
