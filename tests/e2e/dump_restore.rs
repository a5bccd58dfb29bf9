//! pg_dump / pg_restore round-trip: stream tables come back as stream tables
//! with the same definition and settings, populated (or not) as before, and
//! keep working.

use crate::{assert_matches_query, connect, fresh_db, port, rows, run};

// (Inner stream tables are named after their stream table's OID: a
// restore has its own, checked apart.)
const SETTINGS: &str = "SELECT schema, name, query, requested_mode, refresh_mode, schedule, populated \
                        FROM pgtrickle.stream_tables WHERE schema <> 'pgtrickle_state'";
const SOURCES: &str =
    "SELECT relid::regclass::text, source_relid::regclass::text FROM pgtrickle.pgt_sources \
                       WHERE relid::regclass::text NOT LIKE 'pgtrickle\\_state.%' ORDER BY 1, 2";
const RELOPTIONS: &str = "SELECT c.relname, c.reloptions FROM pg_class c \
                          WHERE c.relkind = 'm' AND c.relnamespace <> 'pgtrickle_state'::regnamespace";

fn build_source(db: &str) {
    let mut c = fresh_db(db, true);
    c.batch_execute(
        "CREATE TABLE orders (id int PRIMARY KEY, region text, amount numeric);
         INSERT INTO orders SELECT g, 'r' || (g % 5), g * 1.5 FROM generate_series(1, 200) g;
         CREATE SCHEMA reports;
         CREATE MATERIALIZED VIEW reports.by_region
           WITH (pgtrickle.stream = true, pgtrickle.refresh_mode = 'full', pgtrickle.schedule = '*/5 * * * *') AS
           SELECT region, sum(amount) AS total, count(*) AS n FROM orders GROUP BY region;
         CREATE UNIQUE INDEX by_region_key ON reports.by_region (region);
         ALTER MATERIALIZED VIEW reports.by_region SET (fillfactor = 80);
         CREATE MATERIALIZED VIEW big WITH (pgtrickle.stream = true) AS
           SELECT id, amount FROM orders WHERE amount > 250;
         CREATE MATERIALIZED VIEW never_filled WITH (pgtrickle.stream = true, pgtrickle.refresh_mode = 'full') AS
           SELECT count(*) AS n FROM orders WITH NO DATA;
         CREATE MATERIALIZED VIEW explicit_diff
           WITH (pgtrickle.stream = true, pgtrickle.refresh_mode = 'differential') AS
           SELECT id, region FROM orders WHERE id > 100;
         CREATE MATERIALIZED VIEW imm WITH (pgtrickle.stream = true, pgtrickle.refresh_mode = 'immediate') AS
           SELECT region, count(*) AS n FROM orders GROUP BY region;
         CREATE MATERIALIZED VIEW plain_mv AS SELECT max(id) AS m FROM orders;
         CREATE MATERIALIZED VIEW top_region WITH (pgtrickle.stream = true) AS
           WITH t AS (SELECT region, sum(amount) AS total FROM orders GROUP BY region)
           SELECT region, total FROM t WHERE total = (SELECT max(total) FROM t);",
    )
    .unwrap();
}

