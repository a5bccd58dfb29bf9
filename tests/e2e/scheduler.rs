//! The background scheduler: schedules fire, chains and diamonds stay exact
//! and consistent, a failing stream table is retried and suspended without
//! stopping the others, and the scheduler follows the extension and the
//! database through their lifecycle.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use postgres::Client;

use super::{assert_matches_query, connect, differences_sql, fresh_db};

/// Poll `sql` (a boolean query) until it is true; panic after `secs`.
fn wait_until(c: &mut Client, what: &str, sql: &str, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let ok: Option<bool> = c.query_one(sql, &[]).unwrap().get(0);
        if ok == Some(true) {
            return;
        }
        assert!(Instant::now() < deadline, "timed out after {secs} s waiting for {what}");
        thread::sleep(Duration::from_millis(50));
    }
}

/// Whether stream table `st` equals a fresh run of `query`.
fn differs_sql(st: &str, query: &str) -> String {
    format!("SELECT ({}) = 0", differences_sql(st, query))
}

fn scheduler_running_sql(db: &str) -> String {
    format!(
        "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE backend_type = 'pg_trickle scheduler' AND datname = '{db}')"
    )
}

/// A writer of random INSERT/UPDATE/DELETE on `t (id, g, v)` until stopped.
fn spawn_writer(db: &'static str, stop: Arc<AtomicBool>, seed: i64) -> thread::JoinHandle<u64> {
    thread::spawn(move || {
        let mut w = connect(db);
        let mut n = 0u64;
        let mut x = seed;
        while !stop.load(Ordering::Relaxed) {
            x = (x * 1_103_515_245 + 12_345) % 2_147_483_648;
            let id = x % 200;
            let g = (x / 200) % 7;
            let sql = match x % 3 {
                0 => format!("INSERT INTO t VALUES ({id}, {g}, {x} % 1000) ON CONFLICT (id) DO NOTHING"),
                1 => format!("UPDATE t SET g = {g}, v = v + 1 WHERE id = {id}"),
                _ => format!("DELETE FROM t WHERE id = {id}"),
            };
            w.batch_execute(&sql).unwrap();
            n += 1;
            thread::sleep(Duration::from_millis(5));
        }
        n
    })
}

