//! IMMEDIATE maintenance under REPEATABLE READ and SERIALIZABLE.
//!
//! Maintenance runs under the stream table's EXCLUSIVE lock, so its
//! maintainers follow one another. A READ COMMITTED maintainer reads the
//! sources on a snapshot taken after the lock: it sees what the maintainer
//! before it committed. A REPEATABLE READ (or SERIALIZABLE) one reads them
//! on its transaction's snapshot, which is right only if no maintainer of
//! the stream table committed after that snapshot was taken; otherwise it
//! would recompute rows from a state that misses that maintainer's changes.
//!
//! So every transaction that maintained an IMMEDIATE stream table records,
//! at commit (still holding the lock), that it did, in shared memory; a
//! REPEATABLE READ maintainer, once it holds the lock, fails with a
//! serialization failure (40001) when one of those commits is not visible
//! to its snapshot, as PostgreSQL does when such a transaction updates a
//! row another one changed since its snapshot. It can be retried.
//!
//! The record keeps, per stream table, its last [`KEPT`] maintainers,
//! each checked exactly, and two summaries of those before them. READ
//! COMMITTED writers of some stream tables share a ROW EXCLUSIVE lock (see
//! `immediate::lock_mode`) and may be recorded in another order than they
//! commit; a maintainer holding EXCLUSIVE cannot overlap any other, so
//! every one recorded before it committed before it, and every one
//! recorded after it committed after it. So of the maintainers no longer
//! kept, the newest that held EXCLUSIVE (`older`) stands for all before
//! it: it counts as unseen unless it committed and the snapshot sees it
//! (a prepared transaction is recorded when it is prepared and may still
//! roll back). Those after it all shared the lock: the newest id among
//! them (`older_shared`) counts as unseen when it is not below the
//! snapshot's xmin (every transaction unseen by a snapshot is at or above
//! it) unless the snapshot was taken after the last of them left the kept
//! ones (when all had committed: a transaction whose id was assigned after
//! that had completed, see `snapshot_after`). That can only fail a writer
//! needlessly, and only for a snapshot taken in the moment after. A
//! REPEATABLE READ maintainer itself takes EXCLUSIVE, so all shared
//! maintainers ended, and were recorded, before it checks.
//! Stream tables beyond the table's capacity share one record: the newest
//! maintainer evicted, checked in the conservative way for every stream
//! table without a record of its own.

use std::cell::RefCell;

use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::{pg_shmem_init, PGRXSharedMemory, PgLwLock};

use crate::error::{PgtError, PgtResult};

/// Stream tables with a record of their own, cluster-wide.
const ENTRIES: usize = 4096;

/// Maintainers kept per stream table. (Checked exactly; the shared ones
/// before them conservatively, so more kept is fewer needless failures
/// under many concurrent writers.)
const KEPT: usize = 16;

#[derive(Clone, Copy, Debug, Default)]
struct Entry {
    dboid: u32,
    relid: u32,
    /// Full transaction ids, newest first; 0 = none.
    recent: [u64; KEPT],
    /// Bit i: `recent[i]` held only ROW EXCLUSIVE.
    recent_shared: u32,
    /// The newest maintainer no longer in `recent` that held EXCLUSIVE;
    /// 0 = none. Every maintainer recorded before it committed before it.
    older: u64,
    /// The newest of the maintainers no longer in `recent` recorded after
    /// `older`, all of which held only ROW EXCLUSIVE; 0 = none.
    older_shared: u64,
    /// The next transaction id when the last of those left `recent`, all
    /// of them committed by then: a snapshot whose xmax is past it was
    /// taken after that, and sees them all.
    older_shared_before: u64,
}

#[derive(Clone, Copy, Debug)]
pub struct Record {
    entries: [Entry; ENTRIES],
    /// The entry to evict next when the table is full.
    next: usize,
    /// The newest maintainer whose entry was evicted.
    evicted: u64,
}

// SAFETY: plain integers and a fixed array, no pointers.
unsafe impl PGRXSharedMemory for Record {}

// SAFETY: the LWLock name is unique to pg_trickle; `init` attaches it to
// shared memory (pg_shmem_init!) before any use.
static RECORD: PgLwLock<Record> = unsafe { PgLwLock::new(c"pg_trickle immediate maintainers") };

