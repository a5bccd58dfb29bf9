//! The scheduler registry in shared memory: the launcher's latch, one slot
//! per database (its scheduler's state, pid and latch), and the count of
//! refreshes running in the whole cluster.
//!
//! Backends use it to wake a database's scheduler when they commit changes,
//! to ask the launcher for a scheduler after `CREATE EXTENSION`, and to stop
//! a scheduler before `DROP DATABASE`. Everything goes through one LWLock;
//! the critical sections are a scan of at most [`MAX_DATABASES`] slots.

use pgrx::prelude::*;
use pgrx::{pg_shmem_init, PGRXSharedMemory, PgLwLock};

use super::sys;

/// Databases that can have a scheduler at once.
pub const MAX_DATABASES: usize = 128;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum SlotState {
    Free = 0,
    /// Registered by the launcher, not attached yet.
    Starting,
    Running,
    /// The scheduler found nothing to schedule (no pg_trickle in its
    /// database, or no stream table with a schedule) and left; started again
    /// only when asked (CREATE EXTENSION, a stream table created or given a
    /// schedule).
    NotNeeded,
    /// Exited otherwise (error, SIGTERM); restarted after `retry_at`.
    Exited,
    /// Kept stopped until `retry_at` (DROP/ALTER/RENAME DATABASE, CREATE
    /// DATABASE from it as template).
    Paused,
}

#[derive(Clone, Copy, Debug)]
pub struct Slot {
    pub dboid: u32,
    pub state: SlotState,
    pub pid: i32,
    /// Address of the scheduler's latch (`MyLatch`, in shared memory).
    pub latch: usize,
    /// Unix milliseconds; meaning depends on `state`.
    pub retry_at: i64,
    /// CREATE EXTENSION asked for a scheduler.
    pub requested: bool,
    /// Some stream table wants to be refreshed within the idle interval of
    /// a commit: committing writers set the latch.
    pub wake_on_commit: bool,
}

const FREE_SLOT: Slot = Slot {
    dboid: 0,
    state: SlotState::Free,
    pid: 0,
    latch: 0,
    retry_at: 0,
    requested: false,
    wake_on_commit: true,
};

#[derive(Clone, Copy, Debug)]
pub struct Registry {
    pub launcher_latch: usize,
    pub running_refreshes: u32,
    pub slots: [Slot; MAX_DATABASES],
}

// SAFETY: plain data (integers and fixed arrays), no pointers into process
// memory; the latch addresses point into shared memory, valid in every
// backend.
unsafe impl PGRXSharedMemory for Registry {}

// SAFETY: the LWLock name is unique to pg_trickle; the lock is attached to
// shared memory by `init` (pg_shmem_init!) before any use.
static REGISTRY: PgLwLock<Registry> = unsafe { PgLwLock::new(c"pg_trickle scheduler registry") };

/// Reserve the registry. Called from `_PG_init` while preloading.
// The macro tests features of older PostgreSQL versions we do not declare.
#[allow(unexpected_cfgs)]
pub fn init() {
    pg_shmem_init!(
        REGISTRY = Registry { launcher_latch: 0, running_refreshes: 0, slots: [FREE_SLOT; MAX_DATABASES] }
    );
}

fn find(reg: &Registry, dboid: u32) -> Option<usize> {
    reg.slots.iter().position(|s| s.state != SlotState::Free && s.dboid == dboid)
}

fn find_or_claim(reg: &mut Registry, dboid: u32) -> Option<usize> {
    if let Some(i) = find(reg, dboid) {
        return Some(i);
    }
    let i = reg.slots.iter().position(|s| s.state == SlotState::Free)?;
    reg.slots[i] = Slot { dboid, state: SlotState::Exited, ..FREE_SLOT };
    Some(i)
}

pub fn set_launcher_latch(latch: usize) {
    REGISTRY.exclusive().launcher_latch = latch;
}

pub fn wake_launcher() {
    let latch = REGISTRY.share().launcher_latch;
    sys::set_latch(latch);
}

/// A scheduler registered but not attached after this long is taken for
/// dead (it failed to connect: database dropped, connections disallowed).
const START_TIMEOUT_MS: i64 = 30_000;

/// The launcher's reconciliation with the databases that exist now: forget
/// slots of dropped databases, and return the databases that need a
/// scheduler started (marked Starting), and how many databases found no
/// free slot.
pub fn databases_to_start(existing: &[u32], now_ms: i64) -> (Vec<u32>, usize) {
    let mut reg = REGISTRY.exclusive();
    for slot in reg.slots.iter_mut() {
        // A paused slot is kept until its pause ends: the statement that
        // paused it may not have committed yet (ALTER DATABASE ... WITH
        // ALLOW_CONNECTIONS true is not visible before it does).
        let pausing = slot.state == SlotState::Paused && slot.retry_at > now_ms;
        if slot.state != SlotState::Free
            && slot.state != SlotState::Running
            && !pausing
            && !existing.contains(&slot.dboid)
        {
            *slot = FREE_SLOT;
        }
    }
    let mut start = Vec::new();
    let mut unslotted = 0;
    for &db in existing {
        let Some(i) = find_or_claim(&mut reg, db) else {
            unslotted += 1;
            continue;
        };
        let slot = &mut reg.slots[i];
        let go = match slot.state {
            SlotState::Exited | SlotState::Paused | SlotState::Starting => slot.retry_at <= now_ms,
            SlotState::NotNeeded => slot.requested,
            _ => false,
        };
        if go {
            *slot = Slot {
                dboid: db,
                state: SlotState::Starting,
                retry_at: now_ms + START_TIMEOUT_MS,
                ..FREE_SLOT
            };
            start.push(db);
        }
    }
    (start, unslotted)
}