#[test]
fn schedules_fire_and_commits_wake_the_scheduler() {
    let db = "e2e_sched_fire";
    let mut c = fresh_db(db, true);
    c.batch_execute(
        "CREATE TABLE t (id int PRIMARY KEY, g int, v int);
         INSERT INTO t SELECT i, i % 5, i FROM generate_series(1, 1000) i;
         CREATE MATERIALIZED VIEW asap WITH (pgtrickle.stream, pgtrickle.refresh_mode = differential,
             pgtrickle.schedule = '0s') AS SELECT id, v FROM t WHERE v % 2 = 0;
         CREATE MATERIALIZED VIEW every WITH (pgtrickle.stream, pgtrickle.refresh_mode = full,
             pgtrickle.schedule = '1s') AS SELECT g, count(*) AS n FROM t GROUP BY g;
         CREATE MATERIALIZED VIEW manual WITH (pgtrickle.stream, pgtrickle.refresh_mode = differential)
             AS SELECT id, v FROM t;
         CREATE MATERIALIZED VIEW idle WITH (pgtrickle.stream, pgtrickle.schedule = '1s')
             AS SELECT a.g, sum(b.v) OVER (PARTITION BY a.g + 0) AS s FROM t a JOIN t b ON b.id = a.g;",
    )
    .unwrap();
    let idle_mode: String = c
        .query_one("SELECT refresh_mode FROM pgtrickle.stream_tables WHERE name = 'idle'", &[])
        .unwrap()
        .get(0);
    assert_eq!(idle_mode, "full", "auto falls back to FULL: a window function");
    let idle_query = "SELECT a.g, sum(b.v) OVER (PARTITION BY a.g + 0) AS s FROM t a JOIN t b ON b.id = a.g";
    let idle_refreshes = |c: &mut Client| -> i64 {
        c.query_one(
            "SELECT count(*) FROM pgtrickle.pgt_refresh_history WHERE relid = 'idle'::regclass AND trigger = 'scheduled'",
            &[],
        )
        .unwrap()
        .get(0)
    };
    wait_until(&mut c, "the scheduler", &scheduler_running_sql(db), 10);
    c.batch_execute("INSERT INTO t SELECT i, i % 5, i FROM generate_series(1001, 1020) i").unwrap();
    wait_until(&mut c, "asap to catch up", &differs_sql("asap", "SELECT id, v FROM t WHERE v % 2 = 0"), 10);
    wait_until(
        &mut c,
        "every to catch up",
        &differs_sql("every", "SELECT g, count(*) FROM t GROUP BY g"),
        10,
    );
    wait_until(&mut c, "idle to catch up", &differs_sql("idle", idle_query), 10);
    // Nothing changes from here: the FULL stream table that consumes
    // changes is not refreshed again, the one asked to be FULL is.
    let (idle_before, every_before) = (idle_refreshes(&mut c), {
        let n: i64 = c
            .query_one(
                "SELECT count(*) FROM pgtrickle.pgt_refresh_history WHERE relid = 'every'::regclass",
                &[],
            )
            .unwrap()
            .get(0);
        n
    });
    thread::sleep(Duration::from_millis(2500));
    assert_eq!(idle_refreshes(&mut c), idle_before, "no source changed: no scheduled refresh");
    let every_after: i64 = c
        .query_one("SELECT count(*) FROM pgtrickle.pgt_refresh_history WHERE relid = 'every'::regclass", &[])
        .unwrap()
        .get(0);
    assert!(every_after >= every_before + 2, "pgtrickle.refresh_mode = full recomputes on every tick");
    c.batch_execute("UPDATE t SET v = v + 1 WHERE id = 3").unwrap();
    wait_until(&mut c, "idle to follow a change", &differs_sql("idle", idle_query), 10);
    let manual: i64 = c.query_one("SELECT count(*) FROM manual", &[]).unwrap().get(0);
    assert_eq!(manual, 1000, "a stream table without a schedule is refreshed only by hand");
    let scheduled: i64 = c
        .query_one(
            "SELECT count(*) FROM pgtrickle.pgt_refresh_history
              WHERE relid = 'asap'::regclass AND trigger = 'scheduled' AND outcome = 'ok' AND mode = 'differential'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(scheduled >= 1);
    let health: String = c.query_one("SELECT status FROM pgtrickle.quick_health", &[]).unwrap().get(0);
    assert_eq!(health, "ok");
}

#[test]
fn aggregates_of_aggregates_follow_writes_over_their_inner_stream_tables() {
    let db = "e2e_sched_nested";
    let mut c = fresh_db(db, true);
    let query = "WITH s AS (SELECT g, sum(v) AS total FROM t GROUP BY g)
                 SELECT g, total FROM s WHERE total = (SELECT max(total) FROM s)";
    c.batch_execute(&format!(
        "CREATE TABLE t (id int PRIMARY KEY, g int, v int);
         INSERT INTO t SELECT i, i % 7, i FROM generate_series(1, 150) i;
         CREATE MATERIALIZED VIEW top WITH (pgtrickle.stream, pgtrickle.schedule = '0s') AS {query};"
    ))
    .unwrap();
    wait_until(&mut c, "the scheduler", &scheduler_running_sql(db), 10);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(db, stop.clone(), 11);
    thread::sleep(Duration::from_millis(2000));
    stop.store(true, Ordering::Relaxed);
    assert!(writer.join().unwrap() > 0);
    wait_until(&mut c, "top to catch up", &differs_sql("top", query), 10);
    // The scheduler refreshed the stream table; its refreshes applied the
    // changes to the inner stream table differentially.
    let (scheduled, inner_differential, inner_scheduled): (i64, i64, i64) = {
        let row = c
            .query_one(
                "SELECT count(*) FILTER (WHERE relid = 'top'::regclass AND trigger = 'scheduled'
                                           AND message LIKE 'recomputed over its inner stream tables %'),
                        count(*) FILTER (WHERE relid <> 'top'::regclass AND trigger = 'outer'
                                           AND mode = 'differential'),
                        count(*) FILTER (WHERE relid <> 'top'::regclass AND trigger = 'scheduled')
                   FROM pgtrickle.pgt_refresh_history WHERE outcome = 'ok'",
                &[],
            )
            .unwrap();
        (row.get(0), row.get(1), row.get(2))
    };
    assert!(scheduled >= 1, "scheduled refreshes over the inner stream table");
    assert!(inner_differential >= scheduled, "the inner stream table applied the changes differentially");
    assert_eq!(
        inner_scheduled, 0,
        "the inner stream table is refreshed only by the stream table's refreshes"
    );
    // Set to FULL, the stream table loses its inner stream table; back to
    // AUTO, the scheduler's next refresh makes it again (in the worker).
    c.batch_execute("ALTER MATERIALIZED VIEW top SET (pgtrickle.refresh_mode = 'full')").unwrap();
    let inner_count = "SELECT count(*) FROM pgtrickle.stream_tables WHERE schema = 'pgtrickle_state'";
    let n: i64 = c.query_one(inner_count, &[]).unwrap().get(0);
    assert_eq!(n, 0);
    c.batch_execute("ALTER MATERIALIZED VIEW top SET (pgtrickle.refresh_mode = 'auto')").unwrap();
    c.batch_execute("UPDATE t SET v = v + 1000 WHERE id = 1").unwrap();
    wait_until(
        &mut c,
        "a scheduled refresh over a new inner stream table",
        &format!("SELECT ({inner_count}) = 1 AND ({})", differs_sql("top", query)),
        10,
    );
}