thread_local! {
    /// The IMMEDIATE stream tables this transaction maintained, and
    /// whether it held only ROW EXCLUSIVE on each.
    static MAINTAINED: RefCell<Vec<(u32, bool)>> = const { RefCell::new(Vec::new()) };
}

/// Reserve the record and register the commit callback. Called from
/// `_PG_init` while preloading.
// The macro tests features of older PostgreSQL versions we do not declare.
#[allow(unexpected_cfgs)]
pub fn init() {
    pg_shmem_init!(RECORD = Record { entries: [Entry::default(); ENTRIES], next: 0, evicted: 0 });
    crate::worker::sys::register_xact_callback(on_xact_event);
}

/// Does this transaction read every statement on a new snapshot (READ
/// COMMITTED)?
pub fn read_committed() -> bool {
    // SAFETY: reads a backend-local GUC variable.
    unsafe { pg_sys::XactIsoLevel < pg_sys::XACT_REPEATABLE_READ as i32 }
}

/// `relid` is about to be maintained by this transaction, which holds its
/// lock (`shared`: only ROW EXCLUSIVE): fail if this transaction reads on a
/// snapshot that misses a maintainer's commit, and remember to record this
/// one at commit.
pub fn maintaining(relid: pg_sys::Oid, shared: bool) -> PgtResult<()> {
    let id = relid.to_u32();
    MAINTAINED.with(|m| {
        let mut m = m.borrow_mut();
        match m.iter_mut().find(|(r, _)| *r == id) {
            Some((_, s)) => *s |= shared,
            None => m.push((id, shared)),
        }
    });
    if read_committed() {
        return Ok(());
    }
    let db = crate::worker::sys::my_database();
    let entry = {
        let record = RECORD.share();
        match record.entries.iter().find(|e| e.dboid == db && e.relid == id) {
            Some(e) => *e,
            None => Entry { older_shared: record.evicted, ..Entry::default() },
        }
    };
    let unseen = entry.recent.iter().any(|x| committed_unseen(*x))
        || maybe_missed(entry.older)
        || (maybe_unseen(entry.older_shared) && !snapshot_after(entry.older_shared_before));
    if unseen {
        return Err(PgtError::ImmediateConcurrentUpdate {
            name: crate::catalog::lifecycle::relation_name(relid)?,
        });
    }
    Ok(())
}

/// Could the transaction `full_xid` be unseen by this transaction's
/// snapshot (is it at or above the snapshot's xmin)?
fn maybe_unseen(full_xid: u64) -> bool {
    // SAFETY: a read of this transaction's snapshot (REPEATABLE READ: the
    // transaction snapshot).
    against_snapshot(full_xid, |xid, snapshot| unsafe {
        pg_sys::TransactionIdFollowsOrEquals(xid, (*snapshot).xmin)
    })
}

/// Was this transaction's snapshot taken after a transaction with id
/// `full_next` or later completed (its xmax, one past the newest completed
/// id, is past `full_next`)? False, as [`against_snapshot`] answers, for
/// none (0), this transaction's id and one older than 2^31 transactions.
fn snapshot_after(full_next: u64) -> bool {
    // SAFETY: a read of this transaction's snapshot.
    against_snapshot(full_next, |xid, snapshot| unsafe {
        pg_sys::TransactionIdFollows((*snapshot).xmax, xid)
    })
}

/// Could the transaction `full_xid` be unseen by this transaction's
/// snapshot, or have rolled back (a prepared transaction recorded at
/// PREPARE) while the ones before it were unseen? False only when it
/// committed and the snapshot sees it, or it is below the snapshot's xmin.
fn maybe_missed(full_xid: u64) -> bool {
    // SAFETY: reads of this transaction's snapshot; the commit status is
    // looked up only for an id at or above its xmin, so one recent enough
    // to have it.
    against_snapshot(full_xid, |xid, snapshot| unsafe {
        pg_sys::TransactionIdFollowsOrEquals(xid, (*snapshot).xmin)
            && (!pg_sys::TransactionIdDidCommit(xid) || pg_sys::XidInMVCCSnapshot(xid, snapshot))
    })
}

