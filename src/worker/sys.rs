//! The scheduler's calls into PostgreSQL: signals, latches, transactions
//! with error recovery, the list of databases, the commit callback.

use std::ffi::CString;

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::error::PgtError;

// PostgreSQL's signal handlers, by their C symbols (the generated bindings
// wrap them in Rust functions, which cannot be installed as handlers).
unsafe extern "C-unwind" {
    fn die(signal: std::ffi::c_int);
    fn SignalHandlerForConfigReload(signal: std::ffi::c_int);
}

/// SIGTERM ends the process through PostgreSQL's `die` (a running query is
/// cancelled and its transaction rolled back); SIGHUP reloads the
/// configuration at the next wait.
pub fn setup_signals() {
    // SAFETY: installing PostgreSQL's own handlers in a background worker
    // before unblocking signals, as its bundled workers do.
    unsafe {
        pg_sys::pqsignal_be(pg_sys::SIGTERM as i32, Some(die));
        pg_sys::pqsignal_be(pg_sys::SIGHUP as i32, Some(SignalHandlerForConfigReload));
        pg_sys::BackgroundWorkerUnblockSignals();
    }
}

/// Connect to a database (or to none: shared catalogs only).
pub fn connect(dboid: Option<pg_sys::Oid>) {
    // SAFETY: called once, at the start of a background worker that asked
    // for a database connection.
    unsafe {
        pg_sys::BackgroundWorkerInitializeConnectionByOid(
            dboid.unwrap_or(pg_sys::InvalidOid),
            pg_sys::InvalidOid,
            0,
        )
    };
}

/// This process's latch, as an address other processes can set.
pub fn my_latch() -> usize {
    // SAFETY: MyLatch is set for every process attached to shared memory.
    unsafe { pg_sys::MyLatch as usize }
}

pub fn my_pid() -> i32 {
    // SAFETY: a process-global set at startup.
    unsafe { pg_sys::MyProcPid }
}

pub fn my_database() -> u32 {
    // SAFETY: a process-global set at connection.
    unsafe { pg_sys::MyDatabaseId.to_u32() }
}

/// Set another process's latch (0: nobody).
pub fn set_latch(latch: usize) {
    if latch != 0 {
        // SAFETY: the address is a PGPROC latch in shared memory, valid for
        // the life of the cluster; setting a latch of a process that has
        // since exited only wakes whoever reuses the PGPROC.
        unsafe { pg_sys::SetLatch(latch as *mut pg_sys::Latch) };
    }
}

/// Sleep until the latch is set or `timeout_ms` passes, then handle
/// interrupts (SIGTERM ends the process here) and configuration reloads.
pub fn wait(timeout_ms: i64) {
    let timeout = timeout_ms.clamp(1, i64::from(i32::MAX));
    // SAFETY: the standard latch wait of a background worker.
    unsafe {
        pg_sys::WaitLatch(
            pg_sys::MyLatch,
            (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
            timeout,
            pg_sys::PG_WAIT_EXTENSION,
        );
        pg_sys::ResetLatch(pg_sys::MyLatch);
    }
    pg_sys::check_for_interrupts!();
    reload_config_if_asked();
}

pub fn reload_config_if_asked() {
    // SAFETY: the flag is set by the SIGHUP handler; reloading is what
    // PostgreSQL's own processes do when they see it.
    unsafe {
        if pg_sys::ConfigReloadPending != 0 {
            pg_sys::ConfigReloadPending = 0;
            pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP);
        }
    }
}

/// Whether SIGTERM arrived (the next wait exits).
pub fn shutdown_requested() -> bool {
    // SAFETY: reading flags the signal handler sets.
    unsafe { pg_sys::ProcDiePending != 0 || pg_sys::ShutdownRequestPending != 0 }
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    // SAFETY: a plain clock read.
    let pg_us = unsafe { pg_sys::GetCurrentTimestamp() };
    // PostgreSQL timestamps count from 2000-01-01.
    pg_us / 1000 + 946_684_800_000
}

/// Show what the process does in pg_stat_activity.
pub fn report_activity(what: &str) {
    let Ok(text) = CString::new(what) else { return };
    // SAFETY: the string is copied by PostgreSQL.
    unsafe { pg_sys::pgstat_report_activity(pg_sys::BackendState::STATE_RUNNING, text.as_ptr()) };
}

pub fn report_idle() {
    // SAFETY: a null command string means "no query".
    unsafe { pg_sys::pgstat_report_activity(pg_sys::BackendState::STATE_IDLE, std::ptr::null()) };
}

/// Run `f` in its own transaction with a snapshot. An error (ours or
/// PostgreSQL's) rolls the transaction back whole and comes back as its
/// message; the process carries on.
pub fn in_transaction<R>(f: impl FnOnce() -> Result<R, PgtError>) -> Result<R, String> {
    in_worker_transaction(false, f).map_err(|e| e.message)
}

/// Why a worker transaction failed.
#[derive(Debug)]
pub struct TxFailure {
    pub message: String,
    /// It gave up waiting for a lock (SQLSTATE 55P03, `lock_timeout`), or
    /// was cancelled to resolve a deadlock (40P01).
    pub lock_not_available: bool,
}