#[test]
fn chain_of_three_stays_exact_under_continuous_writes() {
    let db = "e2e_sched_chain";
    let mut c = fresh_db(db, false);
    // b has 7 groups: keep its refreshes differential (the scheduler, which
    // starts with the extension, reads the database's settings).
    c.batch_execute(&format!(
        "ALTER DATABASE {db} SET pg_trickle.differential_max_change_fraction = 1000; CREATE EXTENSION pg_trickle"
    ))
    .unwrap();
    c.batch_execute(
        "CREATE TABLE t (id int PRIMARY KEY, g int, v int);
         INSERT INTO t SELECT i, i % 7, i FROM generate_series(1, 150) i;
         CREATE MATERIALIZED VIEW a WITH (pgtrickle.stream, pgtrickle.refresh_mode = differential,
             pgtrickle.schedule = '0s') AS SELECT id, g, v FROM t WHERE v % 3 <> 0;
         CREATE MATERIALIZED VIEW b WITH (pgtrickle.stream, pgtrickle.schedule = 'calculated')
             AS SELECT g, count(*) AS n, sum(v) AS s FROM a GROUP BY g;
         CREATE MATERIALIZED VIEW c WITH (pgtrickle.stream, pgtrickle.schedule = '300ms')
             AS SELECT sum(n) AS n, sum(s) AS s FROM b;",
    )
    .unwrap();
    wait_until(&mut c, "the scheduler", &scheduler_running_sql(db), 10);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(db, stop.clone(), 7);
    thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let statements = writer.join().unwrap();
    assert!(statements > 50, "only {statements} statements written");
    let a = "SELECT id, g, v FROM t WHERE v % 3 <> 0";
    let b = format!("SELECT g, count(*), sum(v) FROM ({a}) x GROUP BY g");
    let cq = format!("SELECT sum(n), sum(s) FROM ({b}) y(g, n, s)");
    wait_until(&mut c, "c to catch up", &differs_sql("c", &cq), 15);
    assert_matches_query(&mut c, "a", a);
    assert_matches_query(&mut c, "b", &b);
    // b reads a stream table and is itself refreshed differentially, from
    // the changes a's refreshes captured.
    let b_differential: i64 = c
        .query_one(
            "SELECT count(*) FROM pgtrickle.pgt_refresh_history
              WHERE relid = 'b'::regclass AND trigger = 'scheduled' AND mode = 'differential'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(b_differential > 0, "b was never refreshed differentially");
    let failed: i64 = c
        .query_one("SELECT count(*) FROM pgtrickle.pgt_refresh_history WHERE outcome <> 'ok'", &[])
        .unwrap()
        .get(0);
    assert_eq!(failed, 0);
}

#[test]
fn diamond_is_consistent_at_every_observation() {
    // a -> b, a -> c, (b, c) -> d. Every row of t has one = 1, so for each
    // g, b's sum equals c's count exactly when both were computed from the
    // same contents of a. b also refreshes on its own schedule; c only when
    // d needs it.
    let db = "e2e_sched_diamond";
    let mut c = fresh_db(db, true);
    c.batch_execute(
        "CREATE TABLE t (id int PRIMARY KEY, g int, v int, one int NOT NULL DEFAULT 1);
         INSERT INTO t SELECT i, i % 7, i FROM generate_series(1, 150) i;
         CREATE MATERIALIZED VIEW a WITH (pgtrickle.stream, pgtrickle.refresh_mode = differential,
             pgtrickle.schedule = '0s') AS SELECT id, g, one FROM t;
         CREATE MATERIALIZED VIEW b WITH (pgtrickle.stream, pgtrickle.schedule = '100ms')
             AS SELECT g, sum(one) AS s FROM a GROUP BY g;
         CREATE MATERIALIZED VIEW c WITH (pgtrickle.stream, pgtrickle.schedule = 'calculated')
             AS SELECT g, count(*) AS n FROM a GROUP BY g;
         CREATE MATERIALIZED VIEW d WITH (pgtrickle.stream, pgtrickle.schedule = '250ms')
             AS SELECT b.g, b.s, c.n FROM b JOIN c USING (g);",
    )
    .unwrap();
    wait_until(&mut c, "the scheduler", &scheduler_running_sql(db), 10);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(db, stop.clone(), 11);
    let start = Instant::now();
    let mut observations = 0;
    let mut refreshes_seen = std::collections::BTreeSet::new();
    while start.elapsed() < Duration::from_secs(4) {
        let rows = c.query("SELECT g, s, n FROM d", &[]).unwrap();
        for r in &rows {
            let (g, s, n): (i32, i64, i64) = (r.get(0), r.get(1), r.get(2));
            assert_eq!(s, n, "d mixes b and c from different points in time (g = {g})");
        }
        let last: Option<String> = c
            .query_one("SELECT max(finished_at)::text FROM pgtrickle.pgt_refresh_history WHERE relid = 'd'::regclass", &[])
            .unwrap()
            .get(0);
        refreshes_seen.insert(last);
        observations += 1;
        thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert!(refreshes_seen.len() >= 5, "d was refreshed only {} times while observed", refreshes_seen.len());
    assert!(observations > 50);
    let d = "SELECT g, count(*)::numeric, count(*) FROM t GROUP BY g";
    wait_until(&mut c, "d to catch up", &differs_sql("d", d), 15);
}

#[test]
fn failing_stream_table_is_retried_suspended_and_resumed_without_stopping_others() {
    let db = "e2e_sched_failure";
    let mut c = fresh_db(db, true);
    c.batch_execute(
        "CREATE TABLE t (id int PRIMARY KEY, v int);
         INSERT INTO t SELECT i, i FROM generate_series(1, 50) i;
         CREATE MATERIALIZED VIEW bad WITH (pgtrickle.stream, pgtrickle.refresh_mode = full,
             pgtrickle.schedule = '200ms') AS SELECT id, 100 / v AS q FROM t;
         CREATE MATERIALIZED VIEW good WITH (pgtrickle.stream, pgtrickle.refresh_mode = differential,
             pgtrickle.schedule = '0s') AS SELECT id, v FROM t;",
    )
    .unwrap();
    wait_until(&mut c, "the scheduler", &scheduler_running_sql(db), 10);
    c.batch_execute("INSERT INTO t VALUES (51, 0)").unwrap();
    // Retried after 1 s and 2 s, then suspended (pg_trickle.max_consecutive_errors = 3).
    wait_until(
        &mut c,
        "bad to be suspended",
        "SELECT status = 'error' FROM pgtrickle.pgt_stream_tables WHERE relid = 'bad'::regclass",
        30,
    );
    // Its neighbour kept going meanwhile, and keeps going.
    c.batch_execute("INSERT INTO t SELECT i, i FROM generate_series(52, 60) i").unwrap();
    wait_until(&mut c, "good to catch up", &differs_sql("good", "SELECT id, v FROM t"), 10);
    let row = c
        .query_one(
            "SELECT consecutive_errors, last_error, failed_refreshes, stale
               FROM pgtrickle.pg_stat_stream_tables WHERE name = 'bad'",
            &[],
        )
        .unwrap();
    let (errors, message, failed, stale): (i32, String, i64, bool) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!(errors, 3);
    assert!(message.contains("division by zero"), "{message}");
    assert_eq!(failed, 3);
    assert!(!stale, "a suspended stream table is not reported stale");
    let health: (i64, String) = {
        let r = c.query_one("SELECT erroring, status FROM pgtrickle.quick_health", &[]).unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(health, (1, "error".to_string()));
    let history: Vec<String> = c
        .query("SELECT outcome FROM pgtrickle.refresh_history('bad', 3)", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(history, ["error", "error", "error"]);
    // Suspended: no more attempts.
    thread::sleep(Duration::from_millis(1500));
    let attempts: i64 = c
        .query_one("SELECT failed_refreshes FROM pgtrickle.pg_stat_stream_tables WHERE name = 'bad'", &[])
        .unwrap()
        .get(0);
    assert_eq!(attempts, 3);
    // Fixed and resumed.
    c.batch_execute("UPDATE t SET v = 1 WHERE v = 0; SELECT pgtrickle.resume_stream_table('bad')").unwrap();
    wait_until(&mut c, "bad to recover", &differs_sql("bad", "SELECT id, 100 / v FROM t"), 10);
    wait_until(
        &mut c,
        "bad to be active again",
        "SELECT status = 'active' AND consecutive_errors = 0 FROM pgtrickle.pgt_stream_tables WHERE relid = 'bad'::regclass",
        10,
    );
}

#[test]
fn scheduler_follows_extension_and_database_lifecycle() {
    let db = "e2e_sched_life";
    let mut admin = connect("postgres");
    let mut c = fresh_db(db, true);
    let running = scheduler_running_sql(db);
    let not_running = format!("SELECT NOT ({running})");
    let scheduled = "CREATE TABLE IF NOT EXISTS t (id int PRIMARY KEY);
         CREATE MATERIALIZED VIEW st WITH (pgtrickle.stream, pgtrickle.refresh_mode = differential,
             pgtrickle.schedule = '0s') AS SELECT id FROM t;";
    // Nothing scheduled yet: no scheduler holds a worker for the database.
    thread::sleep(Duration::from_millis(1500));
    wait_until(&mut admin, "no scheduler without a scheduled stream table", &not_running, 10);
    c.batch_execute(scheduled).unwrap();
    wait_until(&mut admin, "a scheduler once a stream table has a schedule", &running, 10);
    c.batch_execute("ALTER MATERIALIZED VIEW st RESET (pgtrickle.schedule)").unwrap();
    wait_until(&mut admin, "the scheduler to leave without schedules", &not_running, 10);
    c.batch_execute("ALTER MATERIALIZED VIEW st SET (pgtrickle.schedule = '0s')").unwrap();
    wait_until(&mut admin, "the scheduler back with a schedule", &running, 10);

    c.batch_execute("DROP EXTENSION pg_trickle CASCADE").unwrap();
    wait_until(&mut admin, "the scheduler to leave after DROP EXTENSION", &not_running, 10);
    c.batch_execute("CREATE EXTENSION pg_trickle").unwrap();
    c.batch_execute(scheduled).unwrap();
    wait_until(&mut admin, "a scheduler after CREATE EXTENSION again", &running, 10);

    // Killed: the launcher starts another one.
    // (Read until it answers: a scheduler that just started may not have
    // attached to its slot yet.)
    let pid: i32 = (0..100)
        .find_map(|_| {
            let pid: Option<i32> = c.query_one("SELECT pgtrickle.scheduler_pid()", &[]).unwrap().get(0);
            if pid.is_none() {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            pid
        })
        .expect("the scheduler's pid");
    admin.batch_execute(&format!("SELECT pg_terminate_backend({pid})")).unwrap();
    wait_until(
        &mut c,
        "a new scheduler after the old one was terminated",
        &format!("SELECT pgtrickle.scheduler_pid() IS DISTINCT FROM {pid} AND pgtrickle.scheduler_pid() IS NOT NULL"),
        15,
    );
    c.batch_execute("INSERT INTO t VALUES (1)").unwrap();
    wait_until(&mut c, "st to catch up", &differs_sql("st", "SELECT id FROM t"), 10);
    drop(c);

    // Statements that need the database free of sessions are not blocked
    // by its scheduler.
    admin.batch_execute("DROP DATABASE IF EXISTS e2e_sched_life_copy").unwrap();
    admin.batch_execute(&format!("CREATE DATABASE e2e_sched_life_copy TEMPLATE {db}")).unwrap();
    // The copy has pg_trickle: its scheduler starts when it is created.
    wait_until(&mut admin, "a scheduler in the copy", &scheduler_running_sql("e2e_sched_life_copy"), 5);
    admin.batch_execute(&format!("ALTER DATABASE {db} RENAME TO e2e_sched_life_renamed")).unwrap();
    admin.batch_execute(&format!("ALTER DATABASE e2e_sched_life_renamed RENAME TO {db}")).unwrap();
    wait_until(&mut admin, "the scheduler back after RENAME", &running, 15);
    // A database closed to connections loses its scheduler, and gets it
    // back when reopened.
    admin.batch_execute(&format!("ALTER DATABASE {db} WITH ALLOW_CONNECTIONS false")).unwrap();
    thread::sleep(Duration::from_millis(1500));
    wait_until(&mut admin, "no scheduler in a closed database", &format!("SELECT NOT ({running})"), 10);
    admin.batch_execute(&format!("ALTER DATABASE {db} WITH ALLOW_CONNECTIONS true")).unwrap();
    wait_until(&mut admin, "the scheduler back after reopening", &running, 10);
    let started = Instant::now();
    admin.batch_execute(&format!("DROP DATABASE {db}")).unwrap();
    admin.batch_execute("DROP DATABASE e2e_sched_life_copy").unwrap();
    assert!(started.elapsed() < Duration::from_secs(5), "DROP DATABASE waited {:?}", started.elapsed());
    thread::sleep(Duration::from_millis(500));
    let left: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_trickle scheduler' AND datname LIKE 'e2e_sched_life%'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
}

/// Run by `scripts/test.sh` on its own, after the other tests: restarts the
/// server (PGT_TEST_DATADIR) and checks that scheduling resumes.
#[test]
#[ignore]
fn scheduling_resumes_after_a_server_restart() {
    let db = "e2e_sched_restart";
    let mut c = fresh_db(db, true);
    c.batch_execute(
        "CREATE TABLE t (id int PRIMARY KEY);
         CREATE MATERIALIZED VIEW st WITH (pgtrickle.stream, pgtrickle.refresh_mode = differential,
             pgtrickle.schedule = '0s') AS SELECT id FROM t;",
    )
    .unwrap();
    drop(c);
    let datadir =
        std::env::var("PGT_TEST_DATADIR").expect("PGT_TEST_DATADIR is not set: run through `make test`");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/cluster.sh");
    let status = std::process::Command::new("bash")
        .args([script, "start", &datadir, &super::port().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "restart failed");
    let mut c = connect(db);
    wait_until(&mut c, "the scheduler after restart", &scheduler_running_sql(db), 15);
    c.batch_execute("INSERT INTO t SELECT generate_series(1, 10)").unwrap();
    wait_until(&mut c, "st to catch up after restart", &differs_sql("st", "SELECT id FROM t"), 10);
}

#[test]
fn a_stream_table_being_refreshed_is_skipped_not_waited_for() {
    let db = "e2e_sched_busy";
    let mut c = fresh_db(db, true);
    c.batch_execute(
        "CREATE TABLE t (id int PRIMARY KEY, v int);
         INSERT INTO t SELECT i, i FROM generate_series(1, 1000) i;
         CREATE MATERIALIZED VIEW busy WITH (pgtrickle.stream, pgtrickle.refresh_mode = differential,
             pgtrickle.schedule = '0s') AS SELECT id, v FROM t;
         CREATE MATERIALIZED VIEW other WITH (pgtrickle.stream, pgtrickle.refresh_mode = differential,
             pgtrickle.schedule = '0s') AS SELECT id FROM t WHERE v > 500;",
    )
    .unwrap();
    wait_until(&mut c, "the scheduler", &scheduler_running_sql(db), 10);
    // A manual refresh holds busy's lock in an open transaction.
    let mut holder = connect(db);
    holder.batch_execute("BEGIN; REFRESH MATERIALIZED VIEW busy").unwrap();
    c.batch_execute("UPDATE t SET v = v + 1 WHERE id <= 10").unwrap();
    wait_until(&mut c, "other to catch up", &differs_sql("other", "SELECT id FROM t WHERE v > 500"), 10);
    thread::sleep(Duration::from_millis(500));
    let waiting: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_trickle scheduler'
                AND datname = current_database() AND wait_event_type = 'Lock'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(waiting, 0, "the scheduler waits for a lock instead of skipping");
    let errors: i64 = c
        .query_one("SELECT count(*) FROM pgtrickle.pgt_refresh_history WHERE outcome = 'error'", &[])
        .unwrap()
        .get(0);
    assert_eq!(errors, 0);
    holder.batch_execute("COMMIT").unwrap();
    wait_until(&mut c, "busy to catch up", &differs_sql("busy", "SELECT id, v FROM t"), 10);
}
