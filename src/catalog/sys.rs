//! The few places where pg_trickle touches PostgreSQL's system catalogs and
//! backend state directly, rather than through SQL.
//!
//! - `pg_class.reloptions`: a stream table's `pgtrickle.*` settings live
//!   there (so pg_dump round-trips them), but PostgreSQL's own ALTER refuses
//!   options it does not know, so we write the array ourselves.
//! - `pg_depend`: a stream table depends on the extension, so `DROP EXTENSION`
//!   refuses (or, with CASCADE, drops the stream tables) instead of leaving
//!   unmaintained stream tables behind.
//! - The current user: catalog rows are written as the extension's owner, so a
//!   user who owns a materialized view needs no rights on `pgtrickle.*`.
//!
//! Every `unsafe` block here carries a `// SAFETY:` note; callers see safe
//! functions.

use std::ffi::{CStr, CString};

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::error::{PgtError, PgtResult};

pub const EXTENSION_NAME: &CStr = c"pg_trickle";

/// The OID of the pg_trickle extension in this database, if installed.
pub fn extension_oid() -> Option<pg_sys::Oid> {
    // SAFETY: get_extension_oid only reads pg_extension; missing_ok = true
    // makes it return InvalidOid instead of raising.
    let oid = unsafe { pg_sys::get_extension_oid(EXTENSION_NAME.as_ptr(), true) };
    (oid != pg_sys::InvalidOid).then_some(oid)
}

/// The role that owns the extension (the role that ran CREATE EXTENSION).
fn extension_owner() -> PgtResult<pg_sys::Oid> {
    let oid = kept_one::<pg_sys::Oid>(
        "SELECT (SELECT extowner FROM pg_catalog.pg_extension WHERE extname OPERATOR(pg_catalog.=) 'pg_trickle')",
        &[],
    )?;
    oid.ok_or(PgtError::ExtensionMissing)
}

