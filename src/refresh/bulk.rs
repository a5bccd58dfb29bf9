//! Writing many rows into a stream table the way COPY does.
//!
//! `INSERT INTO st SELECT ...` inserts its rows one at a time: a heap
//! insert, with its WAL record, per row. COPY batches them: up to a
//! thousand rows (or 64 kB) go into the heap with one `table_multi_insert`
//! call (one WAL record per page filled), then into the indexes. A query
//! whose rows all go into a stream table (IMMEDIATE maintenance of an
//! INSERT, see dvm::inserted) is run with a receiver that does the same
//! with the rows it is sent.
//!
//! A materialized view has no triggers, constraints, row security or
//! partitions, so the rows need nothing else. They are inserted with the
//! transaction's current command id, after the query's snapshot was taken
//! (SPI advances the command counter first, as for the INSERT, and the
//! rows are written with the command id the query runs as).

use std::ffi::CString;

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::error::{PgtError, PgtResult};

/// Rows (and bytes) buffered before they are written, as COPY does.
const BATCH_ROWS: usize = 1000;
const BATCH_BYTES: usize = 65535;

/// A query kept prepared (in the backend's cache memory) whose rows are
/// inserted into a stream table by [`BulkQuery::insert_into`].
pub struct BulkQuery {
    plan: pg_sys::SPIPlanPtr,
}

impl BulkQuery {
    /// Prepare `sql` (a query whose columns are those of the stream table,
    /// in order) and keep it. Call inside an SPI connection in which every
    /// relation it reads (the transition tables too) is visible.
    pub fn prepare(sql: &str) -> PgtResult<BulkQuery> {
        let c_sql = CString::new(sql).map_err(|_| PgtError::Internal("SQL contains NUL".into()))?;
        // SAFETY: inside an SPI connection (the caller's contract);
        // SPI_keepplan moves the plan out of the connection's memory.
        unsafe {
            let plan = pg_sys::SPI_prepare(c_sql.as_ptr(), 0, std::ptr::null_mut());
            if plan.is_null() {
                return Err(PgtError::Internal(format!("could not prepare: {sql}")));
            }
            pg_sys::SPI_keepplan(plan);
            Ok(BulkQuery { plan })
        }
    }

    /// Run the query inside the caller's SPI connection and insert its rows
    /// into `relid`; returns how many.
    pub fn insert_into(&self, relid: pg_sys::Oid) -> PgtResult<u64> {
        // SAFETY: the relation is opened (RowExclusiveLock, as an INSERT
        // takes) for the receiver's whole life and closed after it; the
        // receiver lives on this frame while the executor calls it; every
        // executor state it allocates is freed below or, on error, with the
        // transaction's memory and resource owner.
        unsafe {
            let rel = pg_sys::table_open(relid, pg_sys::RowExclusiveLock as i32);
            let estate = pg_sys::CreateExecutorState();
            let rri =
                pg_sys::palloc0(std::mem::size_of::<pg_sys::ResultRelInfo>()) as *mut pg_sys::ResultRelInfo;
            pg_sys::InitResultRelInfo(rri, rel, 1, std::ptr::null_mut(), 0);
            pg_sys::ExecOpenIndices(rri, false);
            let mut receiver = Receiver {
                base: pg_sys::DestReceiver {
                    receiveSlot: Some(receive),
                    rStartup: Some(startup),
                    rShutdown: Some(shutdown),
                    rDestroy: Some(destroy),
                    mydest: pg_sys::CommandDest::DestNone,
                },
                rel,
                estate,
                rri,
                bistate: pg_sys::GetBulkInsertState(),
                // (Set at startup: SPI advances the command counter first.)
                cid: pg_sys::InvalidCommandId,
                context: pg_sys::CurrentMemoryContext,
                slots: Vec::with_capacity(BATCH_ROWS),
                used: 0,
                bytes: 0,
                inserted: 0,
            };
            let options = pg_sys::SPIExecuteOptions {
                read_only: false,
                dest: std::ptr::addr_of_mut!(receiver).cast(),
                ..Default::default()
            };
            let rc = pg_sys::SPI_execute_plan_extended(self.plan, &options);
            // (The executor's shutdown call wrote the last rows.)
            pg_sys::ExecCloseIndices(rri);
            pg_sys::FreeBulkInsertState(receiver.bistate);
            pg_sys::table_finish_bulk_insert(rel, 0);
            for slot in receiver.slots.drain(..) {
                pg_sys::ExecDropSingleTupleTableSlot(slot);
            }
            pg_sys::FreeExecutorState(estate);
            pg_sys::table_close(rel, pg_sys::NoLock as i32);
            if rc < 0 {
                return Err(PgtError::Internal(format!("SPI error {rc} writing the rows of {relid:?}")));
            }
            Ok(receiver.inserted)
        }
    }
}

impl Drop for BulkQuery {
    fn drop(&mut self) {
        // SAFETY: a plan kept by SPI_keepplan, freed once.
        unsafe {
            pg_sys::SPI_freeplan(self.plan);
        }
    }
}

