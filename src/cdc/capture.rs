//! `pgtrickle._capture()`: the statement-level trigger function.
//!
//! For one statement it registers the transition tables with SPI and moves
//! all changed rows into the change buffer with one `INSERT … SELECT`:
//!
//! - INSERT: `('I', new row)` for each row of the NEW TABLE;
//! - DELETE: `('D', old row)` for each row of the OLD TABLE;
//! - UPDATE: both, so a reader gets the old and the new row;
//! - TRUNCATE: no rows; the consumers are marked for a FULL refresh.
//!
//! Every row carries the writer's top-level transaction id (`__pgt_xid`),
//! its command id (`__pgt_cid`, ordering statements within a transaction)
//! and the transaction's start time, passed as parameters computed once per
//! statement, then the captured source columns.
//!
//! The function is declared `SECURITY DEFINER SET search_path = pg_catalog,
//! pg_temp`: it runs as the extension's owner with a fixed search path, so
//! whoever may write the source needs no right on the buffers, and row-level
//! security on the source does not hide rows from capture.
//!
//! Consumers maintained IMMEDIATE are then brought up to date within the
//! statement (`refresh::immediate`); the buffer is written only when some
//! consumer refreshes DIFFERENTIAL from it.
//!
//! The statement is prepared once per (source, event) per backend and kept.
//! It names source columns, so any relcache invalidation (a rename, a new
//! captured column, …) marks the kept plans stale and the next capture
//! prepares them again from the catalog.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::CString;

use pgrx::pg_sys;
use pgrx::prelude::*;

use super::buffer;
use super::triggers::{NEW_TABLE, OLD_TABLE};
use crate::error::{PgtError, PgtResult};
use crate::sql::quote_ident;

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Event {
    Insert,
    Update,
    Delete,
}

thread_local! {
    static PLANS: RefCell<HashMap<(u32, Event, bool), pg_sys::SPIPlanPtr>> = RefCell::new(HashMap::new());
    static STALE: Cell<bool> = const { Cell::new(false) };
    /// Sources, buffers and stream tables the kept plans and consumer lists
    /// depend on.
    static PLAN_RELATIONS: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
    /// Per source: its consumers, and whether each is IMMEDIATE.
    static CONSUMERS: RefCell<HashMap<u32, Vec<(pg_sys::Oid, bool)>>> = RefCell::new(HashMap::new());
}

/// Register the relcache callback. Called once from `_PG_init`.
pub fn init() {
    // SAFETY: registering a callback with a static function is what
    // extensions do from _PG_init; the argument is unused.
    unsafe { pg_sys::CacheRegisterRelcacheCallback(Some(relcache_changed), pg_sys::Datum::from(0)) };
}

/// Called by PostgreSQL while it processes invalidations: only note that
/// the kept plans must be rebuilt (no catalog access, no freeing here).
#[pg_guard]
unsafe extern "C-unwind" fn relcache_changed(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    buffer::relcache_changed(relid);
    let ours = relid == pg_sys::InvalidOid || PLAN_RELATIONS.with(|r| r.borrow().contains(&relid.to_u32()));
    if ours {
        STALE.with(|s| s.set(true));
    }
}

/// Forget every kept plan (after DDL on buffers; cheap to rebuild).
pub fn forget_plans() {
    STALE.with(|s| s.set(false));
    PLAN_RELATIONS.with(|r| r.borrow_mut().clear());
    CONSUMERS.with(|c| c.borrow_mut().clear());
    buffer::forget_rows_sql();
    crate::refresh::immediate::forget();
    PLANS.with(|p| {
        for (_, plan) in p.borrow_mut().drain() {
            // SAFETY: each plan was kept with SPI_keepplan and is freed once.
            unsafe { pg_sys::SPI_freeplan(plan) };
        }
    });
}

/// `INSERT INTO buffer (…) SELECT $1, $2, $3, action, count(*),
/// array_agg(t.col)… FROM transition HAVING count(*) > 0`: one buffer row
/// per transition table with rows (see `buffer`). `columns` are (attnum,
/// name, kept as text). For a statement that changed one row (`single`),
/// the arrays are built without aggregating (`ARRAY[t.col]`), which costs
/// a single-row write less.
fn capture_sql(buffer_name: &str, columns: &[(i16, String, bool)], event: Event, single: bool) -> String {
    let targets: String = columns.iter().map(|(a, _, _)| format!(", c{a}")).collect();
    let select = |action: &str, table: &str| {
        let values: String = columns
            .iter()
            .map(|(_, name, as_text)| {
                let cast = if *as_text { "::pg_catalog.text" } else { "" };
                let value = format!("t.{}{cast}", quote_ident(name));
                if single {
                    format!(", ARRAY[{value}]")
                } else {
                    format!(", pg_catalog.array_agg({value})")
                }
            })
            .collect();
        if single {
            format!("SELECT $1, $2, $3, '{action}', 1{values} FROM {table} t")
        } else {
            format!(
                "SELECT $1, $2, $3, '{action}', pg_catalog.count(*){values} FROM {table} t \
                 HAVING pg_catalog.count(*) OPERATOR(pg_catalog.>) 0"
            )
        }
    };
    let rows = match event {
        Event::Insert => select("I", NEW_TABLE),
        Event::Delete => select("D", OLD_TABLE),
        Event::Update => format!("{} UNION ALL {}", select("D", OLD_TABLE), select("I", NEW_TABLE)),
    };
    format!(
        "INSERT INTO {buffer_name} (__pgt_xid, __pgt_cid, __pgt_time, __pgt_action, __pgt_n{targets}) {rows}"
    )
}