/// Did the transaction `full_xid` commit, unseen by this transaction's
/// snapshot?
fn committed_unseen(full_xid: u64) -> bool {
    // SAFETY: the commit status is looked up only for an id the snapshot
    // does not see as finished, so one recent enough to have it.
    against_snapshot(full_xid, |xid, snapshot| unsafe {
        pg_sys::XidInMVCCSnapshot(xid, snapshot) && pg_sys::TransactionIdDidCommit(xid)
    })
}

/// `test` of the transaction `full_xid` (as a 32-bit id) and this
/// transaction's snapshot; false for none (0), for this transaction, and
/// for one older than 2^31 transactions (long committed, seen by any
/// snapshot, and its 32-bit id would be ambiguous).
fn against_snapshot(
    full_xid: u64,
    test: impl FnOnce(pg_sys::TransactionId, pg_sys::Snapshot) -> bool,
) -> bool {
    if full_xid == 0 {
        return false;
    }
    // SAFETY: plain reads of transaction state and of this transaction's
    // snapshot (REPEATABLE READ: the transaction snapshot).
    unsafe {
        let next = pg_sys::ReadNextFullTransactionId().value;
        if next.saturating_sub(full_xid) >= 1 << 31 {
            return false;
        }
        let xid = pg_sys::TransactionId::from(full_xid as u32);
        if pg_sys::TransactionIdIsCurrentTransactionId(xid) {
            return false;
        }
        test(xid, pg_sys::GetTransactionSnapshot())
    }
}

/// Record this transaction as the last maintainer of the stream tables it
/// maintained (at commit, or at PREPARE TRANSACTION: the lock then stays
/// with the prepared transaction until it ends).
fn record(full_xid: u64) {
    let maintained = MAINTAINED.with(|m| std::mem::take(&mut *m.borrow_mut()));
    if maintained.is_empty() || full_xid == 0 {
        return;
    }
    let db = crate::worker::sys::my_database();
    let mut record = RECORD.exclusive();
    for (relid, shared) in maintained {
        let i = match record.entries.iter().position(|e| e.dboid == db && e.relid == relid) {
            Some(i) => i,
            None => match record.entries.iter().position(|e| e.recent[0] == 0) {
                Some(i) => i,
                None => {
                    let i = record.next;
                    record.next = (i + 1) % ENTRIES;
                    let e = record.entries[i];
                    let evicted =
                        e.recent.iter().copied().chain([e.older, e.older_shared]).max().unwrap_or(0);
                    record.evicted = record.evicted.max(evicted);
                    record.entries[i] = Entry::default();
                    i
                }
            },
        };
        // (No transaction status lookups here, in a commit callback where
        // an error cannot be raised: the check looks them up.)
        let e = &mut record.entries[i];
        e.dboid = db;
        e.relid = relid;
        let (last, last_shared) = (e.recent[KEPT - 1], e.recent_shared & (1 << (KEPT - 1)) != 0);
        if last != 0 && last_shared {
            e.older_shared = e.older_shared.max(last);
            // SAFETY: reads the next transaction id (a shared LWLock).
            e.older_shared_before = unsafe { pg_sys::ReadNextFullTransactionId() }.value;
        } else if last != 0 {
            // (Each one recorded before it committed before it.)
            e.older = last;
            e.older_shared = 0;
            e.older_shared_before = 0;
        }
        e.recent.rotate_right(1);
        e.recent[0] = full_xid;
        e.recent_shared = ((e.recent_shared << 1) | u32::from(shared)) & ((1 << KEPT) - 1);
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn on_xact_event(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    match event {
        pg_sys::XactEvent::XACT_EVENT_COMMIT | pg_sys::XactEvent::XACT_EVENT_PREPARE => {
            // SAFETY: the ending transaction's id, still assigned here.
            let xid = unsafe { pg_sys::GetTopFullTransactionIdIfAny() }.value;
            record(xid);
        }
        pg_sys::XactEvent::XACT_EVENT_ABORT => MAINTAINED.with(|m| m.borrow_mut().clear()),
        _ => {}
    }
}