/// The longest the scheduler's look at its catalogs waits for a lock.
/// Shorter than PostgreSQL's default `deadlock_timeout` (1 s): DDL that
/// holds locks it needs (DROP SCHEMA ... CASCADE over stream tables and
/// their change buffers) then never meets it in a deadlock in which the
/// DDL could be the one cancelled; the scheduler gives up first and looks
/// again soon.
const LOCK_TIMEOUT: &str = "500ms";

/// [`in_transaction`], keeping whether it failed on a lock; with
/// `limit_lock_waits`, `lock_timeout` is set for the transaction.
pub fn in_worker_transaction<R>(
    limit_lock_waits: bool,
    f: impl FnOnce() -> Result<R, PgtError>,
) -> Result<R, TxFailure> {
    // SAFETY: the transaction calls are the ones PostgreSQL's own workers
    // make; the body runs under pgrx's error boundary, which turns a
    // PostgreSQL ERROR into an unwinding Rust panic caught here, with the
    // error state already copied and flushed. AbortCurrentTransaction then
    // releases locks, snapshots, SPI connections and memory.
    unsafe {
        pg_sys::SetCurrentStatementStartTimestamp();
        pg_sys::StartTransactionCommand();
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
        let f = std::panic::AssertUnwindSafe(f);
        let outcome = PgTryBuilder::new(move || {
            let f = f;
            let limit = if limit_lock_waits {
                Spi::run(&format!("SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")).map_err(PgtError::from)
            } else {
                Ok(())
            };
            let r = limit.and_then(|()| (f.0)());
            if r.is_ok() {
                pg_sys::PopActiveSnapshot();
                pg_sys::CommitTransactionCommand();
            }
            r.map_err(|e| TxFailure { message: e.to_string(), lock_not_available: false })
        })
        .catch_others(|caught| Err(caught_failure(caught)))
        .execute();
        if outcome.is_err() {
            pg_sys::AbortCurrentTransaction();
        }
        outcome
    }
}

fn caught_failure(caught: pg_sys::panic::CaughtError) -> TxFailure {
    use pg_sys::panic::CaughtError;
    match caught {
        CaughtError::PostgresError(report)
        | CaughtError::ErrorReport(report)
        | CaughtError::RustPanic { ereport: report, .. } => TxFailure {
            message: report.message().to_string(),
            lock_not_available: matches!(
                report.sql_error_code(),
                PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE | PgSqlErrorCode::ERRCODE_T_R_DEADLOCK_DETECTED
            ),
        },
    }
}

/// The databases a scheduler may run in: connectable, not templates.
pub fn databases() -> Result<Vec<u32>, String> {
    in_transaction(|| {
        let mut out = Vec::new();
        // SAFETY: a catalog scan of pg_database inside a transaction, with
        // the relation opened and closed around it; GETSTRUCT of a tuple of
        // pg_database is a FormData_pg_database.
        unsafe {
            let rel = pg_sys::table_open(pg_sys::DatabaseRelationId, pg_sys::AccessShareLock as i32);
            let scan = pg_sys::table_beginscan_catalog(rel, 0, std::ptr::null_mut());
            loop {
                let tuple = pg_sys::heap_getnext(scan, pg_sys::ScanDirection::ForwardScanDirection);
                if tuple.is_null() {
                    break;
                }
                let db = pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_database>(tuple);
                if (*db).datallowconn && !(*db).datistemplate {
                    out.push((*db).oid.to_u32());
                }
            }
            pg_sys::table_endscan(scan);
            pg_sys::table_close(rel, pg_sys::AccessShareLock as i32);
        }
        Ok(out)
    })
}

/// The oid of a database by name (None if it does not exist).
pub fn database_oid(name: &str) -> Option<u32> {
    let name = CString::new(name).ok()?;
    // SAFETY: a catalog lookup with missing_ok.
    let oid = unsafe { pg_sys::get_database_oid(name.as_ptr(), true) };
    (oid != pg_sys::InvalidOid).then(|| oid.to_u32())
}

/// Try to take a lock without waiting.
pub fn try_lock_relation(relid: pg_sys::Oid, mode: u32) -> bool {
    // SAFETY: a conditional heavyweight lock, released at transaction end.
    unsafe { pg_sys::ConditionalLockRelationOid(relid, mode as i32) }
}

/// Send SIGTERM to a process of this cluster.
pub fn terminate(pid: i32) {
    // SAFETY: kill(2) with a pid our registry recorded for a scheduler.
    unsafe { libc::kill(pid, libc::SIGTERM) };
}

/// Call `f` when this process exits (before shared memory is detached).
pub fn on_exit(f: unsafe extern "C-unwind" fn(i32, pg_sys::Datum)) {
    // SAFETY: registering a static function with no argument.
    unsafe { pg_sys::before_shmem_exit(Some(f), pg_sys::Datum::from(0)) };
}

/// Register the backend's transaction callback (commit wakes schedulers).
pub fn register_xact_callback(
    f: unsafe extern "C-unwind" fn(pg_sys::XactEvent::Type, *mut std::ffi::c_void),
) {
    // SAFETY: registering a static function; called once from _PG_init.
    unsafe { pg_sys::RegisterXactCallback(Some(f), std::ptr::null_mut()) };
}

/// Whether a process with this pid still exists.
pub fn process_alive(pid: i32) -> bool {
    // SAFETY: kill(2) with signal 0 only checks for existence.
    unsafe { libc::kill(pid, 0) == 0 }
}
