//! What the scheduler refreshes on a tick, and in which order. Pure Rust: the
//! scheduler loads one [`Candidate`] per stream table, [`plan`] decides.
//!
//! Rules:
//! - IMMEDIATE stream tables are always current; suspended ones (`status`
//!   not `active`) and ones waiting out a retry backoff are left alone.
//! - A duration schedule is due once the last refresh is that old and there
//!   is something to apply (pending changes, a needed full refresh, or a
//!   FULL stream table, whose changes nobody counts). `'0s'` therefore means
//!   "as soon as changes commit".
//! - A cron schedule is due once a firing time has passed since the last
//!   refresh.
//! - A scheduled stream table read by a due stream table is refreshed
//!   first, in the same tick, whatever its own schedule (`'calculated'`
//!   schedules get refreshed only this way), unless it is DIFFERENTIAL with
//!   nothing to apply. A DIFFERENTIAL stream table whose upstream stream
//!   table is refreshed in the tick counts as having something to apply.
//!   Stream tables without a schedule are refreshed only by hand. With every upstream refreshed right before
//!   its readers, a stream table reading two others that share a source (a
//!   diamond) sees both at the same point in time.
//! - A stream table waits while a scheduled stream table it reads (directly
//!   or not) cannot be refreshed: failing and waiting to retry, suspended,
//!   or on a cycle. It would otherwise combine its sources from different
//!   points in time.
//! - The order is topological (sources first); stream tables on a cycle
//!   (possible only by replacing a view after the fact) are reported, not
//!   refreshed.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};

use super::schedule::Schedule;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Full,
    Differential,
    Immediate,
}

/// One stream table as the scheduler sees it. Times are Unix milliseconds.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub relid: u32,
    pub mode: Mode,
    pub schedule: Option<Schedule>,
    pub active: bool,
    /// Committed changes not applied yet (DIFFERENTIAL), or a full refresh
    /// needed.
    pub pending: bool,
    pub last_refresh_ms: Option<i64>,
    /// Not before this time (backoff after a failure).
    pub retry_at_ms: Option<i64>,
    /// Stream tables this one reads.
    pub upstream: Vec<u32>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Stream tables to refresh now, sources first.
    pub order: Vec<u32>,
    /// When something becomes due next without new changes (Unix ms).
    pub next_wake_ms: Option<i64>,
    /// Stream tables that are part of a dependency cycle.
    pub cycles: Vec<Vec<u32>>,
}

fn earliest(a: Option<i64>, b: i64) -> Option<i64> {
    Some(a.map_or(b, |a| a.min(b)))
}

/// Is `c` due by its own schedule at `now`? Also returns when it will be.
fn own_due(c: &Candidate, now: i64) -> (bool, Option<i64>) {
    if c.mode == Mode::Immediate || !c.active {
        return (false, None);
    }
    if let Some(at) = c.retry_at_ms {
        if at > now {
            return (false, Some(at));
        }
    }
    match &c.schedule {
        None | Some(Schedule::Calculated) => (false, None),
        Some(Schedule::Every(every)) => {
            let has_work = c.pending || c.mode == Mode::Full || c.last_refresh_ms.is_none();
            let every = i64::try_from(every.as_millis()).unwrap_or(i64::MAX);
            match c.last_refresh_ms {
                Some(last) if last.saturating_add(every) > now => {
                    (false, has_work.then(|| last.saturating_add(every)))
                }
                _ => (has_work, None),
            }
        }
        Some(Schedule::Cron(spec)) => {
            let last_s = c.last_refresh_ms.map_or(now / 1000 - 60, |l| l.div_euclid(1000));
            match spec.next_after(last_s) {
                Some(fire_s) if fire_s * 1000 <= now => (true, None),
                Some(fire_s) => (false, Some(fire_s * 1000)),
                None => (false, None),
            }
        }
    }
}

