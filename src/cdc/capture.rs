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
//! statement. The buffer's columns after those follow the source's columns
//! in order, so the SQL selects `n.*` and never names a source column.
//!
//! The function is declared `SECURITY DEFINER SET search_path = pg_catalog,
//! pg_temp`: it runs as the extension's owner with a fixed search path, so
//! whoever may write the source needs no right on the buffers, and row-level
//! security on the source does not hide rows from capture.
//!
//! Plans are prepared once per (source, event) per backend and kept; SPI
//! re-plans them when the buffer table changes.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::CString;

use pgrx::pg_sys;
use pgrx::prelude::*;

use super::buffer;
use super::triggers::{NEW_TABLE, OLD_TABLE};

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Event {
    Insert,
    Update,
    Delete,
}

thread_local! {
    static PLANS: RefCell<HashMap<(u32, Event), pg_sys::SPIPlanPtr>> = RefCell::new(HashMap::new());
}

/// Forget every cached plan (after DDL on buffers; cheap to rebuild).
pub fn forget_plans() {
    PLANS.with(|p| {
        for (_, plan) in p.borrow_mut().drain() {
            // SAFETY: each plan was kept with SPI_keepplan and is freed once.
            unsafe { pg_sys::SPI_freeplan(plan) };
        }
    });
}

fn capture_sql(buffer_name: &str, event: Event) -> String {
    let cols = "$1, $2, $3";
    match event {
        Event::Insert => format!("INSERT INTO {buffer_name} SELECT {cols}, 'I', n.* FROM {NEW_TABLE} n"),
        Event::Delete => format!("INSERT INTO {buffer_name} SELECT {cols}, 'D', o.* FROM {OLD_TABLE} o"),
        Event::Update => format!(
            "INSERT INTO {buffer_name} SELECT {cols}, 'D', o.* FROM {OLD_TABLE} o \
             UNION ALL SELECT {cols}, 'I', n.* FROM {NEW_TABLE} n"
        ),
    }
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
    let is_trigger = !trigdata.is_null() && unsafe { (*(trigdata as *mut pg_sys::Node)).type_ }
        == pg_sys::NodeTag::T_TriggerData;
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
            if let Err(e) = buffer::mark_truncated(relid) {
                e.report();
            }
            return pg_sys::Datum::from(0);
        }
        _ => pgrx::error!("pgtrickle._capture(): unexpected trigger event {op}"),
    };
    // SAFETY: inside a trigger call; SPI is connected and released here, the
    // transition tables are registered with that connection, and the plan
    // is prepared in it and kept (SPI_keepplan) for later calls.
    unsafe { capture(trigdata, relid, event) };
    pg_sys::Datum::from(0)
}

unsafe fn capture(trigdata: *mut pg_sys::TriggerData, relid: pg_sys::Oid, event: Event) {
    // SAFETY: see the caller.
    unsafe {
        if pg_sys::SPI_connect() != pg_sys::SPI_OK_CONNECT as i32 {
            pgrx::error!("pg_trickle: SPI_connect failed");
        }
        if pg_sys::SPI_register_trigger_data(trigdata) < 0 {
            pgrx::error!("pg_trickle: could not register transition tables");
        }
        let key = (relid.to_u32(), event);
        let plan = match PLANS.with(|p| p.borrow().get(&key).copied()) {
            Some(plan) => plan,
            None => {
                let sql = capture_sql(&buffer::buffer_name(relid), event);
                let c_sql = CString::new(sql).unwrap_or_default();
                let mut types = [pg_sys::XID8OID, pg_sys::INT8OID, pg_sys::TIMESTAMPTZOID];
                let plan = pg_sys::SPI_prepare(c_sql.as_ptr(), 3, types.as_mut_ptr());
                if plan.is_null() {
                    pgrx::error!("pg_trickle: could not prepare the capture statement for {relid:?}");
                }
                pg_sys::SPI_keepplan(plan);
                PLANS.with(|p| p.borrow_mut().insert(key, plan));
                plan
            }
        };
        let xid = pg_sys::GetTopFullTransactionId();
        let cid = pg_sys::GetCurrentCommandId(false) as i64;
        let started = pg_sys::GetCurrentTransactionStartTimestamp();
        let mut values = [
            pg_sys::Datum::from(xid.value),
            pg_sys::Datum::from(cid),
            pg_sys::Datum::from(started),
        ];
        let nulls = [b' ' as std::ffi::c_char; 3];
        let rc = pg_sys::SPI_execute_plan(plan, values.as_mut_ptr(), nulls.as_ptr(), false, 0);
        if rc != pg_sys::SPI_OK_INSERT as i32 {
            pgrx::error!("pg_trickle: capturing changes of {relid:?} failed (SPI code {rc})");
        }
        pg_sys::SPI_finish();
    }
}
