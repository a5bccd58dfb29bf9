//! IMMEDIATE maintenance under concurrency: many sessions writing both
//! sides of a join and the source of an aggregate at once; after every
//! commit the stream tables are exact, and at the end too. No deadlocks.

use crate::{assert_matches_query, connect, fresh_db};

const JOIN_Q: &str = "SELECT a.id, b.id AS bid, a.v, b.w FROM a JOIN b ON a.k = b.k";
const AGG_Q: &str = "SELECT k, count(*) AS n, sum(v) AS s FROM a GROUP BY k";
/// Running totals of a join: each statement adds its rows joined to the
/// other table as the writers before it (serialized by the stream table's
/// lock) left it.
const JOIN_AGG_Q: &str =
    "SELECT b.k, count(*) AS n, sum(a.v * b.w) AS s FROM a JOIN b ON a.k = b.k GROUP BY b.k";

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
                let mut seed: u64 = 0xdead_beef ^ ((w as u64 + 1) * 0x9e37_79b9);
                let mut rnd = move |n: u64| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed % n
                };
                for i in 0..8 {
                    let base = 10_000 + w * 1000 + i * 10;
                    let mut tx = conn.transaction().unwrap();
                    tx.execute("INSERT INTO a SELECT $1 + g, (g + $1) % 10, g FROM generate_series(0, 3) g", &[&base])
                        .unwrap();
                    tx.execute("INSERT INTO b VALUES ($1, $2, $3)", &[&base, &((rnd(10)) as i32), &w]).unwrap();
                    tx.execute("UPDATE a SET k = (k + 1) % 10, v = v + 1 WHERE id = $1 + 1", &[&base]).unwrap();
                    if i > 0 {
                        tx.execute("DELETE FROM a WHERE id = $1 - 10", &[&base]).unwrap();
                        tx.execute("UPDATE b SET k = $2 WHERE id = $1 - 10", &[&base, &((rnd(10)) as i32)]).unwrap();
                    }
                    // The stream tables include this transaction's own changes.
                    let bad: i64 = tx
                        .query_one(
                            &format!(
                                "SELECT count(*) FROM ((TABLE j EXCEPT ALL ({JOIN_Q})) UNION ALL (({JOIN_Q}) EXCEPT ALL TABLE j)) x"
                            ),
                            &[],
                        )
                        .unwrap()
                        .get(0);
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
