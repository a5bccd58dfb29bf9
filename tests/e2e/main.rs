//! End-to-end tests against a running PostgreSQL 18 with pg_trickle
//! preloaded. `scripts/test.sh` starts the server and sets PGT_TEST_PORT and
//! PGT_PREFIX; each test works in a database of its own.

mod capture;
mod dump_restore;
mod immediate;
mod jdbc;
mod oracle;
mod protocol;
mod scheduler;
mod tpch;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use postgres::{Client, NoTls};

pub fn port() -> u16 {
    std::env::var("PGT_TEST_PORT")
        .expect("PGT_TEST_PORT is not set: run the end-to-end tests through `make test`")
        .parse()
        .expect("PGT_TEST_PORT is not a port number")
}

pub fn bin(name: &str) -> PathBuf {
    let prefix = std::env::var("PGT_PREFIX").expect("PGT_PREFIX is not set: run through `make test`");
    PathBuf::from(prefix).join("bin").join(name)
}

pub fn connect(db: &str) -> Client {
    Client::connect(&format!("host=127.0.0.1 port={} user=postgres dbname={db}", port()), NoTls)
        .unwrap_or_else(|e| panic!("connect to {db}: {e}"))
}

/// A new, empty database (dropped first if a previous run left it).
pub fn fresh_db(name: &str, with_extension: bool) -> Client {
    let mut admin = connect("postgres");
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).unwrap();
    admin.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
    let mut c = connect(name);
    if with_extension {
        c.batch_execute("CREATE EXTENSION pg_trickle").unwrap();
    }
    c
}

/// Run a PostgreSQL client program; panic with its output if it fails.
pub fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(bin(program)).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Rows of a query rendered as text, sorted, for comparisons.
pub fn rows(c: &mut Client, sql: &str) -> Vec<String> {
    let mut out: Vec<String> = c
        .query(&format!("SELECT t::text FROM ({sql}) t"), &[])
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect();
    out.sort();
    out
}

/// The statement counting the rows by which stream table `st` and a fresh
/// run of `query` differ, as multisets (`EXCEPT ALL` both ways).
pub fn differences_sql(st: &str, query: &str) -> String {
    format!("SELECT count(*) FROM ((SELECT * FROM {st} EXCEPT ALL ({query})) UNION ALL (({query}) EXCEPT ALL SELECT * FROM {st})) d")
}

/// The stream table equals a fresh run of `query`, as a multiset.
pub fn assert_matches_query(c: &mut Client, st: &str, query: &str) {
    let diff: i64 = c.query_one(&differences_sql(st, query), &[]).unwrap().get(0);
    assert_eq!(diff, 0, "{st} differs from its query");
}

/// A small seeded generator (xorshift), for reproducible generated writes.
pub struct Rng(pub u64);

impl Rng {
    /// A number below `n` (0 for `n` = 0).
    pub fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next(100) < percent
    }
    /// A number below `n` as SQL, NULL one time in eight or so.
    pub fn nullable(&mut self, n: u64) -> String {
        if self.chance(12) {
            "NULL".into()
        } else {
            self.next(n).to_string()
        }
    }
}

/// Run `attempt` (a whole transaction) until it succeeds, retrying, as an
/// application would, while it fails with a serialization failure (40001)
/// or a deadlock (40P01); panic, naming `what`, on any other error or when
/// it still fails after two minutes. Returns the number of retries.
pub fn retry_conflicts(what: &str, mut attempt: impl FnMut() -> Result<(), postgres::Error>) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut retries = 0;
    loop {
        match attempt() {
            Ok(()) => return retries,
            Err(e) if matches!(e.code().map(|c| c.code()), Some("40001") | Some("40P01")) => {
                assert!(Instant::now() < deadline, "{what}: still failing after two minutes: {e:?}");
                retries += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => panic!("{what}: {e:?}"),
        }
    }
}