pub fn plan(candidates: &[Candidate], now_ms: i64) -> Plan {
    let mut graph = DiGraph::<u32, ()>::new();
    let mut index: BTreeMap<u32, NodeIndex> = BTreeMap::new();
    for c in candidates {
        index.insert(c.relid, graph.add_node(c.relid));
    }
    for c in candidates {
        for up in &c.upstream {
            if let (Some(&from), Some(&to)) = (index.get(up), index.get(&c.relid)) {
                graph.add_edge(from, to, ());
            }
        }
    }
    let by_relid: BTreeMap<u32, &Candidate> = candidates.iter().map(|c| (c.relid, c)).collect();

    // Strongly connected components come out in reverse topological order.
    let mut cycles = Vec::new();
    let mut on_cycle = BTreeSet::new();
    let mut topo = Vec::new();
    for scc in tarjan_scc(&graph).into_iter().rev() {
        let self_loop = scc.len() == 1 && graph.contains_edge(scc[0], scc[0]);
        if scc.len() > 1 || self_loop {
            let mut members: Vec<u32> = scc.iter().map(|&n| graph[n]).collect();
            members.sort_unstable();
            on_cycle.extend(members.iter().copied());
            cycles.push(members);
        } else {
            topo.push(graph[scc[0]]);
        }
    }

    // In topological order: a stream table has work when it has changes
    // to apply, is FULL, or reads a scheduled stream table that has work
    // (which will be refreshed first). It is blocked while a scheduled
    // stream table it reads, directly or not, cannot be refreshed (failing
    // and waiting to retry, suspended, on a cycle): refreshed alone, it
    // would combine its sources from different points in time.
    let waiting = |u: &Candidate| u.retry_at_ms.is_some_and(|at| at > now_ms);
    let eligible = |u: &Candidate| {
        u.mode != Mode::Immediate
            && u.active
            && !waiting(u)
            && u.schedule.is_some()
            && !on_cycle.contains(&u.relid)
    };
    let mut work: BTreeSet<u32> = BTreeSet::new();
    let mut blocked: BTreeSet<u32> = on_cycle.clone();
    let mut due: BTreeSet<u32> = BTreeSet::new();
    let mut next_wake = None;
    for relid in &topo {
        let Some(&c) = by_relid.get(relid) else { continue };
        let ups: Vec<&Candidate> = c.upstream.iter().filter_map(|u| by_relid.get(u).copied()).collect();
        if ups.iter().any(|u| {
            blocked.contains(&u.relid) || (u.schedule.is_some() && u.mode != Mode::Immediate && !eligible(u))
        }) {
            blocked.insert(*relid);
            if let Some(at) = ups.iter().filter_map(|u| u.retry_at_ms).filter(|&at| at > now_ms).min() {
                next_wake = earliest(next_wake, at);
            }
            continue;
        }
        let has_work =
            c.pending || c.mode == Mode::Full || ups.iter().any(|u| eligible(u) && work.contains(&u.relid));
        if has_work {
            work.insert(*relid);
        }
        let (is_due, at) = own_due(&Candidate { pending: has_work, ..c.clone() }, now_ms);
        if let Some(at) = at {
            next_wake = earliest(next_wake, at);
        }
        if is_due {
            due.insert(*relid);
        }
    }
    // Add what the due stream tables read (if it has work), transitively.
    let mut chosen = due.clone();
    let mut stack: Vec<u32> = due.iter().copied().collect();
    while let Some(relid) = stack.pop() {
        for up in by_relid.get(&relid).map(|c| c.upstream.as_slice()).unwrap_or(&[]) {
            let Some(u) = by_relid.get(up) else { continue };
            if eligible(u) && work.contains(up) && chosen.insert(*up) {
                stack.push(*up);
            }
        }
    }
    Plan { order: topo.into_iter().filter(|r| chosen.contains(r)).collect(), next_wake_ms: next_wake, cycles }
}

/// Should commits that write change buffers wake the scheduler? Only when
/// some active stream table has a duration schedule shorter than the idle
/// interval (otherwise the next idle look is soon enough).
pub fn wants_commit_wake(candidates: &[Candidate], idle_ms: i64) -> bool {
    candidates.iter().any(|c| {
        c.active
            && c.mode != Mode::Immediate
            && matches!(&c.schedule, Some(Schedule::Every(d)) if (d.as_millis() as i64) < idle_ms)
    })
}

