//! The SQL surface: functions mirroring the DDL, for tools that prefer
//! function calls. Each goes through the same core as the DDL hook:
//! `create_stream_table` issues the CREATE MATERIALIZED VIEW statement
//! itself (so the hook handles it), the others call the catalog lifecycle and
//! refresh directly.

use pgrx::prelude::*;

use crate::catalog::lifecycle;
use crate::catalog::options::OptionChange;
use crate::catalog::{stream_tables, sys};
use crate::error::{OrReport, PgtError, PgtResult};
use crate::refresh::{self, RefreshTrigger};
use crate::sql::quote_literal;

/// Resolve a relation name the way `::regclass` does (errors if missing).
fn resolve(name: &str) -> PgtResult<pg_sys::Oid> {
    crate::catalog::sys::kept_one::<pg_sys::Oid>(
        "SELECT $1::pg_catalog.regclass::pg_catalog.oid",
        &[name.into()],
    )?
    .ok_or_else(|| PgtError::Internal(format!("could not resolve \"{name}\"")))
}

fn resolve_stream_table(name: &str) -> PgtResult<pg_sys::Oid> {
    let relid = resolve(name)?;
    if !stream_tables::exists(relid)? {
        return Err(PgtError::NotAStreamTable { name: lifecycle::relation_name(relid)? });
    }
    Ok(relid)
}

/// Check that `query` is one SELECT (no `INTO`), before we build DDL with it.
fn check_query(query: &str) -> PgtResult<()> {
    let c_query = std::ffi::CString::new(query)
        .map_err(|_| PgtError::NotASelect { detail: "The query contains a NUL byte.".into() })?;
    // SAFETY: raw_parser parses into the current memory context and raises a
    // syntax ERROR for invalid input; the result is a List of RawStmt.
    let (count, tag, has_into) = unsafe {
        let list = pg_sys::raw_parser(c_query.as_ptr(), pg_sys::RawParseMode::RAW_PARSE_DEFAULT);
        let stmts = crate::hooks::list_ptrs::<pg_sys::RawStmt>(list);
        match stmts.first() {
            Some(&raw) => {
                let node = (*raw).stmt;
                let tag = (*node).type_;
                let has_into = tag == pg_sys::NodeTag::T_SelectStmt
                    && !(*(node as *mut pg_sys::SelectStmt)).intoClause.is_null();
                (stmts.len(), Some(tag), has_into)
            }
            None => (0, None, false),
        }
    };
    if count != 1 {
        return Err(PgtError::NotASelect { detail: format!("The text holds {count} statements.") });
    }
    if tag != Some(pg_sys::NodeTag::T_SelectStmt) {
        return Err(PgtError::NotASelect { detail: "The statement is not a SELECT.".into() });
    }
    if has_into {
        return Err(PgtError::NotASelect { detail: "SELECT ... INTO is not allowed.".into() });
    }
    Ok(())
}

fn create(name: &str, query: &str, refresh_mode: &str, schedule: Option<&str>) -> PgtResult<()> {
    if sys::extension_oid().is_none() {
        return Err(PgtError::ExtensionMissing);
    }
    let query = query.trim().trim_end_matches(';').trim_end();
    check_query(query)?;
    let target = crate::catalog::sys::kept_one::<String>(
        "SELECT pg_catalog.string_agg(pg_catalog.quote_ident(part), '.' ORDER BY ord) \
           FROM pg_catalog.unnest(pg_catalog.parse_ident($1)) WITH ORDINALITY AS p(part, ord)",
        &[name.into()],
    )?
    .ok_or_else(|| PgtError::Internal(format!("invalid name \"{name}\"")))?;
    let mut with =
        format!("pgtrickle.stream = true, pgtrickle.refresh_mode = {}", quote_literal(refresh_mode));
    if let Some(s) = schedule {
        with.push_str(&format!(", pgtrickle.schedule = {}", quote_literal(s)));
    }
    Spi::run(&format!("CREATE MATERIALIZED VIEW {target} WITH ({with}) AS {query}"))?;
    Ok(())
}

