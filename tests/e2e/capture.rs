//! Change capture under concurrency: every committed change is consumed by
//! exactly one refresh of each consumer, however transactions interleave
//! with refreshes; open transactions are never skipped; rollbacks leave
//! nothing.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::{assert_matches_query, connect, fresh_db, retry_conflicts, Rng};

fn consumed(c: &mut postgres::Client, st: &str) -> i64 {
    c.query_one(
        "SELECT coalesce(sum(changes_consumed), 0)::bigint FROM pgtrickle.pgt_refresh_history \
          WHERE relid = $1::text::regclass",
        &[&st],
    )
    .unwrap()
    .get(0)
}

fn pending(c: &mut postgres::Client) -> i64 {
    c.query_one("SELECT coalesce(sum(pending_rows), 0)::bigint FROM pgtrickle.change_buffers", &[])
        .unwrap()
        .get(0)
}

#[test]
fn open_transaction_is_applied_by_a_later_refresh() {
    let mut b = fresh_db("e2e_capture_open", true);
    b.batch_execute(
        "CREATE TABLE src (id int PRIMARY KEY, v int);
         CREATE MATERIALIZED VIEW st WITH (pgtrickle.stream = true) AS SELECT id, v FROM src;",
    )
    .unwrap();
    let mut a = connect("e2e_capture_open");
    let mut tx = a.transaction().unwrap();
    tx.execute("INSERT INTO src SELECT g, g FROM generate_series(1, 5) g", &[]).unwrap();

    b.execute("INSERT INTO src SELECT g, g FROM generate_series(100, 102) g", &[]).unwrap();
    b.batch_execute("REFRESH MATERIALIZED VIEW st").unwrap();
    assert_eq!(consumed(&mut b, "st"), 3, "the open transaction's rows were taken too early");

    tx.commit().unwrap();
    b.batch_execute("REFRESH MATERIALIZED VIEW st").unwrap();
    assert_eq!(consumed(&mut b, "st"), 8, "the late commit was skipped");
    assert_eq!(pending(&mut b), 0);
    assert_matches_query(&mut b, "st", "SELECT id, v FROM src");
}

