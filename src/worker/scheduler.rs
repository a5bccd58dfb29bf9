//! The per-database scheduler: a background worker connected to one
//! database, started by the launcher. Each tick it loads the stream tables,
//! asks [`super::plan`] what is due, and refreshes those one transaction
//! each, sources first. It sleeps until the next schedule comes due, the
//! idle interval passes, or a committing writer sets its latch.

use std::cell::Cell;

use pgrx::pg_sys;
use pgrx::prelude::*;

use super::plan::{self, Candidate, Mode};
use super::schedule::Schedule;
use super::{shmem, sys};
use crate::catalog::stream_tables;
use crate::catalog::sys as catalog_sys;
use crate::cdc::buffer;
use crate::error::PgtResult;
use crate::guc;
use crate::refresh::{self, RefreshTrigger};

thread_local! {
    static DBOID: Cell<u32> = const { Cell::new(0) };
    static NOT_NEEDED: Cell<bool> = const { Cell::new(false) };
    static HOLDS_PERMIT: Cell<bool> = const { Cell::new(false) };
    /// The cycles last reported, so that each is logged once.
    static REPORTED_CYCLES: std::cell::RefCell<Vec<Vec<u32>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// How one scheduled refresh went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Refreshed,
    /// Dropped meanwhile, or being refreshed by another session.
    Skipped,
    Failed,
}

/// A scheduler that exits other than for a missing extension is restarted
/// by the launcher after this long.
const RESTART_DELAY_MS: i64 = 5_000;
/// After a tick failed as a whole (catalog unreadable), look again then.
const ERROR_RETRY_MS: i64 = 5_000;
/// Without a permit (pg_trickle.max_concurrent_refreshes reached), try
/// again after this long.
const PERMIT_RETRY_MS: i64 = 100;