fn alter(name: &str, refresh_mode: Option<&str>, schedule: Option<&str>) -> PgtResult<()> {
    let relid = resolve_stream_table(name)?;
    let mut changes = Vec::new();
    if let Some(m) = refresh_mode {
        changes.push(OptionChange::Set { key: "refresh_mode".into(), value: m.into() });
    }
    match schedule {
        Some(s) if s.trim().is_empty() => changes.push(OptionChange::Reset { key: "schedule".into() }),
        Some(s) => changes.push(OptionChange::Set { key: "schedule".into(), value: s.into() }),
        None => {}
    }
    lifecycle::alter(relid, &changes)
}

fn drop_st(name: &str) -> PgtResult<()> {
    let relid = resolve_stream_table(name)?;
    Spi::run(&format!("DROP MATERIALIZED VIEW {}", lifecycle::relation_name(relid)?))?;
    Ok(())
}

fn explain(name: &str) -> PgtResult<Vec<(String, Option<String>)>> {
    let relid = resolve_stream_table(name)?;
    let st = stream_tables::get(relid)?.ok_or_else(|| PgtError::NotAStreamTable { name: name.into() })?;
    let mut out = vec![
        ("requested mode".to_string(), Some(st.settings.refresh_mode.as_str().to_string())),
        ("refresh mode".to_string(), Some(st.effective_mode.as_str().to_string())),
        ("consumes changes".to_string(), Some(st.consumes_changes.to_string())),
    ];
    if let Some(tree) = crate::dvm::operators::operator_tree(relid) {
        out.push(("operator tree".into(), Some(tree)));
    }
    let inner = crate::dvm::nested::inners(relid)?;
    for i in &inner {
        out.push(("inner stream table".into(), Some(lifecycle::relation_name(i.relid)?)));
    }
    if !inner.is_empty() {
        out.push((
            "query over inner stream tables".into(),
            crate::dvm::nested::recompute_sql(relid, &inner)?,
        ));
    }
    match crate::dvm::analysis::analyze(relid)? {
        Err(why) => out.push(("not differential because".into(), Some(why.0))),
        Ok(plan) => {
            let keys = crate::dvm::key_recompute::placeholder_keys(relid, &plan)?;
            let algebraic =
                plan.algebraic.is_some() && st.effective_mode != crate::catalog::options::RefreshMode::Full;
            let join = plan.algebraic.as_ref().and_then(|a| a.join.as_ref()).filter(|_| algebraic);
            let sliced = plan.algebraic.as_ref().and_then(|a| a.slices.as_ref()).filter(|_| algebraic);
            // (A multiset over several tables reads its rows the same ways.)
            let join = join.or(plan.multiset.as_ref().and_then(|m| m.join.as_ref()));
            let sliced = sliced.or(plan.multiset.as_ref().and_then(|m| m.slices.as_ref()));
            let (over, kinds) = if join.is_some_and(|j| j.tables.len() == 1) {
                (" of one table by expressions", "count/sum/avg/min/max")
            } else if join.is_some() {
                (" over an inner join", "count/sum/avg/min/max")
            } else if sliced.is_some() {
                ("", "count/sum/avg")
            } else {
                ("", "count/sum/avg/min/max")
            };
            let strategy = if algebraic && plan.shape == crate::dvm::analysis::Shape::Scalar {
                format!(
                    "running totals: aggregate without GROUP BY{over} of {kinds} kept from totals in {}",
                    crate::dvm::algebraic::state_name(relid)
                )
            } else if algebraic && crate::dvm::algebraic::in_place(&plan) {
                format!(
                    "running totals: grouped aggregate{over} of count/sum/avg kept in its own columns \
                     (count(*) counts each group's rows)"
                )
            } else if algebraic
                && plan
                    .algebraic
                    .as_ref()
                    .is_some_and(|a| a.aggregates.is_empty() && a.derived.is_empty() && a.having.is_none())
            {
                // (GROUP BY without aggregates, or SELECT DISTINCT: counts.)
                format!(
                    "running totals: groups{over} kept from per-group row counts in {} \
                     (a group goes when its count reaches 0)",
                    crate::dvm::algebraic::state_name(relid)
                )
            } else if algebraic {
                let having = if plan.algebraic.as_ref().is_some_and(|a| a.having.is_some()) {
                    " (a group has a row while its totals pass HAVING)"
                } else {
                    ""
                };
                format!(
                    "running totals: grouped aggregate{over} of {kinds} kept from per-group totals in {}{having}",
                    crate::dvm::algebraic::state_name(relid)
                )
            } else if let Some(m) = plan.multiset.as_ref().filter(|m| !m.union.is_empty()) {
                format!(
                    "delta: UNION ALL of {} filters, projections or inner joins: the rows the changes add to and \
                     remove from each branch, counted per image and applied, copies included",
                    m.union.len()
                )
            } else if plan.rows.is_some() && plan.shape == crate::dvm::analysis::Shape::Rows {
                "delta: filter/projection of one table keyed by its primary key: the changed rows' old and new images counted and applied (differential refresh; immediate maintenance recomputes the keys)".to_string()
            } else {
                let how =
                    if plan.rows.is_some() || plan.multiset.is_some() { "delta" } else { "key recompute" };
                format!("{how}: {}", plan.shape.as_str())
            };
            let strategy = match plan.outer_paths.is_empty() {
                true => strategy,
                false => format!(
                    "{strategy}; the WHERE clause reads a nullable side: a changed row there reaches, by its old \
                     and new values, the rows of the other side it joins through the ON clauses' = conditions"
                ),
            };
            let strategy = if sliced.is_some() {
                format!("{strategy}; a change adds the rows of the slices it touches and subtracts them as they were")
            } else {
                strategy
            };
            out.push(("strategy".into(), Some(strategy)));
            if let Some(st) = sliced {
                // Each table reference: restricted to the touched slices by
                // a column, or read whole (a change of it recomputes all).
                let mut refs = Vec::new();
                for r in &st.refs {
                    let table = crate::catalog::lifecycle::relation_name(r.relid)?;
                    refs.push(match r.chain {
                        Some(attnum) if !r.pk.is_empty() => {
                            let names = crate::catalog::sys::attribute_names(r.relid, Some(&[attnum]))?;
                            let column = names.first().map(|(_, n)| n.clone()).unwrap_or_default();
                            let mut notes = Vec::new();
                            if let Some(condition) = &r.relevant {
                                notes.push(format!(
                                    "a changed row touches a slice when it passes {condition}"
                                ));
                            }
                            if r.exists_own.is_some() {
                                notes.push(
                                    "a change touches a slice only when its EXISTS answers differently there"
                                        .to_string(),
                                );
                            }
                            match notes.is_empty() {
                                true => format!("{table} by {column}"),
                                false => format!("{table} by {column} ({})", notes.join("; ")),
                            }
                        }
                        _ => format!("{table} read whole (a change recomputes the query)"),
                    });
                }
                out.push(("slices".into(), Some(refs.join("; "))));
                if let Some(root) = st.refs.iter().find(|r| r.id == st.root) {
                    let table = crate::catalog::lifecycle::relation_name(root.relid)?;
                    let attnum = root.chain.unwrap_or_default();
                    let names = crate::catalog::sys::attribute_names(root.relid, Some(&[attnum]))?;
                    let column = names.first().map(|(_, n)| n.clone()).unwrap_or_default();
                    let kept = match &st.root_filter {
                        Some(filter) => format!(
                            ", a touched slice kept when its {table} row passes {filter} (now or before)"
                        ),
                        None => String::new(),
                    };
                    out.push(("slice root".into(), Some(format!("{table} by {column}{kept}"))));
                }
            }
            if let Some(topk) = &plan.topk {
                let columns: Vec<String> =
                    crate::dvm::key_recompute::output_columns(relid)?.into_iter().map(|(n, _)| n).collect();
                let order = crate::dvm::topk::order_sql(topk, &columns, "")?;
                let ranked = if plan.key.is_empty() {
                    "the stream table's rows less the copies the changes remove, and the copies they add"
                } else {
                    "the affected keys' rows and the stream table's others"
                };
                out.push((
                    "order and limit".into(),
                    Some(format!(
                        "ORDER BY {order} LIMIT {}: the first rows of the query without them, ranked from {ranked}; \
                         the query is ranked whole when rows leave and too few replace them",
                        topk.limit
                    )),
                ));
            }
            if let Some(jt) = join {
                // Each change term reads the changed table's rows and the
                // others' states through these stand-ins.
                out.push(("join rows".into(), Some(jt.select_sql.clone())));
            }
            if let Some(m) = &plan.multiset {
                for (i, branch) in m.union.iter().enumerate() {
                    out.push((format!("branch {} rows", i + 1), Some(branch.select_sql.clone())));
                }
            }
            out.push((
                "row identity".into(),
                Some(if plan.shape == crate::dvm::analysis::Shape::Keyless {
                    "none: all columns, with multiplicity (rows computed from the changed rows)".to_string()
                } else if plan.shape == crate::dvm::analysis::Shape::Multiset {
                    "none: all columns, with multiplicity (the rows the changes add and remove)".to_string()
                } else if plan.key.is_empty() {
                    "none (at most one row)".to_string()
                } else if plan.shape.keyed_multiset() {
                    let mut cols: Vec<String> = keys.iter().flatten().map(|k| k.column.clone()).collect();
                    cols.dedup();
                    format!("all columns, with multiplicity (rows found through {})", cols.join(", "))
                } else {
                    let columns = keys.iter().flatten().map(|k| k.column.clone()).collect::<Vec<_>>().join(", ");
                    // (Tables joined by their primary key: see
                    // analysis::implied_references.)
                    let mut implied = Vec::new();
                    for source in plan.implied_sources() {
                        let name = lifecycle::relation_name(source)?;
                        if !implied.contains(&name) {
                            implied.push(name);
                        }
                    }
                    match implied.is_empty() {
                        true => columns,
                        false => format!(
                            "{columns} (rows of {} are joined by their primary key: a change of one reaches the rows joined to it)",
                            implied.join(", ")
                        ),
                    }
                }),
            ));
            let sources =
                plan.sources().into_iter().map(lifecycle::relation_name).collect::<PgtResult<Vec<_>>>()?;
            out.push(("sources".into(), Some(sources.join(", "))));
            if st.effective_mode == crate::catalog::options::RefreshMode::Immediate {
                // (See refresh::immediate::lock_mode.)
                use crate::refresh::immediate::{sharing, SharedLock, Sharing};
                let lock = match sharing(relid, &plan)? {
                    Sharing::RowExclusive(SharedLock::OwnedRows(source)) => format!(
                        "ROW EXCLUSIVE for READ COMMITTED writers (each row belongs to one row of {}, by its primary key), \
                         EXCLUSIVE for others",
                        lifecycle::relation_name(source)?
                    ),
                    Sharing::RowExclusive(SharedLock::AddedTotals) => "ROW EXCLUSIVE for READ COMMITTED writers (running totals, \
                         which each statement adds to group by group, in key order), EXCLUSIVE for others"
                        .to_string(),
                    Sharing::PerKey(keys) => format!(
                        "ROW EXCLUSIVE and a lock on each value of {} a statement changes, for READ COMMITTED \
                         statements outside a transaction block (writers of one table share them, writers of \
                         the other wait), EXCLUSIVE for others and past pg_trickle.immediate_key_locks values",
                        keys.equality()?
                    ),
                    Sharing::Exclusive => "EXCLUSIVE".to_string(),
                };
                out.push(("immediate lock".into(), Some(lock)));
            }
            let key_names = crate::dvm::key_recompute::key_names(relid, &plan)?;
            let apply_keys = match plan.shape {
                crate::dvm::analysis::Shape::LeftJoin { preserved, .. } => keys
                    .iter()
                    .zip(plan.key_groups())
                    .filter(|(_, g)| g[0].rte == preserved)
                    .map(|(k, _)| k.clone())
                    .collect(),
                _ => keys.clone(),
            };
            let recompute = if algebraic {
                crate::dvm::algebraic::recompute_sql(relid, &plan, &apply_keys)?
            } else if plan.shape == crate::dvm::analysis::Shape::Scalar {
                let owner = sys::relation_owner(relid)?;
                Some(sys::as_restricted_role(owner, || crate::dvm::key_recompute::whole_query(relid))?)
            } else {
                None
            };
            let apply = if algebraic && crate::dvm::algebraic::in_place(&plan) {
                // The touched groups' rows added to, in one statement.
                let owner = sys::relation_owner(relid)?;
                sys::as_restricted_role(owner, || crate::dvm::algebraic::explain_in_place(relid, &plan))?
            } else if algebraic && crate::dvm::algebraic::fuses(relid, &plan)? {
                // The totals and the touched groups' rows in one statement.
                let owner = sys::relation_owner(relid)?;
                sys::as_restricted_role(owner, || crate::dvm::algebraic::explain_fused(relid, &plan))?
            } else if let Some(m) = &plan.multiset {
                // Every table's change rows, read from its change buffer
                // in the refresh's window (a refresh reads those of the
                // tables that changed; one read whole recomputes all).
                let mut read = Vec::new();
                for source in m.tables().into_iter().filter(|s| !plan.full_on.contains(s)) {
                    read.push((source, m.columns_of(source), crate::cdc::buffer::rows_sql(source)?));
                }
                let changes: Vec<crate::dvm::join_totals::Changes> = read
                    .iter()
                    .map(|(source, attnums, rows)| crate::dvm::join_totals::Changes {
                        source: *source,
                        attnums,
                        rows: crate::dvm::algebraic::ChangeRows::Window {
                            rows,
                            window: "/* in the refresh's window */ true",
                        },
                    })
                    .collect();
                let owner = sys::relation_owner(relid)?;
                sys::as_restricted_role(owner, || {
                    crate::dvm::keyless::multiset_apply_sql(relid, &plan, &changes, None)
                })?
                .unwrap_or_default()
            } else if plan.rows.is_some() {
                // The changed rows, read from the change buffer in the
                // refresh's window.
                let source =
                    plan.grouped_source().ok_or_else(|| PgtError::Internal("no source table".into()))?;
                let buffered = crate::cdc::buffer::rows_sql(source)?;
                let owner = sys::relation_owner(relid)?;
                sys::as_restricted_role(owner, || {
                    crate::dvm::keyless::apply_sql(
                        relid,
                        &plan,
                        crate::dvm::algebraic::ChangeRows::Window {
                            rows: &buffered,
                            window: "/* in the refresh's window */ true",
                        },
                        None,
                    )
                })?
            } else if let Some(topk) = &plan.topk {
                // The new first rows, applied as differences from all rows.
                let touched = if algebraic { recompute.as_deref() } else { None };
                let rows = crate::dvm::topk::first_rows_sql(relid, &plan, topk, &apply_keys, touched)?;
                crate::dvm::key_recompute::explain_sql(relid, &[], &key_names, Some(&rows), &[])?
            } else {
                crate::dvm::key_recompute::explain_sql(
                    relid,
                    &apply_keys,
                    &key_names,
                    recompute.as_deref(),
                    plan.pushed_keys(),
                )?
            };
            out.push(("apply".into(), Some(apply)));
        }
    }
    Ok(out)
}

