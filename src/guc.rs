//! pg_trickle's configuration parameters (`pg_trickle.*`).

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

/// Above this fraction of the source's rows changed in one window, a
/// DIFFERENTIAL refresh recomputes in FULL instead (cheaper by then).
pub static DIFFERENTIAL_MAX_CHANGE_FRACTION: GucSetting<f64> = GucSetting::<f64>::new(0.25);

/// Whether a DIFFERENTIAL refresh whose changes would take longer, at the
/// rate of its last differential refresh, than its last FULL refresh took,
/// recomputes in FULL instead.
pub static ADAPTIVE_FALLBACK: GucSetting<bool> = GucSetting::<bool>::new(true);

/// Whether the schedulers refresh anything.
pub static ENABLED: GucSetting<bool> = GucSetting::<bool>::new(true);
/// The longest a scheduler sleeps between looks at its stream tables (ms).
pub static SCHEDULER_IDLE_INTERVAL: GucSetting<i32> = GucSetting::<i32>::new(1000);
/// Scheduled refreshes running at once in the whole cluster.
pub static MAX_CONCURRENT_REFRESHES: GucSetting<i32> = GucSetting::<i32>::new(4);
/// Failed scheduled refreshes in a row before a stream table is suspended.
pub static MAX_CONSECUTIVE_ERRORS: GucSetting<i32> = GucSetting::<i32>::new(3);
/// Join key values an IMMEDIATE writer of a two-table join may lock per
/// transaction before it locks the whole stream table (0: always).
pub static IMMEDIATE_KEY_LOCKS: GucSetting<i32> = GucSetting::<i32>::new(64);
/// Refresh history rows kept per stream table (0: all).
pub static HISTORY_LIMIT: GucSetting<i32> = GucSetting::<i32>::new(1000);

pub fn init() {
    GucRegistry::define_bool_guc(
        c"pg_trickle.enabled",
        c"Whether the background schedulers refresh stream tables.",
        c"When off, schedulers keep running but refresh nothing; manual refreshes and \
          IMMEDIATE maintenance are not affected.",
        &ENABLED,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pg_trickle.scheduler_idle_interval",
        c"Longest time a scheduler sleeps between looks at its stream tables.",
        c"Committed changes wake a scheduler at once; this bounds the sleep otherwise.",
        &SCHEDULER_IDLE_INTERVAL,
        10,
        3_600_000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"pg_trickle.max_concurrent_refreshes",
        c"Scheduled refreshes running at once in the whole cluster.",
        c"Each database's scheduler refreshes one stream table at a time; this caps \
          how many schedulers refresh at the same moment.",
        &MAX_CONCURRENT_REFRESHES,
        1,
        1024,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pg_trickle.immediate_key_locks",
        c"Join key values a writer of an IMMEDIATE stream table over a two-table join may lock in a transaction.",
        c"A READ COMMITTED writer locks the join key values its statements change, one lock each, \
          and waits only for writers of the other table with the same values; a statement that would \
          take the transaction past this many locks takes EXCLUSIVE on the stream table instead. \
          0 always takes EXCLUSIVE.",
        &IMMEDIATE_KEY_LOCKS,
        0,
        1_000_000,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pg_trickle.history_limit",
        c"Refresh history rows kept per stream table.",
        c"Each refresh removes the oldest rows of its stream table's history beyond this \
          many; 0 keeps them all.",
        &HISTORY_LIMIT,
        0,
        i32::MAX,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pg_trickle.max_consecutive_errors",
        c"Failed scheduled refreshes in a row after which a stream table is suspended.",
        c"A suspended stream table has status 'error' and is not scheduled until resumed \
          with pgtrickle.resume_stream_table() or ALTER MATERIALIZED VIEW ... SET \
          (pgtrickle.status = 'active').",
        &MAX_CONSECUTIVE_ERRORS,
        1,
        1_000_000,
        GucContext::Sighup,
        GucFlags::default(),
    );

    GucRegistry::define_float_guc(
        c"pg_trickle.differential_max_change_fraction",
        c"Fraction of a source's rows changed above which a differential refresh runs in full.",
        c"A DIFFERENTIAL refresh recomputes the stream table instead when the change rows \
          waiting for it (an UPDATE counts twice) exceed this fraction of its sources' \
          estimated row count, or the keys they affect exceed this fraction of the stream \
          table's rows; the refresh history records why. Large values (e.g. 1000) keep \
          refreshes differential.",
        &DIFFERENTIAL_MAX_CHANGE_FRACTION,
        0.0,
        1000.0,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"pg_trickle.adaptive_fallback",
        c"Whether a differential refresh predicted to be slower than a full one runs in full.",
        c"The prediction scales the time of the stream table's last differential refresh by \
          its number of changes, and compares it with the time of its last full refresh; \
          full refreshes that took less than 100 ms are never avoided. The refresh history \
          records why.",
        &ADAPTIVE_FALLBACK,
        GucContext::Userset,
        GucFlags::default(),
    );
}
