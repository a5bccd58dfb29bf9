//! pg_trickle's error type and its single conversion into a PostgreSQL error
//! report.
//!
//! Everything below the SQL boundary returns `Result<_, PgtError>`; the hook
//! entry points and SQL functions call [`PgtError::report`], which chooses the
//! SQLSTATE, DETAIL and HINT in one place.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};

/// The valid `pgtrickle.*` options, for messages.
pub const VALID_OPTIONS: &str = "stream, refresh_mode, schedule";

#[derive(Debug, thiserror::Error)]
pub enum PgtError {
    #[error("unrecognized parameter \"pgtrickle.{name}\"")]
    UnknownOption { name: String },

    #[error("invalid value for parameter \"pgtrickle.{name}\": \"{value}\"")]
    InvalidOptionValue { name: String, value: String, hint: String },

    #[error("parameter \"pgtrickle.{name}\" specified more than once")]
    DuplicateOption { name: String },

    #[error("pgtrickle options other than \"pgtrickle.stream\" require pgtrickle.stream = true")]
    OptionsWithoutStream { options: String },

    #[error("stream table {name} cannot be maintained {how}")]
    NotIncremental { name: String, how: &'static str, reason: String },

    #[error("could not serialize access to stream table {name}: a concurrent transaction maintained it")]
    ImmediateConcurrentUpdate { name: String },

    #[error("permission denied for table {name}")]
    NoSourceAccess { name: String },

    #[error("stream table {name} must stay IMMEDIATE: the IMMEDIATE stream table {reader} reads it")]
    ImmediateReader { name: String, reader: String },

    #[error("{name} is not a stream table")]
    NotAStreamTable { name: String },

    #[error("{name} is already a stream table")]
    AlreadyAStreamTable { name: String },

    #[error("{name} is not a materialized view")]
    NotAMatview { name: String },

    #[error("extension \"pg_trickle\" is not installed in this database")]
    ExtensionMissing,

    #[error("must be owner of materialized view {name}")]
    NotOwner { name: String },

    #[error("the query of a stream table must be a single SELECT statement")]
    NotASelect { detail: String },

    #[error(transparent)]
    Spi(#[from] pgrx::spi::Error),

    #[error("pg_trickle internal error: {0}")]
    Internal(String),
}

pub type PgtResult<T> = Result<T, PgtError>;

impl PgtError {
    pub fn sqlstate(&self) -> PgSqlErrorCode {
        use PgSqlErrorCode::*;
        match self {
            PgtError::UnknownOption { .. }
            | PgtError::InvalidOptionValue { .. }
            | PgtError::OptionsWithoutStream { .. } => ERRCODE_INVALID_PARAMETER_VALUE,
            PgtError::DuplicateOption { .. } => ERRCODE_SYNTAX_ERROR,
            PgtError::ImmediateConcurrentUpdate { .. } => ERRCODE_T_R_SERIALIZATION_FAILURE,
            PgtError::ImmediateReader { .. } => ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST,
            PgtError::NotIncremental { .. } => ERRCODE_FEATURE_NOT_SUPPORTED,
            PgtError::NotAStreamTable { .. } | PgtError::NotAMatview { .. } => ERRCODE_WRONG_OBJECT_TYPE,
            PgtError::AlreadyAStreamTable { .. } => ERRCODE_DUPLICATE_OBJECT,
            PgtError::ExtensionMissing => ERRCODE_UNDEFINED_OBJECT,
            PgtError::NotOwner { .. } | PgtError::NoSourceAccess { .. } => ERRCODE_INSUFFICIENT_PRIVILEGE,
            PgtError::NotASelect { .. } => ERRCODE_INVALID_PARAMETER_VALUE,
            PgtError::Spi(_) | PgtError::Internal(_) => ERRCODE_INTERNAL_ERROR,
        }
    }

    pub fn detail(&self) -> Option<String> {
        match self {
            PgtError::OptionsWithoutStream { options } => {
                Some(format!("Options given without pgtrickle.stream = true: {options}."))
            }
            PgtError::NotIncremental { reason, .. } => {
                Some(crate::dvm::analysis::Unsupported(reason.clone()).sentence())
            }
            PgtError::NotASelect { detail } => Some(detail.clone()),
            PgtError::ImmediateConcurrentUpdate { .. } => Some(
                "A transaction that committed after this transaction's snapshot was taken changed its sources and \
                 maintained it; this REPEATABLE READ or SERIALIZABLE transaction cannot see those changes."
                    .into(),
            ),
            _ => None,
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            PgtError::UnknownOption { .. } => Some(format!("Valid pgtrickle options are: {VALID_OPTIONS}.")),
            PgtError::InvalidOptionValue { hint, .. } => Some(hint.clone()),
            PgtError::OptionsWithoutStream { .. } => {
                Some("Add pgtrickle.stream = true to create a stream table.".into())
            }
            PgtError::NotIncremental { .. } => {
                Some("Use pgtrickle.refresh_mode = 'full', or 'auto' to let pg_trickle choose.".into())
            }
            PgtError::NotAStreamTable { .. } => Some(
                "Create a stream table with CREATE MATERIALIZED VIEW ... WITH (pgtrickle.stream = true)."
                    .into(),
            ),
            PgtError::NotAMatview { .. } => Some("Only materialized views can be stream tables.".into()),
            PgtError::ExtensionMissing => {
                Some("Run CREATE EXTENSION pg_trickle in this database first.".into())
            }
            PgtError::ImmediateConcurrentUpdate { .. } => Some("Retry the transaction.".into()),
            PgtError::ImmediateReader { reader, .. } => {
                Some(format!("Change the refresh mode of {reader} first, or drop it."))
            }
            _ => None,
        }
    }

    /// Raise this error as a PostgreSQL ERROR. Never returns.
    pub fn report(self) -> ! {
        let mut report = ErrorReport::new(self.sqlstate(), self.to_string(), "pg_trickle");
        if let Some(detail) = self.detail() {
            report = report.set_detail(detail);
        }
        if let Some(hint) = self.hint() {
            report = report.set_hint(hint);
        }
        report.report(PgLogLevel::ERROR);
        unreachable!("ereport(ERROR) returned")
    }
}

/// Unwrap a result at the SQL boundary, raising the error as a PostgreSQL ERROR.
pub trait OrReport<T> {
    fn or_report(self) -> T;
}

impl<T> OrReport<T> for PgtResult<T> {
    fn or_report(self) -> T {
        match self {
            Ok(v) => v,
            Err(e) => e.report(),
        }
    }
}