/// Wait before retrying after `failures` consecutive failures: 1 s, 2 s,
/// 4 s, … capped at 5 minutes.
pub fn backoff(failures: i32) -> Duration {
    let exp = failures.clamp(1, 20) as u32 - 1;
    Duration::from_secs((1u64 << exp).min(300))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(relid: u32, mode: Mode, schedule: Option<&str>) -> Candidate {
        Candidate {
            relid,
            mode,
            schedule: schedule.map(|s| Schedule::parse(s).unwrap()),
            active: true,
            pending: false,
            last_refresh_ms: Some(0),
            retry_at_ms: None,
            upstream: vec![],
        }
    }

    #[test]
    fn durations_need_age_and_work() {
        let mut a = st(1, Mode::Differential, Some("10s"));
        assert_eq!(plan(&[a.clone()], 20_000).order, Vec::<u32>::new(), "nothing pending");
        a.pending = true;
        assert_eq!(
            plan(&[a.clone()], 5_000),
            Plan { order: vec![], next_wake_ms: Some(10_000), cycles: vec![] }
        );
        assert_eq!(plan(&[a.clone()], 10_000).order, vec![1]);
        let zero = Candidate { schedule: Some(Schedule::parse("0s").unwrap()), ..a.clone() };
        assert_eq!(plan(&[zero], 1).order, vec![1], "'0s' refreshes as soon as changes commit");
        let full = st(2, Mode::Full, Some("10s"));
        assert_eq!(plan(&[full], 10_000).order, vec![2], "FULL has no change count: refresh on age");
        let manual = Candidate { schedule: None, ..a.clone() };
        assert!(plan(&[manual], 1_000_000).order.is_empty());
        let imm = Candidate { mode: Mode::Immediate, ..a.clone() };
        assert!(plan(&[imm], 1_000_000).order.is_empty());
        let suspended = Candidate { active: false, ..a.clone() };
        assert!(plan(&[suspended], 1_000_000).order.is_empty());
        let backing_off = Candidate { retry_at_ms: Some(50_000), ..a };
        assert_eq!(plan(std::slice::from_ref(&backing_off), 20_000).next_wake_ms, Some(50_000));
        assert_eq!(plan(&[backing_off], 50_000).order, vec![1]);
    }

    #[test]
    fn cron_fires_once_per_time() {
        let mut c = st(1, Mode::Full, Some("*/5 * * * *"));
        c.last_refresh_ms = Some(61_000);
        let p = plan(&[c.clone()], 200_000);
        assert_eq!(p, Plan { order: vec![], next_wake_ms: Some(300_000), cycles: vec![] });
        assert_eq!(plan(&[c.clone()], 300_000).order, vec![1]);
        c.last_refresh_ms = Some(300_500);
        assert_eq!(plan(&[c], 400_000).order, Vec::<u32>::new());
    }

    #[test]
    fn upstream_first_and_diamond_together() {
        // A -> B, A -> C, B,C -> D; only D is due.
        let mut a = st(1, Mode::Differential, Some("1h"));
        a.pending = true;
        let mut b = st(2, Mode::Full, Some("calculated"));
        b.upstream = vec![1];
        let mut c = st(3, Mode::Full, Some("1h"));
        c.upstream = vec![1];
        let mut d = st(4, Mode::Full, Some("1s"));
        d.upstream = vec![2, 3];
        let p = plan(&[d.clone(), c.clone(), b.clone(), a.clone()], 5_000);
        assert_eq!(p.order.len(), 4);
        let pos = |r: u32| p.order.iter().position(|&x| x == r).unwrap();
        assert!(pos(1) < pos(2) && pos(1) < pos(3) && pos(2) < pos(4) && pos(3) < pos(4), "{:?}", p.order);
        // A DIFFERENTIAL upstream with nothing pending is left alone.
        let mut a_current = a.clone();
        a_current.pending = false;
        let p = plan(&[d.clone(), c.clone(), b.clone(), a_current], 5_000);
        assert!(!p.order.contains(&1) && p.order.len() == 3, "{:?}", p.order);
        // Nothing due: a calculated stream table alone is never refreshed.
        d.schedule = Some(Schedule::parse("1h").unwrap());
        assert!(plan(&[d, c, b, a], 5_000).order.is_empty());
    }

    #[test]
    fn cycles_are_reported_and_skipped() {
        let mut a = st(1, Mode::Full, Some("1s"));
        a.upstream = vec![2];
        let mut b = st(2, Mode::Full, Some("1s"));
        b.upstream = vec![1];
        let c = st(3, Mode::Full, Some("1s"));
        let p = plan(&[a, b, c], 10_000);
        assert_eq!(p.order, vec![3]);
        assert_eq!(p.cycles, vec![vec![1, 2]]);
    }

    #[test]
    fn backoff_doubles_to_a_cap() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(4));
        assert_eq!(backoff(30), Duration::from_secs(300));
    }

    #[test]
    fn commit_wake_only_for_short_schedules() {
        let fast = st(1, Mode::Differential, Some("0s"));
        let slow = st(2, Mode::Differential, Some("5m"));
        assert!(wants_commit_wake(&[slow.clone(), fast.clone()], 1000));
        assert!(!wants_commit_wake(std::slice::from_ref(&slow), 1000));
        assert!(!wants_commit_wake(&[Candidate { active: false, ..fast }], 1000));
        assert!(!wants_commit_wake(&[st(3, Mode::Full, Some("@hourly"))], 1000));
    }

    #[test]
    fn an_upstream_refreshed_now_gives_its_readers_work() {
        // a (pending) -> b (differential, nothing pending yet, due by age)
        let mut a = st(1, Mode::Differential, Some("0s"));
        a.pending = true;
        let mut b = st(2, Mode::Differential, Some("1s"));
        b.upstream = vec![1];
        assert_eq!(plan(&[b.clone(), a.clone()], 5_000).order, vec![1, 2]);
        // A diamond of differential stream tables under a FULL reader:
        // everything in between is refreshed with it.
        let mut c = st(3, Mode::Differential, Some("calculated"));
        c.upstream = vec![1];
        let mut b2 = st(2, Mode::Differential, Some("calculated"));
        b2.upstream = vec![1];
        let mut d = st(4, Mode::Full, Some("1s"));
        d.upstream = vec![2, 3];
        let p = plan(&[d, c, b2, a], 5_000);
        assert_eq!(p.order.len(), 4, "{:?}", p.order);
        assert_eq!(p.order[0], 1);
        assert_eq!(p.order[3], 4);
    }

    #[test]
    fn a_calculated_upstream_with_changes_makes_its_reader_due() {
        // u (calculated, changes pending) -> d (differential, 1s, nothing
        // pending itself): d is due because u has work, and u goes first.
        let mut u = st(1, Mode::Differential, Some("calculated"));
        u.pending = true;
        let mut d = st(2, Mode::Differential, Some("1s"));
        d.upstream = vec![1];
        assert_eq!(plan(&[d.clone(), u.clone()], 5_000).order, vec![1, 2]);
        u.pending = false;
        assert!(plan(&[d, u], 5_000).order.is_empty());
    }

    #[test]
    fn readers_wait_for_an_upstream_that_cannot_be_refreshed() {
        let mut a = st(1, Mode::Differential, Some("0s"));
        a.pending = true;
        a.retry_at_ms = Some(9_000);
        let mut b = st(2, Mode::Full, Some("1s"));
        b.upstream = vec![1];
        let mut c = st(3, Mode::Full, Some("1s"));
        c.upstream = vec![2];
        let p = plan(&[a.clone(), b.clone(), c.clone()], 5_000);
        assert!(p.order.is_empty(), "{:?}", p.order);
        assert_eq!(p.next_wake_ms, Some(9_000));
        a.retry_at_ms = None;
        a.active = false;
        assert!(plan(&[a.clone(), b.clone(), c.clone()], 5_000).order.is_empty());
        // A manual upstream is read as it is.
        a.active = true;
        a.schedule = None;
        assert_eq!(plan(&[a, b, c], 5_000).order, vec![2, 3]);
    }
}
