//! pg_trickle: stream tables, materialized views that maintain themselves.
//!
//! Folders follow the data: `hooks` (DDL interception) → `catalog`
//! (settings, catalog rows, lifecycle) → `cdc` (change capture into
//! buffers) → `dvm` (what can be maintained, and how) → `refresh` (FULL,
//! DIFFERENTIAL and IMMEDIATE, the maintenance window); `api` is the SQL
//! surface; `worker` holds the scheduler's pieces. Each folder has a README.
#![deny(unsafe_op_in_unsafe_fn)]

use pgrx::prelude::*;

pub mod api;
pub mod catalog;
pub mod cdc;
pub mod dvm;
pub mod error;
pub mod guc;
pub mod hooks;
pub mod refresh;
pub mod sql;
pub mod worker;

pgrx::pg_module_magic!();

extension_sql_file!("../sql/catalog.sql", name = "catalog", bootstrap);
extension_sql_file!("../sql/views.sql", name = "views", finalize);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    // SAFETY: reading a flag PostgreSQL sets while loading shared libraries.
    let preloading = unsafe { pg_sys::process_shared_preload_libraries_in_progress };
    if !preloading {
        pgrx::pg_sys::panic::ErrorReport::new(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "pg_trickle must be loaded via shared_preload_libraries",
            "_PG_init",
        )
        .set_hint("Add pg_trickle to shared_preload_libraries in postgresql.conf and restart the server.")
        .report(PgLogLevel::ERROR);
    }
    guc::init();
    hooks::init();
    refresh::window::init();
    cdc::capture::init();
    cdc::statements::init();
    refresh::isolation::init();
    worker::init();
}

// `#[pg_test]`s need a server: `cargo pgrx test` runs them (feature pg_test);
// plain `cargo test` runs only the pure Rust tests.
#[cfg(feature = "pg_test")]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    fn count(sql: &str) -> i64 {
        Spi::get_one::<i64>(sql).unwrap().unwrap()
    }

    #[pg_test]
    fn create_refresh_drop_through_ddl() {
        Spi::run("CREATE TABLE t (id int PRIMARY KEY, v int)").unwrap();
        Spi::run("INSERT INTO t SELECT g, g % 3 FROM generate_series(1, 10) g").unwrap();
        Spi::run(
            "CREATE MATERIALIZED VIEW st WITH (pgtrickle.stream = true, pgtrickle.refresh_mode = 'full') \
             AS SELECT v, count(*) AS n FROM t GROUP BY v",
        )
        .unwrap();
        assert_eq!(count("SELECT count(*) FROM st"), 3);
        assert_eq!(count("SELECT count(*) FROM pgtrickle.pgt_stream_tables WHERE relid = 'st'::regclass"), 1);
        Spi::run("INSERT INTO t VALUES (11, 7)").unwrap();
        Spi::run("REFRESH MATERIALIZED VIEW st").unwrap();
        assert_eq!(count("SELECT count(*) FROM st"), 4);
        assert_eq!(count("SELECT count(*) FROM pgtrickle.pgt_refresh_history WHERE outcome = 'ok'"), 2);
        Spi::run("DROP MATERIALIZED VIEW st").unwrap();
        assert_eq!(count("SELECT count(*) FROM pgtrickle.pgt_stream_tables"), 0);
    }

    #[pg_test]
    fn reloptions_hold_the_settings() {
        Spi::run("CREATE TABLE t2 (a int)").unwrap();
        Spi::run("SELECT pgtrickle.create_stream_table('s2', 'SELECT a FROM t2', 'full', '5m')").unwrap();
        let opts = Spi::get_one::<Vec<String>>("SELECT reloptions FROM pg_class WHERE oid = 's2'::regclass")
            .unwrap()
            .unwrap();
        assert_eq!(
            opts,
            vec!["pgtrickle.stream=true", "pgtrickle.refresh_mode=full", "pgtrickle.schedule=5m"]
        );
        Spi::run("ALTER MATERIALIZED VIEW s2 SET (fillfactor = 50, pgtrickle.schedule = '1h')").unwrap();
        let opts = Spi::get_one::<Vec<String>>("SELECT reloptions FROM pg_class WHERE oid = 's2'::regclass")
            .unwrap()
            .unwrap();
        assert_eq!(
            opts,
            vec![
                "fillfactor=50",
                "pgtrickle.stream=true",
                "pgtrickle.refresh_mode=full",
                "pgtrickle.schedule=1h"
            ]
        );
    }

    #[pg_test]
    fn a_failed_subtransaction_leaves_nothing_and_the_transaction_goes_on() {
        use crate::catalog::sys::in_subtransaction;
        Spi::run("CREATE TABLE sub_t (x int)").unwrap();
        // A PostgreSQL error inside: rolled back, its message returned.
        let failed = in_subtransaction(|| {
            Spi::run("INSERT INTO sub_t VALUES (1)")?;
            Spi::run("SELECT 1 / 0")?;
            Ok(())
        })
        .unwrap();
        assert_eq!(failed, Err("division by zero".to_string()));
        // A Rust error inside: rolled back too.
        let refused = in_subtransaction(|| -> crate::error::PgtResult<()> {
            Spi::run("INSERT INTO sub_t VALUES (2)")?;
            Err(crate::error::PgtError::Internal("no".into()))
        })
        .unwrap();
        assert!(refused.is_err());
        // Success: kept, and the transaction goes on.
        assert_eq!(in_subtransaction(|| Ok(Spi::run("INSERT INTO sub_t VALUES (3)")?)).unwrap(), Ok(()));
        Spi::run("INSERT INTO sub_t VALUES (4)").unwrap();
        assert_eq!(count("SELECT count(*) FROM sub_t WHERE x IN (1, 2)"), 0);
        assert_eq!(count("SELECT count(*) FROM sub_t WHERE x IN (3, 4)"), 2);
    }

    #[pg_test(error = "stream table public.s3 cannot be maintained differentially")]
    fn differential_needs_a_maintainable_query() {
        Spi::run("CREATE TABLE t3 (a int)").unwrap();
        Spi::run(
            "CREATE MATERIALIZED VIEW s3 WITH (pgtrickle.stream, pgtrickle.refresh_mode = differential) \
             AS SELECT x.a, rank() OVER (ORDER BY x.a) FROM t3 x JOIN t3 y ON y.a = x.a",
        )
        .unwrap();
    }
}

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec!["shared_preload_libraries = 'pg_trickle'"]
    }
}