/// The consumers of `source` (cached; a change of mode rewrites the stream
/// table's reloptions, and a new consumer creates triggers on the source,
/// both of which invalidate the cache).
pub(crate) fn consumers(source: pg_sys::Oid) -> PgtResult<Vec<(pg_sys::Oid, bool)>> {
    if let Some(list) = CONSUMERS.with(|c| c.borrow().get(&source.to_u32()).cloned()) {
        return Ok(list);
    }
    let list: Vec<(pg_sys::Oid, bool)> = Spi::connect(|c| {
        let rows = c.select(
            "SELECT st.relid, st.refresh_mode OPERATOR(pg_catalog.=) 'immediate' \
               FROM pgtrickle.pgt_sources s \
               JOIN pgtrickle.pgt_stream_tables st ON st.relid OPERATOR(pg_catalog.=) s.relid \
              WHERE s.source_relid OPERATOR(pg_catalog.=) $1 AND st.consumes_changes \
              ORDER BY st.relid",
            None,
            &[source.into()],
        )?;
        let mut out = Vec::new();
        for row in rows {
            if let Some(relid) = row.get::<pg_sys::Oid>(1)? {
                out.push((relid, row.get::<bool>(2)?.unwrap_or(false)));
            }
        }
        Ok::<_, PgtError>(out)
    })?;
    PLAN_RELATIONS.with(|r| {
        let mut r = r.borrow_mut();
        r.push(source.to_u32());
        r.extend(list.iter().map(|(relid, _)| relid.to_u32()));
    });
    CONSUMERS.with(|c| c.borrow_mut().insert(source.to_u32(), list.clone()));
    Ok(list)
}

/// The captured columns of `source` with their current names, and whether
/// the buffer keeps them as text. A captured column dropped since (no
/// stream table reads it any more, or PostgreSQL would have refused) is
/// left out, hence NULL in the buffer.
fn capture_columns(source: pg_sys::Oid) -> PgtResult<Vec<(i16, String, bool)>> {
    let types = buffer::captured_types(source)?;
    let attnums: Vec<i16> = types.iter().map(|(a, _, _)| *a).collect();
    let names = crate::catalog::sys::attribute_names(source, Some(&attnums))?;
    Ok(names
        .into_iter()
        .filter_map(|(attnum, name)| {
            types.iter().find(|(a, _, _)| *a == attnum).map(|(_, _, as_text)| (attnum, name, *as_text))
        })
        .collect())
}

#[no_mangle]
pub extern "C" fn pg_finfo_pgt_capture() -> &'static pg_sys::Pg_finfo_record {
    const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

/// The trigger entry point (`pgtrickle._capture()` in SQL).
///
/// # Safety
/// Called by PostgreSQL's function manager with a valid `fcinfo`.
#[no_mangle]
#[pg_guard]
pub unsafe extern "C-unwind" fn pgt_capture(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    // SAFETY: fcinfo is valid; for a trigger call `context` is TriggerData.
    let trigdata = unsafe { (*fcinfo).context } as *mut pg_sys::TriggerData;
    // SAFETY: checks the node tag before treating context as TriggerData.
    let is_trigger = !trigdata.is_null()
        && unsafe { (*(trigdata as *mut pg_sys::Node)).type_ } == pg_sys::NodeTag::T_TriggerData;
    if !is_trigger {
        pgrx::error!("pgtrickle._capture() must be called as a trigger");
    }
    // SAFETY: a TriggerData from the trigger manager; tg_relation is open.
    let (event_bits, relid) = unsafe { ((*trigdata).tg_event, (*(*trigdata).tg_relation).rd_id) };
    let op = event_bits & pg_sys::TRIGGER_EVENT_OPMASK;
    let event = match op {
        pg_sys::TRIGGER_EVENT_INSERT => Event::Insert,
        pg_sys::TRIGGER_EVENT_UPDATE => Event::Update,
        pg_sys::TRIGGER_EVENT_DELETE => Event::Delete,
        pg_sys::TRIGGER_EVENT_TRUNCATE => {
            let result = captured_sources(relid).and_then(|sources| {
                for source in sources {
                    truncated(source)?;
                }
                Ok(())
            });
            if let Err(e) = result {
                e.report();
            }
            return pg_sys::Datum::from(0);
        }
        _ => pgrx::error!("pgtrickle._capture(): unexpected trigger event {op}"),
    };
    if STALE.with(|s| s.get()) {
        forget_plans();
    }
    super::statements::capturing(relid);
    // SAFETY: inside a trigger call; SPI is connected and released here, the
    // transition tables are registered with that connection, and the plan
    // is prepared in it and kept (SPI_keepplan) for later calls.
    if let Err(e) = unsafe { capture(trigdata, relid, event) } {
        e.report();
    }
    // Stream tables that waited for this statement (cdc::statements).
    for st in super::statements::captured(relid) {
        if let Err(e) = crate::refresh::immediate::recompute_all(st) {
            e.report();
        }
    }
    pg_sys::Datum::from(0)
}

