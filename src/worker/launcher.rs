//! The launcher: one background worker per cluster, started from
//! `shared_preload_libraries`. It lists the databases (connected to none,
//! reading the shared catalog) and starts a scheduler for each: a scheduler
//! that finds no pg_trickle in its database leaves and is started again only
//! when `CREATE EXTENSION` asks for it; one that exits otherwise is
//! restarted after a delay. It rescans when woken (a scheduler left, an
//! extension was created, a database statement finished) and every minute
//! for new databases.

use pgrx::bgworkers::{BackgroundWorkerBuilder, BgWorkerStartTime};
use pgrx::pg_sys;
use pgrx::prelude::*;

use super::{shmem, sys};

const RESCAN_MS: i64 = 60_000;
/// After failing to register a scheduler (no free worker slot), retry then.
const REGISTER_RETRY_MS: i64 = 10_000;

/// Register the launcher. Called from `_PG_init` while preloading.
pub fn register() {
    BackgroundWorkerBuilder::new("pg_trickle launcher")
        .set_type("pg_trickle launcher")
        .set_library("pg_trickle")
        .set_function("pgt_launcher_main")
        .enable_spi_access()
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        .set_restart_time(Some(std::time::Duration::from_secs(5)))
        .load();
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pgt_launcher_main(_arg: pg_sys::Datum) {
    sys::setup_signals();
    sys::connect(None);
    shmem::set_launcher_latch(sys::my_latch());
    log!("pg_trickle launcher started");
    let mut reported_unslotted = 0;
    loop {
        let now = sys::now_ms();
        match sys::databases() {
            Ok(databases) => {
                let (start, unslotted) = shmem::databases_to_start(&databases, now);
                if unslotted > reported_unslotted {
                    warning!(
                        "pg_trickle launcher: {unslotted} databases get no scheduler: at most {} databases can have one",
                        shmem::MAX_DATABASES
                    );
                }
                reported_unslotted = unslotted;
                for db in start {
                    start_scheduler(db, now);
                }
            }
            Err(e) => warning!("pg_trickle launcher: could not list databases: {e}"),
        }
        let wait = shmem::next_retry(now).map_or(RESCAN_MS, |at| (at - now).clamp(1, RESCAN_MS));
        sys::wait(wait);
    }
}

fn start_scheduler(dboid: u32, now: i64) {
    let started = BackgroundWorkerBuilder::new(&format!("pg_trickle scheduler {dboid}"))
        .set_type("pg_trickle scheduler")
        .set_library("pg_trickle")
        .set_function("pgt_scheduler_main")
        .set_argument(Some(pg_sys::Datum::from(dboid)))
        .enable_spi_access()
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        .set_restart_time(None)
        .load_dynamic();
    if started.is_err() {
        warning!(
            "pg_trickle launcher: could not start a scheduler for database {dboid}; \
             raise max_worker_processes (retrying in {} s)",
            REGISTER_RETRY_MS / 1000
        );
        shmem::start_failed(dboid, now + REGISTER_RETRY_MS);
    }
}
