//! Stream table DDL over the extended query protocol (rust-postgres prepares
//! every statement), inside explicit transactions, and concurrent refreshes.

use crate::{assert_matches_query, connect, fresh_db};

#[test]
fn ddl_over_extended_protocol_and_rollback() {
    let mut c = fresh_db("e2e_protocol", true);
    c.execute("CREATE TABLE t (k int, v int)", &[]).unwrap();
    c.execute("INSERT INTO t SELECT g % 7, g FROM generate_series(1, 100) g", &[]).unwrap();
    // A transaction that creates, alters, refreshes and rolls back.
    {
        let mut tx = c.transaction().unwrap();
        tx.execute(
            "CREATE MATERIALIZED VIEW st WITH (pgtrickle.stream = true, pgtrickle.refresh_mode = 'full') \
             AS SELECT k, sum(v) AS s FROM t GROUP BY k",
            &[],
        )
        .unwrap();
        tx.execute("ALTER MATERIALIZED VIEW st SET (pgtrickle.schedule = '10s')", &[]).unwrap();
        tx.execute("REFRESH MATERIALIZED VIEW st", &[]).unwrap();
        let n: i64 = tx.query_one("SELECT count(*) FROM pgtrickle.pgt_stream_tables", &[]).unwrap().get(0);
        assert_eq!(n, 1);
        tx.rollback().unwrap();
    }
    let n: i64 = c.query_one("SELECT count(*) FROM pgtrickle.pgt_stream_tables", &[]).unwrap().get(0);
    assert_eq!(n, 0);
    assert!(c
        .query_opt("SELECT to_regclass('st')::text", &[])
        .unwrap()
        .unwrap()
        .get::<_, Option<String>>(0)
        .is_none());

    // The same, committed; functions with bound parameters.
    let mut tx = c.transaction().unwrap();
    tx.execute(
        "SELECT pgtrickle.create_stream_table($1, $2, $3, $4)",
        &[&"st", &"SELECT k, sum(v) AS s FROM t GROUP BY k", &"full", &"1m"],
    )
    .unwrap();
    tx.commit().unwrap();
    c.execute("INSERT INTO t VALUES (100, 1)", &[]).unwrap();
    let rows: i64 = c.query_one("SELECT pgtrickle.refresh_stream_table($1)", &[&"st"]).unwrap().get(0);
    assert_eq!(rows, 8);
    assert_matches_query(&mut c, "st", "SELECT k, sum(v) FROM t GROUP BY k");
    c.execute("SELECT pgtrickle.alter_stream_table($1, schedule => $2)", &[&"st", &""]).unwrap();
    let schedule: Option<String> =
        c.query_one("SELECT schedule FROM pgtrickle.stream_tables", &[]).unwrap().get(0);
    assert_eq!(schedule, None);
    c.execute("SELECT pgtrickle.drop_stream_table($1)", &[&"st"]).unwrap();
}

#[test]
fn concurrent_refreshes_serialize_and_stay_exact() {
    let mut c = fresh_db("e2e_concurrent", true);
    c.batch_execute(
        "CREATE TABLE t (k int, v int);
         INSERT INTO t SELECT g % 10, g FROM generate_series(1, 10000) g;
         CREATE MATERIALIZED VIEW st WITH (pgtrickle.stream = true, pgtrickle.refresh_mode = 'full') AS
           SELECT k, sum(v) AS s, count(*) AS n FROM t GROUP BY k;",
    )
    .unwrap();
    let handles: Vec<_> = (0..4)
        .map(|i| {
            std::thread::spawn(move || {
                let mut w = connect("e2e_concurrent");
                for j in 0..10 {
                    w.execute("INSERT INTO t VALUES ($1, $2)", &[&(i * 100 + j), &j]).unwrap();
                    w.batch_execute("REFRESH MATERIALIZED VIEW st").unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    c.batch_execute("REFRESH MATERIALIZED VIEW st").unwrap();
    assert_matches_query(&mut c, "st", "SELECT k, sum(v), count(*) FROM t GROUP BY k");
    let ok: i64 = c
        .query_one("SELECT count(*) FROM pgtrickle.pgt_refresh_history WHERE outcome = 'ok'", &[])
        .unwrap()
        .get(0);
    assert_eq!(ok, 42, "1 initial population + 40 concurrent + 1 final refresh");
}
