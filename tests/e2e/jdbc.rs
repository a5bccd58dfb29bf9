//! A JDBC client (pgjdbc, extended protocol) applying versioned migrations the
//! way Flyway does: each file in one transaction. Stream tables are created,
//! altered, renamed, refreshed and dropped; a failing migration leaves nothing.

use std::path::Path;
use std::process::Command;

use crate::{assert_matches_query, fresh_db, port, rows};

const JDBC_JAR: &str = "/usr/share/java/postgresql.jar";

fn compile_runner() -> std::path::PathBuf {
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/jdbc");
    std::fs::create_dir_all(&out).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/jdbc/MigrationRunner.java");
    let status = Command::new("javac")
        .args(["-cp", JDBC_JAR, "-d", out.to_str().unwrap(), src.to_str().unwrap()])
        .status()
        .expect("javac (install default-jdk-headless: make setup does)");
    assert!(status.success(), "javac failed");
    out
}

fn migrate(classes: &Path, dir: &str) -> (bool, String) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/jdbc").join(dir);
    let out = Command::new("java")
        .args([
            "-cp",
            &format!("{JDBC_JAR}:{}", classes.display()),
            "MigrationRunner",
            &format!("jdbc:postgresql://127.0.0.1:{}/e2e_jdbc", port()),
            "postgres",
            dir.to_str().unwrap(),
        ])
        .output()
        .expect("java");
    (
        out.status.success(),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    )
}

#[test]
fn flyway_style_migrations() {
    let classes = compile_runner();
    let mut c = fresh_db("e2e_jdbc", false);
    let (ok, log) = migrate(&classes, "migrations");
    assert!(ok, "migrations failed:\n{log}");
    assert_eq!(
        rows(&mut c, "SELECT name, refresh_mode, schedule FROM pgtrickle.stream_tables"),
        vec!["(big_orders,full,)".to_string(), "(region_sales,full,1m)".to_string()]
    );
    assert_eq!(
        rows(&mut c, "SELECT reloptions FROM pg_class WHERE relname = 'region_sales'"),
        vec!["(\"{fillfactor=90,pgtrickle.stream=true,pgtrickle.refresh_mode=full,pgtrickle.schedule=1m}\")"
            .to_string()]
    );
    assert_matches_query(
        &mut c,
        "region_sales",
        "SELECT region, sum(amount), count(*) FROM orders GROUP BY region",
    );
    assert!(rows(&mut c, "SELECT 1 FROM pg_class WHERE relname = 'doomed'").is_empty());

    // Running again applies nothing; a failing migration rolls back whole.
    let (ok, log) = migrate(&classes, "migrations");
    assert!(ok && !log.contains("applied"), "second run was not a no-op:\n{log}");
    let (ok, log) = migrate(&classes, "failing");
    assert!(!ok && log.contains("FAILED V6__fails_midway.sql: 22012"), "unexpected:\n{log}");
    assert!(rows(&mut c, "SELECT 1 FROM pg_class WHERE relname = 'half_done'").is_empty());
    assert_eq!(
        rows(&mut c, "SELECT name, schedule FROM pgtrickle.stream_tables"),
        vec!["(big_orders,)".to_string(), "(region_sales,1m)".to_string()]
    );
    assert_eq!(rows(&mut c, "SELECT max(version) FROM migration_history"), vec!["(5)".to_string()]);
}