/// Entry point of the scheduler background worker; the argument is the
/// database oid.
#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pgt_scheduler_main(arg: pg_sys::Datum) {
    let dboid = arg.value() as u32;
    sys::setup_signals();
    sys::connect(Some(pg_sys::Oid::from(dboid)));
    let pid = sys::my_pid();
    if !shmem::attach(dboid, pid, sys::my_latch()) {
        return;
    }
    DBOID.with(|d| d.set(dboid));
    sys::on_exit(scheduler_exit);
    log!("pg_trickle scheduler started for database {}", dboid);
    loop {
        if shmem::must_stop(dboid, pid) || sys::shutdown_requested() {
            break;
        }
        let wait = match tick() {
            Ok(Some(wait)) => wait,
            Ok(None) => {
                NOT_NEEDED.with(|n| n.set(true));
                break;
            }
            Err(message) => {
                warning!("pg_trickle scheduler: {message}");
                i64::from(guc::SCHEDULER_IDLE_INTERVAL.get()).max(ERROR_RETRY_MS)
            }
        };
        sys::report_idle();
        sys::wait(wait);
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn scheduler_exit(_code: i32, _arg: pg_sys::Datum) {
    if HOLDS_PERMIT.with(|h| h.replace(false)) {
        shmem::release_refresh();
    }
    let not_needed = NOT_NEEDED.with(|n| n.get());
    shmem::detach(DBOID.with(|d| d.get()), sys::my_pid(), not_needed, sys::now_ms() + RESTART_DELAY_MS);
}

/// One stream table as loaded, with what the failure bookkeeping needs.
struct Loaded {
    candidate: Candidate,
    name: String,
    consecutive_errors: i32,
}

/// Load, plan, refresh. Returns how long to sleep, or None when there is
/// nothing to schedule here (pg_trickle is not installed, or no stream table
/// has a schedule): the scheduler then leaves, and is started again when a
/// schedule appears.
fn tick() -> Result<Option<i64>, String> {
    let idle = i64::from(guc::SCHEDULER_IDLE_INTERVAL.get());
    // Paused: touch nothing (not even the catalogs) until enabled again.
    if !guc::ENABLED.get() {
        return Ok(Some(idle));
    }
    let loaded = match sys::in_worker_transaction(true, load) {
        Ok(loaded) => loaded,
        // DDL holds a catalog lock: try again soon.
        Err(failure) if failure.lock_not_available => return Ok(Some(idle.min(1_000))),
        Err(failure) => return Err(failure.message),
    };
    let Some(loaded) = loaded else {
        return Ok(None);
    };
    if !loaded.iter().any(|l| l.candidate.schedule.is_some() && l.candidate.mode != Mode::Immediate) {
        return Ok(None);
    }
    let candidates: Vec<Candidate> = loaded.iter().map(|l| l.candidate.clone()).collect();
    shmem::set_wake_on_commit(DBOID.with(|d| d.get()), plan::wants_commit_wake(&candidates, idle));
    let now = sys::now_ms();
    let plan = plan::plan(&candidates, now);
    let new_cycles = REPORTED_CYCLES.with(|r| *r.borrow() != plan.cycles);
    if new_cycles {
        for cycle in &plan.cycles {
            let names: Vec<&str> = cycle
                .iter()
                .filter_map(|relid| {
                    loaded.iter().find(|l| l.candidate.relid == *relid).map(|l| l.name.as_str())
                })
                .collect();
            warning!(
                "pg_trickle scheduler: stream tables {} read each other in a cycle and are not refreshed",
                names.join(", ")
            );
        }
        REPORTED_CYCLES.with(|r| *r.borrow_mut() = plan.cycles.clone());
    }
    // A stream table whose upstream failed or was skipped this tick waits
    // for the next: refreshed now, it would combine upstreams from
    // different points in time.
    let mut failed: Vec<u32> = Vec::new();
    for relid in plan.order {
        if sys::shutdown_requested() {
            break;
        }
        let upstream = loaded.iter().find(|l| l.candidate.relid == relid).map(|l| &l.candidate.upstream);
        if upstream.is_some_and(|up| up.iter().any(|u| failed.contains(u))) {
            failed.push(relid);
            continue;
        }
        if !shmem::acquire_refresh(guc::MAX_CONCURRENT_REFRESHES.get().max(1) as u32) {
            return Ok(Some(PERMIT_RETRY_MS));
        }
        HOLDS_PERMIT.with(|h| h.set(true));
        let errors = loaded.iter().find(|l| l.candidate.relid == relid).map_or(0, |l| l.consecutive_errors);
        if refresh_one(pg_sys::Oid::from(relid), errors) != Outcome::Refreshed {
            failed.push(relid);
        }
        HOLDS_PERMIT.with(|h| h.set(false));
        shmem::release_refresh();
    }
    let now = sys::now_ms();
    Ok(Some(plan.next_wake_ms.map_or(idle, |at| (at - now).clamp(1, idle))))
}

fn load() -> PgtResult<Option<Vec<Loaded>>> {
    let installed = Spi::get_one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname OPERATOR(pg_catalog.=) 'pg_trickle')",
    )?
    .unwrap_or(false);
    if !installed {
        return Ok(None);
    }
    #[allow(clippy::type_complexity)]
    let rows: Vec<(
        pg_sys::Oid,
        String,
        Option<String>,
        String,
        Option<i64>,
        Option<i64>,
        i32,
        Vec<pg_sys::Oid>,
        String,
    )> = Spi::connect(|client| {
        let mut out = Vec::new();
        let table = client.select(
                // (A FULL stream table that consumes changes is scheduled
                // like a differential one: it has work only when a source
                // changed, or when it owes a FULL refresh.)
                "SELECT st.relid, CASE WHEN st.consumes_changes AND st.refresh_mode OPERATOR(pg_catalog.=) 'full' \
                                  THEN 'differential' ELSE st.refresh_mode END, st.schedule, st.status, \
                        (extract(epoch FROM st.last_refresh_at) * 1000)::int8, \
                        (extract(epoch FROM st.next_retry_at) * 1000)::int8, st.consecutive_errors, \
                        ARRAY(SELECT s.source_relid FROM pgtrickle.pgt_sources s \
                                JOIN pgtrickle.pgt_stream_tables u ON u.relid OPERATOR(pg_catalog.=) s.source_relid \
                               WHERE s.relid OPERATOR(pg_catalog.=) st.relid), \
                        st.relid::pg_catalog.regclass::pg_catalog.text \
                   FROM pgtrickle.pgt_stream_tables st",
                None,
                &[],
            )?;
        for row in table {
            out.push((
                row.get(1)?.unwrap_or(pg_sys::InvalidOid),
                row.get(2)?.unwrap_or_default(),
                row.get(3)?,
                row.get(4)?.unwrap_or_default(),
                row.get(5)?,
                row.get(6)?,
                row.get(7)?.unwrap_or(0),
                row.get(8)?.unwrap_or_default(),
                row.get(9)?.unwrap_or_default(),
            ));
        }
        Ok::<_, crate::error::PgtError>(out)
    })?;
    let mut loaded = Vec::with_capacity(rows.len());
    for (relid, mode, schedule, status, last, retry, errors, upstream, name) in rows {
        let mode = match mode.as_str() {
            "differential" => Mode::Differential,
            "immediate" => Mode::Immediate,
            _ => Mode::Full,
        };
        let schedule = schedule.as_deref().and_then(|s| Schedule::parse(s).ok());
        let active = status == "active";
        let pending = mode == Mode::Differential && active && has_pending(relid)?;
        loaded.push(Loaded {
            candidate: Candidate {
                relid: relid.to_u32(),
                mode,
                schedule,
                active,
                pending,
                last_refresh_ms: last,
                retry_at_ms: retry,
                upstream: upstream.iter().map(|o| o.to_u32()).collect(),
            },
            name,
            consecutive_errors: errors,
        });
    }
    Ok(Some(loaded))
}

