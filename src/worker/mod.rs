//! The background scheduler: a launcher per cluster (`launcher`), a
//! scheduler per database with pg_trickle (`scheduler`), the shared-memory
//! registry between them and the backends (`shmem`), what is due and in
//! which order (`plan`, pure), schedule parsing (`schedule`, pure), and the
//! calls into PostgreSQL (`sys`).
//!
//! Backends talk to it at commit: a transaction that wrote change buffers or
//! changed stream table settings wakes its database's scheduler, and one
//! that created the extension asks the launcher for a scheduler.

use std::cell::Cell;

use pgrx::pg_sys;

pub mod launcher;
pub mod plan;
pub mod schedule;
pub mod scheduler;
pub mod shmem;
pub mod sys;

thread_local! {
    static WAKE_AT_COMMIT: Cell<bool> = const { Cell::new(false) };
    static SETTINGS_CHANGED: Cell<bool> = const { Cell::new(false) };
    /// Databases to ask the launcher for a scheduler in, at commit.
    static REQUEST_AT_COMMIT: std::cell::RefCell<Vec<u32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Set up the registry, the launcher and the commit callback. Called from
/// `_PG_init` while preloading.
pub fn init() {
    shmem::init();
    launcher::register();
    sys::register_xact_callback(on_xact_event);
}

/// Changes were captured: wake this database's scheduler when the current
/// transaction commits, if it has a stream table waiting for them.
pub fn wake_at_commit() {
    WAKE_AT_COMMIT.with(|w| w.set(true));
}

/// Stream tables were created or their settings changed: wake this
/// database's scheduler when the current transaction commits, and start one
/// if none runs (it leaves when nothing has a schedule).
pub fn settings_changed() {
    SETTINGS_CHANGED.with(|w| w.set(true));
    request_at_commit();
}

/// Ask for a scheduler in this database when the current transaction
/// commits (CREATE EXTENSION).
pub fn request_at_commit() {
    request_at_commit_for(sys::my_database());
}

/// Ask for a scheduler in database `dboid` at commit (CREATE DATABASE: a
/// copy of a template that has pg_trickle has it too).
pub fn request_at_commit_for(dboid: u32) {
    REQUEST_AT_COMMIT.with(|r| r.borrow_mut().push(dboid));
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn on_xact_event(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    match event {
        pg_sys::XactEvent::XACT_EVENT_COMMIT | pg_sys::XactEvent::XACT_EVENT_PARALLEL_COMMIT => {
            let db = sys::my_database();
            for requested in REQUEST_AT_COMMIT.with(|r| std::mem::take(&mut *r.borrow_mut())) {
                shmem::request(requested);
            }
            let settings = SETTINGS_CHANGED.with(|w| w.replace(false));
            if WAKE_AT_COMMIT.with(|w| w.replace(false)) || settings {
                shmem::wake(db, settings);
            }
        }
        pg_sys::XactEvent::XACT_EVENT_ABORT | pg_sys::XactEvent::XACT_EVENT_PARALLEL_ABORT => {
            REQUEST_AT_COMMIT.with(|r| r.borrow_mut().clear());
            WAKE_AT_COMMIT.with(|w| w.set(false));
            SETTINGS_CHANGED.with(|w| w.set(false));
        }
        _ => {}
    }
}

/// Stop the scheduler of database `dboid` and keep it stopped while `f`
/// runs (DROP DATABASE and the like need the database free of sessions);
/// it may start again `restart_delay_ms` after (once the statement has
/// committed), whether `f` succeeded or not.
pub fn with_scheduler_stopped<R>(dboid: u32, restart_delay_ms: i64, f: impl FnOnce() -> R) -> R {
    // If `f` raises an error we never get to resume: the pause then ends
    // by itself after this long.
    const PAUSE_MS: i64 = 60_000;
    if let Some(pid) = shmem::pause(dboid, sys::now_ms() + PAUSE_MS) {
        sys::terminate(pid);
        // Its exit (rolling back a refresh in progress) is quick; PostgreSQL
        // itself waits up to 5 s for other sessions to leave a database.
        for _ in 0..500 {
            if shmem::running_pid(dboid).is_none() && !sys::process_alive(pid) {
                break;
            }
            // SAFETY: a plain sleep.
            unsafe { pg_sys::pg_usleep(10_000) };
        }
    }
    let result = f();
    shmem::resume(dboid, sys::now_ms(), restart_delay_ms);
    result
}

/// How far behind its sources a stream table is, in seconds (see
/// `pgtrickle._staleness`); `None` before its first refresh.
pub fn staleness(relid: pg_sys::Oid) -> crate::error::PgtResult<Option<f64>> {
    use crate::catalog::options::RefreshMode;
    use pgrx::Spi;
    let Some(st) = crate::catalog::stream_tables::get(relid)? else { return Ok(None) };
    // It reads the change buffers (as the extension owner): only for those
    // who may read the stream table.
    let readable = crate::catalog::sys::kept_one::<bool>(
        "SELECT pg_catalog.has_table_privilege($1, 'SELECT')",
        &[relid.into()],
    )?
    .unwrap_or(false);
    if !readable {
        return Err(crate::error::PgtError::NoSourceAccess {
            name: crate::catalog::lifecycle::relation_name(relid)?,
        });
    }
    let since = |sql: &str| -> crate::error::PgtResult<Option<f64>> {
        Ok(Spi::get_one_with_args::<f64>(sql, &[relid.into()])?)
    };
    let since_refresh = "SELECT (SELECT extract(epoch FROM pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) last_refresh_at)::float8 \
                           FROM pgtrickle.pgt_stream_tables WHERE relid OPERATOR(pg_catalog.=) $1)";
    match st.effective_mode {
        RefreshMode::Immediate => Ok(Some(0.0)),
        RefreshMode::Differential if st.consumes_changes && !st.needs_full => {
            let Some(frontier) = st.frontier.as_ref() else { return since(since_refresh) };
            let mut oldest: Option<f64> = None;
            for source in crate::cdc::consumers::captured_sources(relid)? {
                if let Some(age) = crate::cdc::buffer::oldest_unapplied_age(source, frontier)? {
                    oldest = Some(oldest.map_or(age, |o| o.max(age)));
                }
            }
            Ok(Some(oldest.unwrap_or(0.0)))
        }
        _ => since(since_refresh),
    }
}