#[no_mangle]
pub extern "C" fn pg_finfo_pgt_statement_start() -> &'static pg_sys::Pg_finfo_record {
    const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

/// The BEFORE STATEMENT trigger entry point (`pgtrickle._statement_start()`
/// in SQL): records the statement as pending (cdc::statements). No SQL.
///
/// # Safety
/// Called by PostgreSQL's function manager with a valid `fcinfo`.
#[no_mangle]
#[pg_guard]
pub unsafe extern "C-unwind" fn pgt_statement_start(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    // SAFETY: fcinfo is valid; for a trigger call `context` is TriggerData.
    let trigdata = unsafe { (*fcinfo).context } as *mut pg_sys::TriggerData;
    // SAFETY: checks the node tag before treating context as TriggerData.
    let is_trigger = !trigdata.is_null()
        && unsafe { (*(trigdata as *mut pg_sys::Node)).type_ } == pg_sys::NodeTag::T_TriggerData;
    if !is_trigger {
        pgrx::error!("pgtrickle._statement_start() must be called as a trigger");
    }
    // SAFETY: a TriggerData from the trigger manager; tg_relation is open.
    let relid = unsafe { (*(*trigdata).tg_relation).rd_id };
    match with_ancestors(relid) {
        Ok(relations) => super::statements::started(&relations),
        Err(e) => e.report(),
    }
    pg_sys::Datum::from(0)
}

/// `relid`, then the partitioned tables above it if it is a partition.
fn with_ancestors(relid: pg_sys::Oid) -> PgtResult<Vec<pg_sys::Oid>> {
    let mut out = vec![relid];
    if crate::catalog::sys::is_partition(relid) {
        out.extend(crate::catalog::sys::partition_ancestors(relid)?);
    }
    Ok(out)
}

/// The sources whose changes a statement on `relid` are: `relid` itself
/// when stream tables read it, and the partitioned tables above it that
/// stream tables read (a statement naming a partition fires only the
/// partition's triggers).
pub(crate) fn captured_sources(relid: pg_sys::Oid) -> PgtResult<Vec<pg_sys::Oid>> {
    if STALE.with(|s| s.get()) {
        forget_plans();
    }
    let mut out = Vec::new();
    if !consumers(relid)?.is_empty() {
        out.push(relid);
    }
    if crate::catalog::sys::is_partition(relid) {
        for ancestor in crate::catalog::sys::partition_ancestors(relid)? {
            if !consumers(ancestor)?.is_empty() {
                out.push(ancestor);
            }
        }
    }
    Ok(out)
}

/// TRUNCATE: DIFFERENTIAL consumers need a FULL refresh; IMMEDIATE ones are
/// recomputed now. (Also for a partition attached, detached or dropped:
/// the source's rows changed without a statement on it.)
pub(crate) fn truncated(source: pg_sys::Oid) -> PgtResult<()> {
    if STALE.with(|s| s.get()) {
        forget_plans();
    }
    buffer::mark_truncated(source)?;
    for (relid, immediate) in consumers(source)? {
        if immediate {
            crate::refresh::immediate::recompute_all(relid)?;
        }
    }
    Ok(())
}

