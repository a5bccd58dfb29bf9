//! Registering, altering and unregistering stream tables.
//!
//! The one implementation behind both the DDL hook and the SQL functions.
//! A stream table's settings are written to two places in one transaction:
//! its reloptions (the durable truth, which pg_dump carries) and
//! `pgtrickle.pgt_stream_tables` (runtime state: effective mode, status,
//! refresh times).

use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::{PgLogLevel, PgSqlErrorCode};

use super::options::{apply_alter, merge_reloptions, to_reloptions, AlterOutcome, OptionChange, RefreshMode, StreamSettings};
use super::{stream_tables, sys};
use crate::cdc;
use crate::error::{PgtError, PgtResult};

/// `schema.name`, quoted as needed, for messages and generated SQL.
pub fn relation_name(relid: pg_sys::Oid) -> PgtResult<String> {
    Spi::get_one_with_args::<String>(
        "SELECT pg_catalog.format('%I.%I', n.nspname, c.relname) \
           FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
          WHERE c.oid = $1",
        &[relid.into()],
    )?
    .ok_or_else(|| PgtError::Internal(format!("relation {} does not exist", relid.to_u32())))
}

/// Refuse modes this version cannot maintain.
pub fn check_mode(settings: &StreamSettings) -> PgtResult<()> {
    match settings.refresh_mode {
        RefreshMode::Full | RefreshMode::Auto => Ok(()),
        mode => Err(PgtError::ModeNotSupported { mode: mode.as_str().into() }),
    }
}

/// The mode refreshes will use. `auto` resolves to FULL until incremental
/// maintenance exists, and says so when `announce` (the mode was just set).
fn effective_mode(relid: pg_sys::Oid, settings: &StreamSettings, announce: bool) -> PgtResult<RefreshMode> {
    check_mode(settings)?;
    if settings.refresh_mode == RefreshMode::Auto && announce {
        pgrx::pg_sys::panic::ErrorReport::new(
            PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION,
            format!("stream table {} will be refreshed by full recomputation", relation_name(relid)?),
            "pg_trickle",
        )
        .set_detail("This version of pg_trickle maintains stream tables by FULL refresh only.")
        .report(PgLogLevel::NOTICE);
    }
    Ok(RefreshMode::Full)
}

fn write_settings(relid: pg_sys::Oid, settings: &StreamSettings) -> PgtResult<()> {
    let existing = sys::read_reloptions(relid)?;
    sys::write_reloptions(relid, &merge_reloptions(&existing, &to_reloptions(settings)))
}

/// Make an existing materialized view a stream table. A stream table that
/// consumes changes is attached to its sources' capture and marked for a
/// FULL refresh, which establishes its first frontier; the caller runs that
/// refresh when the contents must be current now (CREATE without NO DATA).
pub fn register(relid: pg_sys::Oid, settings: &StreamSettings) -> PgtResult<()> {
    if !sys::current_user_owns(relid) {
        return Err(PgtError::NotOwner { name: relation_name(relid)? });
    }
    sys::lock_relation(relid, pg_sys::ShareUpdateExclusiveLock);
    if stream_tables::exists(relid)? {
        return Err(PgtError::AlreadyAStreamTable { name: relation_name(relid)? });
    }
    let effective = effective_mode(relid, settings, true)?;
    write_settings(relid, settings)?;
    sys::record_extension_dependency(relid)?;
    let sources = stream_tables::sources_of(relid)?;
    let consumes = cdc::consumers::consumes(settings, &sources);
    sys::as_extension_owner(|| stream_tables::insert(relid, settings, effective, consumes, &sources))?;
    if consumes {
        cdc::consumers::attach(relid)?;
    }
    Ok(())
}

/// Apply `SET`/`RESET` items to a materialized view (stream table or not).
pub fn alter(relid: pg_sys::Oid, changes: &[OptionChange]) -> PgtResult<()> {
    if !sys::current_user_owns(relid) {
        return Err(PgtError::NotOwner { name: relation_name(relid)? });
    }
    sys::lock_relation(relid, pg_sys::ShareUpdateExclusiveLock);
    let current = stream_tables::get(relid)?;
    match apply_alter(current.as_ref().map(|st| &st.settings), changes)? {
        AlterOutcome::Stream(settings) => match current {
            Some(st) => {
                let mode_changed = st.settings.refresh_mode != settings.refresh_mode;
                let effective = effective_mode(relid, &settings, mode_changed)?;
                write_settings(relid, &settings)?;
                let sources = stream_tables::sources_of(relid)?;
                let consumes = cdc::consumers::consumes(&settings, &sources);
                sys::as_extension_owner(|| {
                    stream_tables::update_settings(relid, &settings, effective, consumes)
                })?;
                match (st.consumes_changes, consumes) {
                    (false, true) => cdc::consumers::attach(relid),
                    (true, false) => cdc::consumers::cleanup(),
                    _ => Ok(()),
                }
            }
            None => register(relid, &settings),
        },
        AlterOutcome::Plain => match current {
            Some(_) => unregister(relid),
            None => Ok(()),
        },
    }
}

/// Turn a stream table back into an ordinary materialized view.
pub fn unregister(relid: pg_sys::Oid) -> PgtResult<()> {
    let existing = sys::read_reloptions(relid)?;
    sys::write_reloptions(relid, &merge_reloptions(&existing, &[]))?;
    sys::remove_extension_dependency(relid)?;
    sys::as_extension_owner(|| stream_tables::delete(relid))?;
    cdc::consumers::cleanup()
}