fn check_restored(src: &str, dst: &str) {
    let mut a = connect(src);
    let mut b = connect(dst);
    assert_eq!(rows(&mut a, SETTINGS), rows(&mut b, SETTINGS), "stream table settings differ");
    assert_eq!(rows(&mut a, RELOPTIONS), rows(&mut b, RELOPTIONS), "reloptions differ");
    assert_eq!(rows(&mut b, SETTINGS).len(), 6);
    // The inner stream table of top_region, left out of the dump, was
    // created again by its first refresh.
    let inner = "SELECT refresh_mode, query FROM pgtrickle.stream_tables WHERE schema = 'pgtrickle_state'";
    assert_eq!(rows(&mut a, inner), rows(&mut b, inner));
    assert_eq!(rows(&mut b, inner).len(), 1);
    assert!(rows(&mut b, "SELECT 1 FROM pgtrickle.pgt_stream_tables WHERE relid = 'plain_mv'::regclass")
        .is_empty());
    for st in ["reports.by_region", "big"] {
        assert_eq!(
            rows(&mut a, &format!("SELECT * FROM {st}")),
            rows(&mut b, &format!("SELECT * FROM {st}"))
        );
    }
    // Sources are recorded again, and the dependency on the extension too.
    assert_eq!(rows(&mut a, SOURCES), rows(&mut b, SOURCES));
    let deps: i64 = b
        .query_one(
            "SELECT count(*) FROM pg_depend WHERE refclassid = 'pg_extension'::regclass \
               AND classid = 'pg_class'::regclass AND deptype = 'n'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(deps, 6);
    // Change capture is rebuilt for the stream table that consumes changes.
    assert_eq!(
        rows(
            &mut b,
            "SELECT relid::regclass::text FROM pgtrickle.pgt_stream_tables \
              WHERE consumes_changes AND relid::regclass::text NOT LIKE 'pgtrickle\\_state.%' ORDER BY 1"
        ),
        ["(big)", "(explicit_diff)", "(imm)", "(top_region)"].map(String::from).to_vec()
    );
    // (The four capture triggers, and the BEFORE STATEMENT one that tracks
    // statements for imm's IMMEDIATE running totals.)
    assert_eq!(
        rows(&mut b, "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'orders'::regclass AND tgisinternal"),
        vec!["(5)".to_string()]
    );
    // Still working: change the source, refresh, compare with the query.
    b.batch_execute(
        "INSERT INTO orders VALUES (1000, 'new', 1); DELETE FROM orders WHERE id < 50;
         REFRESH MATERIALIZED VIEW reports.by_region; REFRESH MATERIALIZED VIEW big;
         REFRESH MATERIALIZED VIEW never_filled; REFRESH MATERIALIZED VIEW explicit_diff;
         REFRESH MATERIALIZED VIEW top_region;",
    )
    .unwrap();
    assert_matches_query(
        &mut b,
        "reports.by_region",
        "SELECT region, sum(amount), count(*) FROM orders GROUP BY region",
    );
    // The restored key index is the stream table's own, not the dumped copy.
    assert_eq!(
        rows(&mut b, "SELECT count(*) FROM pg_indexes WHERE tablename = 'big'"),
        vec!["(1)".to_string()]
    );
    assert_eq!(
        rows(&mut b, "SELECT refresh_mode FROM pgtrickle.stream_tables WHERE name = 'big'"),
        vec!["(differential)".to_string()]
    );
    assert_matches_query(&mut b, "big", "SELECT id, amount FROM orders WHERE amount > 250");
    assert_matches_query(&mut b, "never_filled", "SELECT count(*) FROM orders");
    assert_matches_query(&mut b, "explicit_diff", "SELECT id, region FROM orders WHERE id > 100");
    // The IMMEDIATE one followed the changes above without a refresh.
    assert_matches_query(&mut b, "imm", "SELECT region, count(*) FROM orders GROUP BY region");
    assert_matches_query(
        &mut b,
        "top_region",
        "WITH t AS (SELECT region, sum(amount) AS total FROM orders GROUP BY region)
         SELECT region, total FROM t WHERE total = (SELECT max(total) FROM t)",
    );
    assert_eq!(
        rows(
            &mut b,
            "SELECT mode, message LIKE 'recomputed over its inner stream tables pgtrickle\\_state.inner\\_%' \
               FROM pgtrickle.refresh_history('top_region', 1)"
        ),
        vec!["(full,t)".to_string()]
    );
}

#[test]
fn plain_sql_dump_round_trip() {
    build_source("e2e_dump_src_plain");
    let file = std::env::temp_dir().join("pgt_e2e_dump.sql");
    let p = port().to_string();
    let f = file.to_str().unwrap();
    run("pg_dump", &["-h", "127.0.0.1", "-p", &p, "-U", "postgres", "-f", f, "e2e_dump_src_plain"]);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("\"pgtrickle.stream\"='true'"), "dump does not carry the stream table options");
    assert!(
        !text.contains("pgt_stream_tables VALUES") && !text.contains("COPY pgtrickle."),
        "catalog rows were dumped"
    );
    assert!(
        !text.contains("pgt_capture") && !text.contains("pgtrickle_changes."),
        "change capture was dumped"
    );
    assert!(!text.contains("pgtrickle_state."), "an inner stream table or running totals were dumped");
    fresh_db("e2e_dump_dst_plain", false);
    run(
        "psql",
        &[
            "-h",
            "127.0.0.1",
            "-p",
            &p,
            "-U",
            "postgres",
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            "e2e_dump_dst_plain",
            "-f",
            f,
        ],
    );
    check_restored("e2e_dump_src_plain", "e2e_dump_dst_plain");
}

#[test]
fn custom_format_dump_round_trip() {
    build_source("e2e_dump_src_custom");
    let file = std::env::temp_dir().join("pgt_e2e_dump.custom");
    let p = port().to_string();
    let f = file.to_str().unwrap();
    run("pg_dump", &["-h", "127.0.0.1", "-p", &p, "-U", "postgres", "-Fc", "-f", f, "e2e_dump_src_custom"]);
    fresh_db("e2e_dump_dst_custom", false);
    run(
        "pg_restore",
        &[
            "-h",
            "127.0.0.1",
            "-p",
            &p,
            "-U",
            "postgres",
            "--single-transaction",
            "--exit-on-error",
            "-d",
            "e2e_dump_dst_custom",
            f,
        ],
    );
    check_restored("e2e_dump_src_custom", "e2e_dump_dst_custom");
}