fn set_status(name: &str, status: &str) -> PgtResult<()> {
    let relid = resolve_stream_table(name)?;
    if !sys::current_user_owns(relid) {
        return Err(PgtError::NotOwner { name: lifecycle::relation_name(relid)? });
    }
    lifecycle::alter(relid, &[OptionChange::Set { key: "status".into(), value: status.into() }])
}

#[pg_schema]
mod pgtrickle {
    use super::*;

    /// Create a stream table (same as CREATE MATERIALIZED VIEW … WITH (pgtrickle.stream = true)).
    #[pg_extern(volatile, parallel_unsafe)]
    fn create_stream_table(
        name: &str,
        query: &str,
        refresh_mode: default!(&str, "'auto'"),
        schedule: default!(Option<&str>, "NULL"),
    ) {
        create(name, query, refresh_mode, schedule).or_report()
    }

    /// Change a stream table's settings; NULL leaves a setting as it is, and an
    /// empty schedule removes the schedule.
    #[pg_extern(volatile, parallel_unsafe)]
    fn alter_stream_table(
        name: &str,
        refresh_mode: default!(Option<&str>, "NULL"),
        schedule: default!(Option<&str>, "NULL"),
    ) {
        alter(name, refresh_mode, schedule).or_report()
    }

    /// Drop a stream table (same as DROP MATERIALIZED VIEW).
    #[pg_extern(volatile, parallel_unsafe)]
    fn drop_stream_table(name: &str) {
        drop_st(name).or_report()
    }

