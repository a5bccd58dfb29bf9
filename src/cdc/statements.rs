//! Statements in progress on sources, for IMMEDIATE running totals over
//! joins.
//!
//! Running totals over a join add, for each statement, the statement's
//! rows joined to the other tables as they are now. That is exact when the
//! other tables' changes so far have all been added: then the sum of the
//! deltas telescopes to the change of the join. It is not when one
//! statement writes several sources and their capture triggers fire one
//! after the other with every change already in the tables: a
//! data-modifying CTE writing both sides of the join (both AFTER STATEMENT
//! triggers fire at the end), a row trigger on one source writing another
//! (the nested statement's trigger fires first, with the outer statement's
//! rows already written), an IMMEDIATE stream table handing its changes to
//! a reader that also reads the table written. Each delta then sees the
//! other's rows, and their product is counted twice.
//!
//! So every source also carries a BEFORE STATEMENT trigger
//! (`pgtrickle._statement_start()`, no SQL, no privileges) that records
//! the statement as pending until its capture trigger has maintained its
//! consumers. A stream table kept from running totals over a join that is
//! to be maintained while another of its sources has a statement pending
//! is marked instead, skips the deltas, and is recomputed whole (its rows
//! and its totals) as soon as none of its sources has a statement pending,
//! at the end of the last such capture. That costs a recomputation, only
//! for such statements; every other plan recomputes affected keys from the
//! tables as they are, which is exact in any order.
//!
//! The records live in backend memory and follow the transaction: a
//! statement that fails takes its record with it (subtransaction abort),
//! and a transaction's end clears them.

use std::cell::RefCell;

use pgrx::pg_sys;

/// A statement started and not finished.
struct Pending {
    /// The table it writes, then the partitioned tables above it (a
    /// statement naming a partition fires only the partition's triggers).
    relations: Vec<u32>,
    subtransaction: pg_sys::SubTransactionId,
    /// Whether another statement was pending at some time while it was.
    overlapping: bool,
    /// The trigger depth and the command it started at (see
    /// [`inside_pending`]).
    depth: i32,
    command: pg_sys::CommandId,
}

impl Pending {
    fn on(&self, source: u32) -> bool {
        self.relations.contains(&source)
    }
}

thread_local! {
    /// Statements started and not finished.
    static PENDING: RefCell<Vec<Pending>> = const { RefCell::new(Vec::new()) };
    /// The tables (as in [`Pending::relations`]) whose capture trigger is
    /// running, innermost last, with their subtransaction.
    static CAPTURING: RefCell<Vec<(Vec<u32>, pg_sys::SubTransactionId)>> = const { RefCell::new(Vec::new()) };
    /// Stream tables to recompute once their sources have no statement
    /// pending: (stream table, its sources).
    static DIRTY: RefCell<Vec<(u32, Vec<u32>)>> = const { RefCell::new(Vec::new()) };
}

/// Register the transaction callbacks. Called from `_PG_init`.
pub fn init() {
    crate::worker::sys::register_xact_callback(on_xact_event);
    // SAFETY: registering a static callback, as extensions do from
    // _PG_init; the argument is unused.
    unsafe { pg_sys::RegisterSubXactCallback(Some(on_subxact_event), std::ptr::null_mut()) };
}

/// A statement on `relations` (the table it writes, then the
/// partitioned tables above it) starts (its BEFORE STATEMENT trigger).
pub fn started(relations: &[pg_sys::Oid]) {
    // SAFETY: reads the current subtransaction's id.
    let subtransaction = unsafe { pg_sys::GetCurrentSubTransactionId() };
    PENDING.with(|p| {
        let mut p = p.borrow_mut();
        let overlapping = !p.is_empty();
        for entry in p.iter_mut() {
            entry.overlapping = true;
        }
        p.push(Pending {
            relations: relations.iter().map(|r| r.to_u32()).collect(),
            subtransaction,
            overlapping,
            depth: trigger_depth(),
            // SAFETY: reads the current command id, without using it.
            command: unsafe { pg_sys::GetCurrentCommandId(false) },
        });
    });
}