/// The earliest time an Exited or Paused slot may be restarted.
pub fn next_retry(now_ms: i64) -> Option<i64> {
    let reg = REGISTRY.share();
    reg.slots
        .iter()
        .filter(|s| {
            matches!(s.state, SlotState::Exited | SlotState::Paused | SlotState::Starting)
                && s.retry_at > now_ms
        })
        .map(|s| s.retry_at)
        .min()
}

/// A scheduler could not be registered (no free background worker slot).
pub fn start_failed(dboid: u32, retry_at: i64) {
    let mut reg = REGISTRY.exclusive();
    if let Some(i) = find(&reg, dboid) {
        reg.slots[i].state = SlotState::Exited;
        reg.slots[i].retry_at = retry_at;
    }
}

/// A scheduler attaches to its slot; false if it must not run (paused, or
/// another one already runs for the database).
pub fn attach(dboid: u32, pid: i32, latch: usize) -> bool {
    let mut reg = REGISTRY.exclusive();
    let Some(i) = find_or_claim(&mut reg, dboid) else { return false };
    let slot = &mut reg.slots[i];
    if slot.state == SlotState::Paused || (slot.state == SlotState::Running && slot.pid != pid) {
        return false;
    }
    *slot = Slot { dboid, state: SlotState::Running, pid, latch, ..FREE_SLOT };
    true
}

/// A scheduler leaves: `not_needed` when it had nothing to schedule,
/// otherwise it may be restarted after `retry_at`.
pub fn detach(dboid: u32, pid: i32, not_needed: bool, retry_at: i64) {
    {
        let mut reg = REGISTRY.exclusive();
        if let Some(i) = find(&reg, dboid) {
            let slot = &mut reg.slots[i];
            if slot.pid == pid && slot.state == SlotState::Running {
                slot.pid = 0;
                slot.latch = 0;
                if not_needed && !slot.requested {
                    slot.state = SlotState::NotNeeded;
                } else {
                    slot.state = SlotState::Exited;
                    slot.retry_at = if not_needed { 0 } else { retry_at };
                }
            }
        }
    }
    wake_launcher();
}

/// Whether a running scheduler was asked to stop (its slot was paused).
pub fn must_stop(dboid: u32, pid: i32) -> bool {
    let reg = REGISTRY.share();
    find(&reg, dboid).is_none_or(|i| reg.slots[i].pid != pid || reg.slots[i].state != SlotState::Running)
}

/// Ask the launcher for a scheduler in `dboid` (after CREATE EXTENSION).
pub fn request(dboid: u32) {
    {
        let mut reg = REGISTRY.exclusive();
        if let Some(i) = find_or_claim(&mut reg, dboid) {
            let slot = &mut reg.slots[i];
            slot.requested = true;
            if slot.state == SlotState::Exited {
                slot.retry_at = 0;
            }
        }
    }
    wake_launcher();
}

/// Wake the scheduler of `dboid`, if one runs and wants to be woken
/// (`always`: whether it wants to or not).
pub fn wake(dboid: u32, always: bool) {
    let latch = {
        let reg = REGISTRY.share();
        find(&reg, dboid)
            .map(|i| reg.slots[i])
            .filter(|s| s.state == SlotState::Running && (s.wake_on_commit || always))
            .map_or(0, |s| s.latch)
    };
    sys::set_latch(latch);
}

/// The scheduler says whether commits should wake it.
pub fn set_wake_on_commit(dboid: u32, wake: bool) {
    let mut reg = REGISTRY.exclusive();
    if let Some(i) = find(&reg, dboid) {
        reg.slots[i].wake_on_commit = wake;
    }
}

/// Keep the scheduler of `dboid` stopped until `until_ms`; returns the pid
/// of the one running now, which the caller terminates.
pub fn pause(dboid: u32, until_ms: i64) -> Option<i32> {
    let mut reg = REGISTRY.exclusive();
    let i = find_or_claim(&mut reg, dboid)?;
    let slot = &mut reg.slots[i];
    let pid = (slot.state == SlotState::Running && slot.pid != 0).then_some(slot.pid);
    *slot = Slot { dboid, state: SlotState::Paused, retry_at: until_ms, requested: true, ..FREE_SLOT };
    pid
}

/// Whether a process still runs as the scheduler of `dboid`.
pub fn running_pid(dboid: u32) -> Option<i32> {
    let reg = REGISTRY.share();
    find(&reg, dboid).map(|i| reg.slots[i]).filter(|s| s.state == SlotState::Running).map(|s| s.pid)
}

/// Let a paused database's scheduler start again after `delay_ms` (long
/// enough for the statement that paused it to commit).
pub fn resume(dboid: u32, now_ms: i64, delay_ms: i64) {
    {
        let mut reg = REGISTRY.exclusive();
        if let Some(i) = find(&reg, dboid) {
            if reg.slots[i].state == SlotState::Paused {
                reg.slots[i].retry_at = now_ms + delay_ms;
            }
        }
    }
    wake_launcher();
}

/// Take one of the cluster's `max` refresh permits.
pub fn acquire_refresh(max: u32) -> bool {
    let mut reg = REGISTRY.exclusive();
    if reg.running_refreshes >= max {
        return false;
    }
    reg.running_refreshes += 1;
    true
}

pub fn release_refresh() {
    let mut reg = REGISTRY.exclusive();
    reg.running_refreshes = reg.running_refreshes.saturating_sub(1);
}