/// The receiver: PostgreSQL's DestReceiver first, so that a pointer to it
/// is a pointer to the whole.
#[repr(C)]
struct Receiver {
    base: pg_sys::DestReceiver,
    rel: pg_sys::Relation,
    estate: *mut pg_sys::EState,
    rri: *mut pg_sys::ResultRelInfo,
    bistate: pg_sys::BulkInsertState,
    cid: pg_sys::CommandId,
    /// The caller's memory context, which outlives the query's execution:
    /// the slots are made in it.
    context: pg_sys::MemoryContext,
    /// Slots of the table's kind, created as needed; the first `used` hold
    /// rows not yet written, of `bytes` bytes.
    slots: Vec<*mut pg_sys::TupleTableSlot>,
    used: usize,
    bytes: usize,
    inserted: u64,
}

/// The columns the query sends must be the table's.
#[pg_guard]
unsafe extern "C-unwind" fn startup(
    this: *mut pg_sys::DestReceiver,
    _operation: i32,
    typeinfo: pg_sys::TupleDesc,
) {
    // SAFETY: `this` is the Receiver passed to SPI; both descriptors are
    // valid for the call.
    unsafe {
        let r = &*(this as *mut Receiver);
        let table = (*r.rel).rd_att;
        let same = (*typeinfo).natts == (*table).natts
            && (0..(*table).natts as usize).all(|i| {
                let (a, b) =
                    (pg_sys::TupleDescAttr(typeinfo, i as i32), pg_sys::TupleDescAttr(table, i as i32));
                (*a).atttypid == (*b).atttypid && !(*b).attisdropped
            });
        if !same {
            pgrx::error!("pg_trickle: the rows to insert do not have the columns of the stream table");
        }
        // The command the query runs as, as INSERT ... SELECT writes with.
        (*(this as *mut Receiver)).cid = pg_sys::GetCurrentCommandId(true);
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn receive(
    slot: *mut pg_sys::TupleTableSlot,
    this: *mut pg_sys::DestReceiver,
) -> bool {
    // SAFETY: `this` is the Receiver passed to SPI; `slot` holds a row of
    // the query's (checked) descriptor, copied into a slot of our own.
    unsafe {
        let r = &mut *(this as *mut Receiver);
        if r.used == r.slots.len() {
            // (Called in the executor's memory, freed when the query ends.)
            let old = pg_sys::MemoryContextSwitchTo(r.context);
            r.slots.push(pg_sys::table_slot_create(r.rel, std::ptr::null_mut()));
            pg_sys::MemoryContextSwitchTo(old);
        }
        let ours = r.slots[r.used];
        // The row's values, copied into a tuple of the stream table's own
        // (not a copy of the sender's tuple, which may be another table's,
        // with fewer attributes or its own header).
        pg_sys::slot_getallattrs(slot);
        let natts = (*(*ours).tts_tupleDescriptor).natts as usize;
        pg_sys::ExecClearTuple(ours);
        std::ptr::copy_nonoverlapping((*slot).tts_values, (*ours).tts_values, natts);
        std::ptr::copy_nonoverlapping((*slot).tts_isnull, (*ours).tts_isnull, natts);
        pg_sys::ExecStoreVirtualTuple(ours);
        pg_sys::ExecMaterializeSlot(ours);
        let tuple = pg_sys::ExecFetchSlotHeapTuple(ours, false, std::ptr::null_mut());
        r.bytes += (*tuple).t_len as usize;
        r.used += 1;
        if r.used >= BATCH_ROWS || r.bytes >= BATCH_BYTES {
            flush(r);
        }
        true
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn shutdown(this: *mut pg_sys::DestReceiver) {
    // SAFETY: as receive's.
    unsafe { flush(&mut *(this as *mut Receiver)) }
}

#[pg_guard]
unsafe extern "C-unwind" fn destroy(_this: *mut pg_sys::DestReceiver) {
    // (The receiver belongs to BulkQuery::insert_into's frame.)
}

/// Write the buffered rows into the heap, then their index entries.
///
/// # Safety
/// `r` is a live Receiver whose first `used` slots hold rows.
unsafe fn flush(r: &mut Receiver) {
    if r.used == 0 {
        return;
    }
    // SAFETY: per the contract; the per-tuple memory context absorbs
    // what the insertions allocate, and is reset after.
    unsafe {
        let mut econtext = (*r.estate).es_per_tuple_exprcontext;
        if econtext.is_null() {
            econtext = pg_sys::MakePerTupleExprContext(r.estate);
        }
        let context = (*econtext).ecxt_per_tuple_memory;
        let old = pg_sys::MemoryContextSwitchTo(context);
        pg_sys::table_multi_insert(r.rel, r.slots.as_mut_ptr(), r.used as i32, r.cid, 0, r.bistate);
        pg_sys::MemoryContextSwitchTo(old);
        for &slot in &r.slots[..r.used] {
            if (*r.rri).ri_NumIndices > 0 {
                let recheck = pg_sys::ExecInsertIndexTuples(
                    r.rri,
                    slot,
                    r.estate,
                    false,
                    false,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    false,
                );
                pg_sys::list_free(recheck);
            }
            pg_sys::ExecClearTuple(slot);
        }
        pg_sys::MemoryContextReset(context);
        r.inserted += r.used as u64;
        r.used = 0;
        r.bytes = 0;
    }
}