/// Is the statement on `source` whose capture is running the only one
/// that was pending from its start to now? Then no other statement on a
/// table with the BEFORE STATEMENT trigger ran or was maintained in
/// between (see `dvm::inserted`). False when its own start was not
/// recorded (the trigger missing).
pub fn alone(source: pg_sys::Oid) -> bool {
    let id = source.to_u32();
    PENDING.with(|p| matches!(p.borrow().as_slice(), [only] if !only.overlapping && only.on(id)))
}

/// The capture trigger of a statement on table `relid` begins. (Its
/// relations are those its start recorded: the partitioned tables above a
/// partition too; `relid` alone when its start was not recorded.)
pub fn capturing(relid: pg_sys::Oid) {
    // SAFETY: reads the current subtransaction's id.
    let sub = unsafe { pg_sys::GetCurrentSubTransactionId() };
    let id = relid.to_u32();
    let relations = PENDING
        .with(|p| {
            p.borrow().iter().rev().find(|e| e.relations.first() == Some(&id)).map(|e| e.relations.clone())
        })
        .unwrap_or_else(|| vec![id]);
    CAPTURING.with(|c| c.borrow_mut().push((relations, sub)));
}

/// The capture trigger of a statement on table `relid` has maintained
/// its consumers: the statement is no longer pending. Returns the stream
/// tables now due for their recomputation.
pub fn captured(relid: pg_sys::Oid) -> Vec<pg_sys::Oid> {
    let id = relid.to_u32();
    CAPTURING.with(|c| {
        let mut c = c.borrow_mut();
        if let Some(i) = c.iter().rposition(|(r, _)| r.first() == Some(&id)) {
            c.remove(i);
        }
    });
    PENDING.with(|p| {
        let mut p = p.borrow_mut();
        if let Some(i) = p.iter().rposition(|e| e.relations.first() == Some(&id)) {
            p.remove(i);
        }
    });
    let due: Vec<u32> = DIRTY.with(|d| {
        let mut d = d.borrow_mut();
        let (due, waiting): (Vec<_>, Vec<_>) =
            d.drain(..).partition(|(_, sources)| !any_pending(sources, None));
        *d = waiting;
        due.into_iter().map(|(st, _)| st).collect()
    });
    due.into_iter().map(pg_sys::Oid::from).collect()
}

/// Does one of `sources` have a statement pending (other than `running`,
/// the one whose delta is being added)?
fn any_pending(sources: &[u32], running: Option<u32>) -> bool {
    PENDING.with(|p| {
        let p = p.borrow();
        sources.iter().any(|s| {
            let n = p.iter().filter(|e| e.on(*s)).count();
            let own = usize::from(running == Some(*s));
            n > own
        })
    })
}

/// Before adding the delta of a statement on `source` to the running
/// totals of `st` (over a join of `sources`): false when it must not,
/// because `st` is already due for a recomputation or one of its sources
/// has another statement pending (then it is marked for one).
pub fn may_add_delta(st: pg_sys::Oid, source: pg_sys::Oid, sources: &[pg_sys::Oid]) -> bool {
    let id = st.to_u32();
    if DIRTY.with(|d| d.borrow().iter().any(|(s, _)| *s == id)) {
        return false;
    }
    let sources: Vec<u32> = sources.iter().map(|s| s.to_u32()).collect();
    // (The statement whose capture runs is pending until it ends: not
    // counted when the delta is its own, counted when the delta comes
    // from a stream table its capture maintained.)
    let source = source.to_u32();
    let running = CAPTURING
        .with(|c| c.borrow().last().map(|(r, _)| r.contains(&source)))
        .unwrap_or(false)
        .then_some(source);
    if !any_pending(&sources, running) {
        return true;
    }
    DIRTY.with(|d| d.borrow_mut().push((id, sources)));
    false
}

/// Before applying the rows of the statement whose capture runs to `st`
/// (over `sources`) as changes that must come in the order they were made
/// (a multiset of changed rows, whose apply cannot delete a copy not added
/// yet; running totals with a min or max, which take an added value as the
/// new extreme even when a later statement deleted it): false when it must
/// not, because `st` is already due for a recomputation or the statement
/// was run by a trigger of another statement on one of `sources` still
/// pending (then it is marked for one). Such a statement (a row trigger
/// deleting rows its statement inserted) is maintained before the one
/// that fired it. Statements of one query level (an `INSERT ... ON
/// CONFLICT`'s insert and update, data-modifying WITH queries) change
/// different rows: they may come in any order.
pub fn may_apply_nested(st: pg_sys::Oid, sources: &[pg_sys::Oid]) -> bool {
    if is_due(st) {
        return false;
    }
    if !inside_pending(sources) {
        return true;
    }
    recompute_later(st, sources);
    false
}