thread_local! {
    /// Plans of the catalog statements every refresh runs, parsed and
    /// planned once per backend (see [`kept`]).
    static KEPT: std::cell::RefCell<std::collections::HashMap<&'static str, pgrx::spi::OwnedPreparedStatement>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

/// Run one of pg_trickle's fixed catalog statements (`sql` is a literal,
/// every name in it schema-qualified) through a plan kept for the life of
/// the backend, and hand its result to `f`. A scheduler runs the same few
/// dozen statements at every refresh; parsing and planning them each time
/// cost more than running them. PostgreSQL revalidates a kept plan when
/// the catalogs it depends on change. The argument types are those of the
/// first call's arguments.
pub fn kept<R>(
    sql: &'static str,
    args: &[pgrx::datum::DatumWithOid<'_>],
    f: impl FnOnce(pgrx::spi::SpiTupleTable<'_>) -> PgtResult<R>,
) -> PgtResult<R> {
    // (Taken out while it runs: a statement run inside it may need another.)
    let plan = KEPT.with(|k| k.borrow_mut().remove(sql));
    Spi::connect_mut(|c| {
        let plan = match plan {
            Some(plan) => plan,
            None => {
                let types: Vec<pgrx::PgOid> = args.iter().map(|a| pgrx::PgOid::from(a.oid())).collect();
                c.prepare_mut(sql, &types)?.keep()
            }
        };
        let result = c.update(&plan, None, args).map_err(PgtError::from).and_then(f);
        KEPT.with(|k| k.borrow_mut().insert(sql, plan));
        result
    })
}

/// [`kept`] for a statement whose first row's first column is wanted.
pub fn kept_one<T: pgrx::datum::FromDatum + pgrx::datum::IntoDatum>(
    sql: &'static str,
    args: &[pgrx::datum::DatumWithOid<'_>],
) -> PgtResult<Option<T>> {
    kept(sql, args, |t| {
        if t.is_empty() {
            return Ok(None);
        }
        Ok(t.first().get_one::<T>()?)
    })
}

/// [`kept`] for a statement whose result is not wanted.
pub fn kept_run(sql: &'static str, args: &[pgrx::datum::DatumWithOid<'_>]) -> PgtResult<()> {
    kept(sql, args, |_| Ok(()))
}

/// Run `f` as the extension's owner (a local user-id change, undone when `f`
/// returns or unwinds), for writes to pg_trickle's own catalog tables.
pub fn as_extension_owner<R>(f: impl FnOnce() -> PgtResult<R>) -> PgtResult<R> {
    let owner = extension_owner()?;
    let _restore = UserSwitch::to(owner, false);
    f()
}

/// Run `f` as `role` inside a security-restricted operation, as PostgreSQL
/// runs a materialized view's query during REFRESH (as its owner).
pub fn as_restricted_role<R>(role: pg_sys::Oid, f: impl FnOnce() -> PgtResult<R>) -> PgtResult<R> {
    let _restore = UserSwitch::to(role, true);
    f()
}

/// Run `f` as `role` (not restricted), e.g. to create a stream table's index
/// as its owner during a refresh run by someone with MAINTAIN.
pub fn as_role<R>(role: pg_sys::Oid, f: impl FnOnce() -> PgtResult<R>) -> PgtResult<R> {
    let _restore = UserSwitch::to(role, false);
    f()
}

/// The non-NULL values of the first column of a catalog query's rows (see
/// [`kept`]).
pub fn column_values<T: pgrx::datum::FromDatum + pgrx::datum::IntoDatum>(
    sql: &'static str,
    args: &[pgrx::datum::DatumWithOid<'_>],
) -> PgtResult<Vec<T>> {
    kept(sql, args, |rows| {
        rows.map(|row| row.get::<T>(1))
            .collect::<Result<Vec<_>, _>>()
            .map(|v| v.into_iter().flatten().collect())
            .map_err(PgtError::from)
    })
}

/// Every row of a statement's result whose columns are all text (as the
/// generated statements cast them), NULL as None.
pub fn text_rows(table: pgrx::spi::SpiTupleTable<'_>) -> PgtResult<crate::sql::TextRows> {
    let mut rows = Vec::new();
    for row in table {
        rows.push((1..=row.columns()).map(|i| row.get::<String>(i)).collect::<Result<Vec<_>, _>>()?);
    }
    Ok(rows)
}

/// The owner of a relation.
pub fn relation_owner(relid: pg_sys::Oid) -> PgtResult<pg_sys::Oid> {
    kept_one::<pg_sys::Oid>(
        "SELECT (SELECT relowner FROM pg_catalog.pg_class WHERE oid OPERATOR(pg_catalog.=) $1)",
        &[relid.into()],
    )?
    .ok_or_else(|| PgtError::Internal(format!("relation {} does not exist", relid.to_u32())))
}

/// A GUC nest level with some settings, popped on drop (as
/// fmgr_security_definer does for functions with a SET clause).
pub struct GucLevel {
    level: i32,
}

impl GucLevel {
    pub fn enter(settings: &[(&std::ffi::CStr, &std::ffi::CStr)]) -> GucLevel {
        // SAFETY: opens a GUC nest level and sets GUCs in it, exactly as
        // fmgr_security_definer does; Drop pops the level.
        unsafe {
            let level = pg_sys::NewGUCNestLevel();
            for (name, value) in settings {
                pg_sys::set_config_option(
                    name.as_ptr(),
                    value.as_ptr(),
                    pg_sys::GucContext::PGC_USERSET,
                    pg_sys::GucSource::PGC_S_SESSION,
                    pg_sys::GucAction::GUC_ACTION_SAVE,
                    true,
                    0,
                    false,
                );
            }
            GucLevel { level }
        }
    }
}

impl Drop for GucLevel {
    fn drop(&mut self) {
        // SAFETY: pops the level opened in `enter`; on error, transaction
        // abort pops it instead.
        unsafe {
            if pg_sys::IsTransactionState() && !pg_sys::IsAbortedTransactionBlockState() {
                pg_sys::AtEOXact_GUC(true, self.level);
            }
        }
    }
}

/// `search_path = pg_catalog, pg_temp` until dropped.
pub struct SafeSearchPath {
    _level: GucLevel,
}

impl SafeSearchPath {
    pub fn enter() -> SafeSearchPath {
        SafeSearchPath { _level: GucLevel::enter(&[(c"search_path", c"pg_catalog, pg_temp")]) }
    }
}

/// Until dropped, prepared statements run on their generic plan instead of
/// being planned again for each execution's parameters (the plan cache
/// keeps choosing custom plans for `key = ANY($1)` filters, whose array
/// size it cannot know; IMMEDIATE maintenance passes a few keys, for which
/// the generic plan's index lookups are right). Unprepared statements are
/// planned for their values as always.
pub fn generic_plans() -> GucLevel {
    GucLevel::enter(&[(c"plan_cache_mode", c"force_generic_plan")])
}

/// Until dropped, prepared statements are planned for each execution's
/// parameter values (inside [`generic_plans`]: a refresh's own kept
/// statements, whose values are its window and the planner's estimates).
pub fn custom_plans() -> GucLevel {
    GucLevel::enter(&[(c"plan_cache_mode", c"force_custom_plan")])
}

/// Plans for statements known to touch a few rows (IMMEDIATE maintenance
/// of a few keys, on its generic plan): without these, the generic plan
/// cannot know how few the keys are and builds hash tables (a join's over
/// a whole dimension table, a UNION's) at every execution, which was most
/// of a single-row UPDATE's maintenance of a join view.
pub fn few_rows_plans() -> GucLevel {
    GucLevel::enter(&[
        (c"enable_hashjoin", c"off"),
        (c"enable_hashagg", c"off"),
        (c"enable_mergejoin", c"off"),
    ])
}

/// Restores the saved user id and security context on drop (after the
/// search_path level inside it is popped).
struct UserSwitch {
    user: pg_sys::Oid,
    context: i32,
    _path: SafeSearchPath,
}

impl UserSwitch {
    fn to(user: pg_sys::Oid, restricted: bool) -> UserSwitch {
        let mut saved_user = pg_sys::InvalidOid;
        let mut saved_context = 0;
        // SAFETY: reads backend-local state into the locals, then switches
        // the user with SECURITY_LOCAL_USERID_CHANGE (and, when asked,
        // SECURITY_RESTRICTED_OPERATION), as SECURITY DEFINER functions and
        // REFRESH MATERIALIZED VIEW do. Drop restores the saved values.
        unsafe { pg_sys::GetUserIdAndSecContext(&mut saved_user, &mut saved_context) };
        let path = SafeSearchPath::enter();
        let mut flags = saved_context | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32;
        if restricted {
            flags |= pg_sys::SECURITY_RESTRICTED_OPERATION as i32;
        }
        // SAFETY: see above.
        unsafe { pg_sys::SetUserIdAndSecContext(user, flags) };
        UserSwitch { user: saved_user, context: saved_context, _path: path }
    }
}

impl Drop for UserSwitch {
    fn drop(&mut self) {
        // SAFETY: restores the values saved in `to`.
        unsafe { pg_sys::SetUserIdAndSecContext(self.user, self.context) }
    }
}

/// Is the current user the owner of the relation (or a member of its owner)?
pub fn current_user_owns(relid: pg_sys::Oid) -> bool {
    // SAFETY: object_ownercheck reads pg_class through the syscache.
    unsafe { pg_sys::object_ownercheck(pg_sys::RelationRelationId, relid, pg_sys::GetUserId()) }
}

/// May the current user refresh the relation (owner or MAINTAIN privilege,
/// as for REFRESH MATERIALIZED VIEW)?
pub fn current_user_can_maintain(relid: pg_sys::Oid) -> bool {
    // SAFETY: pg_class_aclcheck reads pg_class and role membership.
    unsafe {
        pg_sys::pg_class_aclcheck(relid, pg_sys::GetUserId(), pg_sys::ACL_MAINTAIN as pg_sys::AclMode)
            == pg_sys::AclResult::ACLCHECK_OK
    }
}

/// Take a lock on a relation for the rest of the transaction.
pub fn lock_relation(relid: pg_sys::Oid, lockmode: u32) {
    // SAFETY: LockRelationOid raises on failure (deadlock, cancel); the lock
    // is released at transaction end.
    unsafe { pg_sys::LockRelationOid(relid, lockmode as pg_sys::LOCKMODE) }
}

/// Is the current statement inside a transaction block (BEGIN ...
/// COMMIT, or several statements sent in one query string)?
pub fn in_transaction_block() -> bool {
    // SAFETY: reads the backend's transaction state.
    unsafe { pg_sys::IsTransactionBlock() }
}

/// The kind of advisory lock `lock_key` takes (`pg_locks.objsubid`):
/// apart from the two that `pg_advisory_lock` and its kin take (1 and 2).
const KEY_LOCK_KIND: u16 = 0x7074;

/// Take, for the rest of the transaction, the lock on value `key` (a hash)
/// of stream table `relid`'s join key in `lockmode` (an advisory lock,
/// shown in `pg_locks` with `classid` the stream table and `objid` the
/// hash). Returns whether it was not held yet.
pub fn lock_key(relid: pg_sys::Oid, key: u32, lockmode: u32) -> bool {
    let tag = pg_sys::LOCKTAG {
        // SAFETY: reads a backend-local global set at connection.
        locktag_field1: unsafe { pg_sys::MyDatabaseId }.to_u32(),
        locktag_field2: relid.to_u32(),
        locktag_field3: key,
        locktag_field4: KEY_LOCK_KIND,
        locktag_type: pg_sys::LockTagType::LOCKTAG_ADVISORY as u8,
        locktag_lockmethodid: pg_sys::DEFAULT_LOCKMETHOD as u8,
    };
    // SAFETY: a transaction lock on a tag built above; LockAcquire raises on
    // failure (deadlock, lock timeout, cancel, out of shared memory), and
    // the lock is released at transaction end.
    let result = unsafe { pg_sys::LockAcquire(&tag, lockmode as pg_sys::LOCKMODE, false, false) };
    result == pg_sys::LockAcquireResult::LOCKACQUIRE_OK
}

/// The name of the function (in `pg_catalog`, called as `f(value, seed)`)
/// that hashes values of the built-in type `ty` as its default hash
/// operator class does, when that class's equality is the type's default
/// equality (so equal values hash alike); None otherwise.
pub fn hash_function(ty: pg_sys::Oid) -> Option<String> {
    let flags =
        pg_sys::TYPECACHE_EQ_OPR | pg_sys::TYPECACHE_HASH_OPFAMILY | pg_sys::TYPECACHE_HASH_EXTENDED_PROC;
    // SAFETY: the type cache entry is checked for NULL and read only; the
    // function name is a palloc'd C string copied out at once.
    unsafe {
        let tc = pg_sys::lookup_type_cache(ty, flags as i32);
        if tc.is_null()
            || (*tc).hash_opf == pg_sys::InvalidOid
            || (*tc).hash_extended_proc == pg_sys::InvalidOid
        {
            return None;
        }
        let equality =
            pg_sys::get_opfamily_member((*tc).hash_opf, ty, ty, pg_sys::HTEqualStrategyNumber as i16);
        if equality == pg_sys::InvalidOid || equality != (*tc).eq_opr {
            return None;
        }
        let name = pg_sys::get_func_name((*tc).hash_extended_proc);
        if name.is_null() {
            return None;
        }
        std::ffi::CStr::from_ptr(name).to_str().ok().map(str::to_string)
    }
}

/// Have every backend drop its cached state for `relid` when this
/// transaction commits (the capture trigger's plans and consumer lists).
pub fn invalidate_relcache(relid: pg_sys::Oid) {
    // SAFETY: queues a relcache invalidation message; always valid in a
    // transaction.
    unsafe { pg_sys::CacheInvalidateRelcacheByRelid(relid) }
}

/// Make catalog changes of this command visible to the rest of it.
pub fn command_counter_increment() {
    // SAFETY: always valid inside a transaction, which every caller is in.
    unsafe { pg_sys::CommandCounterIncrement() }
}

/// The relation's `pg_class.reloptions`, as `name=value` strings.
pub fn read_reloptions(relid: pg_sys::Oid) -> PgtResult<Vec<String>> {
    let opts = crate::catalog::sys::kept_one::<Vec<String>>(
        "SELECT coalesce(reloptions, '{}') FROM pg_catalog.pg_class WHERE oid = $1",
        &[relid.into()],
    )?;
    Ok(opts.unwrap_or_default())
}

/// Overwrite the relation's `pg_class.reloptions` (NULL when empty).
///
/// The caller must hold a lock on the relation that conflicts with other
/// ALTERs (ShareUpdateExclusiveLock or stronger).
pub fn write_reloptions(relid: pg_sys::Oid, options: &[String]) -> PgtResult<()> {
    let cstrings = options
        .iter()
        .map(|o| CString::new(o.as_str()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| PgtError::Internal("reloption contains a NUL byte".into()))?;
    // SAFETY: pg_class is opened with RowExclusiveLock and closed before
    // returning; the tuple is a private copy from the syscache (checked for
    // NULL); the datum array and isnull/replace flags are sized for pg_class's
    // natts; CatalogTupleUpdate also queues the relcache invalidation.
    unsafe {
        let pg_class = pg_sys::table_open(pg_sys::RelationRelationId, pg_sys::RowExclusiveLock as i32);
        let tuple = pg_sys::SearchSysCacheCopy(
            pg_sys::SysCacheIdentifier::RELOID as i32,
            pg_sys::Datum::from(relid),
            pg_sys::Datum::from(0),
            pg_sys::Datum::from(0),
            pg_sys::Datum::from(0),
        );
        if tuple.is_null() {
            pg_sys::table_close(pg_class, pg_sys::RowExclusiveLock as i32);
            return Err(PgtError::Internal(format!("cache lookup failed for relation {}", relid.to_u32())));
        }
        let desc = (*pg_class).rd_att;
        let natts = (*desc).natts as usize;
        let mut values = vec![pg_sys::Datum::from(0); natts];
        let mut nulls = vec![false; natts];
        let mut replace = vec![false; natts];
        let idx = pg_sys::Anum_pg_class_reloptions as usize - 1;
        replace[idx] = true;
        if cstrings.is_empty() {
            nulls[idx] = true;
        } else {
            let mut elems: Vec<pg_sys::Datum> =
                cstrings.iter().map(|c| pg_sys::Datum::from(pg_sys::cstring_to_text(c.as_ptr()))).collect();
            let array =
                pg_sys::construct_array_builtin(elems.as_mut_ptr(), elems.len() as i32, pg_sys::TEXTOID);
            values[idx] = pg_sys::Datum::from(array);
        }
        let newtuple =
            pg_sys::heap_modify_tuple(tuple, desc, values.as_ptr(), nulls.as_ptr(), replace.as_ptr());
        pg_sys::CatalogTupleUpdate(pg_class, &mut (*newtuple).t_self, newtuple);
        pg_sys::heap_freetuple(newtuple);
        pg_sys::heap_freetuple(tuple);
        pg_sys::table_close(pg_class, pg_sys::RowExclusiveLock as i32);
    }
    command_counter_increment();
    Ok(())
}

fn relation_address(relid: pg_sys::Oid) -> pg_sys::ObjectAddress {
    pg_sys::ObjectAddress { classId: pg_sys::RelationRelationId, objectId: relid, objectSubId: 0 }
}

/// How a relation is tied to the extension in `pg_depend`.
#[derive(Clone, Copy, Debug)]
pub enum ExtensionLink {
    /// A stream table depends on the extension: DROP EXTENSION refuses while
    /// it exists, and with CASCADE drops it.
    Dependency,
    /// A relation created at run time (a change buffer) is a member of the
    /// extension: pg_dump skips it and DROP EXTENSION drops it.
    Membership,
}

impl ExtensionLink {
    fn deptype(self) -> pg_sys::DependencyType::Type {
        match self {
            ExtensionLink::Dependency => pg_sys::DependencyType::DEPENDENCY_NORMAL,
            ExtensionLink::Membership => pg_sys::DependencyType::DEPENDENCY_EXTENSION,
        }
    }
}

/// Record `link` between the relation and the extension.
pub fn link_to_extension(relid: pg_sys::Oid, link: ExtensionLink) -> PgtResult<()> {
    let ext = extension_oid().ok_or(PgtError::ExtensionMissing)?;
    let depender = relation_address(relid);
    let referenced =
        pg_sys::ObjectAddress { classId: pg_sys::ExtensionRelationId, objectId: ext, objectSubId: 0 };
    // SAFETY: both addresses are valid, fully initialised locals.
    unsafe { pg_sys::recordDependencyOn(&depender, &referenced, link.deptype()) };
    Ok(())
}

/// Remove what [`link_to_extension`] recorded.
pub fn unlink_from_extension(relid: pg_sys::Oid, link: ExtensionLink) -> PgtResult<()> {
    let ext = extension_oid().ok_or(PgtError::ExtensionMissing)?;
    // SAFETY: deletes only the pg_depend rows matching all five keys.
    unsafe {
        pg_sys::deleteDependencyRecordsForSpecific(
            pg_sys::RelationRelationId,
            relid,
            link.deptype() as std::ffi::c_char,
            pg_sys::ExtensionRelationId,
            ext,
        )
    };
    command_counter_increment();
    Ok(())
}

/// Live columns of a relation as (attnum, name), all of them or those in
/// `attnums` (columns dropped since are left out).
pub fn attribute_names(relid: pg_sys::Oid, attnums: Option<&[i16]>) -> PgtResult<Vec<(i16, String)>> {
    crate::catalog::sys::kept(
        "SELECT attnum, attname::text FROM pg_catalog.pg_attribute \
              WHERE attrelid OPERATOR(pg_catalog.=) $1 AND attnum OPERATOR(pg_catalog.>) 0 \
                AND NOT attisdropped AND ($2 IS NULL OR attnum OPERATOR(pg_catalog.=) ANY ($2)) \
              ORDER BY attnum",
        &[relid.into(), attnums.map(<[i16]>::to_vec).into()],
        |rows| {
            let mut out = Vec::new();
            for row in rows {
                out.push((row.get::<i16>(1)?.unwrap_or_default(), row.get::<String>(2)?.unwrap_or_default()));
            }
            Ok(out)
        },
    )
}

/// The columns of `relid` (not dropped), in order: each one's name quoted
/// as an identifier and its type as `format_type` spells it, read from the
/// relation cache (what `quote_ident(attname)` and `format_type(atttypid,
/// atttypmod)` over `pg_attribute` return, without a query: a refresh asks
/// for them several times). Refreshes and IMMEDIATE maintenance hold the
/// stream table's lock; `explain_stream_table` reads it as the catalogs
/// show it when the entry was last built, as a query on them would.
pub fn relation_columns(relid: pg_sys::Oid) -> PgtResult<Vec<(String, String)>> {
    // SAFETY: the relation cache entry is checked for NULL (no such
    // relation), read, and released before returning (also on a name that
    // is not UTF-8); no lock is taken, as reading pg_attribute takes none;
    // each attribute is read within its descriptor's natts;
    // quote_identifier and format_type_with_typemod return C strings that
    // are copied out at once.
    unsafe {
        let rel = pg_sys::RelationIdGetRelation(relid);
        if rel.is_null() {
            return Err(PgtError::Internal(format!("cache lookup failed for relation {}", relid.to_u32())));
        }
        let desc = (*rel).rd_att;
        let mut out = Vec::with_capacity((*desc).natts as usize);
        for i in 0..(*desc).natts {
            let att = pg_sys::TupleDescAttr(desc, i);
            if (*att).attisdropped {
                continue;
            }
            let name = pg_sys::quote_identifier((*att).attname.data.as_ptr());
            let ty = pg_sys::format_type_with_typemod((*att).atttypid, (*att).atttypmod);
            match (std::ffi::CStr::from_ptr(name).to_str(), std::ffi::CStr::from_ptr(ty).to_str()) {
                (Ok(name), Ok(ty)) => out.push((name.to_string(), ty.to_string())),
                _ => {
                    pg_sys::RelationClose(rel);
                    return Err(PgtError::Internal(format!(
                        "a column name or type of relation {} is not UTF-8",
                        relid.to_u32()
                    )));
                }
            }
        }
        pg_sys::RelationClose(rel);
        Ok(out)
    }
}

/// The schema-qualified, quoted name of relation `relid`, as
/// `format('%I.%I', nspname, relname)` gives it, read from the system
/// caches (a query on pg_class was planned again at each call: its plan
/// depends on the search_path, which the role switches of a refresh
/// change). None for an unknown OID, or a name that is not UTF-8.
pub fn qualified_name(relid: pg_sys::Oid) -> Option<String> {
    // SAFETY: get_rel_name and get_namespace_name return palloc'd copies
    // (NULL for an unknown OID, checked); get_rel_namespace returns
    // InvalidOid for one, which get_namespace_name maps to NULL;
    // quote_qualified_identifier returns a palloc'd C string, copied out.
    unsafe {
        let name = pg_sys::get_rel_name(relid);
        if name.is_null() {
            return None;
        }
        let schema = pg_sys::get_namespace_name(pg_sys::get_rel_namespace(relid));
        if schema.is_null() {
            return None;
        }
        let quoted = pg_sys::quote_qualified_identifier(schema, name);
        std::ffi::CStr::from_ptr(quoted).to_str().ok().map(str::to_string)
    }
}

/// Is `relid` a partition (`relispartition`)?
pub fn is_partition(relid: pg_sys::Oid) -> bool {
    // SAFETY: get_rel_relispartition reads the syscache; false for an
    // unknown OID.
    unsafe { pg_sys::get_rel_relispartition(relid) }
}

/// Does column `attnum` of `relid` have a type with an equality operator
/// (so that GROUP BY can group by it)? False for a missing column.
pub fn column_has_equality(relid: pg_sys::Oid, attnum: i16) -> bool {
    column_type_operator(relid, attnum, pg_sys::TYPECACHE_EQ_OPR, |tc| tc.eq_opr) != pg_sys::InvalidOid
}

/// Does column `attnum` of `relid` have a type with a default ordering (a
/// `<` operator), so that ORDER BY can sort by it? False for a missing
/// column.
pub fn column_has_ordering(relid: pg_sys::Oid, attnum: i16) -> bool {
    column_type_operator(relid, attnum, pg_sys::TYPECACHE_LT_OPR, |tc| tc.lt_opr) != pg_sys::InvalidOid
}

/// The operator `pick` reads from the type cache entry of column
/// `attnum`'s type, asked for with `flag`; InvalidOid for a missing
/// column or a type without it.
fn column_type_operator(
    relid: pg_sys::Oid,
    attnum: i16,
    flag: u32,
    pick: fn(&pg_sys::TypeCacheEntry) -> pg_sys::Oid,
) -> pg_sys::Oid {
    // SAFETY: get_atttype and lookup_type_cache read the syscache and the
    // type cache; an unknown column gives InvalidOid, which is checked
    // before the type cache is asked, and the entry is checked for NULL.
    unsafe {
        let ty = pg_sys::get_atttype(relid, attnum);
        if ty == pg_sys::InvalidOid {
            return pg_sys::InvalidOid;
        }
        let tc = pg_sys::lookup_type_cache(ty, flag as i32);
        if tc.is_null() {
            return pg_sys::InvalidOid;
        }
        pick(&*tc)
    }
}

/// The btree support function number of `equalimage` (nbtree.h).
const BTEQUALIMAGE_PROC: i16 = 4;

/// Whether values of column `attnum` of `relid` that its type's default
/// btree equality says are equal are also identical, so that grouping by
/// the column keeps each value's text: the opclass's `equalimage` support
/// function (the test B-tree deduplication makes) says so for the
/// column's collation. Not `numeric` (`1.0 = 1.00`), floats (`0 = -0`),
/// `interval`, nor text under a nondeterministic collation.
pub fn column_has_image_equality(relid: pg_sys::Oid, attnum: i16) -> bool {
    // SAFETY: syscache and catalog lookups of the column, its type's
    // default btree opclass and its support function, each checked for
    // InvalidOid before use; the equalimage function takes the opclass's
    // input type and returns a bool.
    unsafe {
        let mut ty = pg_sys::InvalidOid;
        let mut typmod = 0;
        let mut collation = pg_sys::InvalidOid;
        pg_sys::get_atttypetypmodcoll(relid, attnum, &mut ty, &mut typmod, &mut collation);
        if ty == pg_sys::InvalidOid {
            return false;
        }
        let opclass = pg_sys::GetDefaultOpClass(ty, pg_sys::BTREE_AM_OID);
        if opclass == pg_sys::InvalidOid {
            return false;
        }
        let input = pg_sys::get_opclass_input_type(opclass);
        let proc =
            pg_sys::get_opfamily_proc(pg_sys::get_opclass_family(opclass), input, input, BTEQUALIMAGE_PROC);
        if proc == pg_sys::InvalidOid {
            return false;
        }
        pg_sys::OidFunctionCall1Coll(proc, collation, pg_sys::Datum::from(input)).value() != 0
    }
}

/// The partitioned tables above partition `relid`, nearest first.
pub fn partition_ancestors(relid: pg_sys::Oid) -> PgtResult<Vec<pg_sys::Oid>> {
    column_values::<pg_sys::Oid>(
        "SELECT a.relid::pg_catalog.oid FROM pg_catalog.pg_partition_ancestors($1) WITH ORDINALITY a(relid, n) \
          WHERE a.relid OPERATOR(pg_catalog.<>) $1 ORDER BY a.n",
        &[relid.into()],
    )
}

/// Run `f` in a subtransaction: kept when it succeeds, rolled back when it
/// returns an error or raises one (whose message is returned), as a
/// PL/pgSQL block with an EXCEPTION clause does.
pub fn in_subtransaction<R>(f: impl FnOnce() -> PgtResult<R>) -> PgtResult<Result<R, String>> {
    // SAFETY: the calls PL/pgSQL makes around a block with an EXCEPTION
    // clause: the subtransaction begun here is released or rolled back
    // exactly once, with the caller's memory context and resource owner
    // restored after. A PostgreSQL ERROR raised inside `f` reaches the
    // catch arm as a CaughtError (its error state already copied and
    // flushed by pgrx's boundary), after Rust values in `f` were dropped.
    unsafe {
        let context = pg_sys::CurrentMemoryContext;
        let owner = pg_sys::CurrentResourceOwner;
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(context);
        let f = std::panic::AssertUnwindSafe(f);
        let outcome = PgTryBuilder::new(move || {
            let f = f;
            (f.0)().map_err(|e| e.to_string())
        })
        .catch_others(|caught| {
            use pg_sys::panic::CaughtError;
            Err(match caught {
                CaughtError::PostgresError(report)
                | CaughtError::ErrorReport(report)
                | CaughtError::RustPanic { ereport: report, .. } => report.message().to_string(),
            })
        })
        .execute();
        match &outcome {
            Ok(_) => pg_sys::ReleaseCurrentSubTransaction(),
            Err(_) => pg_sys::RollbackAndReleaseCurrentSubTransaction(),
        }
        pg_sys::MemoryContextSwitchTo(context);
        pg_sys::CurrentResourceOwner = owner;
        Ok(outcome)
    }
}

/// Forget what the query of materialized view `relid` depends on (the
/// NORMAL dependencies of its rule: tables, columns, functions, types),
/// keeping the rule's own link to the view. For a view created as a
/// member of the extension whose query reads only what a stream table
/// reads too (an inner stream table, see dvm::nested): DROP ... CASCADE
/// of something it reads reaches the stream table instead, whose cleanup
/// drops the view, where reaching a member of the extension would drop
/// the extension.
pub fn detach_rule_dependencies(relid: pg_sys::Oid) -> PgtResult<()> {
    let rows: Vec<(pg_sys::Oid, pg_sys::Oid, pg_sys::Oid)> = kept(
        "SELECT DISTINCT d.classid, d.objid, d.refclassid FROM pg_catalog.pg_depend d \
           JOIN pg_catalog.pg_rewrite r ON r.oid OPERATOR(pg_catalog.=) d.objid \
          WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_rewrite'::pg_catalog.regclass \
            AND r.ev_class OPERATOR(pg_catalog.=) $1 AND d.deptype OPERATOR(pg_catalog.=) 'n'",
        &[relid.into()],
        |rows| {
            let mut out = Vec::new();
            for row in rows {
                if let (Some(rules), Some(rule), Some(class)) =
                    (row.get::<pg_sys::Oid>(1)?, row.get::<pg_sys::Oid>(2)?, row.get::<pg_sys::Oid>(3)?)
                {
                    out.push((rules, rule, class));
                }
            }
            Ok(out)
        },
    )?;
    for (rules, rule, class) in rows {
        // SAFETY: deletes only the pg_depend rows of the rule with this
        // referenced class and type NORMAL.
        unsafe {
            pg_sys::deleteDependencyRecordsForClass(
                rules,
                rule,
                class,
                pg_sys::DependencyType::DEPENDENCY_NORMAL as std::ffi::c_char,
            )
        };
    }
    command_counter_increment();
    Ok(())
}

/// Drop a relation pg_trickle created as a member of the extension (a
/// running totals table, an inner stream table): `kind` is `TABLE` or
/// `MATERIALIZED VIEW`.
pub fn drop_member(relid: pg_sys::Oid, kind: &str) -> PgtResult<()> {
    let name = crate::catalog::lifecycle::relation_name(relid)?;
    let _internal = crate::hooks::internal();
    as_extension_owner(|| {
        unlink_from_extension(relid, ExtensionLink::Membership)?;
        Spi::run(&format!("DROP {kind} {name}"))?;
        Ok(())
    })
}

/// Give a relation pg_trickle created as a member of the extension (`kind`
/// as for [`drop_member`], `name` quoted) to `owner`, as the extension's
/// owner.
pub fn set_member_owner(name: &str, kind: &str, owner: pg_sys::Oid) -> PgtResult<()> {
    let role = kept_one::<String>(
        "SELECT pg_catalog.quote_ident(rolname) FROM pg_catalog.pg_roles WHERE oid OPERATOR(pg_catalog.=) $1",
        &[owner.into()],
    )?
    .ok_or_else(|| PgtError::Internal("owner role missing".into()))?;
    let _internal = crate::hooks::internal();
    as_extension_owner(|| Ok(Spi::run(&format!("ALTER {kind} {name} OWNER TO {role}"))?))
}
