//! IMMEDIATE: the rows an INSERT adds to a filter, projection or inner
//! join keyed by its tables' primary keys, computed from the statement's
//! new rows alone.
//!
//! Rule. Let the stream table be `Q(T, U, ...)`, keyed by the primary
//! keys of every table reference, with `T` referenced once (and not by a
//! subquery). An INSERT into `T` adds rows with new primary keys, so the
//! stream table has no row with those keys, and the rows it gains are
//! exactly `Q(new rows of T, U, ...)`: the query with `T` replaced by the
//! statement's transition table. They are inserted, with no lookup of the
//! stream table and no recomputation by key (which reads `T` again for
//! every new key).
//!
//! That holds when nothing else changed `T`'s new rows or the other tables
//! between the statement and its maintenance: no other statement on a
//! source of the stream table started while this one was pending
//! (`cdc::statements::alone`, which needs the BEFORE STATEMENT trigger on
//! every source). Otherwise the statement is maintained by key recompute.

use pgrx::pg_sys;

use crate::cdc::triggers::NEW_TABLE;
use crate::error::{PgtError, PgtResult};
use crate::hooks::nodes::list_ptrs;

/// The sources whose INSERTs a plan may apply from their new rows alone
/// (each referenced once, by a key-bearing or implied reference), or None
/// when the plan is not rows keyed by its tables' primary keys: a filter,
/// projection or inner join without subqueries, ORDER BY ... LIMIT or
/// stream tables among its sources.
///
/// (An implied reference's new rows add rows too: its key is equal to
/// columns of the rows that determine it, which met no row of it with that
/// key before, so had no row in the stream table.)
pub fn eligible(plan: &super::analysis::Plan) -> Option<Vec<pg_sys::Oid>> {
    if plan.shape != super::analysis::Shape::Rows
        || plan.topk.is_some()
        || plan.reads_stream_tables
        || !plan.full_on.is_empty()
        || plan.followed().iter().any(|(rte, _, _, _)| !plan.implied.contains(rte))
    {
        return None;
    }
    let groups = plan.key_groups();
    let sources: Vec<pg_sys::Oid> =
        groups.iter().map(|g| g[0].source).chain(plan.implied_sources()).collect();
    let once: Vec<pg_sys::Oid> =
        sources.iter().copied().filter(|s| sources.iter().filter(|t| *t == s).count() == 1).collect();
    (!once.is_empty() && plan.sources().len() == sources.len()).then_some(once)
}

/// The stream table's query with its one top-level reference to `source`
/// reading the statement's new rows (`__pgt_new`) instead; None when
/// `source` is referenced more than once or inside a subquery, or has
/// dropped columns. Deparsed like `pg_get_viewdef`: call it as the owner,
/// under the role switch's `search_path`.
pub fn query_over_new_rows(relid: pg_sys::Oid, source: pg_sys::Oid) -> PgtResult<Option<String>> {
    if has_dropped_columns(source)? {
        // (The transition table has them: its columns would not line up
        // with the deparsed reference's.)
        return Ok(None);
    }
    // SAFETY: the copy's range table entry is changed, then the copy
    // deparsed; pg_get_querydef returns a palloc'd string, copied out.
    Ok(unsafe { super::analysis::with_query_copy(relid, false, |copy| replace_reference(copy, source)) })
}

/// Deparse `copy` (a copy of the stored Query) with its one reference to
/// `source` naming the transition table (as a WITH query reference of that
/// name, which the parser resolves to the ephemeral named relation).
///
/// # Safety
/// `copy` is a valid analyzed Query the caller owns.
unsafe fn replace_reference(copy: *mut pg_sys::Query, source: pg_sys::Oid) -> Option<String> {
    // SAFETY: see query_over_new_rows.
    unsafe {
        if !(*copy).cteList.is_null() || !(*copy).setOperations.is_null() {
            return None;
        }
        let rtable = list_ptrs::<pg_sys::RangeTblEntry>((*copy).rtable);
        let refs: Vec<_> = rtable
            .iter()
            .filter(|r| (***r).rtekind == pg_sys::RTEKind::RTE_RELATION && (***r).relid == source)
            .collect();
        let [rte] = refs.as_slice() else { return None };
        crate::hooks::nodes::as_cte_reference(**rte, NEW_TABLE, 0)?;
        crate::hooks::cstr(pg_sys::pg_get_querydef(copy, false))
    }
}

/// Would `owner` read every row of `source` (SELECT on it, no row level
/// security applying to it)? The transition table is read without either
/// check.
pub fn reads_like_the_table(owner: pg_sys::Oid, source: pg_sys::Oid) -> PgtResult<bool> {
    Ok(crate::catalog::sys::kept_one::<bool>(
        "SELECT pg_catalog.has_table_privilege($1, $2, 'SELECT') \
            AND NOT (c.relrowsecurity AND NOT pg_catalog.pg_has_role($1, c.relowner, 'USAGE') \
                     AND NOT (SELECT r.rolbypassrls FROM pg_catalog.pg_roles r WHERE r.oid OPERATOR(pg_catalog.=) $1) \
                     OR c.relforcerowsecurity) \
           FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) $2",
        &[owner.into(), source.into()],
    )?
    .unwrap_or(false))
}

fn has_dropped_columns(source: pg_sys::Oid) -> PgtResult<bool> {
    crate::catalog::sys::kept_one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute \
                         WHERE attrelid OPERATOR(pg_catalog.=) $1 AND attisdropped)",
        &[source.into()],
    )?
    .ok_or_else(|| PgtError::Internal("no answer".into()))
}
