//! `CREATE MATERIALIZED VIEW … WITH (pgtrickle.stream = true, …) AS …`
//!
//! PostgreSQL refuses reloptions it does not know, so the handler removes the
//! `pgtrickle.*` items from a copy of the statement and lets PostgreSQL
//! create the materialized view from it, always `WITH NO DATA`. It then
//! registers the new relation as a stream table (which writes the settings
//! back into its reloptions and sets up change capture) and, unless the user
//! asked for `WITH NO DATA`, populates it with a first refresh. Populating
//! after capture is in place is what makes the first frontier exact.

use pgrx::pg_sys;

use super::nodes::{copy_node, cstr, list_from_ptrs, split_options};
use super::utility::UtilityCall;
use crate::catalog::lifecycle;
use crate::catalog::options::settings_for_create;
use crate::catalog::sys;
use crate::error::{PgtError, PgtResult};
use crate::refresh::{self, RefreshTrigger};

pub(super) fn handle(call: &UtilityCall, stmt: *mut pg_sys::CreateTableAsStmt) -> PgtResult<()> {
    // SAFETY: the dispatcher checked the tag; `into` is always set for
    // CREATE MATERIALIZED VIEW / CREATE TABLE AS.
    let (objtype, into) = unsafe { ((*stmt).objtype, (*stmt).into) };
    if objtype != pg_sys::ObjectType::OBJECT_MATVIEW || into.is_null() {
        call.pass_through();
        return Ok(());
    }
    // SAFETY: `into` is a valid IntoClause (checked above).
    let (ours, others) = unsafe { split_options((*into).options, false) };
    if ours.is_empty() {
        call.pass_through();
        return Ok(());
    }
    let settings = settings_for_create(&ours)?;

    // A copy of the statement without our options, for PostgreSQL.
    // SAFETY: copy_node deep-copies; the copy's IntoClause is ours to edit,
    // and its options list is rebuilt from the copy's own DefElems.
    let (copy, rel, skip_data, if_not_exists) = unsafe {
        let copy = copy_node(stmt);
        let copy_into = (*copy).into;
        let (_, copy_others) = split_options((*copy_into).options, false);
        debug_assert_eq!(copy_others.len(), others.len());
        (*copy_into).options = list_from_ptrs(&copy_others);
        (copy, (*copy_into).rel, (*copy_into).skipData, (*copy).if_not_exists)
    };
    // SAFETY: `copy` is ours; set WITH NO DATA on it (see the module comment).
    let force_no_data = |copy: *mut pg_sys::CreateTableAsStmt| unsafe { (*(*copy).into).skipData = true };

    let Some(settings) = settings else {
        // pgtrickle.stream = false: an ordinary materialized view.
        call.run_instead(copy.cast());
        return Ok(());
    };
    if sys::extension_oid().is_none() {
        return Err(PgtError::ExtensionMissing);
    }

    // SAFETY: `rel` is the copy's RangeVar; the creation namespace lookup
    // raises the same errors CREATE itself would (no such schema, ...).
    let (nspid, relname) =
        unsafe { (pg_sys::RangeVarGetCreationNamespace(rel), cstr((*rel).relname).unwrap_or_default()) };
    let c_relname = std::ffi::CString::new(relname.clone())
        .map_err(|_| PgtError::Internal("relation name contains a NUL byte".into()))?;
    // SAFETY: plain syscache lookup by name and namespace.
    let exists = unsafe { pg_sys::get_relname_relid(c_relname.as_ptr(), nspid) } != pg_sys::InvalidOid;
    if exists && if_not_exists {
        // PostgreSQL reports "already exists, skipping" and does nothing.
        call.run_instead(copy.cast());
        return Ok(());
    }

    force_no_data(copy);
    call.run_instead(copy.cast());
    sys::command_counter_increment();

    // SAFETY: as above; the relation now exists in `nspid`.
    let relid = unsafe { pg_sys::get_relname_relid(c_relname.as_ptr(), nspid) };
    if relid == pg_sys::InvalidOid {
        return Err(PgtError::Internal(format!("materialized view \"{relname}\" was not created")));
    }
    lifecycle::register(relid, &settings, skip_data)?;
    if !skip_data {
        let rows = refresh::refresh(relid, RefreshTrigger::Create)?;
        call.complete_as_select(rows.max(0) as u64);
    }
    Ok(())
}
