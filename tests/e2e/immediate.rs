//! IMMEDIATE maintenance under concurrency: many sessions writing both
//! sides of a join and the source of an aggregate at once; after every
//! commit the stream tables are exact, and at the end too. No deadlocks.

use crate::{assert_matches_query, connect, differences_sql, fresh_db, retry_conflicts, Rng};

const JOIN_Q: &str = "SELECT a.id, b.id AS bid, a.v, b.w FROM a JOIN b ON a.k = b.k";
const AGG_Q: &str = "SELECT k, count(*) AS n, sum(v) AS s FROM a GROUP BY k";
/// Running totals of a join: each statement adds its rows joined to the
/// other table as the writers before it (serialized by the stream table's
/// lock) left it.
const JOIN_AGG_Q: &str =
    "SELECT b.k, count(*) AS n, sum(a.v * b.w) AS s FROM a JOIN b ON a.k = b.k GROUP BY b.k";

/// The `immediate lock` line `explain_stream_table` shows for `st`.
fn immediate_lock(c: &mut postgres::Client, st: &str) -> String {
    c.query_one(
        "SELECT value FROM pgtrickle.explain_stream_table($1) WHERE property = 'immediate lock'",
        &[&st],
    )
    .unwrap()
    .get(0)
}

/// Run `sql` on `waiter` in another thread; check that it still waits
/// after 300 ms (`what`, when given), end `holder`'s transaction with
/// `release`, and hand `waiter` back with its result.
fn waits_for(
    holder: &mut postgres::Client,
    release: &str,
    mut waiter: postgres::Client,
    sql: String,
    what: Option<&str>,
) -> (postgres::Client, Result<(), postgres::Error>) {
    let thread = std::thread::spawn(move || {
        let result = waiter.batch_execute(&sql);
        (waiter, result)
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    if let Some(what) = what {
        assert!(!thread.is_finished(), "{what}");
    }
    holder.batch_execute(release).unwrap();
    thread.join().unwrap()
}

#[test]
fn sixteen_writers_keep_immediate_stream_tables_exact() {
    let mut c = fresh_db("e2e_immediate", true);
    c.batch_execute(&format!(
        "CREATE TABLE a (id int PRIMARY KEY, k int NOT NULL, v int);
         CREATE TABLE b (id int PRIMARY KEY, k int NOT NULL, w int);
         CREATE INDEX ON a (k); CREATE INDEX ON b (k);
         INSERT INTO a SELECT g, g % 10, g FROM generate_series(1, 200) g;
         INSERT INTO b SELECT g, g % 10, g FROM generate_series(1, 50) g;
         CREATE MATERIALIZED VIEW j WITH (pgtrickle.stream = true, pgtrickle.refresh_mode = 'immediate') AS {JOIN_Q};
         CREATE MATERIALIZED VIEW g WITH (pgtrickle.stream = true, pgtrickle.refresh_mode = 'immediate') AS {AGG_Q};
         CREATE MATERIALIZED VIEW ja WITH (pgtrickle.stream = true, pgtrickle.refresh_mode = 'immediate') AS {JOIN_AGG_Q};"
    ))
    .unwrap();
    let writers: Vec<_> = (0..16)
        .map(|w: i32| {
            std::thread::spawn(move || {
                let mut conn = connect("e2e_immediate");
                let mut rng = Rng(0xdead_beef ^ ((w as u64 + 1) * 0x9e37_79b9));
                let mut rnd = move |n: u64| rng.next(n);
                for i in 0..8 {
                    let base = 10_000 + w * 1000 + i * 10;
                    let mut tx = conn.transaction().unwrap();
                    tx.execute(
                        "INSERT INTO a SELECT $1 + g, (g + $1) % 10, g FROM generate_series(0, 3) g",
                        &[&base],
                    )
                    .unwrap();
                    tx.execute("INSERT INTO b VALUES ($1, $2, $3)", &[&base, &((rnd(10)) as i32), &w])
                        .unwrap();
                    tx.execute("UPDATE a SET k = (k + 1) % 10, v = v + 1 WHERE id = $1 + 1", &[&base])
                        .unwrap();
                    if i > 0 {
                        tx.execute("DELETE FROM a WHERE id = $1 - 10", &[&base]).unwrap();
                        tx.execute("UPDATE b SET k = $2 WHERE id = $1 - 10", &[&base, &((rnd(10)) as i32)])
                            .unwrap();
                    }
                    // The stream tables include this transaction's own changes.
                    let bad: i64 = tx.query_one(&differences_sql("j", JOIN_Q), &[]).unwrap().get(0);
                    assert_eq!(bad, 0, "writer {w}, transaction {i}: j is not exact inside the transaction");
                    if rnd(6) == 0 {
                        tx.rollback().unwrap();
                    } else {
                        tx.commit().unwrap();
                    }
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    assert_matches_query(&mut c, "j", JOIN_Q);
    assert_matches_query(&mut c, "g", AGG_Q);
    assert_matches_query(&mut c, "ja", JOIN_AGG_Q);
    let pending: i64 = c
        .query_one("SELECT coalesce(sum(pending_rows), 0)::bigint FROM pgtrickle.change_buffers", &[])
        .unwrap()
        .get(0);
    assert_eq!(pending, 0, "IMMEDIATE-only sources should not fill change buffers");
}

/// Running totals of a two-table join in the stream table's own columns.
const KEYED_TOTALS_Q: &str =
    "SELECT b.k, count(*) AS n, sum(a.id) AS s FROM a JOIN b ON a.k = b.k GROUP BY b.k";

/// A two-table join keyed by both tables' primary keys, and running totals
/// over it: READ COMMITTED
/// statements outside a transaction block share ROW EXCLUSIVE on it and
/// lock the values of `a.k = b.k` they change. Writers of one table share
/// those locks; a writer of the other waits for them, then maintains the
/// join from what they committed (a row of one joined to a new row of the
/// other, which neither would see alone). Past
/// pg_trickle.immediate_key_locks values, or in a transaction block, a
/// writer takes EXCLUSIVE. (A statement is kept open, holding its locks,
/// by a trigger after the stream table's that sleeps.)
#[test]
fn join_writers_wait_only_for_writers_of_the_other_table_with_their_values() {
    let mut c = fresh_db("e2e_immediate_keys", true);
    c.batch_execute(&format!(
        "CREATE TABLE a (id int PRIMARY KEY, k int NOT NULL, v int);
         CREATE TABLE b (id int PRIMARY KEY, k int NOT NULL, w int);
         INSERT INTO a SELECT g, g % 10, g FROM generate_series(1, 50) g;
         INSERT INTO b SELECT g, g % 10, g FROM generate_series(1, 20) g;
         CREATE MATERIALIZED VIEW j WITH (pgtrickle.stream = true, pgtrickle.refresh_mode = 'immediate') AS {JOIN_Q};
         CREATE MATERIALIZED VIEW t WITH (pgtrickle.stream = true, pgtrickle.refresh_mode = 'immediate') AS {KEYED_TOTALS_Q};
         CREATE FUNCTION hold() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN PERFORM pg_sleep(coalesce(current_setting('test.hold', true), '0')::float8); RETURN NULL; END $$;
         CREATE TRIGGER zzz_hold AFTER INSERT OR UPDATE OR DELETE ON a FOR EACH STATEMENT EXECUTE FUNCTION hold();
         CREATE TRIGGER zzz_hold AFTER INSERT OR UPDATE OR DELETE ON b FOR EACH STATEMENT EXECUTE FUNCTION hold();"
    ))
    .unwrap();
    for st in ["j", "t"] {
        let lock = immediate_lock(&mut c, st);
        assert!(
            lock.starts_with("ROW EXCLUSIVE and a lock on each value of public.a.k = public.b.k"),
            "{st}: {lock}"
        );
    }
    let exact = |c: &mut postgres::Client| {
        assert_matches_query(c, "j", JOIN_Q);
        assert_matches_query(c, "t", KEYED_TOTALS_Q);
    };
    let code = |e: &postgres::Error| e.code().map(|c| c.code().to_string()).unwrap_or_default();
    // Run `sql` in the holder's session, kept open 3 s after it
    // maintained j; `during` runs 300 ms in, then the holder finishes.
    // (Each statement sent on its own: several in one query string are a
    // transaction block.)
    let holding = |sql: &'static str, during: &mut dyn FnMut()| {
        let holder = std::thread::spawn(move || {
            let mut holder = connect("e2e_immediate_keys");
            holder.batch_execute("SET test.hold = '3'").unwrap();
            for statement in sql.split("; ") {
                holder.batch_execute(statement).unwrap();
            }
        });
        std::thread::sleep(std::time::Duration::from_millis(300));
        during();
        holder.join().unwrap();
    };
    let mut other = connect("e2e_immediate_keys");
    let fast = |c: &mut postgres::Client, sql: &str| {
        let start = std::time::Instant::now();
        c.batch_execute(sql).unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        assert!(start.elapsed().as_millis() < 1000, "{sql} waited");
    };

    // While a writer of a with value 1 holds its lock: another writer of
    // a (the same value too) and writers of b with other values go on; a
    // writer of b with value 1 waits.
    // (Each statement on its own, outside a transaction block.)
    holding("UPDATE a SET v = v + 1 WHERE id = 1", &mut || {
        other.batch_execute("SET lock_timeout = '200ms'").unwrap();
        let err = other.batch_execute("UPDATE b SET w = w + 1 WHERE k = 1").unwrap_err();
        assert_eq!(code(&err), "55P03", "a writer of b with value 1 should wait: {err:?}");
        other.batch_execute("RESET lock_timeout").unwrap();
        fast(&mut other, "UPDATE a SET v = v + 1 WHERE id = 11");
        fast(&mut other, "INSERT INTO a VALUES (1000, 1, 5)");
        fast(&mut other, "UPDATE b SET w = w + 1 WHERE k = 2");
        fast(&mut other, "INSERT INTO b VALUES (1000, 3, 1)");
        fast(&mut other, "DELETE FROM b WHERE id = 4");
    });
    exact(&mut c);

    // A row of a inserted with value 4: a writer of b's rows with value 4
    // waits for it, then joins them to it; a row of b moved from value 3
    // to 5: a writer of a with 5 waits, with 6 goes on.
    holding("INSERT INTO a VALUES (2000, 4, 7)", &mut || {
        let start = std::time::Instant::now();
        other.batch_execute("UPDATE b SET w = w + 100 WHERE k = 4").unwrap();
        assert!(start.elapsed().as_millis() >= 1500, "a writer of b with value 4 should wait");
    });
    exact(&mut c);
    holding("UPDATE b SET k = 5 WHERE id = 3", &mut || {
        fast(&mut other, "INSERT INTO a VALUES (3000, 6, 1)");
        let start = std::time::Instant::now();
        other.batch_execute("INSERT INTO a VALUES (3001, 5, 1)").unwrap();
        assert!(start.elapsed().as_millis() >= 1500, "a writer of a with value 5 should wait");
    });
    exact(&mut c);

    // Past pg_trickle.immediate_key_locks values, or in a transaction
    // block: EXCLUSIVE, and any other writer waits.
    for sql in [
        "SET pg_trickle.immediate_key_locks = 2; UPDATE a SET v = v + 1 WHERE k IN (7, 8, 9)",
        "BEGIN; UPDATE a SET v = v + 1 WHERE id = 7; COMMIT",
    ] {
        holding(sql, &mut || {
            other.batch_execute("SET lock_timeout = '200ms'").unwrap();
            let err = other.batch_execute("UPDATE a SET v = v + 1 WHERE id = 2").unwrap_err();
            assert_eq!(code(&err), "55P03", "{sql}: {err:?}");
            other.batch_execute("RESET lock_timeout").unwrap();
        });
    }
    exact(&mut c);

    // Eight sessions of single statements on both tables at once, values
    // overlapping: none deadlocks (each statement takes its values in one
    // order), and j is exact at the end.
    let writers: Vec<_> = (0..8)
        .map(|w: i32| {
            std::thread::spawn(move || {
                let mut conn = connect("e2e_immediate_keys");
                let mut rng = Rng(0x0b57_ac1e ^ ((w as u64 + 1) * 0x9e37_79b9));
                let mut rnd = move |n: u64| rng.next(n) as i32;
                for i in 0..40 {
                    let (k, id) = (rnd(10), rnd(50) + 1);
                    // (Rows of several locked in id order: in heap order,
                    // which updates change, two statements could lock
                    // them in opposite orders.)
                    let sql = match rnd(5) {
                        0 => format!("INSERT INTO a VALUES ({}, {k}, {i})", 10_000 + w * 100 + i),
                        1 => format!(
                            "UPDATE a SET k = {k}, v = v + 1 WHERE id IN \
                             (SELECT id FROM a WHERE id IN ({id}, {}) ORDER BY id FOR UPDATE)",
                            id % 7 + 1
                        ),
                        2 => format!("UPDATE b SET w = w + 1, k = {k} WHERE id = {}", id % 20 + 1),
                        3 => format!(
                            "UPDATE b SET w = w + 1 WHERE id IN \
                             (SELECT id FROM b WHERE k IN ({k}, {}) ORDER BY id FOR UPDATE)",
                            (k + 3) % 10
                        ),
                        _ => format!("DELETE FROM a WHERE id = {}", 10_000 + w * 100 + i - 3),
                    };
                    conn.batch_execute(&sql).unwrap_or_else(|e| panic!("writer {w}: {sql}: {e:?}"));
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    exact(&mut c);
}

/// A session that has already written a source (and cached its list of
/// consumers) sees consumers added by another session from its next
/// statement on: a new DIFFERENTIAL consumer gets its changes buffered, a new
/// IMMEDIATE one is maintained.
#[test]
fn consumers_added_by_another_session_are_seen() {
    let mut admin = fresh_db("e2e_consumer_cache", true);
    admin
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY, k int);
             CREATE MATERIALIZED VIEW first WITH (pgtrickle.stream = true, pgtrickle.refresh_mode = 'immediate') AS
               SELECT id, k FROM t;",
        )
        .unwrap();
    let mut writer = connect("e2e_consumer_cache");
    writer.execute("INSERT INTO t VALUES (1, 1)", &[]).unwrap(); // caches [first]
    admin
        .batch_execute(
            "CREATE MATERIALIZED VIEW diff WITH (pgtrickle.stream = true, pgtrickle.refresh_mode = 'differential') AS
               SELECT k, count(*) AS n FROM t GROUP BY k;
             CREATE MATERIALIZED VIEW imm WITH (pgtrickle.stream = true, pgtrickle.refresh_mode = 'immediate') AS
               SELECT id FROM t WHERE k > 1;",
        )
        .unwrap();
    writer.execute("INSERT INTO t VALUES (2, 2), (3, 2)", &[]).unwrap();
    writer.execute("UPDATE t SET k = 3 WHERE id = 1", &[]).unwrap();
    admin.batch_execute("REFRESH MATERIALIZED VIEW diff").unwrap();
    assert_matches_query(&mut admin, "first", "SELECT id, k FROM t");
    assert_matches_query(&mut admin, "diff", "SELECT k, count(*) FROM t GROUP BY k");
    assert_matches_query(&mut admin, "imm", "SELECT id FROM t WHERE k > 1");
    // Switching the IMMEDIATE one to DIFFERENTIAL: the writer's next
    // statements fill the buffer for it.
    admin.batch_execute("ALTER MATERIALIZED VIEW imm SET (pgtrickle.refresh_mode = 'differential')").unwrap();
    writer.execute("INSERT INTO t VALUES (4, 5)", &[]).unwrap();
    admin.batch_execute("REFRESH MATERIALIZED VIEW imm").unwrap();
    assert_matches_query(&mut admin, "imm", "SELECT id FROM t WHERE k > 1");
}

/// REPEATABLE READ and SERIALIZABLE writers of IMMEDIATE sources: they
/// maintain the stream tables like READ COMMITTED ones, and fail with a
/// serialization failure (40001) exactly when a transaction that maintained
/// the same stream table committed after their snapshot.
#[test]
fn repeatable_read_writers_conflict_only_with_unseen_maintainers() {
    let mut c = fresh_db("e2e_immediate_rr", true);
    c.batch_execute(&format!(
        "CREATE TABLE a (id int PRIMARY KEY, k int NOT NULL, v int);
         CREATE TABLE b (id int PRIMARY KEY, k int NOT NULL, w int);
         CREATE TABLE other (id int PRIMARY KEY, v int);
         INSERT INTO a SELECT g, g % 10, g FROM generate_series(1, 100) g;
         INSERT INTO b SELECT g, g % 10, g FROM generate_series(1, 20) g;
         CREATE MATERIALIZED VIEW j WITH (pgtrickle.stream = true, pgtrickle.refresh_mode = 'immediate') AS {JOIN_Q};
         CREATE MATERIALIZED VIEW g WITH (pgtrickle.stream = true, pgtrickle.refresh_mode = 'immediate') AS {AGG_Q};
         CREATE MATERIALIZED VIEW o WITH (pgtrickle.stream = true, pgtrickle.refresh_mode = 'immediate') AS
           SELECT id, v FROM other;"
    ))
    .unwrap();
    let mut rr = connect("e2e_immediate_rr");
    let mut peer = connect("e2e_immediate_rr");
    let code = |e: &postgres::Error| e.code().map(|c| c.code().to_string()).unwrap_or_default();

    // Alone: a REPEATABLE READ writer maintains them, its own changes seen.
    rr.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; INSERT INTO a VALUES (1001, 1, 5); UPDATE b SET k = 2 WHERE id = 1")
        .unwrap();
    let bad: i64 = rr.query_one(&differences_sql("j", JOIN_Q), &[]).unwrap().get(0);
    assert_eq!(bad, 0);
    rr.batch_execute("COMMIT").unwrap();

    for level in ["REPEATABLE READ", "SERIALIZABLE"] {
        // A maintainer of the same stream tables committed after the
        // snapshot: 40001, and the retry succeeds.
        rr.batch_execute(&format!("BEGIN ISOLATION LEVEL {level}; SELECT count(*) FROM a")).unwrap();
        peer.batch_execute("INSERT INTO a VALUES (2001, 3, 7)").unwrap();
        let err = rr.batch_execute("INSERT INTO a VALUES (2002, 3, 8)").unwrap_err();
        assert_eq!(code(&err), "40001", "{level}: {err:?}");
        rr.batch_execute("ROLLBACK").unwrap();
        rr.batch_execute(&format!(
            "BEGIN ISOLATION LEVEL {level}; INSERT INTO a VALUES (2002, 3, 8); COMMIT"
        ))
        .unwrap();
        c.batch_execute("DELETE FROM a WHERE id IN (2001, 2002)").unwrap();

        // A maintainer of another stream table only: no conflict.
        rr.batch_execute(&format!("BEGIN ISOLATION LEVEL {level}; SELECT count(*) FROM a")).unwrap();
        peer.batch_execute("INSERT INTO other VALUES (1, 1)").unwrap();
        rr.batch_execute("INSERT INTO a VALUES (3001, 4, 9); COMMIT").unwrap();
        c.batch_execute("DELETE FROM other; DELETE FROM a WHERE id = 3001").unwrap();

        // A maintainer that rolled back: no conflict.
        rr.batch_execute(&format!("BEGIN ISOLATION LEVEL {level}; SELECT count(*) FROM a")).unwrap();
        peer.batch_execute("BEGIN; INSERT INTO a VALUES (4001, 5, 1); ROLLBACK").unwrap();
        rr.batch_execute("INSERT INTO a VALUES (4002, 5, 2); COMMIT").unwrap();
        c.batch_execute("DELETE FROM a WHERE id = 4002").unwrap();

        // A maintainer still in progress: the writer waits for its lock,
        // then fails once it commits.
        rr.batch_execute(&format!("BEGIN ISOLATION LEVEL {level}; SELECT count(*) FROM a")).unwrap();
        peer.batch_execute("BEGIN; UPDATE a SET v = v + 1 WHERE id = 2").unwrap();
        let (back, result) =
            waits_for(&mut peer, "COMMIT", rr, "UPDATE a SET v = v + 1 WHERE id = 3".into(), None);
        rr = back;
        let err = result.unwrap_err();
        assert_eq!(code(&err), "40001", "{level}, after waiting: {err:?}");
        rr.batch_execute("ROLLBACK").unwrap();
    }
    assert_matches_query(&mut c, "j", JOIN_Q);
    assert_matches_query(&mut c, "g", AGG_Q);
    assert_matches_query(&mut c, "o", "SELECT id, v FROM other");
}

/// Twelve sessions writing both sides of a join at READ COMMITTED,
/// REPEATABLE READ and SERIALIZABLE, retrying serialization failures:
/// every committed transaction saw an exact stream table, and it is exact
/// at the end. The writers insert rows on both sides with the same few
/// join values and change join values, so a REPEATABLE READ writer that
/// missed a concurrent maintainer's commit would leave out the pairs of
/// its new rows with that maintainer's (no row of the stream table is
/// written by both, so PostgreSQL's own row-level checks do not see it).
#[test]
fn mixed_isolation_writers_keep_immediate_stream_tables_exact() {
    let mut c = fresh_db("e2e_immediate_mixed", true);
    c.batch_execute(&format!(
        "CREATE TABLE a (id int PRIMARY KEY, k int NOT NULL, v int);
         CREATE TABLE b (id int PRIMARY KEY, k int NOT NULL, w int);
         CREATE INDEX ON a (k); CREATE INDEX ON b (k);
         INSERT INTO a SELECT g, g % 5, g FROM generate_series(1, 20) g;
         INSERT INTO b SELECT g, g % 5, g FROM generate_series(1, 10) g;
         CREATE MATERIALIZED VIEW j WITH (pgtrickle.stream = true, pgtrickle.refresh_mode = 'immediate') AS {JOIN_Q};"
    ))
    .unwrap();
    let writers: Vec<_> = (0..12)
        .map(|w: i32| {
            std::thread::spawn(move || {
                let mut conn = connect("e2e_immediate_mixed");
                let level = ["READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE"][w as usize % 3];
                let (mut committed, mut retried) = (0, 0);
                for i in 0..10 {
                    let base = 10_000 + w * 1000 + i * 10;
                    loop {
                        let attempt = (|| -> Result<(), postgres::Error> {
                            let mut tx = conn.transaction()?;
                            tx.batch_execute(&format!("SET TRANSACTION ISOLATION LEVEL {level}"))?;
                            tx.query_one("SELECT count(*) FROM a", &[])?; // the snapshot
                            std::thread::sleep(std::time::Duration::from_millis(2));
                            tx.execute("INSERT INTO a VALUES ($1, $2, 1), ($1 + 1, $3, 2)", &[&base, &(i % 5), &((i + w) % 5)])?;
                            tx.execute("INSERT INTO b VALUES ($1, $2, $3)", &[&base, &((w + 2 * i) % 5), &w])?;
                            if i > 0 {
                                tx.execute("UPDATE b SET k = (k + 1) % 5 WHERE id = $1 - 10", &[&base])?;
                            }
                            let bad: i64 = tx
                                .query_one(
                                    &differences_sql("j", JOIN_Q),
                                    &[],
                                )?
                                .get(0);
                            assert_eq!(bad, 0, "writer {w} ({level}), transaction {i}: j is not exact inside the transaction");
                            tx.commit()
                        })();
                        match attempt {
                            Ok(()) => {
                                committed += 1;
                                break;
                            }
                            Err(e) if matches!(e.code().map(|c| c.code()), Some("40001") | Some("40P01")) => {
                                retried += 1;
                                assert!(retried < 500, "writer {w} ({level}) retried too often: {e:?}");
                            }
                            Err(e) => panic!("writer {w} ({level}): {e:?}"),
                        }
                    }
                }
                (level, committed, retried)
            })
        })
        .collect();
    let (mut rr_committed, mut rr_retried) = (0, 0);
    for w in writers {
        let (level, committed, retried) = w.join().unwrap();
        if level != "READ COMMITTED" {
            rr_committed += committed;
            rr_retried += retried;
        }
    }
    assert_eq!(rr_committed, 80, "every REPEATABLE READ and SERIALIZABLE transaction commits in the end");
    assert!(
        rr_retried > 0,
        "no REPEATABLE READ or SERIALIZABLE transaction met a conflict: the test lost its point"
    );
    assert_matches_query(&mut c, "j", JOIN_Q);
}

/// A filter of one table keyed by its primary key: each row of the stream
/// table belongs to one row of the table, so READ COMMITTED writers share
/// a ROW EXCLUSIVE lock on it and do not wait for each other unless they
/// write the same source row (where PostgreSQL's row lock orders them).
const OWNED_Q: &str = "SELECT id, k, v * 2 AS v2 FROM t WHERE v % 3 <> 0";

#[test]
fn writers_of_rows_owned_by_source_rows_do_not_wait_for_each_other() {
    let mut c = fresh_db("e2e_immediate_owned", true);
    c.batch_execute(&format!(
        "CREATE TABLE t (id int PRIMARY KEY, k int, v int);
         INSERT INTO t SELECT g, g % 7, g FROM generate_series(1, 300) g;
         CREATE MATERIALIZED VIEW f WITH (pgtrickle.stream = true, pgtrickle.refresh_mode = 'immediate') AS {OWNED_Q};"
    ))
    .unwrap();
    let lock = immediate_lock(&mut c, "f");
    assert!(lock.starts_with("ROW EXCLUSIVE for READ COMMITTED writers"), "{lock}");
    let code = |e: &postgres::Error| e.code().map(|c| c.code().to_string()).unwrap_or_default();
    let exact = |c: &mut postgres::Client| -> i64 {
        c.query_one(&differences_sql("f", OWNED_Q), &[]).unwrap().get(0)
    };

    // A transaction that maintained f and is still open does not make a
    // writer of other rows wait: updates, inserts, deletes, a key change.
    let mut holder = connect("e2e_immediate_owned");
    let mut other = connect("e2e_immediate_owned");
    holder.batch_execute("BEGIN; UPDATE t SET v = v + 1 WHERE id = 1").unwrap();
    other
        .batch_execute(
            "SET lock_timeout = '5s';
             BEGIN;
             UPDATE t SET v = v + 1 WHERE id = 2;
             INSERT INTO t VALUES (1000, 1, 1), (1001, 2, 3);
             DELETE FROM t WHERE id = 3;
             UPDATE t SET id = 2000, v = 4 WHERE id = 4;",
        )
        .unwrap();
    assert_eq!(exact(&mut other), 0, "f inside the second writer's transaction");
    other.batch_execute("COMMIT").unwrap();
    // A writer of the same row waits for the row, then maintains f from
    // what the first one committed.
    let (mut other, result) = waits_for(
        &mut holder,
        "COMMIT",
        other,
        "UPDATE t SET v = v + 1 WHERE id = 1".into(),
        Some("the second writer of row 1 should wait for the first"),
    );
    result.unwrap();
    assert_matches_query(&mut c, "f", OWNED_Q);

    // A REPEATABLE READ writer takes EXCLUSIVE and fails when a READ
    // COMMITTED maintainer committed after its snapshot, also one it
    // waited for.
    let mut rr = connect("e2e_immediate_owned");
    rr.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM t").unwrap();
    other.batch_execute("UPDATE t SET v = v + 1 WHERE id = 5").unwrap();
    let err = rr.batch_execute("UPDATE t SET v = v + 1 WHERE id = 6").unwrap_err();
    assert_eq!(code(&err), "40001", "{err:?}");
    rr.batch_execute("ROLLBACK; BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM t").unwrap();
    other.batch_execute("BEGIN; UPDATE t SET v = v + 1 WHERE id = 7").unwrap();
    let (mut rr, result) = waits_for(
        &mut other,
        "COMMIT",
        rr,
        "UPDATE t SET v = v + 1 WHERE id = 8".into(),
        Some("the REPEATABLE READ writer should wait for the READ COMMITTED one"),
    );
    assert_eq!(code(&result.unwrap_err()), "40001");
    rr.batch_execute("ROLLBACK").unwrap();
    // Unconflicted, it maintains f.
    rr.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; UPDATE t SET v = v + 1 WHERE id = 8; COMMIT")
        .unwrap();
    assert_matches_query(&mut c, "f", OWNED_Q);

    // Sixteen sessions writing overlapping rows of t at once: updates of
    // values and keys, inserts, deletes, rollbacks; a few at REPEATABLE
    // READ. f is exact inside every transaction and at the end.
    let writers: Vec<_> = (0..16)
        .map(|w: i32| {
            std::thread::spawn(move || {
                let mut conn = connect("e2e_immediate_owned");
                let level = if w % 4 == 3 { "REPEATABLE READ" } else { "READ COMMITTED" };
                let mut rng = Rng(0x5eed_f00d ^ ((w as u64 + 1) * 0x9e37_79b9));
                let mut rnd = move |n: u64| rng.next(n) as i32;
                let mut committed = 0;
                for i in 0..10 {
                    let base = 10_000 + w * 1000 + i * 10;
                    let rows = [rnd(300) + 1, rnd(300) + 1, rnd(300) + 1];
                    let (k, rollback) = (rnd(7), rnd(8) == 0);
                    // (A REPEATABLE READ writer fails while READ COMMITTED
                    // ones keep committing after its snapshot: it retries
                    // until they are done, if need be.)
                    retry_conflicts(&format!("writer {w} ({level})"), || {
                        let mut tx = conn.transaction()?;
                        tx.batch_execute(&format!("SET TRANSACTION ISOLATION LEVEL {level}"))?;
                        tx.execute(
                            "INSERT INTO t SELECT $1 + g, g % 7, g FROM generate_series(0, 3) g",
                            &[&base],
                        )?;
                        tx.execute("UPDATE t SET v = v + 1, k = $2 WHERE id = $1", &[&rows[0], &k])?;
                        tx.execute("DELETE FROM t WHERE id = $1", &[&rows[1]])?;
                        // A key changed (to this writer's range).
                        tx.execute("UPDATE t SET id = $2 + 5 WHERE id = $1", &[&rows[2], &base])?;
                        tx.execute("UPDATE t SET v = v + 1 WHERE id BETWEEN $1 AND $1 + 2", &[&base])?;
                        let bad: i64 = tx.query_one(&differences_sql("f", OWNED_Q), &[])?.get(0);
                        assert_eq!(
                            bad, 0,
                            "writer {w} ({level}), transaction {i}: f is not exact inside the transaction"
                        );
                        if rollback {
                            tx.rollback()
                        } else {
                            tx.commit()
                        }
                    });
                    committed += 1;
                }
                committed
            })
        })
        .collect();
    let committed: i32 = writers.into_iter().map(|w| w.join().unwrap()).sum();
    assert_eq!(committed, 160);
    assert_matches_query(&mut c, "f", OWNED_Q);
}

/// The shared-lock filter read by other stream tables: an IMMEDIATE
/// aggregate over it (maintained inside each writing statement, under its
/// own EXCLUSIVE lock) and a DIFFERENTIAL one (from its change buffer,
/// refreshed meanwhile). Eight sessions write overlapping rows at once;
/// all three are exact at the end.
#[test]
fn readers_of_a_shared_lock_filter_stay_exact() {
    let mut c = fresh_db("e2e_immediate_owned_readers", true);
    c.batch_execute(&format!(
        "CREATE TABLE t (id int PRIMARY KEY, k int, v int);
         INSERT INTO t SELECT g, g % 7, g FROM generate_series(1, 300) g;
         CREATE MATERIALIZED VIEW f WITH (pgtrickle.stream = true, pgtrickle.refresh_mode = 'immediate') AS {OWNED_Q};
         CREATE MATERIALIZED VIEW fi WITH (pgtrickle.stream = true, pgtrickle.refresh_mode = 'immediate') AS
           SELECT k, count(*) AS n, sum(v2) AS s FROM f GROUP BY k;
         CREATE MATERIALIZED VIEW fd WITH (pgtrickle.stream = true, pgtrickle.refresh_mode = 'differential') AS
           SELECT k, count(*) AS n, sum(v2) AS s FROM f GROUP BY k;"
    ))
    .unwrap();
    let lock: String = c
        .query_one(
            "SELECT value FROM pgtrickle.explain_stream_table('f') WHERE property = 'immediate lock'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(lock.starts_with("ROW EXCLUSIVE"), "{lock}");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let refresher = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut conn = connect("e2e_immediate_owned_readers");
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                conn.batch_execute("REFRESH MATERIALIZED VIEW fd").unwrap();
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        })
    };
    let writers: Vec<_> = (0..8)
        .map(|w: i32| {
            std::thread::spawn(move || {
                let mut conn = connect("e2e_immediate_owned_readers");
                let mut rng = Rng(0xfeed_beef ^ ((w as u64 + 1) * 0x9e37_79b9));
                let mut rnd = move |n: u64| rng.next(n) as i32;
                for i in 0..12 {
                    let base = 10_000 + w * 1000 + i * 10;
                    let rows = [rnd(300) + 1, rnd(300) + 1, rnd(300) + 1];
                    let (k, rollback) = (rnd(7), rnd(6) == 0);
                    retry_conflicts(&format!("writer {w}"), || {
                        let mut tx = conn.transaction()?;
                        tx.execute(
                            "INSERT INTO t SELECT $1 + g, g % 7, g FROM generate_series(0, 2) g",
                            &[&base],
                        )?;
                        tx.execute("UPDATE t SET v = v + 1, k = $2 WHERE id = $1", &[&rows[0], &k])?;
                        tx.execute("DELETE FROM t WHERE id = $1", &[&rows[1]])?;
                        tx.execute("UPDATE t SET id = $2 + 5 WHERE id = $1", &[&rows[2], &base])?;
                        if rollback {
                            tx.rollback()
                        } else {
                            tx.commit()
                        }
                    });
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    refresher.join().unwrap();
    c.batch_execute("REFRESH MATERIALIZED VIEW fd").unwrap();
    let agg = format!("SELECT k, count(*) AS n, sum(v2) AS s FROM ({OWNED_Q}) q GROUP BY k");
    assert_matches_query(&mut c, "f", OWNED_Q);
    assert_matches_query(&mut c, "fi", &agg);
    assert_matches_query(&mut c, "fd", &agg);
}

/// Running totals kept in the stream table's own columns over one table
/// (`v` is NOT NULL, so `count(*)` counts its values): each statement adds
/// its own rows to the groups it touches, which commutes, so READ
/// COMMITTED writers share ROW EXCLUSIVE on it and wait only for the
/// writers of the same groups (on their rows' locks).
const ADDED_Q: &str = "SELECT k, count(*) AS n, sum(v) AS s, avg(v) AS a FROM t GROUP BY k";

#[test]
fn writers_adding_to_running_totals_wait_only_for_their_groups() {
    let mut c = fresh_db("e2e_immediate_added", true);
    c.batch_execute(&format!(
        "CREATE TABLE t (id int PRIMARY KEY, k int, v int NOT NULL);
         INSERT INTO t SELECT g, nullif(g % 5, 4), g FROM generate_series(1, 200) g;
         CREATE MATERIALIZED VIEW s WITH (pgtrickle.stream = true, pgtrickle.refresh_mode = 'immediate') AS {ADDED_Q};"
    ))
    .unwrap();
    let lock = immediate_lock(&mut c, "s");
    assert!(lock.starts_with("ROW EXCLUSIVE for READ COMMITTED writers (running totals"), "{lock}");
    let exact = |c: &mut postgres::Client| -> i64 {
        c.query_one(&differences_sql("s", ADDED_Q), &[]).unwrap().get(0)
    };

    // An open transaction that added to group 1 does not make a writer of
    // other groups wait (the NULL group included); a writer of group 1
    // waits for it, then adds to what it committed.
    let mut holder = connect("e2e_immediate_added");
    let mut other = connect("e2e_immediate_added");
    holder.batch_execute("BEGIN; UPDATE t SET v = v + 1 WHERE id = 1").unwrap();
    other
        .batch_execute(
            "SET lock_timeout = '5s';
             UPDATE t SET v = v + 1 WHERE id = 2;
             INSERT INTO t VALUES (1000, 2, 5), (1001, NULL, 7), (1002, 42, 1);
             DELETE FROM t WHERE id = 3;
             UPDATE t SET k = 3 WHERE id = 8;",
        )
        .unwrap();
    let (mut other, result) = waits_for(
        &mut holder,
        "COMMIT",
        other,
        "UPDATE t SET v = v + 10 WHERE id = 6".into(),
        Some("the second writer of group 1 should wait for the first"),
    );
    result.unwrap();
    assert_eq!(exact(&mut c), 0, "s after two writers of group 1");

    // A transaction that empties a group (its row deleted) while another
    // adds to it: the second inserts the group anew once the first
    // commits; and when the first rolls back, adds to the old row.
    c.batch_execute("INSERT INTO t VALUES (2000, 77, 1), (2001, 77, 2), (2002, 78, 3)").unwrap();
    for end in ["COMMIT", "ROLLBACK"] {
        holder.batch_execute("BEGIN; DELETE FROM t WHERE k IN (77, 78)").unwrap();
        let (o, result) = waits_for(
            &mut holder,
            end,
            other,
            "INSERT INTO t SELECT 3000 + g, 77 + g % 2, g FROM generate_series(1, 4) g \
                 ON CONFLICT (id) DO UPDATE SET v = t.v + 1"
                .into(),
            Some(&format!("the writer of groups 77 and 78 should wait ({end})")),
        );
        other = o;
        result.unwrap();
        assert_eq!(exact(&mut c), 0, "s after a group emptied and added to ({end})");
    }

    // Eight sessions each running single statements that move three
    // random rows between the same six groups at once: each statement
    // locks its groups in key order, so none waits for another in a cycle
    // (no deadlock, nothing retried). (The rows of t are locked in id
    // order first: an UPDATE by a scan locks them in the order it meets
    // them, which updates of the heap change, so two UPDATEs of the same
    // rows may deadlock on t itself, stream table or not.)
    let movers: Vec<_> = (0..8)
        .map(|w: i32| {
            std::thread::spawn(move || {
                let mut conn = connect("e2e_immediate_added");
                let mut rng = Rng(0x0dd5_e7e5 ^ ((w as u64 + 1) * 0x9e37_79b9));
                let mut rnd = move |n: u64| rng.next(n) as i32;
                let mut retries = 0;
                for _ in 0..40 {
                    let (rows, k) = ([rnd(200) + 1, rnd(200) + 1, rnd(200) + 1], rnd(5));
                    retries += retry_conflicts(&format!("mover {w}"), || {
                        conn.batch_execute(&format!(
                            "UPDATE t SET v = v + 1, k = CASE WHEN k IS NULL THEN {k} ELSE NULLIF((k + 1) % 6, 5) END \
                             WHERE id IN (SELECT id FROM t WHERE id IN ({}, {}, {}) ORDER BY id FOR UPDATE)",
                            rows[0], rows[1], rows[2]
                        ))
                    });
                }
                retries
            })
        })
        .collect();
    let retries: u32 = movers.into_iter().map(|m| m.join().unwrap()).sum();
    assert_eq!(retries, 0, "single statements adding to the same groups deadlocked");
    assert_eq!(exact(&mut c), 0, "s after the single statements");

    // Sixteen sessions writing rows of the same groups at once in
    // transactions of several statements: inserts, updates of values and
    // of groups, deletes, rollbacks; a few at REPEATABLE READ (EXCLUSIVE).
    // s is exact inside every transaction and at the end. (Two such
    // transactions touching the same groups in opposite orders may
    // deadlock, as with any rows they both update: retried.)
    let writers: Vec<_> = (0..16)
        .map(|w: i32| {
            std::thread::spawn(move || {
                let mut conn = connect("e2e_immediate_added");
                let level = if w % 4 == 3 { "REPEATABLE READ" } else { "READ COMMITTED" };
                let mut rng = Rng(0xadd5_0f7e ^ ((w as u64 + 1) * 0x9e37_79b9));
                let mut rnd = move |n: u64| rng.next(n) as i32;
                for i in 0..10 {
                    let base = 10_000 + w * 1000 + i * 10;
                    let rows = [rnd(200) + 1, rnd(200) + 1];
                    let (k, rollback) = (rnd(6), rnd(8) == 0);
                    retry_conflicts(&format!("writer {w} ({level})"), || {
                        let mut tx = conn.transaction()?;
                        tx.batch_execute(&format!("SET TRANSACTION ISOLATION LEVEL {level}"))?;
                        tx.execute(
                            "INSERT INTO t SELECT $1 + g, nullif(g % 6, 5), g FROM generate_series(0, 3) g",
                            &[&base],
                        )?;
                        tx.execute(
                            "UPDATE t SET v = v + 1, k = nullif($2, 5) WHERE id = $1",
                            &[&rows[0], &k],
                        )?;
                        tx.execute("DELETE FROM t WHERE id = $1", &[&rows[1]])?;
                        tx.execute("UPDATE t SET v = v * 2 WHERE id BETWEEN $1 AND $1 + 2", &[&base])?;
                        let bad: i64 = tx.query_one(&differences_sql("s", ADDED_Q), &[])?.get(0);
                        assert_eq!(
                            bad, 0,
                            "writer {w} ({level}), transaction {i}: s is not exact inside the transaction"
                        );
                        if rollback {
                            tx.rollback()
                        } else {
                            tx.commit()
                        }
                    });
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    assert_matches_query(&mut c, "s", ADDED_Q);
}
