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
//! sources maintain it one after the other; under READ COMMITTED each
//! recomputation takes a fresh snapshot after the lock, so it sees the
//! changes of the writer that held the lock before. REPEATABLE READ and
//! SERIALIZABLE transactions keep one snapshot and could recompute from a
//! state that misses a concurrent writer's committed changes: they are
//! refused (see docs/IMMEDIATE.md).

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::catalog::sys;
use crate::cdc::triggers::{NEW_TABLE, OLD_TABLE};
use crate::dvm::analysis;
use crate::dvm::key_recompute::{self, KeyValues};
use crate::error::{PgtError, PgtResult};

/// Which transition tables the firing statement has.
#[derive(Clone, Copy, Debug)]
pub struct Transition {
    pub old: bool,
    pub new: bool,
}

fn check_isolation(relid: pg_sys::Oid) -> PgtResult<()> {
    // SAFETY: reads a backend-local GUC variable.
    let level = unsafe { pg_sys::XactIsoLevel };
    if level >= pg_sys::XACT_REPEATABLE_READ as i32 {
        return Err(PgtError::ImmediateIsolation { name: crate::catalog::lifecycle::relation_name(relid)? });
    }
    Ok(())
}

/// Maintain `relid` for one statement on `source`. `read_transition` runs a
/// query in the trigger's own SPI connection, where the transition tables
/// are registered, and returns its first row as text.
pub fn maintain(
    relid: pg_sys::Oid,
    source: pg_sys::Oid,
    transition: Transition,
    read_transition: &dyn Fn(&str) -> PgtResult<Vec<Option<String>>>,
) -> PgtResult<()> {
    check_isolation(relid)?;
    sys::lock_relation(relid, pg_sys::ExclusiveLock);
    if !is_populated(relid)? {
        return Ok(()); // emptied WITH NO DATA: the next REFRESH fills it
    }
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
    let columns = key_recompute::output_columns(relid)?;
    let source_names = column_names(source)?;
    let mut groups = Vec::new();
    let mut any = false;
    for group in plan.key_groups() {
        let mut keys = Vec::new();
        if group[0].source != source {
            for k in &group {
                let (column, sql_type) = columns[k.output_attnum as usize - 1].clone();
                keys.push(KeyValues { column, sql_type, values: None, has_null: false });
            }
            groups.push(keys);
            continue;
        }
        let select_from = |table: &str| {
            let cols: Vec<String> = group
                .iter()
                .map(|k| {
                    let name = source_names.iter().find(|(a, _)| *a == k.source_attnum).map(|(_, n)| n.clone());
                    format!("t.{} AS c{}", crate::sql::quote_ident(&name.unwrap_or_default()), k.source_attnum)
                })
                .collect();
            format!("SELECT {} FROM {table} t", cols.join(", "))
        };
        let mut parts = Vec::new();
        if transition.old {
            parts.push(select_from(OLD_TABLE));
        }
        if transition.new {
            parts.push(select_from(NEW_TABLE));
        }
        let mut select = Vec::new();
        for k in &group {
            select.push(format!(
                "(pg_catalog.array_agg(DISTINCT c{0}) FILTER (WHERE c{0} IS NOT NULL))::text",
                k.source_attnum
            ));
            select.push(format!("pg_catalog.bool_or(c{} IS NULL)", k.source_attnum));
        }
        let sql = format!("SELECT {} FROM ({}) w", select.join(", "), parts.join(" UNION ALL "));
        let row = read_transition(&sql)?;
        for (i, k) in group.iter().enumerate() {
            let (column, sql_type) = columns[k.output_attnum as usize - 1].clone();
            let values = row.get(2 * i).cloned().flatten();
            let has_null = row.get(2 * i + 1).cloned().flatten().as_deref() == Some("t");
            any |= values.is_some() || has_null;
            keys.push(KeyValues { column, sql_type, values, has_null });
        }
        groups.push(keys);
    }
    if !any {
        return Ok(());
    }
    key_recompute::apply_now(relid, &groups)?;
    Ok(())
}

/// TRUNCATE of a source: recompute the whole stream table.
pub fn recompute_all(relid: pg_sys::Oid) -> PgtResult<()> {
    check_isolation(relid)?;
    sys::lock_relation(relid, pg_sys::ExclusiveLock);
    if !is_populated(relid)? {
        return Ok(());
    }
    key_recompute::replace_all_now(relid)
}

fn is_populated(relid: pg_sys::Oid) -> PgtResult<bool> {
    Ok(Spi::get_one_with_args::<bool>(
        "SELECT (SELECT relispopulated FROM pg_catalog.pg_class WHERE oid OPERATOR(pg_catalog.=) $1)",
        &[relid.into()],
    )?
    .unwrap_or(false))
}

fn column_names(relid: pg_sys::Oid) -> PgtResult<Vec<(i16, String)>> {
    Spi::connect(|c| {
        let rows = c.select(
            "SELECT attnum, attname::text FROM pg_catalog.pg_attribute \
              WHERE attrelid OPERATOR(pg_catalog.=) $1 AND attnum OPERATOR(pg_catalog.>) 0 AND NOT attisdropped",
            None,
            &[relid.into()],
        )?;
        let mut out = Vec::new();
        for row in rows {
            out.push((row.get::<i16>(1)?.unwrap_or_default(), row.get::<String>(2)?.unwrap_or_default()));
        }
        Ok(out)
    })
}