/// Does a DIFFERENTIAL stream table (or a FULL one that consumes changes)
/// have anything to apply: a full refresh owed, or committed change rows
/// its frontier has not covered?
fn has_pending(relid: pg_sys::Oid) -> PgtResult<bool> {
    let Some(st) = stream_tables::get(relid)? else { return Ok(false) };
    let Some(frontier) = st.frontier.as_ref().filter(|_| !st.needs_full && st.consumes_changes) else {
        return Ok(true);
    };
    for source in crate::cdc::consumers::captured_sources(relid)? {
        if buffer::has_unapplied(source, frontier)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Refresh one stream table in its own transaction; on failure record the
/// error in another, with a backoff, suspending it after
/// `pg_trickle.max_consecutive_errors` failures in a row.
fn refresh_one(relid: pg_sys::Oid, errors_so_far: i32) -> Outcome {
    let started = sys::now_ms();
    let outcome = sys::in_worker_transaction(false, || {
        // Gone since the plan was made, or being refreshed by someone else
        // (a manual refresh, a previous tick still running): skip.
        if !stream_tables::exists(relid)? || !sys::try_lock_relation(relid, pg_sys::ExclusiveLock) {
            return Ok(None);
        }
        let name = crate::catalog::lifecycle::relation_name(relid)?;
        sys::report_activity(&format!("refreshing {name}"));
        refresh::refresh(relid, RefreshTrigger::Scheduled).map(Some)
    });
    let message = match outcome {
        Ok(Some(_)) => return Outcome::Refreshed,
        Ok(None) => return Outcome::Skipped,
        // Cancelled to resolve a deadlock with another session's DDL: not a
        // failure of the stream table; a later tick tries again.
        Err(failure) if failure.lock_not_available => return Outcome::Skipped,
        Err(failure) => failure.message,
    };
    let failures = errors_so_far.saturating_add(1);
    let limit = guc::MAX_CONSECUTIVE_ERRORS.get();
    let retry_ms = plan::backoff(failures).as_millis() as i64;
    let recorded = sys::in_transaction(|| {
        let name =
            crate::catalog::lifecycle::relation_name(relid).unwrap_or_else(|_| relid.to_u32().to_string());
        if failures >= limit {
            warning!(
                "pg_trickle: refresh of stream table {name} failed {failures} times in a row; it is suspended \
                 (status 'error') until resumed: {message}"
            );
        } else {
            log!("pg_trickle: refresh of stream table {name} failed (retry in {retry_ms} ms): {message}");
        }
        catalog_sys::as_extension_owner(|| {
            stream_tables::record_failure(relid, &message, started, retry_ms, failures >= limit)
        })
    });
    if let Err(e) = recorded {
        warning!("pg_trickle scheduler: could not record a failed refresh: {e}");
    }
    Outcome::Failed
}
