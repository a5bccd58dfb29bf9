//! IMMEDIATE maintenance: a stream table brought up to date by the statement
//! that changed its source, inside the writing transaction.
//!
//! Called from the capture trigger (`cdc::capture`) while the statement's
//! transition tables are registered with SPI. The same key-recompute rule as
//! DIFFERENTIAL applies (`dvm::key_recompute`), with the transition tables
//! as the window: the affected keys are read from the old and new rows of
//! the statement, and those keys are recomputed from the query on the
//! statement's view of the sources (its own changes included).
//!
//! Locking: the stream table is locked in ExclusiveLock (readers are not
//! blocked) until the writing transaction ends, so concurrent writers of its
//! sources maintain it one after the other (READ COMMITTED writers share a
//! weaker lock where that is exact: see `lock_mode`); under READ COMMITTED each
//! recomputation takes a fresh snapshot after the lock, so it sees the
//! changes of the writer that held the lock before. REPEATABLE READ and
//! SERIALIZABLE transactions keep one snapshot: they fail with a
//! serialization failure when a maintainer committed after it was taken
//! (`refresh::isolation`; see docs/IMMEDIATE.md).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::refresh::window::with_window;

use crate::catalog::sys;
use crate::cdc::transition;
use crate::cdc::triggers::{NEW_TABLE, OLD_TABLE};
use crate::dvm::algebraic::{self, ChangeRows};
use crate::dvm::analysis;
use crate::dvm::key_recompute::{self, KeyValues};
use crate::error::{PgtError, PgtResult};

/// Which transition tables the firing statement has.
#[derive(Clone, Copy, Debug)]
pub struct Transition {
    pub old: bool,
    pub new: bool,
}

impl Transition {
    /// `select(action, table)` over the statement's old rows (`'D'`, the
    /// old transition table) and new rows (`'I'`, the new one), those it
    /// has, joined by UNION ALL; None when it has neither.
    fn union_all(self, select: impl Fn(&str, &str) -> String) -> Option<String> {
        let mut parts = Vec::new();
        if self.old {
            parts.push(select("'D'", OLD_TABLE));
        }
        if self.new {
            parts.push(select("'I'", NEW_TABLE));
        }
        (!parts.is_empty()).then(|| parts.join(" UNION ALL "))
    }
}

/// What IMMEDIATE maintenance of one stream table needs, built once per
/// backend and kept until a relcache invalidation of the stream table or a
/// source (see `cdc::capture`), which also covers REFRESH … WITH NO DATA and
/// changes of mode.
struct Prepared {
    populated: bool,
    plan: analysis::Plan,
    /// Per table reference: each of its key columns' value in a row of
    /// the reference's table under alias `b` (its column, or the GROUP BY
    /// expression it is).
    key_names: Vec<Vec<String>>,
    owner: pg_sys::Oid,
    /// The apply statement, prepared with parameters (see
    /// `key_recompute::apply_sql_with_params`); none for a UNION ALL, whose
    /// multiset apply is planned for each statement's keys.
    apply: Option<pgrx::spi::OwnedPreparedStatement>,
    /// (quoted name, SQL type) of each key column, per table reference.
    shape: Vec<Vec<(String, String)>>,
    /// The stream table's key columns (the unique index, ON CONFLICT target).
    conflict_keys: Vec<String>,
    /// Running totals: the statements adding a statement's rows to them and
    /// applying the affected groups from them.
    totals: Option<Totals>,
    /// A filter of a table without a key: the statement applying changed
    /// rows.
    keyless: Option<Keyless>,
    /// Rows keyed by their tables' primary keys: per source, the query of
    /// the rows an INSERT into it adds, from its new rows alone
    /// (dvm::inserted), kept prepared once run; its rows are inserted as
    /// COPY does (refresh::bulk).
    inserted: Vec<(pg_sys::Oid, String, RefCell<Option<super::bulk::BulkQuery>>)>,
    /// Running totals over slices: per source, the statement adding a
    /// statement's rows to them (returning the groups touched), written and
    /// prepared at the first statement on that source (also when they are
    /// the stream table's own columns).
    over_rows: RefCell<HashMap<u32, Rc<PerTransition>>>,
    /// Running totals of one table in the stream table's own columns: the
    /// statement adding a statement's rows to them (no rows captured).
    in_place: PerTransition,
    /// Per key group (table reference), the statement reading the affected
    /// key values from a statement's rows; per table reference followed
    /// along `=` conditions, the one reading its joined column's values.
    /// Kept, as their text depends only on the kinds of rows.
    key_reads: Vec<PerTransition>,
    followed_reads: RefCell<HashMap<u32, Rc<PerTransition>>>,
}

impl Prepared {
    /// The kept statement adding the rows of a statement on `source` to
    /// running totals over slices.
    fn over_rows(&self, source: pg_sys::Oid) -> Rc<PerTransition> {
        self.over_rows
            .borrow_mut()
            .entry(source.to_u32())
            .or_insert_with(|| Rc::new(PerTransition::default()))
            .clone()
    }
}

struct Keyless {
    /// Applies the statement's changed rows (see [`PerTransition`]).
    apply: PerTransition,
}

struct Totals {
    /// Adds the statement's changed rows to the totals, returning the
    /// groups it touched (algebraic::returning_groups).
    upsert: PerTransition,
    /// The groups' key columns (algebraic::key_columns).
    keys: Vec<(String, String)>,
    /// Recomputes the extremes of groups whose kept extreme was deleted.
    rescan: Option<pgrx::spi::OwnedPreparedStatement>,
    apply: pgrx::spi::OwnedPreparedStatement,
}

/// A statement reading the firing statement's transition tables in place,
/// one for each kind of statement (old rows, new rows, both) and for each
/// table whose row type they have (a partition's columns may lie at other
/// positions than its parent's), prepared when first needed in a
/// connection where they are registered.
#[derive(Default)]
struct PerTransition(RefCell<HashMap<(bool, bool, u32), pgrx::spi::OwnedPreparedStatement>>);

impl PerTransition {
    /// Run the statement for `transition`, written by `sql` the first time.
    fn run(
        &self,
        transition: Transition,
        sql: impl FnOnce(ChangeRows) -> PgtResult<String>,
    ) -> PgtResult<()> {
        self.run_reading(transition, sql, |_| Ok(()))
    }

    /// [`PerTransition::run`], returning the statement's first row as text.
    fn first_row(
        &self,
        transition: Transition,
        sql: impl FnOnce(ChangeRows) -> PgtResult<String>,
    ) -> PgtResult<Vec<Option<String>>> {
        self.run_reading(transition, sql, |table| {
            Ok(sys::text_rows(table)?.into_iter().next().unwrap_or_default())
        })
    }