    /// Called by the sql_drop event trigger: remove change capture from
    /// sources no stream table consumes any more.
    #[pg_extern(volatile, parallel_unsafe)]
    fn _cleanup_change_capture() {
        // Our own DROPs (of buffers) fire the event trigger again: skip.
        if !crate::hooks::is_internal() {
            crate::cdc::consumers::cleanup().or_report()
        }
    }

    /// Pending rows and oldest pending change of a source's change buffer.
    #[pg_extern(volatile, parallel_unsafe)]
    fn _buffer_stats(
        source: pg_sys::Oid,
    ) -> TableIterator<
        'static,
        (name!(pending_rows, i64), name!(oldest_change, Option<pgrx::datum::TimestampWithTimeZone>)),
    > {
        let stats = crate::cdc::buffer::stats(source).or_report();
        TableIterator::once(stats)
    }

    /// How a stream table is maintained: one (property, value) row each for
    /// its mode, the reason it is not differential (if not), the row
    /// identity, and the statements a differential refresh runs.
    #[pg_extern(volatile, parallel_unsafe)]
    fn explain_stream_table(
        name: &str,
    ) -> TableIterator<'static, (name!(property, String), name!(value, Option<String>))> {
        TableIterator::new(explain(name).or_report())
    }

    /// Put a stream table back on its schedule (after it was suspended by
    /// errors or by hand); clears its error count and backoff.
    #[pg_extern(volatile, parallel_unsafe)]
    fn resume_stream_table(name: &str) {
        set_status(name, "active").or_report()
    }

    /// Take a stream table off its schedule (manual refreshes still work).
    #[pg_extern(volatile, parallel_unsafe)]
    fn suspend_stream_table(name: &str) {
        set_status(name, "suspended").or_report()
    }

    /// The process id of this database's scheduler, NULL if none runs.
    #[pg_extern(volatile, parallel_safe)]
    fn scheduler_pid() -> Option<i32> {
        crate::worker::shmem::running_pid(crate::worker::sys::my_database())
    }

    /// Called at the end of CREATE EXTENSION: start a scheduler here once
    /// the transaction commits.
    #[pg_extern(volatile, parallel_unsafe)]
    fn _request_scheduler() {
        crate::worker::request_at_commit();
    }

    /// How far behind its sources a stream table is, in seconds: 0 when
    /// nothing is waiting to be applied (and for IMMEDIATE), otherwise the
    /// age of the oldest unapplied change (DIFFERENTIAL) or of the last
    /// refresh (FULL).
    #[pg_extern(volatile, parallel_unsafe)]
    fn _staleness(relid: pg_sys::Oid) -> Option<f64> {
        crate::worker::staleness(relid).or_report()
    }

    /// Is this staleness more than the schedule allows (twice its period,
    /// at least 5 s beyond it)? NULL schedule or 'calculated': never.
    #[pg_extern(immutable, parallel_safe)]
    fn _is_stale(schedule: Option<&str>, staleness_seconds: Option<f64>) -> bool {
        crate::worker::schedule::is_stale(schedule, staleness_seconds.unwrap_or(0.0))
    }

    /// Refresh a stream table now; returns the number of rows it wrote (all
    /// of them for a FULL refresh, the changed ones for a DIFFERENTIAL one).
    #[pg_extern(volatile, parallel_unsafe)]
    fn refresh_stream_table(name: &str) -> i64 {
        resolve_stream_table(name)
            .and_then(|relid| refresh::refresh(relid, RefreshTrigger::Manual))
            .or_report()
    }
}