/// Was the statement whose capture runs started by a trigger or a
/// function of a statement on one of `sources` that is still pending: one
/// that started at a lower trigger depth than this capture runs at, or in
/// an earlier command than this statement (a statement run by a function
/// or trigger of another gets a command of its own once that one has
/// written a row; an `INSERT ... ON CONFLICT`'s insert and update, and
/// data-modifying WITH queries, share their query's)?
fn inside_pending(sources: &[pg_sys::Oid]) -> bool {
    let depth = trigger_depth();
    let sources: Vec<u32> = sources.iter().map(|s| s.to_u32()).collect();
    let running = CAPTURING.with(|c| c.borrow().last().and_then(|(r, _)| r.first().copied()));
    PENDING.with(|p| {
        let p = p.borrow();
        let own = p.iter().rposition(|e| e.relations.first().copied() == running);
        let command = own.map(|i| p[i].command);
        p.iter().enumerate().any(|(i, e)| {
            Some(i) != own
                && sources.iter().any(|s| e.on(*s))
                && (e.depth < depth || command.is_some_and(|c| e.command < c))
        })
    })
}

/// The current trigger depth (`pg_trigger_depth()`): 1 in a trigger fired
/// by a statement of the client, 2 in one fired by a statement that
/// trigger ran, and so on.
fn trigger_depth() -> i32 {
    // SAFETY: pg_trigger_depth takes no argument and only reads a backend
    // global.
    unsafe { pgrx::direct_function_call::<i32>(pg_sys::pg_trigger_depth, &[]) }.unwrap_or(0)
}

/// Mark `st` (over `sources`) for a recomputation once none of its sources
/// has a statement pending (at the end of the capture that ends the last
/// one); until then no delta is added to it.
pub fn recompute_later(st: pg_sys::Oid, sources: &[pg_sys::Oid]) {
    let id = st.to_u32();
    DIRTY.with(|d| {
        let mut d = d.borrow_mut();
        if !d.iter().any(|(s, _)| *s == id) {
            d.push((id, sources.iter().map(|s| s.to_u32()).collect()));
        }
    });
}

/// Is `st` marked for a recomputation (see [`recompute_later`])?
pub fn is_due(st: pg_sys::Oid) -> bool {
    let id = st.to_u32();
    DIRTY.with(|d| d.borrow().iter().any(|(s, _)| *s == id))
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn on_xact_event(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    match event {
        pg_sys::XactEvent::XACT_EVENT_COMMIT
        | pg_sys::XactEvent::XACT_EVENT_ABORT
        | pg_sys::XactEvent::XACT_EVENT_PREPARE
        | pg_sys::XactEvent::XACT_EVENT_PARALLEL_COMMIT
        | pg_sys::XactEvent::XACT_EVENT_PARALLEL_ABORT => {
            PENDING.with(|p| p.borrow_mut().clear());
            CAPTURING.with(|c| c.borrow_mut().clear());
            DIRTY.with(|d| d.borrow_mut().clear());
            crate::refresh::immediate::transaction_end(matches!(
                event,
                pg_sys::XactEvent::XACT_EVENT_ABORT | pg_sys::XactEvent::XACT_EVENT_PARALLEL_ABORT
            ));
        }
        _ => {}
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn on_subxact_event(
    event: pg_sys::SubXactEvent::Type,
    sub: pg_sys::SubTransactionId,
    _parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    if event == pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB {
        // Statements of the aborted subtransaction will not finish, and a
        // capture that was running in it has unwound. (A stream table
        // marked in it keeps its mark: rolled back to its state before,
        // it is recomputed once more than needed.)
        PENDING.with(|p| p.borrow_mut().retain(|e| e.subtransaction != sub));
        CAPTURING.with(|c| c.borrow_mut().retain(|(_, s)| *s != sub));
        crate::refresh::immediate::subtransaction_abort();
    }
}