unsafe fn capture(trigdata: *mut pg_sys::TriggerData, relid: pg_sys::Oid, event: Event) -> PgtResult<()> {
    // SAFETY: see the caller.
    unsafe {
        if pg_sys::SPI_connect() != pg_sys::SPI_OK_CONNECT as i32 {
            return Err(PgtError::Internal("SPI_connect failed".into()));
        }
        if pg_sys::SPI_register_trigger_data(trigdata) < 0 {
            return Err(PgtError::Internal("could not register transition tables".into()));
        }
        // (A statement that changed no row writes nothing and changes no
        // stream table.)
        let tables = super::transition::Tables::of_trigger(trigdata);
        let (old, new) = tables.counts();
        let transition = crate::refresh::immediate::Transition { old: old > 0, new: new > 0 };
        let _current = super::transition::Current::enter(tables);
        // (The table itself, or the partitioned tables above it that are
        // sources: the transition tables have their columns, by name.)
        for source in captured_sources(relid)? {
            let consumers = consumers(source)?;
            if consumers.iter().any(|(_, immediate)| !immediate) && old.max(new) > 0 {
                write_buffer(source, event, old.max(new) == 1)?;
                crate::worker::wake_at_commit();
            }
            for (st, immediate) in consumers {
                if immediate {
                    crate::refresh::immediate::maintain(st, source, transition)?;
                }
            }
        }
        pg_sys::SPI_finish();
        Ok(())
    }
}

/// Move the statement's changes into the buffer (inside the caller's SPI
/// connection, with the transition tables registered).
unsafe fn write_buffer(relid: pg_sys::Oid, event: Event, single: bool) -> PgtResult<()> {
    // SAFETY: see `capture`.
    unsafe {
        let key = (relid.to_u32(), event, single);
        let plan = match PLANS.with(|p| p.borrow().get(&key).copied()) {
            Some(plan) => plan,
            None => {
                let sql = capture_sql(&buffer::buffer_name(relid), &capture_columns(relid)?, event, single);
                let c_sql = CString::new(sql).map_err(|_| PgtError::Internal("NUL in SQL".into()))?;
                let mut types = [pg_sys::XID8OID, pg_sys::INT8OID, pg_sys::TIMESTAMPTZOID];
                let plan = pg_sys::SPI_prepare(c_sql.as_ptr(), 3, types.as_mut_ptr());
                if plan.is_null() {
                    return Err(PgtError::Internal(format!("could not prepare the capture of {relid:?}")));
                }
                pg_sys::SPI_keepplan(plan);
                PLANS.with(|p| p.borrow_mut().insert(key, plan));
                let buffer = buffer::buffer_relid(relid)?.map(|b| b.to_u32()).unwrap_or_default();
                PLAN_RELATIONS.with(|r| r.borrow_mut().extend([relid.to_u32(), buffer]));
                plan
            }
        };
        let xid = pg_sys::GetTopFullTransactionId();
        let cid = pg_sys::GetCurrentCommandId(false) as i64;
        let started = pg_sys::GetCurrentTransactionStartTimestamp();
        let mut values =
            [pg_sys::Datum::from(xid.value), pg_sys::Datum::from(cid), pg_sys::Datum::from(started)];
        let nulls = [b' ' as std::ffi::c_char; 3];
        let rc = pg_sys::SPI_execute_plan(plan, values.as_mut_ptr(), nulls.as_ptr(), false, 0);
        if rc != pg_sys::SPI_OK_INSERT as i32 {
            return Err(PgtError::Internal(format!("capturing changes of {relid:?} failed (SPI code {rc})")));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_statements() {
        let cols = vec![(1, "id".to_string(), false), (3, "My Col".to_string(), true)];
        assert_eq!(
            capture_sql("pgtrickle_changes.changes_1", &cols, Event::Insert, false),
            "INSERT INTO pgtrickle_changes.changes_1 (__pgt_xid, __pgt_cid, __pgt_time, __pgt_action, __pgt_n, c1, c3) \
             SELECT $1, $2, $3, 'I', pg_catalog.count(*), pg_catalog.array_agg(t.id), \
             pg_catalog.array_agg(t.\"My Col\"::pg_catalog.text) FROM __pgt_new t \
             HAVING pg_catalog.count(*) OPERATOR(pg_catalog.>) 0"
        );
        let upd = capture_sql("b", &cols, Event::Update, false);
        assert!(upd.contains("FROM __pgt_old t HAVING pg_catalog.count(*) OPERATOR(pg_catalog.>) 0 UNION ALL SELECT $1, $2, $3, 'I'"));
        assert!(capture_sql("b", &cols, Event::Delete, false).contains("'D', pg_catalog.count(*)"));
        assert_eq!(
            capture_sql("b", &cols, Event::Insert, true),
            "INSERT INTO b (__pgt_xid, __pgt_cid, __pgt_time, __pgt_action, __pgt_n, c1, c3) \
             SELECT $1, $2, $3, 'I', 1, ARRAY[t.id], ARRAY[t.\"My Col\"::pg_catalog.text] FROM __pgt_new t"
        );
    }
}