    fn run_reading<R>(
        &self,
        transition: Transition,
        sql: impl FnOnce(ChangeRows) -> PgtResult<String>,
        read: impl FnOnce(pgrx::spi::SpiTupleTable<'_>) -> PgtResult<R>,
    ) -> PgtResult<R> {
        self.run_limited(transition, sql, None, read)
    }

    /// [`PerTransition::run_reading`], reading at most `limit` rows.
    fn run_limited<R>(
        &self,
        transition: Transition,
        sql: impl FnOnce(ChangeRows) -> PgtResult<String>,
        limit: Option<i64>,
        read: impl FnOnce(pgrx::spi::SpiTupleTable<'_>) -> PgtResult<R>,
    ) -> PgtResult<R> {
        let key = (transition.old, transition.new, crate::cdc::transition::current_relid().to_u32());
        crate::cdc::transition::connect(|c| {
            if !self.0.borrow().contains_key(&key) {
                let text = sql(ChangeRows::Transition { old: transition.old, new: transition.new })?;
                let statement = c.prepare_mut(text.as_str(), &[])?.keep();
                self.0.borrow_mut().insert(key, statement);
            }
            let kept = self.0.borrow();
            let statement =
                kept.get(&key).ok_or_else(|| PgtError::Internal("statement not prepared".into()))?;
            let table = c.update(statement, limit, &[])?;
            read(table)
        })
    }
}

thread_local! {
    static PREPARED: RefCell<HashMap<u32, Rc<Prepared>>> = RefCell::new(HashMap::new());
    /// Whether each IMMEDIATE stream table is kept over inner stream
    /// tables (dvm::nested::over_inners), as decided until [`forget`].
    static OVER_INNERS: RefCell<HashMap<u32, bool>> = RefCell::new(HashMap::new());
    /// How READ COMMITTED writers may share each IMMEDIATE stream table
    /// (see [`lock_mode`]), as decided until [`forget`].
    static SHARING: RefCell<HashMap<u32, Sharing>> = RefCell::new(HashMap::new());
    /// Key locks this transaction took (see [`KeyLocks`]).
    static KEYS_LOCKED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    /// Whether a preparation created or dropped a state table in the
    /// current transaction.
    static STATE_CHANGED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Drop every kept preparation (with the capture trigger's own cache).
pub fn forget() {
    PREPARED.with(|p| p.borrow_mut().clear());
    OVER_INNERS.with(|o| o.borrow_mut().clear());
    SHARING.with(|o| o.borrow_mut().clear());
}

/// The lock a statement's maintenance of `relid` takes, held until the
/// transaction ends (docs/IMMEDIATE.md, "Locking and concurrent writers").
///
/// EXCLUSIVE makes the maintainers of a stream table follow one another,
/// each reading the sources after the one before committed. A READ
/// COMMITTED statement takes only ROW EXCLUSIVE (which writers share) in
/// two cases ([`SharedLock`]).
///
/// When every row of the stream table is owned by one source row: a filter and
/// projection of one ordinary table keyed by its primary key, checked at
/// once (not DEFERRABLE), no subquery reading a table
/// ([`analysis::Plan::one_row_per_source_row`]). Then a statement
/// maintains only the rows of the keys it changed, old and new, and no
/// other transaction can change a row with one of those keys until it
/// ends: an `UPDATE` or `DELETE` holds the row's lock, and an `INSERT` (or
/// a key updated to a new value) holds the key in the primary key's unique
/// index, where any other writer of that key waits for it. Two writers
/// thus never maintain the same rows of the stream table concurrently,
/// and a writer that waited for another reads (on its new snapshot) what
/// that one committed. REPEATABLE READ and SERIALIZABLE writers keep
/// EXCLUSIVE: they read on their transaction's snapshot, which the check
/// of `refresh::isolation` validates against every maintainer before them.
///
/// When the stream table's rows are running totals kept in its own columns
/// over one table (`algebraic::adds_concurrently`): a statement adds to
/// each group it touches what its own rows (the transition tables) add, a
/// sum that reads nothing else, by `INSERT ... ON CONFLICT DO UPDATE SET n
/// = o.n + EXCLUDED.n`. Two writers touching one group follow one another
/// on its row's lock, and the second adds to the row the first committed
/// (READ COMMITTED's `ON CONFLICT` locks and updates the latest version,
/// and inserts anew if the first deleted the group, left empty, which it
/// deletes only while its count is 0 under its own lock). Additions
/// commute, so the totals are exact in any order. Each statement writes
/// its groups in key order, so two statements never wait for each other's
/// groups in a cycle (two multi-statement transactions touching the same
/// groups in opposite orders can, as with any row they both update:
/// PostgreSQL then cancels one with a deadlock error).
///
/// Over an inner join of two tables (rows keyed by their primary keys, or
/// running totals added to as above), a READ COMMITTED statement outside a
/// transaction block takes ROW EXCLUSIVE and a lock on each value of the
/// join's key its rows had or have ([`KeyLocks`]), in a mode per table that
/// conflicts with the other table's and not its own. Every row of the
/// stream table joins one row of each table with one value: two writers
/// that could touch it both changed one of those rows, so they are writers
/// of the same row (ordered by its row lock or primary key, as above), or
/// of the two tables with that value, which wait for each other's lock; the
/// second then reads, on its new snapshot, what the first committed (the
/// pairs of one's rows with the other's, which neither would see alone).
///
/// Decided from the plan before the lock is taken: the plan depends on the
/// stream table's query, fixed for its life, and on the source's primary
/// key, which cannot change while the firing statement holds its lock on
/// the source.
fn lock_mode(relid: pg_sys::Oid) -> PgtResult<Sharing> {
    if !super::isolation::read_committed() {
        return Ok(Sharing::Exclusive);
    }
    remembered(&SHARING, relid, |relid| match analysis::analyze(relid)? {
        Ok(plan) => sharing(relid, &plan),
        Err(_) => Ok(Sharing::Exclusive),
    })
}

/// How READ COMMITTED writers share the stream table `relid` with `plan`
/// (see [`lock_mode`]; `explain_stream_table` shows it).
pub fn sharing(relid: pg_sys::Oid, plan: &analysis::Plan) -> PgtResult<Sharing> {
    if let Some(why) = shared_lock(relid, plan)? {
        return Ok(Sharing::RowExclusive(why));
    }
    Ok(match KeyLocks::of(relid, plan)? {
        Some(keys) => Sharing::PerKey(Rc::new(keys)),
        None => Sharing::Exclusive,
    })
}

/// Take the lock a statement on `source` maintaining `relid` takes, held
/// until the transaction ends (see [`lock_mode`]); returns whether it is
/// shared with other writers (not EXCLUSIVE).
fn lock(relid: pg_sys::Oid, source: pg_sys::Oid, transition: Transition) -> PgtResult<bool> {
    let keys = match lock_mode(relid)? {
        Sharing::Exclusive => None,
        Sharing::RowExclusive(_) => {
            sys::lock_relation(relid, pg_sys::RowExclusiveLock);
            return Ok(true);
        }
        // (Not in a transaction block: its statements would lock their
        // values batch after batch, and two such transactions could wait
        // for each other's. A statement on its own takes its values in one
        // order, all at once.)
        Sharing::PerKey(locks) if !sys::in_transaction_block() => locks.values(source, transition)?,
        Sharing::PerKey(_) => None,
    };
    let Some(keys) = keys else {
        sys::lock_relation(relid, pg_sys::ExclusiveLock);
        return Ok(false);
    };
    sys::lock_relation(relid, pg_sys::RowExclusiveLock);
    for (key, mode) in keys {
        if sys::lock_key(relid, key, mode) {
            KEYS_LOCKED.with(|n| n.set(n.get() + 1));
        }
    }
    Ok(true)
}

/// How READ COMMITTED writers share a stream table (see [`lock_mode`]).
#[derive(Clone)]
pub enum Sharing {
    Exclusive,
    /// ROW EXCLUSIVE, and why (see [`SharedLock`]).
    RowExclusive(SharedLock),
    /// ROW EXCLUSIVE and a lock per join key value (see [`KeyLocks`]).
    PerKey(Rc<KeyLocks>),
}

/// The locks on join key values a writer of a two-table inner join takes
/// (see [`lock_mode`]).
pub struct KeyLocks {
    /// Per table reference of the join, in order: its table, its key
    /// column (quoted) and the function hashing its values. A writer of
    /// the first locks its values in ROW EXCLUSIVE mode, of the second in
    /// SHARE mode (both, a self-join: EXCLUSIVE).
    sides: [(pg_sys::Oid, String, String); 2],
    /// Per source: the statement reading the (side, hash) of its rows'
    /// key values, old and new.
    values: RefCell<HashMap<u32, Rc<PerTransition>>>,
}

impl KeyLocks {
    /// The key locks of stream table `relid` with `plan`, over a two-table
    /// inner join (`Plan::pair_key`) of tables whose primary keys are
    /// checked at once (not DEFERRABLE): its rows filtered and projected,
    /// keyed by the tables' primary keys, or running totals in its own
    /// columns, which each statement adds to group by group in key order
    /// (`algebraic::in_place`, as for [`SharedLock::AddedTotals`]); none
    /// for any other.
    pub fn of(relid: pg_sys::Oid, plan: &analysis::Plan) -> PgtResult<Option<KeyLocks>> {
        let plain = !plan.reads_stream_tables
            && plan.full_on.is_empty()
            && !plan.pushdown
            && plan.topk.is_none()
            && plan.multiset.is_none();
        let rows = plan.shape == analysis::Shape::Rows;
        // (Not while a state table of an earlier plan is still there: see
        // shared_lock.)
        let totals = || -> PgtResult<bool> {
            Ok(algebraic::in_place(plan)
                && algebraic::is_join_totals(plan)
                && !algebraic::is_slice_totals(plan)
                && algebraic::keys_sortable(relid, plan)
                && algebraic::state_relid(relid)?.is_none())
        };
        let Some(pair) = plan.pair_key.filter(|_| plain) else { return Ok(None) };
        if !rows && !totals()? {
            return Ok(None);
        }
        let mut sides = Vec::new();
        for (_, table, attnum) in pair {
            if !immediate_primary_key(table)? {
                return Ok(None);
            }
            let column = sys::kept(
                "SELECT atttypid, pg_catalog.quote_ident(attname::text) FROM pg_catalog.pg_attribute \
                  WHERE attrelid OPERATOR(pg_catalog.=) $1 AND attnum OPERATOR(pg_catalog.=) $2",
                &[table.into(), attnum.into()],
                |rows| match rows.into_iter().next() {
                    Some(row) => Ok(row.get::<pg_sys::Oid>(1)?.zip(row.get::<String>(2)?)),
                    None => Ok(None),
                },
            )?;
            let Some((ty, name)) = column else { return Ok(None) };
            let Some(hash) = sys::hash_function(ty) else { return Ok(None) };
            sides.push((table, name, hash));
        }
        let Ok(sides) = <[_; 2]>::try_from(sides) else { return Ok(None) };
        Ok(Some(KeyLocks { sides, values: RefCell::new(HashMap::new()) }))
    }

    /// The equality whose values are locked, as `table.column = table.column`.
    pub fn equality(&self) -> PgtResult<String> {
        let side = |(table, column, _): &(pg_sys::Oid, String, String)| -> PgtResult<String> {
            Ok(format!("{}.{column}", crate::catalog::lifecycle::relation_name(*table)?))
        };
        Ok(format!("{} = {}", side(&self.sides[0])?, side(&self.sides[1])?))
    }

    /// The key locks a statement on `source` takes: (hash, lock mode) of
    /// each distinct key value of its rows (old and new, NULL aside), in
    /// order; None when they would be more than this transaction may still
    /// take (pg_trickle.immediate_key_locks), or its rows more than four
    /// times that, and the writer takes EXCLUSIVE instead.
    fn values(&self, source: pg_sys::Oid, transition: Transition) -> PgtResult<Option<Vec<(u32, u32)>>> {
        let budget = usize::try_from(crate::guc::IMMEDIATE_KEY_LOCKS.get()).unwrap_or(0);
        let left = budget.saturating_sub(KEYS_LOCKED.with(|n| n.get()));
        if left == 0 {
            return Ok(None);
        }
        // (Its rows are not read at all past four per value it may lock: a
        // bulk statement's values, hashed and counted, would cost a
        // noticeable share of its maintenance only to find too many.)
        let (old, new) = transition::current_counts();
        let sides = self.sides.iter().filter(|(table, _, _)| *table == source).count();
        if (old + new).saturating_mul(sides as i64) > 4 * left as i64 {
            return Ok(None);
        }
        let statement = self.values.borrow_mut().entry(source.to_u32()).or_default().clone();
        let sql = |_: ChangeRows| -> PgtResult<String> {
            let parts: Vec<String> = self
                .sides
                .iter()
                .enumerate()
                .filter(|(_, (table, _, _))| *table == source)
                .filter_map(|(side, (_, column, hash))| {
                    transition.union_all(|_, rows| {
                        format!(
                            "SELECT {side} AS side, pg_catalog.{hash}(c.{column}, 0) AS h FROM {rows} c \
                              WHERE c.{column} IS NOT NULL"
                        )
                    })
                })
                .collect();
            Ok(format!(
                "SELECT pg_catalog.bit_or(1 OPERATOR(pg_catalog.<<) side), h FROM ({}) v GROUP BY h",
                parts.join(" UNION ALL ")
            ))
        };
        let read = |table: pgrx::spi::SpiTupleTable<'_>| -> PgtResult<Vec<(u32, u32)>> {
            let mut out = Vec::new();
            for row in table {
                let (Some(sides), Some(hash)) = (row.get::<i32>(1)?, row.get::<i64>(2)?) else { continue };
                let key = (hash ^ (hash >> 32)) as u32;
                let mode = match sides {
                    1 => pg_sys::RowExclusiveLock,
                    2 => pg_sys::ShareLock,
                    _ => pg_sys::ExclusiveLock,
                };
                out.push((key, mode));
            }
            Ok(out)
        };
        let mut keys = statement.run_limited(transition, sql, Some(left as i64 + 1), read)?;
        if keys.len() > left {
            return Ok(None);
        }
        // (In one order for every writer: one statement never waits for a
        // key another holds while that one waits for one it holds.)
        keys.sort_unstable();
        Ok(Some(keys))
    }
}

/// Is the primary key of `table` (an ordinary or partitioned table) checked
/// at once (not DEFERRABLE)?
fn immediate_primary_key(table: pg_sys::Oid) -> PgtResult<bool> {
    Ok(sys::kept_one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint c \
                          JOIN pg_catalog.pg_class r ON r.oid OPERATOR(pg_catalog.=) c.conrelid \
                         WHERE c.conrelid OPERATOR(pg_catalog.=) $1 AND c.contype OPERATOR(pg_catalog.=) 'p' \
                           AND NOT c.condeferrable AND r.relkind IN ('r', 'p'))",
        &[table.into()],
    )?
    .unwrap_or(false))
}

/// Why READ COMMITTED writers may share a stream table (see [`lock_mode`]).
#[derive(Clone)]
pub enum SharedLock {
    /// Each row belongs to one row of this table, by its primary key.
    OwnedRows(pg_sys::Oid),
    /// Running totals, which each statement adds to.
    AddedTotals,
}

/// Whether, and why, READ COMMITTED writers may share the stream table
/// `relid` with `plan` (see [`lock_mode`]).
pub fn shared_lock(relid: pg_sys::Oid, plan: &analysis::Plan) -> PgtResult<Option<SharedLock>> {
    if let Some(source) = owning_source(plan)? {
        return Ok(Some(SharedLock::OwnedRows(source)));
    }
    // (Not while a state table of an earlier plan is still there: the
    // first statement drops it, which two writers must not do at once.)
    let added = crate::dvm::algebraic::adds_concurrently(relid, plan)
        && crate::dvm::algebraic::state_relid(relid)?.is_none();
    Ok(added.then_some(SharedLock::AddedTotals))
}

/// `decide(relid)`, kept in `cache` until [`forget`].
fn remembered<T: Clone>(
    cache: &'static std::thread::LocalKey<RefCell<HashMap<u32, T>>>,
    relid: pg_sys::Oid,
    decide: impl FnOnce(pg_sys::Oid) -> PgtResult<T>,
) -> PgtResult<T> {
    if let Some(known) = cache.with(|c| c.borrow().get(&relid.to_u32()).cloned()) {
        return Ok(known);
    }
    let decided = decide(relid)?;
    cache.with(|c| c.borrow_mut().insert(relid.to_u32(), decided.clone()));
    Ok(decided)
}

/// The table whose rows own the rows of a stream table with `plan`, one
/// each (see [`lock_mode`]): an ordinary or partitioned table with a primary
/// key that is not DEFERRABLE.
pub fn owning_source(plan: &analysis::Plan) -> PgtResult<Option<pg_sys::Oid>> {
    let Some(source) = plan.one_row_per_source_row() else { return Ok(None) };
    Ok(immediate_primary_key(source)?.then_some(source))
}

/// The transaction ends (`aborted` or not): preparations made while it
/// created or dropped a state table (see [`prepared`]) are dropped when
/// that is rolled back.
pub fn transaction_end(aborted: bool) {
    KEYS_LOCKED.with(|n| n.set(0));
    if STATE_CHANGED.with(|c| c.replace(false)) && aborted {
        forget();
    }
}

/// A subtransaction aborts: as [`transaction_end`], without forgetting
/// that the transaction changed a state table (the preparations made after
/// this may rely on the change too).
pub fn subtransaction_abort() {
    if STATE_CHANGED.with(|c| c.get()) {
        forget();
    }
}

fn over_inners(relid: pg_sys::Oid) -> PgtResult<bool> {
    remembered(&OVER_INNERS, relid, crate::dvm::nested::over_inners)
}

/// An IMMEDIATE stream table over inner stream tables: the inner stream
/// tables are refreshed on a snapshot taken now (their change buffers hold
/// the statement's changes, written before the IMMEDIATE stream tables
/// are maintained: cdc::capture), and its query recomputed over them; the
/// IMMEDIATE stream tables that read it are recomputed whole. Locked as
/// a refresh locks them, until the writing transaction ends.
fn maintain_over_inners(relid: pg_sys::Oid) -> PgtResult<()> {
    sys::lock_relation(relid, pg_sys::ExclusiveLock);
    super::isolation::maintaining(relid, false)?;
    if !is_populated(relid)? {
        return Ok(()); // emptied WITH NO DATA: the next REFRESH fills it
    }
    for inner in crate::dvm::nested::inners(relid)? {
        sys::lock_relation(inner.relid, pg_sys::ExclusiveLock);
    }
    let snapshot = crate::cdc::frontier::RefreshSnapshot::take();
    let inner = crate::dvm::nested::refresh_inners(relid, true, &snapshot)?;
    if crate::dvm::nested::recompute(relid, &inner, &snapshot)?.is_none() {
        // (No inner stream table could be made: the query itself.)
        key_recompute::replace_all_now(relid)?;
    } else if crate::cdc::buffer::buffer_relid(relid)?.is_some() {
        // Its readers through the change buffer recompute (its changes
        // were not recorded), as after replace_all_now.
        sys::as_extension_owner(|| crate::cdc::buffer::mark_truncated(relid))?;
    }
    recompute_readers(relid)
}

fn prepared(relid: pg_sys::Oid) -> PgtResult<Rc<Prepared>> {
    if let Some(p) = PREPARED.with(|p| p.borrow().get(&relid.to_u32()).cloned()) {
        return Ok(p);
    }
    let populated = is_populated(relid)?;
    let plan = match analysis::analyze(relid)? {
        Ok(plan) => plan,
        Err(why) => {
            return Err(PgtError::NotIncremental {
                name: crate::catalog::lifecycle::relation_name(relid)?,
                how: "immediately",
                reason: why.0,
            })
        }
    };
    // Running totals that are not there (see refresh::refresh): created,
    // and the stream table recomputed with them.
    // (A state table the totals no longer need, being the stream table's
    // own columns, is dropped.) A new one is filled by recomputing the
    // stream table once no statement on its sources is pending (the
    // firing one may have more captures to come: an INSERT ... ON CONFLICT
    // fires the INSERT and the UPDATE ones), every capture until then
    // leaving it alone (see maintain). Preparations made in a transaction
    // that created or dropped it do not outlive its abort.
    let state = if populated { algebraic::ensure_state(relid, &plan)? } else { algebraic::StateTable::Kept };
    if state != algebraic::StateTable::Kept {
        STATE_CHANGED.with(|c| c.set(true));
    }
    if state == algebraic::StateTable::Created {
        crate::cdc::statements::recompute_later(relid, &plan.sources());
    }
    let columns = key_recompute::output_columns(relid)?;
    let mut key_names = Vec::new();
    let mut shape = Vec::new();
    for group in plan.key_groups() {
        let names = sys::attribute_names(group[0].source, None)?;
        key_names.push(group.iter().map(|k| key_recompute::key_value_sql(&plan, k, &names)).collect());
        shape.push(
            group
                .iter()
                .map(|k| {
                    columns
                        .get(k.output_attnum as usize - 1)
                        .cloned()
                        .ok_or_else(|| PgtError::Internal("key column out of range".into()))
                })
                .collect::<PgtResult<Vec<_>>>()?,
        );
    }
    let owner = sys::relation_owner(relid)?;
    let all_keys = key_recompute::key_names(relid, &plan)?;
    let apply = sys::as_restricted_role(owner, || {
        let query = key_recompute::view_query(relid)?;
        let st = crate::catalog::lifecycle::relation_name(relid)?;
        let names: Vec<String> = columns.iter().map(|(n, _)| n.clone()).collect();
        // An outer join is recomputed per key of its preserved table only.
        let apply_shape: Vec<Vec<(String, String)>> = match plan.shape {
            analysis::Shape::LeftJoin { preserved, .. } => plan
                .key_groups()
                .iter()
                .zip(&shape)
                .filter(|(g, _)| g[0].rte == preserved)
                .map(|(_, s)| s.clone())
                .collect(),
            _ => shape.clone(),
        };
        let key_types = |nparams: usize| -> Vec<pgrx::PgOid> {
            (0..nparams)
                .map(|i| {
                    pgrx::PgOid::BuiltIn(if i % 2 == 0 {
                        pg_sys::BuiltinOid::TEXTOID
                    } else {
                        pg_sys::BuiltinOid::BOOLOID
                    })
                })
                .collect()
        };
        let apply = if plan.shape.keyed_multiset() {
            None
        } else {
            let (sql, nparams) =
                key_recompute::apply_sql_with_params(&st, &query, &names, &apply_shape, &all_keys, false);
            Some(Spi::connect(|c| {
                Ok::<_, PgtError>(c.prepare_mut(sql.as_str(), &key_types(nparams))?.keep())
            })?)
        };
        // Running totals: the groups are computed from them instead.
        // (Totals over a join are added to per statement: see maintain.)
        // (Nor when the totals are the stream table's own columns: see
        // apply_in_place.)
        let over_join = algebraic::is_join_totals(&plan) || algebraic::in_place(&plan);
        let totals = match algebraic::totals_query(relid, &plan)?.filter(|_| !over_join) {
            Some(totals_query) => {
                algebraic::prepare_owner(relid)?;
                let (apply_sql, nparams) = key_recompute::apply_sql_with_params(
                    &st,
                    &totals_query,
                    &names,
                    &apply_shape,
                    &all_keys,
                    true,
                );
                let rescan_sql = algebraic::rescan_sql(relid, &plan)?;
                let (rescan, apply) = Spi::connect(|c| {
                    let rescan = match &rescan_sql {
                        Some(sql) => Some(c.prepare_mut(sql.as_str(), &[])?.keep()),
                        None => None,
                    };
                    Ok::<_, PgtError>((
                        rescan,
                        c.prepare_mut(apply_sql.as_str(), &key_types(nparams))?.keep(),
                    ))
                })?;
                Some(Totals {
                    upsert: PerTransition::default(),
                    keys: algebraic::key_columns(relid, &plan)?,
                    rescan,
                    apply,
                })
            }
            None => None,
        };
        // A keyless filter: its changed rows' images, counted and applied.
        let keyless = (plan.rows.is_some() && plan.shape == analysis::Shape::Keyless)
            .then(|| Keyless { apply: PerTransition::default() });
        // (Only when every source records its statements: see
        // cdc::statements::alone.)
        let mut inserted = Vec::new();
        if let Some(sources) = crate::dvm::inserted::eligible(&plan) {
            let mut tracked = true;
            for source in plan.sources() {
                tracked &= sys::as_extension_owner(|| crate::cdc::triggers::tracks_statements(source))?;
            }
            for source in sources.into_iter().filter(|_| tracked) {
                // (The transition table is read without row security or
                // privilege checks: only where reading the table itself
                // would see the same rows.)
                if !crate::dvm::inserted::reads_like_the_table(owner, source)? {
                    continue;
                }
                if let Some(query) = crate::dvm::inserted::query_over_new_rows(relid, source)? {
                    inserted.push((source, query, RefCell::new(None)));
                }
            }
        }
        Ok((apply, totals, keyless, inserted))
    })?;
    let (apply, totals, keyless, inserted) = apply;
    let p = Rc::new(Prepared {
        populated,
        plan,
        key_names,
        owner,
        apply,
        key_reads: (0..shape.len()).map(|_| PerTransition::default()).collect(),
        shape,
        conflict_keys: all_keys,
        totals,
        keyless,
        inserted,
        over_rows: RefCell::new(HashMap::new()),
        in_place: PerTransition::default(),
        followed_reads: RefCell::new(HashMap::new()),
    });
    PREPARED.with(|m| m.borrow_mut().insert(relid.to_u32(), p.clone()));
    Ok(p)
}

/// Maintain `relid` for one statement on `source`, whose old and new rows
/// are the current transition tables (`cdc::transition`); `transition`
/// tells which of them hold rows. The IMMEDIATE stream tables that read
/// `relid` are then maintained for the rows this changed in it.
pub fn maintain(relid: pg_sys::Oid, source: pg_sys::Oid, transition: Transition) -> PgtResult<()> {
    if !transition.old && !transition.new {
        return Ok(()); // the statement changed no row
    }
    if over_inners(relid)? {
        // Not while another statement on one of its tables is pending
        // (cdc::statements): its inner stream tables would read a table
        // changed by a statement whose changes are not in its buffer yet.
        // It is recomputed when none is.
        let sources = crate::cdc::consumers::captured_sources(relid)?;
        if !crate::cdc::statements::may_add_delta(relid, source, &sources) {
            return Ok(());
        }
        return maintain_over_inners(relid);
    }
    let shared = lock(relid, source, transition)?;
    super::isolation::maintaining(relid, shared)?;
    let p = prepared(relid)?;
    if !p.populated {
        return Ok(()); // emptied WITH NO DATA: the next REFRESH fills it
    }
    if crate::cdc::statements::is_due(relid) {
        return Ok(()); // recomputed at the end of the last capture
    }
    let _generic = sys::generic_plans();
    let (readers, buffered) = readers(relid)?;
    if readers.is_empty() && !buffered {
        apply_changes(relid, source, transition, &p, None)?;
        return Ok(());
    }
    // Readers: the apply returns the rows it deleted and inserted, which
    // become the transition tables of the IMMEDIATE ones and go to the
    // change buffer for the others.
    let columns = key_recompute::output_columns(relid)?;
    let names: Vec<String> = columns.iter().map(|(name, _)| name.clone()).collect();
    let changed = apply_changes(relid, source, transition, &p, Some(&names))?;
    if changed.is_empty() {
        return Ok(());
    }
    if buffered {
        let attnums = crate::cdc::buffer::captured_columns(relid)?;
        let rows: crate::sql::TextRows = changed
            .iter()
            .map(|row| {
                std::iter::once(row.first().cloned().flatten())
                    .chain(attnums.iter().map(|a| row.get(*a as usize).cloned().flatten()))
                    .collect()
            })
            .collect();
        sys::as_extension_owner(|| crate::cdc::buffer::write_rows(relid, &attnums, &rows))?;
    }
    if readers.is_empty() {
        return Ok(());
    }
    let types: Vec<String> = columns.into_iter().map(|(_, ty)| ty).collect();
    let tables = transition::Owned::from_rows(relid, &types, &changed)?;
    let (old, new) = tables.tables().holds_rows();
    // SAFETY: `tables` outlives the guard (declared after it, dropped
    // before it).
    let _current = unsafe { transition::Current::enter(tables.tables()) };
    for reader in readers {
        maintain(reader, relid, Transition { old, new })?;
    }
    Ok(())
}

/// The IMMEDIATE stream tables that read `relid` (a stream table), and
/// whether others read it through its change buffer.
fn readers(relid: pg_sys::Oid) -> PgtResult<(Vec<pg_sys::Oid>, bool)> {
    let consumers = crate::cdc::capture::consumers(relid)?;
    let buffered = consumers.iter().any(|(_, immediate)| !immediate);
    Ok((consumers.into_iter().filter(|(_, immediate)| *immediate).map(|(r, _)| r).collect(), buffered))
}

/// Running totals: bring the groups the statement touched (`groups`) to
/// their rows computed from the totals (the first rows, for ORDER BY ...
/// LIMIT); with `capture`, return the rows deleted and inserted.
fn apply_touched(
    relid: pg_sys::Oid,
    p: &Prepared,
    groups: &[Vec<KeyValues>],
    capture: Option<&[String]>,
) -> PgtResult<crate::sql::TextRows> {
    let recompute = algebraic::recompute_sql(relid, &p.plan, groups)?;
    if let Some(rows) = apply_topk(relid, p, groups, recompute.as_deref(), capture)? {
        return Ok(rows);
    }
    key_recompute::apply_now(
        relid,
        groups,
        &p.conflict_keys,
        recompute.as_deref(),
        capture,
        p.plan.pushed_keys(),
    )
}

/// Running totals in the stream table's own columns
/// (`algebraic::in_place`): the statement's rows (over a join or slices,
/// joined to the other tables, or the rows of the slices they touch, after
/// and before) added to the rows of the groups they touch, in one
/// statement, then the groups left empty deleted. Kept prepared over one
/// table or slices (without capture), planned for each statement over a
/// join (by index for a few rows, by hash for many).
fn apply_in_place(
    relid: pg_sys::Oid,
    source: pg_sys::Oid,
    transition: Transition,
    p: &Prepared,
    capture: Option<&[String]>,
) -> PgtResult<crate::sql::TextRows> {
    let text = |rows: ChangeRows| algebraic::in_place_sql(relid, &p.plan, source, rows, capture);
    let read = |table: pgrx::spi::SpiTupleTable<'_>| sys::text_rows(table);
    let run = || -> PgtResult<crate::sql::TextRows> {
        match (capture, algebraic::is_join_totals(&p.plan), algebraic::is_slice_totals(&p.plan)) {
            (None, false, _) => p.in_place.run_reading(transition, text, read),
            (None, true, true) => p.over_rows(source).run_reading(transition, text, read),
            _ => {
                let sql = text(ChangeRows::Transition { old: transition.old, new: transition.new })?;
                transition::connect(|c| sys::text_rows(c.update(&sql, None, &[])?))
            }
        }
    };
    let delete = |sql: &str| -> PgtResult<Vec<Option<String>>> {
        Spi::connect_mut(|c| {
            Ok(sys::text_rows(c.update(sql, Some(1), &[])?)?.into_iter().next().unwrap_or_default())
        })
    };
    let (_, _, rows) = sys::as_restricted_role(p.owner, || {
        with_window(relid, || {
            algebraic::run_in_place(relid, &p.plan, capture.map_or(0, <[String]>::len), &run, &delete)
        })
    })?;
    Ok(rows)
}

/// Apply one statement's changes to `relid`. With `capture` (its quoted
/// column names), returns the rows deleted and inserted ('D'/'I', then
/// those columns as text); otherwise no rows.
fn apply_changes(
    relid: pg_sys::Oid,
    source: pg_sys::Oid,
    transition: Transition,
    p: &Prepared,
    capture: Option<&[String]>,
) -> PgtResult<crate::sql::TextRows> {
    let read_transition = &transition::first_row_text;
    // Running totals over a join or slices: not while another statement on
    // one of its sources is pending (see cdc::statements), which leaves
    // the stream table to be recomputed whole when none is.
    let over_rows = algebraic::is_join_totals(&p.plan) || p.plan.multiset.is_some();
    if over_rows && !crate::cdc::statements::may_add_delta(relid, source, &p.plan.sources()) {
        return Ok(Vec::new());
    }
    // A multiset of one table's changed rows, or running totals with a
    // min or max: not for a statement run by a trigger of a statement on
    // one of its sources that is still to be maintained (see
    // cdc::statements::may_apply_nested); recomputed after it instead.
    let in_order = p.keyless.is_some() || p.plan.algebraic.as_ref().is_some_and(|a| a.has_extremes());
    if in_order && !crate::cdc::statements::may_apply_nested(relid, &p.plan.sources()) {
        return Ok(Vec::new());
    }
    // A table read by a subquery not tied to the outer query: any row may
    // have changed; the whole query is recomputed, applied as differences.
    // So is a statement over slices whose rows exceed
    // pg_trickle.differential_max_change_fraction of the slices' root
    // table (it may touch most slices, whose rows computed after and
    // before would cost more than the query: see refresh::too_large).
    let too_many = match p.plan.slices_root() {
        Some(root) => {
            let (old, new) = transition::current_counts();
            let n = super::source_rows(root)?;
            n >= 0.0 && (old + new) as f64 > crate::guc::DIFFERENTIAL_MAX_CHANGE_FRACTION.get() * n.max(1.0)
        }
        None => false,
    };
    if too_many || p.plan.full_on.contains(&source) {
        let whole = sys::as_restricted_role(p.owner, || key_recompute::whole_query(relid))?;
        let rows = key_recompute::apply_now(relid, &[], &p.conflict_keys, Some(&whole), capture, &[])?;
        // (Running totals, over slices, are rebuilt with it.)
        if p.plan.algebraic.is_some() {
            algebraic::rebuild_now(relid)?;
        }
        return Ok(rows);
    }
    if algebraic::in_place(&p.plan) {
        return apply_in_place(relid, source, transition, p, capture);
    }
    // A multiset over several tables: the rows the statement's rows add
    // and remove (joined to the other tables, or the rows of the slices it
    // touches, after and before), counted per image and applied. Planned
    // for each statement, as the terms of running totals over a join.
    if let Some(m) = &p.plan.multiset {
        let attnums = m.columns_of(source);
        let changes = [crate::dvm::join_totals::Changes {
            source,
            attnums: &attnums,
            rows: ChangeRows::Transition { old: transition.old, new: transition.new },
        }];
        return sys::as_restricted_role(p.owner, || {
            with_window(relid, || {
                let Some(sql) = crate::dvm::keyless::multiset_apply_sql(relid, &p.plan, &changes, capture)?
                else {
                    return Ok(Vec::new());
                };
                transition::connect(|c| {
                    let table = c.update(&sql, None, &[])?;
                    if capture.is_none() {
                        return Ok(Vec::new());
                    }
                    sys::text_rows(table)
                })
            })
        });
    }
    // Running totals over a join or slices: the statement's rows joined to
    // the other tables (the rows of the slices it touches, before and
    // after) are added to them, and the groups touched computed from them.
    if over_rows {
        let keys = algebraic::key_columns(relid, &p.plan)?;
        let upsert = |rows: ChangeRows| -> PgtResult<String> {
            Ok(algebraic::returning_groups_rescanned(
                &algebraic::rows_upsert_sql(relid, &p.plan, source, rows)?,
                &keys,
                &p.plan,
            ))
        };
        // (In the writing statement's transaction, on its current snapshot.)
        let mut row = sys::as_restricted_role(p.owner, || {
            if algebraic::is_slice_totals(&p.plan) {
                // Kept prepared: the touched slices are read at run time
                // (its plan does not depend on the statement's row count).
                p.over_rows(source).first_row(transition, upsert)
            } else {
                // Planned for each statement: the terms join its rows to
                // the other tables, by index for a few rows, by hash for
                // many.
                let sql = upsert(ChangeRows::Transition { old: transition.old, new: transition.new })?;
                crate::cdc::transition::connect(|c| {
                    Ok(sys::text_rows(c.update(&sql, Some(1), &[])?)?.into_iter().next().unwrap_or_default())
                })
            }
        })?;
        algebraic::rescan_marked(relid, &p.plan, &mut row, |rescan| {
            sys::as_restricted_role(p.owner, || {
                Ok(Spi::connect_mut(|c| c.update(rescan, None, &[]).map(|_| ()))?)
            })
        })?;
        let groups = algebraic::groups_from_row(keys, &row);
        return apply_touched(relid, p, &groups, capture);
    }
    // An INSERT alone into a table the rows are keyed by: the rows it adds,
    // from its new rows (dvm::inserted).
    if capture.is_none() && transition.new && !transition.old && crate::cdc::statements::alone(source) {
        if let Some((_, query, kept)) = p.inserted.iter().find(|(s, _, _)| *s == source) {
            sys::as_restricted_role(p.owner, || {
                crate::cdc::transition::connect(|_| {
                    if kept.borrow().is_none() {
                        let prepared = super::bulk::BulkQuery::prepare(query)?;
                        *kept.borrow_mut() = Some(prepared);
                    }
                    let kept = kept.borrow();
                    let bulk =
                        kept.as_ref().ok_or_else(|| PgtError::Internal("query not prepared".into()))?;
                    bulk.insert_into(relid).map(|_| ())
                })
            })?;
            return Ok(Vec::new());
        }
    }
    // Running totals: the statement's rows are added to them, which
    // returns the groups touched, and those groups computed from them
    // (groups left without rows stay in the totals with no rows; a FULL
    // refresh sweeps them).
    if let Some(t) = &p.totals {
        let groups = sys::as_restricted_role(p.owner, || {
            let row = t.upsert.first_row(transition, |rows| {
                Ok(algebraic::returning_groups(&algebraic::upsert_sql(relid, &p.plan, rows)?, &t.keys))
            })?;
            if let Some(rescan) = &t.rescan {
                Spi::connect_mut(|c| c.update(rescan, None, &[]).map(|_| ()))?;
            }
            Ok(algebraic::groups_from_row(t.keys.clone(), &row))
        })?;
        if capture.is_some() || p.plan.topk.is_some() {
            return apply_touched(relid, p, &groups, capture);
        }
        let args = key_recompute::apply_params(&groups);
        return sys::as_restricted_role(p.owner, || {
            with_window(relid, || {
                Spi::connect_mut(|c| {
                    c.update(&t.apply, Some(1), &args)?;
                    Ok(Vec::new())
                })
            })
        });
    }
    let mut groups = Vec::new();
    let mut any = false;
    for (((group, names), shape), kept) in
        p.plan.key_groups().iter().zip(&p.key_names).zip(&p.shape).zip(&p.key_reads)
    {
        if group[0].source != source {
            groups.push(
                shape
                    .iter()
                    .map(|(column, sql_type)| KeyValues {
                        column: column.clone(),
                        sql_type: sql_type.clone(),
                        values: None,
                        has_null: false,
                    })
                    .collect(),
            );
            continue;
        }
        // (Written when first prepared.)
        let sql = |_: ChangeRows| -> PgtResult<String> {
            let cols: Vec<String> = names.iter().enumerate().map(|(i, v)| format!("{v} AS k{i}")).collect();
            let rows = transition
                .union_all(|_, table| format!("SELECT {} FROM {table} b", cols.join(", ")))
                .unwrap_or_default();
            let mut select = Vec::new();
            for i in 0..names.len() {
                select.push(format!(
                    "(pg_catalog.array_agg(DISTINCT k{i}) FILTER (WHERE k{i} IS NOT NULL))::text"
                ));
                select.push(format!("pg_catalog.bool_or(k{i} IS NULL)::pg_catalog.text"));
            }
            Ok(format!("SELECT {} FROM ({rows}) w", select.join(", ")))
        };
        let read = || kept.first_row(transition, sql);
        // (GROUP BY expressions evaluated as the stream table's owner.)
        let row = match p.plan.key_exprs.is_empty() {
            true => read()?,
            false => sys::as_restricted_role(p.owner, read)?,
        };
        let mut keys = Vec::new();
        for (i, (column, sql_type)) in shape.iter().enumerate() {
            let values = row.get(2 * i).cloned().flatten();
            let has_null = row.get(2 * i + 1).cloned().flatten().as_deref() == Some("true");
            any |= values.is_some() || has_null;
            keys.push(KeyValues { column: column.clone(), sql_type: sql_type.clone(), values, has_null });
        }
        groups.push(keys);
    }
    if let Some(k) = &p.keyless {
        // A multiset from the statement's old and new rows alone.
        return sys::as_restricted_role(p.owner, || {
            with_window(relid, || {
                let Some(capture) = capture else {
                    k.apply
                        .run(transition, |rows| crate::dvm::keyless::apply_sql(relid, &p.plan, rows, None))?;
                    return Ok(Vec::new());
                };
                let rows = ChangeRows::Transition { old: transition.old, new: transition.new };
                let sql = crate::dvm::keyless::apply_sql(relid, &p.plan, rows, Some(capture))?;
                transition::connect(|c| sys::text_rows(c.update(&sql, None, &[])?))
            })
        });
    }
    if p.plan.shape == analysis::Shape::Scalar {
        // No key: the one row is recomputed when the statement changed rows.
        any = match transition.union_all(|_, table| format!("SELECT FROM {table}")) {
            Some(rows) => {
                read_transition(&format!("SELECT EXISTS ({rows})"))?.first().cloned().flatten().as_deref()
                    == Some("t")
            }
            None => false,
        };
    }
    // An aggregate or DISTINCT over a join, or rows filtered by subqueries:
    // a change of another table reaches the groups (rows) joined to its
    // changed rows, old and new, followed along the = conditions
    // (key_recompute::expand_join_groups).
    let mut join_values = Vec::new();
    let followed = p.plan.followed();
    for (rte, table, _, path) in followed {
        let Some(first) = path.first().filter(|_| table == source) else { continue };
        let attnum = first.0 .1;
        // (Written, with the joined column's name, when first prepared.)
        let sql = |_: ChangeRows| -> PgtResult<String> {
            let names = sys::attribute_names(source, Some(&[attnum]))?;
            let (_, name) = names.first().ok_or_else(|| PgtError::Internal("join column missing".into()))?;
            let col = crate::sql::quote_ident(name);
            let rows = transition
                .union_all(|_, table| format!("SELECT t.{col} AS v FROM {table} t"))
                .ok_or_else(|| PgtError::Internal("statement without rows".into()))?;
            Ok(format!(
                "SELECT (pg_catalog.array_agg(DISTINCT v) FILTER (WHERE v IS NOT NULL))::text FROM ({rows}) w"
            ))
        };
        let kept = p.followed_reads.borrow_mut().entry(rte).or_default().clone();
        if let Some(values) = kept.first_row(transition, sql)?.first().cloned().flatten() {
            join_values.push((rte, values));
            any = true;
        }
    }
    if !any {
        return Ok(Vec::new());
    }
    let groups = if join_values.is_empty() {
        groups
    } else {
        sys::as_restricted_role(p.owner, || {
            Ok(key_recompute::expand_join_groups(relid, &p.plan, groups, &join_values, read_transition)?.0)
        })?
    };
    // An outer join: changed rows of the nullable side become keys of the
    // preserved side (looked up as the owner, on the statement's view).
    let groups = sys::as_restricted_role(p.owner, || {
        key_recompute::expand_outer_join(relid, &p.plan, groups, &|sql: &str| {
            Spi::connect(|c| {
                let row = c.select(sql, Some(1), &[])?.first();
                Ok(vec![row.get::<String>(1)?])
            })
        })
    })?;
    if let Some(rows) = apply_topk(relid, p, &groups, None, capture)? {
        return Ok(rows);
    }
    // Few keys (the common single-row statement): the prepared statement,
    // planned once. Many: a statement planned for these values, since a
    // generic plan cannot know how many keys the arrays hold.
    let keys: usize =
        groups.iter().flatten().map(|k| k.values.as_deref().map_or(0, |v| v.matches(',').count() + 1)).sum();
    // (Groups reached through a join add key groups the prepared statement
    // has no parameters for.)
    let prepared = p
        .apply
        .as_ref()
        .filter(|_| capture.is_none() && keys <= PREPARED_KEYS_LIMIT && groups.len() <= p.shape.len());
    let Some(apply) = prepared else {
        // (No key: the one row is recomputed whole.)
        let whole = match p.plan.shape {
            analysis::Shape::Scalar => {
                Some(sys::as_restricted_role(p.owner, || key_recompute::whole_query(relid))?)
            }
            _ => None,
        };
        return key_recompute::apply_now(
            relid,
            &groups,
            &p.conflict_keys,
            whole.as_deref(),
            capture,
            p.plan.pushed_keys(),
        );
    };
    let args = key_recompute::apply_params(&groups);
    let _few = sys::few_rows_plans();
    sys::as_restricted_role(p.owner, || {
        with_window(relid, || {
            Spi::connect_mut(|c| {
                c.update(apply, Some(1), &args)?;
                Ok(Vec::new())
            })
        })
    })
}

/// ORDER BY ... LIMIT: the statement's new first rows, applied as
/// differences from all the stream table's rows (see dvm::topk); from the
/// touched groups' rows of the running totals (`touched`) or recomputed.
/// None for other stream tables.
fn apply_topk(
    relid: pg_sys::Oid,
    p: &Prepared,
    groups: &[Vec<KeyValues>],
    touched: Option<&str>,
    capture: Option<&[String]>,
) -> PgtResult<Option<crate::sql::TextRows>> {
    let Some(topk) = &p.plan.topk else { return Ok(None) };
    let rows = crate::dvm::topk::first_rows_sql(relid, &p.plan, topk, groups, touched)?;
    key_recompute::apply_now(relid, &[], &p.conflict_keys, Some(&rows), capture, &[]).map(Some)
}

/// Above this many affected keys a statement is planned for its values.
const PREPARED_KEYS_LIMIT: usize = 16;

/// TRUNCATE of a source: recompute the whole stream table.
pub fn recompute_all(relid: pg_sys::Oid) -> PgtResult<()> {
    if over_inners(relid)? {
        return maintain_over_inners(relid);
    }
    sys::lock_relation(relid, pg_sys::ExclusiveLock);
    super::isolation::maintaining(relid, false)?;
    if !is_populated(relid)? {
        return Ok(());
    }
    key_recompute::replace_all_now(relid)?;
    recompute_readers(relid)
}

/// `relid` was recomputed whole: so are the IMMEDIATE stream tables that
/// read it.
pub fn recompute_readers(relid: pg_sys::Oid) -> PgtResult<()> {
    for reader in readers(relid)?.0 {
        recompute_all(reader)?;
    }
    Ok(())
}

pub fn is_populated(relid: pg_sys::Oid) -> PgtResult<bool> {
    Ok(crate::catalog::sys::kept_one::<bool>(
        "SELECT (SELECT relispopulated FROM pg_catalog.pg_class WHERE oid OPERATOR(pg_catalog.=) $1)",
        &[relid.into()],
    )?
    .unwrap_or(false))
}