#[test]
fn concurrent_writers_on_two_sources_are_consumed_exactly_once() {
    let mut c = fresh_db("e2e_capture_concurrent", true);
    c.batch_execute(
        "CREATE TABLE a (id int PRIMARY KEY, k int, v int);
         CREATE TABLE b (id int PRIMARY KEY, k int, w int);
         CREATE MATERIALIZED VIEW st WITH (pgtrickle.stream = true) AS
           SELECT k, sum(v) AS sv, count(*) AS n FROM a GROUP BY k;
         CREATE MATERIALIZED VIEW st_b WITH (pgtrickle.stream = true) AS SELECT id, k, w FROM b;
         CREATE MATERIALIZED VIEW st2 WITH (pgtrickle.stream = true) AS SELECT id, v FROM a WHERE v % 2 = 0;
         -- Running totals of a join: each refresh's change terms read the
         -- other table as of the refresh's snapshot, never later commits.
         CREATE MATERIALIZED VIEW st_j WITH (pgtrickle.stream = true) AS
           SELECT a.k, count(*) AS n, sum(a.v + b.w) AS s FROM a JOIN b ON a.k = b.k GROUP BY a.k;",
    )
    .unwrap();
    let committed_a = Arc::new(AtomicI64::new(0));
    let committed_b = Arc::new(AtomicI64::new(0));
    let stop = Arc::new(AtomicBool::new(false));

    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (ca, cb) = (committed_a.clone(), committed_b.clone());
            std::thread::spawn(move || {
                let mut conn = connect("e2e_capture_concurrent");
                let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (w as u64 + 1));
                let mut rnd = move |n: u64| rng.next(n);
                for i in 0..60 {
                    let base = w * 100_000 + i * 10;
                    let mut tx = conn.transaction().unwrap();
                    let mut da = 0i64;
                    let mut db = 0i64;
                    // Inserts on both sources in one transaction.
                    da += tx
                        .execute(
                            "INSERT INTO a SELECT $1 + g, g % 5, g FROM generate_series(0, 2) g",
                            &[&base],
                        )
                        .unwrap() as i64;
                    db += tx
                        .execute(
                            "INSERT INTO b SELECT $1 + g, g % 5, g FROM generate_series(0, 1) g",
                            &[&base],
                        )
                        .unwrap() as i64;
                    // Updates (old + new row) and deletes of this writer's earlier rows.
                    let lo = w * 100_000;
                    da += 2 * tx
                        .execute(
                            "UPDATE a SET v = v + 1 WHERE id BETWEEN $1 AND $1 + 3",
                            &[&(lo + rnd(500) as i32)],
                        )
                        .unwrap() as i64;
                    db +=
                        tx.execute("DELETE FROM b WHERE id = $1", &[&(lo + rnd(500) as i32)]).unwrap() as i64;
                    // A savepoint rolled back: its changes must not count.
                    tx.batch_execute("SAVEPOINT s").unwrap();
                    tx.execute("INSERT INTO a VALUES ($1 + 9, 0, 0)", &[&base]).unwrap();
                    tx.batch_execute("ROLLBACK TO SAVEPOINT s").unwrap();
                    if rnd(5) == 0 {
                        tx.rollback().unwrap();
                    } else {
                        tx.commit().unwrap();
                        ca.fetch_add(da, Ordering::SeqCst);
                        cb.fetch_add(db, Ordering::SeqCst);
                    }
                    if rnd(3) == 0 {
                        std::thread::sleep(Duration::from_millis(rnd(5)));
                    }
                }
            })
        })
        .collect();
    let refresher = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut conn = connect("e2e_capture_concurrent");
            // Keep every refresh differential (the tables are small).
            conn.batch_execute("SET pg_trickle.differential_max_change_fraction = 1000").unwrap();
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                conn.batch_execute("REFRESH MATERIALIZED VIEW st; REFRESH MATERIALIZED VIEW st_b").unwrap();
                if n % 3 == 0 {
                    conn.batch_execute("REFRESH MATERIALIZED VIEW st2").unwrap();
                }
                if n % 2 == 0 {
                    conn.batch_execute("REFRESH MATERIALIZED VIEW st_j").unwrap();
                }
                n += 1;
                std::thread::sleep(Duration::from_millis(3));
            }
            n
        })
    };
    for w in writers {
        w.join().unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    let refreshes = refresher.join().unwrap();
    assert!(refreshes > 3, "the refresher hardly ran ({refreshes} refreshes)");

    c.batch_execute(
        "SET pg_trickle.differential_max_change_fraction = 1000;
         REFRESH MATERIALIZED VIEW st; REFRESH MATERIALIZED VIEW st_b; REFRESH MATERIALIZED VIEW st2;
         REFRESH MATERIALIZED VIEW st_j",
    )
    .unwrap();
    let (wa, wb) = (committed_a.load(Ordering::SeqCst), committed_b.load(Ordering::SeqCst));
    assert_eq!(
        consumed(&mut c, "st"),
        wa,
        "st consumed a different number of changes than were committed to a"
    );
    assert_eq!(
        consumed(&mut c, "st_b"),
        wb,
        "st_b consumed a different number of changes than were committed to b"
    );
    assert_eq!(
        consumed(&mut c, "st2"),
        wa,
        "st2 consumed a different number of changes than were committed to a"
    );
    assert_eq!(pending(&mut c), 0, "buffers were not trimmed");
    assert_matches_query(&mut c, "st", "SELECT k, sum(v), count(*) FROM a GROUP BY k");
    assert_matches_query(&mut c, "st_b", "SELECT id, k, w FROM b");
    assert_matches_query(
        &mut c,
        "st_j",
        "SELECT a.k, count(*), sum(a.v + b.w) FROM a JOIN b ON a.k = b.k GROUP BY a.k",
    );
    let modes: Vec<String> = c
        .query("SELECT DISTINCT mode FROM pgtrickle.pgt_refresh_history WHERE trigger = 'manual'", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(modes, vec!["differential".to_string()], "refreshes were not differential");
    assert_matches_query(&mut c, "st2", "SELECT id, v FROM a WHERE v % 2 = 0");
}

/// A partitioned source written concurrently through the partitioned
/// table and through its partitions (rows moving between partitions,
/// rollbacks), refreshed while it is written: DIFFERENTIAL and IMMEDIATE
/// stream tables equal their queries at the end.
#[test]
fn partitioned_source_written_through_parent_and_partitions() {
    let mut c = fresh_db("e2e_capture_partitions", true);
    c.batch_execute(
        "CREATE TABLE p (id int, part int, v int, PRIMARY KEY (id, part)) PARTITION BY LIST (part);
         CREATE TABLE p0 PARTITION OF p FOR VALUES IN (0);
         CREATE TABLE p1 PARTITION OF p FOR VALUES IN (1);
         CREATE TABLE p2 PARTITION OF p FOR VALUES IN (2) PARTITION BY RANGE (id);
         CREATE TABLE p2_low PARTITION OF p2 FOR VALUES FROM (MINVALUE) TO (200000);
         CREATE TABLE p2_high PARTITION OF p2 FOR VALUES FROM (200000) TO (MAXVALUE);
         CREATE MATERIALIZED VIEW by_part WITH (pgtrickle.stream = true) AS
           SELECT part, count(*) AS n, sum(v) AS s FROM p GROUP BY part;
         CREATE MATERIALIZED VIEW odd WITH (pgtrickle.stream = true) AS SELECT id, part, v FROM p WHERE v % 2 = 1;
         CREATE MATERIALIZED VIEW odd_now WITH (pgtrickle.stream = true, pgtrickle.refresh_mode = immediate) AS
           SELECT id, part, v FROM p WHERE v % 2 = 1;",
    )
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w: i32| {
            std::thread::spawn(move || {
                let mut conn = connect("e2e_capture_partitions");
                for i in 0..50 {
                    let base = w * 100_000 + i * 10;
                    // (Concurrent writers of overlapping rows: PostgreSQL fails
                    // one that locks a row another moved to another partition,
                    // or deadlocks two, as without a stream table; retried.
                    // The IMMEDIATE filter's writers share its lock.)
                    retry_conflicts(&format!("writer {w}"), || {
                        let mut tx = conn.transaction()?;
                        tx.execute(
                            "INSERT INTO p SELECT $1 + g, g % 3, g FROM generate_series(0, 5) g",
                            &[&base],
                        )?;
                        let p2 = if base + 9 < 200_000 { "p2_low" } else { "p2_high" };
                        let table = ["p0", "p1", p2][(i % 3) as usize];
                        let part = i % 3;
                        tx.execute(
                            &format!("INSERT INTO {table} VALUES ($1, $2, $3)"),
                            &[&(base + 9), &part, &i],
                        )?;
                        // Rows moving to another partition, through the parent.
                        tx.execute(
                            "UPDATE p SET part = (part + 1) % 3, v = v + 1 WHERE id BETWEEN $1 AND $1 + 2",
                            &[&(w * 100_000 + (i * 7) % 400)],
                        )?;
                        // Statements naming a partition.
                        tx.execute("UPDATE p1 SET v = v + 3 WHERE id % 11 = $1", &[&(i % 11)])?;
                        tx.execute("DELETE FROM p0 WHERE id = $1", &[&(w * 100_000 + (i * 13) % 500)])?;
                        tx.execute("DELETE FROM p2 WHERE id = $1", &[&(w * 100_000 + (i * 17) % 500)])?;
                        if i % 9 == 4 {
                            tx.rollback()
                        } else {
                            tx.commit()
                        }
                    });
                }
            })
        })
        .collect();
    let refresher = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut conn = connect("e2e_capture_partitions");
            while !stop.load(Ordering::Relaxed) {
                conn.batch_execute("REFRESH MATERIALIZED VIEW by_part; REFRESH MATERIALIZED VIEW odd")
                    .unwrap();
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    for w in writers {
        w.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    refresher.join().unwrap();
    c.batch_execute("REFRESH MATERIALIZED VIEW by_part; REFRESH MATERIALIZED VIEW odd").unwrap();
    assert_matches_query(&mut c, "by_part", "SELECT part, count(*), sum(v) FROM p GROUP BY part");
    assert_matches_query(&mut c, "odd", "SELECT id, part, v FROM p WHERE v % 2 = 1");
    assert_matches_query(&mut c, "odd_now", "SELECT id, part, v FROM p WHERE v % 2 = 1");
    let modes: Vec<String> = c
        .query(
            "SELECT DISTINCT h.mode FROM pgtrickle.pgt_refresh_history h \
              WHERE h.relid = 'by_part'::regclass AND h.trigger = 'manual'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(modes.contains(&"differential".to_string()), "refreshed differentially: {modes:?}");
    let n: i64 = c.query_one("SELECT count(*) FROM p", &[]).unwrap().get(0);
    assert!(n > 500, "rows written: {n}");
}
